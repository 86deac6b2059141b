//! The scheduler: one task that knows when each queued message is due,
//! starts deliveries up to the concurrency limit, applies the results to the
//! queue state, retries with exponential backoff, and bounces what expires.
//!
//! One message is handled by at most one delivery at a time; administrative
//! requests (retry, delete) go through this loop so they never race with a
//! delivery in flight.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};

use crate::config::Config;
use crate::delivery::{Deliverer, Outcome};
use crate::envelope::now_ms;
use crate::pipeline::{self, PipelineError, Waiting};
use crate::policy::Policy;
use crate::tracking::{Direction, EventKind};

use super::dsn::{self, ReportAction, ReportedRecipient};
use super::spool::SpoolReadError;
use super::state::{QueueEntry, RecipientStatus};
use super::{Queue, SchedulerRequest};

/// Runs the scheduler until the request channel closes.
pub async fn run(
    queue: Queue,
    config: Arc<Config>,
    policy: Arc<Policy>,
    mut keys: Arc<pipeline::unwrap::KeyStore>,
    deliverer: Arc<Deliverer>,
    mut requests: mpsc::UnboundedReceiver<SchedulerRequest>,
    initial: Vec<(u64, String)>,
) {
    let mut due: BinaryHeap<Reverse<(u64, String)>> = initial.into_iter().map(Reverse).collect();
    let mut in_flight: HashSet<String> = HashSet::new();
    let permits = Arc::new(Semaphore::new(config.delivery.concurrency));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(String, Option<u64>)>();
    loop {
        let now = now_ms();
        // Start everything that is due, as far as the concurrency allows.
        while let Some(Reverse((when, _))) = due.peek() {
            if *when > now {
                break;
            }
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                break;
            };
            let Some(Reverse((_, queue_id))) = due.pop() else {
                break;
            };
            if !in_flight.insert(queue_id.clone()) {
                continue;
            }
            let queue = queue.clone();
            let config = config.clone();
            let policy = policy.clone();
            let keys = keys.clone();
            let deliverer = deliverer.clone();
            let done = done_tx.clone();
            tokio::spawn(async move {
                let context = pipeline::Context {
                    config: &config,
                    policy: &policy,
                    directory: queue.directory(),
                    keys: &keys,
                };
                let next = attempt(&queue, &context, &deliverer, &queue_id).await;
                drop(permit);
                let _ = done.send((queue_id, next));
            });
        }
        let sleep_for = match due.peek() {
            Some(Reverse((when, _))) if permits.available_permits() > 0 => {
                Duration::from_millis(when.saturating_sub(now).max(1))
            }
            _ => Duration::from_secs(3600),
        };
        tokio::select! {
            request = requests.recv() => match request {
                None => return,
                Some(SchedulerRequest::Wake(id)) => due.push(Reverse((now_ms(), id))),
                Some(SchedulerRequest::Retry(id, reply)) => {
                    let result = match queue.state().get(&id) {
                        Ok(Some(entry)) if entry.has_pending() => {
                            if !in_flight.contains(&id) {
                                due.push(Reverse((now_ms(), id)));
                            }
                            Ok(())
                        }
                        Ok(_) => Err(format!("{id}: not in the queue")),
                        Err(e) => Err(e.to_string()),
                    };
                    let _ = reply.send(result);
                }
                Some(SchedulerRequest::Release(id, reply)) => {
                    let result = if in_flight.contains(&id) {
                        Err(format!("{id}: a delivery is in progress; try again in a moment"))
                    } else {
                        release(&queue, &id).map(|()| due.push(Reverse((now_ms(), id))))
                    };
                    let _ = reply.send(result);
                }
                Some(SchedulerRequest::KeysArrived(addresses)) => {
                    match release_held_for(&queue, &addresses, &in_flight) {
                        Ok(ids) => due.extend(ids.into_iter().map(|id| Reverse((now_ms(), id)))),
                        Err(e) => tracing::error!(error = %e, ?addresses, "queue state not readable: held mail for these addresses is not released"),
                    }
                }
                Some(SchedulerRequest::ReloadKeys(reloaded)) => keys = Arc::new(reloaded),
                Some(SchedulerRequest::Delete(id, reply)) => {
                    let result = if in_flight.contains(&id) {
                        Err(format!("{id}: a delivery is in progress; try again in a moment"))
                    } else {
                        delete(&queue, &id)
                    };
                    let _ = reply.send(result);
                }
            },
            Some((id, next)) = done_rx.recv() => {
                in_flight.remove(&id);
                if let Some(when) = next {
                    due.push(Reverse((when, id)));
                }
            }
            () = tokio::time::sleep(sleep_for) => {}
        }
    }
}

