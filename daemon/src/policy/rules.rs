//! The policy as the administrator writes it (the `[policy]` table of the
//! configuration) and its checked, compiled form.
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
//! the default for the direction.
//!
//! Trusts: nothing; every pattern and regex is checked when the configuration
//! is loaded, regexes with a size limit so none can exhaust memory.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::facts::Direction;
use crate::config::IpNetwork;

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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
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
    /// encrypt-if-possible only.
    pub trust_harvested_keys: Option<bool>,
}

/// One rule: conditions (all must hold) and what to do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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
    pub settings: Settings,
    pub domain: BTreeMap<String, Settings>,
    pub address: BTreeMap<String, Settings>,
    pub rule: Vec<Rule>,
    /// The order in which a recipient's methods are tried.
    pub methods: Vec<crate::directory::Kind>,
    /// How the engines write for recipients.
    pub engine: EngineOptions,
}

/// Options for the encrypting engines (`[policy.engine]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
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
            settings: Settings::default(),
            domain: BTreeMap::new(),
            address: BTreeMap::new(),
            rule: Vec::new(),
            methods: vec![
                crate::directory::Kind::Smime,
                crate::directory::Kind::Openpgp,
            ],
            engine: EngineOptions::default(),
        }
    }
}

/// Most rules a policy may have, and most values per condition.
pub const MAX_RULES: usize = 1000;
pub const MAX_VALUES: usize = 1000;
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A checked policy, regexes compiled.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub config: PolicyConfig,
    /// `body_regex` of each rule, compiled, in rule order.
    pub(super) regexes: Vec<Vec<regex::Regex>>,
}

impl Policy {
    /// Checks the table; the error names the key and what is wrong.
    pub fn compile(config: PolicyConfig) -> Result<Policy, (&'static str, String)> {
        if config.rule.len() > MAX_RULES {
            return Err(("policy.rule", format!("at most {MAX_RULES} rules")));
        }
        if config.trigger_header.is_empty()
            || !config
                .trigger_header
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b':')
        {
            return Err(("policy.trigger_header", "not a header name".into()));
        }
        let mut regexes = Vec::with_capacity(config.rule.len());
        for (i, rule) in config.rule.iter().enumerate() {
            let n = i + 1;
            if rule.name.is_empty() {
                return Err(("name", format!("rule {n} has no name")));
            }
            if rule.action.is_none() {
                return Err(("action", format!("rule {n} ({}) has no action", rule.name)));
            }
            let lists = [
                &rule.sender,
                &rule.sender_group,
                &rule.recipient,
                &rule.subject_keyword,
                &rule.body_keyword,
                &rule.body_regex,
                &rule.attachment_name,
                &rule.attachment_type,
                &rule.trigger,
            ];
            if lists.iter().any(|l| l.len() > MAX_VALUES)
                || lists.iter().any(|l| l.iter().any(String::is_empty))
            {
                return Err((
                    "policy.rule",
                    format!(
                        "rule {n} ({}): empty value or more than {MAX_VALUES} values",
                        rule.name
                    ),
                ));
            }
            let mut compiled = Vec::with_capacity(rule.body_regex.len());
            for source in &rule.body_regex {
                let re = regex::RegexBuilder::new(source)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| ("body_regex", format!("rule {n} ({}): {e}", rule.name)))?;
                compiled.push(re);
            }
            regexes.push(compiled);
        }
        Ok(Policy { config, regexes })
    }
}
