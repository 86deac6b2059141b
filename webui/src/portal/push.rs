//! The portal's side of **push**: the notification's attachment
//! (`sealgate::portal::push::page`) is a page opened from a file whose
//! form posts the message id and the ciphertext to `/push/open`.
//!
//! That post comes from another origin (a `file://` page, `Origin: null`)
//! and carries neither a CSRF token nor the portal's cookie (SameSite
//! Strict), so it may change nothing: it only parks the ciphertext — which
//! opens for nobody without the recipient's session and the token — for
//! 15 minutes under a random handle, bounded in count and bytes, and sends
//! the browser to `/push/{handle}`. There the recipient signs in (or
//! confirms the address with a code: a live push counts as mail waiting)
//! and reads the message on the same page as pulled mail; the daemon
//! looks the key up under the session's address only, so another
//! address's session gets the same 404 as an unknown handle.
//!
//! After signing in, the browser returns to the message through the
//! short cookie `__Host-sealgate-push` (the handle, SameSite Lax: it names
//! ciphertext, it proves nothing).
//!
//! Trusts: nothing posted (shape-checked, bounded; the daemon
//! authenticates the ciphertext).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use sealgate_api::ServiceError;
use serde::Deserialize;

use super::{LoginPage, MessagePage, PortalState, Row, error, render};
use crate::server::ClientAddr;

/// The cookie that brings the browser back to the message after sign-in.
pub const RETURN_COOKIE: &str = "__Host-sealgate-push";

/// How long a posted ciphertext waits for its reader.
const LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Ciphertexts parked at once, and their bytes.
const MAX_PARKED: usize = 256;
const MAX_PARKED_BYTES: usize = 256 * 1024 * 1024;

struct Parked {
    id: String,
    sealed: Arc<Vec<u8>>,
    until: Instant,
}

/// Posted ciphertexts, by handle, for 15 minutes.
#[derive(Default)]
pub struct Parking {
    parked: Mutex<HashMap<String, Parked>>,
}

/// Why a ciphertext could not be parked.
#[derive(Debug, PartialEq, Eq)]
pub enum ParkError {
    /// As many as allowed wait already: try again in a while.
    Full,
}

impl Parking {
    /// Parks `sealed` (message `id`); answers the new handle.
    pub fn park(&self, id: String, sealed: Vec<u8>, now: Instant) -> Result<String, ParkError> {
        let mut parked = self.parked.lock().map_err(|_| ParkError::Full)?;
        parked.retain(|_, p| p.until > now);
        let bytes: usize = parked.values().map(|p| p.sealed.len()).sum();
        if parked.len() >= MAX_PARKED || bytes.saturating_add(sealed.len()) > MAX_PARKED_BYTES {
            return Err(ParkError::Full);
        }
        let handle = new_handle();
        parked.insert(
            handle.clone(),
            Parked {
                id,
                sealed: Arc::new(sealed),
                until: now + LIFETIME,
            },
        );
        Ok(handle)
    }

    /// The message id and ciphertext parked under `handle`, while it lasts.
    pub fn get(&self, handle: &str, now: Instant) -> Option<(String, Arc<Vec<u8>>)> {
        if !valid_handle(handle) {
            return None;
        }
        let parked = self.parked.lock().ok()?;
        parked
            .get(handle)
            .filter(|p| p.until > now)
            .map(|p| (p.id.clone(), Arc::clone(&p.sealed)))
    }
}