/// Removes a message from the queue on an administrator's request (the
/// scheduler's loop, or the CLI when the daemon is stopped).
pub(crate) fn delete(queue: &Queue, queue_id: &str) -> Result<(), String> {
    let mut entry = queue
        .state()
        .get(queue_id)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{queue_id}: not in the queue"))?;
    for r in &mut entry.recipients {
        if r.status.is_pending() || r.status.is_waiting() {
            r.status = RecipientStatus::Deleted;
            queue.tracker().record(
                queue_id,
                EventKind::Deleted,
                Direction::Out,
                &entry
                    .sender
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                &r.recipient.address.to_string(),
                "local",
                "deleted by administrator",
            );
        }
    }
    match queue.spool().remove(queue_id) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{queue_id}: spool file not removed: {e}")),
    }
    queue.state().remove(queue_id).map_err(|e| e.to_string())
}

/// Held and quarantined recipients waiting longer than the hold lifetime
/// fail for good (the sender gets a failure notice).
fn expire_waiting(
    queue: &Queue,
    config: &Config,
    entry: &mut QueueEntry,
    now: u64,
    failed: &mut Vec<(usize, String, String)>,
) {
    let lifetime_ms = config.delivery.hold_lifetime_secs.saturating_mul(1000);
    let sender = entry.sender_text();
    for (i, state) in entry.recipients.iter_mut().enumerate() {
        let Some(since) = state.status.waiting_since_ms() else {
            continue;
        };
        if now.saturating_sub(since) < lifetime_ms {
            continue;
        }
        let why = match &state.status {
            RecipientStatus::Held { reason, .. } | RecipientStatus::Quarantined { reason, .. } => {
                reason.clone()
            }
            _ => String::new(),
        };
        let reason = format!(
            "not delivered: waited {} s without being released ({why})",
            config.delivery.hold_lifetime_secs
        );
        expire(queue, &entry.queue_id, &sender, i, state, reason, failed);
    }
}

/// Ends a recipient that waited too long: tracked as expired, bounced, and
/// added to the failure notice.
fn expire(
    queue: &Queue,
    queue_id: &str,
    sender: &str,
    index: usize,
    state: &mut crate::queue::state::RecipientState,
    reason: String,
    failed: &mut Vec<(usize, String, String)>,
) {
    queue.tracker().record(
        queue_id,
        EventKind::Expired,
        Direction::Out,
        sender,
        &state.recipient.address.to_string(),
        "local",
        &reason,
    );
    failed.push((index, reason.clone(), String::new()));
    state.status = RecipientStatus::Bounced { reason };
}

/// Invites each newly held recipient of `message` to provide a certificate
/// or key, at most once per recipient per `invitations.resend_after_secs`.
/// Best effort: an invitation that cannot be written or queued now is
/// tried again when the next message for that recipient is held.
async fn send_invitations(
    queue: &Queue,
    context: &pipeline::Context<'_>,
    message: &crate::queue::spool::SpooledMessage,
    newly_held: &[usize],
) {
    // Mail from the null sender (a notice) has nobody to name.
    let Some(sender) = message.envelope.sender.as_ref() else {
        return;
    };
    let config = context.config;
    let every_ms = config.invitations.resend_after_secs.saturating_mul(1000);
    let queue_id = message.queue_id.as_str();
    for recipient in newly_held
        .iter()
        .filter_map(|&i| message.envelope.recipients.get(i))
    {
        let address = recipient.address.to_string();
        match queue.state().claim_invitation(&address, now_ms(), every_ms) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(queue_id, error = %e, "invitation state not readable; no invitation sent");
                continue;
            }
        }
        // Signing may wait on the token.
        let built = tokio::task::block_in_place(|| {
            super::invite::build(config, context.keys, sender, &recipient.address, queue_id)
        });
        let queued = match built {
            Ok(invitation) => queue
                .inject(&invitation.envelope, &invitation.content)
                .await
                .map(|id| (id, invitation.carries))
                .map_err(|e| format!("not queued: {e}")),
            Err(e) => Err(e.to_string()),
        };
        match queued {
            Ok((id, carries)) => queue.tracker().record(
                queue_id,
                EventKind::Invited,
                Direction::Out,
                &sender.to_string(),
                &address,
                "local",
                &format!("invitation to provide a certificate or key ({carries}) queued as {id}"),
            ),
            Err(why) => {
                tracing::warn!(queue_id, recipient = %address, reason = %why, "invitation not sent");
                let _ = queue.state().unclaim_invitation(&address);
            }
        }
    }
}

