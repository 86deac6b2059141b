//! The scheduler: one task that knows when each queued message is due,
//! starts deliveries up to the concurrency limit, applies the results to the
//! queue state, retries with exponential backoff, and bounces what expires.
//!
//! One message is handled by at most one attempt at a time; administrative
//! requests (retry, release, delete) go through this loop so they never
//! race an attempt in flight.
//!
//! An attempt ([`attempt`]) reads in the order of what happens: read the
//! message and its state; end what waited too long; ask the pipeline for a
//! guarded plan; apply it (holds, quarantines, refusals, invitations);
//! deliver the copies; expire what ran out of time; send the notices; store
//! the state and say when it is due again. Every change of a recipient's
//! status goes through one [`Ledger`], which writes the tracking event with
//! it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use sealgate_api::ServiceError;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::delivery::{Deliverer, Outcome};
use crate::envelope::now_ms;
use crate::pipeline::{self, Disposition};
use crate::reason::Reason;
use crate::tracking::{Direction, EventKind, Tracker};

use super::dsn::{self, ReportAction, ReportedRecipient};
use super::spool::{SpoolReadError, SpooledMessage};
use super::state::{QueueEntry, RecipientState, RecipientStatus};
use super::{Queue, SchedulerRequest};
use crate::envelope::QueueId;

/// Runs the scheduler until the request channel closes. Each attempt
/// takes the settings version and the key store in force when it starts.
pub async fn run(
    queue: Queue,
    live: Arc<crate::settings::Live>,
    keys: crate::keys::Keys,
    deliverer: Arc<Deliverer>,
    trust: Arc<crate::trust::services::Services>,
    mut requests: mpsc::UnboundedReceiver<SchedulerRequest>,
    initial: Vec<(u64, QueueId)>,
) {
    let mut due: BinaryHeap<Reverse<(u64, QueueId)>> = initial.into_iter().map(Reverse).collect();
    let mut in_flight: HashSet<QueueId> = HashSet::new();
    // Releases that came while their message was in flight: the attempt
    // holds the message's state until it ends, so they are applied then
    // (or a key that arrived during the attempt would release nothing).
    let mut missed: HashMap<QueueId, Missed> = HashMap::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(QueueId, Option<u64>)>();
    loop {
        let now = now_ms();
        let concurrency = live.get().config.delivery.concurrency;
        // Start everything that is due, as far as the concurrency allows.
        while let Some(Reverse((when, _))) = due.peek() {
            if *when > now || in_flight.len() >= concurrency {
                break;
            }
            let Some(Reverse((_, queue_id))) = due.pop() else {
                break;
            };
            if !in_flight.insert(queue_id.clone()) {
                continue;
            }
            let queue = queue.clone();
            let runtime = live.get();
            let keys = keys.current();
            let deliverer = deliverer.clone();
            let trust = trust.clone();
            let done = done_tx.clone();
            tokio::spawn(async move {
                let context = pipeline::Context {
                    config: &runtime.config,
                    policy: &runtime.policy,
                    directory: queue.directory(),
                    keys: &keys,
                    trust: &trust,
                    portal_accounts: Some(&queue.portal().accounts),
                };
                let next = attempt(&queue, &context, runtime.version, &deliverer, &queue_id).await;
                let _ = done.send((queue_id, next));
            });
        }
        let sleep_for = match due.peek() {
            Some(Reverse((when, _))) if in_flight.len() < concurrency => {
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
                        Ok(_) => Err(crate::service::queue::not_queued(&id)),
                        Err(e) => Err(crate::service::storage(e)),
                    };
                    let _ = reply.send(result);
                }
                Some(SchedulerRequest::Release(id, reply)) => {
                    let result = if in_flight.contains(&id) {
                        Err(busy(&id))
                    } else {
                        release(&queue, &id).map(|()| due.push(Reverse((now_ms(), id))))
                    };
                    let _ = reply.send(result);
                }
                Some(SchedulerRequest::DirectoryChanged) => {
                    let runtime = live.get();
                    // Directory reads may go to the cluster database.
                    let released = tokio::task::block_in_place(|| {
                        release_where_keys_exist(&queue, &runtime.policy, &in_flight, None)
                    });
                    for id in &in_flight {
                        missed.entry(id.clone()).or_default().directory = true;
                    }
                    match released {
                        Ok(ids) => due.extend(ids.into_iter().map(|id| Reverse((now_ms(), id)))),
                        Err(e) => tracing::error!(error = %e, "queue state not readable: held mail is not looked at after a directory change"),
                    }
                }
                Some(SchedulerRequest::KeysArrived(addresses)) => {
                    for id in &in_flight {
                        missed.entry(id.clone()).or_default().keys.extend(addresses.iter().cloned());
                    }
                    match release_held_for(&queue, &addresses, &in_flight, None) {
                        Ok(ids) => due.extend(ids.into_iter().map(|id| Reverse((now_ms(), id)))),
                        Err(e) => tracing::error!(error = %e, ?addresses, "queue state not readable: held mail for these addresses is not released"),
                    }
                }
                Some(SchedulerRequest::Delete(id, reply)) => {
                    let result = if in_flight.contains(&id) {
                        Err(busy(&id))
                    } else {
                        delete(&queue, &id)
                    };
                    let _ = reply.send(result);
                }
            },
            Some((id, next)) = done_rx.recv() => {
                in_flight.remove(&id);
                if let Some(when) = next {
                    due.push(Reverse((when, id.clone())));
                }
                if let Some(late) = missed.remove(&id) {
                    let runtime = live.get();
                    let released = tokio::task::block_in_place(|| late.apply(&queue, &runtime.policy, &in_flight, &id));
                    match released {
                        Ok(ids) => due.extend(ids.into_iter().map(|id| Reverse((now_ms(), id)))),
                        Err(e) => tracing::error!(error = %e, queue_id = %id, "queue state not readable: keys that arrived during an attempt release nothing"),
                    }
                }
            }
            () = tokio::time::sleep(sleep_for) => {}
        }
    }
}

