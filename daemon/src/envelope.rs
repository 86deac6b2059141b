//! The envelope of an accepted message: who sent it, to whom, with which
//! DSN requests, and from where. It travels with the message through the
//! spool, the pipeline and the outbound queue.

use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::smtp::command::{BodyType, Notify, Ret};

/// The id of one queued message: 12 hex digits of milliseconds then 8
/// random hex digits, so ids sort by arrival and never collide in practice.
/// Only the shape is accepted (it names the spool file), so a `QueueId`
/// from anywhere is safe as a file name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct QueueId(String);

impl QueueId {
    /// A new id for a message accepted now.
    pub fn new() -> QueueId {
        let ms = now_ms();
        let random: u32 = rand::random();
        QueueId(format!("{ms:012X}{random:08X}"))
    }

    /// `text` if it has the shape of a queue id.
    pub fn parse(text: &str) -> Option<QueueId> {
        (text.len() == 20 && text.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| QueueId(text.to_ascii_uppercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for QueueId {
    fn default() -> Self {
        QueueId::new()
    }
}

impl std::fmt::Display for QueueId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for QueueId {
    type Error = String;

    fn try_from(text: String) -> Result<QueueId, String> {
        QueueId::parse(&text).ok_or_else(|| format!("`{text}` is not a queue id"))
    }
}

impl From<QueueId> for String {
    fn from(id: QueueId) -> String {
        id.0
    }
}

/// One recipient as the client gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeRecipient {
    pub address: Address,
    /// NOTIFY= of RFC 3461, if given.
    pub notify: Option<Notify>,
    /// ORCPT= of RFC 3461 (`type;xtext`), if given.
    pub orcpt: Option<String>,
}

impl EnvelopeRecipient {
    /// Which notifications the sender asked for (RFC 3461 default if absent).
    pub fn notify_or_default(&self) -> Notify {
        self.notify.unwrap_or_else(Notify::default_when_absent)
    }
}

/// Everything about a message except its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// `None` is the null sender `<>` (bounces): never send a DSN to it.
    pub sender: Option<Address>,
    pub recipients: Vec<EnvelopeRecipient>,
    pub ret: Option<Ret>,
    /// ENVID= of RFC 3461, xtext-encoded.
    pub envid: Option<String>,
    pub body_type: BodyType,
    pub smtputf8: bool,
    /// Where it came from.
    pub client_ip: String,
    pub helo: String,
    pub tls: bool,
    pub session_id: String,
    /// Milliseconds since the Unix epoch when we accepted it.
    pub received_at_ms: u64,
    /// Groups (local or directory) the sender belonged to when we accepted
    /// it, for the policy's sender-group rules.
    #[serde(default)]
    pub sender_groups: Vec<String>,
    /// Written by this gateway for the recipient as it is (an invitation):
    /// the pipeline sends it unchanged, without a policy decision. Never
    /// set for mail received over SMTP.
    #[serde(default)]
    pub gateway_notice: bool,
}

impl Envelope {
    /// The envelope of a message this gateway writes itself (a DSN, an
    /// invitation): from the null sender, so nothing bounces back to it,
    /// to one recipient, 7-bit, from no SMTP client.
    pub fn from_gateway(recipient: Address, hostname: &str, session_id: String) -> Envelope {
        Envelope {
            sender: None,
            recipients: vec![EnvelopeRecipient {
                address: recipient,
                notify: None,
                orcpt: None,
            }],
            ret: None,
            envid: None,
            body_type: BodyType::SevenBit,
            smtputf8: false,
            client_ip: "local".into(),
            helo: hostname.to_owned(),
            tls: false,
            session_id,
            received_at_ms: now_ms(),
            sender_groups: Vec::new(),
            gateway_notice: false,
        }
    }

    /// The sender for logs and DSN headers (`<>` when null).
    /// The sender's address, or the empty string for `<>`.
    pub fn sender_text_or_empty(&self) -> String {
        self.sender
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    pub fn sender_text(&self) -> String {
        self.sender
            .as_ref()
            .map_or_else(|| "<>".to_string(), ToString::to_string)
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
