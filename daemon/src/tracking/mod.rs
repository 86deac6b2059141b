//! Message tracking: an event for everything that happens to a message or a
//! recipient (received, deferred, delivered, bounced, deleted), with time,
//! node, direction, remote host and reply text, stored in sled and
//! searchable by sender, recipient and time range.
//!
//! Events are append-only and keyed by time, so a time-range query is a
//! range scan; sender and recipient filters are applied to that range.
//! The message list reads an index by message instead ([`index`]), kept
//! as events are written.
//! Trusts: its callers (the daemon's own modules).

mod index;
pub mod messages;
pub mod retention;

use crate::envelope::now_ms;

pub use sealgate_api::ops::tracking::{Direction, Event, EventKind, TrackQuery as Query};

/// The tracking store.
#[derive(Clone)]
pub struct Tracker {
    events: crate::db::Tree,
    /// Recipients received and delivered per minute (minute u64 BE →
    /// two u64 BE counters): the dashboard's chart without a scan.
    traffic: crate::db::Tree,
    /// The message index and the latest failures ([`index`]).
    message_index: crate::db::Tree,
    message_ids: crate::db::Tree,
    message_recipients: crate::db::Tree,
    failures: crate::db::Tree,
    meta: crate::db::Tree,
    db: crate::db::Db,
    node: String,
    /// Events not written yet because the state store failed; its lock
    /// is also the write lock (events and the index are written under
    /// it).
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
    /// Opens the store; events written before the message index existed
    /// are indexed now (once; see [`Tracker::build_index`]).
    pub fn open(db: &crate::db::Db, node: &str) -> Tracker {
        let tracker = Tracker {
            events: db.tree("events"),
            traffic: db.tree("traffic"),
            message_index: db.tree("message_index"),
            message_ids: db.tree("message_ids"),
            message_recipients: db.tree("message_recipients"),
            failures: db.tree("failures"),
            meta: db.tree("tracking_meta"),
            db: db.clone(),
            node: node.to_string(),
            backlog: Default::default(),
            version: None,
        };
        if !tracker.indexed() {
            let started = std::time::Instant::now();
            match tracker.build_index() {
                Ok(events) => tracing::info!(
                    events,
                    seconds = started.elapsed().as_secs(),
                    "tracking: message index built"
                ),
                Err(e) => tracing::warn!(
                    error = %e,
                    "tracking: message index not built; the message list walks the events"
                ),
            }
        }
        tracker
    }

