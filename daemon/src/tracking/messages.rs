//! Tracking by message (the web UI's tracking page) and traffic per
//! minute (the dashboard's chart).
//!
//! - `received` events carry the message's Subject and Message-ID
//!   ([`Labels`], read from the header section at acceptance, bounded).
//! - [`Tracker::messages`] reads the message index (`super::index`): a
//!   row per message in order of its first `received` event, walked
//!   newest first until a page is full, so a page costs its rows (and the
//!   rows the filters pass over), not the events in the window.
//! - Until the index is built (an old data directory whose indexing
//!   failed at open), it walks the events newest first from the end of
//!   the window and builds one line per message when it reaches the
//!   message's `received` events; the events after them (already passed)
//!   give each recipient's latest state.
//! - [`Tracker::count`] adds each `received` and `delivered` event to a
//!   per-minute counter (tree `traffic`), so the 24-hour chart reads 1,440
//!   small records, not a day of events; the latest failures come from
//!   the index's `failures` tree.
//!
//! Trusts: the events it wrote; message headers are parsed bounded and
//! only kept as text (the web page escapes them).

use std::collections::{HashMap, VecDeque};

use sealgate_api::ops::dashboard::Traffic;
use sealgate_api::ops::tracking::{
    Direction, Event, EventKind, MessageQuery, MessageSummary, RecipientOutcome,
};

use super::Tracker;

/// The header section read for labels, at most.
const MAX_HEADER_SCAN: usize = 64 * 1024;
/// A label is cut to this many characters.
const MAX_LABEL: usize = 998;
/// `received` events of one message lie within this many milliseconds.
const RECEIVED_SPREAD_MS: u64 = 2_000;

/// What tracking shows of a message besides its envelope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels {
    pub subject: Option<String>,
    pub message_id: Option<String>,
}

impl Labels {
    /// The Subject (decoded) and Message-ID of a message's header section.
    pub fn of(message: &[u8]) -> Labels {
        let head = message.get(..MAX_HEADER_SCAN).unwrap_or(message);
        let Some(parsed) = mail_parser::MessageParser::new().parse_headers(head) else {
            return Labels::default();
        };
        let cut = |s: &str| s.chars().take(MAX_LABEL).collect::<String>();
        Labels {
            subject: parsed.subject().map(cut),
            message_id: parsed.message_id().map(cut),
        }
    }
}

fn contains(haystack: &str, needle: &Option<String>) -> bool {
    needle
        .as_ref()
        .is_none_or(|n| haystack.to_lowercase().contains(&n.to_lowercase()))
}

/// A message being put together while the walk passes its events.
struct Building {
    summary: MessageSummary,
    directions: Vec<Direction>,
}

impl Building {
    fn matches(&self, q: &MessageQuery) -> bool {
        let m = &self.summary;
        contains(&m.sender, &q.sender)
            && (q.recipient.is_none()
                || m.recipients
                    .iter()
                    .any(|r| contains(&r.recipient, &q.recipient)))
            && contains(m.subject.as_deref().unwrap_or(""), &q.subject)
            && contains(m.message_id.as_deref().unwrap_or(""), &q.message_id)
            && q.queue_id.as_ref().is_none_or(|id| &m.queue_id == id)
            && q.direction.is_none_or(|d| self.directions.contains(&d))
    }
}

impl Tracker {
    /// Counts a `received` or `delivered` event in its minute.
    pub(super) fn count(&self, event: &Event) {
        let slot = match event.kind {
            EventKind::Received => 0,
            EventKind::Delivered => 1,
            _ => return,
        };
        let key = (event.time_ms / 60_000).to_be_bytes();
        for _ in 0..16 {
            let old = match self.traffic.get(key) {
                Ok(old) => old,
                Err(_) => return,
            };
            let mut counts = decode_counts(old.as_deref());
            if let Some(c) = counts.get_mut(slot) {
                *c = c.saturating_add(1);
            }
            let new = encode_counts(counts);
            match self
                .traffic
                .compare_and_swap(key, old.as_deref(), Some(new.as_slice()))
            {
                Ok(Ok(())) => return,
                Ok(Err(_)) => continue,
                Err(_) => return,
            }
        }
    }

