//! The audit log: who did what, from where, with what outcome, and the
//! settings versions before and after; every change and every denial.
//!
//! Append-only in the shared store (space `audit`), keyed by time (ms,
//! big-endian) and eight random bytes, so records sort by time and two
//! nodes of a cluster never write the same key. Old records are removed
//! after `tracking.retention_days`, in small batches.
//!
//! Trusts: its callers (the service) to pass arguments without secrets
//! (`Operation::audit_args`).

use std::sync::Arc;

use sealgate_api::Actor;
use sealgate_api::ops::audit::{AuditOutcome, AuditRecord, AuditSearch};

use crate::store::{SharedStore, Space, StoreError};

/// Most records one search returns.
const MAX_RESULTS: usize = 10_000;

#[derive(Clone)]
pub struct Audit {
    shared: Arc<dyn SharedStore>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Audit {
    pub fn new(shared: Arc<dyn SharedStore>) -> Audit {
        Audit { shared }
    }

    /// Appends one record.
    pub fn record(
        &self,
        actor: &Actor,
        operation: &str,
        args: serde_json::Value,
        outcome: AuditOutcome,
        settings_before: u64,
        settings_after: u64,
    ) -> Result<(), StoreError> {
        let time_ms = crate::envelope::now_ms();
        let mut key = time_ms.to_be_bytes().to_vec();
        key.extend_from_slice(&rand::random::<[u8; 8]>());
        let record = AuditRecord {
            id: hex(&key),
            time_ms,
            actor: actor.name.clone(),
            role: actor.role,
            via: actor.via,
            from: actor.from.clone(),
            operation: operation.to_owned(),
            args,
            outcome,
            settings_before,
            settings_after,
        };
        tracing::info!(
            actor = %record.actor,
            role = record.role.as_str(),
            via = record.via.as_str(),
            operation,
            outcome = ?record.outcome,
            "audit"
        );
        let value = serde_json::to_vec(&record)
            .map_err(|e| StoreError::Unavailable(format!("audit record not encodable: {e}")))?;
        self.shared.put(Space::Audit, &key, &value)?;
        self.shared.flush()
    }

    /// Records matching `query`, newest first.
    pub fn search(&self, query: &AuditSearch) -> Result<Vec<AuditRecord>, StoreError> {
        let start = query.since_ms.unwrap_or(0).to_be_bytes();
        let end = query.until_ms.map(|u| u.saturating_add(1).to_be_bytes());
        let limit = query.limit.unwrap_or(200).min(MAX_RESULTS);
        let wanted = |r: &AuditRecord| {
            query.actor.as_ref().is_none_or(|a| &r.actor == a)
                && query
                    .operation
                    .as_ref()
                    .is_none_or(|o| r.operation.starts_with(o.as_str()))
        };
        // Filters apply after the scan: scan in bounded pages until enough match.
        let mut found = Vec::new();
        let mut upper: Option<Vec<u8>> = end.map(|e| e.to_vec());
        loop {
            let page = self
                .shared
                .range(Space::Audit, &start, upper.as_deref(), true, 1000)?;
            let Some((last_key, _)) = page.last() else {
                break;
            };
            let next_upper = last_key.clone();
            let exhausted = page.len() < 1000;
            for (_, value) in page {
                if let Ok(record) = serde_json::from_slice::<AuditRecord>(&value)
                    && wanted(&record)
                {
                    found.push(record);
                    if found.len() >= limit {
                        return Ok(found);
                    }
                }
            }
            if exhausted {
                break;
            }
            upper = Some(next_upper);
        }
        Ok(found)
    }

    /// Removes up to `batch` records older than `before_ms`; returns how
    /// many it removed (0: nothing older is left).
    pub fn prune(&self, before_ms: u64, batch: usize) -> Result<usize, StoreError> {
        let old = self.shared.range(
            Space::Audit,
            &[],
            Some(&before_ms.to_be_bytes()),
            false,
            batch,
        )?;
        for (key, _) in &old {
            self.shared.remove(Space::Audit, key)?;
        }
        Ok(old.len())
    }
}
