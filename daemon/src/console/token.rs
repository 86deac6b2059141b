//! Menu 3: the one-time setup token.
//!
//! The token arms the web setup wizard (and resets admin access). It is 128
//! random bits written as 32 hex digits to `<data>/setup-token`, mode 0640,
//! group `sealgate` so the daemon can check it; it is shown only on the
//! local terminals and never served over HTTP.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{ConsoleError, Context};

/// File name of the setup token inside the data directory.
pub const TOKEN_FILE: &str = "setup-token";

/// Path of the token file.
pub fn path(ctx: &Context) -> PathBuf {
    ctx.data_dir.join(TOKEN_FILE)
}

/// The current token, if one is armed.
pub fn current(ctx: &Context) -> Option<String> {
    let text = fs::read_to_string(path(ctx)).ok()?;
    let token = text.trim();
    if token.is_empty() {
        None
    } else {
        Some(token.to_owned())
    }
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

/// `token reset`: write a fresh token, replacing any old one atomically.
pub fn reset(ctx: &Context, out: &mut dyn Write) -> Result<(), ConsoleError> {
    let token = generate();
    write_token(&path(ctx), &token)?;
    writeln!(out, "New setup token: {token}")?;
    writeln!(
        out,
        "Open https://<appliance address>/setup and enter it to set up admin access."
    )?;
    Ok(())
}

fn generate() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_token(target: &Path, token: &str) -> Result<(), ConsoleError> {
    let dir = target.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| ConsoleError::io("creating", dir, e))?;
    let tmp = target.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(&tmp)
        .map_err(|e| ConsoleError::io("creating", &tmp, e))?;
    writeln!(file, "{token}").map_err(|e| ConsoleError::io("writing", &tmp, e))?;
    file.sync_all()
        .map_err(|e| ConsoleError::io("syncing", &tmp, e))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o640))
        .map_err(|e| ConsoleError::io("setting mode of", &tmp, e))?;
    if let Some(gid) = group_id("sealgate") {
        // Only root may hand the file to the daemon's group; elsewhere
        // (tests, development) the file stays with the caller's group.
        let _ = std::os::unix::fs::chown(&tmp, None, Some(gid));
    }
    fs::rename(&tmp, target).map_err(|e| ConsoleError::io("replacing", target, e))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_has_128_bits_in_hex() {
        let token = generate();
        assert_eq!(token.len(), 32);
        assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(token, generate());
    }
}
