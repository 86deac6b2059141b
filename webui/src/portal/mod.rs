//! The secure web mail portal's pages: external recipients confirm their
//! address, log in, read, download, delete and reply.
//!
//! Its own listener and host name (`[portal] listen`), its own router
//! ([`portal_app`]), its own cookie (`__Host-sealgate-portal`) and its
//! own session space (the daemon's `portal` accounts): an admin cookie
//! means nothing here and a portal cookie nothing on the admin UI. It
//! reuses the admin UI's machinery: the listener limits
//! ([`crate::server`]), the security headers and same-origin check
//! ([`crate::security`]), the login throttle ([`crate::throttle`]) and
//! the error pages.
//!
//! A message's HTML is shown only in a sandboxed `iframe` (no scripts, no
//! same origin) whose document is served by `/message/{id}/body` under its
//! own policy: nothing but inline styles and `data:` images, so no remote
//! image loads and nothing runs even if the sanitiser missed something.
//!
//! Push ([`push`]): the notification's attachment posts its ciphertext to
//! `/push/open` from a file; after sign-in the message shows on the same
//! page as pulled mail.
//!
//! Trusts: the portal service in process (`sealgate_api::portal`), which
//! resolves the session to its address; nothing from the network.

mod compose;
mod mailbox;
mod sessions;

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use sealgate_api::ServiceError;
use sealgate_api::portal::{
    MessageSummary, MessageView, PasskeyChallenge, PortalLogin, PortalService, Preferences,
    SessionInfo, SessionOrigin,
};
use serde::Deserialize;

use crate::server::{ClientAddr, Limits};

pub mod push;

/// The portal's cookie (never the admin UI's).
pub const COOKIE: &str = "__Host-sealgate-portal";

/// The policy of the portal's pages: the admin UI's, plus frames from
/// this origin (the message body).
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                            frame-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The policy of a message body: nothing runs, nothing loads.
pub const BODY_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
                            form-action 'none'; frame-ancestors 'self'; base-uri 'none'; sandbox";

/// The policy of a message body whose reader asked for its images: as
/// [`BODY_CSP`], and images over HTTPS load.
pub const BODY_IMAGES_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; \
                                   form-action 'none'; frame-ancestors 'self'; base-uri 'none'; sandbox";

/// The largest form a passkey's answer comes in (the daemon reads at most
/// 64 KB of its JSON).
const PASSKEY_BODY: usize = 128 * 1024;

#[derive(Clone)]
pub struct PortalState {
    service: Arc<dyn PortalService>,
    throttle: Arc<crate::throttle::Throttle>,
    /// Code requests per client address (each counts: no bulk mailing).
    codes: Arc<crate::throttle::Throttle>,
    /// Ciphertexts posted from push attachments, waiting for their reader.
    parking: Arc<push::Parking>,
    /// Push posts per client address (each counts until a message is
    /// read: nobody fills the parking from one address).
    opens: Arc<crate::throttle::Throttle>,
}

impl PortalState {
    pub fn new(service: Arc<dyn PortalService>) -> PortalState {
        PortalState {
            service,
            throttle: Arc::new(crate::throttle::Throttle::new(3)),
            codes: Arc::new(crate::throttle::Throttle::new(10)),
            parking: Arc::new(push::Parking::default()),
            opens: Arc::new(crate::throttle::Throttle::new(20)),
        }
    }
}

/// Marks a response as a message body (its own policy, framable by us),
/// and whether its images load.
#[derive(Clone, Copy)]
struct BodyDocument {
    images: bool,
}

/// `?images=1`: the reader asked for the images of this message (on the
/// page, passed on to its frame; never remembered).
#[derive(Debug, Default, Deserialize)]
pub(super) struct ShowImages {
    #[serde(default)]
    images: Option<String>,
}

impl ShowImages {
    pub(super) fn shown(&self) -> bool {
        self.images.as_deref() == Some("1")
    }
}

