//! Finished messages leave the spool once their end is durable.
//!
//! A delivery may write to the database without flushing it: the
//! portal's sealed copy is one (a flush per message costs sled a round
//! of thread wake-ups, more than the rest of the store). Until a flush
//! has made that copy, and the state saying the message is done, durable,
//! the spool file stays the truth. The reaper collects finished messages
//! for a moment ([`WINDOW`]), flushes once for all of them, and only then
//! removes their files and state.
//!
//! A crash before that flush leaves the file with a state that is either
//! done (sled keeps its writes in order, so the copy is there too: the
//! file is removed at start-up) or older (the message is delivered
//! again: once more, never lost). A flush that fails removes nothing; the
//! batch is tried again a second later.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::envelope::QueueId;

/// How long the first finished message waits for others to share its flush.
pub const WINDOW: Duration = Duration::from_millis(20);
/// The most one flush covers.
const MAX_BATCH: usize = 1024;
/// The wait before a batch whose flush failed is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// The reaper's side the scheduler hands finished messages to.
#[derive(Clone)]
pub struct Reaper {
    tx: mpsc::Sender<QueueId>,
}

/// What the reaper does with the database and the spool.
pub trait Finish: Send + 'static {
    /// Makes every write so far durable.
    fn flush(&self) -> std::io::Result<()>;
    /// Removes a finished message's spool file, then its state.
    fn remove(&self, queue_id: &QueueId);
}

impl Reaper {
    /// Starts the reaper's thread.
    pub fn start(finish: impl Finish) -> std::io::Result<Reaper> {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("spool-reaper".into())
            .spawn(move || run(&rx, &finish))?;
        Ok(Reaper { tx })
    }

    /// Removes `queue_id` (finished: its done state is written) after the
    /// next flush. With the reaper gone (the daemon is stopping), start-up
    /// removes it instead.
    pub fn finished(&self, queue_id: QueueId) {
        let _ = self.tx.send(queue_id);
    }
}

fn run(rx: &mpsc::Receiver<QueueId>, finish: &impl Finish) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        let until = Instant::now() + WINDOW;
        while batch.len() < MAX_BATCH {
            let left = until.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        loop {
            match finish.flush() {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!(error = %e, waiting = batch.len(), "database flush failed: finished messages keep their spool files until it succeeds");
                    std::thread::sleep(RETRY);
                    // Messages finished meanwhile join the retry.
                    batch.extend(rx.try_iter().take(MAX_BATCH));
                }
            }
        }
        for queue_id in &batch {
            finish.remove(queue_id);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};

    /// Files that exist, flushes that fail until told otherwise.
    #[derive(Clone, Default)]
    struct Fake {
        files: Arc<Mutex<HashSet<String>>>,
        failing: Arc<Mutex<bool>>,
        flushes: Arc<Mutex<usize>>,
    }

    impl Finish for Fake {
        fn flush(&self) -> std::io::Result<()> {
            if *self.failing.lock().unwrap() {
                return Err(std::io::Error::other("disk gone"));
            }
            *self.flushes.lock().unwrap() += 1;
            Ok(())
        }
        fn remove(&self, queue_id: &QueueId) {
            self.files.lock().unwrap().remove(queue_id.as_str());
        }
    }

    fn wait_until(what: impl Fn() -> bool) -> bool {
        for _ in 0..200 {
            if what() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn files_go_after_one_flush_for_the_batch_and_never_while_flushing_fails() {
        let fake = Fake::default();
        let ids: Vec<QueueId> = (0..5).map(|_| QueueId::new()).collect();
        fake.files
            .lock()
            .unwrap()
            .extend(ids.iter().map(|i| i.as_str().to_owned()));
        *fake.failing.lock().unwrap() = true;
        let reaper = Reaper::start(fake.clone()).unwrap();
        for id in &ids {
            reaper.finished(id.clone());
        }
        std::thread::sleep(WINDOW * 10);
        assert_eq!(
            fake.files.lock().unwrap().len(),
            5,
            "removed without a flush"
        );
        *fake.failing.lock().unwrap() = false;
        assert!(wait_until(|| fake.files.lock().unwrap().is_empty()));
        assert_eq!(*fake.flushes.lock().unwrap(), 1, "one flush for the batch");
    }
}
