//! `/policy`: the rules as a list (add, edit, reorder, delete: each a new
//! settings version, checked whole before it is stored) and the dry run:
//! a message, a sender and recipients in, per recipient the decision,
//! what made it, and the method and key that would be used.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use sealgate_api::ops::policy::{Explanation, PolicyExplain};
use sealgate_api::ops::settings::{SettingsApply, SettingsShow};
use sealgate_api::settings::policy::{Action, Direction, Rule};
use sealgate_api::{Area, Permission, ServiceError, run};
use serde::Deserialize;

use super::{Errors, lines, notice};
use crate::session::Account;
use crate::{Chrome, WebState, render};

pub const ACTIONS: [Action; 6] = [
    Action::EncryptRequired,
    Action::EncryptIfPossible,
    Action::Sign,
    Action::Clear,
    Action::Quarantine,
    Action::Reject,
];

#[derive(Template)]
#[template(path = "policy.html")]
struct PolicyPage {
    chrome: Chrome,
    rules: Vec<Rule>,
    version: u64,
    can_change: bool,
    edit: Option<usize>,
    form: RuleForm,
    errors: Errors,
}

#[derive(Deserialize, Default, Clone)]
pub struct RuleForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub sender: String,
    #[serde(default)]
    pub recipient: String,
    #[serde(default)]
    pub subject_keyword: String,
    #[serde(default)]
    pub attachment_name: String,
    #[serde(default)]
    pub direction: String,
    #[serde(default)]
    pub sign: Option<String>,
}

impl RuleForm {
    fn of(rule: &Rule) -> RuleForm {
        RuleForm {
            name: rule.name.clone(),
            action: rule
                .action
                .map(|a| a.as_str().to_owned())
                .unwrap_or_default(),
            sender: rule.sender.join("\n"),
            recipient: rule.recipient.join("\n"),
            subject_keyword: rule.subject_keyword.join("\n"),
            attachment_name: rule.attachment_name.join("\n"),
            direction: rule
                .direction
                .first()
                .map(|d| d.as_str().to_owned())
                .unwrap_or_default(),
            sign: rule.sign.filter(|s| *s).map(|_| "on".to_owned()),
        }
    }

    /// The rule, keeping conditions this form does not show from `base`.
    fn rule(&self, base: Rule) -> Rule {
        Rule {
            name: self.name.trim().to_owned(),
            action: ACTIONS.into_iter().find(|a| a.as_str() == self.action),
            sign: self.sign.as_ref().map(|_| true),
            sender: lines(&self.sender),
            recipient: lines(&self.recipient),
            subject_keyword: lines(&self.subject_keyword),
            attachment_name: lines(&self.attachment_name),
            direction: [
                Direction::Outbound,
                Direction::Inbound,
                Direction::Internal,
                Direction::External,
            ]
            .into_iter()
            .filter(|d| d.as_str() == self.direction)
            .collect(),
            ..base
        }
    }
}

#[derive(Deserialize)]
pub struct PolicyQuery {
    edit: Option<usize>,
    done: Option<String>,
}

pub async fn view_policy_get(
    State(state): State<WebState>,
    account: Account,
    Query(q): Query<PolicyQuery>,
) -> Response {
    if let Some(refused) =
        account.refuse(sealgate_api::Permission::Read(sealgate_api::Area::Policy))
    {
        return refused;
    }
    show(
        &state,
        &account,
        q.edit,
        None,
        Errors::default(),
        q.done.as_deref(),
    )
    .await
}

async fn show(
    state: &WebState,
    account: &Account,
    edit: Option<usize>,
    form: Option<RuleForm>,
    errors: Errors,
    done: Option<&str>,
) -> Response {
    let current = match run(
        state.service(),
        &account.actor,
        &SettingsShow { version: None },
    )
    .await
    {
        Ok(v) => Some(v),
        // An operator may run the dry run without reading the settings.
        Err(ServiceError::Denied { .. }) => None,
        Err(e) => return crate::error::service_error(&e),
    };
    let rules = current
        .as_ref()
        .map(|c| c.settings.policy.rule.clone())
        .unwrap_or_default();
    let form = form.unwrap_or_else(|| {
        edit.and_then(|i| rules.get(i))
            .map(RuleForm::of)
            .unwrap_or_default()
    });
    let failed = !errors.is_empty();
    let mut r = render(&PolicyPage {
        chrome: Chrome::for_account(state, account, "Policy", "/policy").with_notice(notice(done)),
        version: current.as_ref().map_or(0, |c| c.meta.version),
        can_change: current.is_some()
            && account
                .session
                .role
                .allows(Permission::Write(Area::Settings)),
        rules,
        edit,
        form,
        errors,
    });
    if failed {
        *r.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
    }
    r
}

/// The rule forms: `op` = save (with `index` to replace, else append),
/// up, down, delete; `version` is the settings version the page showed.
#[derive(Deserialize)]
pub struct RuleAction {
    op: String,
    #[serde(default)]
    index: Option<usize>,
    version: u64,
    #[serde(flatten)]
    form: RuleForm,
}

