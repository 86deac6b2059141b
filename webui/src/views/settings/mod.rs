//! `/settings`: every run-time setting in forms, one per section of the
//! settings tree (`sealgate_api::settings::fields` says which field edits
//! what), each saved on its own as a new version; `/settings/toml`: the
//! whole tree as TOML, the same schema `sealgate settings export|apply`
//! uses; `/settings/history`: versions with authors and the diff of each,
//! rollback to any of them.
//!
//! Every save names the version it was edited from (`base_version`): if
//! someone saved meanwhile, the service refuses it (Conflict), it is never
//! merged.

mod form;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use sealgate_api::ops::settings::{
    Change, SettingsApply, SettingsDiff, SettingsExport, SettingsHistory, SettingsRollback,
    SettingsShow, SettingsVersion, VersionMeta,
};
use sealgate_api::settings::Settings;
use sealgate_api::settings::fields::{SECTIONS, Section};
use sealgate_api::{Area, Permission, ServiceError, run};
use serde::Deserialize;

use super::{Errors, notice, when};
use crate::session::Account;
use crate::{Chrome, WebState, render};

use form::{FieldView, Raw};

#[derive(Deserialize)]
pub struct Done {
    done: Option<String>,
}

/// One section of the settings page.
struct SectionView {
    name: &'static str,
    title: &'static str,
    fields: Vec<FieldView>,
    /// The service's errors that name no field of this section's form.
    others: Vec<String>,
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    chrome: Chrome,
    meta: VersionMeta,
    sections: Vec<SectionView>,
    /// The section a refused save came from.
    refused: Option<&'static Section>,
    can_change: bool,
}

impl SettingsPage {
    /// The page for `version`, with `refused`'s section showing the text
    /// the user sent and the errors found in it.
    fn new(
        chrome: Chrome,
        version: SettingsVersion,
        can_change: bool,
        refused: Option<(&'static Section, Raw, Errors)>,
    ) -> SettingsPage {
        let none = Errors::default();
        let sections = SECTIONS
            .iter()
            .map(|s| {
                let (raw, errors) = match &refused {
                    Some((r, raw, errors)) if r.name == s.name => (raw.clone(), errors),
                    _ => (form::raw_of(&version.settings, s.name), &none),
                };
                let fields = form::views(s.name, &raw, errors);
                let keys: Vec<&str> = fields.iter().map(|f| f.key).collect();
                SectionView {
                    name: s.name,
                    title: s.title,
                    others: errors.others(&keys),
                    fields,
                }
            })
            .collect();
        SettingsPage {
            chrome,
            meta: version.meta,
            sections,
            refused: refused.map(|(s, _, _)| s),
            can_change,
        }
    }
}

/// A settings version (`None`: the one in force), or the error page.
async fn settings_version(
    state: &WebState,
    account: &Account,
    version: Option<u64>,
) -> Result<SettingsVersion, Response> {
    run(state.service(), &account.actor, &SettingsShow { version })
        .await
        .map_err(|e| crate::error::service_error(&e))
}

fn can_change(account: &Account) -> bool {
    account
        .session
        .role
        .allows(Permission::Write(Area::Settings))
}

pub async fn view_settings_get(
    State(state): State<WebState>,
    account: Account,
    Query(q): Query<Done>,
) -> Response {
    if let Some(refused) = account.refuse(Permission::Read(Area::Settings)) {
        return refused;
    }
    let current = match settings_version(&state, &account, None).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let chrome = Chrome::for_account(&state, &account, "Settings", "/settings")
        .with_notice(notice(q.done.as_deref()));
    render(&SettingsPage::new(
        chrome,
        current,
        can_change(&account),
        None,
    ))
}

/// `POST /settings/section/{name}`: one section's form, saved over the
/// version it was edited from (`_version`) with an optional `_comment`.
pub async fn view_settings_section_post(
    State(state): State<WebState>,
    account: Account,
    Path(name): Path<String>,
    axum::Form(submitted): axum::Form<Vec<(String, String)>>,
) -> Response {
    if let Some(refused) = account.refuse(Permission::Write(Area::Settings)) {
        return refused;
    }
    let Some(section) = SECTIONS.iter().find(|s| s.name == name) else {
        return crate::error::service_error(&ServiceError::NotFound {
            what: format!("settings section {name}"),
        });
    };
    let sent = |k: &str| {
        submitted
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.trim())
    };
    let Some(version) = sent("_version").and_then(|v| v.parse::<u64>().ok()) else {
        return crate::error::service_error(&ServiceError::invalid("_version", "no version given"));
    };
    let comment = sent("_comment").unwrap_or_default();
    let base = match settings_version(&state, &account, Some(version)).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let raw = form::raw_from(section.name, &submitted);
    let again = |base: SettingsVersion, errors: Vec<sealgate_api::FieldError>, raw: Raw| {
        let chrome = Chrome::for_account(&state, &account, "Settings", "/settings");
        let mut r = render(&SettingsPage::new(
            chrome,
            base,
            true,
            Some((section, raw, Errors(errors))),
        ));
        *r.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
        r
    };
    let settings = match form::apply(section.name, &raw, &base.settings) {
        Ok(s) => s,
        Err(errors) => return again(base, errors, raw),
    };
    if settings == base.settings {
        return Redirect::to(&format!("/settings?done=unchanged#s-{}", section.name))
            .into_response();
    }
    let op = SettingsApply {
        settings,
        base_version: Some(version),
        comment: Some(if comment.is_empty() {
            format!("{} (web UI)", section.title)
        } else {
            comment.to_owned()
        }),
    };
    match run(state.service(), &account.actor, &op).await {
        Ok(_) => Redirect::to(&format!("/settings?done=saved#s-{}", section.name)).into_response(),
        Err(ServiceError::Invalid { errors }) => again(base, errors, raw),
        Err(e @ ServiceError::Conflict { .. }) => {
            // Shown over the newer version with the user's values kept:
            // saving again puts this section's values over it, knowingly.
            let current = match settings_version(&state, &account, None).await {
                Ok(v) => v,
                Err(r) => return r,
            };
            let message =
                format!("{e}. Your values are kept below; save again to put them over it.");
            again(
                current,
                vec![sealgate_api::FieldError::new("_version", message)],
                raw,
            )
        }
        Err(e) => crate::error::service_error(&e),
    }
}

