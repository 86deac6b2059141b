//! Queue operations: list, show, release, retry, delete.
//!
//! Changes go through the scheduler when the daemon runs, so they never
//! race a delivery in flight; on a stopped daemon's data directory they
//! are made directly.

use std::sync::Arc;

use sealgate_api::ops::Done;
use sealgate_api::ops::ItemError;
use sealgate_api::ops::queue::{
    QueueDelete, QueueFilter, QueueList, QueueRelease, QueueRetry, QueueShow, QueuedDetail,
    QueuedMessage, QueuedRecipient, RecipientState,
};
use sealgate_api::{Actor, ServiceError};

use super::{Ctx, blocking, storage};
use crate::queue::SchedulerRequest;
use crate::queue::state::{QueueEntry, RecipientStatus};

/// The view of one queued message.
pub fn view(entry: &QueueEntry) -> QueuedMessage {
    QueuedMessage {
        queue_id: entry.queue_id.to_string(),
        sender: entry.sender_text(),
        received_at_ms: entry.received_at_ms,
        size: entry.size,
        attempts: entry.attempts,
        next_attempt_ms: entry.next_attempt_ms,
        recipients: entry
            .recipients
            .iter()
            .map(|r| {
                let (state, reason, reply, since_ms) = describe(&r.status);
                QueuedRecipient {
                    address: r.recipient.address.to_string(),
                    state,
                    reason,
                    reply,
                    since_ms,
                    attempts: r.attempts,
                    notify: r.recipient.notify.map(|n| notify_text(&n)),
                    orcpt: r.recipient.orcpt.clone(),
                }
            })
            .collect(),
    }
}

/// NOTIFY as RFC 3461 writes it.
fn notify_text(n: &crate::smtp::command::Notify) -> String {
    if n.never {
        return "NEVER".to_owned();
    }
    [
        (n.success, "SUCCESS"),
        (n.failure, "FAILURE"),
        (n.delay, "DELAY"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, word)| *word)
    .collect::<Vec<_>>()
    .join(",")
}

type Described = (
    RecipientState,
    Option<sealgate_api::ops::queue::Reason>,
    Option<String>,
    Option<u64>,
);

fn describe(status: &RecipientStatus) -> Described {
    match status {
        RecipientStatus::Scheduled => (RecipientState::Scheduled, None, None, None),
        RecipientStatus::Deferred { reason } => {
            (RecipientState::Deferred, Some(reason.view()), None, None)
        }
        RecipientStatus::Delivered { reply } => {
            (RecipientState::Delivered, None, Some(reply.clone()), None)
        }
        RecipientStatus::Bounced { reason } => {
            (RecipientState::Bounced, Some(reason.view()), None, None)
        }
        RecipientStatus::Deleted => (RecipientState::Deleted, None, None, None),
        RecipientStatus::Held { reason, since_ms } => (
            RecipientState::Held,
            Some(reason.view()),
            None,
            Some(*since_ms),
        ),
        RecipientStatus::Quarantined { reason, since_ms } => (
            RecipientState::Quarantined,
            Some(reason.view()),
            None,
            Some(*since_ms),
        ),
    }
}

fn matches(filter: &QueueFilter, message: &QueuedMessage, now_ms: u64) -> bool {
    let contains = |text: &str, part: &Option<String>| {
        part.as_ref()
            .is_none_or(|p| text.to_lowercase().contains(&p.to_lowercase()))
    };
    filter
        .state
        .is_none_or(|s| message.recipients.iter().any(|r| r.state == s))
        && contains(&message.sender, &filter.sender)
        && (filter.recipient.is_none()
            || message
                .recipients
                .iter()
                .any(|r| contains(&r.address, &filter.recipient)))
        && filter.older_than_secs.is_none_or(|secs| {
            now_ms.saturating_sub(message.received_at_ms) >= secs.saturating_mul(1000)
        })
}

pub async fn list(
    ctx: Arc<Ctx>,
    _: Actor,
    op: QueueList,
) -> Result<Vec<QueuedMessage>, ServiceError> {
    blocking(move || {
        let now = crate::envelope::now_ms();
        let limit = op.filter.limit.unwrap_or(1000);
        Ok(ctx
            .queue
            .state()
            .all()
            .map_err(storage)?
            .iter()
            .map(view)
            .filter(|m| matches(&op.filter, m, now))
            .take(limit)
            .collect())
    })
    .await
}

