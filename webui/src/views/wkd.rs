//! `/.well-known/openpgpkey/…`: our Web Key Directory, served without
//! login to anyone (it publishes public keys only): the advanced layout
//! (`/.well-known/openpgpkey/<domain>/hu/<hash>`, reached as
//! `openpgpkey.<domain>`) and the direct one (`/.well-known/openpgpkey/
//! hu/<hash>`, the domain taken from the `Host` the client asked for),
//! and each domain's (empty) policy file. What is published is the
//! service's answer (`wkd.lookup`); this module only maps URLs.

use axum::extract::{Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sealgate_api::ops::trust::WkdLookup;
use sealgate_api::{ServiceError, run};
use serde::Deserialize;

use crate::WebState;
use crate::session::anonymous;

#[derive(Deserialize)]
pub struct WkdQuery {
    /// The local part, as WKD clients send it (`?l=alice`).
    l: Option<String>,
}

/// The domain a direct-method request is for: the host the client asked
/// for, without port, without the advanced method's `openpgpkey.` label.
fn requested_domain(parts: &Parts) -> Option<String> {
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.host())?;
    let host = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let host = host
        .strip_prefix("openpgpkey.")
        .map_or(host.clone(), str::to_owned);
    (!host.is_empty() && !host.starts_with('[')).then_some(host)
}

async fn answer(state: &WebState, parts: &Parts, op: WkdLookup) -> Response {
    // Bounded before the service sees them: a hash is 32 z-base-32
    // characters, a domain a DNS name, a local part at most 64 octets.
    let sane = op.domain.len() <= 253
        && op
            .hash
            .as_ref()
            .is_none_or(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_alphanumeric()))
        && op.local.as_ref().is_none_or(|l| l.len() <= 64);
    if !sane {
        return not_found();
    }
    let policy = op.hash.is_none();
    match run(state.service(), &anonymous(parts), &op).await {
        Ok(found) => {
            let Ok(keys) = base64::engine::general_purpose::STANDARD.decode(found.keys) else {
                return not_found();
            };
            let mut r = keys.into_response();
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(if policy {
                    "text/plain"
                } else {
                    "application/octet-stream"
                }),
            );
            // Clients of other origins (web mailers) may read it.
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=600"),
            );
            r
        }
        Err(ServiceError::NotFound { .. } | ServiceError::Invalid { .. }) => not_found(),
        Err(e) => crate::error::service_error(&e),
    }
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "no key published here\n").into_response()
}

/// `GET /.well-known/openpgpkey/{domain}/hu/{hash}` (advanced method).
pub async fn view_wkd_advanced_get(
    State(state): State<WebState>,
    Path((domain, hash)): Path<(String, String)>,
    Query(q): Query<WkdQuery>,
    parts: Parts,
) -> Response {
    let op = WkdLookup {
        domain,
        hash: Some(hash),
        local: q.l,
    };
    answer(&state, &parts, op).await
}

/// `GET /.well-known/openpgpkey/hu/{hash}` (direct method).
pub async fn view_wkd_direct_get(
    State(state): State<WebState>,
    Path(hash): Path<String>,
    Query(q): Query<WkdQuery>,
    parts: Parts,
) -> Response {
    let Some(domain) = requested_domain(&parts) else {
        return not_found();
    };
    let op = WkdLookup {
        domain,
        hash: Some(hash),
        local: q.l,
    };
    answer(&state, &parts, op).await
}

/// `GET /.well-known/openpgpkey/{domain}/policy` (advanced method).
pub async fn view_wkd_advanced_policy_get(
    State(state): State<WebState>,
    Path(domain): Path<String>,
    parts: Parts,
) -> Response {
    let op = WkdLookup {
        domain,
        hash: None,
        local: None,
    };
    answer(&state, &parts, op).await
}

/// `GET /.well-known/openpgpkey/policy` (direct method).
pub async fn view_wkd_direct_policy_get(State(state): State<WebState>, parts: Parts) -> Response {
    let Some(domain) = requested_domain(&parts) else {
        return not_found();
    };
    let op = WkdLookup {
        domain,
        hash: None,
        local: None,
    };
    answer(&state, &parts, op).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::requested_domain;
    use axum::http::Request;

    fn parts(host: &str) -> axum::http::request::Parts {
        Request::get("/.well-known/openpgpkey/hu/x")
            .header("host", host)
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    #[test]
    fn the_domain_is_the_host_without_port_or_openpgpkey_label() {
        assert_eq!(
            requested_domain(&parts("Example.ORG:8443")).as_deref(),
            Some("example.org")
        );
        assert_eq!(
            requested_domain(&parts("openpgpkey.example.org")).as_deref(),
            Some("example.org")
        );
        assert_eq!(requested_domain(&parts("[::1]:8443")), None);
    }
}
