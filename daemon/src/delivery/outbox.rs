//! The local outbox: instead of the Internet, each delivery becomes one
//! `.eml` file, so a newcomer sees exactly what would have been sent.
//!
//! The file holds a `Return-Path:` and one `X-Sealgate-Envelope-To:` line per
//! recipient (as a local delivery agent adds `Delivered-To:`), then the
//! message byte for byte. Written to a temporary name, fsynced and renamed,
//! so a file in the outbox is always whole.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::envelope::{Envelope, EnvelopeRecipient};

use super::{Outcome, RecipientResult};

/// Removes what deliveries cut short by a crash left: `.<name>.eml.tmp`
/// files are never whole (a whole file is renamed to `<name>.eml`). Called
/// at start-up, before any delivery runs.
pub fn remove_leftovers(dir: &Path) -> std::io::Result<usize> {
    let mut removed = 0;
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.ends_with(".eml.tmp") {
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

pub async fn deliver(
    dir: &Path,
    envelope: &Envelope,
    recipients: &[(usize, &EnvelopeRecipient)],
    content: &[u8],
) -> Vec<RecipientResult> {
    let mut head = format!(
        "Return-Path: <{}>\r\n",
        envelope
            .sender
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default()
    );
    for (_, r) in recipients {
        head.push_str(&format!("X-Sealgate-Envelope-To: <{}>\r\n", r.address));
    }
    let name = format!(
        "{}-{}.eml",
        crate::envelope::QueueId::new(),
        envelope.session_id
    );
    let dir = dir.to_path_buf();
    let content = content.to_vec();
    let written = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        std::fs::create_dir_all(&dir)?;
        let tmp = dir.join(format!(".{name}.tmp"));
        let path = dir.join(&name);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(&tmp)?;
        let written = file
            .write_all(head.as_bytes())
            .and_then(|()| file.write_all(&content))
            .and_then(|()| file.sync_all())
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            drop(file);
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::File::open(&dir)?.sync_all()?;
        Ok(path.display().to_string())
    })
    .await;
    let outcome = match written {
        Ok(Ok(path)) => Outcome::Delivered(format!("written to {path}")),
        Ok(Err(e)) => Outcome::Deferred(crate::reason::Reason::local(format!(
            "outbox write failed: {e}"
        ))),
        Err(e) => Outcome::Deferred(crate::reason::Reason::local(format!(
            "outbox write failed: {e}"
        ))),
    };
    recipients
        .iter()
        .map(|(index, _)| RecipientResult {
            index: *index,
            outcome: outcome.clone(),
            remote: "outbox".into(),
        })
        .collect()
}
