//! The one-time setup token that arms the web setup wizard.
//!
//! 128 random bits as 32 hex digits in `<data_dir>/setup-token` (mode 0640).
//! It is shown only on local terminals (the serial console, the dev run's
//! standard output) and is never sent over HTTP: the web server only
//! compares what the browser presents with it, in constant time.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use subtle::ConstantTimeEq;

/// File name of the token inside the data directory.
pub const FILE_NAME: &str = "setup-token";
/// Marker written when setup has been completed: no token is created again.
pub const COMPLETED_MARKER: &str = "setup-completed";

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// The armed token, if any.
pub fn read(data_dir: &Path) -> Option<String> {
    let text = fs::read_to_string(path(data_dir)).ok()?;
    let token = text.trim();
    (!token.is_empty()).then(|| token.to_string())
}

/// Whether `presented` is the armed token (constant time).
pub fn matches(data_dir: &Path, presented: &str) -> bool {
    match read(data_dir) {
        Some(token) => {
            token.len() == presented.len()
                && bool::from(token.as_bytes().ct_eq(presented.as_bytes()))
        }
        None => false,
    }
}

/// Arms a token if setup was never completed and none is armed; returns the armed token.
pub fn ensure(data_dir: &Path) -> std::io::Result<Option<String>> {
    if data_dir.join(COMPLETED_MARKER).exists() {
        return Ok(None);
    }
    if let Some(token) = read(data_dir) {
        return Ok(Some(token));
    }
    rearm(data_dir, None).map(Some)
}

/// Writes a fresh token (replacing any old one atomically) and re-arms the
/// setup wizard: "reset admin access". `group` hands the file to the
/// daemon's group when the caller (root, on the appliance) may do so.
pub fn rearm(data_dir: &Path, group: Option<u32>) -> std::io::Result<String> {
    let bytes: [u8; 16] = rand::random();
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    fs::create_dir_all(data_dir)?;
    let tmp = data_dir.join(format!("{FILE_NAME}.tmp"));
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(&tmp)?;
    writeln!(file, "{token}")?;
    file.sync_all()?;
    if let Some(gid) = group {
        // Only root may do this; elsewhere (tests, development) the file keeps the caller's group.
        let _ = std::os::unix::fs::chown(&tmp, None, Some(gid));
    }
    fs::rename(&tmp, path(data_dir))?;
    if let Ok(dir) = fs::File::open(data_dir) {
        let _ = dir.sync_all();
    }
    match fs::remove_file(data_dir.join(COMPLETED_MARKER)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(token)
}

/// Setup is finished: the marker is written (and synced) first, then the
/// token removed, so a crash in between leaves no usable token behind.
pub fn complete(data_dir: &Path) -> std::io::Result<()> {
    let marker = data_dir.join(COMPLETED_MARKER);
    let file = fs::File::create(&marker)?;
    file.sync_all()?;
    match fs::remove_file(path(data_dir)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Ok(dir) = fs::File::open(data_dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn token_has_128_bits_in_hex_and_rearm_replaces_it() {
        let dir =
            std::env::temp_dir().join(format!("sealgate-token-{}", crate::util::new_session_id()));
        let first = ensure(&dir).unwrap().unwrap();
        assert_eq!(first.len(), 32);
        assert!(first.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(ensure(&dir).unwrap().as_deref(), Some(first.as_str()));
        assert!(matches(&dir, &first));
        assert!(!matches(&dir, &first[..31]));
        fs::write(dir.join(COMPLETED_MARKER), "").unwrap();
        let second = rearm(&dir, None).unwrap();
        assert_ne!(first, second);
        assert!(!dir.join(COMPLETED_MARKER).exists());
        assert!(!matches(&dir, &first));
        let _ = fs::remove_dir_all(dir);
    }
}
