//! `/directory`: recipients' certificates and keys and partner gateways'
//! certificates: search, import by upload (PEM, DER, PKCS#7, OpenPGP),
//! remove, download.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use sealgate_api::ops::directory::{
    DirectoryEntry, DirectoryImport, DirectoryList, DirectoryRemove, DirectoryShow,
};
use sealgate_api::{Area, Permission, ServiceError, run};
use serde::Deserialize;

use super::{Errors, notice, now_ms};
use crate::session::Account;
use crate::{Chrome, WebState, render};

#[derive(Template)]
#[template(path = "directory.html")]
struct DirectoryPage {
    chrome: Chrome,
    filter: String,
    entries: Vec<DirectoryEntry>,
    can_change: bool,
    now: u64,
    errors: Errors,
}

#[derive(Deserialize)]
pub struct DirectoryQuery {
    #[serde(default)]
    q: String,
    done: Option<String>,
}

async fn page(
    state: &WebState,
    account: &Account,
    filter: String,
    done: Option<&str>,
    errors: Errors,
) -> Response {
    let op = DirectoryList {
        filter: (!filter.trim().is_empty()).then(|| filter.trim().to_owned()),
    };
    match run(state.service(), &account.actor, &op).await {
        Ok(entries) => {
            let failed = !errors.is_empty();
            let mut r = render(&DirectoryPage {
                chrome: Chrome::for_account(state, account, "Directory", "/directory")
                    .with_notice(notice(done)),
                can_change: account
                    .session
                    .role
                    .allows(Permission::Write(Area::Directory)),
                filter,
                entries,
                now: now_ms(),
                errors,
            });
            if failed {
                *r.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
            }
            r
        }
        Err(e) => crate::error::service_error(&e),
    }
}

pub async fn view_directory_get(
    State(state): State<WebState>,
    account: Account,
    Query(q): Query<DirectoryQuery>,
) -> Response {
    if let Some(refused) = account.refuse(sealgate_api::Permission::Read(
        sealgate_api::Area::Directory,
    )) {
        return refused;
    }
    page(&state, &account, q.q, q.done.as_deref(), Errors::default()).await
}

/// The import form: a pasted text (`text`) and/or an uploaded file
/// (`file`, sent as multipart) and an optional partner `domain`.
pub async fn view_directory_import_post(
    State(state): State<WebState>,
    account: Account,
    request: axum::extract::Request,
) -> Response {
    if let Some(refused) = account.refuse(sealgate_api::Permission::Write(
        sealgate_api::Area::Directory,
    )) {
        return refused;
    }
    let form = match crate::views::multipart::read(request).await {
        Ok(f) => f,
        Err(e) => return crate::WebError::BadRequest(e).into_response(),
    };
    let data = form.file_or_text("file", "text");
    let Some(data) = data else {
        return page(
            &state,
            &account,
            String::new(),
            None,
            Errors::one("data", "Choose a file or paste a certificate or key."),
        )
        .await;
    };
    let domain = form
        .text("domain")
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(str::to_owned);
    let op = DirectoryImport {
        data: base64::engine::general_purpose::STANDARD.encode(&data),
        domain,
    };
    match run(state.service(), &account.actor, &op).await {
        Ok(_) => Redirect::to("/directory?done=imported").into_response(),
        Err(ServiceError::Invalid { errors }) => {
            page(&state, &account, String::new(), None, Errors(errors)).await
        }
        Err(e) => crate::error::service_error(&e),
    }
}

#[derive(Deserialize)]
pub struct RemoveForm {
    fingerprint: String,
}

pub async fn view_directory_remove_post(
    State(state): State<WebState>,
    account: Account,
    axum::Form(form): axum::Form<RemoveForm>,
) -> Response {
    if let Some(refused) = account.refuse(sealgate_api::Permission::Write(
        sealgate_api::Area::Directory,
    )) {
        return refused;
    }
    let op = DirectoryRemove {
        fingerprint: form.fingerprint,
    };
    match run(state.service(), &account.actor, &op).await {
        Ok(_) => Redirect::to("/directory?done=removed").into_response(),
        Err(e) => crate::error::service_error(&e),
    }
}

pub async fn view_directory_download_get(
    State(state): State<WebState>,
    account: Account,
    Path(fingerprint): Path<String>,
) -> Response {
    if let Some(refused) = account.refuse(sealgate_api::Permission::Read(
        sealgate_api::Area::Directory,
    )) {
        return refused;
    }
    if !fingerprint.bytes().all(|b| b.is_ascii_hexdigit()) {
        return crate::WebError::NotFound.into_response();
    }
    let op = DirectoryShow {
        key: fingerprint.clone(),
    };
    match run(state.service(), &account.actor, &op).await {
        Ok(items) => match items.into_iter().next() {
            Some(item) => {
                let ext = if item.armored.contains("PGP PUBLIC KEY") {
                    "asc"
                } else {
                    "pem"
                };
                let mut r = item.armored.into_response();
                let h = r.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                if let Ok(v) = HeaderValue::from_str(&format!(
                    "attachment; filename=\"{}.{ext}\"",
                    fingerprint.get(..16).unwrap_or(&fingerprint)
                )) {
                    h.insert(header::CONTENT_DISPOSITION, v);
                }
                r
            }
            None => crate::WebError::NotFound.into_response(),
        },
        Err(e) => crate::error::service_error(&e),
    }
}