/// Whether notices about `envelope` may go to its sender: it came from an
/// internal network (our own users), or the gateway wrote it. Mail from
/// outside carries whatever MAIL FROM its client chose.
pub(crate) fn sender_verified(config: &Config, envelope: &crate::envelope::Envelope) -> bool {
    envelope.client_ip == "local"
        || envelope
            .client_ip
            .parse()
            .is_ok_and(|ip| config.is_internal(ip))
}

/// What happens to a recipient the gateway itself cannot deliver (policy
/// refusal, a message that cannot be processed): bounced with a notice to
/// the sender, or, for mail from outside, quarantined for an
/// administrator (no notice: the sender is not verified).
fn refuse(
    queue: &Queue,
    config: &Config,
    message: &crate::queue::spool::SpooledMessage,
    index: usize,
    state: &mut crate::queue::state::RecipientState,
    (by, reason): (&str, String),
    failed: &mut Vec<(usize, String, String)>,
) {
    let queue_id = message.queue_id.as_str();
    let sender = message.envelope.sender_text();
    let rcpt = state.recipient.address.to_string();
    if sender_verified(config, &message.envelope) {
        queue.tracker().record(
            queue_id,
            EventKind::Bounced,
            Direction::Out,
            &sender,
            &rcpt,
            by,
            &reason,
        );
        failed.push((index, reason.clone(), String::new()));
        state.status = RecipientStatus::Bounced { reason };
    } else {
        let reason = format!(
            "{reason}; quarantined instead of bounced: the message came from outside and its sender is not verified"
        );
        queue.tracker().record(
            queue_id,
            EventKind::Quarantined,
            Direction::Out,
            &sender,
            &rcpt,
            by,
            &reason,
        );
        state.status = RecipientStatus::Quarantined {
            reason,
            since_ms: now_ms(),
        };
    }
}

/// Sends the sender one RFC 3464 report about `items` (recipient index,
/// reason, remote host) with `action`, through the queue, and records it.
/// `Ok` when there was nothing to send, no report is due (`<>`, NOTIFY), or
/// it was queued; `Err` when it could not be queued.
async fn send_report(
    queue: &Queue,
    config: &Config,
    message: &crate::queue::spool::SpooledMessage,
    sender: &str,
    action: ReportAction,
    items: &[(usize, String, String)],
) -> Result<(), ()> {
    let queue_id = message.queue_id.as_str();
    if !sender_verified(config, &message.envelope) && !items.is_empty() {
        // A notice to an address nobody verified is backscatter: anyone
        // can put a victim's address in MAIL FROM.
        tracing::info!(
            queue_id,
            sender,
            "no delivery notice: the message came from outside and its sender is not verified"
        );
        return Ok(());
    }
    let reported: Vec<_> = items
        .iter()
        .filter_map(|(i, reason, remote)| {
            message
                .envelope
                .recipients
                .get(*i)
                .map(|recipient| ReportedRecipient {
                    recipient,
                    action,
                    reason,
                    remote,
                })
        })
        .collect();
    if reported.is_empty() {
        return Ok(());
    }
    let Some((dsn_envelope, dsn_content)) = dsn::build(
        config,
        queue_id,
        &message.envelope,
        &message.content,
        &reported,
    ) else {
        return Ok(());
    };
    let what = match action {
        ReportAction::Failed => "failure notice",
        ReportAction::Delayed => "delay notice",
    };
    match queue.inject(&dsn_envelope, &dsn_content).await {
        Ok(dsn_id) => {
            queue.tracker().record(
                queue_id,
                EventKind::DsnSent,
                Direction::Out,
                sender,
                &dsn_envelope
                    .recipients
                    .first()
                    .map(|r| r.address.to_string())
                    .unwrap_or_default(),
                "local",
                &format!("{what} queued as {dsn_id}"),
            );
            Ok(())
        }
        Err(e) => {
            tracing::error!(queue_id, error = %e, "{what} could not be queued");
            Err(())
        }
    }
}

