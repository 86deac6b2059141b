//! `/settings`: every run-time setting (the whole tree as TOML, the same
//! schema `sealgate settings export|apply` uses), saved as a new version
//! checked whole; `/settings/history`: versions with authors and the
//! diff of each, rollback to any of them.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use sealgate_api::ops::settings::{
    Change, SettingsApply, SettingsDiff, SettingsExport, SettingsHistory, SettingsRollback,
    SettingsShow, VersionMeta,
};
use sealgate_api::settings::Settings;
use sealgate_api::{Area, Permission, ServiceError, run};
use serde::Deserialize;

use super::{Errors, notice, when};
use crate::session::Account;
use crate::{Chrome, WebState, render};

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    chrome: Chrome,
    meta: VersionMeta,
    text: String,
    comment: String,
    can_change: bool,
    errors: Errors,
}

#[derive(Deserialize)]
pub struct Done {
    done: Option<String>,
}

pub async fn view_settings_get(
    State(state): State<WebState>,
    account: Account,
    Query(q): Query<Done>,
) -> Response {
    if let Some(refused) =
        account.refuse(sealgate_api::Permission::Read(sealgate_api::Area::Settings))
    {
        return refused;
    }
    let current = match run(
        state.service(),
        &account.actor,
        &SettingsShow { version: None },
    )
    .await
    {
        Ok(v) => v,
        Err(e) => return crate::error::service_error(&e),
    };
    let text = match run(
        state.service(),
        &account.actor,
        &SettingsExport {
            version: Some(current.meta.version),
        },
    )
    .await
    {
        Ok(t) => t,
        Err(e) => return crate::error::service_error(&e),
    };
    render(&SettingsPage {
        chrome: Chrome::for_account(&state, &account, "Settings", "/settings")
            .with_notice(notice(q.done.as_deref())),
        can_change: account
            .session
            .role
            .allows(Permission::Write(Area::Settings)),
        meta: current.meta,
        text,
        comment: String::new(),
        errors: Errors::default(),
    })
}

#[derive(Deserialize)]
pub struct SettingsForm {
    text: String,
    version: u64,
    #[serde(default)]
    comment: String,
}

pub async fn view_settings_post(
    State(state): State<WebState>,
    account: Account,
    axum::Form(form): axum::Form<SettingsForm>,
) -> Response {
    if let Some(refused) = account.refuse(sealgate_api::Permission::Write(
        sealgate_api::Area::Settings,
    )) {
        return refused;
    }
    let again = |meta: VersionMeta, errors: Errors, form: &SettingsForm| {
        let mut r = render(&SettingsPage {
            chrome: Chrome::for_account(&state, &account, "Settings", "/settings"),
            can_change: true,
            meta,
            text: form.text.clone(),
            comment: form.comment.clone(),
            errors,
        });
        *r.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
        r
    };
    let meta = match run(
        state.service(),
        &account.actor,
        &SettingsShow {
            version: Some(form.version),
        },
    )
    .await
    {
        Ok(v) => v.meta,
        Err(e) => return crate::error::service_error(&e),
    };
    let settings: Settings = match toml::from_str(&form.text) {
        Ok(s) => s,
        Err(e) => {
            let message = e.message().to_owned();
            let line = e.span().map(|s| {
                form.text
                    .get(..s.start)
                    .unwrap_or_default()
                    .lines()
                    .count()
                    .max(1)
            });
            let key = line.map_or_else(|| "settings".to_owned(), |l| format!("line {l}"));
            return again(meta, Errors::one(&key, &message), &form);
        }
    };
    let comment = form.comment.trim();
    let op = SettingsApply {
        settings,
        base_version: Some(form.version),
        comment: (!comment.is_empty()).then(|| comment.to_owned()),
    };
    match run(state.service(), &account.actor, &op).await {
        Ok(_) => Redirect::to("/settings?done=saved").into_response(),
        Err(ServiceError::Invalid { errors }) => again(meta, Errors(errors), &form),
        Err(e) => crate::error::service_error(&e),
    }
}

#[derive(Template)]
#[template(path = "settings_history.html")]
struct HistoryPage {
    chrome: Chrome,
    versions: Vec<VersionMeta>,
    shown: Option<u64>,
    diff: Vec<Change>,
    can_change: bool,
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    version: Option<u64>,
}

pub async fn view_history_get(
    State(state): State<WebState>,
    account: Account,
    Query(q): Query<HistoryQuery>,
) -> Response {
    if let Some(refused) =
        account.refuse(sealgate_api::Permission::Read(sealgate_api::Area::Settings))
    {
        return refused;
    }
    let versions = match run(
        state.service(),
        &account.actor,
        &SettingsHistory { limit: Some(200) },
    )
    .await
    {
        Ok(v) => v,
        Err(e) => return crate::error::service_error(&e),
    };
    let shown = q.version.or_else(|| versions.first().map(|v| v.version));
    let diff = match shown {
        Some(v) if v > 1 => run(
            state.service(),
            &account.actor,
            &SettingsDiff {
                from: None,
                to: Some(v),
            },
        )
        .await
        .unwrap_or_default(),
        _ => Vec::new(),
    };
    render(&HistoryPage {
        chrome: Chrome::for_account(&state, &account, "Settings history", "/settings"),
        can_change: account
            .session
            .role
            .allows(Permission::Write(Area::Settings)),
        versions,
        shown,
        diff,
    })
}

#[derive(Deserialize)]
pub struct RollbackForm {
    to: u64,
}

pub async fn view_rollback_post(
    State(state): State<WebState>,
    account: Account,
    axum::Form(form): axum::Form<RollbackForm>,
) -> Response {
    if let Some(refused) = account.refuse(sealgate_api::Permission::Write(
        sealgate_api::Area::Settings,
    )) {
        return refused;
    }
    let op = SettingsRollback {
        to: form.to,
        base_version: None,
        comment: Some(format!("rollback to version {} from the web UI", form.to)),
    };
    match run(state.service(), &account.actor, &op).await {
        Ok(_) => Redirect::to("/settings?done=rolled-back").into_response(),
        Err(e) => crate::error::service_error(&e),
    }
}

/// For templates: a JSON value in one line.
pub fn value(v: &Option<serde_json::Value>) -> String {
    v.as_ref()
        .map_or_else(|| "(unset)".to_owned(), ToString::to_string)
}

/// For templates: a version's time.
pub fn at(meta: &VersionMeta) -> String {
    when(meta.time_ms)
}