/// The portal's routes and layers, without sockets.
pub fn portal_app(state: PortalState, limits: &Limits) -> Router {
    Router::new()
        .route("/", get(view_login_get).post(view_login_post))
        .route("/code", get(view_code_get).post(view_code_post))
        .route("/enrol", post(view_enrol_post))
        .route("/enrol/totp", post(view_totp_post))
        .route(
            "/enrol/passkey",
            post(view_enrol_passkey_post).layer(axum::extract::DefaultBodyLimit::max(PASSKEY_BODY)),
        )
        .route("/login/passkey/totp", post(view_login_passkey_totp_post))
        .route(
            "/login/passkey",
            post(view_login_passkey_post).layer(axum::extract::DefaultBodyLimit::max(PASSKEY_BODY)),
        )
        .route("/reset/{token}", get(view_reset_get).post(view_reset_post))
        .route("/logout", post(view_logout_post))
        .route("/inbox", get(mailbox::view_inbox_get))
        .route("/message/{id}", get(view_message_get))
        .route("/message/{id}/body", get(view_body_get))
        .route("/message/{id}/attachment/{n}", get(view_attachment_get))
        .route("/message/{id}/delete", post(mailbox::view_delete_post))
        .route(
            "/message/{id}/reply",
            post(compose::view_reply_post).layer(big_body(limits)),
        )
        .route(
            "/message/{id}/reply-all",
            post(compose::view_reply_all_post).layer(big_body(limits)),
        )
        .route(
            "/compose",
            get(compose::view_compose_get)
                .post(compose::view_compose_post)
                .layer(big_body(limits)),
        )
        .route("/message/{id}/move", post(mailbox::view_move_post))
        .route("/folders", post(mailbox::view_folder_create_post))
        .route("/folders/rename", post(mailbox::view_folder_rename_post))
        .route("/folders/delete", post(mailbox::view_folder_delete_post))
        .route("/preferences", get(view_preferences_get))
        .route("/preferences/key", post(view_preferences_key_post))
        .route(
            "/preferences/sessions/end",
            post(sessions::view_session_end_post),
        )
        .route(
            "/preferences/sessions/end-others",
            post(sessions::view_sessions_end_others_post),
        )
        .route(
            "/preferences/language",
            post(view_preferences_language_post),
        )
        .route(
            "/preferences/delivery",
            post(view_preferences_delivery_post),
        )
        .route(
            "/preferences/password",
            post(view_preferences_password_post),
        )
        .route(
            "/preferences/passkey/new",
            post(view_preferences_passkey_new_post),
        )
        .route(
            "/preferences/passkey",
            post(view_preferences_passkey_post)
                .layer(axum::extract::DefaultBodyLimit::max(PASSKEY_BODY)),
        )
        .route(
            "/preferences/passkey/remove",
            post(view_preferences_passkey_remove_post),
        )
        .route(
            "/push/open",
            post(push::view_push_open_post)
                .layer(axum::extract::DefaultBodyLimit::max(limits.max_body_bytes)),
        )
        .route("/push/{handle}", get(push::view_push_get))
        .route("/push/{handle}/body", get(push::view_push_body_get))
        .route(
            "/push/{handle}/reply",
            post(compose::view_push_reply_post).layer(big_body(limits)),
        )
        .route(
            "/push/{handle}/reply-all",
            post(compose::view_push_reply_all_post).layer(big_body(limits)),
        )
        .route(
            "/push/{handle}/attachment/{n}",
            get(push::view_push_attachment_get),
        )
        .route("/static/{file}", get(crate::assets::view_static_get))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async { crate::WebError::NotFound.into_response() })
        .layer(axum::extract::DefaultBodyLimit::max(2 * 1024 * 1024))
        .layer(middleware::from_fn(same_origin))
        .layer(middleware::from_fn_with_state(
            limits.request_timeout,
            crate::security::timeout,
        ))
        .layer(middleware::from_fn(headers))
        .with_state(state)
}

/// The body limit of the forms that carry files (the listener's, not the
/// portal's 2 MB for other forms); the daemon checks the files' total.
fn big_body(limits: &Limits) -> axum::extract::DefaultBodyLimit {
    axum::extract::DefaultBodyLimit::max(limits.max_body_bytes)
}

/// The admin UI's same-origin check, except for the push attachment's
/// post (`push`), which parks ciphertext and changes nothing.
async fn same_origin(request: Request, next: Next) -> Response {
    if push::is_open_post(request.method(), request.uri().path()) {
        return next.run(request).await;
    }
    crate::security::csrf(request, next).await
}

/// The admin UI's headers, with the portal's policies.
async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let body = response.extensions().get::<BodyDocument>().copied();
    let h = response.headers_mut();
    crate::security::set_headers(h);
    if let Some(BodyDocument { images }) = body {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(if images { BODY_IMAGES_CSP } else { BODY_CSP }),
        );
        h.insert(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("SAMEORIGIN"),
        );
    } else {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PAGE_CSP),
        );
    }
    response
}

fn set_cookie(id: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}={id}; Path=/; Secure; HttpOnly; SameSite=Strict"
    ))
    .unwrap_or_else(|_| clear_cookie())
}

fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "__Host-sealgate-portal=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
    )
}

/// The portal session id the browser presents (the portal's cookie only).
pub fn presented(headers: &HeaderMap) -> Option<String> {
    crate::session::presented_in(headers, COOKIE)
}

/// A logged-in portal user: the session id (the service resolves it).
struct Reader {
    session: String,
    address: String,
}

