//! Message tracking: an event for everything that happens to a message or a
//! recipient (received, deferred, delivered, bounced, deleted), with time,
//! node, direction, remote host and reply text, stored in sled and
//! searchable by sender, recipient and time range.
//!
//! Events are append-only and keyed by time, so a time-range query is a
//! range scan; sender and recipient filters are applied to that range.
//! Trusts: its callers (the daemon's own modules).

pub mod retention;

use crate::envelope::now_ms;

pub use sealgate_api::ops::tracking::{Direction, Event, EventKind, TrackQuery as Query};

/// The tracking store.
#[derive(Clone)]
pub struct Tracker {
    events: crate::db::Tree,
    db: crate::db::Db,
    node: String,
    /// Events not written yet because the state store failed.
    backlog: std::sync::Arc<std::sync::Mutex<Backlog>>,
    /// The settings version events are recorded under.
    version: Option<u64>,
}

/// Encoded events (key, value) waiting for the state store.
type Backlog = std::collections::VecDeque<(Vec<u8>, Vec<u8>)>;

/// Most events kept in memory while the state store fails.
pub const MAX_BACKLOG: usize = 20_000;

/// Sequence numbers for event keys while sled cannot give one.
static FALLBACK_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1 << 62);

impl Tracker {
    pub fn open(db: &crate::db::Db, node: &str) -> Tracker {
        Tracker {
            events: db.tree("events"),
            db: db.clone(),
            node: node.to_string(),
            backlog: Default::default(),
            version: None,
        }
    }

    /// The same store, recording events under settings version `version`
    /// (the one the work they describe was done under).
    pub fn with_version(&self, version: u64) -> Tracker {
        Tracker {
            version: Some(version),
            ..self.clone()
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Records an event, stamped with now and this node. Tracking never
    /// stops mail: a failure is logged and the event dropped.
    #[allow(clippy::too_many_arguments)] // one event's fields, all plain text
    pub fn record(
        &self,
        queue_id: &str,
        kind: EventKind,
        direction: Direction,
        sender: &str,
        recipient: &str,
        remote: &str,
        detail: &str,
    ) {
        let event = Event {
            time_ms: now_ms(),
            node: self.node.clone(),
            queue_id: queue_id.to_string(),
            kind,
            direction,
            sender: sender.to_string(),
            recipient: recipient.to_string(),
            remote: remote.to_string(),
            detail: detail.to_string(),
            settings_version: self.version,
            subject: None,
            message_id: None,
        };
        tracing::info!(
            queue_id,
            event = ?kind,
            direction = ?direction,
            sender,
            recipient,
            remote,
            detail,
            "message event"
        );
        // sled's counter makes keys unique across restarts; while the store
        // is failed, a counter of this process stands in (above any value
        // sled hands out in practice).
        let seq = self
            .db
            .generate_id()
            .unwrap_or_else(|_| FALLBACK_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let mut key = Vec::with_capacity(16);
        key.extend_from_slice(&event.time_ms.to_be_bytes());
        key.extend_from_slice(&seq.to_be_bytes());
        match serde_json::to_vec(&event) {
            Ok(value) => self.store(key, value),
            Err(e) => tracing::warn!(error = %e, "tracking event not encoded"),
        }
    }

    /// Writes an event; while the state store fails (a full disk), events
    /// wait in memory (at most [`MAX_BACKLOG`]) and are written once it
    /// works again, so tracking keeps what happened meanwhile.
    fn store(&self, key: Vec<u8>, value: Vec<u8>) {
        let mut backlog = self
            .backlog
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        backlog.push_back((key, value));
        while let Some((key, value)) = backlog.pop_front() {
            if let Err(e) = self.events.insert(&key, value.clone()) {
                backlog.push_front((key, value));
                if backlog.len() > MAX_BACKLOG {
                    backlog.pop_front();
                    tracing::warn!(error = %e, "tracking event dropped: the state store has failed for too long");
                }
                return;
            }
        }
    }

    /// Writes the events that waited for the state store.
    pub fn write_backlog(&self) {
        let waiting = std::mem::take(
            &mut *self
                .backlog
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for (key, value) in waiting {
            self.store(key, value);
        }
    }

    /// Removes up to `batch` events older than `before_ms`; returns how
    /// many (0: nothing older is left).
    pub fn prune(&self, before_ms: u64, batch: usize) -> sled::Result<usize> {
        let mut old = Vec::with_capacity(batch.min(4096));
        for item in self.events.range(..before_ms.to_be_bytes().to_vec())? {
            let (key, _) = item?;
            old.push(key);
            if old.len() >= batch {
                break;
            }
        }
        for key in &old {
            self.events.remove(key)?;
        }
        Ok(old.len())
    }

    /// Events matching `query`, oldest first. A storage error ends the
    /// search: sled's iterator may return the same error again without
    /// moving on, so it is never skipped.
    pub fn search(&self, query: &Query) -> sled::Result<Vec<Event>> {
        let start = query.since_ms.unwrap_or(0).to_be_bytes();
        let end = query
            .until_ms
            .unwrap_or(u64::MAX)
            .saturating_add(1)
            .to_be_bytes();
        let limit = query.limit.unwrap_or(1000).min(100_000);
        let sender = query.sender.as_ref().map(|s| s.to_lowercase());
        let recipient = query.recipient.as_ref().map(|s| s.to_lowercase());
        let wanted = |e: &Event| {
            sender
                .as_ref()
                .is_none_or(|s| e.sender.to_lowercase().contains(s))
                && recipient
                    .as_ref()
                    .is_none_or(|r| e.recipient.to_lowercase().contains(r))
                && query.queue_id.as_ref().is_none_or(|q| &e.queue_id == q)
        };
        let mut found = Vec::new();
        for item in self.events.range(start..end)? {
            let (_, value) = item?;
            if let Ok(event) = serde_json::from_slice::<Event>(&value)
                && wanted(&event)
            {
                found.push(event);
                if found.len() >= limit {
                    break;
                }
            }
        }
        Ok(found)
    }
}
