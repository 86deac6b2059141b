//! The `[policy]` table: who gets what.
//!
//! ```toml
//! [policy]
//! boundary_only = true                  # internal recipients never need encryption
//! trigger_header = "X-Sealgate-Encrypt" # set by a client plug-in or DLP system
//! trusted_trigger_hosts = ["10.0.0.5/32"]
//! default = { outbound = "encrypt-if-possible", inbound = "clear" }
//!
//! [[policy.rule]]
//! name = "secure subject"
//! subject_keyword = ["[secure]"]
//! action = "encrypt-required"
//!
//! [policy.domain."partner.example"]     # settings: global -> domain -> address
//! action = "encrypt-required"
//! sign = true
//! ```
//!
//! Rules are tried in order and the first whose conditions all hold decides
//! (a condition listing several values holds when any of them does). When no
//! rule matches, the recipient's settings decide: address, then domain, then
//! the default for the direction. The daemon compiles and checks a policy
//! (patterns, regexes with a size limit) before any version using it is
//! stored; the decision itself is the daemon's `policy::decide`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::IpNetwork;

/// Which way a message goes for one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From an internal sender to a recipient outside the organisation.
    Outbound,
    /// From outside to an internal recipient.
    Inbound,
    /// From an internal sender to an internal recipient.
    Internal,
    /// From outside to outside (only for relays the configuration allows).
    External,
}

impl Direction {
    pub fn of(sender_internal: bool, recipient_internal: bool) -> Direction {
        match (sender_internal, recipient_internal) {
            (true, false) => Direction::Outbound,
            (false, true) => Direction::Inbound,
            (true, true) => Direction::Internal,
            (false, false) => Direction::External,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
            Direction::Internal => "internal",
            Direction::External => "external",
        }
    }
}

/// What kind of key a recipient's method uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    /// An X.509 certificate for S/MIME.
    Smime,
    /// An OpenPGP certificate.
    Openpgp,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Smime => "smime",
            KeyKind::Openpgp => "openpgp",
        }
    }
}

/// A delivery method in `policy.methods`: a kind of key, or the portal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MethodName {
    /// The recipient's (or partner gateway's) S/MIME certificate.
    Smime,
    /// The recipient's OpenPGP certificate.
    Openpgp,
    /// The secure web mail portal (`[portal]`), for a recipient without a key.
    Portal,
    /// The portal's push delivery: the message sealed in an HTML
    /// attachment that opens in the portal, for a recipient without a key
    /// in one of `[portal] push_domains`.
    Push,
}

impl MethodName {
    pub fn as_str(self) -> &'static str {
        match self {
            MethodName::Smime => "smime",
            MethodName::Openpgp => "openpgp",
            MethodName::Portal => "portal",
            MethodName::Push => "push",
        }
    }

    /// The kind of key this method encrypts with (`None`: the portal, push or pull).
    pub fn key_kind(self) -> Option<KeyKind> {
        match self {
            MethodName::Smime => Some(KeyKind::Smime),
            MethodName::Openpgp => Some(KeyKind::Openpgp),
            MethodName::Portal | MethodName::Push => None,
        }
    }
}

/// What happens to a message for one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Encrypted or not at all: held until a method exists.
    EncryptRequired,
    /// Encrypted when the recipient has a method, in clear otherwise.
    EncryptIfPossible,
    /// Signed by the gateway, not encrypted.
    Sign,
    /// Delivered as it is.
    Clear,
    /// Kept for an administrator to look at.
    Quarantine,
    /// Refused; the sender gets a failure notice.
    Reject,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::EncryptRequired => "encrypt-required",
            Action::EncryptIfPossible => "encrypt-if-possible",
            Action::Sign => "sign",
            Action::Clear => "clear",
            Action::Quarantine => "quarantine",
            Action::Reject => "reject",
        }
    }

    /// Whether the action asks for encryption.
    pub fn encrypts(self) -> bool {
        matches!(self, Action::EncryptRequired | Action::EncryptIfPossible)
    }
}

/// The default action per direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Defaults {
    pub outbound: Action,
    pub inbound: Action,
    pub internal: Action,
    pub external: Action,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            outbound: Action::EncryptIfPossible,
            inbound: Action::Clear,
            internal: Action::Clear,
            external: Action::Clear,
        }
    }
}

impl Defaults {
    pub fn for_direction(&self, direction: Direction) -> Action {
        match direction {
            Direction::Outbound => self.outbound,
            Direction::Inbound => self.inbound,
            Direction::Internal => self.internal,
            Direction::External => self.external,
        }
    }
}