/// Keys that arrived (by address, or "somewhere in the directory") while
/// a message was in flight.
#[derive(Default)]
struct Missed {
    keys: Vec<String>,
    directory: bool,
}

impl Missed {
    /// Releases what these arrivals release in message `id`, now that its
    /// attempt is over.
    fn apply(
        &self,
        queue: &Queue,
        policy: &crate::policy::Policy,
        in_flight: &HashSet<QueueId>,
        id: &QueueId,
    ) -> sled::Result<Vec<QueueId>> {
        let mut released = Vec::new();
        if !self.keys.is_empty() {
            released.extend(release_held_for(queue, &self.keys, in_flight, Some(id))?);
        }
        if self.directory {
            released.extend(release_where_keys_exist(
                queue,
                policy,
                in_flight,
                Some(id),
            )?);
        }
        released.dedup();
        Ok(released)
    }
}

fn busy(id: &QueueId) -> ServiceError {
    ServiceError::Busy {
        what: format!("{id}: a delivery is in progress; try again in a moment"),
    }
}

/// Applies status changes to a queue entry, each with its tracking event
/// (under the settings version of the work): the one place that does.
struct Ledger<'a> {
    entry: &'a mut QueueEntry,
    tracker: Tracker,
    sender: String,
}

impl<'a> Ledger<'a> {
    fn new(entry: &'a mut QueueEntry, tracker: Tracker) -> Ledger<'a> {
        let sender = entry.sender_text();
        Ledger {
            entry,
            tracker,
            sender,
        }
    }

    fn recipient(&self, index: usize) -> Option<&RecipientState> {
        self.entry.recipients.get(index)
    }

    /// Sets recipient `index` to `status` and records what happened (by
    /// `remote`: the next hop, `policy`, `local`, …).
    fn set(&mut self, index: usize, status: RecipientStatus, remote: &str) {
        let Some(state) = self.entry.recipients.get_mut(index) else {
            return;
        };
        let (kind, detail) = match &status {
            RecipientStatus::Scheduled => (EventKind::Released, String::new()),
            RecipientStatus::Deferred { reason } => (EventKind::Deferred, reason.text()),
            RecipientStatus::Delivered { reply } => (EventKind::Delivered, reply.clone()),
            RecipientStatus::Bounced { reason } => match reason {
                Reason::WaitedTooLong { .. } | Reason::Expired { .. } => {
                    (EventKind::Expired, reason.text())
                }
                _ => (EventKind::Bounced, reason.text()),
            },
            RecipientStatus::Deleted => (EventKind::Deleted, "deleted by administrator".into()),
            RecipientStatus::Held { reason, .. } => (EventKind::Held, reason.text()),
            RecipientStatus::Quarantined { reason, .. } => (EventKind::Quarantined, reason.text()),
        };
        self.tracker.record(
            self.entry.queue_id.as_str(),
            kind,
            Direction::Out,
            &self.sender,
            &state.recipient.address.to_string(),
            remote,
            &detail,
        );
        state.status = status;
    }

    /// Records an event that changes no status (the policy's decision, an
    /// invitation, a release with its own words).
    fn note(&self, index: usize, kind: EventKind, remote: &str, detail: &str) {
        if let Some(state) = self.entry.recipients.get(index) {
            self.tracker.record(
                self.entry.queue_id.as_str(),
                kind,
                Direction::Out,
                &self.sender,
                &state.recipient.address.to_string(),
                remote,
                detail,
            );
        }
    }
}

/// What an attempt owes the sender: recipients to report as failed (with
/// the host that refused, if any) or delayed (with why).
#[derive(Default)]
struct Notices {
    failed: Vec<(usize, String)>,
    delayed: Vec<(usize, Reason)>,
}

/// Removes a message from the queue on an administrator's request (the
/// scheduler's loop, or the CLI when the daemon is stopped).
pub(crate) fn delete(queue: &Queue, queue_id: &QueueId) -> Result<(), ServiceError> {
    let mut entry = queue
        .state()
        .get(queue_id)
        .map_err(crate::service::storage)?
        .ok_or_else(|| crate::service::queue::not_queued(queue_id))?;
    let mut ledger = Ledger::new(&mut entry, queue.tracker().clone());
    for i in 0..ledger.entry.recipients.len() {
        if ledger
            .recipient(i)
            .is_some_and(|r| r.status.is_pending() || r.status.is_waiting())
        {
            ledger.set(i, RecipientStatus::Deleted, "local");
        }
    }
    match queue.spool().remove(queue_id) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(ServiceError::failed(format!(
                "{queue_id}: spool file not removed: {e}"
            )));
        }
    }
    queue
        .state()
        .remove(queue_id)
        .map_err(crate::service::storage)
}

