//! Start-up reconciliation of spool files and sled state.
//!
//! The spool is the truth about what was accepted. A file with no state is
//! re-queued (every recipient scheduled: at-least-once, so a duplicate is
//! possible, a loss is not). A file whose state says every recipient is done
//! is removed. A damaged file goes to `corrupt/` and is reported.
//!
//! State with no file is reported (log and tracking event), then removed: a
//! spool file is written before its state and removed only once every
//! recipient is delivered, bounced or deleted, so a pending entry without a
//! file is one whose final state update was lost with sled's unflushed
//! writes in a crash (sled flushes every 200 ms). Keeping it would show a
//! message that no longer exists and never let the queue drain.

use crate::envelope::now_ms;
use crate::tracking::{Direction, EventKind};

use super::Queue;
use super::spool::SpoolReadError;
use super::state::QueueEntry;
use crate::envelope::QueueId;

/// What reconciliation found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// (due time, queue id) of every message to schedule.
    pub scheduled: Vec<(u64, QueueId)>,
    pub requeued_without_state: usize,
    pub removed_done: usize,
    pub quarantined: usize,
    pub state_without_file: Vec<QueueId>,
}

/// Reconciles spool and state; returns what to schedule.
pub fn reconcile(queue: &Queue) -> std::io::Result<Recovery> {
    let mut recovery = Recovery::default();
    let spool = queue.spool();
    let state = queue.state();
    let files = spool.list()?;
    let now = now_ms();
    for queue_id in &files {
        match state.get(queue_id) {
            Ok(Some(entry)) if entry.is_open() => {
                recovery
                    .scheduled
                    .push((entry.next_attempt_ms.min(now), queue_id.clone()));
            }
            Ok(Some(_done)) => {
                let _ = spool.remove(queue_id);
                let _ = state.remove(queue_id);
                recovery.removed_done += 1;
            }
            Ok(None) | Err(_) => match spool.read(queue_id) {
                Ok(message) => {
                    let size = message.content.len() as u64;
                    let entry = QueueEntry::new(queue_id, &message.envelope, size);
                    if let Err(e) = state.put(&entry) {
                        tracing::error!(queue_id = %queue_id, error = %e, "queue state not written during recovery");
                    }
                    recovery.scheduled.push((now, queue_id.clone()));
                    recovery.requeued_without_state += 1;
                }
                Err(SpoolReadError::Damaged(why)) => {
                    tracing::error!(
                        queue_id = %queue_id,
                        reason = why,
                        "damaged spool file moved to corrupt/"
                    );
                    let _ = spool.quarantine(queue_id);
                    queue.tracker().record(
                        queue_id.as_str(),
                        EventKind::Deferred,
                        Direction::In,
                        "",
                        "",
                        "local",
                        &format!("spool file damaged ({why}); moved to corrupt/"),
                    );
                    recovery.quarantined += 1;
                }
                Err(SpoolReadError::Io(e)) => {
                    tracing::error!(queue_id = %queue_id, error = %e, "spool file unreadable; will retry");
                    recovery.scheduled.push((now + 60_000, queue_id.clone()));
                }
            },
        }
    }
    recovery.state_without_file = drop_ghosts(queue)?;
    tracing::info!(
        scheduled = recovery.scheduled.len(),
        requeued_without_state = recovery.requeued_without_state,
        removed_done = recovery.removed_done,
        quarantined = recovery.quarantined,
        state_without_file = recovery.state_without_file.len(),
        "queue reconciled"
    );
    Ok(recovery)
}

/// Removes queue state whose spool file is gone: a message that finished
/// (or was deleted) while a crash or a storage failure lost the state's
/// last update. Each is reported (log and tracking event). Safe while the
/// daemon runs: the state is read before the files are listed, and a file
/// is always written before its state and removed before it, so a state
/// entry read here without a file in the later listing has finished.
pub fn drop_ghosts(queue: &Queue) -> std::io::Result<Vec<QueueId>> {
    let entries = queue.state().all().map_err(std::io::Error::other)?;
    let files: std::collections::HashSet<QueueId> = queue.spool().list()?.into_iter().collect();
    let mut dropped = Vec::new();
    for entry in entries {
        if files.contains(&entry.queue_id) {
            continue;
        }
        if entry.is_open() {
            tracing::warn!(
                queue_id = %entry.queue_id,
                sender = %entry.sender_text(),
                "queue state has no spool file: the message finished before its last state update was lost; entry removed"
            );
            queue.tracker().record(
                entry.queue_id.as_str(),
                EventKind::Deleted,
                Direction::Out,
                &entry.sender_text(),
                "",
                "local",
                "queue state without spool file (finished before a crash or storage failure lost its last update); entry removed",
            );
            dropped.push(entry.queue_id.clone());
        }
        queue
            .state()
            .remove(&entry.queue_id)
            .map_err(std::io::Error::other)?;
    }
    Ok(dropped)
}