impl axum::extract::FromRequestParts<PortalState> for Reader {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &PortalState,
    ) -> Result<Self, Response> {
        let Some(session) = presented(&parts.headers) else {
            return Err(Redirect::to("/").into_response());
        };
        match state.service.session(&session).await {
            Ok(address) => Ok(Reader { session, address }),
            Err(_) => {
                let mut r = Redirect::to("/").into_response();
                r.headers_mut().insert(header::SET_COOKIE, clear_cookie());
                Err(r)
            }
        }
    }
}

fn client(parts: Option<&ClientAddr>) -> std::net::IpAddr {
    crate::client_ip(parts)
}

fn error(e: &ServiceError) -> Response {
    crate::error::service_error(e)
}

fn render(t: &impl Template) -> Response {
    crate::render(t)
}

// ---- login ----------------------------------------------------------------

#[derive(Template)]
#[template(path = "portal/login.html")]
struct LoginPage {
    address: String,
    error: Option<String>,
    /// Signing in to read a pushed message (its handle).
    push: Option<String>,
}

#[derive(Deserialize, Default)]
struct AddressQuery {
    #[serde(default)]
    address: String,
    #[serde(default)]
    sent: Option<String>,
}

async fn view_login_get(Query(q): Query<AddressQuery>) -> Response {
    render(&LoginPage {
        address: q.address,
        error: None,
        push: None,
    })
}

#[derive(Deserialize)]
struct LoginForm {
    address: String,
    password: String,
    #[serde(default)]
    code: String,
}

async fn view_login_post(
    State(state): State<PortalState>,
    addr: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let ip = client(addr.as_ref().map(|a| &a.0));
    if let Err(wait) = state.throttle.check(ip) {
        return login_error(
            &form.address,
            &format!(
                "Too many attempts from your address. Try again in {} seconds.",
                wait.as_secs().max(1)
            ),
        );
    }
    let code = Some(form.code.trim()).filter(|c| !c.is_empty());
    match state
        .service
        .login(&form.address, &form.password, code, Some(ip.to_string()))
        .await
    {
        Ok(login) => {
            state.throttle.succeeded(ip);
            logged_in(&state, &headers, ip, login).await
        }
        Err(e) if e.is_temporary() => error(&e),
        Err(_) => {
            state.throttle.failed(ip);
            login_error(
                &form.address,
                "The address, password or code is not right, or the account is locked for a while.",
            )
        }
    }
}

fn login_error(address: &str, text: &str) -> Response {
    let mut r = render(&LoginPage {
        address: address.to_owned(),
        error: Some(text.to_owned()),
        push: None,
    });
    *r.status_mut() = StatusCode::UNAUTHORIZED;
    r
}

#[derive(Template)]
#[template(path = "portal/totp.html")]
struct TotpPage {
    enrolment: String,
    secret: String,
    uri: String,
    error: Option<String>,
    /// A passkey instead (needs JavaScript).
    passkey: Option<PasskeyChallenge>,
}

#[derive(Template)]
#[template(path = "portal/passkey_login.html")]
struct PasskeyLoginPage {
    challenge: PasskeyChallenge,
    /// The account also has TOTP.
    totp: bool,
}

/// A session begins (where it came from is recorded, then its cookie,
/// then the pushed message waiting or the inbox), or the second factor
/// is set up first. The one place the portal hands out a session.
async fn logged_in(
    state: &PortalState,
    headers: &HeaderMap,
    ip: std::net::IpAddr,
    login: PortalLogin,
) -> Response {
    match login {
        PortalLogin::Session(id) => {
            let agent = headers
                .get(header::USER_AGENT)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default();
            let origin = SessionOrigin {
                ip: ip.to_string(),
                agent,
            };
            // Only shown on /preferences: a failure does not stop the login.
            if let Err(e) = state.service.session_origin(&id, origin).await {
                tracing::warn!(error = %e, "portal: the session's origin not recorded");
            }
            let mut r = Redirect::to(&push::after_login(state, headers)).into_response();
            r.headers_mut().insert(header::SET_COOKIE, set_cookie(&id));
            r
        }
        PortalLogin::EnrolTotp {
            enrolment,
            secret_base32,
            uri,
            passkey,
        } => render(&TotpPage {
            enrolment,
            secret: secret_base32,
            uri,
            error: None,
            passkey,
        }),
        PortalLogin::Passkey { challenge, totp } => render(&PasskeyLoginPage { challenge, totp }),
    }
}

#[derive(Deserialize)]
struct PasskeyForm {
    ceremony: String,
    #[serde(default)]
    name: String,
    answer: String,
}

