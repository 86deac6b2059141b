//! What every response carries and what every request must show before a
//! handler sees it.
//!
//! - Headers on every response, errors included: a strict Content
//!   Security Policy (scripts and styles only from this origin, nothing
//!   inline, no eval, no framing), HSTS, `nosniff`, no referrer, no
//!   caching (every page may be an authenticated one).
//! - Cross-site request forgery: a request that changes state (any method
//!   but GET, HEAD, OPTIONS) is refused with 403 unless the browser says
//!   it comes from this origin (`Sec-Fetch-Site: same-origin`, or, from a
//!   browser that does not send that, an `Origin` equal to ours). A
//!   request with neither comes from no browser (a script with its own
//!   credentials), which forgery cannot use. This is on top of the
//!   session cookie's `SameSite=Strict`; handlers never change state on
//!   GET.
//! - A request must be answered within the listener's request timeout
//!   (slow bodies end with 408).

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

/// The Content Security Policy of every page.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the security headers to every response.
pub async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    set_headers(response.headers_mut());
    response
}

pub fn set_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), interest-cohort=()"),
    );
}

/// Whether a request may change state: see the module doc.
pub fn same_origin(method: &Method, headers: &HeaderMap, authority: Option<&str>) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return true;
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        return site.as_bytes() == b"same-origin";
    }
    match headers.get(header::ORIGIN) {
        Some(origin) => match authority {
            Some(authority) => origin.as_bytes() == format!("https://{authority}").as_bytes(),
            None => false,
        },
        None => true,
    }
}

/// Refuses cross-origin state changes (403, a page that says why).
pub async fn csrf(request: Request, next: Next) -> Response {
    let authority = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()));
    if !same_origin(request.method(), request.headers(), authority.as_deref()) {
        tracing::info!(
            method = %request.method(),
            path = request.uri().path(),
            "web: cross-origin request refused"
        );
        return crate::error::page(
            StatusCode::FORBIDDEN,
            "Request refused",
            "This change did not come from a page of this gateway, so it was refused. \
             Open the page again and repeat it from there.",
            None,
        );
    }
    next.run(request).await
}

/// Ends a request that is not answered in time (a body sent too slowly):
/// 408.
pub async fn timeout(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => crate::error::page(
            StatusCode::REQUEST_TIMEOUT,
            "Too slow",
            "The request took too long to arrive.",
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn only_same_origin_changes_state() {
        let host = Some("gw.example:8443");
        assert!(same_origin(
            &Method::GET,
            &with(&[("sec-fetch-site", "cross-site")]),
            host
        ));
        assert!(same_origin(
            &Method::POST,
            &with(&[("sec-fetch-site", "same-origin")]),
            host
        ));
        assert!(!same_origin(
            &Method::POST,
            &with(&[("sec-fetch-site", "same-site")]),
            host
        ));
        assert!(!same_origin(
            &Method::POST,
            &with(&[("sec-fetch-site", "cross-site")]),
            host
        ));
        assert!(!same_origin(
            &Method::POST,
            &with(&[("sec-fetch-site", "none")]),
            host
        ));
        assert!(same_origin(
            &Method::POST,
            &with(&[("origin", "https://gw.example:8443")]),
            host
        ));
        assert!(!same_origin(
            &Method::POST,
            &with(&[("origin", "https://evil.example")]),
            host
        ));
        assert!(!same_origin(
            &Method::POST,
            &with(&[("origin", "http://gw.example:8443")]),
            host
        ));
        assert!(!same_origin(
            &Method::POST,
            &with(&[("origin", "null")]),
            host
        ));
        assert!(
            same_origin(&Method::POST, &HeaderMap::new(), host),
            "no browser, no forgery"
        );
    }
}
