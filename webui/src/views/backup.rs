//! `/backup`: download an encrypted backup, restore one. Restoring is
//! also offered by the wizard (`/setup/restore`), for a fresh install
//! that takes over from a gateway that is gone.

use askama::Template;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use sealgate_api::ops::backup::{BackupCreate, BackupRestore, BackupSummary};
use sealgate_api::{Actor, Area, Permission, ServiceError, run};

use super::Errors;
use crate::session::{Account, SetupSession};
use crate::{Chrome, WebState, render};

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/backup", get(view_backup_get))
        .route("/backup/create", post(view_backup_create_post))
        .route("/backup/restore", post(view_backup_restore_post))
        .route("/setup/restore", post(view_setup_restore_post))
}

#[derive(Template)]
#[template(path = "backup.html")]
struct BackupPage {
    chrome: Chrome,
    writer: bool,
    errors: Errors,
    /// Which form the errors belong to.
    failed_form: &'static str,
}

fn page(
    state: &WebState,
    account: &Account,
    errors: Errors,
    failed_form: &'static str,
) -> Response {
    let failed = !errors.is_empty();
    let mut r = render(&BackupPage {
        chrome: Chrome::for_account(state, account, "Backup", "/backup"),
        writer: account
            .session
            .role
            .allows(Permission::Write(Area::Accounts)),
        errors,
        failed_form,
    });
    if failed {
        *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    r
}

pub async fn view_backup_get(State(state): State<WebState>, account: Account) -> Response {
    if let Some(refused) = account.refuse(Permission::Read(Area::Accounts)) {
        return refused;
    }
    page(&state, &account, Errors::default(), "")
}

#[derive(serde::Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    passphrase: String,
    #[serde(default)]
    passphrase2: String,
}

/// `POST /backup/create`: the backup as a file download.
pub async fn view_backup_create_post(
    State(state): State<WebState>,
    account: Account,
    axum::Form(form): axum::Form<CreateForm>,
) -> Response {
    if let Some(refused) = account.refuse(Permission::Write(Area::Accounts)) {
        return refused;
    }
    if form.passphrase != form.passphrase2 {
        return page(
            &state,
            &account,
            Errors::one("passphrase2", "The two passphrases differ."),
            "create",
        );
    }
    let op = BackupCreate {
        passphrase: form.passphrase,
    };
    match run(state.service(), &account.actor, &op).await {
        Ok(file) => {
            let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(&file.data) else {
                return crate::error::service_error(&ServiceError::failed("backup encoding"));
            };
            let mut r = bytes.into_response();
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", file.name))
            {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            r
        }
        Err(ServiceError::Invalid { errors }) => page(&state, &account, Errors(errors), "create"),
        Err(e) => crate::error::service_error(&e),
    }
}

/// The restore form's fields (multipart: the file and the passphrase).
async fn restore_op(request: Request) -> Result<BackupRestore, Errors> {
    let fields = super::multipart::read(request)
        .await
        .map_err(|e| Errors::one("file", e))?;
    let file = fields
        .file("file")
        .filter(|f| !f.is_empty())
        .ok_or_else(|| Errors::one("file", "Choose the backup file."))?;
    Ok(BackupRestore {
        data: base64::engine::general_purpose::STANDARD.encode(file),
        passphrase: fields.text("passphrase").unwrap_or_default().to_owned(),
    })
}

async fn restore(
    state: &WebState,
    actor: &Actor,
    request: Request,
) -> Result<BackupSummary, Result<Errors, Response>> {
    let op = restore_op(request).await.map_err(Ok)?;
    match run(state.service(), actor, &op).await {
        Ok(summary) => Ok(summary),
        Err(ServiceError::Invalid { errors }) => Err(Ok(Errors(errors))),
        Err(e) => Err(Err(crate::error::service_error(&e))),
    }
}

/// `POST /backup/restore`: every session ends with it, this one too:
/// the browser goes to the login page.
pub async fn view_backup_restore_post(
    State(state): State<WebState>,
    account: Account,
    request: Request,
) -> Response {
    if let Some(refused) = account.refuse(Permission::Write(Area::Accounts)) {
        return refused;
    }
    match restore(&state, &account.actor, request).await {
        Ok(_) => Redirect::to("/login?done=restored").into_response(),
        Err(Ok(errors)) => page(&state, &account, errors, "restore"),
        Err(Err(r)) => r,
    }
}

#[derive(Template)]
#[template(path = "setup_restore.html")]
struct SetupRestorePage {
    chrome: Chrome,
    errors: Errors,
}

/// `POST /setup/restore`: a fresh install takes over a backup instead of
/// running the wizard; then its accounts log in.
pub async fn view_setup_restore_post(
    State(state): State<WebState>,
    s: SetupSession,
    request: Request,
) -> Response {
    match restore(&state, &s.actor, request).await {
        Ok(_) => Redirect::to("/login?done=restored").into_response(),
        Err(Ok(errors)) => {
            let mut r = render(&SetupRestorePage {
                chrome: Chrome::public(&state, "Setup: restore a backup"),
                errors,
            });
            *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            r
        }
        Err(Err(r)) => r,
    }
}
