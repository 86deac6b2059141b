//! Handlers of `setup.*`: the first-run wizard (logic in
//! `crate::accounts::setup`).

use sealgate_api::ops::accounts::{SessionGrant, TotpEnrolment};
use sealgate_api::ops::setup::{
    SetupAdmin, SetupAdminConfirm, SetupDraft, SetupDraftGet, SetupFinish, SetupSave, SetupState,
    SetupStatus, SetupUnlock,
};
use sealgate_api::{Actor, ServiceError};

use super::Ctx;

pub fn state(ctx: &Ctx, _actor: &Actor, _op: SetupStatus) -> Result<SetupState, ServiceError> {
    Ok(ctx.setup.state())
}

pub fn unlock(ctx: &Ctx, actor: &Actor, op: SetupUnlock) -> Result<SessionGrant, ServiceError> {
    let result = ctx.setup.unlock(&op.token, actor.from.clone());
    // Wrong tokens and the unlock itself are security events.
    ctx.audit(
        actor,
        "setup.unlock",
        serde_json::json!({}),
        result.as_ref().map(|_| ()).map_err(Clone::clone),
    );
    result
}

pub fn draft(ctx: &Ctx, actor: &Actor, _op: SetupDraftGet) -> Result<SetupDraft, ServiceError> {
    ctx.setup.draft(actor)
}

pub fn save(ctx: &Ctx, actor: &Actor, op: SetupSave) -> Result<SetupDraft, ServiceError> {
    ctx.setup.save(actor, op.settings, &op.step, op.certificate)
}

pub fn admin(ctx: &Ctx, actor: &Actor, op: SetupAdmin) -> Result<TotpEnrolment, ServiceError> {
    ctx.setup.admin(actor, op.name.trim(), &op.password)
}

pub fn admin_confirm(
    ctx: &Ctx,
    actor: &Actor,
    op: SetupAdminConfirm,
) -> Result<SetupDraft, ServiceError> {
    ctx.setup.admin_confirm(actor, &op.code)
}

pub fn finish(ctx: &Ctx, actor: &Actor, _op: SetupFinish) -> Result<SessionGrant, ServiceError> {
    ctx.setup.finish(actor)
}
