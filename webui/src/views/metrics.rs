//! `/healthz` for load balancers and `/metrics` for Prometheus (bearer
//! token or an admin session).

use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sealgate_api::ops::status::{KeyStoreState, Status};
use sealgate_api::{Actor, Role, Via};
use std::fmt::Write;
use subtle_eq::ct_eq;

use crate::{WebState, session};

/// The actor of the health and metrics endpoints (reads the status only).
fn monitor(parts: &Parts) -> Actor {
    Actor {
        name: "monitor".to_owned(),
        role: Role::Auditor,
        via: Via::Web,
        from: session::client(parts),
    }
}

/// `GET /healthz`: 200 `ok` while the service answers and the state store
/// works, 503 otherwise.
pub async fn view_healthz_get(State(state): State<WebState>, parts: Parts) -> Response {
    match sealgate_api::run(state.service(), &monitor(&parts), &Status {}).await {
        Ok(status) if status.storage_failed.is_none() => (StatusCode::OK, "ok\n").into_response(),
        Ok(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage failed\n").into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable\n").into_response(),
    }
}

mod subtle_eq {
    /// Compares in time independent of where the inputs differ.
    pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

async fn allowed(state: &WebState, parts: &Parts) -> bool {
    if let Some(expected) = state.metrics_token() {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if bearer.is_some_and(|b| ct_eq(b.trim().as_bytes(), expected.as_bytes())) {
            return true;
        }
    }
    matches!(
        session::lookup(state, parts).await,
        Some((_, s)) if s.kind == sealgate_api::ops::accounts::SessionKind::Account && s.role == Role::Admin
    )
}

/// `GET /metrics`: Prometheus text format.
pub async fn view_metrics_get(State(state): State<WebState>, parts: Parts) -> Response {
    if !allowed(&state, &parts).await {
        let mut response = (
            StatusCode::UNAUTHORIZED,
            "bearer token or admin session required\n",
        )
            .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"sealgate-metrics\""),
        );
        return response;
    }
    let status = match sealgate_api::run(state.service(), &monitor(&parts), &Status {}).await {
        Ok(s) => s,
        Err(e) => return crate::error::service_error(&e),
    };
    let mut out = String::new();
    let q = &status.queue;
    let _ = writeln!(
        out,
        "# HELP sealgate_queue_messages Messages in the queue.\n# TYPE sealgate_queue_messages gauge\nsealgate_queue_messages {}",
        q.messages
    );
    let _ = writeln!(
        out,
        "# HELP sealgate_queue_recipients Recipients waiting, by state.\n# TYPE sealgate_queue_recipients gauge"
    );
    for (name, n) in [
        ("scheduled", q.scheduled),
        ("deferred", q.deferred),
        ("held", q.held),
        ("quarantined", q.quarantined),
    ] {
        let _ = writeln!(out, "sealgate_queue_recipients{{state=\"{name}\"}} {n}");
    }
    let up = matches!(status.key_store, KeyStoreState::Ready);
    let _ = writeln!(
        out,
        "# HELP sealgate_token_available Whether the gateway's key store can be used (1) or not (0).\n# TYPE sealgate_token_available gauge\nsealgate_token_available {}",
        u8::from(up)
    );
    let _ = writeln!(
        out,
        "# HELP sealgate_settings_version The settings version in force.\n# TYPE sealgate_settings_version gauge\nsealgate_settings_version {}",
        status.settings_version
    );
    let _ = writeln!(
        out,
        "# HELP sealgate_data_disk_free_bytes Free space on the data partition.\n# TYPE sealgate_data_disk_free_bytes gauge\nsealgate_data_disk_free_bytes {}",
        status.data_disk.free_bytes
    );
    let _ = writeln!(
        out,
        "# HELP sealgate_certificate_expiry_seconds When certificates and keys that expire within 30 days expire (Unix time).\n# TYPE sealgate_certificate_expiry_seconds gauge"
    );
    for e in &status.expiring {
        let what: String = e
            .what
            .chars()
            .filter(|c| !matches!(c, '"' | '\\' | '\n'))
            .collect();
        let _ = writeln!(
            out,
            "sealgate_certificate_expiry_seconds{{what=\"{what}\"}} {}",
            e.not_after_ms / 1000
        );
    }
    let mut response = (StatusCode::OK, out).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
