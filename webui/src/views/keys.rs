//! `/keys`: the token, the gateway's keys and certificates (with expiry),
//! the OpenPGP identity; certificates and the OpenPGP key download with
//! their chain.

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use sealgate_api::ops::keys::{
    KeyCsr, KeyExportCert, KeyImportCert, KeyStoreView, KeysList, PgpExport, PgpInit, SmimeCreate,
    Subject, TlsUpload,
};
use sealgate_api::ops::settings::SettingsShow;
use sealgate_api::{Area, Permission, ServiceError, run};
use serde::Deserialize;

use super::{Errors, lines, now_ms};
use crate::session::Account;
use crate::{Chrome, WebState, render};

/// The forms of this page (`/keys` and the downloads are in `app()`).
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/keys/smime", post(view_keys_smime_post))
        .route("/keys/openpgp", post(view_keys_openpgp_post))
        .route("/keys/csr", post(view_keys_csr_post))
        .route("/keys/import", post(view_keys_import_post))
        .route("/keys/tls", post(view_keys_tls_post))
}

/// The S/MIME certificates form (here and in the wizard).
#[derive(Deserialize)]
pub struct SmimeForm {
    #[serde(default)]
    address: String,
    #[serde(default)]
    common_name: String,
    #[serde(default)]
    organization: String,
    #[serde(default)]
    days: String,
}

impl SmimeForm {
    pub fn op(&self) -> SmimeCreate {
        let organization = self.organization.trim();
        SmimeCreate {
            address: self.address.trim().to_owned(),
            common_name: self.common_name.trim().to_owned(),
            organization: (!organization.is_empty()).then(|| organization.to_owned()),
            days: self.days.trim().parse().ok(),
        }
    }
}

/// The OpenPGP identity form (here and in the wizard).
#[derive(Deserialize)]
pub struct OpenpgpForm {
    #[serde(default)]
    user_id: String,
}

impl OpenpgpForm {
    pub fn op(&self) -> PgpInit {
        PgpInit {
            user_id: self.user_id.trim().to_owned(),
            algorithm: None,
        }
    }
}

#[derive(Template)]
#[template(path = "keys.html")]
struct KeysPage {
    chrome: Chrome,
    /// `None` while the token cannot be reached; `unavailable` says why.
    keys: Option<KeyStoreView>,
    unavailable: Option<String>,
    now: u64,
    /// The account may change keys (the forms are shown).
    writer: bool,
    /// Suggestions: the gateway's address and host name.
    address: String,
    hostname: String,
    /// The address in the decryption certificate, for the users' text.
    encrypt_to: Option<String>,
    /// A CSR just made, to copy or save.
    csr: Option<String>,
    /// The TLS certificate file in force, if one was uploaded.
    tls_certificate: Option<String>,
    errors: Errors,
    /// Which form the errors belong to.
    failed_form: &'static str,
}

#[derive(Deserialize, Default)]
pub struct KeysQuery {
    #[serde(default)]
    done: Option<String>,
}

async fn page(
    state: &WebState,
    account: &Account,
    notice: Option<&'static str>,
    csr: Option<String>,
    errors: Errors,
    failed_form: &'static str,
) -> Response {
    // A token that cannot be reached is what this page is for: say so
    // here instead of an error page.
    let (keys, unavailable) = match run(state.service(), &account.actor, &KeysList {}).await {
        Ok(k) => (Some(k), None),
        Err(e @ ServiceError::Unavailable { .. }) => (None, Some(e.to_string())),
        Err(e) => return crate::error::service_error(&e),
    };
    let settings = run(state.service(), &account.actor, &SettingsShow::default())
        .await
        .ok()
        .map(|v| v.settings);
    let (address, hostname, tls_certificate) = match &settings {
        Some(s) => (
            format!("gateway@{}", s.relay.domains.first().unwrap_or(&s.hostname)),
            s.hostname.clone(),
            s.smtp
                .tls_certificate
                .as_ref()
                .map(|p| p.display().to_string()),
        ),
        None => (String::new(), String::new(), None),
    };
    let encrypt_to = keys.as_ref().and_then(|k| {
        k.keys
            .iter()
            .find(|key| key.label == "gateway-decrypt")
            .and_then(|key| key.certificate.as_ref())
            .and_then(|c| c.emails.first().cloned())
    });
    let failed = !errors.is_empty();
    let mut r = render(&KeysPage {
        chrome: Chrome::for_account(state, account, "Keys", "/keys").with_notice(notice),
        keys,
        unavailable,
        now: now_ms(),
        writer: account.session.role.allows(Permission::Write(Area::Keys)),
        address,
        hostname,
        encrypt_to,
        csr,
        tls_certificate,
        errors,
        failed_form,
    });
    if failed {
        *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    r
}

fn keys_notice(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "smime" => "The gateway's S/MIME certificates were created.",
        "openpgp" => "The gateway's OpenPGP identity was created.",
        "imported" => "The certificate was imported.",
        "tls" => "The TLS certificate is in force (a new settings version).",
        _ => return None,
    })
}

pub async fn view_keys_get(
    State(state): State<WebState>,
    account: Account,
    Query(q): Query<KeysQuery>,
) -> Response {
    if let Some(refused) = account.refuse(Permission::Read(Area::Keys)) {
        return refused;
    }
    page(
        &state,
        &account,
        keys_notice(q.done.as_deref()),
        None,
        Errors::default(),
        "",
    )
    .await
}

