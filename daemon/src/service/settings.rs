//! Settings versions: show, get and set one key, apply a whole tree,
//! compare, history, roll back, export.
//!
//! A change is checked whole, with the checks the bootstrap file gets
//! (`config::check_settings`) plus building it as this node would run it
//! (the TLS files must load); an invalid change is refused with every
//! error naming its key, and nothing is stored. A valid one becomes a new
//! version and is put in force at once (new SMTP sessions and the next
//! attempts use it; work in flight finishes under the version it started
//! with).

use std::sync::Arc;

use sealgate_api::ops::settings::{
    Change, SettingsApply, SettingsDiff, SettingsExport, SettingsGet, SettingsHistory,
    SettingsRollback, SettingsSet, SettingsShow, SettingsVersion, VersionMeta,
};
use sealgate_api::settings::Settings;
use sealgate_api::{Actor, ServiceError};

use super::{Ctx, blocking};
use crate::settings::CommitError;
use crate::settings::path;

fn version_of(ctx: &Ctx, version: Option<u64>) -> Result<SettingsVersion, ServiceError> {
    let found = match version {
        Some(v) => ctx.settings.get(v)?,
        None => ctx.settings.current()?,
    };
    found.ok_or_else(|| ServiceError::NotFound {
        what: match version {
            Some(v) => format!("settings version {v}"),
            None => "settings (none stored yet)".to_owned(),
        },
    })
}

/// Checks `settings`, stores it as the next version and puts it in force.
pub(crate) fn commit(
    ctx: &Ctx,
    actor: &Actor,
    base: Option<u64>,
    settings: Settings,
    comment: Option<String>,
    restores: Option<u64>,
) -> Result<VersionMeta, ServiceError> {
    // Built first as this node will run it: what does not build is refused whole.
    let current = ctx.live.get().version;
    ctx.live
        .build(current + 1, &settings)
        .map_err(|errors| ServiceError::Invalid { errors })?;
    let meta = ctx
        .settings
        .commit(base, settings.clone(), actor, comment, restores)
        .map_err(|e| match e {
            CommitError::Conflict { expected, current } => {
                ServiceError::Conflict { expected, current }
            }
            CommitError::Store(e) => e.into(),
        })?;
    match ctx.live.build(meta.version, &settings) {
        Ok(runtime) => ctx.live.install(runtime),
        Err(errors) => tracing::error!(
            version = meta.version,
            ?errors,
            "a stored settings version did not build a second time; the store's follower retries"
        ),
    }
    Ok(meta)
}

pub async fn show(
    ctx: Arc<Ctx>,
    _: Actor,
    op: SettingsShow,
) -> Result<SettingsVersion, ServiceError> {
    blocking(move || version_of(&ctx, op.version)).await
}

pub async fn get(
    ctx: Arc<Ctx>,
    _: Actor,
    op: SettingsGet,
) -> Result<serde_json::Value, ServiceError> {
    blocking(move || {
        let version = version_of(&ctx, op.version)?;
        path::get(&version.settings, &op.key).map_err(|e| ServiceError::Invalid { errors: vec![e] })
    })
    .await
}

pub async fn set(
    ctx: Arc<Ctx>,
    actor: Actor,
    op: SettingsSet,
) -> Result<VersionMeta, ServiceError> {
    blocking(move || {
        let base = version_of(&ctx, op.base_version)?;
        let changed = path::set(&base.settings, &op.key, op.value)
            .map_err(|e| ServiceError::Invalid { errors: vec![e] })?;
        commit(
            &ctx,
            &actor,
            Some(base.meta.version),
            changed,
            op.comment,
            None,
        )
    })
    .await
}

pub async fn apply(
    ctx: Arc<Ctx>,
    actor: Actor,
    op: SettingsApply,
) -> Result<VersionMeta, ServiceError> {
    blocking(move || commit(&ctx, &actor, op.base_version, op.settings, op.comment, None)).await
}

pub async fn diff(ctx: Arc<Ctx>, _: Actor, op: SettingsDiff) -> Result<Vec<Change>, ServiceError> {
    blocking(move || {
        let to = version_of(&ctx, op.to)?;
        let from = match op.from {
            Some(v) => version_of(&ctx, Some(v))?.settings,
            None if to.meta.version > 1 => version_of(&ctx, Some(to.meta.version - 1))?.settings,
            None => Settings::default(),
        };
        path::diff(&from, &to.settings).map_err(|e| ServiceError::Invalid { errors: vec![e] })
    })
    .await
}

pub async fn history(
    ctx: Arc<Ctx>,
    _: Actor,
    op: SettingsHistory,
) -> Result<Vec<VersionMeta>, ServiceError> {
    blocking(move || Ok(ctx.settings.history(op.limit.unwrap_or(100))?)).await
}

pub async fn rollback(
    ctx: Arc<Ctx>,
    actor: Actor,
    op: SettingsRollback,
) -> Result<VersionMeta, ServiceError> {
    blocking(move || {
        let old = version_of(&ctx, Some(op.to))?;
        let comment = op
            .comment
            .or_else(|| Some(format!("rollback to version {}", op.to)));
        commit(
            &ctx,
            &actor,
            op.base_version,
            old.settings,
            comment,
            Some(op.to),
        )
    })
    .await
}

pub async fn export(ctx: Arc<Ctx>, _: Actor, op: SettingsExport) -> Result<String, ServiceError> {
    blocking(move || {
        let version = version_of(&ctx, op.version)?;
        let body = toml::to_string(&version.settings)
            .map_err(|e| ServiceError::failed(format!("settings not encodable as TOML: {e}")))?;
        Ok(format!(
            "# Sealgate settings, version {} ({} by {} via {}){}\n\
             # Apply with: sealgate settings apply FILE\n\n{body}",
            version.meta.version,
            crate::util::iso8601_ms(version.meta.time_ms),
            version.meta.author,
            version.meta.via.as_str(),
            version
                .meta
                .comment
                .as_deref()
                .map(|c| format!(": {c}"))
                .unwrap_or_default(),
        ))
    })
    .await
}
