//! The message index: one row per message, kept up to date as events are
//! written, so the tracking page's first page reads about a page of rows
//! whatever the number of events in the window.
//!
//! Trees (node-local, beside `events`):
//!
//! - `message_index`: received time (u64 BE, the message's first
//!   `received` event) + queue id → [`Head`] (JSON): sender, labels,
//!   node, remote, directions. Key order is the page's order (newest
//!   first when walked backwards).
//! - `message_ids`: queue id → received time (u64 BE) and a byte of
//!   flags: finds a message's row from its later events, and says whether
//!   an event would change the row at all.
//! - `message_recipients`: queue id length (u16 BE) + queue id +
//!   recipient → [`Recipient`] (JSON): the key of the `received` event
//!   that named it (the list's order) and its latest kind and detail.
//! - `failures`: event key → event (JSON) for `bounced`, `deferred` and
//!   `expired`: the dashboard's latest failures without a walk.
//! - `tracking_meta`: `indexed` once events written before the index
//!   existed have been indexed (see [`Tracker::build_index`]).
//!
//! A message's row is made by its first `received` event; the events
//! after it update it: a `received` adds a recipient (each address once;
//! the walk before the index listed an address received twice twice),
//! any other event adds its direction and, when it names one of the
//! message's recipients, becomes that recipient's latest state. Events of
//! a message written before its first `received` are not in its row.
//!
//! Updates run under the tracker's write lock (the backlog's), so two
//! events of one message never race.
//!
//! Trusts: the rows it wrote; a row that does not decode is left out of
//! the results and logged, never a panic.

use serde::{Deserialize, Serialize};

use sealgate_api::ops::tracking::{
    Direction, Event, EventKind, MessageQuery, MessageSummary, RecipientOutcome,
};

use super::{RawFilter, Tracker};

/// The marker's key in `tracking_meta`; its value is the index's format.
const INDEXED: &[u8] = b"indexed";
const FORMAT: &[u8] = b"1";

/// A message's row, without its recipients.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Head {
    queue_id: String,
    received_ms: u64,
    node: String,
    sender: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message_id: Option<String>,
    remote: String,
    directions: Vec<Direction>,
}

/// One recipient of a message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Recipient {
    /// The key of the `received` event that named it: the list's order.
    order: Vec<u8>,
    recipient: String,
    kind: EventKind,
    detail: String,
}

fn row_key(received_ms: u64, queue_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + queue_id.len());
    key.extend_from_slice(&received_ms.to_be_bytes());
    key.extend_from_slice(queue_id.as_bytes());
    key
}

/// The prefix of a message's recipient keys; `None` for a queue id too
/// long to index (ours are 26 characters).
fn recipients_prefix(queue_id: &str) -> Option<Vec<u8>> {
    let len = u16::try_from(queue_id.len()).ok()?;
    let mut key = Vec::with_capacity(2 + queue_id.len());
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(queue_id.as_bytes());
    Some(key)
}

fn time_of(bytes: &[u8]) -> Option<u64> {
    bytes
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
}

/// What `message_ids` holds of a message: where its row is and what the
/// row already has, so events that would not change the row do not read
/// it. Value: received time (u64 BE) and a byte of [`Known`] flags.
#[derive(Debug, Clone, Copy)]
struct Known {
    received_ms: u64,
    flags: u8,
}

const IN: u8 = 1;
const OUT: u8 = 2;
const HAS_SUBJECT: u8 = 4;
const HAS_MESSAGE_ID: u8 = 8;

fn direction_flag(d: Direction) -> u8 {
    match d {
        Direction::In => IN,
        Direction::Out => OUT,
    }
}

impl Known {
    fn of(head: &Head) -> Known {
        let mut flags = head
            .directions
            .iter()
            .fold(0, |f, d| f | direction_flag(*d));
        if head.subject.is_some() {
            flags |= HAS_SUBJECT;
        }
        if head.message_id.is_some() {
            flags |= HAS_MESSAGE_ID;
        }
        Known {
            received_ms: head.received_ms,
            flags,
        }
    }

    /// A value without the flags byte claims nothing (the row is read).
    fn decode(bytes: &[u8]) -> Option<Known> {
        Some(Known {
            received_ms: time_of(bytes)?,
            flags: bytes.get(8).copied().unwrap_or(0),
        })
    }