/// Puts held and quarantined recipients back to scheduled (the policy and
/// the methods are looked at again on the next attempt, which is due now).
pub(crate) fn release(queue: &Queue, queue_id: &str) -> Result<(), String> {
    let mut entry = queue
        .state()
        .get(queue_id)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{queue_id}: not in the queue"))?;
    let mut released = 0;
    for r in &mut entry.recipients {
        if r.status.is_waiting() {
            if matches!(r.status, RecipientStatus::Quarantined { .. }) {
                r.quarantine_lifted = true;
            }
            r.status = RecipientStatus::Scheduled;
            released += 1;
            queue.tracker().record(
                queue_id,
                EventKind::Released,
                Direction::Out,
                &entry
                    .sender
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                &r.recipient.address.to_string(),
                "local",
                "released by administrator",
            );
        }
    }
    if released == 0 {
        return Err(format!("{queue_id}: nothing is held or quarantined"));
    }
    entry.next_attempt_ms = 0;
    queue.state().put(&entry).map_err(|e| e.to_string())
}

/// Releases held recipients whose address (or `@domain`) is in `keys`:
/// a certificate or key for them has just arrived. Messages with a delivery
/// in flight are skipped (they are decided again by that delivery).
/// Returns the queue ids to try now.
pub(crate) fn release_held_for(
    queue: &Queue,
    keys: &[String],
    in_flight: &HashSet<String>,
) -> sled::Result<Vec<String>> {
    let wanted = |address: &str| {
        let address = address.to_ascii_lowercase();
        let domain = address
            .rsplit_once('@')
            .map(|(_, d)| format!("@{d}"))
            .unwrap_or_default();
        keys.iter()
            .any(|k| k.eq_ignore_ascii_case(&address) || k.eq_ignore_ascii_case(&domain))
    };
    let mut released = Vec::new();
    for mut entry in queue.state().all()? {
        if in_flight.contains(&entry.queue_id) {
            continue;
        }
        let sender = entry.sender_text();
        let mut changed = false;
        for r in &mut entry.recipients {
            let address = r.recipient.address.to_string();
            if matches!(r.status, RecipientStatus::Held { .. }) && wanted(&address) {
                r.status = RecipientStatus::Scheduled;
                changed = true;
                queue.tracker().record(
                    &entry.queue_id,
                    EventKind::Released,
                    Direction::Out,
                    &sender,
                    &address,
                    "directory",
                    "a certificate or key for this recipient arrived",
                );
            }
        }
        if changed {
            entry.next_attempt_ms = 0;
            if queue.state().put(&entry).is_ok() {
                released.push(entry.queue_id.clone());
            }
        }
    }
    Ok(released)
}

/// Backoff: `initial × 2^(attempts-1)`, capped.
fn backoff(config: &Config, attempts: u32) -> u64 {
    let factor = 1u64 << attempts.saturating_sub(1).min(20);
    config
        .delivery
        .retry_initial_secs
        .saturating_mul(factor)
        .min(config.delivery.retry_max_secs)
        * 1000
}