/// The second step of a login: the passkey's answer.
async fn view_login_passkey_post(
    State(state): State<PortalState>,
    addr: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
    Form(form): Form<PasskeyForm>,
) -> Response {
    let ip = client(addr.as_ref().map(|a| &a.0));
    let attempt = state
        .service
        .passkey_login(&form.ceremony, &form.answer, Some(ip.to_string()));
    second_step(
        &state,
        ip,
        &headers,
        attempt,
        "The passkey was not accepted, or the sign-in took too long. Log in again.",
    )
    .await
}

#[derive(Deserialize)]
struct PasskeyTotpForm {
    ceremony: String,
    code: String,
}

/// The second step of a login with the TOTP code instead of the passkey.
async fn view_login_passkey_totp_post(
    State(state): State<PortalState>,
    addr: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
    Form(form): Form<PasskeyTotpForm>,
) -> Response {
    let ip = client(addr.as_ref().map(|a| &a.0));
    let attempt =
        state
            .service
            .passkey_login_totp(&form.ceremony, &form.code, Some(ip.to_string()));
    second_step(
        &state,
        ip,
        &headers,
        attempt,
        "The code was not right, or the sign-in took too long. Log in again.",
    )
    .await
}

/// A login's second step (the passkey, or the TOTP code in its place),
/// throttled per client address like the first: `attempt` runs only if
/// the address may try; `refused` is what a wrong answer shows.
async fn second_step(
    state: &PortalState,
    ip: std::net::IpAddr,
    headers: &HeaderMap,
    attempt: impl std::future::Future<Output = Result<String, ServiceError>>,
    refused: &str,
) -> Response {
    if let Err(wait) = state.throttle.check(ip) {
        return login_error(
            "",
            &format!(
                "Too many attempts from your address. Try again in {} seconds.",
                wait.as_secs().max(1)
            ),
        );
    }
    match attempt.await {
        Ok(id) => {
            state.throttle.succeeded(ip);
            logged_in(state, headers, ip, PortalLogin::Session(id)).await
        }
        Err(e) if e.is_temporary() => error(&e),
        Err(_) => {
            state.throttle.failed(ip);
            login_error("", refused)
        }
    }
}

/// Enrolment's second factor as a passkey instead of TOTP.
async fn view_enrol_passkey_post(
    State(state): State<PortalState>,
    addr: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
    Form(form): Form<PasskeyForm>,
) -> Response {
    let ip = client(addr.as_ref().map(|a| &a.0));
    if state.throttle.check(ip).is_err() {
        return login_error(
            "",
            "Too many attempts from your address; try again in a minute.",
        );
    }
    match state
        .service
        .passkey_enrol(&form.ceremony, &form.name, &form.answer)
        .await
    {
        Ok(id) => logged_in(&state, &headers, ip, PortalLogin::Session(id)).await,
        Err(e) if e.is_temporary() => error(&e),
        Err(e) => {
            state.throttle.failed(ip);
            let text = match e {
                ServiceError::Invalid { errors } => messages(errors),
                _ => "The passkey was not accepted.".to_owned(),
            };
            // The password is set: logging in again offers the second
            // factor again.
            login_error(
                "",
                &format!("{text} Log in with your new password to set up the second factor again."),
            )
        }
    }
}

// ---- first visit: code, password, second factor -----------------------------

#[derive(Template)]
#[template(path = "portal/code.html")]
struct CodePage {
    address: String,
    sent: bool,
    error: Option<String>,
}

async fn view_code_get(Query(q): Query<AddressQuery>) -> Response {
    render(&CodePage {
        address: q.address,
        sent: q.sent.is_some(),
        error: None,
    })
}

#[derive(Deserialize)]
struct CodeForm {
    address: String,
}

async fn view_code_post(
    State(state): State<PortalState>,
    addr: Option<axum::Extension<ClientAddr>>,
    Form(form): Form<CodeForm>,
) -> Response {
    let ip = client(addr.as_ref().map(|a| &a.0));
    if state.codes.check(ip).is_err() {
        return error(&ServiceError::Busy {
            what: "Too many attempts from your address; try again in a minute.".into(),
        });
    }
    // Every request counts: codes cannot be asked for in bulk.
    state.codes.failed(ip);
    match state
        .service
        .request_code(&form.address, Some(ip.to_string()))
        .await
    {
        // The same answer whether or not a code went out.
        Ok(()) => render(&CodePage {
            address: form.address,
            sent: true,
            error: None,
        }),
        Err(ServiceError::Invalid { .. }) => render(&CodePage {
            address: form.address,
            sent: false,
            error: Some("This is not a mail address.".into()),
        }),
        Err(e) => error(&e),
    }
}

#[derive(Deserialize)]
struct EnrolForm {
    address: String,
    code: String,
    password: String,
    password2: String,
}

