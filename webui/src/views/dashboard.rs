//! `/dashboard`: traffic of the last 24 h, the queue by state, the token,
//! the data disk, what expires soon, the last errors; each links to the
//! page that explains it.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use sealgate_api::ops::dashboard::{DashboardTraffic, Traffic};
use sealgate_api::ops::status::{KeyStoreState, Status, StatusReport};
use sealgate_api::run;
use serde::Deserialize;

use super::{bytes, notice, when};
use crate::session::Account;
use crate::{Chrome, WebState, render, svg};

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    chrome: Chrome,
    status: StatusReport,
    token: (&'static str, &'static str, String),
    disk_used: String,
    disk_free: String,
    disk_percent: u64,
    chart: Option<String>,
    traffic: Option<Traffic>,
    total_in: u64,
    total_out: u64,
    expiring: Vec<(String, String)>,
}

#[derive(Deserialize)]
pub struct DashboardQuery {
    done: Option<String>,
}

pub async fn view_dashboard_get(
    State(state): State<WebState>,
    account: Account,
    Query(q): Query<DashboardQuery>,
) -> Response {
    if let Some(refused) =
        account.refuse(sealgate_api::Permission::Read(sealgate_api::Area::Status))
    {
        return refused;
    }
    let status = match run(state.service(), &account.actor, &Status {}).await {
        Ok(s) => s,
        Err(e) => return crate::error::service_error(&e),
    };
    let traffic = run(
        state.service(),
        &account.actor,
        &DashboardTraffic { hours: Some(24) },
    )
    .await
    .map_err(|e| tracing::debug!(error = %e, "dashboard: no traffic figures"))
    .ok();
    let token = match &status.key_store {
        KeyStoreState::Ready => ("ok", "ready", String::new()),
        KeyStoreState::NotSetUp => (
            "warn",
            "not set up",
            "No gateway key with a certificate yet.".to_owned(),
        ),
        KeyStoreState::Unavailable { reason } => ("bad", "unavailable", reason.clone()),
    };
    let disk = &status.data_disk;
    let used = disk.total_bytes.saturating_sub(disk.free_bytes);
    let disk_percent = (used.saturating_mul(100))
        .checked_div(disk.total_bytes)
        .unwrap_or(0);
    let chart = traffic.as_ref().map(|t| {
        svg::traffic(
            &t.incoming,
            &t.outgoing,
            "Messages in and out per minute, last 24 hours",
        )
    });
    let (total_in, total_out) = traffic.as_ref().map_or((0, 0), |t| {
        (t.incoming.iter().sum(), t.outgoing.iter().sum())
    });
    let expiring = status
        .expiring
        .iter()
        .map(|e| (e.what.clone(), when(e.not_after_ms)))
        .collect();
    render(&DashboardPage {
        chrome: Chrome::for_account(&state, &account, "Dashboard", "/dashboard")
            .with_notice(notice(q.done.as_deref())),
        token,
        disk_used: bytes(used),
        disk_free: bytes(disk.free_bytes),
        disk_percent,
        chart,
        traffic,
        total_in,
        total_out,
        expiring,
        status,
    })
}