    fn encode(self) -> Vec<u8> {
        let mut out = self.received_ms.to_be_bytes().to_vec();
        out.push(self.flags);
        out
    }
}

fn encode<T: Serialize>(value: &T) -> sled::Result<Vec<u8>> {
    serde_json::to_vec(value)
        .map_err(|e| sled::Error::Unsupported(format!("tracking index not encoded: {e}")))
}

impl Tracker {
    /// Brings the index up to date with an event just written under
    /// `key` (the caller holds the write lock). Most events cost two small
    /// reads and one write: the row itself is rewritten only when the
    /// event changes it (see [`Known`]).
    pub(super) fn index(&self, key: &[u8], value: &[u8], event: &Event) -> sled::Result<()> {
        if matches!(
            event.kind,
            EventKind::Bounced | EventKind::Deferred | EventKind::Expired
        ) {
            self.failures.insert(key, value)?;
        }
        let Some(prefix) = recipients_prefix(&event.queue_id) else {
            return Ok(());
        };
        let known = self
            .message_ids
            .get(event.queue_id.as_bytes())?
            .and_then(|v| Known::decode(&v));
        let rcpt_key = [prefix.as_slice(), event.recipient.as_bytes()].concat();
        if event.kind == EventKind::Received {
            let changes_row = known.is_none_or(|k| {
                event.time_ms < k.received_ms
                    || (event.subject.is_some() && k.flags & HAS_SUBJECT == 0)
                    || (event.message_id.is_some() && k.flags & HAS_MESSAGE_ID == 0)
            });
            if changes_row {
                let old = match known {
                    Some(k) => self
                        .head(&row_key(k.received_ms, &event.queue_id))?
                        .map(|head| (k.received_ms, head)),
                    None => None,
                };
                let (old_ms, mut head) = match old {
                    Some((at, head)) => (Some(at), head),
                    None => (
                        None,
                        Head {
                            queue_id: event.queue_id.clone(),
                            received_ms: event.time_ms,
                            node: event.node.clone(),
                            sender: event.sender.clone(),
                            subject: None,
                            message_id: None,
                            remote: event.remote.clone(),
                            directions: vec![Direction::In],
                        },
                    ),
                };
                if head.subject.is_none() {
                    head.subject.clone_from(&event.subject);
                }
                if head.message_id.is_none() {
                    head.message_id.clone_from(&event.message_id);
                }
                head.received_ms = head.received_ms.min(event.time_ms);
                if let Some(at) = old_ms.filter(|at| *at != head.received_ms) {
                    self.message_index.remove(row_key(at, &event.queue_id))?;
                }
                self.message_index
                    .insert(row_key(head.received_ms, &event.queue_id), encode(&head)?)?;
                self.message_ids
                    .insert(event.queue_id.as_bytes(), Known::of(&head).encode())?;
            }
            // A new message has no recipients yet: no need to look.
            if known.is_none() || self.message_recipients.get(&rcpt_key)?.is_none() {
                let recipient = Recipient {
                    order: key.to_vec(),
                    recipient: event.recipient.clone(),
                    kind: EventKind::Received,
                    detail: event.detail.clone(),
                };
                self.message_recipients
                    .insert(&rcpt_key, encode(&recipient)?)?;
            }
            return Ok(());
        }
        let Some(known) = known else {
            return Ok(());
        };
        if known.flags & direction_flag(event.direction) == 0 {
            let at = row_key(known.received_ms, &event.queue_id);
            if let Some(mut head) = self.head(&at)? {
                if !head.directions.contains(&event.direction) {
                    head.directions.push(event.direction);
                }
                self.message_index.insert(at, encode(&head)?)?;
                self.message_ids
                    .insert(event.queue_id.as_bytes(), Known::of(&head).encode())?;
            }
        }
        if event.recipient.is_empty() {
            return Ok(());
        }
        let Some(old) = self.message_recipients.get(&rcpt_key)? else {
            return Ok(());
        };
        let Ok(mut recipient) = serde_json::from_slice::<Recipient>(&old) else {
            tracing::warn!(queue_id = %event.queue_id, "tracking index: a recipient row does not decode");
            return Ok(());
        };
        recipient.kind = event.kind;
        recipient.detail.clone_from(&event.detail);
        self.message_recipients
            .insert(&rcpt_key, encode(&recipient)?)?;
        Ok(())
    }

