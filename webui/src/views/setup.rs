//! The first-run setup wizard (`/setup/*`), open only while the gateway
//! is not set up.
//!
//! 1. unlock with the one-time setup token (typed into the form, or an
//!    `Authorization: Bearer` header for automation; never in a URL);
//! 2. the first administrator: name, password, TOTP (cannot be skipped);
//! 3. identity: hostname, our domains, internal networks;
//! 4. delivery: MX or smart host, domains that require TLS, the internal
//!    mail server;
//! 5. the TLS certificate;
//! 6. the gateway's keys;
//! 7. the default policy;
//! 8. review and apply: one settings version by the new administrator,
//!    the token burned, the browser logged in.
//!
//! Each step saves into the service's draft, so an interrupted wizard
//! resumes where it stopped (`/setup` goes to the furthest step).

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use std::ops::Not;

use sealgate_api::ops::delivery::{DeliveryTest, DeliveryTestReport};
use sealgate_api::ops::keys::{KeyStoreView, KeysList, TlsUpload};
use sealgate_api::ops::setup::{
    CertificateChoice, SetupAdmin, SetupAdminConfirm, SetupDraft, SetupDraftGet, SetupFinish,
    SetupSave, SetupStatus, SetupUnlock,
};
use sealgate_api::settings::policy::Action;
use sealgate_api::settings::{DeliveryMode, IpNetwork, Settings};
use sealgate_api::{ServiceError, run};
use serde::Deserialize;

use super::login::{EnrolPage, begin};
use super::{Errors, lines};
use crate::server::ClientAddr;
use crate::session::{SetupSession, anonymous};
use crate::{Chrome, WebState, client_ip, render};

/// The steps, in order: (path segment, label).
pub const STEPS: [(&str, &str); 7] = [
    ("admin", "Administrator"),
    ("identity", "Identity"),
    ("delivery", "Delivery"),
    ("certificate", "Certificate"),
    ("keys", "Gateway keys"),
    ("policy", "Policy"),
    ("review", "Review"),
];

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/setup", get(view_setup_get))
        .route("/setup/unlock", post(view_unlock_post))
        .route("/setup/admin", get(view_admin_get).post(view_admin_post))
        .route("/setup/admin/confirm", post(view_admin_confirm_post))
        .route(
            "/setup/identity",
            get(view_identity_get).post(view_identity_post),
        )
        .route(
            "/setup/delivery",
            get(view_delivery_get).post(view_delivery_post),
        )
        .route("/setup/delivery/test", post(view_delivery_test_post))
        .route(
            "/setup/certificate",
            get(view_certificate_get).post(view_certificate_post),
        )
        .route("/setup/keys", get(view_keys_get).post(view_keys_post))
        .route("/setup/keys/smime", post(view_keys_smime_post))
        .route("/setup/keys/openpgp", post(view_keys_openpgp_post))
        .route("/setup/policy", get(view_policy_get).post(view_policy_post))
        .route("/setup/review", get(view_review_get))
        .route("/setup/finish", post(view_finish_post))
}

/// A step of the progress list.
pub struct StepItem {
    pub label: &'static str,
    pub class: &'static str,
}

fn steps(current: &str, reached: &str) -> Vec<StepItem> {
    let reached_at = STEPS.iter().position(|(s, _)| *s == reached).unwrap_or(0);
    STEPS
        .iter()
        .enumerate()
        .map(|(i, (slug, label))| StepItem {
            label,
            class: if *slug == current {
                "current"
            } else if i < reached_at {
                "done"
            } else {
                ""
            },
        })
        .collect()
}

fn next_of(step: &str) -> &'static str {
    let at = STEPS.iter().position(|(s, _)| *s == step).unwrap_or(0);
    STEPS.get(at + 1).map_or("review", |(s, _)| s)
}

/// Whichever is further: the draft's step or `step`.
fn further(draft_step: &str, step: &'static str) -> String {
    let pos = |s: &str| STEPS.iter().position(|(x, _)| *x == s).unwrap_or(0);
    if pos(step) > pos(draft_step) {
        step.to_owned()
    } else {
        draft_step.to_owned()
    }
}

