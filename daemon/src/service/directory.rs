//! The key directory: list, show, import, remove.

use std::sync::Arc;

use base64::Engine as _;
use sealgate_api::ops::directory::{
    DirectoryEntry, DirectoryImport, DirectoryItem, DirectoryList, DirectoryRemove, DirectoryShow,
    Imported,
};
use sealgate_api::{Actor, ServiceError, Via};

use super::{Ctx, blocking};
use crate::directory::{DirectoryError, Entry, Kind, Trust};
use crate::queue::SchedulerRequest;

/// The view of an entry (without its bytes).
pub fn view(e: &Entry) -> DirectoryEntry {
    DirectoryEntry {
        kind: e.kind,
        fingerprint: e.fingerprint.clone(),
        subject: e.subject.clone(),
        addresses: e.addresses.clone(),
        domain: e.domain.clone(),
        not_before_ms: e.not_before_ms,
        not_after_ms: e.not_after_ms,
        can_encrypt: e.can_encrypt,
        trust: e.trust,
        source: e.source.clone(),
        first_seen_ms: e.first_seen_ms,
        last_seen_ms: e.last_seen_ms,
    }
}

/// An entry's certificate (PEM) or key (armored).
pub fn armored(e: &Entry) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(&e.data);
    let (label, blank) = match e.kind {
        Kind::Smime => ("CERTIFICATE", ""),
        Kind::Openpgp => ("PGP PUBLIC KEY BLOCK", "\n"),
    };
    let mut out = format!("-----BEGIN {label}-----\n{blank}");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

impl From<DirectoryError> for ServiceError {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::NotFound(what) => ServiceError::NotFound {
                what: format!("directory entry {what}"),
            },
            DirectoryError::Storage(what) => ServiceError::Unavailable {
                what: format!("the key directory ({what})"),
            },
            DirectoryError::BadDomain(_) => ServiceError::invalid("domain", e.to_string()),
            DirectoryError::Certificate(_) | DirectoryError::NoAddress | DirectoryError::OnlyCa => {
                ServiceError::invalid("data", e.to_string())
            }
        }
    }
}

pub async fn list(
    ctx: Arc<Ctx>,
    _: Actor,
    op: DirectoryList,
) -> Result<Vec<DirectoryEntry>, ServiceError> {
    blocking(move || {
        let wanted = op.filter.map(|f| f.to_ascii_lowercase());
        Ok(ctx
            .queue
            .directory()
            .all()?
            .iter()
            .filter(|e| {
                wanted.as_ref().is_none_or(|w| {
                    e.fingerprint.contains(w.as_str())
                        || e.subject.to_ascii_lowercase().contains(w.as_str())
                        || e.addresses.iter().any(|a| a.contains(w.as_str()))
                        || e.domain.as_ref().is_some_and(|d| d.contains(w.as_str()))
                })
            })
            .map(view)
            .collect())
    })
    .await
}

pub async fn show(
    ctx: Arc<Ctx>,
    _: Actor,
    op: DirectoryShow,
) -> Result<Vec<DirectoryItem>, ServiceError> {
    blocking(move || {
        let directory = ctx.queue.directory();
        let mut entries = directory.lookup(&op.key)?;
        if entries.is_empty() {
            match directory.find(&op.key) {
                Ok(entry) => entries.push(entry),
                Err(DirectoryError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(entries
            .iter()
            .map(|e| DirectoryItem {
                entry: view(e),
                armored: armored(e),
            })
            .collect())
    })
    .await
}

pub async fn import(
    ctx: Arc<Ctx>,
    actor: Actor,
    op: DirectoryImport,
) -> Result<Imported, ServiceError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(op.data.as_bytes())
        .map_err(|_| ServiceError::invalid("data", "not base64"))?;
    let source = match actor.via {
        Via::Cli => "cli".to_owned(),
        via => format!("{}:{}", via.as_str(), actor.name),
    };
    let now = crate::envelope::now_ms();
    let store = ctx.clone();
    let entries = blocking(move || {
        Ok(store.queue.directory().import(
            &bytes,
            op.domain.as_deref(),
            Trust::Manual,
            &source,
            now,
        )?)
    })
    .await?;
    let keys: Vec<String> = entries
        .iter()
        .flat_map(|e| match &e.domain {
            Some(d) => vec![format!("@{d}")],
            None => e.addresses.clone(),
        })
        .collect();
    // Held mail for these recipients is decided again now.
    let released = if ctx.online {
        ctx.queue
            .request(SchedulerRequest::KeysArrived(keys))
            .map(|()| "held mail for them is being released".to_owned())
            .unwrap_or_else(|e| e)
    } else {
        let queue = ctx.queue.clone();
        match blocking(move || {
            crate::queue::scheduler::release_held_for(
                &queue,
                &keys,
                &std::collections::HashSet::new(),
                None,
            )
            .map_err(super::storage)
        })
        .await
        {
            Ok(ids) => format!(
                "{} held message(s) released for when the daemon starts",
                ids.len()
            ),
            Err(e) => format!("held mail not released: {e}"),
        }
    };
    Ok(Imported {
        not_usable: entries
            .iter()
            .filter(|e| !e.usable(now))
            .map(|e| e.fingerprint.clone())
            .collect(),
        entries: entries.iter().map(view).collect(),
        released,
    })
}

pub async fn remove(
    ctx: Arc<Ctx>,
    _: Actor,
    op: DirectoryRemove,
) -> Result<DirectoryEntry, ServiceError> {
    blocking(move || Ok(view(&ctx.queue.directory().remove(&op.fingerprint)?))).await
}