/// Settings that inherit global -> domain -> address; unset means "inherit".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecipientSettings {
    /// The action when no rule matches.
    pub action: Option<Action>,
    /// Sign what goes out (in addition to encrypting, or alone).
    pub sign: Option<bool>,
    /// Replace the visible subject of encrypted mail by a neutral one.
    pub neutral_subject: Option<bool>,
    /// Keys taken from mail (Autocrypt headers, signatures: trust on first
    /// use) are enough for encrypt-required mail and release held mail.
    /// Default `false`: whoever controls the path to the recipient can put
    /// a key into mail under the recipient's address, so such keys serve
    /// encrypt-if-possible only. Shorthand: `true` is `required_trust =
    /// "harvested"`, `false` the default.
    pub trust_harvested_keys: Option<bool>,
    /// The least trust level a key needs for encrypt-required mail (and to
    /// release held mail): `manual`, `anchored`, `dane`, `wkd`, `ldap`,
    /// `portal` (the default: an administrator's, anchored, DANE, WKD or
    /// LDAP key, or one from the portal), `harvested-dkim` (keys from mail
    /// whose sender's domain signed it), `harvested` (trust on first use).
    pub required_trust: Option<crate::ops::directory::Trust>,
    /// Pin this address or domain to these keys (fingerprints): only they
    /// are used for it; any other key that turns up waits for review.
    pub pinned_keys: Option<Vec<String>>,
    /// Put the gateway's OpenPGP key in an `Autocrypt:` header of the mail
    /// the gateway signs (outbound).
    pub autocrypt: Option<bool>,
    /// The delivery methods for this address or domain, in order
    /// (unset: `policy.methods`). Leaving `portal` out holds an
    /// encrypt-required recipient without a key instead.
    pub methods: Option<Vec<MethodName>>,
}

impl RecipientSettings {
    /// The level this settings table asks of keys for encrypt-required
    /// mail, if it says: `required_trust`, else `trust_harvested_keys`.
    pub fn required_trust(&self) -> Option<crate::ops::directory::Trust> {
        use crate::ops::directory::Trust;
        self.required_trust.or(match self.trust_harvested_keys {
            Some(true) => Some(Trust::Harvested),
            Some(false) => Some(Trust::DEFAULT_REQUIRED),
            None => None,
        })
    }
}

/// One rule: conditions (all must hold) and what to do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rule {
    /// Shown in explanations and tracking.
    pub name: String,
    pub action: Option<Action>,
    /// Also sign (overrides the recipient's settings).
    pub sign: Option<bool>,
    /// Envelope sender patterns (`*@example.com`, `alice@*`, `example.com`).
    pub sender: Vec<String>,
    /// Groups or departments the sender belongs to.
    pub sender_group: Vec<String>,
    /// Recipient address or domain patterns.
    pub recipient: Vec<String>,
    /// `true`: only internal recipients; `false`: only external ones.
    pub recipient_internal: Option<bool>,
    pub direction: Vec<Direction>,
    /// Case-insensitive words in the subject.
    pub subject_keyword: Vec<String>,
    /// Case-insensitive words in the body text.
    pub body_keyword: Vec<String>,
    /// Regular expressions over the body text.
    pub body_regex: Vec<String>,
    pub has_attachment: Option<bool>,
    /// Attachment file name patterns (`*.pdf`).
    pub attachment_name: Vec<String>,
    /// Attachment content type patterns (`application/*`).
    pub attachment_type: Vec<String>,
    pub min_size: Option<u64>,
    pub max_size: Option<u64>,
    /// Patterns for the trigger header's value (`*` = present); the header
    /// counts only when the message came from a trusted host.
    pub trigger: Vec<String>,
    pub encrypted_for_gateway: Option<bool>,
}

/// The `[policy]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub default: Defaults,
    /// Encrypt only what leaves the organisation: internal recipients never
    /// get an encrypting action.
    pub boundary_only: bool,
    /// Remove a matched subject keyword before delivery.
    pub strip_subject_keyword: bool,
    /// The header a client plug-in or DLP system sets to ask for encryption.
    pub trigger_header: String,
    /// Hosts whose trigger header is believed.
    pub trusted_trigger_hosts: Vec<IpNetwork>,
    /// Global settings (the root of the inheritance).
    pub settings: RecipientSettings,
    pub domain: BTreeMap<String, RecipientSettings>,
    pub address: BTreeMap<String, RecipientSettings>,
    pub rule: Vec<Rule>,
    /// The order in which a recipient's methods are tried; `portal`
    /// serves a recipient with no key of the other methods (when
    /// `[portal] enabled`), `push` one in `[portal] push_domains`.
    pub methods: Vec<MethodName>,
    /// How the engines write for recipients.
    pub engine: EngineOptions,
}

/// Options for the encrypting engines (`[policy.engine]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineOptions {
    /// RSA-OAEP (SHA-256) key transport for S/MIME recipients instead of
    /// PKCS#1 v1.5 (which every client reads; gpgsm 2.2 reads no OAEP).
    pub smime_rsa_oaep: bool,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            default: Defaults::default(),
            boundary_only: true,
            strip_subject_keyword: true,
            trigger_header: "X-Sealgate-Encrypt".into(),
            trusted_trigger_hosts: Vec::new(),
            settings: RecipientSettings::default(),
            domain: BTreeMap::new(),
            address: BTreeMap::new(),
            rule: Vec::new(),
            methods: vec![MethodName::Smime, MethodName::Openpgp, MethodName::Portal],
            engine: EngineOptions::default(),
        }
    }
}

/// The kinds of key in a methods list (`policy.methods`, or a
/// recipient's own), in order.
pub fn key_kinds(methods: &[MethodName]) -> Vec<KeyKind> {
    methods.iter().filter_map(|m| m.key_kind()).collect()
}
