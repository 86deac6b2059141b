//! Menu 9 on an installed appliance: the root slots, installing a signed
//! update bundle, rolling back.
//!
//! Updating is the service's operation (`crate::service::update`, the
//! same the CLI's `sealgate update` and the admin UI call): when the
//! gateway daemon answers on its control socket, the console sends it
//! `update.install` (so the audit log records it like any other change);
//! when no daemon runs (the console is for when things are broken), it
//! runs the same function itself. The bundle source the administrator
//! types is parsed into a [`BundleSource`] before anything else sees it.

use std::io::Write;

use sealgate_api::ops::update::{UpdateInstall, UpdateInstalled};
use sealgate_api::{ServiceError, WireRequest, WireResponse};

use super::command::Command;
use super::status::clip;
use super::{ConsoleError, Context};
use crate::service::update::{self as service};
pub use crate::service::update::{BundleSource, Slots};

/// The slots, or `None` when RAUC cannot tell (live system, a host).
pub fn slots(ctx: &Context) -> Option<Slots> {
    service::slots(&ctx.data_dir)
}

/// `update show`.
pub fn show(ctx: &Context, out: &mut dyn Write) -> Result<(), ConsoleError> {
    match slots(ctx) {
        Some(slots) => {
            let running = service::image_version();
            for (i, line) in slots.describe(&running).iter().enumerate() {
                let label = if i == 0 { "Root slots:" } else { "" };
                writeln!(out, "{label:<14}{}", clip(line, 64))?;
            }
        }
        None => writeln!(out, "Root slots:   unknown (RAUC does not answer)")?,
    }
    if let Some(result) = service::last_result(&ctx.data_dir) {
        for (i, line) in wrap(&result, 64).iter().enumerate() {
            let label = if i == 0 { "Last update:" } else { "" };
            writeln!(out, "{label:<14}{line}")?;
        }
    }
    Ok(())
}

/// `text` in lines of at most `width` characters, broken between words.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&clip(word, width));
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// `update install SOURCE`: verify and write the bundle into the other slot.
pub fn install(
    ctx: &Context,
    source: &BundleSource,
    out: &mut dyn Write,
) -> Result<(), ConsoleError> {
    if ctx.live {
        return Err(ConsoleError::InvalidInput(
            "the live system is not updated; install it to a disk first (9)".into(),
        ));
    }
    let target = slots(ctx)
        .and_then(|s| s.other().map(str::to_owned))
        .unwrap_or_else(|| "the other slot".into());
    writeln!(
        out,
        "Installing {} into root slot {target}\n(checking the signature and writing the root take a few minutes)...",
        source.as_str()
    )?;
    out.flush()?;
    let result = match through_daemon(ctx, source) {
        Some(answer) => answer,
        None => {
            let mut progress = |line: &str| {
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            };
            service::install(&ctx.data_dir, ctx.live, source, ctx.dry_run, &mut progress)
                .map_err(ConsoleError::from)
        }
    };
    match result {
        Ok(installed) => {
            writeln!(out, "The update is installed.")?;
            // The service's sentence, in lines that fit an 80-column console.
            for line in wrap(&installed.text, 78) {
                writeln!(out, "{line}")?;
            }
            Ok(())
        }
        Err(err) => {
            writeln!(
                out,
                "The update was not installed; the running version stays as it is."
            )?;
            Err(err)
        }
    }
}

/// `update.install` through the running daemon's service; `None` when no
/// daemon answers (or in a dry run, which never changes anything).
fn through_daemon(
    ctx: &Context,
    source: &BundleSource,
) -> Option<Result<UpdateInstalled, ConsoleError>> {
    if ctx.dry_run {
        return None;
    }
    let op = UpdateInstall {
        source: source.as_str().to_owned(),
    };
    let request = WireRequest::of(&op).ok()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let answer = runtime.block_on(crate::control::call_daemon(&ctx.data_dir, &request));
    match answer {
        Ok(None) => None,
        Ok(Some(WireResponse::Ok(value))) => Some(
            serde_json::from_value(value)
                .map_err(|e| ConsoleError::Service(ServiceError::failed(e.to_string()))),
        ),
        Ok(Some(WireResponse::Err(e))) => Some(Err(ConsoleError::Service(e))),
        // The daemon took the request and did not answer: it may have
        // installed; do not install again, say so.
        Err(e) => Some(Err(ConsoleError::Service(ServiceError::Unavailable {
            what: format!("the gateway's control socket ({e}); see menu 9 for the slots"),
        }))),
    }
}

/// `update rollback`: make the other slot's version the one the next boot
/// starts (RAUC `mark-active other`). The data partition stays as it is.
pub fn rollback(ctx: &Context, out: &mut dyn Write) -> Result<(), ConsoleError> {
    if ctx.live {
        return Err(ConsoleError::InvalidInput(
            "the live system has no previous version".into(),
        ));
    }
    let previous = slots(ctx).and_then(|s| {
        s.previous()
            .map(|p| (p.bootname.clone(), p.version.clone().unwrap_or_default()))
    });
    let (slot, version) = match (previous, ctx.dry_run) {
        (Some(p), _) => p,
        (None, true) => ("the other slot".into(), "its version".into()),
        (None, false) => {
            return Err(ConsoleError::InvalidInput(
                "the other root slot holds no version that booted: nothing to roll back to".into(),
            ));
        }
    };
    Command::ActivateOtherSlot.execute(ctx, out)?;
    writeln!(
        out,
        "Slot {slot} ({version}) starts with the next boot. The data partition\n\
         stays as it is."
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_wrap_between_words() {
        assert_eq!(
            wrap("update to 0.2.0 failed: the gateway did not start", 20),
            ["update to 0.2.0", "failed: the gateway", "did not start"]
        );
    }

    #[test]
    fn the_live_system_is_not_updated() {
        let ctx = Context {
            data_dir: std::env::temp_dir(),
            dry_run: true,
            live: true,
        };
        let Ok(source) = BundleSource::parse("http://10.0.2.2/u.raucb") else {
            return;
        };
        let mut out = Vec::new();
        assert!(install(&ctx, &source, &mut out).is_err());
    }
}
