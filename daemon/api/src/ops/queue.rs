//! The queue: what waits, and the administrator's changes to it.

use serde::{Deserialize, Serialize};

use super::{Done, operation};
use crate::{Area, Permission};

/// Where one recipient of a queued message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipientState {
    /// Waiting for its first or next attempt.
    Scheduled,
    /// The last attempt failed temporarily; it will be retried.
    Deferred,
    /// Accepted by the next hop (or written to the outbox).
    Delivered,
    /// Failed for good.
    Bounced,
    /// Removed by an administrator.
    Deleted,
    /// Encryption required and no method yet: kept, never sent in clear.
    Held,
    /// Put aside by policy for an administrator.
    Quarantined,
}

impl RecipientState {
    pub fn as_str(self) -> &'static str {
        match self {
            RecipientState::Scheduled => "scheduled",
            RecipientState::Deferred => "deferred",
            RecipientState::Delivered => "delivered",
            RecipientState::Bounced => "bounced",
            RecipientState::Deleted => "deleted",
            RecipientState::Held => "held",
            RecipientState::Quarantined => "quarantined",
        }
    }
}

/// Why a recipient is where it is: the enhanced status code (RFC 3463)
/// the gateway reports for it, whether it is temporary, and words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// `4.7.1`, `5.7.1`, …
    pub code: String,
    pub temporary: bool,
    pub text: String,
}

/// One recipient of a queued message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedRecipient {
    pub address: String,
    pub state: RecipientState,
    /// Why (deferred, bounced, held, quarantined).
    pub reason: Option<Reason>,
    /// The next hop's reply (delivered).
    pub reply: Option<String>,
    /// Since when it is held or quarantined.
    pub since_ms: Option<u64>,
    pub attempts: u32,
    /// The sender's RFC 3461 NOTIFY for it (`FAILURE,DELAY`, `NEVER`), if given.
    #[serde(default)]
    pub notify: Option<String>,
    /// The original recipient (RFC 3461 ORCPT), if given.
    #[serde(default)]
    pub orcpt: Option<String>,
}

/// One queued message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedMessage {
    pub queue_id: String,
    /// The envelope sender; `<>` for the null sender.
    pub sender: String,
    pub received_at_ms: u64,
    pub size: u64,
    pub attempts: u32,
    pub next_attempt_ms: u64,
    pub recipients: Vec<QueuedRecipient>,
}

/// Which queued messages to list; every field narrows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueFilter {
    /// Messages with at least one recipient in this state.
    pub state: Option<RecipientState>,
    /// Substring of the sender, case-insensitive.
    pub sender: Option<String>,
    /// Substring of a recipient, case-insensitive.
    pub recipient: Option<String>,
    /// Received at least this many seconds ago.
    pub older_than_secs: Option<u64>,
    /// At most this many messages (oldest first); default 1000.
    pub limit: Option<usize>,
}

/// `queue.list`: queued messages, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueList {
    #[serde(default)]
    pub filter: QueueFilter,
}
operation!(
    QueueList,
    "queue.list",
    Permission::Read(Area::Queue),
    Vec<QueuedMessage>
);

/// `queue.show`: one message, its envelope and its header section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueShow {
    pub id: String,
}
operation!(
    QueueShow,
    "queue.show",
    Permission::Read(Area::Queue),
    QueuedDetail
);

/// A queued message in detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedDetail {
    pub message: QueuedMessage,
    /// The connecting client's address (`local` for the gateway's own mail).
    pub client_ip: String,
    pub helo: String,
    pub tls: bool,
    /// The header section as received (our Received: first).
    pub headers: String,
}

/// `queue.release`: held and quarantined recipients of these messages
/// are decided again now (held mail is still never sent in clear).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRelease {
    pub ids: Vec<String>,
}
operation!(
    QueueRelease,
    "queue.release",
    Permission::Write(Area::Queue),
    Done
);

/// `queue.retry`: these messages are tried now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRetry {
    pub ids: Vec<String>,
}
operation!(
    QueueRetry,
    "queue.retry",
    Permission::Write(Area::Queue),
    Done
);

/// `queue.delete`: these messages are removed (no notice to the sender).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDelete {
    pub ids: Vec<String>,
}
operation!(
    QueueDelete,
    "queue.delete",
    Permission::Write(Area::Queue),
    Done
);
