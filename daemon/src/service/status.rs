//! The node's state at a glance: settings version, queue by state, key
//! store, storage, disk, what expires soon.

use std::sync::Arc;

use sealgate_api::ops::status::{
    DiskUsage, Expiring, KeyStoreState, QueueCounts, Status, StatusReport,
};
use sealgate_api::{Actor, ServiceError};

use super::{Ctx, blocking, storage};
use crate::queue::state::RecipientStatus;

/// What expires within this many days is listed.
const EXPIRY_WARNING_DAYS: u64 = 30;

pub async fn status(ctx: Arc<Ctx>, _: Actor, _: Status) -> Result<StatusReport, ServiceError> {
    blocking(move || {
        let runtime = ctx.live.get();
        let config = &runtime.config;
        let mut queue = QueueCounts::default();
        for entry in ctx.queue.state().all().map_err(storage)? {
            queue.messages += 1;
            for r in &entry.recipients {
                match r.status {
                    RecipientStatus::Scheduled => queue.scheduled += 1,
                    RecipientStatus::Deferred { .. } => queue.deferred += 1,
                    RecipientStatus::Held { .. } => queue.held += 1,
                    RecipientStatus::Quarantined { .. } => queue.quarantined += 1,
                    _ => {}
                }
            }
        }
        let key_store = match &*ctx.keys.current() {
            crate::keys::KeyStore::Ready(_) => KeyStoreState::Ready,
            crate::keys::KeyStore::NotSetUp => KeyStoreState::NotSetUp,
            crate::keys::KeyStore::Unavailable(reason) => KeyStoreState::Unavailable {
                reason: reason.clone(),
            },
        };
        let data_disk = nix::sys::statvfs::statvfs(&config.data_dir)
            .map(|s| DiskUsage {
                total_bytes: s.blocks().saturating_mul(s.fragment_size()),
                free_bytes: s.blocks_available().saturating_mul(s.fragment_size()),
            })
            .unwrap_or_default();
        Ok(StatusReport {
            node: config.node_name.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            hostname: config.hostname.clone(),
            started_at_ms: ctx.started_at_ms,
            settings_version: runtime.version,
            file_settings_differ: ctx.live.file_differs(),
            queue,
            key_store,
            storage_failed: ctx.db.health().cause,
            data_disk,
            expiring: expiring(&ctx, config),
        })
    })
    .await
}

/// Gateway certificates and directory entries that expire soon.
fn expiring(ctx: &Ctx, config: &crate::config::Config) -> Vec<Expiring> {
    let now = crate::envelope::now_ms();
    let horizon = now + EXPIRY_WARNING_DAYS * 86_400_000;
    let soon = |not_after_ms: u64| not_after_ms < horizon;
    let mut out = Vec::new();
    let certs = config.data_dir.join("certs");
    if let Ok(files) = std::fs::read_dir(&certs) {
        for file in files.flatten() {
            let path = file.path();
            let Some(label) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .filter(|_| path.extension().is_some_and(|e| e == "pem"))
            else {
                continue;
            };
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let chain: Vec<Vec<u8>> = pem_certificates(&bytes);
            if let Some(info) = super::keys::certificate_info(&chain)
                && soon(info.not_after_ms)
            {
                out.push(Expiring {
                    what: format!("gateway key {label}'s certificate"),
                    not_after_ms: info.not_after_ms,
                });
            }
        }
    }
    if let Ok(entries) = ctx.queue.directory().all() {
        for e in entries
            .iter()
            .filter(|e| e.not_after_ms > now && soon(e.not_after_ms))
        {
            out.push(Expiring {
                what: format!(
                    "directory entry {} ({})",
                    e.fingerprint.get(..16).unwrap_or(&e.fingerprint),
                    e.domain
                        .as_ref()
                        .map_or_else(|| e.addresses.join(", "), |d| format!("domain {d}"))
                ),
                not_after_ms: e.not_after_ms,
            });
        }
    }
    out.sort_by_key(|e| e.not_after_ms);
    out
}

/// The DER certificates of a PEM file.
fn pem_certificates(bytes: &[u8]) -> Vec<Vec<u8>> {
    sealgate_smime::cert::parse_bundle(bytes)
        .map(|certs| certs.iter().map(|c| c.der().to_vec()).collect())
        .unwrap_or_default()
}
