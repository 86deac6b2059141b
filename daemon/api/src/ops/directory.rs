//! The key directory: recipients' certificates and keys, partner
//! gateways' certificates.

use serde::{Deserialize, Serialize};

use super::operation;
use crate::settings::policy::KeyKind;
use crate::{Area, Permission};

/// How much a directory entry is believed: where it came from, weakest
/// first (so `>=` means "at least as trusted"). See the daemon's `trust`
/// module for what each level allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trust {
    /// Taken from mail without an authenticated sender: trust on first use.
    Harvested,
    /// Taken from mail whose From domain passed DKIM (aligned).
    HarvestedDkim,
    /// Provided by a recipient authenticated in the portal.
    Portal,
    /// From the corporate LDAP directory.
    Ldap,
    /// Published by the recipient domain's Web Key Directory (verified HTTPS).
    Wkd,
    /// Published in the recipient's DNSSEC-signed zone (SMIMEA, OPENPGPKEY).
    Dane,
    /// An S/MIME certificate chained to a configured anchor, revocation checked.
    #[serde(alias = "verified")]
    Anchored,
    /// Imported by an administrator.
    Manual,
}

impl Trust {
    /// The least level encrypt-required mail accepts unless the policy
    /// says otherwise: an administrator's, anchored, DANE, WKD or LDAP
    /// key, or one from the portal.
    pub const DEFAULT_REQUIRED: Trust = Trust::Portal;

    /// Every level, strongest first.
    pub const ALL: [Trust; 8] = [
        Trust::Manual,
        Trust::Anchored,
        Trust::Dane,
        Trust::Wkd,
        Trust::Ldap,
        Trust::Portal,
        Trust::HarvestedDkim,
        Trust::Harvested,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Trust::Harvested => "harvested",
            Trust::HarvestedDkim => "harvested-dkim",
            Trust::Portal => "portal",
            Trust::Ldap => "ldap",
            Trust::Wkd => "wkd",
            Trust::Dane => "dane",
            Trust::Anchored => "anchored",
            Trust::Manual => "manual",
        }
    }

    /// What it means, for `directory show` and the admin UI.
    pub fn explain(self) -> &'static str {
        match self {
            Trust::Harvested => "taken from mail (trust on first use)",
            Trust::HarvestedDkim => "taken from mail whose sender's domain signed it (DKIM)",
            Trust::Portal => "provided by the recipient in the portal",
            Trust::Ldap => "from the corporate LDAP directory",
            Trust::Wkd => "published by the recipient's domain (Web Key Directory)",
            Trust::Dane => "published by the recipient's domain (DNSSEC, DANE)",
            Trust::Anchored => "chained to a trust anchor, revocation checked",
            Trust::Manual => "imported by an administrator",
        }
    }

    /// Whether it was taken from mail.
    pub fn is_harvested(self) -> bool {
        matches!(self, Trust::Harvested | Trust::HarvestedDkim)
    }

    /// The level named `text` (`manual`, `anchored`, …, `harvested`).
    pub fn parse(text: &str) -> Option<Trust> {
        let text = text.trim().to_ascii_lowercase();
        let text = if text == "verified" {
            "anchored"
        } else {
            text.as_str()
        };
        Trust::ALL.into_iter().find(|l| l.as_str() == text)
    }
}

impl std::fmt::Display for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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