#[derive(Template)]
#[template(path = "settings_toml.html")]
struct TomlPage {
    chrome: Chrome,
    meta: VersionMeta,
    text: String,
    comment: String,
    can_change: bool,
    errors: Errors,
}

pub async fn view_settings_toml_get(
    State(state): State<WebState>,
    account: Account,
    Query(q): Query<Done>,
) -> Response {
    if let Some(refused) = account.refuse(Permission::Read(Area::Settings)) {
        return refused;
    }
    let current = match settings_version(&state, &account, None).await {
        Ok(v) => v,
        Err(r) => return r,
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
    render(&TomlPage {
        chrome: Chrome::for_account(&state, &account, "Settings as TOML", "/settings")
            .with_notice(notice(q.done.as_deref())),
        can_change: can_change(&account),
        meta: current.meta,
        text,
        comment: String::new(),
        errors: Errors::default(),
    })
}

#[derive(Deserialize)]
pub struct TomlForm {
    text: String,
    version: u64,
    #[serde(default)]
    comment: String,
}

pub async fn view_settings_toml_post(
    State(state): State<WebState>,
    account: Account,
    axum::Form(form): axum::Form<TomlForm>,
) -> Response {
    if let Some(refused) = account.refuse(Permission::Write(Area::Settings)) {
        return refused;
    }
    let again = |meta: VersionMeta, errors: Errors, form: &TomlForm| {
        let mut r = render(&TomlPage {
            chrome: Chrome::for_account(&state, &account, "Settings as TOML", "/settings"),
            can_change: true,
            meta,
            text: form.text.clone(),
            comment: form.comment.clone(),
            errors,
        });
        *r.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
        r
    };
    let meta = match settings_version(&state, &account, Some(form.version)).await {
        Ok(v) => v.meta,
        Err(r) => return r,
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
        Ok(_) => Redirect::to("/settings/toml?done=saved").into_response(),
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