/// Puts held and quarantined recipients back to scheduled (the policy and
/// the methods are looked at again on the next attempt, which is due now).
pub(crate) fn release(queue: &Queue, queue_id: &QueueId) -> Result<(), ServiceError> {
    let mut entry = queue
        .state()
        .get(queue_id)
        .map_err(crate::service::storage)?
        .ok_or_else(|| crate::service::queue::not_queued(queue_id))?;
    let ledger = Ledger::new(&mut entry, queue.tracker().clone());
    let mut released = 0;
    for i in 0..ledger.entry.recipients.len() {
        let Some(status) = ledger.recipient(i).map(|r| r.status.clone()) else {
            continue;
        };
        if !status.is_waiting() {
            continue;
        }
        if let (RecipientStatus::Quarantined { .. }, Some(r)) =
            (&status, ledger.entry.recipients.get_mut(i))
        {
            r.quarantine_lifted = true;
        }
        ledger.note(i, EventKind::Released, "local", "released by administrator");
        if let Some(r) = ledger.entry.recipients.get_mut(i) {
            r.status = RecipientStatus::Scheduled;
        }
        released += 1;
    }
    if released == 0 {
        return Err(ServiceError::invalid(
            "id",
            format!("{queue_id}: nothing is held or quarantined"),
        ));
    }
    entry.next_attempt_ms = 0;
    queue.state().put(&entry).map_err(crate::service::storage)
}

