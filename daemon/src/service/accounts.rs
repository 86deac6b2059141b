//! Handlers of `auth.*` and `accounts.*`: logins, sessions, accounts.
//! The logic is in `crate::accounts`; these map operations onto it.
//! Logins, enrolments and logouts are public operations: they are
//! audited here as security events, whatever their outcome.

use std::sync::Arc;

use sealgate_api::ops::Done;
use sealgate_api::ops::accounts::{
    AccountCreate, AccountInfo, AccountList, AccountResetSecondFactor, AccountUpdate,
    ChangePassword, EndSession, EnrolTotp, Login, LoginOutcome, Logout, MySessions, SessionCheck,
    SessionGrant, SessionInfo,
};
use sealgate_api::{Actor, ServiceError};

use super::{Ctx, blocking};

pub async fn login(ctx: Arc<Ctx>, actor: Actor, op: Login) -> Result<LoginOutcome, ServiceError> {
    blocking(move || {
        let outcome = ctx.accounts.login(
            &op.name,
            &op.password,
            op.code.as_deref(),
            actor.from.clone(),
        );
        let named = Actor {
            name: op.name.clone(),
            ..actor
        };
        ctx.audit_event(
            &named,
            "auth.login",
            serde_json::json!({ "name": op.name }),
            outcome.as_ref().map(|_| ()),
        );
        outcome
    })
    .await
}

pub async fn enrol_totp(
    ctx: Arc<Ctx>,
    actor: Actor,
    op: EnrolTotp,
) -> Result<SessionGrant, ServiceError> {
    blocking(move || {
        let grant = ctx.accounts.enrol_totp(&op.enrolment, &op.code);
        if let Ok(g) = &grant {
            let named = Actor {
                name: g.session.account.clone(),
                role: g.session.role,
                ..actor
            };
            ctx.audit_event(&named, "auth.enrol_totp", serde_json::json!({}), Ok(()));
        }
        grant
    })
    .await
}

pub async fn session(
    ctx: Arc<Ctx>,
    _actor: Actor,
    op: SessionCheck,
) -> Result<SessionInfo, ServiceError> {
    blocking(move || ctx.accounts.session(&op.id, op.touch)).await
}

pub async fn logout(ctx: Arc<Ctx>, _actor: Actor, op: Logout) -> Result<Done, ServiceError> {
    blocking(move || {
        if let Ok(s) = ctx.accounts.session(&op.id, false) {
            let named = Actor {
                name: s.account.clone(),
                role: s.role,
                via: sealgate_api::Via::Web,
                from: s.from.clone(),
            };
            ctx.audit_event(
                &named,
                "auth.logout",
                serde_json::json!({ "session": s.handle }),
                Ok(()),
            );
        }
        ctx.accounts.logout(&op.id)
    })
    .await
}

pub async fn list(
    ctx: Arc<Ctx>,
    _actor: Actor,
    _op: AccountList,
) -> Result<Vec<AccountInfo>, ServiceError> {
    blocking(move || ctx.accounts.list()).await
}

pub async fn create(
    ctx: Arc<Ctx>,
    actor: Actor,
    op: AccountCreate,
) -> Result<AccountInfo, ServiceError> {
    blocking(move || {
        ctx.accounts
            .create(&actor, op.name.trim(), op.role, &op.password)
    })
    .await
}

pub async fn update(
    ctx: Arc<Ctx>,
    actor: Actor,
    op: AccountUpdate,
) -> Result<AccountInfo, ServiceError> {
    blocking(move || ctx.accounts.update(&actor, &op.name, op.role, op.disabled)).await
}

pub async fn reset_second_factor(
    ctx: Arc<Ctx>,
    _actor: Actor,
    op: AccountResetSecondFactor,
) -> Result<AccountInfo, ServiceError> {
    blocking(move || ctx.accounts.reset_second_factor(&op.name)).await
}

pub async fn password(
    ctx: Arc<Ctx>,
    actor: Actor,
    op: ChangePassword,
) -> Result<Done, ServiceError> {
    blocking(move || {
        ctx.accounts
            .change_password(&actor, &op.old, &op.new, &op.keep)
    })
    .await
}

pub async fn sessions(
    ctx: Arc<Ctx>,
    actor: Actor,
    _op: MySessions,
) -> Result<Vec<SessionInfo>, ServiceError> {
    blocking(move || ctx.accounts.my_sessions(&actor)).await
}

pub async fn end_session(
    ctx: Arc<Ctx>,
    actor: Actor,
    op: EndSession,
) -> Result<Done, ServiceError> {
    blocking(move || ctx.accounts.end_session(&actor, &op.handle)).await
}
