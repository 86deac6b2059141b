//! Queue state in sled: per message and per recipient, what has happened and
//! what happens next.
//!
//! sled is the index, not the only copy: the spool file is the truth about
//! what was accepted (sled 0.34 does not fsync its blobs). At start-up
//! [`super::recover`] reconciles the two; losing a sled write can cause a
//! duplicate delivery, never a lost message.
//!
//! Trusts: the data directory. Records that do not decode are reported and
//! skipped, and the spool file brings the message back.

use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::envelope::{Envelope, EnvelopeRecipient, QueueId};
use crate::reason::{Reason, typed_or_text};

/// Where one recipient stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RecipientStatus {
    /// Waiting for its first or next attempt.
    Scheduled,
    /// The last attempt failed temporarily; it will be retried.
    Deferred {
        #[serde(deserialize_with = "typed_or_text")]
        reason: Reason,
    },
    /// Accepted by the next hop (or written to the outbox).
    Delivered { reply: String },
    /// Failed for good; the sender has been told (unless they asked not to be).
    Bounced {
        #[serde(deserialize_with = "typed_or_text")]
        reason: Reason,
    },
    /// An administrator removed it from the queue.
    Deleted,
    /// Policy requires encryption and there is no method yet: kept, never
    /// sent in clear, until a key arrives, an administrator releases it, or
    /// the hold expires.
    Held {
        #[serde(deserialize_with = "typed_or_text")]
        reason: Reason,
        since_ms: u64,
    },
    /// Policy put it aside for an administrator to look at.
    Quarantined {
        #[serde(deserialize_with = "typed_or_text")]
        reason: Reason,
        since_ms: u64,
    },
}

impl RecipientStatus {
    /// Still needs an attempt.
    pub fn is_pending(&self) -> bool {
        matches!(
            self,
            RecipientStatus::Scheduled | RecipientStatus::Deferred { .. }
        )
    }

    /// Kept without attempts until released or expired.
    pub fn is_waiting(&self) -> bool {
        matches!(
            self,
            RecipientStatus::Held { .. } | RecipientStatus::Quarantined { .. }
        )
    }

    /// When a held or quarantined recipient started waiting.
    pub fn waiting_since_ms(&self) -> Option<u64> {
        match self {
            RecipientStatus::Held { since_ms, .. }
            | RecipientStatus::Quarantined { since_ms, .. } => Some(*since_ms),
            _ => None,
        }
    }
}

/// One recipient's state in the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientState {
    pub recipient: EnvelopeRecipient,
    pub status: RecipientStatus,
    pub attempts: u32,
    /// An administrator released it from quarantine: the policy's
    /// quarantine no longer applies to it.
    #[serde(default)]
    pub quarantine_lifted: bool,
    /// The sender was told this recipient is held (one delay notice only).
    #[serde(default)]
    pub hold_notified: bool,
}

impl RecipientState {
    pub fn address(&self) -> &Address {
        &self.recipient.address
    }
}

/// One queued message's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEntry {
    pub queue_id: QueueId,
    pub sender: Option<Address>,
    pub received_at_ms: u64,
    pub size: u64,
    pub recipients: Vec<RecipientState>,
    /// When the next attempt is due (ms since epoch).
    pub next_attempt_ms: u64,
    /// Attempts made on this message.
    pub attempts: u32,
    /// A delay notice was already sent for this message.
    pub delay_notified: bool,
}

impl QueueEntry {
    /// A new entry for a just-accepted message: every recipient scheduled now.
    pub fn new(queue_id: &QueueId, envelope: &Envelope, size: u64) -> QueueEntry {
        QueueEntry {
            queue_id: queue_id.clone(),
            sender: envelope.sender.clone(),
            received_at_ms: envelope.received_at_ms,
            size,
            recipients: envelope
                .recipients
                .iter()
                .map(|r| RecipientState {
                    recipient: r.clone(),
                    status: RecipientStatus::Scheduled,
                    attempts: 0,
                    quarantine_lifted: false,
                    hold_notified: false,
                })
                .collect(),
            next_attempt_ms: envelope.received_at_ms,
            attempts: 0,
            delay_notified: false,
        }
    }