    fn head(&self, key: &[u8]) -> sled::Result<Option<Head>> {
        let Some(raw) = self.message_index.get(key)? else {
            return Ok(None);
        };
        match serde_json::from_slice::<Head>(&raw) {
            Ok(head) => Ok(Some(head)),
            Err(e) => {
                tracing::warn!(error = %e, "tracking index: a message row does not decode");
                Ok(None)
            }
        }
    }

    /// Whether the index holds every event (see [`Tracker::build_index`]).
    pub(super) fn indexed(&self) -> bool {
        self.meta.get(INDEXED).ok().flatten().as_deref() == Some(FORMAT)
    }

    /// Indexes the events written before the index existed: once per data
    /// directory (a marker in `tracking_meta` says it is done). An index
    /// left half-built by an interrupted run is emptied first. Until it
    /// is done, the message list walks the events instead.
    pub fn build_index(&self) -> sled::Result<usize> {
        if self.indexed() {
            return Ok(0);
        }
        let _write = self.write_lock();
        for tree in [
            &self.message_index,
            &self.message_ids,
            &self.message_recipients,
            &self.failures,
        ] {
            let mut keys = Vec::new();
            for item in tree.iter()? {
                keys.push(item?.0);
            }
            for key in keys {
                tree.remove(key)?;
            }
        }
        let mut indexed = 0;
        for item in self.events.iter()? {
            let (key, value) = item?;
            if let Ok(event) = serde_json::from_slice::<Event>(&value) {
                self.index(&key, &value, &event)?;
                indexed += 1;
            }
        }
        self.meta.insert(INDEXED, FORMAT)?;
        self.db.flush()?;
        Ok(indexed)
    }

    /// Removes up to `batch` message rows received before `before_ms`,
    /// with their recipients, and failures older than it; returns how
    /// many rows (0: nothing older is left).
    pub(super) fn prune_index(&self, before_ms: u64, batch: usize) -> sled::Result<usize> {
        let _write = self.write_lock();
        let mut rows = Vec::new();
        for item in self
            .message_index
            .range(..before_ms.to_be_bytes().to_vec())?
        {
            rows.push(item?.0);
            if rows.len() >= batch {
                break;
            }
        }
        for row in &rows {
            let queue_id = row.get(8..).unwrap_or_default();
            if let Some(prefix) = std::str::from_utf8(queue_id)
                .ok()
                .and_then(recipients_prefix)
            {
                let mut keys = Vec::new();
                for item in self.message_recipients.scan_prefix(&prefix)? {
                    keys.push(item?.0);
                }
                for key in keys {
                    self.message_recipients.remove(key)?;
                }
            }
            // A newer row of the same queue id (never, with our ids) keeps
            // its entry.
            if self
                .message_ids
                .get(queue_id)?
                .is_some_and(|t| time_of(&t) == time_of(row))
            {
                self.message_ids.remove(queue_id)?;
            }
            self.message_index.remove(row)?;
        }
        let mut failures = Vec::new();
        for item in self.failures.range(..before_ms.to_be_bytes().to_vec())? {
            failures.push(item?.0);
            if failures.len() >= batch {
                break;
            }
        }
        for key in &failures {
            self.failures.remove(key)?;
        }
        Ok(rows.len().max(failures.len()))
    }

