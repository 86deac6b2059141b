//! `/accounts`: administrators, operators and auditors (create, change
//! role, disable, reset the second factor); `/account`: one's own
//! sessions (end any of them) and password.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use sealgate_api::ops::accounts::{
    AccountCreate, AccountInfo, AccountList, AccountResetSecondFactor, AccountUpdate,
    ChangePassword, EndSession, MySessions, SessionInfo,
};
use sealgate_api::{Area, Permission, Role, ServiceError, run};
use serde::Deserialize;

use super::{Errors, notice};
use crate::session::Account;
use crate::{Chrome, WebState, render};

#[derive(Template)]
#[template(path = "accounts.html")]
struct AccountsPage {
    chrome: Chrome,
    accounts: Vec<AccountInfo>,
    can_change: bool,
    me: String,
    name: String,
    role: String,
    errors: Errors,
}

#[derive(Deserialize)]
pub struct Done {
    done: Option<String>,
}

async fn accounts_page(
    state: &WebState,
    account: &Account,
    done: Option<&str>,
    name: String,
    role: String,
    errors: Errors,
) -> Response {
    match run(state.service(), &account.actor, &AccountList {}).await {
        Ok(accounts) => {
            let failed = !errors.is_empty();
            let mut r = render(&AccountsPage {
                chrome: Chrome::for_account(state, account, "Accounts", "/accounts")
                    .with_notice(notice(done)),
                can_change: account
                    .session
                    .role
                    .allows(Permission::Write(Area::Accounts)),
                me: account.session.account.clone(),
                accounts,
                name,
                role,
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

pub async fn view_accounts_get(
    State(state): State<WebState>,
    account: Account,
    Query(q): Query<Done>,
) -> Response {
    if let Some(refused) =
        account.refuse(sealgate_api::Permission::Read(sealgate_api::Area::Accounts))
    {
        return refused;
    }
    accounts_page(
        &state,
        &account,
        q.done.as_deref(),
        String::new(),
        "operator".to_owned(),
        Errors::default(),
    )
    .await
}

#[derive(Deserialize)]
pub struct CreateForm {
    name: String,
    role: String,
    password: String,
}

pub async fn view_accounts_post(
    State(state): State<WebState>,
    account: Account,
    axum::Form(form): axum::Form<CreateForm>,
) -> Response {
    if let Some(refused) = account.refuse(sealgate_api::Permission::Write(
        sealgate_api::Area::Accounts,
    )) {
        return refused;
    }
    let Ok(role) = form.role.parse::<Role>() else {
        return accounts_page(
            &state,
            &account,
            None,
            form.name,
            form.role,
            Errors::one("role", "Choose a role."),
        )
        .await;
    };
    let op = AccountCreate {
        name: form.name.trim().to_owned(),
        role,
        password: form.password,
    };
    match run(state.service(), &account.actor, &op).await {
        Ok(_) => Redirect::to("/accounts?done=created").into_response(),
        Err(ServiceError::Invalid { errors }) => {
            accounts_page(&state, &account, None, op.name, form.role, Errors(errors)).await
        }
        Err(e) => crate::error::service_error(&e),
    }
}

#[derive(Deserialize)]
pub struct UpdateForm {
    name: String,
    op: String,
    #[serde(default)]
    role: String,
}

pub async fn view_accounts_update_post(
    State(state): State<WebState>,
    account: Account,
    axum::Form(form): axum::Form<UpdateForm>,
) -> Response {
    if let Some(refused) = account.refuse(sealgate_api::Permission::Write(
        sealgate_api::Area::Accounts,
    )) {
        return refused;
    }
    let result = match form.op.as_str() {
        "disable" | "enable" => run(
            state.service(),
            &account.actor,
            &AccountUpdate {
                name: form.name,
                role: None,
                disabled: Some(form.op == "disable"),
            },
        )
        .await
        .map(|_| "updated"),
        "role" => match form.role.parse::<Role>() {
            Ok(role) => run(
                state.service(),
                &account.actor,
                &AccountUpdate {
                    name: form.name,
                    role: Some(role),
                    disabled: None,
                },
            )
            .await
            .map(|_| "updated"),
            Err(_) => return crate::WebError::BadRequest("Unknown role.").into_response(),
        },
        "reset" => run(
            state.service(),
            &account.actor,
            &AccountResetSecondFactor { name: form.name },
        )
        .await
        .map(|_| "reset"),
        _ => return crate::WebError::BadRequest("Unknown change.").into_response(),
    };
    match result {
        Ok(done) => Redirect::to(&format!("/accounts?done={done}")).into_response(),
        Err(e) => crate::error::service_error(&e),
    }
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    chrome: Chrome,
    sessions: Vec<SessionInfo>,
    current: String,
    errors: Errors,
}

async fn account_page(
    state: &WebState,
    account: &Account,
    done: Option<&str>,
    errors: Errors,
) -> Response {
    match run(state.service(), &account.actor, &MySessions {}).await {
        Ok(sessions) => {
            let failed = !errors.is_empty();
            let mut r = render(&AccountPage {
                chrome: Chrome::for_account(state, account, "My account", "")
                    .with_notice(notice(done)),
                sessions,
                current: account.session.handle.clone(),
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

pub async fn view_account_get(
    State(state): State<WebState>,
    account: Account,
    Query(q): Query<Done>,
) -> Response {
    account_page(&state, &account, q.done.as_deref(), Errors::default()).await
}

#[derive(Deserialize)]
pub struct EndForm {
    handle: String,
}

pub async fn view_end_session_post(
    State(state): State<WebState>,
    account: Account,
    axum::Form(form): axum::Form<EndForm>,
) -> Response {
    let own = form.handle == account.session.handle;
    match run(
        state.service(),
        &account.actor,
        &EndSession {
            handle: form.handle,
        },
    )
    .await
    {
        Ok(_) if own => {
            let mut r = Redirect::to("/login").into_response();
            r.headers_mut().insert(
                axum::http::header::SET_COOKIE,
                crate::session::clear_cookie(),
            );
            r
        }
        Ok(_) => Redirect::to("/account?done=ended").into_response(),
        Err(e) => crate::error::service_error(&e),
    }
}

#[derive(Deserialize)]
pub struct PasswordForm {
    old: String,
    new: String,
    new2: String,
}

pub async fn view_password_post(
    State(state): State<WebState>,
    account: Account,
    axum::Form(form): axum::Form<PasswordForm>,
) -> Response {
    if form.new != form.new2 {
        return account_page(
            &state,
            &account,
            None,
            Errors::one("new2", "The two passwords differ."),
        )
        .await;
    }
    let op = ChangePassword {
        old: form.old,
        new: form.new,
        keep: account.session.handle.clone(),
    };
    match run(state.service(), &account.actor, &op).await {
        Ok(_) => Redirect::to("/account?done=password").into_response(),
        Err(ServiceError::Invalid { errors }) => {
            account_page(&state, &account, None, Errors(errors)).await
        }
        Err(e) => crate::error::service_error(&e),
    }
}
