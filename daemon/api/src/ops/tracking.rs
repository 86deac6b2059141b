//! Message tracking: what happened to each message on this node.

use serde::{Deserialize, Serialize};

use super::operation;
use crate::{Area, Permission};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Received,
    Deferred,
    Delivered,
    Bounced,
    Expired,
    Deleted,
    DsnSent,
    /// What the policy decided for a recipient, and why.
    Policy,
    /// Encryption required and no method yet: kept, not sent.
    Held,
    /// Put aside by policy for an administrator.
    Quarantined,
    /// Held or quarantined recipients released.
    Released,
    /// A held recipient was sent an invitation to provide a certificate or key.
    Invited,
    /// The secure web mail portal: stored, read, downloaded, replied,
    /// deleted, expired (the detail says which).
    Portal,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Received => "received",
            EventKind::Deferred => "deferred",
            EventKind::Delivered => "delivered",
            EventKind::Bounced => "bounced",
            EventKind::Expired => "expired",
            EventKind::Deleted => "deleted",
            EventKind::DsnSent => "dsn_sent",
            EventKind::Policy => "policy",
            EventKind::Held => "held",
            EventKind::Quarantined => "quarantined",
            EventKind::Released => "released",
            EventKind::Invited => "invited",
            EventKind::Portal => "portal",
        }
    }
}

/// Which way the message moves at this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Entering this node.
    In,
    /// Leaving this node.
    Out,
}

/// One tracking event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub time_ms: u64,
    pub node: String,
    pub queue_id: String,
    pub kind: EventKind,
    pub direction: Direction,
    pub sender: String,
    /// Empty for message-level events that concern every recipient.
    pub recipient: String,
    /// The remote host (client IP when received, next hop when sent).
    pub remote: String,
    /// The reply text or reason.
    pub detail: String,
    /// The settings version the gateway worked under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings_version: Option<u64>,
    /// The message's Subject (on `received` events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The message's Message-ID (on `received` events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}

/// A search over tracking events; empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrackQuery {
    /// Substring of the sender address, case-insensitive.
    pub sender: Option<String>,
    /// Substring of the recipient address, case-insensitive.
    pub recipient: Option<String>,
    pub queue_id: Option<String>,
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
    pub limit: Option<usize>,
}

/// `track.search`: events matching the query, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackSearch {
    #[serde(default)]
    pub query: TrackQuery,
}
operation!(
    TrackSearch,
    "track.search",
    Permission::Read(Area::Tracking),
    Vec<Event>
);

/// Which messages to list: every field narrows; text fields are
/// case-insensitive substrings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MessageQuery {
    pub sender: Option<String>,
    pub recipient: Option<String>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub queue_id: Option<String>,
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
    pub direction: Option<Direction>,
    /// Messages received before this time only (the next page).
    pub before_ms: Option<u64>,
    /// Default 50.
    pub limit: Option<usize>,
}

/// Where a recipient of a tracked message ended up (its last event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientOutcome {
    pub recipient: String,
    pub kind: EventKind,
    pub detail: String,
}

/// One message as the tracking list shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageSummary {
    pub queue_id: String,
    pub received_ms: u64,
    pub node: String,
    pub direction: Direction,
    pub sender: String,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub remote: String,
    pub recipients: Vec<RecipientOutcome>,
}

/// `track.messages`: messages (one line each, newest first) matching the
/// query, with each recipient's latest state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackMessages {
    #[serde(default)]
    pub query: MessageQuery,
}
operation!(
    TrackMessages,
    "track.messages",
    Permission::Read(Area::Tracking),
    Vec<MessageSummary>
);
