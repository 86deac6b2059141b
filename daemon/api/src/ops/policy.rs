//! The policy dry run: what the gateway would do with a message, per
//! recipient, and why; nothing is queued or sent.

use serde::{Deserialize, Serialize};

use super::directory::Trust;
use super::operation;
use crate::settings::policy::{Action, Direction, KeyKind};
use crate::{Area, Permission};

/// `policy.explain`: the decision for each recipient of a message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyExplain {
    /// The message (RFC 5322), base64.
    pub message: String,
    /// Envelope sender (default: the From address).
    #[serde(default)]
    pub sender: Option<String>,
    /// Envelope recipients (default: To, Cc and Bcc).
    #[serde(default)]
    pub recipients: Vec<String>,
    /// The client's address: decides internal sender and trusted trigger
    /// header (default 127.0.0.1).
    #[serde(default)]
    pub client_ip: Option<std::net::IpAddr>,
}
operation!(
    PolicyExplain,
    "policy.explain",
    Permission::Read(Area::Policy),
    Vec<Explanation>,
    audit = |op| serde_json::json!({ "sender": op.sender, "recipients": op.recipients })
);

/// The key a method would use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRef {
    pub kind: KeyKind,
    pub fingerprint: String,
    pub trust: Trust,
    /// `S/MIME certificate 3f2a… (bob@x.example)`.
    pub description: String,
}

/// The decision for one recipient, with everything that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    pub recipient: String,
    pub direction: Direction,
    pub action: Action,
    pub sign: bool,
    /// A matched subject keyword that is removed before delivery.
    pub strip_keyword: Option<String>,
    /// `rule 2 "secure subject"`, `settings of domain x`, `default for outbound mail`.
    pub decided_by: String,
    /// The conditions that held and every guard that changed the action.
    pub because: Vec<String>,
    /// For an encrypting action: the key that would be used, if any.
    pub key: Option<KeyRef>,
    /// What would happen, in words (`encrypted to …`, `held: …`, `sent in clear`).
    pub outcome: String,
    /// The whole decision on one line (what tracking records).
    pub line: String,
}