    /// Recipients received and delivered per minute over the last
    /// `hours`, with the latest failures.
    pub fn traffic(&self, hours: u32, now_ms: u64) -> sled::Result<Traffic> {
        let minutes = u64::from(hours.clamp(1, 24 * 7)) * 60;
        let last = now_ms / 60_000;
        let first = last.saturating_sub(minutes - 1);
        let mut incoming = vec![0; usize::try_from(minutes).unwrap_or(0)];
        let mut outgoing = incoming.clone();
        for item in self
            .traffic
            .range(first.to_be_bytes().to_vec()..(last + 1).to_be_bytes().to_vec())?
        {
            let (key, value) = item?;
            let Some(minute) = key
                .get(..8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
            else {
                continue;
            };
            let [i, o] = decode_counts(Some(&value));
            let at = usize::try_from(minute - first).unwrap_or(usize::MAX);
            if let Some(slot) = incoming.get_mut(at) {
                *slot = i;
            }
            if let Some(slot) = outgoing.get_mut(at) {
                *slot = o;
            }
        }
        let last_errors = if self.indexed() {
            self.latest_failures(10)?
        } else {
            self.failures_by_walk()?
        };
        Ok(Traffic {
            start_ms: first * 60_000,
            bucket_ms: 60_000,
            incoming,
            outgoing,
            last_errors,
        })
    }

    /// The latest failures without the index: a short walk back from now.
    pub(super) fn failures_by_walk(&self) -> sled::Result<Vec<Event>> {
        let mut last_errors = Vec::new();
        for (walked, item) in self.events.iter()?.rev().enumerate() {
            let (_, value) = item?;
            if walked >= 20_000 || last_errors.len() >= 10 {
                break;
            }
            if let Ok(e) = serde_json::from_slice::<Event>(&value)
                && matches!(
                    e.kind,
                    EventKind::Bounced | EventKind::Deferred | EventKind::Expired
                )
            {
                last_errors.push(e);
            }
        }
        Ok(last_errors)
    }

    /// Messages matching `q`, newest first (see the module doc).
    pub fn messages(&self, q: &MessageQuery) -> sled::Result<Vec<MessageSummary>> {
        if self.indexed() {
            self.messages_indexed(q)
        } else {
            self.messages_by_walk(q)
        }
    }

    /// Messages matching `q` by a walk over the events (before the index
    /// is built).
    pub(super) fn messages_by_walk(&self, q: &MessageQuery) -> sled::Result<Vec<MessageSummary>> {
        let (limit, since, until) = page_bounds(q);
        // Each recipient's latest event, for messages whose `received` is still ahead.
        let mut later: HashMap<String, Vec<RecipientOutcome>> = HashMap::new();
        let mut directions: HashMap<String, Vec<Direction>> = HashMap::new();
        // Messages seen but not complete, newest first; `position` finds one
        // without a walk (its push number minus the messages popped so far),
        // so a busy window costs each event a hash lookup, not a search.
        let mut building: VecDeque<Building> = VecDeque::new();
        let mut position: HashMap<String, usize> = HashMap::new();
        let mut popped = 0usize;
        let mut out = Vec::new();
        let end = until.saturating_add(1).to_be_bytes().to_vec();
        for item in self.events.range(since.to_be_bytes().to_vec()..end)?.rev() {
            let (_, value) = item?;
            let Ok(e) = serde_json::from_slice::<Event>(&value) else {
                continue;
            };
            // Messages whose `received` events all lie behind us are complete.
            while building
                .front()
                .is_some_and(|b| b.summary.received_ms > e.time_ms + RECEIVED_SPREAD_MS)
            {
                let Some(done) = building.pop_front() else {
                    break;
                };
                popped += 1;
                position.remove(&done.summary.queue_id);
                later.remove(&done.summary.queue_id);
                if done.matches(q) {
                    out.push(done.summary);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            if e.kind != EventKind::Received {
                let dirs = directions.entry(e.queue_id.clone()).or_default();
                if !dirs.contains(&e.direction) {
                    dirs.push(e.direction);
                }
                if !e.recipient.is_empty() {
                    let outcomes = later.entry(e.queue_id.clone()).or_default();
                    if !outcomes.iter().any(|o| o.recipient == e.recipient) {
                        outcomes.push(RecipientOutcome {
                            recipient: e.recipient.clone(),
                            kind: e.kind,
                            detail: e.detail.clone(),
                        });
                    }
                }
                continue;
            }
            let latest = later
                .get(&e.queue_id)
                .and_then(|o| o.iter().find(|o| o.recipient == e.recipient))
                .cloned()
                .unwrap_or_else(|| RecipientOutcome {
                    recipient: e.recipient.clone(),
                    kind: EventKind::Received,
                    detail: e.detail.clone(),
                });
            if let Some(b) = position
                .get(&e.queue_id)
                .and_then(|n| n.checked_sub(popped))
                .and_then(|i| building.get_mut(i))
            {
                b.summary.recipients.insert(0, latest);
                if b.summary.subject.is_none() {
                    b.summary.subject.clone_from(&e.subject);
                }
                if b.summary.message_id.is_none() {
                    b.summary.message_id.clone_from(&e.message_id);
                }
                b.summary.received_ms = b.summary.received_ms.min(e.time_ms);
                continue;
            }
            let mut dirs = directions.remove(&e.queue_id).unwrap_or_default();
            if !dirs.contains(&Direction::In) {
                dirs.push(Direction::In);
            }
            position.insert(e.queue_id.clone(), popped + building.len());
            building.push_back(Building {
                summary: MessageSummary {
                    queue_id: e.queue_id.clone(),
                    received_ms: e.time_ms,
                    node: e.node.clone(),
                    direction: Direction::In,
                    sender: e.sender.clone(),
                    subject: e.subject.clone(),
                    message_id: e.message_id.clone(),
                    remote: e.remote.clone(),
                    recipients: vec![latest],
                },
                directions: dirs,
            });
        }
        for done in building {
            if out.len() >= limit {
                break;
            }
            if done.matches(q) {
                out.push(done.summary);
            }
        }
        Ok(out)
    }
}

fn decode_counts(bytes: Option<&[u8]>) -> [u64; 2] {
    let word = |at: usize| {
        bytes
            .and_then(|b| b.get(at..at + 8))
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(0, u64::from_be_bytes)
    };
    [word(0), word(8)]
}

fn encode_counts(counts: [u64; 2]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&counts[0].to_be_bytes());
    out.extend_from_slice(&counts[1].to_be_bytes());
    out
}

/// A query's page size and time window (`before_ms`, the next page's
/// cursor, narrows the window's end), for the index and the walk alike.
pub(super) fn page_bounds(q: &MessageQuery) -> (usize, u64, u64) {
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let since = q.since_ms.unwrap_or(0);
    let until = q
        .until_ms
        .unwrap_or(u64::MAX)
        .min(q.before_ms.map_or(u64::MAX, |b| b.saturating_sub(1)));
    (limit, since, until)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn labels_are_decoded_and_bounded() {
        let l = Labels::of(
            b"Subject: =?utf-8?b?R3LDvMOfZQ==?=\r\nMessage-ID: <a@b>\r\n\r\nbody Subject: no\r\n",
        );
        assert_eq!(l.subject.as_deref(), Some("Grüße"));
        assert_eq!(l.message_id.as_deref(), Some("a@b"));
        assert_eq!(Labels::of(b"\r\n\r\n"), Labels::default());
    }

    #[test]
    fn messages_newest_first_with_their_latest_states_and_traffic() {
        let dir =
            std::env::temp_dir().join(format!("sealgate-track-{}", crate::util::new_session_id()));
        let db = crate::db::Db::open(&dir).unwrap();
        let t = Tracker::open(&db, "n1");
        let labels = |s: &str| Labels {
            subject: Some(s.to_owned()),
            message_id: Some(format!("{s}@x")),
        };
        for (id, subject) in [("q1", "first"), ("q2", "second")] {
            for r in ["a@x.example", "b@y.example"] {
                t.record_labelled(
                    id,
                    EventKind::Received,
                    Direction::In,
                    "s@example.org",
                    r,
                    "127.0.0.1",
                    "",
                    Some(&labels(subject)),
                );
            }
        }
        t.record(
            "q1",
            EventKind::Delivered,
            Direction::Out,
            "s@example.org",
            "a@x.example",
            "mx",
            "250 ok",
        );
        let all = t.messages(&MessageQuery::default()).unwrap();
        assert_eq!(
            all.iter().map(|m| m.queue_id.as_str()).collect::<Vec<_>>(),
            ["q2", "q1"]
        );
        assert_eq!(all[1].recipients.len(), 2);
        assert_eq!(all[1].recipients[0].kind, EventKind::Delivered);
        assert_eq!(all[1].subject.as_deref(), Some("first"));
        let q = MessageQuery {
            subject: Some("FIRST".into()),
            ..MessageQuery::default()
        };
        assert_eq!(t.messages(&q).unwrap().len(), 1);
        let q = MessageQuery {
            recipient: Some("b@y".into()),
            limit: Some(1),
            ..MessageQuery::default()
        };
        assert_eq!(t.messages(&q).unwrap()[0].queue_id, "q2");
        let traffic = t.traffic(1, crate::envelope::now_ms()).unwrap();
        assert_eq!(traffic.incoming.iter().sum::<u64>(), 4);
        assert_eq!(traffic.outgoing.iter().sum::<u64>(), 1);
        assert_eq!(traffic.incoming.len(), 60);
    }
}