/// Releases held recipients whose address (or `@domain`) is in `keys`:
/// a certificate or key for them has just arrived. Messages with a delivery
/// in flight are skipped (they are decided again by that delivery).
/// Returns the queue ids to try now.
pub(crate) fn release_held_for(
    queue: &Queue,
    keys: &[String],
    in_flight: &HashSet<QueueId>,
    only: Option<&QueueId>,
) -> sled::Result<Vec<QueueId>> {
    let wanted = |address: &str, _: &Reason| {
        let address = address.to_ascii_lowercase();
        let domain = address
            .rsplit_once('@')
            .map(|(_, d)| format!("@{d}"))
            .unwrap_or_default();
        keys.iter()
            .any(|k| k.eq_ignore_ascii_case(&address) || k.eq_ignore_ascii_case(&domain))
    };
    release_held_where(queue, in_flight, only, wanted)
}

/// Releases the recipients held for want of a key (`NoKey`) for whom the
/// directory now has a key trusted at least as much as the policy in
/// force requires for them (the same test harvesting applies): after a
/// directory change made elsewhere, which names no addresses here. The
/// pipeline decides again for each; nothing is sent on this test alone.
pub(crate) fn release_where_keys_exist(
    queue: &Queue,
    policy: &crate::policy::Policy,
    in_flight: &HashSet<QueueId>,
    only: Option<&QueueId>,
) -> sled::Result<Vec<QueueId>> {
    use crate::directory::Kind;
    let now = now_ms();
    let wanted = |address: &str, reason: &Reason| {
        matches!(reason, Reason::NoKey { .. })
            && queue
                .directory()
                .best_for(
                    address,
                    &[Kind::Smime, Kind::Openpgp],
                    now,
                    crate::policy::decide::required_trust(policy, address),
                )
                .is_ok_and(|found| found.is_some())
    };
    release_held_where(queue, in_flight, only, wanted)
}

