//! Handlers of `setup.*`: the first-run wizard (logic in
//! `crate::accounts::setup`), over the settings store: a draft is checked
//! as the node would build it, and finishing commits it as one version
//! and puts it in force, like `settings.apply`.

use std::sync::Arc;

use sealgate_api::ops::accounts::{SessionGrant, TotpEnrolment};
use sealgate_api::ops::setup::{
    SetupAdmin, SetupAdminConfirm, SetupDraft, SetupDraftGet, SetupFinish, SetupSave, SetupState,
    SetupStatus, SetupUnlock,
};
use sealgate_api::settings::Settings;
use sealgate_api::{Actor, ServiceError};

use super::{Ctx, blocking};
use crate::accounts::setup::SettingsPort;

/// The settings store as the wizard sees it.
struct Port<'a>(&'a Ctx);

impl SettingsPort for Port<'_> {
    fn current(&self) -> Result<(u64, Settings), ServiceError> {
        match self.0.settings.current()? {
            Some(v) => Ok((v.meta.version, v.settings)),
            None => Ok((0, self.0.live.bootstrap().settings())),
        }
    }

    fn check(&self, settings: &Settings) -> Result<(), ServiceError> {
        let next = self.0.live.get().version + 1;
        self.0
            .live
            .build(next, settings)
            .map(|_| ())
            .map_err(|errors| ServiceError::Invalid { errors })
    }

    fn apply(
        &self,
        author: &Actor,
        settings: Settings,
        base: u64,
        comment: &str,
    ) -> Result<u64, ServiceError> {
        super::settings::commit(
            self.0,
            author,
            Some(base),
            settings,
            Some(comment.to_owned()),
            None,
        )
        .map(|meta| meta.version)
    }
}

pub async fn state(
    ctx: Arc<Ctx>,
    _actor: Actor,
    _op: SetupStatus,
) -> Result<SetupState, ServiceError> {
    Ok(ctx.setup.state())
}

pub async fn unlock(
    ctx: Arc<Ctx>,
    actor: Actor,
    op: SetupUnlock,
) -> Result<SessionGrant, ServiceError> {
    blocking(move || {
        let result = ctx.setup.unlock(&op.token, actor.from.clone());
        // Wrong tokens and the unlock itself are security events.
        ctx.audit_event(
            &actor,
            "setup.unlock",
            serde_json::json!({}),
            result.as_ref().map(|_| ()),
        );
        result
    })
    .await
}

pub async fn draft(
    ctx: Arc<Ctx>,
    actor: Actor,
    _op: SetupDraftGet,
) -> Result<SetupDraft, ServiceError> {
    blocking(move || ctx.setup.draft(&Port(&ctx), &actor)).await
}

pub async fn save(ctx: Arc<Ctx>, actor: Actor, op: SetupSave) -> Result<SetupDraft, ServiceError> {
    blocking(move || {
        ctx.setup
            .save(&Port(&ctx), &actor, op.settings, &op.step, op.certificate)
    })
    .await
}

pub async fn admin(
    ctx: Arc<Ctx>,
    actor: Actor,
    op: SetupAdmin,
) -> Result<TotpEnrolment, ServiceError> {
    blocking(move || {
        ctx.setup
            .admin(&Port(&ctx), &actor, op.name.trim(), &op.password)
    })
    .await
}

pub async fn admin_confirm(
    ctx: Arc<Ctx>,
    actor: Actor,
    op: SetupAdminConfirm,
) -> Result<SetupDraft, ServiceError> {
    blocking(move || ctx.setup.admin_confirm(&Port(&ctx), &actor, &op.code)).await
}

pub async fn finish(
    ctx: Arc<Ctx>,
    actor: Actor,
    _op: SetupFinish,
) -> Result<SessionGrant, ServiceError> {
    blocking(move || ctx.setup.finish(&Port(&ctx), &actor)).await
}
