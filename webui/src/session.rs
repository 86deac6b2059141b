//! The session cookie and the guards that read it.
//!
//! The browser keeps one cookie, `__Host-sealgate`: `Secure`, `HttpOnly`,
//! `SameSite=Strict`, `Path=/`, no `Domain` (the `__Host-` prefix makes
//! the browser enforce those), no expiry (it dies with the browser; the
//! server ends it after 15 minutes idle or 8 hours). Its value is a
//! session id the admin service handed out; the service stores only its
//! hash and decides whether it is alive, so a session ends on the server
//! at logout, whatever the browser keeps.
//!
//! Guards, as extractors: [`Account`] (a logged-in account; a browser
//! without one is sent to the login page) and [`SetupSession`] (the
//! setup wizard). The actor a handler passes to the service is built
//! here, from the session alone.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use sealgate_api::ops::accounts::{SessionCheck, SessionInfo, SessionKind};
use sealgate_api::{Actor, ServiceError, Via};

use crate::WebState;
use crate::server::ClientAddr;

/// The cookie's name (the prefix makes browsers insist on Secure, Path=/, no Domain).
pub const COOKIE: &str = "__Host-sealgate";

/// `Set-Cookie` for a new session id.
pub fn set_cookie(id: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}={id}; Path=/; Secure; HttpOnly; SameSite=Strict"
    ))
    .unwrap_or_else(|_| {
        HeaderValue::from_static(
            "__Host-sealgate=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
        )
    })
}

/// `Set-Cookie` that removes the cookie.
pub fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "__Host-sealgate=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
    )
}

/// The session id the browser presents, if any (only characters a session id has).
pub fn presented(headers: &HeaderMap) -> Option<String> {
    presented_in(headers, COOKIE)
}

/// The value of the cookie `name` the browser presents, if it has only
/// characters a session id has (the admin UI's and the portal's cookies).
pub fn presented_in(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The client's address as text (for the actor and the audit log).
pub fn client(parts: &Parts) -> Option<String> {
    parts
        .extensions
        .get::<ClientAddr>()
        .map(|c| c.0.ip().to_string())
}

/// Someone not logged in (for public operations: login, setup unlock).
pub fn anonymous(parts: &Parts) -> Actor {
    Actor::anonymous(Via::Web, client(parts))
}

/// Looks the presented session up (its idle timer starts again).
pub async fn lookup(state: &WebState, parts: &Parts) -> Option<(String, SessionInfo)> {
    let id = presented(&parts.headers)?;
    let op = SessionCheck {
        id: id.clone(),
        touch: true,
    };
    match sealgate_api::run(state.service(), &anonymous(parts), &op).await {
        Ok(info) => Some((id, info)),
        Err(ServiceError::NotFound { .. }) => None,
        Err(e) => {
            tracing::warn!(error = %e, "web: session lookup failed");
            None
        }
    }
}

/// A logged-in account.
pub struct Account {
    /// The session id (for logout).
    pub id: String,
    pub session: SessionInfo,
    pub actor: Actor,
}

impl FromRequestParts<WebState> for Account {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, Response> {
        match lookup(state, parts).await {
            Some((id, session)) if session.kind == SessionKind::Account => Ok(Account {
                actor: Actor {
                    name: session.account.clone(),
                    role: session.role,
                    via: Via::Web,
                    from: client(parts),
                },
                id,
                session,
            }),
            Some((_, session)) if session.kind == SessionKind::Setup => {
                Err(Redirect::to("/setup").into_response())
            }
            _ => Err(login_redirect()),
        }
    }
}

impl Account {
    /// `Some(403 page)` when the role cannot do what `needs` names: the
    /// page is refused before the service is asked (which checks again
    /// and audits the denial when asked).
    pub fn refuse(&self, needs: sealgate_api::Permission) -> Option<Response> {
        if self.session.role.allows(needs) {
            return None;
        }
        Some(crate::error::service_error(&ServiceError::Denied {
            operation: format!("{needs:?}"),
            role: self.session.role,
        }))
    }
}

fn login_redirect() -> Response {
    let mut response = Redirect::to("/login").into_response();
    // A dead session's cookie is removed, so the browser stops presenting it.
    response
        .headers_mut()
        .insert(header::SET_COOKIE, clear_cookie());
    response
}

/// The setup wizard's session (opened with the setup token).
pub struct SetupSession {
    pub session: SessionInfo,
    pub actor: Actor,
}

impl FromRequestParts<WebState> for SetupSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, Response> {
        match lookup(state, parts).await {
            Some((_, session)) if session.kind == SessionKind::Setup => Ok(SetupSession {
                actor: Actor {
                    name: session.account.clone(),
                    role: session.role,
                    via: Via::Web,
                    from: client(parts),
                },
                session,
            }),
            _ => Err(Redirect::to("/setup").into_response()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_read_strictly() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; __Host-sealgate=abc_DEF-123; c=d"),
        );
        assert_eq!(presented(&h).as_deref(), Some("abc_DEF-123"));
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("__Host-sealgate=<script>"),
        );
        assert_eq!(presented(&h), None);
        h.insert(header::COOKIE, HeaderValue::from_static("sealgate=abc"));
        assert_eq!(presented(&h), None);
        let set = set_cookie("abc");
        let text = set.to_str().unwrap_or_default();
        for flag in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(text.contains(flag), "{text}");
        }
    }
}