async fn view_enrol_post(
    State(state): State<PortalState>,
    addr: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
    Form(form): Form<EnrolForm>,
) -> Response {
    let ip = client(addr.as_ref().map(|a| &a.0));
    let again = |text: String| {
        let mut r = render(&CodePage {
            address: form.address.clone(),
            sent: true,
            error: Some(text),
        });
        *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        r
    };
    if state.throttle.check(ip).is_err() {
        return again("Too many attempts from your address; try again in a minute.".into());
    }
    if form.password != form.password2 {
        return again("The two passwords differ.".into());
    }
    match state
        .service
        .enrol(
            &form.address,
            &form.code,
            &form.password,
            Some(ip.to_string()),
        )
        .await
    {
        Ok(login) => logged_in(&state, &headers, ip, login).await,
        Err(ServiceError::Invalid { errors }) => {
            state.throttle.failed(ip);
            again(messages(errors))
        }
        Err(e) => error(&e),
    }
}

/// The messages of refused fields, as one line over a form.
fn messages(errors: Vec<sealgate_api::FieldError>) -> String {
    errors
        .into_iter()
        .map(|e| e.message)
        .collect::<Vec<_>>()
        .join(" ")
}

// ---- reset by the mailed link ------------------------------------------------

#[derive(Template)]
#[template(path = "portal/reset.html")]
struct ResetPage {
    token: String,
    /// `None`: the link is not valid (any more).
    address: Option<String>,
    error: Option<String>,
}

fn reset_page(token: String, address: Option<String>, error: Option<String>) -> Response {
    let status = match (&address, &error) {
        (None, _) => StatusCode::NOT_FOUND,
        (Some(_), Some(_)) => StatusCode::UNPROCESSABLE_ENTITY,
        (Some(_), None) => StatusCode::OK,
    };
    let mut r = render(&ResetPage {
        token,
        address,
        error,
    });
    *r.status_mut() = status;
    r
}

async fn view_reset_get(State(state): State<PortalState>, Path(token): Path<String>) -> Response {
    match state.service.reset_address(&token).await {
        Ok(address) => reset_page(token, Some(address), None),
        Err(e) if e.is_temporary() => error(&e),
        Err(ServiceError::Invalid { errors }) => reset_page(token, None, Some(messages(errors))),
        Err(e) => error(&e),
    }
}

#[derive(Deserialize)]
struct ResetForm {
    password: String,
    password2: String,
}

async fn view_reset_post(
    State(state): State<PortalState>,
    Path(token): Path<String>,
    addr: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
    Form(form): Form<ResetForm>,
) -> Response {
    let ip = client(addr.as_ref().map(|a| &a.0));
    // The link's own address, to show the form again over its error.
    let address = match state.service.reset_address(&token).await {
        Ok(address) => address,
        Err(ServiceError::Invalid { errors }) => {
            return reset_page(token, None, Some(messages(errors)));
        }
        Err(e) => return error(&e),
    };
    if state.throttle.check(ip).is_err() {
        let text = "Too many attempts from your address; try again in a minute.";
        return reset_page(token, Some(address), Some(text.into()));
    }
    if form.password != form.password2 {
        return reset_page(
            token,
            Some(address),
            Some("The two passwords differ.".into()),
        );
    }
    match state
        .service
        .reset(&token, &form.password, Some(ip.to_string()))
        .await
    {
        Ok(login) => logged_in(&state, &headers, ip, login).await,
        Err(ServiceError::Invalid { errors }) => {
            state.throttle.failed(ip);
            reset_page(token, Some(address), Some(messages(errors)))
        }
        Err(e) => error(&e),
    }
}

#[derive(Deserialize)]
struct TotpForm {
    enrolment: String,
    code: String,
    #[serde(default)]
    secret: String,
    #[serde(default)]
    uri: String,
}

async fn view_totp_post(
    State(state): State<PortalState>,
    addr: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
    Form(form): Form<TotpForm>,
) -> Response {
    let ip = client(addr.as_ref().map(|a| &a.0));
    match state
        .service
        .confirm_totp(&form.enrolment, &form.code)
        .await
    {
        Ok(id) => logged_in(&state, &headers, ip, PortalLogin::Session(id)).await,
        Err(e) if e.is_temporary() => error(&e),
        Err(_) => render(&TotpPage {
            enrolment: form.enrolment,
            secret: form.secret,
            uri: form.uri,
            error: Some("The code is not right. Enter the current one from your app.".into()),
            // The passkey's ceremony is not carried over: logging in again
            // offers it again.
            passkey: None,
        }),
    }
}