#[derive(Template)]
#[template(path = "setup_unlock.html")]
struct UnlockPage {
    chrome: Chrome,
    error: Option<String>,
    closed: bool,
}

/// `GET /setup`: the unlock form, or the step the wizard reached.
pub async fn view_setup_get(State(state): State<WebState>, parts: Parts) -> Response {
    let status = match run(state.service(), &anonymous(&parts), &SetupStatus {}).await {
        Ok(s) => s,
        Err(e) => return crate::error::service_error(&e),
    };
    if !status.open {
        if status.completed {
            return Redirect::to("/login").into_response();
        }
        return render(&UnlockPage {
            chrome: Chrome::public(&state, "Setup"),
            error: None,
            closed: true,
        });
    }
    if let Some((_, s)) = crate::session::lookup(&state, &parts).await
        && s.kind == sealgate_api::ops::accounts::SessionKind::Setup
    {
        let actor = sealgate_api::Actor {
            name: s.account,
            role: s.role,
            via: sealgate_api::Via::Web,
            from: crate::session::client(&parts),
        };
        let step = match run(state.service(), &actor, &SetupDraftGet {}).await {
            Ok(d) => d.step,
            Err(_) => "admin".to_owned(),
        };
        let slug = STEPS
            .iter()
            .find(|(s, _)| *s == step)
            .map_or("admin", |(s, _)| s);
        return Redirect::to(&format!("/setup/{slug}")).into_response();
    }
    render(&UnlockPage {
        chrome: Chrome::public(&state, "Set up Sealgate"),
        error: None,
        closed: false,
    })
}

#[derive(Deserialize)]
pub struct UnlockForm {
    #[serde(default)]
    token: String,
}

/// `POST /setup/unlock`: the token from the form or `Authorization: Bearer`.
pub async fn view_unlock_post(
    State(state): State<WebState>,
    parts: Parts,
    Form(form): Form<UnlockForm>,
) -> Response {
    let ip = client_ip(parts.extensions.get::<ClientAddr>());
    let refuse = |status: StatusCode, error: String| {
        let mut response = render(&UnlockPage {
            chrome: Chrome::public(&state, "Set up Sealgate"),
            error: Some(error),
            closed: false,
        });
        *response.status_mut() = status;
        response
    };
    if let Err(wait) = state.throttle().check(ip) {
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many wrong tokens from your address. Try again in {} s.",
                wait.as_secs().max(1)
            ),
        );
    }
    let bearer = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let token = bearer.unwrap_or(form.token);
    // People copy tokens with spaces around or between groups.
    let token: String = token.chars().filter(|c| !c.is_whitespace()).collect();
    match run(state.service(), &anonymous(&parts), &SetupUnlock { token }).await {
        Ok(grant) => {
            state.throttle().succeeded(ip);
            begin(&grant, "/setup/admin")
        }
        Err(ServiceError::Busy { what }) => refuse(StatusCode::TOO_MANY_REQUESTS, what),
        Err(ServiceError::Invalid { .. } | ServiceError::Denied { .. }) => {
            state.throttle().failed(ip);
            refuse(
                StatusCode::UNAUTHORIZED,
                "That is not the setup token. It is shown on the appliance's console (32 characters, 0-9 and a-f)."
                    .to_owned(),
            )
        }
        Err(ServiceError::NotFound { .. }) => Redirect::to("/setup").into_response(),
        Err(e) => crate::error::service_error(&e),
    }
}

async fn draft(state: &WebState, s: &SetupSession) -> Result<SetupDraft, Response> {
    run(state.service(), &s.actor, &SetupDraftGet {})
        .await
        .map_err(|e| match e {
            ServiceError::Denied { .. } | ServiceError::NotFound { .. } => {
                Redirect::to("/setup").into_response()
            }
            e => crate::error::service_error(&e),
        })
}