/// One delivery attempt for a message; returns when it is due again, if ever.
async fn attempt(
    queue: &Queue,
    context: &pipeline::Context<'_>,
    deliverer: &Deliverer,
    queue_id: &str,
) -> Option<u64> {
    let config = context.config;
    let message = match queue.spool().read(queue_id) {
        Ok(m) => m,
        Err(SpoolReadError::Damaged(why)) => {
            tracing::error!(
                queue_id,
                reason = why,
                "damaged spool file moved to corrupt/"
            );
            let _ = queue.spool().quarantine(queue_id);
            return None;
        }
        Err(SpoolReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            // Deleted meanwhile (administrator) or already finished.
            return None;
        }
        Err(SpoolReadError::Io(e)) => {
            tracing::error!(queue_id, error = %e, "spool file unreadable; will retry");
            return Some(now_ms() + 60_000);
        }
    };
    let mut entry = match queue.state().get(queue_id) {
        Ok(Some(entry)) => entry,
        _ => QueueEntry::new(queue_id, &message.envelope, message.content.len() as u64),
    };
    let pending: Vec<usize> = entry
        .recipients
        .iter()
        .enumerate()
        .filter(|(_, r)| r.status.is_pending())
        .map(|(i, _)| i)
        .collect();
    entry.attempts += 1;
    let sender = entry.sender_text();
    let mut failed: Vec<(usize, String, String)> = Vec::new();
    let mut delayed: Vec<(usize, String)> = Vec::new();
    let mut newly_held: Vec<usize> = Vec::new();
    let now = now_ms();
    expire_waiting(queue, config, &mut entry, now, &mut failed);
    let lifted: Vec<usize> = entry
        .recipients
        .iter()
        .enumerate()
        .filter(|(_, r)| r.quarantine_lifted)
        .map(|(i, _)| i)
        .collect();
    // The pipeline may wait on the token (decryption): keep the runtime's other tasks going.
    let planned =
        tokio::task::block_in_place(|| pipeline::process(&message, &pending, &lifted, context));
    match planned {
        Ok(plan) => {
            if !plan.harvested.is_empty() {
                // Keys that came with this message: mail held for their
                // owners is decided again (as after `directory import`).
                let _ = queue.request(SchedulerRequest::KeysArrived(plan.harvested.clone()));
            }
            let address_of = |entry: &QueueEntry, i: usize| {
                entry
                    .recipients
                    .get(i)
                    .map(|r| r.recipient.address.to_string())
                    .unwrap_or_default()
            };
            for (i, text) in &plan.explanations {
                let rcpt = address_of(&entry, *i);
                queue.tracker().record(
                    queue_id,
                    EventKind::Policy,
                    Direction::Out,
                    &sender,
                    &rcpt,
                    "policy",
                    text,
                );
            }
            for (i, reason) in plan.refused {
                if let Some(state) = entry.recipients.get_mut(i) {
                    refuse(
                        queue,
                        config,
                        &message,
                        i,
                        state,
                        ("policy", reason),
                        &mut failed,
                    );
                }
            }
            let mut waiting = plan.waiting;
            let mut sendable = Vec::new();
            for out in plan.outgoing {
                match pipeline::guard::check(&out) {
                    Ok(()) => sendable.push(out),
                    Err(reason) => {
                        tracing::error!(queue_id, %reason, "outgoing message stopped by the fail-closed guard");
                        waiting.extend(
                            out.recipients
                                .iter()
                                .map(|&i| (i, Waiting::Held(reason.clone()))),
                        );
                    }
                }
            }
            for (i, wait) in waiting {
                let rcpt = address_of(&entry, i);
                let Some(state) = entry.recipients.get_mut(i) else {
                    continue;
                };
                let (kind, reason) = match &wait {
                    Waiting::Held(r) => (EventKind::Held, r.clone()),
                    Waiting::Quarantined(r) => (EventKind::Quarantined, r.clone()),
                };
                queue.tracker().record(
                    queue_id,
                    kind,
                    Direction::Out,
                    &sender,
                    &rcpt,
                    "policy",
                    &reason,
                );
                state.status = match wait {
                    Waiting::Held(reason) => {
                        if !state.hold_notified {
                            state.hold_notified = true;
                            delayed.push((i, reason.clone()));
                            newly_held.push(i);
                        }
                        RecipientStatus::Held {
                            reason,
                            since_ms: now,
                        }
                    }
                    Waiting::Quarantined(reason) => RecipientStatus::Quarantined {
                        reason,
                        since_ms: now,
                    },
                };
            }
            if config.invitations.enabled {
                send_invitations(queue, context, &message, &newly_held).await;
            }
            for out in sendable {
                let recipients: Vec<_> = out
                    .recipients
                    .iter()
                    .filter_map(|&i| message.envelope.recipients.get(i).map(|r| (i, r)))
                    .collect();
                let results = deliverer
                    .deliver(&message.envelope, &recipients, &out.content)
                    .await;
                for result in results {
                    let Some(state) = entry.recipients.get_mut(result.index) else {
                        continue;
                    };
                    state.attempts += 1;
                    let rcpt = state.recipient.address.to_string();
                    match result.outcome {
                        Outcome::Delivered(reply) => {
                            queue.tracker().record(
                                queue_id,
                                EventKind::Delivered,
                                Direction::Out,
                                &sender,
                                &rcpt,
                                &result.remote,
                                &reply,
                            );
                            state.status = RecipientStatus::Delivered { reply };
                        }
                        Outcome::Deferred(reason) => {
                            queue.tracker().record(
                                queue_id,
                                EventKind::Deferred,
                                Direction::Out,
                                &sender,
                                &rcpt,
                                &result.remote,
                                &reason,
                            );
                            state.status = RecipientStatus::Deferred { reason };
                        }
                        Outcome::Bounced(reason) => {
                            queue.tracker().record(
                                queue_id,
                                EventKind::Bounced,
                                Direction::Out,
                                &sender,
                                &rcpt,
                                &result.remote,
                                &reason,
                            );
                            failed.push((result.index, reason.clone(), result.remote.clone()));
                            state.status = RecipientStatus::Bounced { reason };
                        }
                    }
                }
            }
        }
        Err(PipelineError::Temporary(reason)) => {
            for &i in &pending {
                if let Some(state) = entry.recipients.get_mut(i) {
                    queue.tracker().record(
                        queue_id,
                        EventKind::Deferred,
                        Direction::Out,
                        &sender,
                        &state.recipient.address.to_string(),
                        "pipeline",
                        &reason,
                    );
                    state.status = RecipientStatus::Deferred {
                        reason: reason.clone(),
                    };
                }
            }
        }
        Err(PipelineError::Permanent(reason)) => {
            for &i in &pending {
                if let Some(state) = entry.recipients.get_mut(i) {
                    refuse(
                        queue,
                        config,
                        &message,
                        i,
                        state,
                        ("pipeline", reason.clone()),
                        &mut failed,
                    );
                }
            }
        }
    }
    // Expiry: what is still pending after the queue lifetime fails for good.
    let expired =
        now.saturating_sub(entry.received_at_ms) >= config.delivery.queue_lifetime_secs * 1000;
    if expired {
        for (i, state) in entry.recipients.iter_mut().enumerate() {
            if let RecipientStatus::Deferred { reason } = &state.status {
                let reason = format!(
                    "message expired after {} s in the queue; last error: {reason}",
                    config.delivery.queue_lifetime_secs
                );
                expire(queue, queue_id, &sender, i, state, reason, &mut failed);
            }
        }
    }
    // Deferred for longer than the warning time: tell the sender once (RFC 3464 delayed).
    let warn_after_ms = config.delivery.delay_warning_secs.saturating_mul(1000);
    if warn_after_ms > 0
        && !entry.delay_notified
        && now.saturating_sub(entry.received_at_ms) >= warn_after_ms
    {
        let mut any = false;
        for (i, state) in entry.recipients.iter().enumerate() {
            if let RecipientStatus::Deferred { reason } = &state.status {
                delayed.push((i, format!("still trying to deliver: {reason}")));
                any = true;
            }
        }
        entry.delay_notified = any;
    }
    // A lost delay notice is not worth holding the message for.
    let delayed: Vec<(usize, String, String)> = delayed
        .into_iter()
        .map(|(i, reason)| (i, reason, String::new()))
        .collect();
    let _ = send_report(
        queue,
        config,
        &message,
        &sender,
        ReportAction::Delayed,
        &delayed,
    )
    .await;
    if send_report(
        queue,
        config,
        &message,
        &sender,
        ReportAction::Failed,
        &failed,
    )
    .await
    .is_err()
    {
        // Keep the message so the failure notice is not lost; retry later.
        for (i, _, _) in &failed {
            if let Some(state) = entry.recipients.get_mut(*i) {
                state.status = RecipientStatus::Deferred {
                    reason: "failure notice pending".into(),
                };
            }
        }
    }
    if entry.has_pending() {
        entry.next_attempt_ms = now + backoff(config, entry.attempts);
        if let Err(e) = queue.state().put(&entry) {
            tracing::error!(queue_id, error = %e, "queue state not written");
        }
        Some(entry.next_attempt_ms)
    } else if entry.is_open() {
        // Only held or quarantined recipients left: wake up when the first expires.
        entry.next_attempt_ms = entry
            .recipients
            .iter()
            .filter_map(|r| r.status.waiting_since_ms())
            .min()
            .unwrap_or(now)
            .saturating_add(config.delivery.hold_lifetime_secs.saturating_mul(1000));
        if let Err(e) = queue.state().put(&entry) {
            tracing::error!(queue_id, error = %e, "queue state not written");
        }
        Some(entry.next_attempt_ms)
    } else {
        // Done: state first (so a crash re-finds a finished entry and removes
        // the file), then the file, then the state.
        let _ = queue.state().put(&entry);
        if let Err(e) = queue.spool().remove(queue_id) {
            tracing::warn!(queue_id, error = %e, "spool file not removed; it will be cleaned up at start-up");
        }
        let _ = queue.state().remove(queue_id);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let mut c = Config::default();
        c.delivery.retry_initial_secs = 60;
        c.delivery.retry_max_secs = 3600;
        assert_eq!(backoff(&c, 1), 60_000);
        assert_eq!(backoff(&c, 2), 120_000);
        assert_eq!(backoff(&c, 3), 240_000);
        assert_eq!(backoff(&c, 30), 3_600_000);
    }
}
