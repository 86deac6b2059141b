//! `/update`: the appliance's software. The root slots (which runs, which
//! boots next, their versions and boot marks) and the last update's
//! outcome; an administrator installs a signed bundle from a path on the
//! appliance or an http(s) URL into the slot that is not running. The
//! same service operations as `sealgate update` and the console menu.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use sealgate_api::ops::update::{UpdateInstall, UpdateInstalled, UpdateReport, UpdateStatus};
use sealgate_api::{Area, Permission, ServiceError, run};
use serde::Deserialize;

use super::Errors;
use crate::session::Account;
use crate::{Chrome, WebState, render};

#[derive(Template)]
#[template(path = "update.html")]
struct UpdatePage {
    chrome: Chrome,
    report: UpdateReport,
    can_install: bool,
    source: String,
    installed: Option<UpdateInstalled>,
    /// Why the install did not happen (RAUC refused the bundle, could not
    /// download it, does not answer).
    failed: Option<String>,
    errors: Errors,
}

async fn page(
    state: &WebState,
    account: &Account,
    source: String,
    outcome: Option<Result<UpdateInstalled, ServiceError>>,
) -> Response {
    let report = match run(state.service(), &account.actor, &UpdateStatus {}).await {
        Ok(r) => r,
        Err(e) => return crate::error::service_error(&e),
    };
    let (installed, failed, errors) = match outcome {
        None => (None, None, Errors::default()),
        Some(Ok(done)) => (Some(done), None, Errors::default()),
        Some(Err(ServiceError::Invalid { errors })) => (None, None, Errors(errors)),
        Some(Err(e @ (ServiceError::Unavailable { .. } | ServiceError::Failed { .. }))) => {
            (None, Some(e.to_string()), Errors::default())
        }
        Some(Err(e)) => return crate::error::service_error(&e),
    };
    let status = if errors.is_empty() && failed.is_none() {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::UNPROCESSABLE_ENTITY
    };
    let mut r = render(&UpdatePage {
        chrome: Chrome::for_account(state, account, "Software update", "/update"),
        report,
        can_install: account
            .session
            .role
            .allows(Permission::Write(Area::Settings)),
        source,
        installed,
        failed,
        errors,
    });
    *r.status_mut() = status;
    r
}

pub async fn view_update_get(State(state): State<WebState>, account: Account) -> Response {
    if let Some(refused) = account.refuse(Permission::Read(Area::Status)) {
        return refused;
    }
    page(&state, &account, String::new(), None).await
}

#[derive(Deserialize)]
pub struct InstallForm {
    source: String,
}

/// `POST /update`: install the bundle at `source` into the other slot.
pub async fn view_update_post(
    State(state): State<WebState>,
    account: Account,
    axum::Form(form): axum::Form<InstallForm>,
) -> Response {
    if let Some(refused) = account.refuse(Permission::Write(Area::Settings)) {
        return refused;
    }
    let op = UpdateInstall {
        source: form.source.trim().to_owned(),
    };
    let outcome = run(state.service(), &account.actor, &op).await;
    page(&state, &account, form.source, Some(outcome)).await
}