pub async fn show(ctx: Arc<Ctx>, _: Actor, op: QueueShow) -> Result<QueuedDetail, ServiceError> {
    let id = queue_id(&op.id)?;
    blocking(move || {
        let entry = ctx
            .queue
            .state()
            .get(&id)
            .map_err(storage)?
            .ok_or_else(|| ServiceError::NotFound {
                what: format!("queued message {}", op.id),
            })?;
        let (client_ip, helo, tls, headers) = match ctx.queue.spool().read(&id) {
            Ok(m) => {
                let end = m
                    .content
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .unwrap_or(m.content.len());
                (
                    m.envelope.client_ip.clone(),
                    m.envelope.helo.clone(),
                    m.envelope.tls,
                    String::from_utf8_lossy(m.content.get(..end).unwrap_or(&[])).into_owned(),
                )
            }
            Err(e) => (
                String::new(),
                String::new(),
                false,
                format!("(spool file: {e})"),
            ),
        };
        Ok(QueuedDetail {
            message: view(&entry),
            client_ip,
            helo,
            tls,
            headers,
        })
    })
    .await
}

/// An administrative change to queued messages.
#[derive(Debug, Clone, Copy)]
enum Change {
    Delete,
    Retry,
    Release,
}

pub async fn release(ctx: Arc<Ctx>, _: Actor, op: QueueRelease) -> Result<Done, ServiceError> {
    change(&ctx, op.ids, Change::Release).await
}

pub async fn retry(ctx: Arc<Ctx>, _: Actor, op: QueueRetry) -> Result<Done, ServiceError> {
    change(&ctx, op.ids, Change::Retry).await
}

pub async fn delete(ctx: Arc<Ctx>, _: Actor, op: QueueDelete) -> Result<Done, ServiceError> {
    change(&ctx, op.ids, Change::Delete).await
}

/// Applies a change to each message: through the scheduler when the daemon
/// runs (so it never races a delivery), directly when it does not.
async fn change(ctx: &Ctx, ids: Vec<String>, change: Change) -> Result<Done, ServiceError> {
    if ids.is_empty() {
        return Err(ServiceError::invalid(
            "ids",
            "name at least one queued message",
        ));
    }
    let mut done = Done::default();
    for id in ids {
        match change_one(ctx, &id, change).await {
            Ok(()) => done.changed.push(id),
            Err(error) => done.failed.push(ItemError { id, error }),
        }
    }
    let verb = match change {
        Change::Delete => "deleted",
        Change::Retry => "scheduled for immediate retry",
        Change::Release => {
            "released: held and quarantined recipients are decided and tried again now"
        }
    };
    done.text = match (done.changed.as_slice(), done.failed.as_slice()) {
        ([one], []) => format!("{one}: {verb}"),
        ([], [one]) => return Err(one.error.clone()),
        (changed, failed) => format!("{} message(s) {verb}; {} not", changed.len(), failed.len()),
    };
    Ok(done)
}

async fn change_one(ctx: &Ctx, id: &str, change: Change) -> Result<(), ServiceError> {
    let id = &queue_id(id)?;
    let queue = &ctx.queue;
    if ctx.online {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let request = match change {
            Change::Delete => SchedulerRequest::Delete(id.to_owned(), tx),
            Change::Retry => SchedulerRequest::Retry(id.to_owned(), tx),
            Change::Release => SchedulerRequest::Release(id.to_owned(), tx),
        };
        queue
            .request(request)
            .map_err(|what| ServiceError::Unavailable { what })?;
        return rx.await.map_err(|_| ServiceError::Unavailable {
            what: "the scheduler".into(),
        })?;
    }
    match change {
        Change::Delete => crate::queue::scheduler::delete(queue, id),
        // Due now: it is tried as soon as the daemon starts.
        Change::Retry => retry_when_started(queue, id),
        Change::Release => crate::queue::scheduler::release(queue, id),
    }
}

fn retry_when_started(
    queue: &crate::queue::Queue,
    id: &crate::envelope::QueueId,
) -> Result<(), ServiceError> {
    let mut entry = queue
        .state()
        .get(id)
        .map_err(storage)?
        .ok_or_else(|| not_queued(id))?;
    entry.next_attempt_ms = 0;
    queue.state().put(&entry).map_err(storage)
}

/// A queue id from a request: one that has not the shape of one is in no queue.
fn queue_id(id: &str) -> Result<crate::envelope::QueueId, ServiceError> {
    crate::envelope::QueueId::parse(id).ok_or_else(|| not_queued(id))
}

/// The error for an id that is not (or no longer) in the queue.
pub fn not_queued(id: impl std::fmt::Display) -> ServiceError {
    ServiceError::NotFound {
        what: format!("queued message {id}"),
    }
}