fn wizard_chrome(state: &WebState, title: &str) -> Chrome {
    Chrome::public(state, title)
}

// ---- 2. administrator --------------------------------------------------

#[derive(Template)]
#[template(path = "setup_admin.html")]
struct AdminPage {
    chrome: Chrome,
    steps: Vec<StepItem>,
    name: String,
    errors: Errors,
    done: Option<String>,
}

pub async fn view_admin_get(State(state): State<WebState>, s: SetupSession) -> Response {
    let d = match draft(&state, &s).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let done = d
        .admin
        .as_ref()
        .filter(|a| a.confirmed)
        .map(|a| a.name.clone());
    render(&AdminPage {
        chrome: wizard_chrome(&state, "Setup: administrator"),
        steps: steps("admin", &d.step),
        name: d.admin.map(|a| a.name).unwrap_or_default(),
        errors: Errors::default(),
        done,
    })
}

#[derive(Deserialize)]
pub struct AdminForm {
    name: String,
    password: String,
    password2: String,
}

pub async fn view_admin_post(
    State(state): State<WebState>,
    s: SetupSession,
    Form(form): Form<AdminForm>,
) -> Response {
    let d = match draft(&state, &s).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let again = |errors: Errors| {
        let mut r = render(&AdminPage {
            chrome: wizard_chrome(&state, "Setup: administrator"),
            steps: steps("admin", &d.step),
            name: form.name.clone(),
            errors,
            done: None,
        });
        *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        r
    };
    if form.password != form.password2 {
        return again(Errors::one("password2", "The two passwords differ."));
    }
    let op = SetupAdmin {
        name: form.name.trim().to_owned(),
        password: form.password.clone(),
    };
    match run(state.service(), &s.actor, &op).await {
        Ok(enrolment) => render(&EnrolPage::new(
            wizard_chrome(&state, "Setup: second factor"),
            "/setup/admin/confirm",
            &enrolment,
            None,
        )),
        Err(ServiceError::Invalid { errors }) => again(Errors(errors)),
        Err(e) => crate::error::service_error(&e),
    }
}

#[derive(Deserialize)]
pub struct ConfirmForm {
    code: String,
    #[serde(default)]
    enrolment: String,
    #[serde(default)]
    account: String,
    #[serde(default)]
    secret: String,
}

pub async fn view_admin_confirm_post(
    State(state): State<WebState>,
    s: SetupSession,
    Form(form): Form<ConfirmForm>,
) -> Response {
    let op = SetupAdminConfirm {
        code: form.code.trim().to_owned(),
    };
    match run(state.service(), &s.actor, &op).await {
        Ok(_) => Redirect::to("/setup/identity").into_response(),
        Err(ServiceError::Invalid { .. }) => {
            let secret = form.secret.replace(' ', "");
            let enrolment = sealgate_api::ops::accounts::TotpEnrolment {
                enrolment: form.enrolment,
                uri: super::login::totp_uri(&form.account, &secret),
                account: form.account,
                secret_base32: secret,
            };
            let mut r = render(&EnrolPage::new(
                wizard_chrome(&state, "Setup: second factor"),
                "/setup/admin/confirm",
                &enrolment,
                Some(
                    "That code is not right. Check the time on your phone and try the next code."
                        .to_owned(),
                ),
            ));
            *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            r
        }
        Err(e) => crate::error::service_error(&e),
    }
}

/// Saves `settings` and moves on to the step after `step`, or shows the
/// step again with its errors.
async fn save(
    state: &WebState,
    s: &SetupSession,
    d: &SetupDraft,
    settings: Settings,
    step: &'static str,
    certificate: Option<CertificateChoice>,
) -> Result<Response, Errors> {
    let next = next_of(step);
    let op = SetupSave {
        settings,
        step: further(&d.step, next),
        certificate,
    };
    match run(state.service(), &s.actor, &op).await {
        Ok(_) => Ok(Redirect::to(&format!("/setup/{next}")).into_response()),
        Err(ServiceError::Invalid { errors }) => Err(Errors(errors)),
        Err(e) => Ok(crate::error::service_error(&e)),
    }
}