    fn write_lock(&self) -> std::sync::MutexGuard<'_, Backlog> {
        self.backlog
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
        self.record_labelled(
            queue_id, kind, direction, sender, recipient, remote, detail, None,
        );
    }

    /// Records an event with the message's Subject and Message-ID (the
    /// `received` events carry them, for the tracking search).
    #[allow(clippy::too_many_arguments)] // one event's fields, all plain text
    pub fn record_labelled(
        &self,
        queue_id: &str,
        kind: EventKind,
        direction: Direction,
        sender: &str,
        recipient: &str,
        remote: &str,
        detail: &str,
        labels: Option<&messages::Labels>,
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
            subject: labels.and_then(|l| l.subject.clone()),
            message_id: labels.and_then(|l| l.message_id.clone()),
        };
        self.write(event);
    }

    /// Counts, logs and stores an event.
    fn write(&self, event: Event) {
        let (queue_id, kind, direction) = (event.queue_id.as_str(), event.kind, event.direction);
        let (sender, recipient, remote, detail) = (
            event.sender.as_str(),
            event.recipient.as_str(),
            event.remote.as_str(),
            event.detail.as_str(),
        );
        self.count(&event);
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
            Ok(value) => self.store(key, value, &event),
            Err(e) => tracing::warn!(error = %e, "tracking event not encoded"),
        }
    }

    /// Writes an event; while the state store fails (a full disk), events
    /// wait in memory (at most [`MAX_BACKLOG`]) and are written once it
    /// works again, so tracking keeps what happened meanwhile.
    /// `event` is the decoded `value` (the index needs it; events from the
    /// backlog are decoded again).
    fn store(&self, key: Vec<u8>, value: Vec<u8>, event: &Event) {
        let mut backlog = self.write_lock();
        if backlog.is_empty() {
            match self.events.insert(&key, value.as_slice()) {
                Ok(()) => return self.index_logged(&key, &value, event),
                Err(_) => {
                    backlog.push_back((key, value));
                    return;
                }
            }
        }
        backlog.push_back((key, value));
        self.drain(&mut backlog);
    }

    /// Writes waiting events in order until one fails.
    fn drain(&self, backlog: &mut Backlog) {
        while let Some((key, value)) = backlog.pop_front() {
            if let Err(e) = self.events.insert(&key, value.as_slice()) {
                backlog.push_front((key, value));
                if backlog.len() > MAX_BACKLOG {
                    backlog.pop_front();
                    tracing::warn!(error = %e, "tracking event dropped: the state store has failed for too long");
                }
                return;
            }
            if let Ok(event) = serde_json::from_slice::<Event>(&value) {
                self.index_logged(&key, &value, &event);
            }
        }
    }

    /// Indexes a written event; a failure is logged (the event itself is
    /// stored, and the drill-down still finds it).
    fn index_logged(&self, key: &[u8], value: &[u8], event: &Event) {
        if let Err(e) = self.index(key, value, event) {
            tracing::warn!(error = %e, queue_id = %event.queue_id, "tracking event not indexed");
        }
    }

    /// Writes the events that waited for the state store.
    pub fn write_backlog(&self) {
        let mut backlog = self.write_lock();
        self.drain(&mut backlog);
    }

    /// Removes up to `batch` events older than `before_ms`, and index rows
    /// of messages received before it; returns how many of whichever
    /// there were more of (0: nothing older is left).
    pub fn prune(&self, before_ms: u64, batch: usize) -> sled::Result<usize> {
        let mut old = Vec::with_capacity(batch.min(4096));
        for item in self.events.range(..before_ms.to_be_bytes().to_vec())? {
            let (key, _) = item?;
            old.push(key);
            if old.len() >= batch {
                break;
            }
        }
        let mut minutes = Vec::new();
        for item in self
            .traffic
            .range(..(before_ms / 60_000).to_be_bytes().to_vec())?
        {
            let (key, _) = item?;
            minutes.push(key);
            if minutes.len() >= batch {
                break;
            }
        }
        for key in &minutes {
            self.traffic.remove(key)?;
        }
        for key in &old {
            self.events.remove(key)?;
        }
        let rows = self.prune_index(before_ms, batch)?;
        Ok(old.len().max(rows))
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
        let prefilter = RawFilter::new(&[
            sender.as_deref(),
            recipient.as_deref(),
            query.queue_id.as_deref(),
        ]);
        let mut found = Vec::new();
        for item in self.events.range(start..end)? {
            let (_, value) = item?;
            if !prefilter.may_match(&value) {
                continue;
            }
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

/// A quick look at an event's raw JSON before it is decoded: an event
/// whose bytes do not contain every filter (ASCII case folded) cannot
/// match, so a filtered search over many events decodes only the few that
/// may. serde_json writes printable ASCII unescaped except `"` and `\`
/// (control characters become escapes), so only filters made of the
/// other printable ASCII characters take part; a hit is checked
/// on the decoded event as before. An event with any non-ASCII byte is
/// always decoded: Unicode lower-casing can turn a non-ASCII character
/// into an ASCII one (the Kelvin sign into `k`), which byte folding would
/// miss.
struct RawFilter {
    needles: Vec<memchr::memmem::Finder<'static>>,
    folded: std::cell::RefCell<Vec<u8>>,
}

impl RawFilter {
    fn new(filters: &[Option<&str>]) -> RawFilter {
        let needles = filters
            .iter()
            .flatten()
            .filter(|f| !f.is_empty() && f.bytes().all(written_as_is))
            .map(|f| memchr::memmem::Finder::new(f.to_ascii_lowercase().as_bytes()).into_owned())
            .collect();
        RawFilter {
            needles,
            folded: std::cell::RefCell::new(Vec::new()),
        }
    }

    /// Whether `raw` may hold an event that matches; false only when it
    /// cannot.
    fn may_match(&self, raw: &[u8]) -> bool {
        if self.needles.is_empty() || !raw.is_ascii() {
            return true;
        }
        let mut folded = self.folded.borrow_mut();
        folded.clear();
        folded.extend(raw.iter().map(u8::to_ascii_lowercase));
        self.needles.iter().all(|n| n.find(&folded).is_some())
    }
}

/// Whether serde_json writes byte `b` of a string as it is.
fn written_as_is(b: u8) -> bool {
    (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'
}

#[cfg(test)]
mod raw_filter_tests {
    use super::RawFilter;

    #[test]
    fn the_raw_look_never_hides_a_match() {
        let raw =
            br#"{"sender":"Alice@Example.ORG","recipient":"bob@ext.example","queue_id":"01AB"}"#;
        assert!(RawFilter::new(&[Some("alice@example.org"), None, None]).may_match(raw));
        assert!(RawFilter::new(&[Some("example.org"), Some("bob"), Some("01AB")]).may_match(raw));
        assert!(!RawFilter::new(&[Some("carol")]).may_match(raw));
        // Filters it cannot judge on the raw bytes let everything through.
        assert!(RawFilter::new(&[Some("jürgen")]).may_match(raw));
        assert!(RawFilter::new(&[Some("a\"b")]).may_match(raw));
        assert!(RawFilter::new(&[Some("a\nb")]).may_match(raw));
        assert!(RawFilter::new(&[]).may_match(raw));
        // "\u{212A}" (Kelvin sign) lower-cases to an ASCII "k".
        let kelvin = "{\"sender\":\"\u{212A}arl@example.org\"}".as_bytes();
        assert!(RawFilter::new(&[Some("karl")]).may_match(kelvin));
    }
}
