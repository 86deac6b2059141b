//! The trust model's operations: the review queue of key changes (two keys
//! side by side, accept or reject), S/MIME trust anchors and CRLs, key
//! discovery on demand, and what to publish in our own DNS and WKD.

use serde::{Deserialize, Serialize};

use super::directory::{DirectoryItem, Trust};
use super::operation;
use crate::{Area, Permission};

/// A key change waiting for review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyReview {
    /// `address/fingerprint`: what accept and reject take (a unique
    /// prefix, or the candidate's fingerprint prefix, works too).
    pub id: String,
    /// The address (or `@domain`) the key is for.
    pub address: String,
    pub fingerprint: String,
    /// The candidate's level, and where it came from.
    pub trust: Trust,
    pub source: String,
    /// Why it was set aside.
    pub why: String,
    pub since_ms: u64,
    /// How often it arrived.
    pub seen: u32,
    /// The keys it would replace.
    pub current: Vec<String>,
}

/// `review.list`: every key change waiting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewList {}
operation!(
    ReviewList,
    "review.list",
    Permission::Read(Area::Directory),
    Vec<KeyReview>
);

/// One key change with both keys, side by side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyReviewDetail {
    pub review: KeyReview,
    /// The key that turned up.
    pub candidate: DirectoryItem,
    /// The keys the directory has for the address now.
    pub current: Vec<DirectoryItem>,
}

/// `review.show`: a key change and both keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewShow {
    pub id: String,
}
operation!(
    ReviewShow,
    "review.show",
    Permission::Read(Area::Directory),
    KeyReviewDetail
);

/// `review.accept`: the new key is used from now on (as an
/// administrator's: `manual`); the keys it replaces leave the directory;
/// mail held for the address is looked at again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewAccept {
    pub id: String,
}
operation!(
    ReviewAccept,
    "review.accept",
    Permission::Write(Area::Directory),
    super::Done
);

/// `review.reject`: the new key is dropped; the old key stays in use and
/// mail held for the address is looked at again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewReject {
    pub id: String,
}
operation!(
    ReviewReject,
    "review.reject",
    Permission::Write(Area::Directory),
    super::Done
);

/// A trust anchor (S/MIME).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    pub subject: String,
    /// SHA-256 of the certificate, hex.
    pub fingerprint: String,
    pub not_after_ms: u64,
}

/// `anchors.list`: the S/MIME trust anchors in force.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnchorsList {}
operation!(
    AnchorsList,
    "anchors.list",
    Permission::Read(Area::Directory),
    Vec<Anchor>
);

/// A CRL the gateway holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrlInfo {
    /// The distribution point it came from, or `upload`.
    pub origin: String,
    pub issuer: String,
    pub this_update_ms: u64,
    pub next_update_ms: Option<u64>,
    /// How many certificates it revokes.
    pub revoked: usize,
}

/// `crl.list`: the CRLs held.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrlList {}
operation!(
    CrlList,
    "crl.list",
    Permission::Read(Area::Directory),
    Vec<CrlInfo>
);

/// `crl.upload`: a CRL (DER or PEM) from an administrator, kept when a
/// trust anchor (or a CA the directory knows) issued it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrlUpload {
    /// The file's bytes, base64.
    pub data: String,
}
operation!(
    CrlUpload,
    "crl.upload",
    Permission::Write(Area::Directory),
    CrlInfo,
    audit = |op| serde_json::json!({ "base64_length": op.data.len() })
);

/// What one key source found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discovered {
    /// `ldap`, `wkd`, `dane`.
    pub source: String,
    /// Where exactly (URL, entry, DNS name).
    pub origin: String,
    pub kind: crate::settings::policy::KeyKind,
    /// Set for a partner gateway's key (it serves the domain).
    pub domain: Option<String>,
}

/// The outcome of a lookup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveryResult {
    pub address: String,
    /// `found`, `missing`, `failed`, `off`.
    pub status: String,
    pub found: Vec<Discovered>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// `discovery.lookup`: asks the key sources for an address now (not from
/// the cache); what is found is offered to the directory as in delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveryLookup {
    pub address: String,
}
operation!(
    DiscoveryLookup,
    "discovery.lookup",
    Permission::Write(Area::Directory),
    DiscoveryResult
);

/// A record to put into our own DNS zone, or a WKD path we serve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub address: String,
    /// `OPENPGPKEY`, `SMIMEA`, or `WKD`.
    pub kind: String,
    /// The owner name (DNS) or the URL path (WKD).
    pub name: String,
    /// The record data in zone-file presentation form (DNS), or the
    /// certificate's fingerprint (WKD).
    pub data: String,
}

/// `publish.records`: the OPENPGPKEY and SMIMEA records for our users'
/// and the gateway's keys (to put into our DNS zone) and the WKD paths the
/// web listener serves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishRecords {}
operation!(
    PublishRecords,
    "publish.records",
    Permission::Read(Area::Directory),
    Vec<Published>
);

/// What the Web Key Directory serves for one request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WkdAnswer {
    /// The binary OpenPGP keys (transferable public keys, concatenated),
    /// base64; empty for the policy file.
    pub keys: String,
}

/// `wkd.lookup`: what our Web Key Directory serves (RFC draft
/// `openpgp-webkey-service`), without login: the OpenPGP keys we publish
/// (the gateway's identity and administrator-imported or LDAP keys of our
/// own users) for the local part whose hash is `hash` under `domain`, one
/// of our mail domains. Without `hash`: the domain's policy file (empty).
/// Not found when the domain is not ours or no key matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WkdLookup {
    pub domain: String,
    /// The z-base-32 SHA-1 of the lower-cased local part.
    #[serde(default)]
    pub hash: Option<String>,
    /// The local part itself (the `l=` parameter), when the client sent it.
    #[serde(default)]
    pub local: Option<String>,
}
operation!(WkdLookup, "wkd.lookup", Permission::Public, WkdAnswer);