fn new_handle() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 32 lower-case hex digits: a handle or a message id.
fn valid_handle(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Where a fresh session goes: back to a parked push message, else the inbox.
pub fn after_login(state: &PortalState, headers: &HeaderMap) -> String {
    crate::session::presented_in(headers, RETURN_COOKIE)
        .filter(|h| state.parking.get(h, Instant::now()).is_some())
        .map_or_else(|| "/inbox".to_owned(), |h| format!("/push/{h}"))
}

/// Whether a request is the attachment's cross-site post (the one route
/// the same-origin check lets through: it changes nothing).
pub fn is_open_post(method: &axum::http::Method, path: &str) -> bool {
    *method == axum::http::Method::POST && path == "/push/open"
}

#[derive(Deserialize)]
pub(super) struct OpenForm {
    id: String,
    data: String,
}

/// `POST /push/open`: park the posted ciphertext, go to its page.
pub(super) async fn view_push_open_post(
    State(state): State<PortalState>,
    addr: Option<axum::Extension<ClientAddr>>,
    Form(form): Form<OpenForm>,
) -> Response {
    use base64::Engine as _;
    let ip = super::client(addr.as_ref().map(|a| &a.0));
    if state.opens.check(ip).is_err() {
        return error(&ServiceError::Busy {
            what: "Too many messages opened from your address; try again in a minute.".into(),
        });
    }
    // Every post counts until a message is read from this address.
    state.opens.failed(ip);
    let compact: String = form
        .data
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let sealed = base64::engine::general_purpose::STANDARD.decode(compact.as_bytes());
    let (true, Ok(sealed)) = (valid_handle(&form.id), sealed) else {
        return crate::WebError::BadRequest(
            "This is not a secure message from this gateway (the attachment is damaged).",
        )
        .into_response();
    };
    match state.parking.park(form.id, sealed, Instant::now()) {
        Ok(handle) => {
            let mut r = Redirect::to(&format!("/push/{handle}")).into_response();
            if let Ok(v) = HeaderValue::from_str(&format!(
                "{RETURN_COOKIE}={handle}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=900"
            )) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Err(ParkError::Full) => error(&ServiceError::Busy {
            what: "Many messages are being opened just now; try again in a few minutes.".into(),
        }),
    }
}

fn not_found() -> Response {
    error(&ServiceError::NotFound {
        what: "message".into(),
    })
}

/// A parked message and the session asking for it.
pub(super) struct Opening {
    pub session: String,
    pub address: String,
    pub id: String,
    pub sealed: Arc<Vec<u8>>,
}

/// The parked message and the session, or the answer to give instead.
pub(super) async fn reader_and_parked(
    state: &PortalState,
    headers: &HeaderMap,
    handle: &str,
) -> Result<Opening, Response> {
    let Some((id, sealed)) = state.parking.get(handle, Instant::now()) else {
        return Err(not_found());
    };
    let session = super::presented(headers);
    let address = match &session {
        Some(s) => state.service.session(s).await.ok(),
        None => None,
    };
    match (session, address) {
        (Some(session), Some(address)) => Ok(Opening {
            session,
            address,
            id,
            sealed,
        }),
        // No session (or the Strict cookie was not sent after the
        // cross-site post): sign in, then back here.
        _ => Err(render(&LoginPage {
            address: String::new(),
            error: None,
            push: Some(handle.to_owned()),
        })),
    }
}

/// `GET /push/{handle}`: the message, on the pulled mail's page.
pub(super) async fn view_push_get(
    State(state): State<PortalState>,
    addr: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
    Path(handle): Path<String>,
    Query(show): Query<super::ShowImages>,
) -> Response {
    let o = match reader_and_parked(&state, &headers, &handle).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let client = super::client(addr.as_ref().map(|a| &a.0));
    let page = push_page(&state, o, &handle, None, show.shown()).await;
    if page.status().is_success() {
        state.opens.succeeded(client);
    }
    page
}

/// A pushed message on the pulled mail's page, with its reply form;
/// with `refused`, the form shows why and the text again (422).
pub(super) async fn push_page(
    state: &PortalState,
    o: Opening,
    handle: &str,
    refused: Option<super::compose::Refused>,
    images: bool,
) -> Response {
    match state.service.open_push(&o.session, &o.id, o.sealed).await {
        Ok(message) => {
            let status = if refused.is_some() {
                axum::http::StatusCode::UNPROCESSABLE_ENTITY
            } else {
                axum::http::StatusCode::OK
            };
            let (reply_text, reply_error) =
                refused.map_or((String::new(), None), |r| (r.text, Some(r.error)));
            let mut r = render(&MessagePage {
                address: o.address,
                row: Row::from(message.summary.clone()),
                targets: Vec::new(),
                back: "/inbox".into(),
                back_label: "Inbox".into(),
                base: format!("/push/{handle}"),
                push: true,
                images,
                reply_text,
                reply_error,
                limit: super::compose::limit_text(state),
                message,
            });
            *r.status_mut() = status;
            r
        }
        Err(e) => error(&e),
    }
}

/// `GET /push/{handle}/body`: the sanitised HTML for the sandboxed frame.
pub(super) async fn view_push_body_get(
    State(state): State<PortalState>,
    headers: HeaderMap,
    Path(handle): Path<String>,
    Query(show): Query<super::ShowImages>,
) -> Response {
    // A frame or a download without a session: nothing to sign in to here.
    let Ok(o) = reader_and_parked(&state, &headers, &handle).await else {
        return not_found();
    };
    match state
        .service
        .push_body(&o.session, &o.id, o.sealed, show.shown())
        .await
    {
        Ok(html) => super::body_document(html, show.shown()),
        Err(e) => error(&e),
    }
}

/// `GET /push/{handle}/attachment/{n}`: a download, never shown inline.
pub(super) async fn view_push_attachment_get(
    State(state): State<PortalState>,
    headers: HeaderMap,
    Path((handle, n)): Path<(String, usize)>,
) -> Response {
    let Ok(o) = reader_and_parked(&state, &headers, &handle).await else {
        return not_found();
    };
    match state
        .service
        .push_attachment(&o.session, &o.id, o.sealed, n)
        .await
    {
        Ok(data) => super::download(data),
        Err(e) => error(&e),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parking_is_bounded_and_short() {
        let parking = Parking::default();
        let now = Instant::now();
        let h = parking.park("a".repeat(32), vec![1, 2, 3], now).unwrap();
        assert!(valid_handle(&h));
        let (id, sealed) = parking.get(&h, now).unwrap();
        assert_eq!(
            (id.as_str(), sealed.as_slice()),
            ("a".repeat(32).as_str(), &[1u8, 2, 3][..])
        );
        assert!(parking.get(&h, now + LIFETIME).is_none());
        assert!(parking.get("../x", now).is_none());
        assert_eq!(
            parking.park("b".repeat(32), vec![0; MAX_PARKED_BYTES], now),
            Err(ParkError::Full)
        );
        for _ in 1..MAX_PARKED {
            parking.park("c".repeat(32), vec![0], now).unwrap();
        }
        assert_eq!(
            parking.park("d".repeat(32), vec![0], now),
            Err(ParkError::Full)
        );
        // Expired ones make room.
        assert!(
            parking
                .park("e".repeat(32), vec![0], now + LIFETIME)
                .is_ok()
        );
    }

    #[test]
    fn only_the_open_post_passes_without_the_same_origin() {
        assert!(is_open_post(&axum::http::Method::POST, "/push/open"));
        assert!(!is_open_post(&axum::http::Method::POST, "/push/open/x"));
        assert!(!is_open_post(&axum::http::Method::POST, "/"));
    }
}
