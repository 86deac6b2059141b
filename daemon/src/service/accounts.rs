//! Handlers of `auth.*` and `accounts.*`: logins, sessions, accounts.
//! The logic is in `crate::accounts`; these map operations onto it.

use sealgate_api::ops::Done;
use sealgate_api::ops::accounts::{
    AccountCreate, AccountInfo, AccountList, AccountResetSecondFactor, AccountUpdate,
    ChangePassword, EndSession, EnrolTotp, Login, LoginOutcome, Logout, MySessions, SessionCheck,
    SessionGrant, SessionInfo,
};
use sealgate_api::{Actor, ServiceError};

use super::Ctx;

pub fn login(ctx: &Ctx, actor: &Actor, op: Login) -> Result<LoginOutcome, ServiceError> {
    let outcome = ctx.accounts.login(
        &op.name,
        &op.password,
        op.code.as_deref(),
        actor.from.clone(),
    );
    // Logins are security events: audited whatever the outcome.
    let named = Actor {
        name: op.name.clone(),
        ..actor.clone()
    };
    ctx.audit(
        &named,
        "auth.login",
        serde_json::json!({ "name": op.name }),
        outcome.as_ref().map(|_| ()).map_err(Clone::clone),
    );
    outcome
}

pub fn enrol_totp(ctx: &Ctx, actor: &Actor, op: EnrolTotp) -> Result<SessionGrant, ServiceError> {
    let grant = ctx.accounts.enrol_totp(&op.enrolment, &op.code);
    if let Ok(g) = &grant {
        let named = Actor {
            name: g.session.account.clone(),
            role: g.session.role,
            ..actor.clone()
        };
        ctx.audit(&named, "auth.enrol_totp", serde_json::json!({}), Ok(()));
    }
    grant
}

pub fn session(ctx: &Ctx, _actor: &Actor, op: SessionCheck) -> Result<SessionInfo, ServiceError> {
    ctx.accounts.session(&op.id, op.touch)
}

pub fn logout(ctx: &Ctx, _actor: &Actor, op: Logout) -> Result<Done, ServiceError> {
    if let Ok(s) = ctx.accounts.session(&op.id, false) {
        let named = Actor {
            name: s.account.clone(),
            role: s.role,
            via: sealgate_api::Via::Web,
            from: s.from.clone(),
        };
        ctx.audit(
            &named,
            "auth.logout",
            serde_json::json!({ "session": s.handle }),
            Ok(()),
        );
    }
    ctx.accounts.logout(&op.id)
}

pub fn list(ctx: &Ctx, _actor: &Actor, _op: AccountList) -> Result<Vec<AccountInfo>, ServiceError> {
    ctx.accounts.list()
}

pub fn create(ctx: &Ctx, actor: &Actor, op: AccountCreate) -> Result<AccountInfo, ServiceError> {
    ctx.accounts
        .create(actor, op.name.trim(), op.role, &op.password)
}

pub fn update(ctx: &Ctx, actor: &Actor, op: AccountUpdate) -> Result<AccountInfo, ServiceError> {
    ctx.accounts.update(actor, &op.name, op.role, op.disabled)
}

pub fn reset_second_factor(
    ctx: &Ctx,
    _actor: &Actor,
    op: AccountResetSecondFactor,
) -> Result<AccountInfo, ServiceError> {
    ctx.accounts.reset_second_factor(&op.name)
}

pub fn password(ctx: &Ctx, actor: &Actor, op: ChangePassword) -> Result<Done, ServiceError> {
    ctx.accounts
        .change_password(actor, &op.old, &op.new, &op.keep)
}

pub fn sessions(
    ctx: &Ctx,
    actor: &Actor,
    _op: MySessions,
) -> Result<Vec<SessionInfo>, ServiceError> {
    ctx.accounts.my_sessions(actor)
}

pub fn end_session(ctx: &Ctx, actor: &Actor, op: EndSession) -> Result<Done, ServiceError> {
    ctx.accounts.end_session(actor, &op.handle)
}