    pub fn has_pending(&self) -> bool {
        self.recipients.iter().any(|r| r.status.is_pending())
    }

    /// Some recipient is still pending, held or quarantined: the message stays.
    pub fn is_open(&self) -> bool {
        self.recipients
            .iter()
            .any(|r| r.status.is_pending() || r.status.is_waiting())
    }

    pub fn sender_text(&self) -> String {
        self.sender
            .as_ref()
            .map_or_else(|| "<>".into(), ToString::to_string)
    }
}

/// The queue's state (node-local sled) and the invitation claims (shared:
/// every node of a cluster invites a recipient at most once).
#[derive(Clone)]
pub struct QueueState {
    entries: crate::db::Tree,
    /// Held recipient address (lower case) → when they were last invited (ms).
    invitations: std::sync::Arc<dyn crate::store::SharedStore>,
}

impl QueueState {
    pub fn open(
        db: &crate::db::Db,
        shared: std::sync::Arc<dyn crate::store::SharedStore>,
    ) -> QueueState {
        QueueState {
            entries: db.tree("queue"),
            invitations: shared,
        }
    }

    /// Claims the right to invite `address` now: true when it was never
    /// invited, or last invited at least `every_ms` ago; the time is then
    /// recorded, so concurrent deliveries invite a recipient once.
    pub fn claim_invitation(
        &self,
        address: &str,
        now_ms: u64,
        every_ms: u64,
    ) -> Result<bool, crate::store::StoreError> {
        use crate::store::Space;
        let key = address.to_ascii_lowercase();
        for _ in 0..8 {
            let current = self.invitations.get(Space::Invitations, key.as_bytes())?;
            let last = current
                .as_ref()
                .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
                .map(u64::from_be_bytes);
            if last.is_some_and(|t| now_ms.saturating_sub(t) < every_ms) {
                return Ok(false);
            }
            if self.invitations.compare_and_swap(
                Space::Invitations,
                key.as_bytes(),
                current.as_deref(),
                Some(&now_ms.to_be_bytes()),
            )? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Gives a claim back (the invitation could not be queued).
    pub fn unclaim_invitation(&self, address: &str) -> Result<(), crate::store::StoreError> {
        self.invitations.remove(
            crate::store::Space::Invitations,
            address.to_ascii_lowercase().as_bytes(),
        )?;
        Ok(())
    }

    pub fn put(&self, entry: &QueueEntry) -> sled::Result<()> {
        let value =
            serde_json::to_vec(entry).map_err(|e| sled::Error::Unsupported(e.to_string()))?;
        self.entries.insert(entry.queue_id.as_str(), value)?;
        Ok(())
    }

    pub fn get(&self, queue_id: &QueueId) -> sled::Result<Option<QueueEntry>> {
        Ok(self
            .entries
            .get(queue_id.as_str())?
            .and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// Makes every write to the database so far durable.
    pub fn flush(&self) -> sled::Result<()> {
        self.entries.flush()
    }

    pub fn remove(&self, queue_id: &QueueId) -> sled::Result<()> {
        self.entries.remove(queue_id.as_str())?;
        Ok(())
    }

    /// Every entry, oldest first; records that do not decode are skipped
    /// and logged. A storage error ends the walk (sled's iterator may
    /// return the same error again without moving on).
    pub fn all(&self) -> sled::Result<Vec<QueueEntry>> {
        let mut entries = Vec::new();
        for item in self.entries.iter()? {
            let (key, value) = item?;
            match serde_json::from_slice(&value) {
                Ok(entry) => entries.push(entry),
                Err(e) => {
                    tracing::warn!(key = %String::from_utf8_lossy(&key), error = %e, "undecodable queue record skipped");
                }
            }
        }
        Ok(entries)
    }

    pub fn len(&self) -> sled::Result<usize> {
        self.entries.len()
    }

    pub fn is_empty(&self) -> sled::Result<bool> {
        self.entries.is_empty()
    }
}