async fn view_logout_post(State(state): State<PortalState>, headers: HeaderMap) -> Response {
    if let Some(id) = presented(&headers) {
        let _ = state.service.logout(&id).await;
    }
    let mut r = Redirect::to("/").into_response();
    r.headers_mut().insert(header::SET_COOKIE, clear_cookie());
    r
}

// ---- mailbox ----------------------------------------------------------------

/// A date for people: `2026-12-04 23:10 UTC`.
pub fn when(ms: &u64) -> String {
    let secs = i64::try_from(*ms / 1000).unwrap_or(0);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .map(|t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        })
        .unwrap_or_default()
}

/// A key's end of validity: a date, or "no end date" for a key that has
/// none (the directory writes the largest time there).
pub fn valid_until(ms: &u64) -> String {
    match when(ms) {
        w if w.is_empty() => "no end date".to_owned(),
        w => w,
    }
}

/// A number of days for people: "1 day", "3 days".
pub fn days(n: &u64) -> String {
    if *n == 1 {
        "1 day".to_owned()
    } else {
        format!("{n} days")
    }
}

/// Days left before `ms`.
pub fn days_left(ms: &u64) -> u64 {
    // In milliseconds: a time taken in whole seconds is up to a second
    // early, and a message stored in that second showed a day too many.
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let now = u64::try_from(now).unwrap_or(0);
    ms.saturating_sub(now).div_ceil(86_400_000)
}

/// Sizes for people.
pub fn size(bytes: &u64) -> String {
    match *bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1024 * 1024 => format!("{} KB", b.div_ceil(1024)),
        b => format!("{:.1} MB", b as f64 / (1024.0 * 1024.0)),
    }
}

/// One line of the inbox, ready to show.
struct Row {
    id: String,
    from: String,
    subject: String,
    when: String,
    size: String,
    days_left: u64,
    read: bool,
    attachments: usize,
}

impl From<MessageSummary> for Row {
    fn from(m: MessageSummary) -> Row {
        Row {
            when: when(&m.stored_ms),
            size: size(&m.size),
            days_left: days_left(&m.expires_ms),
            id: m.id,
            from: m.from,
            subject: if m.subject.is_empty() {
                "(no subject)".into()
            } else {
                m.subject
            },
            read: m.read,
            attachments: m.attachments,
        }
    }
}

#[derive(Deserialize, Default)]
struct NoticeQuery {
    #[serde(default)]
    done: Option<String>,
}

#[derive(Template)]
#[template(path = "portal/message.html")]
struct MessagePage {
    address: String,
    message: MessageView,
    row: Row,
    /// Where the message can be moved (not where it is, not Sent).
    targets: Vec<sealgate_api::portal::mailbox::FolderInfo>,
    /// The list it is in, as a link.
    back: String,
    back_label: String,
    /// Where the body and attachments are: `/message/{id}` or `/push/{handle}`.
    base: String,
    /// A pushed message: not kept here, so no move or delete (reply goes).
    push: bool,
    /// The reader asked for the images (the frame's address says so too).
    images: bool,
    /// The reply's text as typed, shown again when it was refused.
    reply_text: String,
    /// Why the reply was refused.
    reply_error: Option<String>,
    /// The files' limit for the form's hint (`10 MB`).
    limit: String,
}

async fn view_message_get(
    State(state): State<PortalState>,
    reader: Reader,
    Path(id): Path<String>,
    Query(show): Query<ShowImages>,
) -> Response {
    message_page(&state, &reader, &id, None, show.shown()).await
}

/// A stored message's page; with `refused`, its reply form shows why
/// and the text again (422).
async fn message_page(
    state: &PortalState,
    reader: &Reader,
    id: &str,
    refused: Option<compose::Refused>,
    images: bool,
) -> Response {
    let message = match state.service.read(&reader.session, id).await {
        Ok(m) => m,
        Err(e) => return error(&e),
    };
    let folders = match state.service.folders(&reader.session).await {
        Ok(f) => f,
        Err(e) => return error(&e),
    };
    let here = message.summary.folder.clone();
    let back_label = folders
        .iter()
        .find(|f| f.name == here)
        .map_or_else(|| "Inbox".to_owned(), |f| f.label.clone());
    let status = if refused.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let (reply_text, reply_error) =
        refused.map_or((String::new(), None), |r| (r.text, Some(r.error)));
    let mut r = render(&MessagePage {
        address: reader.address.clone(),
        row: Row::from(message.summary.clone()),
        targets: folders
            .into_iter()
            .filter(|f| f.name != here && f.name != "sent")
            .collect(),
        back: mailbox::folder_url(&here),
        back_label,
        base: format!("/message/{}", message.summary.id),
        push: false,
        images,
        reply_text,
        reply_error,
        limit: compose::limit_text(state),
        message,
    });
    *r.status_mut() = status;
    r
}