/// Releases every held recipient (of messages not in flight; of message
/// `only`, if given) for which `wanted(address, hold reason)` says so,
/// with a `released` event.
fn release_held_where(
    queue: &Queue,
    in_flight: &HashSet<QueueId>,
    only: Option<&QueueId>,
    wanted: impl Fn(&str, &Reason) -> bool,
) -> sled::Result<Vec<QueueId>> {
    let mut released = Vec::new();
    let entries = match only {
        Some(id) => queue.state().get(id)?.into_iter().collect(),
        None => queue.state().all()?,
    };
    for mut entry in entries {
        if in_flight.contains(&entry.queue_id) {
            continue;
        }
        let ledger = Ledger::new(&mut entry, queue.tracker().clone());
        let mut changed = false;
        for i in 0..ledger.entry.recipients.len() {
            let Some(r) = ledger.recipient(i) else {
                continue;
            };
            let held_for = match &r.status {
                RecipientStatus::Held { reason, .. } => Some(reason),
                _ => None,
            };
            if held_for.is_some_and(|reason| wanted(&r.recipient.address.to_string(), reason)) {
                ledger.note(
                    i,
                    EventKind::Released,
                    "directory",
                    "a certificate or key for this recipient arrived",
                );
                if let Some(r) = ledger.entry.recipients.get_mut(i) {
                    r.status = RecipientStatus::Scheduled;
                }
                changed = true;
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
    version: u64,
    deliverer: &Deliverer,
    queue_id: &QueueId,
) -> Option<u64> {
    let config = context.config;
    let (message, mut entry) = match read(queue, queue_id) {
        Ok(read) => read,
        Err(next) => return next,
    };
    entry.attempts += 1;
    let now = now_ms();
    let mut notices = Notices::default();
    let mut ledger = Ledger::new(&mut entry, queue.tracker().with_version(version));
    end_overdue_waits(&mut ledger, config, now, &mut notices);
    let pending = indices(ledger.entry, |r| r.status.is_pending());
    let lifted = indices(ledger.entry, |r| r.quarantine_lifted);
    // The pipeline may wait on the token (decryption): keep the runtime's other tasks going.
    let planned = tokio::task::block_in_place(|| {
        pipeline::process(
            &message.envelope,
            &message.content,
            queue_id.as_str(),
            &pending,
            &lifted,
            context,
        )
    });
    match planned {
        Ok(plan) => {
            apply_plan(
                queue,
                context,
                &message,
                &mut ledger,
                plan,
                now,
                &mut notices,
                deliverer,
            )
            .await;
        }
        Err(reason) if reason.is_temporary() => {
            for &i in &pending {
                ledger.set(
                    i,
                    RecipientStatus::Deferred {
                        reason: reason.clone(),
                    },
                    "pipeline",
                );
            }
        }
        Err(reason) => {
            for &i in &pending {
                refuse(
                    &mut ledger,
                    config,
                    &message,
                    i,
                    reason.clone(),
                    "pipeline",
                    &mut notices,
                );
            }
        }
    }
    expire_overdue(&mut ledger, config, now, &mut notices);
    warn_of_delay(ledger.entry, config, now, &mut notices);
    send_notices(queue, config, &message, &mut ledger, notices).await;
    store(queue, config, entry, now)
}

/// The spool file and its state (a new state when it was lost); `Err`
/// says when the message is due again, if ever.
fn read(queue: &Queue, queue_id: &QueueId) -> Result<(SpooledMessage, QueueEntry), Option<u64>> {
    let message = match queue.spool().read(queue_id) {
        Ok(m) => m,
        Err(SpoolReadError::Damaged(why)) => {
            tracing::error!(
                queue_id = %queue_id,
                reason = why,
                "damaged spool file moved to corrupt/"
            );
            let _ = queue.spool().quarantine(queue_id);
            return Err(None);
        }
        // Deleted meanwhile (administrator) or already finished.
        Err(SpoolReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return Err(None),
        Err(SpoolReadError::Io(e)) => {
            tracing::error!(queue_id = %queue_id, error = %e, "spool file unreadable; will retry");
            return Err(Some(now_ms() + 60_000));
        }
    };
    let entry = match queue.state().get(queue_id) {
        Ok(Some(entry)) => entry,
        _ => QueueEntry::new(queue_id, &message.envelope, message.content.len() as u64),
    };
    Ok((message, entry))
}

fn indices(entry: &QueueEntry, wanted: impl Fn(&RecipientState) -> bool) -> Vec<usize> {
    entry
        .recipients
        .iter()
        .enumerate()
        .filter(|(_, r)| wanted(r))
        .map(|(i, _)| i)
        .collect()
}

/// Held and quarantined recipients waiting longer than the hold lifetime
/// fail for good (the sender gets a failure notice).
fn end_overdue_waits(ledger: &mut Ledger<'_>, config: &Config, now: u64, notices: &mut Notices) {
    let lifetime_ms = config.delivery.hold_lifetime_secs.saturating_mul(1000);
    for i in 0..ledger.entry.recipients.len() {
        let Some(
            RecipientStatus::Held { reason, since_ms }
            | RecipientStatus::Quarantined { reason, since_ms },
        ) = ledger.recipient(i).map(|r| r.status.clone())
        else {
            continue;
        };
        if now.saturating_sub(since_ms) < lifetime_ms {
            continue;
        }
        let reason = Reason::WaitedTooLong {
            secs: config.delivery.hold_lifetime_secs,
            reason: Box::new(reason),
        };
        ledger.set(i, RecipientStatus::Bounced { reason }, "local");
        notices.failed.push((i, String::new()));
    }
}

/// What the gateway itself cannot deliver (policy refusal, a message that
/// cannot be processed): bounced with a notice to the sender, or, for mail
/// from outside, quarantined for an administrator (no notice: the sender
/// is not verified).
fn refuse(
    ledger: &mut Ledger<'_>,
    config: &Config,
    message: &SpooledMessage,
    index: usize,
    reason: Reason,
    by: &str,
    notices: &mut Notices,
) {
    if sender_verified(config, &message.envelope) {
        ledger.set(index, RecipientStatus::Bounced { reason }, by);
        notices.failed.push((index, String::new()));
    } else {
        let reason = Reason::Quarantined {
            explanation: format!(
                "{}; quarantined instead of bounced: the message came from outside and its sender is not verified",
                reason.text()
            ),
        };
        ledger.set(
            index,
            RecipientStatus::Quarantined {
                reason,
                since_ms: now_ms(),
            },
            by,
        );
    }
}

/// Applies a guarded plan: explanations, refusals, holds and quarantines,
/// invitations, then the deliveries of its copies.
#[allow(clippy::too_many_arguments)] // one attempt's parts, each used once
async fn apply_plan(
    queue: &Queue,
    context: &pipeline::Context<'_>,
    message: &SpooledMessage,
    ledger: &mut Ledger<'_>,
    plan: pipeline::Plan,
    now: u64,
    notices: &mut Notices,
    deliverer: &Deliverer,
) {
    let config = context.config;
    if !plan.harvested.is_empty() {
        // Keys that came with this message: mail held for their owners is
        // decided again (as after `directory import`).
        let _ = queue.request(SchedulerRequest::KeysArrived(plan.harvested.clone()));
    }
    for (i, text) in &plan.explanations {
        ledger.note(*i, EventKind::Policy, "policy", text);
    }
    let mut newly_held = Vec::new();
    for (i, disposition) in plan.dispositions {
        match disposition {
            Disposition::Send { .. } => {}
            Disposition::Portal { copy } => {
                let Some(portal_copy) = plan.portal.get(copy) else {
                    continue;
                };
                deliver_to_portal(queue, config, deliverer, message, ledger, (i, portal_copy))
                    .await;
            }
            Disposition::Refuse(reason) => {
                refuse(ledger, config, message, i, reason, "policy", notices)
            }
            Disposition::Hold(reason) => {
                // A key lookup is a short wait: no notice. A review asks the
                // administrator, not the recipient: no invitation.
                let lookup = matches!(reason, Reason::KeyLookup { .. });
                if let Some(r) = ledger.entry.recipients.get_mut(i)
                    && !r.hold_notified
                    && !lookup
                {
                    r.hold_notified = true;
                    notices.delayed.push((i, reason.clone()));
                    if !matches!(reason, Reason::KeyReview { .. }) {
                        newly_held.push(i);
                    }
                }
                ledger.set(
                    i,
                    RecipientStatus::Held {
                        reason,
                        since_ms: now,
                    },
                    "policy",
                );
            }
            Disposition::Quarantine(reason) => ledger.set(
                i,
                RecipientStatus::Quarantined {
                    reason,
                    since_ms: now,
                },
                "policy",
            ),
        }
    }
    if config.invitations.enabled {
        send_invitations(queue, context, message, ledger, &newly_held).await;
    }
    for copy in plan.copies.iter().filter(|c| !c.recipients.is_empty()) {
        let recipients: Vec<_> = copy
            .recipients
            .iter()
            .filter_map(|&i| message.envelope.recipients.get(i).map(|r| (i, r)))
            .collect();
        let results = deliverer
            .deliver(config, &message.envelope, &recipients, &copy.content)
            .await;
        for result in results {
            if let Some(r) = ledger.entry.recipients.get_mut(result.index) {
                r.attempts += 1;
            }
            match result.outcome {
                Outcome::Delivered(reply) => ledger.set(
                    result.index,
                    RecipientStatus::Delivered { reply },
                    &result.remote,
                ),
                Outcome::Deferred(reason) => ledger.set(
                    result.index,
                    RecipientStatus::Deferred { reason },
                    &result.remote,
                ),
                Outcome::Bounced(reason) => {
                    ledger.set(
                        result.index,
                        RecipientStatus::Bounced { reason },
                        &result.remote,
                    );
                    notices.failed.push((result.index, result.remote));
                }
            }
        }
    }
}

/// Serves recipient `i` by the portal (pull: stored here; push: sealed
/// into the notification) and notifies them: the recipient is then
/// delivered (remote `portal`). A token or storage outage defers; nothing
/// is sent in clear either way.
async fn deliver_to_portal(
    queue: &Queue,
    config: &Config,
    deliverer: &Deliverer,
    message: &SpooledMessage,
    ledger: &mut Ledger<'_>,
    (i, copy): (usize, &pipeline::PortalCopy),
) {
    let stored = crate::portal::service::deliver(
        queue,
        config,
        &message.envelope,
        message.queue_id.as_str(),
        (i, copy.method),
        &copy.content,
    )
    .await;
    let status = match stored {
        Ok((done, notification)) => {
            let notice = notify(queue, config, deliverer, &message.queue_id, notification).await;
            RecipientStatus::Delivered {
                reply: format!("{done}; {notice}"),
            }
        }
        Err(e) => {
            let detail = format!("portal: {e}");
            RecipientStatus::Deferred {
                reason: match e {
                    // A full mailbox waits like one at any other next hop.
                    crate::portal::PortalError::OverQuota { .. } => Reason::MailboxFull { detail },
                    // The token or the store is away (or, never seen, a
                    // store that cannot seal): try again later, never
                    // anything in clear.
                    _ => Reason::KeyStoreUnavailable { detail },
                },
            }
        }
    };
    ledger.set(i, status, "portal");
}

/// Sends a portal notification (the gateway's own notice, written for one
/// recipient) to its next hop now, in the step that stored the message:
/// one durable write fewer than queuing it and a second pass through the
/// queue. Queued when the next hop defers, so the queue retries it like
/// any mail. Answers what tracking records of it.
async fn notify(
    queue: &Queue,
    config: &Config,
    deliverer: &Deliverer,
    queue_id: &QueueId,
    (envelope, mail): (crate::envelope::Envelope, Vec<u8>),
) -> String {
    let Some(to) = envelope.recipients.first() else {
        return "no notification".to_owned();
    };
    let result = deliverer
        .deliver(config, &envelope, &[(0, to)], &mail)
        .await
        .into_iter()
        .next();
    let deferred = match result.map(|r| (r.outcome, r.remote)) {
        Some((Outcome::Delivered(reply), remote)) => {
            return format!("notification delivered to {remote}: {reply}");
        }
        Some((Outcome::Bounced(reason), remote)) => {
            // A null sender: a bounce would reach no one, and the next
            // attempt would be refused the same way.
            tracing::warn!(%queue_id, %remote, %reason, "portal notification refused");
            return format!("notification refused by {remote}: {reason}");
        }
        Some((Outcome::Deferred(reason), _)) => reason.to_string(),
        None => "no delivery result".to_owned(),
    };
    match queue.inject(&envelope, &mail).await {
        Ok(id) => format!("notification queued as {id} ({deferred})"),
        Err(e) => {
            tracing::warn!(%queue_id, error = %e, "portal notification not queued");
            format!("notification not sent ({deferred}) and not queued")
        }
    }
}

/// What is still pending after the queue lifetime fails for good.
fn expire_overdue(ledger: &mut Ledger<'_>, config: &Config, now: u64, notices: &mut Notices) {
    let lifetime_ms = config.delivery.queue_lifetime_secs.saturating_mul(1000);
    if now.saturating_sub(ledger.entry.received_at_ms) < lifetime_ms {
        return;
    }
    for i in 0..ledger.entry.recipients.len() {
        let Some(RecipientStatus::Deferred { reason }) =
            ledger.recipient(i).map(|r| r.status.clone())
        else {
            continue;
        };
        let reason = Reason::Expired {
            secs: config.delivery.queue_lifetime_secs,
            last: Box::new(reason),
        };
        ledger.set(i, RecipientStatus::Bounced { reason }, "local");
        notices.failed.push((i, String::new()));
    }
}

/// Deferred for longer than the warning time: the sender is told once
/// (RFC 3464 delayed).
fn warn_of_delay(entry: &mut QueueEntry, config: &Config, now: u64, notices: &mut Notices) {
    let warn_after_ms = config.delivery.delay_warning_secs.saturating_mul(1000);
    if warn_after_ms == 0
        || entry.delay_notified
        || now.saturating_sub(entry.received_at_ms) < warn_after_ms
    {
        return;
    }
    let before = notices.delayed.len();
    for (i, r) in entry.recipients.iter().enumerate() {
        if let RecipientStatus::Deferred { reason } = &r.status {
            notices.delayed.push((i, reason.clone()));
        }
    }
    entry.delay_notified = notices.delayed.len() > before;
}

/// Sends the delay and failure notices this attempt owes. A failure notice
/// that cannot be queued keeps its recipients deferred, so it is not lost.
async fn send_notices(
    queue: &Queue,
    config: &Config,
    message: &SpooledMessage,
    ledger: &mut Ledger<'_>,
    notices: Notices,
) {
    // A lost delay notice is not worth holding the message for.
    let delayed: Vec<(usize, Reason, String)> = notices
        .delayed
        .into_iter()
        .map(|(i, reason)| (i, reason, String::new()))
        .collect();
    let _ = send_report(
        queue,
        config,
        message,
        ledger,
        ReportAction::Delayed,
        &delayed,
    )
    .await;
    let failed: Vec<(usize, Reason, String)> = notices
        .failed
        .into_iter()
        .filter_map(|(i, remote)| match &ledger.recipient(i)?.status {
            RecipientStatus::Bounced { reason } => Some((i, reason.clone(), remote)),
            _ => None,
        })
        .collect();
    if send_report(
        queue,
        config,
        message,
        ledger,
        ReportAction::Failed,
        &failed,
    )
    .await
    .is_err()
    {
        for (i, _, _) in &failed {
            ledger.set(
                *i,
                RecipientStatus::Deferred {
                    reason: Reason::local("failure notice pending"),
                },
                "local",
            );
        }
    }
}

/// Stores the state after an attempt and says when the message is due
/// again: soon (retries), when the first held recipient's hold expires, or
/// never (done: the state first, so a crash re-finds a finished entry and
/// removes the file, then the file, then the state).
fn store(queue: &Queue, config: &Config, mut entry: QueueEntry, now: u64) -> Option<u64> {
    let queue_id = entry.queue_id.clone();
    if entry.has_pending() {
        entry.next_attempt_ms = now + backoff(config, entry.attempts);
    } else if entry.is_open() {
        // Only held or quarantined recipients left: wake up when the first expires.
        entry.next_attempt_ms = entry
            .recipients
            .iter()
            .filter_map(|r| r.status.waiting_since_ms())
            .min()
            .unwrap_or(now)
            .saturating_add(config.delivery.hold_lifetime_secs.saturating_mul(1000));
    } else {
        // Done: the file goes once this state (and what the delivery
        // wrote, such as a portal copy) is durable.
        let _ = queue.state().put(&entry);
        queue.reaper().finished(queue_id);
        return None;
    }
    if let Err(e) = queue.state().put(&entry) {
        tracing::error!(queue_id = %queue_id, error = %e, "queue state not written");
    }
    Some(entry.next_attempt_ms)
}

/// Invites each newly held recipient of `message` to provide a certificate
/// or key, at most once per recipient per `invitations.resend_after_secs`.
/// Best effort: an invitation that cannot be written or queued now is
/// tried again when the next message for that recipient is held.
async fn send_invitations(
    queue: &Queue,
    context: &pipeline::Context<'_>,
    message: &SpooledMessage,
    ledger: &Ledger<'_>,
    newly_held: &[usize],
) {
    // Mail from the null sender (a notice) has nobody to name.
    let Some(sender) = message.envelope.sender.as_ref() else {
        return;
    };
    let config = context.config;
    let every_ms = config.invitations.resend_after_secs.saturating_mul(1000);
    let queue_id = message.queue_id.as_str();
    for &i in newly_held {
        let Some(recipient) = message.envelope.recipients.get(i) else {
            continue;
        };
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
            Ok((id, carries)) => ledger.note(
                i,
                EventKind::Invited,
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

/// Sends the sender one RFC 3464 report about `items` (recipient index and
/// reason) with `action`, through the queue, and records it. `Ok` when
/// there was nothing to send, no report is due (`<>`, NOTIFY, an
/// unverified sender), or it was queued; `Err` when it could not be queued.
async fn send_report(
    queue: &Queue,
    config: &Config,
    message: &SpooledMessage,
    ledger: &Ledger<'_>,
    action: ReportAction,
    items: &[(usize, Reason, String)],
) -> Result<(), ()> {
    let queue_id = message.queue_id.as_str();
    if items.is_empty() {
        return Ok(());
    }
    if !sender_verified(config, &message.envelope) {
        // A notice to an address nobody verified is backscatter: anyone
        // can put a victim's address in MAIL FROM.
        tracing::info!(
            queue_id,
            sender = %message.envelope.sender_text(),
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
            ledger.tracker.record(
                queue_id,
                EventKind::DsnSent,
                Direction::Out,
                &ledger.sender,
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