/// Runs a form's operation: back to the page with a notice, or the page
/// with the errors next to the form's fields.
async fn change<O: sealgate_api::Operation>(
    state: &WebState,
    account: &Account,
    op: &O,
    done: &str,
    form: &'static str,
) -> Response {
    if let Some(refused) = account.refuse(Permission::Write(Area::Keys)) {
        return refused;
    }
    match run(state.service(), &account.actor, op).await {
        Ok(_) => Redirect::to(&format!("/keys?done={done}")).into_response(),
        Err(ServiceError::Invalid { errors }) => {
            page(state, account, None, None, Errors(errors), form).await
        }
        Err(e) => crate::error::service_error(&e),
    }
}

pub async fn view_keys_smime_post(
    State(state): State<WebState>,
    account: Account,
    Form(form): Form<SmimeForm>,
) -> Response {
    change(&state, &account, &form.op(), "smime", "smime").await
}

pub async fn view_keys_openpgp_post(
    State(state): State<WebState>,
    account: Account,
    Form(form): Form<OpenpgpForm>,
) -> Response {
    change(&state, &account, &form.op(), "openpgp", "openpgp").await
}

#[derive(Deserialize)]
pub struct CsrForm {
    #[serde(default)]
    label: String,
    #[serde(default)]
    common_name: String,
    #[serde(default)]
    emails: String,
}

/// `POST /keys/csr`: a request for a CA, shown on the page to copy.
pub async fn view_keys_csr_post(
    State(state): State<WebState>,
    account: Account,
    Form(form): Form<CsrForm>,
) -> Response {
    if let Some(refused) = account.refuse(Permission::Write(Area::Keys)) {
        return refused;
    }
    let op = KeyCsr {
        label: form.label.trim().to_owned(),
        subject: Subject {
            common_name: form.common_name.trim().to_owned(),
            emails: lines(&form.emails),
            ..Subject::default()
        },
    };
    match run(state.service(), &account.actor, &op).await {
        Ok(pem) => page(&state, &account, None, Some(pem), Errors::default(), "").await,
        Err(ServiceError::Invalid { errors }) => {
            page(&state, &account, None, None, Errors(errors), "csr").await
        }
        Err(e) => crate::error::service_error(&e),
    }
}

#[derive(Deserialize)]
pub struct ImportForm {
    #[serde(default)]
    label: String,
    #[serde(default)]
    certificate: String,
}

pub async fn view_keys_import_post(
    State(state): State<WebState>,
    account: Account,
    Form(form): Form<ImportForm>,
) -> Response {
    let op = KeyImportCert {
        label: form.label.trim().to_owned(),
        certificate: form.certificate,
    };
    change(&state, &account, &op, "imported", "import").await
}

#[derive(Deserialize)]
pub struct TlsForm {
    #[serde(default)]
    certificate: String,
    #[serde(default)]
    private_key: String,
}

pub async fn view_keys_tls_post(
    State(state): State<WebState>,
    account: Account,
    Form(form): Form<TlsForm>,
) -> Response {
    if let Some(refused) = account.refuse(Permission::Write(Area::Settings)) {
        return refused;
    }
    let op = TlsUpload {
        certificate: form.certificate,
        private_key: form.private_key,
        apply: true,
    };
    change(&state, &account, &op, "tls", "tls").await
}

/// `GET /keys/download/{label}`: a key's certificate with its chain
/// (PEM); `openpgp` is the gateway's OpenPGP certificate.
pub async fn view_keys_download_get(
    State(state): State<WebState>,
    account: Account,
    Path(label): Path<String>,
) -> Response {
    if let Some(refused) = account.refuse(sealgate_api::Permission::Read(sealgate_api::Area::Keys))
    {
        return refused;
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return crate::WebError::NotFound.into_response();
    }
    let (text, name) = if label == "readme" {
        match readme(&state, &account).await {
            Ok(t) => (t, "sealgate-gateway-README.txt".to_owned()),
            Err(r) => return r,
        }
    } else if label == "openpgp" {
        match run(state.service(), &account.actor, &PgpExport {}).await {
            Ok(t) => (t, "sealgate-gateway-openpgp.asc".to_owned()),
            Err(e) => return crate::error::service_error(&e),
        }
    } else {
        match run(
            state.service(),
            &account.actor,
            &KeyExportCert {
                label: label.clone(),
                der: false,
            },
        )
        .await
        {
            Ok(t) => (t, format!("{label}-chain.pem")),
            Err(e) => return crate::error::service_error(&e),
        }
    };
    let mut r = text.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

#[derive(Template)]
#[template(path = "keys_readme.txt", escape = "none")]
struct Readme {
    address: String,
    smime: Option<sealgate_api::ops::keys::CertificateInfo>,
    openpgp: Option<sealgate_api::ops::keys::OpenpgpInfo>,
}

/// The short text for internal users: what to encrypt to, and how to
/// check they have the right certificate.
async fn readme(state: &WebState, account: &Account) -> Result<String, Response> {
    let keys = run(state.service(), &account.actor, &KeysList {})
        .await
        .map_err(|e| crate::error::service_error(&e))?;
    let smime = keys
        .keys
        .iter()
        .find(|k| k.label == "gateway-decrypt")
        .and_then(|k| k.certificate.clone());
    let address = smime
        .as_ref()
        .and_then(|c| c.emails.first().cloned())
        .or_else(|| {
            keys.openpgp
                .as_ref()
                .and_then(|p| p.user_ids.first().cloned())
        })
        .unwrap_or_default();
    Readme {
        address,
        smime,
        openpgp: keys.openpgp,
    }
    .render()
    .map_err(|e| crate::WebError::Render(e).into_response())
}
