//! The review queue: keys that turned up for an address that already has
//! a different one, kept aside until an administrator accepts them (the
//! new key is used from then on) or rejects them (the old key stays).
//! While a key change waits for review, mail that must be encrypted for
//! that address waits too: which key is the recipient's is exactly what
//! is in question.
//!
//! One entry per (address or `@domain`, candidate fingerprint), with the
//! candidate's directory entry (its key material) and the fingerprints of
//! the keys it would replace, so both can be shown side by side.

use serde::{Deserialize, Serialize};

/// A key change waiting for an administrator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// `<address>/<fingerprint>`: stable, so the same key arriving again
    /// does not queue twice.
    pub id: String,
    /// The address (or `@domain`) the key is for.
    pub address: String,
    /// The candidate as it would enter the directory.
    pub candidate: crate::directory::Entry,
    /// The keys it would replace (fingerprints), usable when it arrived.
    pub current: Vec<String>,
    /// Why it was not taken.
    pub why: String,
    pub since_ms: u64,
    /// How often it arrived again since.
    pub seen: u32,
}

impl Pending {
    pub fn id_for(address: &str, fingerprint: &str) -> String {
        format!(
            "{}/{}",
            address.to_ascii_lowercase(),
            fingerprint.to_ascii_lowercase()
        )
    }
}

/// An administrator's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Use the new key (the old ones stay in the directory, outranked).
    Accept,
    /// Keep the old key; the candidate is dropped.
    Reject,
}

use std::sync::Arc;

use crate::store::{SharedStore, Space, StoreError};

/// Most key changes kept waiting (older ones beyond are not shown).
const MAX_PENDING: usize = 10_000;

/// The review queue over the shared store (space `key_reviews`), so every
/// node of a cluster sees the same queue.
#[derive(Clone)]
pub struct Reviews {
    shared: Arc<dyn SharedStore>,
}

impl Reviews {
    pub fn new(shared: Arc<dyn SharedStore>) -> Reviews {
        Reviews { shared }
    }

    /// Keeps `candidate` aside for `address` (again: counted, not doubled).
    pub fn put(
        &self,
        address: &str,
        candidate: crate::directory::Entry,
        current: Vec<String>,
        why: &str,
        now_ms: u64,
    ) -> Result<Pending, StoreError> {
        let id = Pending::id_for(address, &candidate.fingerprint);
        let pending = match self.get(&id)? {
            Some(mut old) => {
                old.seen = old.seen.saturating_add(1);
                old.candidate.last_seen_ms = now_ms;
                old
            }
            None => Pending {
                id: id.clone(),
                address: address.to_ascii_lowercase(),
                candidate,
                current,
                why: why.to_owned(),
                since_ms: now_ms,
                seen: 1,
            },
        };
        let value = serde_json::to_vec(&pending)
            .map_err(|e| StoreError::Unavailable(format!("review record: {e}")))?;
        self.shared.put(Space::Reviews, id.as_bytes(), &value)?;
        self.shared.flush()?;
        Ok(pending)
    }

    pub fn get(&self, id: &str) -> Result<Option<Pending>, StoreError> {
        Ok(self
            .shared
            .get(Space::Reviews, id.to_ascii_lowercase().as_bytes())?
            .and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// Every key change waiting, oldest address first.
    pub fn all(&self) -> Result<Vec<Pending>, StoreError> {
        Ok(self
            .shared
            .range(Space::Reviews, &[], None, false, MAX_PENDING)?
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect())
    }

    /// The key changes waiting for `address` (or `@domain`).
    pub fn for_address(&self, address: &str) -> Result<Vec<Pending>, StoreError> {
        let prefix = format!("{}/", address.to_ascii_lowercase());
        Ok(self
            .shared
            .scan_prefix(Space::Reviews, prefix.as_bytes(), 100)?
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect())
    }

    /// Finds one by id or a unique prefix of it (or of its fingerprint).
    pub fn find(&self, wanted: &str) -> Result<Option<Pending>, StoreError> {
        if let Some(p) = self.get(wanted)? {
            return Ok(Some(p));
        }
        let wanted = wanted.to_ascii_lowercase();
        let hits: Vec<Pending> = self
            .all()?
            .into_iter()
            .filter(|p| {
                p.id.starts_with(&wanted)
                    || (wanted.len() >= 8 && p.candidate.fingerprint.starts_with(&wanted))
            })
            .collect();
        Ok(match hits.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        })
    }

    pub fn remove(&self, id: &str) -> Result<(), StoreError> {
        self.shared.remove(Space::Reviews, id.as_bytes())?;
        self.shared.flush()
    }
}
