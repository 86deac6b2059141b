//! What the policy may look at: facts about one message and one recipient.
//!
//! The parse stage (`pipeline::parse`) fills [`MessageFacts`] from the
//! message and its envelope; the expand stage adds the sender's groups. The
//! policy never sees the raw message, so every fact here is bounded (the body
//! text is a prefix, attachment lists are capped) and evaluation is cheap.
//!
//! Trusts: whoever fills these in has already decided whether the trigger
//! header came from a trusted host (`trigger_trusted`).

use serde::{Deserialize, Serialize};

/// Which way a message goes for one recipient.
pub use sealgate_api::settings::policy::Direction;

/// The cryptographic wrapping a message arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Wrapping {
    /// S/MIME enveloped or auth-enveloped data.
    Smime,
    /// PGP/MIME or an inline PGP message.
    Openpgp,
}

/// One attachment, as far as the policy cares.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The file name (from Content-Disposition or Content-Type), if any.
    pub name: Option<String>,
    /// `type/subtype`, lower case.
    pub content_type: String,
}

/// Facts about a message, shared by all its recipients.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MessageFacts {
    /// The envelope sender (empty for bounces).
    pub sender: String,
    /// Whether the sender is internal (an own domain, from an internal network).
    pub sender_internal: bool,
    /// Groups (local lists or directory groups) the sender belongs to.
    pub sender_groups: Vec<String>,
    /// The decoded subject.
    pub subject: String,
    /// A bounded prefix of the decoded text of the message's text parts.
    pub body_text: String,
    /// Attachments (bounded in number).
    pub attachments: Vec<Attachment>,
    /// Size in octets as received.
    pub size: u64,
    /// The value of the configured trigger header, if present.
    pub trigger_header: Option<String>,
    /// Whether the trigger header may be believed: the message came from a
    /// configured plug-in or DLP host.
    pub trigger_trusted: bool,
    /// Set when the message arrived encrypted for the gateway.
    pub encrypted_for_gateway: Option<Wrapping>,
}

/// One recipient, as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub address: String,
    /// Whether the address is in one of the organisation's domains.
    pub internal: bool,
    /// An administrator released it from quarantine: a quarantine decision
    /// becomes encrypt-if-possible (the guards still apply).
    #[serde(default)]
    pub released: bool,
}

impl Recipient {
    pub fn domain(&self) -> &str {
        self.address
            .rsplit_once('@')
            .map_or(self.address.as_str(), |(_, d)| d)
    }
}
