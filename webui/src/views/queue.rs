//! `/queue`: what waits, filtered by state, sender, recipient and age; a
//! message's envelope, headers and recipients; release, retry, delete
//! (with a confirmation, in bulk with a count).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};

use sealgate_api::ops::queue::{
    QueueDelete, QueueFilter, QueueList, QueueRelease, QueueRetry, QueueShow, QueuedDetail,
    QueuedMessage, RecipientState,
};
use sealgate_api::{Area, Permission, run};
use serde::Deserialize;

use super::{notice, now_ms};
use crate::session::Account;
use crate::{Chrome, WebState, render};

#[derive(Template)]
#[template(path = "queue.html")]
struct QueuePage {
    chrome: Chrome,
    q: QueueQuery,
    rows: Vec<Row>,
    can_change: bool,
}

struct Row {
    m: QueuedMessage,
    age: String,
    states: String,
}

#[derive(Deserialize, Default)]
pub struct QueueQuery {
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub sender: String,
    #[serde(default)]
    pub recipient: String,
    /// Minutes.
    #[serde(default)]
    pub older: String,
    pub done: Option<String>,
}

fn parse_state(s: &str) -> Option<RecipientState> {
    [
        RecipientState::Scheduled,
        RecipientState::Deferred,
        RecipientState::Held,
        RecipientState::Quarantined,
    ]
    .into_iter()
    .find(|st| st.as_str() == s)
}

fn opt(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

pub async fn view_queue_get(
    State(state): State<WebState>,
    account: Account,
    Query(q): Query<QueueQuery>,
) -> Response {
    if let Some(refused) = account.refuse(sealgate_api::Permission::Read(sealgate_api::Area::Queue))
    {
        return refused;
    }
    let filter = QueueFilter {
        state: parse_state(&q.state),
        sender: opt(&q.sender),
        recipient: opt(&q.recipient),
        older_than_secs: q.older.trim().parse::<u64>().ok().map(|m| m * 60),
        limit: Some(500),
    };
    let list = match run(state.service(), &account.actor, &QueueList { filter }).await {
        Ok(l) => l,
        Err(e) => return crate::error::service_error(&e),
    };
    let now = now_ms();
    let rows = list
        .into_iter()
        .map(|m| {
            let mut states: Vec<&str> = m.recipients.iter().map(|r| r.state.as_str()).collect();
            states.sort_unstable();
            states.dedup();
            Row {
                age: super::ago(now.saturating_sub(m.received_at_ms)),
                states: states.join(", "),
                m,
            }
        })
        .collect();
    render(&QueuePage {
        chrome: Chrome::for_account(&state, &account, "Queue", "/queue")
            .with_notice(notice(q.done.as_deref())),
        can_change: account.session.role.allows(Permission::Write(Area::Queue)),
        rows,
        q,
    })
}

#[derive(Template)]
#[template(path = "queue_message.html")]
struct MessagePage {
    chrome: Chrome,
    d: QueuedDetail,
    can_change: bool,
}

pub async fn view_queue_message_get(
    State(state): State<WebState>,
    account: Account,
    Path(id): Path<String>,
) -> Response {
    if let Some(refused) = account.refuse(sealgate_api::Permission::Read(sealgate_api::Area::Queue))
    {
        return refused;
    }
    match run(state.service(), &account.actor, &QueueShow { id }).await {
        Ok(d) => render(&MessagePage {
            chrome: Chrome::for_account(&state, &account, "Queued message", "/queue"),
            can_change: account.session.role.allows(Permission::Write(Area::Queue)),
            d,
        }),
        Err(e) => crate::error::service_error(&e),
    }
}

/// The bulk form: `action` and one `id` per checked message.
pub async fn view_queue_action_post(
    State(state): State<WebState>,
    account: Account,
    body: String,
) -> Response {
    if let Some(refused) =
        account.refuse(sealgate_api::Permission::Write(sealgate_api::Area::Queue))
    {
        return refused;
    }
    let mut action = String::new();
    let mut ids = Vec::new();
    for (k, v) in form_pairs(&body) {
        match k.as_str() {
            "action" => action = v,
            "id" => ids.push(v),
            _ => {}
        }
    }
    if ids.is_empty() {
        return Redirect::to("/queue").into_response();
    }
    let result = match action.as_str() {
        "release" => run(state.service(), &account.actor, &QueueRelease { ids })
            .await
            .map(|_| "released"),
        "retry" => run(state.service(), &account.actor, &QueueRetry { ids })
            .await
            .map(|_| "retried"),
        "delete" => run(state.service(), &account.actor, &QueueDelete { ids })
            .await
            .map(|_| "deleted"),
        _ => return crate::WebError::BadRequest("Unknown action.").into_response(),
    };
    match result {
        Ok(done) => Redirect::to(&format!("/queue?done={done}")).into_response(),
        Err(e) => crate::error::service_error(&e),
    }
}

/// `application/x-www-form-urlencoded` pairs (repeated keys kept).
pub fn form_pairs(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}
