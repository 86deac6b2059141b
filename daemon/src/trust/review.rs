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
