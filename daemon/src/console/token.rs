//! Menu 3: the one-time setup token.
//!
//! The token arms the web setup wizard (and resets admin access). It is 128
//! random bits written as 32 hex digits to `<data>/setup-token`, mode 0640,
//! group `sealgate` so the daemon can check it; it is shown only on the
//! local terminals and never served over HTTP.

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use super::{ConsoleError, Context};
use crate::setup_token;

/// Path of the token file.
pub fn path(ctx: &Context) -> PathBuf {
    setup_token::path(&ctx.data_dir)
}

/// The current token, if one is armed.
pub fn current(ctx: &Context) -> Option<String> {
    setup_token::read(&ctx.data_dir)
}

/// `token show`.
pub fn show(ctx: &Context, out: &mut dyn Write) -> Result<(), ConsoleError> {
    match current(ctx) {
        Some(token) => writeln!(out, "Setup token: {token}")?,
        None => writeln!(
            out,
            "No setup token is armed. Use \"Reset admin access\" to create one."
        )?,
    }
    Ok(())
}

/// `token reset`: write a fresh token, replacing any old one atomically,
/// and re-arm the setup wizard.
pub fn reset(ctx: &Context, out: &mut dyn Write) -> Result<(), ConsoleError> {
    let token = setup_token::rearm(&ctx.data_dir, group_id("sealgate"))
        .map_err(|e| ConsoleError::io("writing", &path(ctx), e))?;
    writeln!(out, "New setup token: {token}")?;
    writeln!(
        out,
        "Open https://<appliance address>/setup and enter it to set up admin access."
    )?;
    Ok(())
}

/// Look a group up in /etc/group (no NSS needed on the appliance).
fn group_id(name: &str) -> Option<u32> {
    let groups = fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        fields.nth(1)?.parse().ok()
    })
}