/// Only after the administrator exists may the other steps be used.
fn needs_admin(d: &SetupDraft) -> Option<Response> {
    if d.admin.as_ref().is_some_and(|a| a.confirmed) {
        None
    } else {
        Some(Redirect::to("/setup/admin").into_response())
    }
}

macro_rules! step_draft {
    ($state:expr, $s:expr) => {
        match draft(&$state, &$s).await {
            Ok(d) => match needs_admin(&d) {
                Some(r) => return r,
                None => d,
            },
            Err(r) => return r,
        }
    };
}

// ---- 3. identity -------------------------------------------------------

#[derive(Template)]
#[template(path = "setup_identity.html")]
struct IdentityPage {
    chrome: Chrome,
    steps: Vec<StepItem>,
    hostname: String,
    domains: String,
    networks: String,
    suggestion: Option<String>,
    errors: Errors,
}

fn suggestion(parts: &Parts) -> Option<String> {
    let ip = parts.extensions.get::<ClientAddr>()?.0.ip();
    Some(IpNetwork::host(ip).to_string())
}

pub async fn view_identity_get(
    State(state): State<WebState>,
    s: SetupSession,
    parts: Parts,
) -> Response {
    let d = step_draft!(state, s);
    render(&IdentityPage {
        chrome: wizard_chrome(&state, "Setup: identity"),
        steps: steps("identity", &d.step),
        hostname: d.settings.hostname.clone(),
        domains: d.settings.relay.domains.join("\n"),
        networks: d
            .settings
            .relay
            .internal_networks
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
        suggestion: suggestion(&parts),
        errors: Errors::default(),
    })
}

#[derive(Deserialize)]
pub struct IdentityForm {
    hostname: String,
    domains: String,
    networks: String,
}

pub async fn view_identity_post(
    State(state): State<WebState>,
    s: SetupSession,
    parts: Parts,
    Form(form): Form<IdentityForm>,
) -> Response {
    let d = step_draft!(state, s);
    let mut errors = Vec::new();
    let mut settings = d.settings.clone();
    settings.hostname = form.hostname.trim().to_owned();
    settings.relay.domains = lines(&form.domains)
        .into_iter()
        .map(|l| l.to_ascii_lowercase())
        .collect();
    let mut networks = Vec::new();
    for (i, line) in lines(&form.networks).into_iter().enumerate() {
        match line.parse::<IpNetwork>() {
            Ok(n) => networks.push(n),
            Err(e) => errors.push(sealgate_api::FieldError::new(
                format!("relay.internal_networks.{i}"),
                e,
            )),
        }
    }
    settings.relay.internal_networks = networks;
    if settings.hostname.is_empty() {
        errors.push(sealgate_api::FieldError::new(
            "hostname",
            "The gateway needs a host name.",
        ));
    }
    if settings.relay.domains.is_empty() {
        errors.push(sealgate_api::FieldError::new(
            "relay.domains",
            "Name at least one mail domain.",
        ));
    }
    let result = if errors.is_empty() {
        save(&state, &s, &d, settings, "identity", None).await
    } else {
        Err(Errors(errors))
    };
    match result {
        Ok(r) => r,
        Err(errors) => {
            let mut r = render(&IdentityPage {
                chrome: wizard_chrome(&state, "Setup: identity"),
                steps: steps("identity", &d.step),
                hostname: form.hostname,
                domains: form.domains,
                networks: form.networks,
                suggestion: suggestion(&parts),
                errors,
            });
            *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            r
        }
    }
}

// ---- 4. delivery -------------------------------------------------------

#[derive(Template)]
#[template(path = "setup_delivery.html")]
struct DeliveryPage {
    chrome: Chrome,
    steps: Vec<StepItem>,
    test: Option<(String, DeliveryTestReport)>,
    mode: String,
    smarthost: String,
    require_tls: String,
    internal_server: String,
    errors: Errors,
}

