//! `/login`, `/login/enrol`, `/logout`: password and second factor; a
//! first login enrols the second factor (TOTP, shown as a QR code).
//!
//! Throttled twice: per client address here (growing delays), per
//! account in the service. Every failure reads the same.

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use sealgate_api::ServiceError;
use sealgate_api::ops::accounts::{
    EnrolTotp, Login, LoginOutcome, Logout, SessionGrant, TotpEnrolment,
};
use serde::Deserialize;

use crate::server::ClientAddr;
use crate::{Chrome, WebState, client_ip, render, session, svg};

/// What every failed login says.
pub const FAILED: &str = "Wrong name, password or code.";

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    chrome: Chrome,
    name: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "enrol.html")]
pub struct EnrolPage {
    pub chrome: Chrome,
    pub action: &'static str,
    pub enrolment: String,
    pub account: String,
    pub secret: String,
    pub qr: String,
    pub error: Option<String>,
}

impl EnrolPage {
    pub fn new(
        chrome: Chrome,
        action: &'static str,
        e: &TotpEnrolment,
        error: Option<String>,
    ) -> EnrolPage {
        EnrolPage {
            chrome,
            action,
            enrolment: e.enrolment.clone(),
            account: e.account.clone(),
            secret: group4(&e.secret_base32),
            qr: svg::qr(&e.uri).unwrap_or_default(),
            error,
        }
    }
}

/// `ABCDEFGH…` as `ABCD EFGH …`, easier to type.
fn group4(s: &str) -> String {
    s.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `?done=` on the login page (fixed words only, never echoed).
#[derive(Deserialize, Default)]
pub struct LoginQuery {
    #[serde(default)]
    done: Option<String>,
}

pub async fn view_login_get(
    State(state): State<WebState>,
    axum::extract::Query(q): axum::extract::Query<LoginQuery>,
) -> Response {
    let notice = match q.done.as_deref() {
        Some("restored") => Some("The backup is restored: log in with an account from it."),
        _ => None,
    };
    render(&LoginPage {
        chrome: Chrome::public(&state, "Log in").with_notice(notice),
        name: String::new(),
        error: None,
    })
}

#[derive(Deserialize)]
pub struct LoginForm {
    name: String,
    password: String,
    #[serde(default)]
    code: String,
}

fn login_failed(state: &WebState, name: String, status: StatusCode, error: String) -> Response {
    let mut response = render(&LoginPage {
        chrome: Chrome::public(state, "Log in"),
        name,
        error: Some(error),
    });
    *response.status_mut() = status;
    response
}

/// Starts a session: the cookie, then the dashboard.
pub fn begin(grant: &SessionGrant, to: &str) -> Response {
    let mut response = Redirect::to(to).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session::set_cookie(&grant.id));
    response
}

fn wait_text(wait: std::time::Duration) -> String {
    format!(
        "Too many failed attempts from your address. Try again in {} s.",
        wait.as_secs().max(1)
    )
}

pub async fn view_login_post(
    State(state): State<WebState>,
    parts: Parts,
    Form(form): Form<LoginForm>,
) -> Response {
    let ip = client_ip(parts.extensions.get::<ClientAddr>());
    if let Err(wait) = state.throttle().check(ip) {
        return login_failed(
            &state,
            form.name,
            StatusCode::TOO_MANY_REQUESTS,
            wait_text(wait),
        );
    }
    let code = form.code.trim();
    let op = Login {
        name: form.name.trim().to_owned(),
        password: form.password,
        code: (!code.is_empty()).then(|| code.to_owned()),
    };
    match sealgate_api::run(state.service(), &session::anonymous(&parts), &op).await {
        Ok(LoginOutcome::Session(grant)) => {
            state.throttle().succeeded(ip);
            begin(&grant, "/dashboard")
        }
        Ok(LoginOutcome::Enrol(enrolment)) => {
            state.throttle().succeeded(ip);
            render(&EnrolPage::new(
                Chrome::public(&state, "Set up your second factor"),
                "/login/enrol",
                &enrolment,
                None,
            ))
        }
        Err(ServiceError::Busy { what }) => {
            login_failed(&state, op.name, StatusCode::TOO_MANY_REQUESTS, what)
        }
        Err(
            ServiceError::Invalid { .. }
            | ServiceError::NotFound { .. }
            | ServiceError::Denied { .. },
        ) => {
            state.throttle().failed(ip);
            login_failed(&state, op.name, StatusCode::UNAUTHORIZED, FAILED.to_owned())
        }
        Err(e) => crate::error::service_error(&e),
    }
}

#[derive(Deserialize)]
pub struct EnrolForm {
    enrolment: String,
    code: String,
    #[serde(default)]
    account: String,
    #[serde(default)]
    secret: String,
}

pub async fn view_enrol_post(
    State(state): State<WebState>,
    parts: Parts,
    Form(form): Form<EnrolForm>,
) -> Response {
    let ip = client_ip(parts.extensions.get::<ClientAddr>());
    if let Err(wait) = state.throttle().check(ip) {
        return login_failed(
            &state,
            String::new(),
            StatusCode::TOO_MANY_REQUESTS,
            wait_text(wait),
        );
    }
    let op = EnrolTotp {
        enrolment: form.enrolment.clone(),
        code: form.code.trim().to_owned(),
    };
    match sealgate_api::run(state.service(), &session::anonymous(&parts), &op).await {
        Ok(grant) => begin(&grant, "/dashboard"),
        Err(ServiceError::Invalid { .. }) => {
            state.throttle().failed(ip);
            let secret = form.secret.replace(' ', "");
            let enrolment = TotpEnrolment {
                enrolment: form.enrolment,
                uri: totp_uri(&form.account, &secret),
                account: form.account,
                secret_base32: secret,
            };
            let mut response = render(&EnrolPage::new(
                Chrome::public(&state, "Set up your second factor"),
                "/login/enrol",
                &enrolment,
                Some(
                    "That code is not right. Check the time on your phone and try the next code."
                        .to_owned(),
                ),
            ));
            *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            response
        }
        Err(ServiceError::NotFound { .. }) => Redirect::to("/login").into_response(),
        Err(e) => crate::error::service_error(&e),
    }
}

pub async fn view_logout_post(State(state): State<WebState>, parts: Parts) -> Response {
    if let Some(id) = session::presented(&parts.headers)
        && let Err(e) =
            sealgate_api::run(state.service(), &session::anonymous(&parts), &Logout { id }).await
    {
        tracing::warn!(error = %e, "web: logout failed");
    }
    let mut response = Redirect::to("/login").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session::clear_cookie());
    response
}

/// The `otpauth://` URI of a secret (what the QR code carries).
pub fn totp_uri(account: &str, secret_base32: &str) -> String {
    let account: String =
        percent_encoding::utf8_percent_encode(account, percent_encoding::NON_ALPHANUMERIC)
            .collect();
    format!(
        "otpauth://totp/Sealgate:{account}?secret={secret_base32}&issuer=Sealgate&algorithm=SHA1&digits=6&period=30"
    )
}