pub async fn view_policy_post(
    State(state): State<WebState>,
    account: Account,
    axum::Form(a): axum::Form<RuleAction>,
) -> Response {
    if let Some(refused) = account.refuse(sealgate_api::Permission::Write(
        sealgate_api::Area::Settings,
    )) {
        return refused;
    }
    let current = match run(
        state.service(),
        &account.actor,
        &SettingsShow {
            version: Some(a.version),
        },
    )
    .await
    {
        Ok(v) => v,
        Err(e) => return crate::error::service_error(&e),
    };
    let mut settings = current.settings;
    let rules = &mut settings.policy.rule;
    let comment = match (a.op.as_str(), a.index) {
        ("save", Some(i)) if i < rules.len() => {
            let base = rules.get(i).cloned().unwrap_or_default();
            if let Some(slot) = rules.get_mut(i) {
                *slot = a.form.rule(base);
            }
            format!("policy: rule {} edited", i + 1)
        }
        ("save", _) => {
            rules.push(a.form.rule(Rule::default()));
            format!("policy: rule {} added", rules.len())
        }
        ("up", Some(i)) if i > 0 && i < rules.len() => {
            rules.swap(i, i - 1);
            format!("policy: rule {} moved up", i + 1)
        }
        ("down", Some(i)) if i + 1 < rules.len() => {
            rules.swap(i, i + 1);
            format!("policy: rule {} moved down", i + 1)
        }
        ("delete", Some(i)) if i < rules.len() => {
            rules.remove(i);
            format!("policy: rule {} deleted", i + 1)
        }
        _ => return crate::WebError::BadRequest("Unknown rule change.").into_response(),
    };
    let op = SettingsApply {
        settings,
        base_version: Some(a.version),
        comment: Some(comment),
    };
    match run(state.service(), &account.actor, &op).await {
        Ok(_) => Redirect::to("/policy?done=saved").into_response(),
        Err(ServiceError::Invalid { errors }) => {
            let edit = if a.op == "save" { a.index } else { None };
            show(&state, &account, edit, Some(a.form), Errors(errors), None).await
        }
        Err(e) => crate::error::service_error(&e),
    }
}

#[derive(Template)]
#[template(path = "dry_run.html")]
struct DryRunPage {
    chrome: Chrome,
    message: String,
    sender: String,
    recipients: String,
    client_ip: String,
    results: Option<Vec<Explanation>>,
    errors: Errors,
}

pub async fn view_dry_run_get(State(state): State<WebState>, account: Account) -> Response {
    if let Some(refused) =
        account.refuse(sealgate_api::Permission::Read(sealgate_api::Area::Policy))
    {
        return refused;
    }
    render(&DryRunPage {
        chrome: Chrome::for_account(&state, &account, "Policy dry run", "/policy"),
        message: String::new(),
        sender: String::new(),
        recipients: String::new(),
        client_ip: "127.0.0.1".to_owned(),
        results: None,
        errors: Errors::default(),
    })
}

pub async fn view_dry_run_post(
    State(state): State<WebState>,
    account: Account,
    request: axum::extract::Request,
) -> Response {
    if let Some(refused) =
        account.refuse(sealgate_api::Permission::Read(sealgate_api::Area::Policy))
    {
        return refused;
    }
    let form = match super::multipart::read(request).await {
        Ok(f) => f,
        Err(e) => return crate::WebError::BadRequest(e).into_response(),
    };
    let pasted = form.text("message").unwrap_or_default().to_owned();
    let bytes = form
        .file("file")
        .filter(|f| !f.is_empty())
        .map(<[u8]>::to_vec)
        .unwrap_or_else(|| {
            pasted
                .replace("\r\n", "\n")
                .replace('\n', "\r\n")
                .into_bytes()
        });
    let sender = form.text("sender").unwrap_or_default().trim().to_owned();
    let recipients_text = form.text("recipients").unwrap_or_default().to_owned();
    let client_text = form.text("client_ip").unwrap_or_default().trim().to_owned();
    let mut errors = Vec::new();
    if bytes.is_empty() {
        errors.push(sealgate_api::FieldError::new(
            "message",
            "Paste a message or choose a file.",
        ));
    }
    let client_ip = if client_text.is_empty() {
        None
    } else {
        match client_text.parse() {
            Ok(ip) => Some(ip),
            Err(_) => {
                errors.push(sealgate_api::FieldError::new(
                    "client_ip",
                    "Not an IP address.",
                ));
                None
            }
        }
    };
    let mut results = None;
    if errors.is_empty() {
        let op = PolicyExplain {
            message: base64::engine::general_purpose::STANDARD.encode(&bytes),
            sender: (!sender.is_empty()).then(|| sender.clone()),
            recipients: lines(&recipients_text.replace(',', "\n")),
            client_ip,
        };
        match run(state.service(), &account.actor, &op).await {
            Ok(r) => results = Some(r),
            Err(ServiceError::Invalid { errors: e }) => errors = e,
            Err(e) => return crate::error::service_error(&e),
        }
    }
    render(&DryRunPage {
        chrome: Chrome::for_account(&state, &account, "Policy dry run", "/policy"),
        message: pasted,
        sender,
        recipients: recipients_text,
        client_ip: client_text,
        results,
        errors: Errors(errors),
    })
}
