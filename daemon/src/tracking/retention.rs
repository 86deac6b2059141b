//! Retention: tracking events and audit records older than
//! `tracking.retention_days` are removed in small batches with pauses in
//! between, so pruning a large backlog never holds up the queue.

use std::sync::Arc;
use std::time::Duration;

use super::Tracker;

/// Events removed per batch, and the pause between batches.
const BATCH: usize = 1000;
const PAUSE: Duration = Duration::from_millis(50);
/// How often retention runs.
const EVERY: Duration = Duration::from_secs(3600);

/// Runs retention now and then every hour, until the daemon stops.
pub async fn run(live: Arc<crate::settings::Live>, tracker: Tracker, audit: crate::audit::Audit) {
    loop {
        let days = u64::from(live.get().config.tracking.retention_days);
        let before = crate::envelope::now_ms().saturating_sub(days.saturating_mul(86_400_000));
        let mut removed = 0usize;
        loop {
            let (tracker, audit) = (tracker.clone(), audit.clone());
            let batch = tokio::task::spawn_blocking(move || {
                let events = tracker.prune(before, BATCH).map_err(|e| e.to_string())?;
                let records = audit.prune(before, BATCH).map_err(|e| e.to_string())?;
                Ok::<usize, String>(events + records)
            })
            .await;
            match batch {
                Ok(Ok(0)) => break,
                Ok(Ok(n)) => removed += n,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "tracking retention stopped for now");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "tracking retention stopped for now");
                    break;
                }
            }
            tokio::time::sleep(PAUSE).await;
        }
        if removed > 0 {
            tracing::info!(
                removed,
                days,
                "tracking events and audit records past retention removed"
            );
        }
        tokio::time::sleep(EVERY).await;
    }
}
