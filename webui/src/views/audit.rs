//! `/audit`: who changed what, from where, with what outcome; filtered by
//! actor, operation and time.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use sealgate_api::ops::audit::{AuditOutcome, AuditRecord, AuditSearch};
use sealgate_api::run;
use serde::Deserialize;

use super::now_ms;
use crate::session::Account;
use crate::{Chrome, WebState, render};

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Chrome,
    q: AuditQuery,
    hours: u64,
    records: Vec<AuditRecord>,
}

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    operation: String,
    #[serde(default)]
    hours: String,
}

pub async fn view_audit_get(
    State(state): State<WebState>,
    account: Account,
    Query(q): Query<AuditQuery>,
) -> Response {
    if let Some(refused) = account.refuse(sealgate_api::Permission::Read(sealgate_api::Area::Audit))
    {
        return refused;
    }
    let hours = q
        .hours
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|h| *h > 0)
        .unwrap_or(24 * 7);
    let op = AuditSearch {
        since_ms: Some(now_ms().saturating_sub(hours.saturating_mul(3_600_000))),
        until_ms: None,
        actor: Some(q.actor.trim().to_owned()).filter(|s| !s.is_empty()),
        operation: Some(q.operation.trim().to_owned()).filter(|s| !s.is_empty()),
        limit: Some(500),
    };
    match run(state.service(), &account.actor, &op).await {
        Ok(records) => render(&AuditPage {
            chrome: Chrome::for_account(&state, &account, "Audit log", "/audit"),
            q,
            hours,
            records,
        }),
        Err(e) => crate::error::service_error(&e),
    }
}

/// For templates: an outcome in words and its badge class.
pub fn outcome(o: &AuditOutcome) -> (&'static str, String) {
    match o {
        AuditOutcome::Done => ("ok", "done".to_owned()),
        AuditOutcome::Denied => ("bad", "denied".to_owned()),
        AuditOutcome::Failed(why) => ("warn", format!("failed: {why}")),
    }
}
