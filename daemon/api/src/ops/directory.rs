//! The key directory: recipients' certificates and keys, partner
//! gateways' certificates.

use serde::{Deserialize, Serialize};

use super::operation;
use crate::settings::policy::KeyKind;
use crate::{Area, Permission};

/// How much a directory entry is believed, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trust {
    /// Taken from mail (a signature, an Autocrypt header): trust on first use.
    Harvested,
    /// Checked: a chain to a configured anchor, or a verified signature.
    Verified,
    /// Imported by an administrator.
    Manual,
}

impl Trust {
    pub fn as_str(self) -> &'static str {
        match self {
            Trust::Harvested => "harvested",
            Trust::Verified => "verified",
            Trust::Manual => "manual",
        }
    }
}

/// One certificate or key in the directory (without its bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryEntry {
    pub kind: KeyKind,
    /// SHA-256 of the certificate (S/MIME) or the OpenPGP fingerprint, hex.
    pub fingerprint: String,
    pub subject: String,
    /// The recipient addresses it serves; empty for a partner domain.
    pub addresses: Vec<String>,
    /// Set for a partner gateway's certificate: it serves the whole domain.
    pub domain: Option<String>,
    pub not_before_ms: u64,
    pub not_after_ms: u64,
    pub can_encrypt: bool,
    pub trust: Trust,
    /// `cli`, `web`, `harvested:<queue id>`, …
    pub source: String,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
}

/// `directory.list`: every entry (narrowed by `filter`, a substring of an
/// address, the domain, the fingerprint or the subject).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryList {
    #[serde(default)]
    pub filter: Option<String>,
}
operation!(
    DirectoryList,
    "directory.list",
    Permission::Read(Area::Directory),
    Vec<DirectoryEntry>
);

/// An entry with its certificate or key, armored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryItem {
    pub entry: DirectoryEntry,
    /// PEM (`CERTIFICATE`) or an armored OpenPGP public key.
    pub armored: String,
}

/// `directory.show`: the entries for an address, `@domain`, or a
/// fingerprint (a unique prefix of 8+ hex digits works).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryShow {
    pub key: String,
}
operation!(
    DirectoryShow,
    "directory.show",
    Permission::Read(Area::Directory),
    Vec<DirectoryItem>
);

/// `directory.import`: certificates (PEM, DER, PKCS#7) or OpenPGP keys,
/// for their addresses or, with `domain`, as a partner gateway's
/// certificate. Held mail for them is released at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryImport {
    /// The file's bytes, base64.
    pub data: String,
    pub domain: Option<String>,
}
operation!(
    DirectoryImport,
    "directory.import",
    Permission::Write(Area::Directory),
    Imported,
    audit = |op| serde_json::json!({ "domain": op.domain, "base64_length": op.data.len() })
);

/// What an import stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Imported {
    pub entries: Vec<DirectoryEntry>,
    /// Entries stored but not usable to encrypt now (expired, not yet
    /// valid, no encryption key usage), by fingerprint.
    pub not_usable: Vec<String>,
    /// What happened to held mail for them.
    pub released: String,
}

/// `directory.remove`: an entry by fingerprint (or unique prefix).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryRemove {
    pub fingerprint: String,
}
operation!(
    DirectoryRemove,
    "directory.remove",
    Permission::Write(Area::Directory),
    DirectoryEntry
);