/// The sanitised HTML of a message, as its own document for the sandboxed frame.
async fn view_body_get(
    State(state): State<PortalState>,
    reader: Reader,
    Path(id): Path<String>,
    Query(show): Query<ShowImages>,
) -> Response {
    match state.service.body(&reader.session, &id, show.shown()).await {
        Ok(html) => body_document(html, show.shown()),
        Err(e) => error(&e),
    }
}

/// A message's sanitised HTML as the sandboxed frame's document, under
/// the body's own policy.
fn body_document(html: String, images: bool) -> Response {
    let doc = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><base target=\"_blank\"></head><body>{html}</body></html>"
    );
    let mut r = (StatusCode::OK, axum::response::Html(doc)).into_response();
    r.extensions_mut().insert(BodyDocument { images });
    r
}

async fn view_attachment_get(
    State(state): State<PortalState>,
    reader: Reader,
    Path((id, n)): Path<(String, usize)>,
) -> Response {
    match state.service.attachment(&reader.session, &id, n).await {
        Ok(data) => download(data),
        Err(e) => error(&e),
    }
}

/// An attachment as a download (never shown inline: octet-stream,
/// `attachment`, and the headers' `nosniff`).
fn download(data: sealgate_api::portal::AttachmentData) -> Response {
    let mut r = (StatusCode::OK, data.bytes).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    let ascii: String = data
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-+ ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String =
        percent_encoding::utf8_percent_encode(&data.name, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    } else {
        h.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment"),
        );
    }
    r
}

// ---- preferences --------------------------------------------------------------

/// A language's name in itself, for the preferences page.
pub fn language_name(code: &str) -> &'static str {
    match code {
        "de" => "Deutsch",
        "en" => "English",
        _ => "another language",
    }
}

/// A delivery's name for the preferences page.
pub fn delivery_name(code: &str) -> &'static str {
    match code {
        "push" => "push (encrypted attachment)",
        "pull" => "pull (waits here, link by mail)",
        _ => "another way",
    }
}

#[derive(Template)]
#[template(path = "portal/preferences.html")]
struct PreferencesPage {
    address: String,
    prefs: Preferences,
    /// The address's live sessions, this one first.
    sessions: Vec<SessionInfo>,
    notice: Option<&'static str>,
    errors: crate::views::Errors,
}

async fn preferences_page(
    state: &PortalState,
    reader: &Reader,
    notice: Option<&'static str>,
    errors: crate::views::Errors,
) -> Response {
    let refused = !errors.is_empty();
    let sessions = match state.service.sessions(&reader.session).await {
        Ok(s) => s,
        Err(e) => return error(&e),
    };
    match state.service.preferences(&reader.session).await {
        Ok(prefs) => {
            let mut r = render(&PreferencesPage {
                address: reader.address.clone(),
                prefs,
                sessions,
                notice,
                errors,
            });
            if refused {
                *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            }
            r
        }
        Err(e) => error(&e),
    }
}

async fn view_preferences_get(
    State(state): State<PortalState>,
    reader: Reader,
    Query(q): Query<NoticeQuery>,
) -> Response {
    let notice = match q.done.as_deref() {
        Some("key") => Some(
            "Your key is stored: mail for you is encrypted to it from now on, and mail waiting for a key is being sent.",
        ),
        Some("language") => Some("Your language is saved."),
        Some("delivery") => Some("Your choice is saved: it applies to the next message."),
        Some("password") => Some("Your password is changed; your other sessions have ended."),
        Some("passkey") => Some("Your passkey is added."),
        Some("passkey-removed") => Some("The passkey is removed."),
        Some("session") => Some("The session is ended."),
        Some("sessions") => Some("Your other sessions are ended."),
        _ => None,
    };
    preferences_page(&state, &reader, notice, crate::views::Errors::default()).await
}

/// Answers a refused form on the page, anything else as an error page.
async fn refused_or(state: &PortalState, reader: &Reader, e: ServiceError) -> Response {
    match e {
        ServiceError::Invalid { errors } => {
            preferences_page(state, reader, None, crate::views::Errors(errors)).await
        }
        e => error(&e),
    }
}

async fn view_preferences_key_post(
    State(state): State<PortalState>,
    reader: Reader,
    request: Request,
) -> Response {
    let form = match crate::views::multipart::read(request).await {
        Ok(f) => f,
        Err(e) => return crate::WebError::BadRequest(e).into_response(),
    };
    let data = form.file_or_text("file", "text").unwrap_or_default();
    match state.service.upload_key(&reader.session, &data).await {
        Ok(_) => Redirect::to("/preferences?done=key").into_response(),
        Err(e) => refused_or(&state, &reader, e).await,
    }
}