pub async fn view_delivery_get(State(state): State<WebState>, s: SetupSession) -> Response {
    let d = step_draft!(state, s);
    let delivery = &d.settings.delivery;
    render(&DeliveryPage {
        chrome: wizard_chrome(&state, "Setup: delivery"),
        steps: steps("delivery", &d.step),
        test: None,
        mode: match delivery.mode {
            DeliveryMode::Smarthost => "smarthost",
            _ => "mx",
        }
        .to_owned(),
        smarthost: delivery.smarthost.clone().unwrap_or_default(),
        require_tls: delivery.require_tls_domains.join("\n"),
        internal_server: delivery.internal_server.clone().unwrap_or_default(),
        errors: Errors::default(),
    })
}

#[derive(Deserialize)]
pub struct DeliveryForm {
    mode: String,
    #[serde(default)]
    smarthost: String,
    #[serde(default)]
    require_tls: String,
    #[serde(default)]
    internal_server: String,
}

pub async fn view_delivery_post(
    State(state): State<WebState>,
    s: SetupSession,
    Form(form): Form<DeliveryForm>,
) -> Response {
    let d = step_draft!(state, s);
    let mut settings = d.settings.clone();
    let mut errors = Vec::new();
    settings.delivery.mode = match form.mode.as_str() {
        "smarthost" => DeliveryMode::Smarthost,
        "mx" => DeliveryMode::Mx,
        _ => {
            errors.push(sealgate_api::FieldError::new(
                "delivery.mode",
                "Choose how mail leaves.",
            ));
            settings.delivery.mode
        }
    };
    let smarthost = form.smarthost.trim();
    settings.delivery.smarthost = (!smarthost.is_empty()).then(|| smarthost.to_owned());
    if settings.delivery.mode == DeliveryMode::Smarthost && smarthost.is_empty() {
        errors.push(sealgate_api::FieldError::new(
            "delivery.smarthost",
            "Name the smart host as host:port.",
        ));
    }
    let internal = form.internal_server.trim();
    settings.delivery.internal_server = (!internal.is_empty()).then(|| internal.to_owned());
    settings.delivery.require_tls_domains = lines(&form.require_tls)
        .into_iter()
        .map(|l| l.to_ascii_lowercase())
        .collect();
    let result = if errors.is_empty() {
        save(&state, &s, &d, settings, "delivery", None).await
    } else {
        Err(Errors(errors))
    };
    match result {
        Ok(r) => r,
        Err(errors) => {
            let mut r = render(&DeliveryPage {
                chrome: wizard_chrome(&state, "Setup: delivery"),
                steps: steps("delivery", &d.step),
                test: None,
                mode: form.mode,
                smarthost: form.smarthost,
                require_tls: form.require_tls,
                internal_server: form.internal_server,
                errors,
            });
            *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            r
        }
    }
}

#[derive(Deserialize)]
pub struct DeliveryTestForm {
    #[serde(flatten)]
    form: DeliveryForm,
    /// Which host to try: `smarthost` or `internal_server`.
    test: String,
}

/// `POST /setup/delivery/test`: the form's host tried, the form shown
/// again with what happened (nothing is saved).
pub async fn view_delivery_test_post(
    State(state): State<WebState>,
    s: SetupSession,
    Form(t): Form<DeliveryTestForm>,
) -> Response {
    let d = step_draft!(state, s);
    let target = if t.test == "internal_server" {
        t.form.internal_server.trim().to_owned()
    } else {
        t.form.smarthost.trim().to_owned()
    };
    let mut errors = Errors::default();
    let mut test = None;
    match target.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>())) {
        Some((host, Ok(port))) if !host.is_empty() => {
            let op = DeliveryTest {
                host: host.trim_matches(['[', ']']).to_owned(),
                port,
                require_tls: lines(&t.form.require_tls).is_empty().not(),
            };
            match run(state.service(), &s.actor, &op).await {
                Ok(report) => test = Some((target.clone(), report)),
                Err(e) => errors = Errors::one(&format!("delivery.{}", t.test), &e.to_string()),
            }
        }
        _ => {
            errors = Errors::one(
                &format!(
                    "delivery.{}",
                    if t.test == "internal_server" {
                        "internal_server"
                    } else {
                        "smarthost"
                    }
                ),
                "Name the host as host:port to test it.",
            );
        }
    }
    render(&DeliveryPage {
        chrome: wizard_chrome(&state, "Setup: delivery"),
        steps: steps("delivery", &d.step),
        test,
        mode: t.form.mode,
        smarthost: t.form.smarthost,
        require_tls: t.form.require_tls,
        internal_server: t.form.internal_server,
        errors,
    })
}

