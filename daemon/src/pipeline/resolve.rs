//! Resolve stage: the delivery method for a recipient whose decision asks
//! for encryption, from the key directory, in the policy's method order
//! (`policy.methods`, S/MIME then OpenPGP by default): the recipient's own
//! certificate or key first, then its domain's partner-gateway certificate.
//!
//! Trusts: the directory (it only holds parsed, bounded material).

use crate::directory::{Directory, DirectoryError, Entry, Kind, Trust};

/// How a recipient's copy is protected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// Encrypted to the recipient's (or the partner gateway's) certificate.
    Smime(Entry),
    /// Encrypted to the recipient's OpenPGP certificate.
    Openpgp(Entry),
}

impl Method {
    pub fn entry(&self) -> &Entry {
        match self {
            Method::Smime(e) | Method::Openpgp(e) => e,
        }
    }

    /// For explanations: `S/MIME certificate 3f2a… (bob@x.example)`.
    pub fn describe(&self) -> String {
        let e = self.entry();
        let what = match self {
            Method::Smime(_) if e.domain.is_some() => "partner gateway certificate",
            Method::Smime(_) => "S/MIME certificate",
            Method::Openpgp(_) => "OpenPGP key",
        };
        let target = e
            .domain
            .as_ref()
            .map_or_else(|| e.addresses.join(", "), |d| format!("domain {d}"));
        format!(
            "{what} {} ({target})",
            e.fingerprint.get(..16).unwrap_or(&e.fingerprint)
        )
    }
}

/// The method for `address` now, if the directory has one trusted at
/// least `min_trust`. A storage error is an error, never "no method".
pub fn method(
    directory: &Directory,
    address: &str,
    order: &[Kind],
    now_ms: u64,
    min_trust: Trust,
) -> Result<Option<Method>, DirectoryError> {
    Ok(directory
        .best_for(address, order, now_ms, min_trust)?
        .map(|entry| match entry.kind {
            Kind::Smime => Method::Smime(entry),
            Kind::Openpgp => Method::Openpgp(entry),
        }))
}