#[derive(Deserialize)]
struct LanguageForm {
    #[serde(default)]
    language: String,
}

async fn view_preferences_language_post(
    State(state): State<PortalState>,
    reader: Reader,
    Form(form): Form<LanguageForm>,
) -> Response {
    let language = Some(form.language.trim()).filter(|l| !l.is_empty());
    match state.service.set_language(&reader.session, language).await {
        Ok(()) => Redirect::to("/preferences?done=language").into_response(),
        Err(e) => refused_or(&state, &reader, e).await,
    }
}

#[derive(Deserialize)]
struct DeliveryForm {
    #[serde(default)]
    delivery: String,
}

async fn view_preferences_delivery_post(
    State(state): State<PortalState>,
    reader: Reader,
    Form(form): Form<DeliveryForm>,
) -> Response {
    let delivery = Some(form.delivery.trim()).filter(|d| !d.is_empty());
    match state.service.set_delivery(&reader.session, delivery).await {
        Ok(()) => Redirect::to("/preferences?done=delivery").into_response(),
        Err(e) => refused_or(&state, &reader, e).await,
    }
}

#[derive(Deserialize)]
struct PasswordForm {
    current: String,
    new: String,
}

async fn view_preferences_password_post(
    State(state): State<PortalState>,
    reader: Reader,
    addr: Option<axum::Extension<ClientAddr>>,
    Form(form): Form<PasswordForm>,
) -> Response {
    let ip = client(addr.as_ref().map(|a| &a.0));
    if let Err(wait) = state.throttle.check(ip) {
        return refused_or(
            &state,
            &reader,
            ServiceError::invalid(
                "current",
                format!(
                    "Too many attempts from your address. Try again in {} seconds.",
                    wait.as_secs().max(1)
                ),
            ),
        )
        .await;
    }
    match state
        .service
        .change_password(&reader.session, &form.current, &form.new)
        .await
    {
        Ok(()) => {
            state.throttle.succeeded(ip);
            Redirect::to("/preferences?done=password").into_response()
        }
        Err(e) => {
            if matches!(&e, ServiceError::Invalid { errors } if errors.iter().any(|f| f.key == "current"))
            {
                state.throttle.failed(ip);
            }
            refused_or(&state, &reader, e).await
        }
    }
}

// ---- passkeys in the preferences ------------------------------------------------

#[derive(Template)]
#[template(path = "portal/passkey_add.html")]
struct PasskeyAddPage {
    address: String,
    challenge: PasskeyChallenge,
}

/// Begins adding a passkey: the page that asks the browser for it.
async fn view_preferences_passkey_new_post(
    State(state): State<PortalState>,
    reader: Reader,
) -> Response {
    match state.service.passkey_add_begin(&reader.session).await {
        Ok(challenge) => render(&PasskeyAddPage {
            address: reader.address,
            challenge,
        }),
        Err(e) => refused_or(&state, &reader, e).await,
    }
}

async fn view_preferences_passkey_post(
    State(state): State<PortalState>,
    reader: Reader,
    Form(form): Form<PasskeyForm>,
) -> Response {
    match state
        .service
        .passkey_add(&reader.session, &form.ceremony, &form.name, &form.answer)
        .await
    {
        Ok(()) => Redirect::to("/preferences?done=passkey").into_response(),
        Err(e) => refused_or(&state, &reader, e).await,
    }
}

#[derive(Deserialize)]
struct PasskeyRemoveForm {
    id: String,
}

async fn view_preferences_passkey_remove_post(
    State(state): State<PortalState>,
    reader: Reader,
    Form(form): Form<PasskeyRemoveForm>,
) -> Response {
    match state
        .service
        .passkey_remove(&reader.session, &form.id)
        .await
    {
        Ok(()) => Redirect::to("/preferences?done=passkey-removed").into_response(),
        Err(e) => refused_or(&state, &reader, e).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_portal_cookie_counts() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("__Host-sealgate=admin123"),
        );
        assert_eq!(presented(&h), None);
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("__Host-sealgate=admin123; __Host-sealgate-portal=p_1"),
        );
        assert_eq!(presented(&h).as_deref(), Some("p_1"));
        assert_eq!(crate::session::presented(&h).as_deref(), Some("admin123"));
    }

    #[test]
    fn a_day_from_now_is_one_day_left() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
        assert_eq!(days_left(&(now + 86_400_000)), 1);
        assert_eq!(days_left(&(now + 2 * 86_400_000)), 2);
        assert_eq!(days_left(&now.saturating_sub(1)), 0);
        assert_eq!(days(&1), "1 day");
        assert_eq!(days(&3), "3 days");
        assert_eq!(valid_until(&u64::MAX), "no end date");
    }
}