// ---- 5. certificate ----------------------------------------------------

#[derive(Template)]
#[template(path = "setup_certificate.html")]
struct CertificatePage {
    chrome: Chrome,
    steps: Vec<StepItem>,
    hostname: String,
    /// `generated` or `uploaded`.
    choice: String,
    /// The uploaded certificate in force in the draft, if any.
    uploaded: Option<String>,
    certificate: String,
    errors: Errors,
}

pub async fn view_certificate_get(State(state): State<WebState>, s: SetupSession) -> Response {
    let d = step_draft!(state, s);
    render(&CertificatePage {
        chrome: wizard_chrome(&state, "Setup: certificate"),
        steps: steps("certificate", &d.step),
        hostname: d.settings.hostname.clone(),
        choice: match d.certificate {
            CertificateChoice::Uploaded => "uploaded",
            CertificateChoice::Generated => "generated",
        }
        .to_owned(),
        uploaded: d
            .settings
            .smtp
            .tls_certificate
            .as_ref()
            .map(|p| p.display().to_string()),
        certificate: String::new(),
        errors: Errors::default(),
    })
}

#[derive(Deserialize)]
pub struct CertificateForm {
    #[serde(default)]
    choice: String,
    /// The PEM chain, leaf first.
    #[serde(default)]
    certificate: String,
    #[serde(default)]
    private_key: String,
}

pub async fn view_certificate_post(
    State(state): State<WebState>,
    s: SetupSession,
    Form(form): Form<CertificateForm>,
) -> Response {
    let d = step_draft!(state, s);
    let mut settings = d.settings.clone();
    let choice = if form.choice == "uploaded" {
        let keep = form.certificate.trim().is_empty()
            && form.private_key.trim().is_empty()
            && settings.smtp.tls_certificate.is_some();
        if !keep {
            let op = TlsUpload {
                certificate: form.certificate.clone(),
                private_key: form.private_key,
                apply: false,
            };
            match run(state.service(), &s.actor, &op).await {
                Ok(stored) => {
                    settings.smtp.tls_certificate = Some(stored.certificate_path.into());
                    settings.smtp.tls_private_key = Some(stored.private_key_path.into());
                }
                Err(ServiceError::Invalid { errors }) => {
                    return certificate_again(
                        &state,
                        &d,
                        "uploaded",
                        form.certificate,
                        Errors(errors),
                    );
                }
                Err(e) => return crate::error::service_error(&e),
            }
        }
        CertificateChoice::Uploaded
    } else {
        settings.smtp.tls_certificate = None;
        settings.smtp.tls_private_key = None;
        CertificateChoice::Generated
    };
    let choice_name = form.choice.clone();
    match save(&state, &s, &d, settings, "certificate", Some(choice)).await {
        Ok(r) => r,
        Err(errors) => certificate_again(&state, &d, &choice_name, form.certificate, errors),
    }
}

fn certificate_again(
    state: &WebState,
    d: &SetupDraft,
    choice: &str,
    certificate: String,
    errors: Errors,
) -> Response {
    let mut r = render(&CertificatePage {
        chrome: wizard_chrome(state, "Setup: certificate"),
        steps: steps("certificate", &d.step),
        hostname: d.settings.hostname.clone(),
        choice: choice.to_owned(),
        uploaded: None,
        certificate,
        errors,
    });
    *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    r
}

