//! `/tracking`: messages by sender, recipient, subject, Message-ID,
//! queue id, time window (default: the last hour) and direction, newest
//! first, a page at a time; `/tracking/{id}`: every event of one message
//! in order, with the policy's explanation per recipient.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use sealgate_api::ops::tracking::{
    Direction, Event, MessageQuery, MessageSummary, TrackMessages, TrackQuery, TrackSearch,
};
use sealgate_api::run;
use serde::Deserialize;

use super::{now_ms, when};
use crate::session::Account;
use crate::{Chrome, WebState, render};

/// Messages per page.
pub const PAGE: usize = 50;

#[derive(Deserialize, Default)]
pub struct TrackingQuery {
    #[serde(default)]
    pub sender: String,
    #[serde(default)]
    pub recipient: String,
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub message_id: String,
    #[serde(default)]
    pub queue_id: String,
    /// Hours back from now (default 1).
    #[serde(default)]
    pub hours: String,
    #[serde(default)]
    pub direction: String,
    pub before: Option<u64>,
}

#[derive(Template)]
#[template(path = "tracking.html")]
struct TrackingPage {
    chrome: Chrome,
    q: TrackingQuery,
    hours: u64,
    rows: Vec<MessageSummary>,
    next: Option<String>,
}

fn opt(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

pub async fn view_tracking_get(
    State(state): State<WebState>,
    account: Account,
    Query(q): Query<TrackingQuery>,
) -> Response {
    if let Some(refused) =
        account.refuse(sealgate_api::Permission::Read(sealgate_api::Area::Tracking))
    {
        return refused;
    }
    let hours = q
        .hours
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|h| *h > 0)
        .unwrap_or(1)
        .min(24 * 366);
    let now = now_ms();
    let query = MessageQuery {
        sender: opt(&q.sender),
        recipient: opt(&q.recipient),
        subject: opt(&q.subject),
        message_id: opt(&q.message_id),
        queue_id: opt(&q.queue_id),
        since_ms: Some(now.saturating_sub(hours * 3_600_000)),
        until_ms: None,
        direction: match q.direction.as_str() {
            "in" => Some(Direction::In),
            "out" => Some(Direction::Out),
            _ => None,
        },
        before_ms: q.before,
        limit: Some(PAGE),
    };
    let rows = match run(state.service(), &account.actor, &TrackMessages { query }).await {
        Ok(r) => r,
        Err(e) => return crate::error::service_error(&e),
    };
    let next = (rows.len() >= PAGE)
        .then(|| rows.last().map(|m| m.received_ms))
        .flatten()
        .map(|before| {
            let enc = |s: &str| -> String {
                percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).collect()
            };
            format!(
                "/tracking?sender={}&recipient={}&subject={}&message_id={}&queue_id={}&hours={hours}&direction={}&before={before}",
                enc(&q.sender), enc(&q.recipient), enc(&q.subject), enc(&q.message_id), enc(&q.queue_id), enc(&q.direction)
            )
        });
    render(&TrackingPage {
        chrome: Chrome::for_account(&state, &account, "Tracking", "/tracking"),
        q,
        hours,
        rows,
        next,
    })
}

#[derive(Template)]
#[template(path = "tracking_message.html")]
struct TrackingMessagePage {
    chrome: Chrome,
    id: String,
    events: Vec<Event>,
    subject: Option<String>,
    message_id: Option<String>,
    sender: String,
}

pub async fn view_tracking_message_get(
    State(state): State<WebState>,
    account: Account,
    Path(id): Path<String>,
) -> Response {
    if let Some(refused) =
        account.refuse(sealgate_api::Permission::Read(sealgate_api::Area::Tracking))
    {
        return refused;
    }
    let query = TrackQuery {
        queue_id: Some(id.clone()),
        limit: Some(2000),
        ..TrackQuery::default()
    };
    let events = match run(state.service(), &account.actor, &TrackSearch { query }).await {
        Ok(e) => e,
        Err(e) => return crate::error::service_error(&e),
    };
    if events.is_empty() {
        return axum::response::IntoResponse::into_response(crate::WebError::NotFound);
    }
    let received = events
        .iter()
        .find(|e| e.subject.is_some() || e.message_id.is_some());
    render(&TrackingMessagePage {
        chrome: Chrome::for_account(&state, &account, "Message events", "/tracking"),
        subject: received.and_then(|e| e.subject.clone()),
        message_id: received.and_then(|e| e.message_id.clone()),
        sender: events.first().map(|e| e.sender.clone()).unwrap_or_default(),
        id,
        events,
    })
}

/// For templates: an event's time.
pub fn at(e: &Event) -> String {
    when(e.time_ms)
}

/// For templates: which way.
pub fn dir(e: &Event) -> &'static str {
    match e.direction {
        Direction::In => "in",
        Direction::Out => "out",
    }
}