    /// The latest `limit` failures (bounced, deferred, expired), newest
    /// first.
    pub(super) fn latest_failures(&self, limit: usize) -> sled::Result<Vec<Event>> {
        let mut out = Vec::new();
        for item in self.failures.iter()?.rev() {
            let (_, value) = item?;
            if let Ok(event) = serde_json::from_slice::<Event>(&value) {
                out.push(event);
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Messages matching `q` from the index, newest first: walks rows
    /// backwards from the window's end and stops when a page is full.
    pub(super) fn messages_indexed(&self, q: &MessageQuery) -> sled::Result<Vec<MessageSummary>> {
        let (limit, since, until) = super::messages::page_bounds(q);
        if since > until {
            return Ok(Vec::new());
        }
        let lower = |s: &Option<String>| s.as_ref().map(|s| s.to_lowercase());
        let (sender, recipient, subject, message_id) = (
            lower(&q.sender),
            lower(&q.recipient),
            lower(&q.subject),
            lower(&q.message_id),
        );
        // The recipient filter is checked on the recipients' rows.
        let prefilter = RawFilter::new(&[
            sender.as_deref(),
            subject.as_deref(),
            message_id.as_deref(),
            q.queue_id.as_deref(),
        ]);
        let has = |text: &str, needle: &Option<String>| {
            needle
                .as_ref()
                .is_none_or(|n| text.to_lowercase().contains(n))
        };
        let end = until.saturating_add(1).to_be_bytes().to_vec();
        let mut out = Vec::new();
        for item in self
            .message_index
            .range(since.to_be_bytes().to_vec()..end)?
            .rev()
        {
            let (_, raw) = item?;
            if !prefilter.may_match(&raw) {
                continue;
            }
            let Ok(head) = serde_json::from_slice::<Head>(&raw) else {
                tracing::warn!("tracking index: a message row does not decode");
                continue;
            };
            if !(has(&head.sender, &sender)
                && has(head.subject.as_deref().unwrap_or(""), &subject)
                && has(head.message_id.as_deref().unwrap_or(""), &message_id)
                && q.queue_id.as_ref().is_none_or(|id| &head.queue_id == id)
                && q.direction.is_none_or(|d| head.directions.contains(&d)))
            {
                continue;
            }
            let recipients = self.recipients(&head.queue_id)?;
            if recipient.is_some() && !recipients.iter().any(|r| has(&r.recipient, &recipient)) {
                continue;
            }
            out.push(MessageSummary {
                queue_id: head.queue_id,
                received_ms: head.received_ms,
                node: head.node,
                direction: Direction::In,
                sender: head.sender,
                subject: head.subject,
                message_id: head.message_id,
                remote: head.remote,
                recipients,
            });
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// A message's recipients in the order they were received.
    fn recipients(&self, queue_id: &str) -> sled::Result<Vec<RecipientOutcome>> {
        let Some(prefix) = recipients_prefix(queue_id) else {
            return Ok(Vec::new());
        };
        let mut rows = Vec::new();
        for item in self.message_recipients.scan_prefix(&prefix)? {
            let (_, raw) = item?;
            match serde_json::from_slice::<Recipient>(&raw) {
                Ok(r) => rows.push(r),
                Err(_) => {
                    tracing::warn!(queue_id, "tracking index: a recipient row does not decode")
                }
            }
        }
        rows.sort_by(|a, b| a.order.cmp(&b.order));
        Ok(rows
            .into_iter()
            .map(|r| RecipientOutcome {
                recipient: r.recipient,
                kind: r.kind,
                detail: r.detail,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use std::collections::HashMap;

    use rand::{Rng, SeedableRng};

    use super::*;

    fn open() -> (crate::db::Db, Tracker) {
        let dir = std::env::temp_dir().join(format!(
            "sealgate-track-index-{}",
            crate::util::new_session_id()
        ));
        let db = crate::db::Db::open(&dir).unwrap();
        let t = Tracker::open(&db, "n1");
        (db, t)
    }

    const KINDS: [EventKind; 6] = [
        EventKind::Received,
        EventKind::Policy,
        EventKind::Delivered,
        EventKind::Deferred,
        EventKind::Bounced,
        EventKind::Expired,
    ];

    /// Random events in time order, messages interleaved, times jumping
    /// by 0 to 5 s (so several share a millisecond).
    fn random_events(rng: &mut rand::rngs::StdRng, n: usize) -> Vec<Event> {
        let mut time = 1_000_000u64;
        (0..n)
            .map(|_| {
                time += [0, 1, 7, 900, 2_500, 5_000][rng.random_range(0..6)];
                let m = rng.random_range(0..40u32);
                let kind = KINDS[if rng.random_bool(0.4) {
                    0
                } else {
                    rng.random_range(0..KINDS.len())
                }];
                Event {
                    time_ms: time,
                    node: "n1".into(),
                    queue_id: format!("Q{m:03}"),
                    kind,
                    direction: if rng.random_bool(0.5) {
                        Direction::In
                    } else {
                        Direction::Out
                    },
                    sender: format!("User{}@Example.org", m % 7),
                    recipient: if rng.random_bool(0.1) {
                        String::new()
                    } else {
                        format!("r{}@d{}.example", rng.random_range(0..5), m % 3)
                    },
                    remote: "10.0.0.1".into(),
                    detail: format!("d{}", rng.random_range(0..100)),
                    settings_version: None,
                    subject: rng.random_bool(0.7).then(|| format!("Subject {}", m % 5)),
                    message_id: rng.random_bool(0.7).then(|| format!("{m}@mid")),
                }
            })
            .collect()
    }

    /// The message list straight from the events, by the rules in the
    /// module doc: what the index must answer.
    fn brute_force(events: &[Event], q: &MessageQuery) -> Vec<MessageSummary> {
        let mut by_id: HashMap<&str, (MessageSummary, Vec<Direction>)> = HashMap::new();
        for e in events {
            if e.kind == EventKind::Received {
                let (m, _) = by_id.entry(&e.queue_id).or_insert_with(|| {
                    (
                        MessageSummary {
                            queue_id: e.queue_id.clone(),
                            received_ms: e.time_ms,
                            node: e.node.clone(),
                            direction: Direction::In,
                            sender: e.sender.clone(),
                            subject: None,
                            message_id: None,
                            remote: e.remote.clone(),
                            recipients: Vec::new(),
                        },
                        vec![Direction::In],
                    )
                });
                if m.subject.is_none() {
                    m.subject.clone_from(&e.subject);
                }
                if m.message_id.is_none() {
                    m.message_id.clone_from(&e.message_id);
                }
                if !m.recipients.iter().any(|r| r.recipient == e.recipient) {
                    m.recipients.push(RecipientOutcome {
                        recipient: e.recipient.clone(),
                        kind: EventKind::Received,
                        detail: e.detail.clone(),
                    });
                }
            } else if let Some((m, dirs)) = by_id.get_mut(e.queue_id.as_str()) {
                if !dirs.contains(&e.direction) {
                    dirs.push(e.direction);
                }
                if !e.recipient.is_empty()
                    && let Some(r) = m.recipients.iter_mut().find(|r| r.recipient == e.recipient)
                {
                    r.kind = e.kind;
                    r.detail.clone_from(&e.detail);
                }
            }
        }
        let has = |text: &str, n: &Option<String>| {
            n.as_ref()
                .is_none_or(|n| text.to_lowercase().contains(&n.to_lowercase()))
        };
        let until = q
            .until_ms
            .unwrap_or(u64::MAX)
            .min(q.before_ms.map_or(u64::MAX, |b| b.saturating_sub(1)));
        let mut all: Vec<_> = by_id
            .into_values()
            .filter(|(m, dirs)| {
                m.received_ms >= q.since_ms.unwrap_or(0)
                    && m.received_ms <= until
                    && has(&m.sender, &q.sender)
                    && (q.recipient.is_none()
                        || m.recipients.iter().any(|r| has(&r.recipient, &q.recipient)))
                    && has(m.subject.as_deref().unwrap_or(""), &q.subject)
                    && has(m.message_id.as_deref().unwrap_or(""), &q.message_id)
                    && q.queue_id.as_ref().is_none_or(|id| &m.queue_id == id)
                    && q.direction.is_none_or(|d| dirs.contains(&d))
            })
            .map(|(m, _)| m)
            .collect();
        all.sort_by(|a, b| (b.received_ms, &b.queue_id).cmp(&(a.received_ms, &a.queue_id)));
        all.truncate(q.limit.unwrap_or(50).clamp(1, 500));
        all
    }

    fn random_query(rng: &mut rand::rngs::StdRng, last_ms: u64) -> MessageQuery {
        let mut pick = |n: u32| {
            let v = rng.random_range(0..n);
            rng.random_bool(0.3).then_some(v)
        };
        let sender = pick(7).map(|v| format!("USER{v}"));
        let recipient = pick(5).map(|v| format!("r{v}@"));
        let subject = pick(5).map(|v| format!("subject {v}"));
        let message_id = pick(40).map(|v| format!("{v}@"));
        let queue_id = pick(40).map(|v| format!("Q{v:03}"));
        let mut time = |p: f64| {
            let v = rng.random_range(1_000_000..=last_ms);
            rng.random_bool(p).then_some(v)
        };
        let (since_ms, until_ms, before_ms) = (time(0.5), time(0.3), time(0.3));
        MessageQuery {
            sender,
            recipient,
            subject,
            message_id,
            queue_id,
            since_ms,
            until_ms,
            direction: [None, Some(Direction::In), Some(Direction::Out)][rng.random_range(0..3)],
            before_ms,
            limit: Some(rng.random_range(1..12)),
        }
    }

    #[test]
    fn the_index_answers_as_a_scan_of_the_events_does() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(14);
        for _ in 0..8 {
            let (_db, t) = open();
            let events = random_events(&mut rng, 400);
            for e in &events {
                t.write(e.clone());
            }
            let last = events.last().unwrap().time_ms;
            for _ in 0..150 {
                let q = random_query(&mut rng, last);
                assert_eq!(t.messages(&q).unwrap(), brute_force(&events, &q), "{q:?}");
            }
            // Page by page with the page's cursor (the last row's time).
            let mut q = MessageQuery {
                limit: Some(3),
                ..MessageQuery::default()
            };
            loop {
                let page = t.messages(&q).unwrap();
                assert_eq!(page, brute_force(&events, &q), "{q:?}");
                let Some(last) = page.last() else { break };
                q.before_ms = Some(last.received_ms);
            }
        }
    }

    /// Data as the gateway writes it (a message's `received` events
    /// together, then its later events): the index answers as the walk
    /// over the events did before it existed.
    #[test]
    fn on_ordinary_traffic_the_index_answers_as_the_walk_did() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(15);
        let (_db, t) = open();
        let mut time = 5_000_000u64;
        let mut pending: Vec<Event> = Vec::new();
        for m in 0..120u32 {
            time += rng.random_range(1..4_000);
            let id = format!("{m:026}");
            let labels = |e: &mut Event| {
                e.subject = Some(format!("Report {m}"));
                e.message_id = Some(format!("{m}@example.org"));
            };
            let rcpts = rng.random_range(1..4);
            for r in 0..rcpts {
                let mut e = event(
                    time,
                    &id,
                    EventKind::Received,
                    &format!("r{r}@x{m}.example"),
                );
                labels(&mut e);
                t.write(e);
            }
            // Later events of this message land among the next messages'.
            for r in 0..rcpts {
                let kind = [EventKind::Delivered, EventKind::Deferred, EventKind::Policy]
                    [rng.random_range(0..3)];
                pending.push(event(
                    time + rng.random_range(2_100..30_000),
                    &id,
                    kind,
                    &format!("r{r}@x{m}.example"),
                ));
            }
            pending.sort_by_key(|e| e.time_ms);
            while pending.first().is_some_and(|e| e.time_ms <= time) {
                t.write(pending.remove(0));
            }
        }
        for e in pending {
            t.write(e);
        }
        for _ in 0..100 {
            let q = random_query(&mut rng, time);
            // Without an end to the window: the walk showed each
            // recipient's state as of the window's end (or the page's
            // cursor), the index shows it as of now.
            let q = MessageQuery {
                sender: None,
                queue_id: q
                    .queue_id
                    .map(|_| format!("{:026}", rng.random_range(0..120))),
                subject: q
                    .subject
                    .map(|_| format!("report {}", rng.random_range(0..120))),
                since_ms: q.since_ms.map(|_| rng.random_range(5_000_000..=time)),
                until_ms: None,
                before_ms: None,
                ..q
            };
            assert_eq!(
                t.messages_indexed(&q).unwrap(),
                t.messages_by_walk(&q).unwrap(),
                "{q:?}"
            );
            // With a cursor: the same messages in the same order (the
            // direction left out: the walk knew only the events before
            // the cursor).
            let q = MessageQuery {
                before_ms: Some(rng.random_range(5_000_000..=time)),
                direction: None,
                ..q
            };
            let ids = |list: Vec<MessageSummary>| {
                list.into_iter().map(|m| m.queue_id).collect::<Vec<_>>()
            };
            assert_eq!(
                ids(t.messages_indexed(&q).unwrap()),
                ids(t.messages_by_walk(&q).unwrap()),
                "{q:?}"
            );
        }
    }

    fn event(time_ms: u64, queue_id: &str, kind: EventKind, recipient: &str) -> Event {
        Event {
            time_ms,
            node: "n1".into(),
            queue_id: queue_id.into(),
            kind,
            direction: if kind == EventKind::Received {
                Direction::In
            } else {
                Direction::Out
            },
            sender: "s@example.org".into(),
            recipient: recipient.into(),
            remote: "192.0.2.1".into(),
            detail: format!("{kind:?}"),
            settings_version: None,
            subject: None,
            message_id: None,
        }
    }

    #[test]
    fn events_from_before_the_index_are_indexed_at_open() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(16);
        let (db, t) = open();
        let events = random_events(&mut rng, 300);
        // Written as a version without the index did: events only.
        for (seq, e) in events.iter().enumerate() {
            let mut key = e.time_ms.to_be_bytes().to_vec();
            key.extend_from_slice(&(seq as u64).to_be_bytes());
            t.events
                .insert(key, serde_json::to_vec(e).unwrap())
                .unwrap();
        }
        t.meta.remove(INDEXED).unwrap();
        assert!(!t.indexed());
        // A half-built index from an interrupted run is redone, not added to.
        let junk = Recipient {
            order: Vec::new(),
            recipient: "junk".into(),
            kind: EventKind::Received,
            detail: String::new(),
        };
        t.message_recipients
            .insert(b"\x00\x04Q001junk", encode(&junk).unwrap())
            .unwrap();
        let walked = t.messages(&MessageQuery::default()).unwrap();
        let t = Tracker::open(&db, "n1");
        assert!(t.indexed());
        let last = events.last().unwrap().time_ms;
        for _ in 0..100 {
            let q = random_query(&mut rng, last);
            assert_eq!(t.messages(&q).unwrap(), brute_force(&events, &q), "{q:?}");
        }
        assert!(!walked.is_empty());
        // Once built, opening again does not index again.
        assert_eq!(t.build_index().unwrap(), 0);
        let failures: Vec<_> = events
            .iter()
            .rev()
            .filter(|e| {
                matches!(
                    e.kind,
                    EventKind::Bounced | EventKind::Deferred | EventKind::Expired
                )
            })
            .take(10)
            .cloned()
            .collect();
        assert_eq!(t.latest_failures(10).unwrap(), failures);
        assert_eq!(t.failures_by_walk().unwrap(), failures);
    }

    #[test]
    fn retention_removes_index_rows_with_the_events() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(17);
        let (_db, t) = open();
        let events = random_events(&mut rng, 300);
        for e in &events {
            t.write(e.clone());
        }
        let cut = events[150].time_ms;
        while t.prune(cut, 7).unwrap() > 0 {}
        let everything = MessageQuery {
            limit: Some(500),
            ..MessageQuery::default()
        };
        let kept: Vec<_> = brute_force(&events, &everything)
            .into_iter()
            .filter(|m| m.received_ms >= cut)
            .collect();
        assert_eq!(t.messages(&everything).unwrap(), kept);
        let ids = |tree: &crate::db::Tree| tree.iter().unwrap().count();
        assert_eq!(ids(&t.message_index), kept.len());
        assert_eq!(ids(&t.message_ids), kept.len());
        let recipients: usize = kept.iter().map(|m| m.recipients.len()).sum();
        assert_eq!(ids(&t.message_recipients), recipients);
        for item in t.failures.iter().unwrap() {
            assert!(time_of(&item.unwrap().0).unwrap() >= cut);
        }
        assert!(
            t.events
                .range(..cut.to_be_bytes().to_vec())
                .unwrap()
                .next()
                .is_none()
        );
        // Everything past retention: the index is empty.
        while t.prune(u64::MAX, 50).unwrap() > 0 {}
        for tree in [
            &t.message_index,
            &t.message_ids,
            &t.message_recipients,
            &t.failures,
        ] {
            assert_eq!(ids(tree), 0);
        }
    }
}
