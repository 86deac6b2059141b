//! `/keys`: the token, the gateway's keys and certificates (with expiry),
//! the OpenPGP identity; certificates and the OpenPGP key download with
//! their chain.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use sealgate_api::ops::keys::{KeyExportCert, KeyStoreView, KeysList, PgpExport};
use sealgate_api::run;

use super::now_ms;
use crate::session::Account;
use crate::{Chrome, WebState, render};

#[derive(Template)]
#[template(path = "keys.html")]
struct KeysPage {
    chrome: Chrome,
    /// `None` while the token cannot be reached; `unavailable` says why.
    keys: Option<KeyStoreView>,
    unavailable: Option<String>,
    now: u64,
}

pub async fn view_keys_get(State(state): State<WebState>, account: Account) -> Response {
    if let Some(refused) = account.refuse(sealgate_api::Permission::Read(sealgate_api::Area::Keys))
    {
        return refused;
    }
    // A token that cannot be reached is what this page is for: say so
    // here instead of an error page.
    let (keys, unavailable) = match run(state.service(), &account.actor, &KeysList {}).await {
        Ok(k) => (Some(k), None),
        Err(e @ sealgate_api::ServiceError::Unavailable { .. }) => (None, Some(e.to_string())),
        Err(e) => return crate::error::service_error(&e),
    };
    render(&KeysPage {
        chrome: Chrome::for_account(&state, &account, "Keys", "/keys"),
        keys,
        unavailable,
        now: now_ms(),
    })
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
    let (text, name) = if label == "openpgp" {
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