// ---- 6. keys -----------------------------------------------------------

#[derive(Template)]
#[template(path = "setup_keys.html")]
struct KeysPage {
    chrome: Chrome,
    steps: Vec<StepItem>,
    keys: Option<KeyStoreView>,
    unavailable: Option<String>,
    /// Suggestions for the forms: the gateway's address and name.
    address: String,
    hostname: String,
    errors: Errors,
}

/// `gateway@<first domain>`, the address the wizard suggests.
fn gateway_address(settings: &Settings) -> String {
    let domain = settings
        .relay
        .domains
        .first()
        .cloned()
        .unwrap_or_else(|| settings.hostname.clone());
    format!("gateway@{domain}")
}

async fn keys_page(state: &WebState, s: &SetupSession, d: &SetupDraft, errors: Errors) -> Response {
    let (keys, unavailable) = match run(state.service(), &s.actor, &KeysList {}).await {
        Ok(k) => (Some(k), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let failed = !errors.is_empty();
    let mut r = render(&KeysPage {
        chrome: wizard_chrome(state, "Setup: gateway keys"),
        steps: steps("keys", &d.step),
        keys,
        unavailable,
        address: gateway_address(&d.settings),
        hostname: d.settings.hostname.clone(),
        errors,
    });
    if failed {
        *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    r
}

pub async fn view_keys_get(State(state): State<WebState>, s: SetupSession) -> Response {
    let d = step_draft!(state, s);
    keys_page(&state, &s, &d, Errors::default()).await
}

pub async fn view_keys_post(State(state): State<WebState>, s: SetupSession) -> Response {
    let d = step_draft!(state, s);
    match save(&state, &s, &d, d.settings.clone(), "keys", None).await {
        Ok(r) => r,
        Err(_) => Redirect::to("/setup/keys").into_response(),
    }
}

/// `POST /setup/keys/smime`: the gateway's S/MIME certificates (self-signed).
pub async fn view_keys_smime_post(
    State(state): State<WebState>,
    s: SetupSession,
    Form(form): Form<super::keys::SmimeForm>,
) -> Response {
    let d = step_draft!(state, s);
    match run(state.service(), &s.actor, &form.op()).await {
        Ok(_) => Redirect::to("/setup/keys").into_response(),
        Err(ServiceError::Invalid { errors }) => keys_page(&state, &s, &d, Errors(errors)).await,
        Err(e) => crate::error::service_error(&e),
    }
}

/// `POST /setup/keys/openpgp`: the gateway's OpenPGP identity.
pub async fn view_keys_openpgp_post(
    State(state): State<WebState>,
    s: SetupSession,
    Form(form): Form<super::keys::OpenpgpForm>,
) -> Response {
    let d = step_draft!(state, s);
    match run(state.service(), &s.actor, &form.op()).await {
        Ok(_) => Redirect::to("/setup/keys").into_response(),
        Err(ServiceError::Invalid { errors }) => keys_page(&state, &s, &d, Errors(errors)).await,
        Err(e) => crate::error::service_error(&e),
    }
}

// ---- 7. policy ---------------------------------------------------------

#[derive(Template)]
#[template(path = "setup_policy.html")]
struct PolicyPage {
    chrome: Chrome,
    steps: Vec<StepItem>,
    outbound: String,
    required_domains: String,
    boundary_only: bool,
    neutral_subject: bool,
    invitations: bool,
    errors: Errors,
}

fn required_domains(settings: &Settings) -> String {
    settings
        .policy
        .domain
        .iter()
        .filter(|(_, r)| r.action == Some(Action::EncryptRequired))
        .map(|(d, _)| d.clone())
        .collect::<Vec<_>>()
        .join("\n")
}

pub async fn view_policy_get(State(state): State<WebState>, s: SetupSession) -> Response {
    let d = step_draft!(state, s);
    let p = &d.settings.policy;
    render(&PolicyPage {
        chrome: wizard_chrome(&state, "Setup: policy"),
        steps: steps("policy", &d.step),
        outbound: p.default.outbound.as_str().to_owned(),
        required_domains: required_domains(&d.settings),
        boundary_only: p.boundary_only,
        neutral_subject: p.settings.neutral_subject.unwrap_or(false),
        invitations: d.settings.invitations.enabled,
        errors: Errors::default(),
    })
}

#[derive(Deserialize)]
pub struct PolicyForm {
    outbound: String,
    #[serde(default)]
    required_domains: String,
    #[serde(default)]
    boundary_only: Option<String>,
    #[serde(default)]
    neutral_subject: Option<String>,
    #[serde(default)]
    invitations: Option<String>,
}

pub async fn view_policy_post(
    State(state): State<WebState>,
    s: SetupSession,
    Form(form): Form<PolicyForm>,
) -> Response {
    let d = step_draft!(state, s);
    let mut settings = d.settings.clone();
    let policy = &mut settings.policy;
    policy.default.outbound = if form.outbound == "encrypt-required" {
        Action::EncryptRequired
    } else {
        Action::EncryptIfPossible
    };
    // The domain list replaces the encrypt-required entries made here before.
    policy
        .domain
        .retain(|_, r| r.action != Some(Action::EncryptRequired));
    for domain in lines(&form.required_domains) {
        policy
            .domain
            .entry(domain.to_ascii_lowercase())
            .or_default()
            .action = Some(Action::EncryptRequired);
    }
    policy.boundary_only = form.boundary_only.is_some();
    policy.settings.neutral_subject = Some(form.neutral_subject.is_some());
    settings.invitations.enabled = form.invitations.is_some();
    match save(&state, &s, &d, settings, "policy", None).await {
        Ok(r) => r,
        Err(errors) => {
            let mut r = render(&PolicyPage {
                chrome: wizard_chrome(&state, "Setup: policy"),
                steps: steps("policy", &d.step),
                outbound: form.outbound,
                required_domains: form.required_domains,
                boundary_only: form.boundary_only.is_some(),
                neutral_subject: form.neutral_subject.is_some(),
                invitations: form.invitations.is_some(),
                errors,
            });
            *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            r
        }
    }
}

// ---- 8. review ---------------------------------------------------------

#[derive(Template)]
#[template(path = "setup_review.html")]
struct ReviewPage {
    chrome: Chrome,
    steps: Vec<StepItem>,
    admin: String,
    s: Settings,
    required_domains: String,
    networks: String,
    certificate: &'static str,
    error: Option<String>,
}

fn review(state: &WebState, d: &SetupDraft, error: Option<String>) -> Response {
    render(&ReviewPage {
        chrome: wizard_chrome(state, "Setup: review"),
        steps: steps("review", &d.step),
        admin: d.admin.as_ref().map(|a| a.name.clone()).unwrap_or_default(),
        required_domains: required_domains(&d.settings),
        networks: d
            .settings
            .relay
            .internal_networks
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        certificate: match d.certificate {
            CertificateChoice::Generated => {
                "the generated certificate (self-signed, names the host)"
            }
            CertificateChoice::Uploaded => "the uploaded certificate",
        },
        s: d.settings.clone(),
        error,
    })
}

pub async fn view_review_get(State(state): State<WebState>, s: SetupSession) -> Response {
    let d = step_draft!(state, s);
    review(&state, &d, None)
}

pub async fn view_finish_post(State(state): State<WebState>, s: SetupSession) -> Response {
    let d = step_draft!(state, s);
    match run(state.service(), &s.actor, &SetupFinish {}).await {
        Ok(grant) => begin(&grant, "/dashboard?done=welcome"),
        Err(ServiceError::Invalid { errors }) => {
            let text = errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            let mut r = review(&state, &d, Some(text));
            *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            r
        }
        Err(e) => crate::error::service_error(&e),
    }
}
