//! `/cluster`: every node of the gateway as `cluster.status` sees it:
//! whether it answers (asked just now over the cluster API), its
//! software and settings versions, its queue, its last heartbeat and its
//! connection to the cluster database. On a single appliance: this node,
//! and that there is no cluster database.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use sealgate_api::ops::cluster::{ClusterReport, ClusterStatus};
use sealgate_api::{Area, Permission, run};

use super::now_ms;
use crate::session::Account;
use crate::{Chrome, WebState, render};

#[derive(Template)]
#[template(path = "cluster.html")]
struct ClusterPage {
    chrome: Chrome,
    report: ClusterReport,
    /// How many nodes answered.
    answering: usize,
    now: u64,
}

pub async fn view_cluster_get(State(state): State<WebState>, account: Account) -> Response {
    if let Some(refused) = account.refuse(Permission::Read(Area::Status)) {
        return refused;
    }
    match run(state.service(), &account.actor, &ClusterStatus {}).await {
        Ok(report) => render(&ClusterPage {
            chrome: Chrome::for_account(&state, &account, "Cluster", "/cluster"),
            answering: report.nodes.iter().filter(|n| n.answers).count(),
            report,
            now: now_ms(),
        }),
        Err(e) => crate::error::service_error(&e),
    }
}
