//! The queue: accepted messages (spool files plus sled state), the scheduler
//! that delivers them with retries, delivery status notifications, and the
//! start-up reconciliation of spool and state.
//!
//! A message enters through [`Queue::accept`] (SMTP) or [`Queue::inject`]
//! (our own DSNs); both return only after the spool made it durable. From
//! then on the scheduler owns it until every recipient is delivered,
//! bounced or deleted, and only then, once the database has made that
//! end durable ([`reaper`]), is the spool file removed.

pub mod dsn;
pub mod invite;
pub mod reaper;
pub mod recover;
pub mod scheduler;
pub mod spool;
pub mod state;

use std::io;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::config::Config;
use crate::envelope::{Envelope, QueueId};
use crate::tracking::{Direction, EventKind, Tracker};

use spool::Spool;
use state::{QueueEntry, QueueState};

/// Where the scheduler answers an administrative request.
pub type Reply = tokio::sync::oneshot::Sender<Result<(), sealgate_api::ServiceError>>;

/// What the scheduler is asked to do from outside its loop.
#[derive(Debug)]
pub enum SchedulerRequest {
    /// A new message is in the queue: try it now.
    Wake(QueueId),
    /// Retry a queued message now.
    Retry(QueueId, Reply),
    /// Delete a queued message (every pending recipient).
    Delete(QueueId, Reply),
    /// Release held and quarantined recipients: decide and try them again now.
    Release(QueueId, Reply),
    /// Keys arrived for these addresses (or `@domain`s): release what is held for them.
    KeysArrived(Vec<String>),
    /// The key directory changed somewhere (another node of a cluster
    /// imported or harvested a key): release recipients held for want of
    /// a key for whom the directory now has one trusted enough.
    DirectoryChanged,
}

/// Shared handle to the queue.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    spool: Spool,
    state: QueueState,
    tracker: Tracker,
    directory: crate::directory::Directory,
    /// The portal's sealed messages and accounts (in the shared store).
    portal: crate::portal::Portal,
    reaper: reaper::Reaper,
    scheduler: mpsc::UnboundedSender<SchedulerRequest>,
}

/// What the reaper flushes and removes.
struct Finisher {
    spool: Spool,
    state: QueueState,
    shared: Arc<dyn crate::store::SharedStore>,
}

impl reaper::Finish for Finisher {
    fn flush(&self) -> io::Result<()> {
        self.state.flush().map_err(io::Error::other)?;
        // The portal's copies (PostgreSQL in a cluster: committed already).
        self.shared
            .flush()
            .map_err(|e| io::Error::other(e.to_string()))
    }

    fn remove(&self, queue_id: &QueueId) {
        if let Err(e) = self.spool.remove(queue_id) {
            tracing::warn!(queue_id = %queue_id, error = %e, "spool file not removed; it will be cleaned up at start-up");
        }
        let _ = self.state.remove(queue_id);
    }
}

impl Queue {
    /// Opens the spool and state; the receiver goes to [`scheduler::run`].
    pub fn open(
        config: &Config,
        db: &crate::db::Db,
        shared: Arc<dyn crate::store::SharedStore>,
    ) -> io::Result<(Queue, mpsc::UnboundedReceiver<SchedulerRequest>)> {
        let spool = Spool::open(&config.data_dir.join("spool"))?;
        let state = QueueState::open(db, shared.clone());
        let tracker = Tracker::open(db, &config.node_name);
        let portal = crate::portal::Portal::open(&shared, config.hsm_settings());
        let reaper = reaper::Reaper::start(Finisher {
            spool: spool.clone(),
            state: state.clone(),
            shared: shared.clone(),
        })?;
        let directory = crate::directory::Directory::open(shared);
        let (tx, rx) = mpsc::unbounded_channel();
        Ok((
            Queue {
                inner: Arc::new(Inner {
                    spool,
                    state,
                    tracker,
                    directory,
                    portal,
                    reaper,
                    scheduler: tx,
                }),
            },
            rx,
        ))
    }

    pub fn spool(&self) -> &Spool {
        &self.inner.spool
    }

    pub fn state(&self) -> &QueueState {
        &self.inner.state
    }

    /// Where finished messages go to leave the spool.
    pub fn reaper(&self) -> &reaper::Reaper {
        &self.inner.reaper
    }

    pub fn tracker(&self) -> &Tracker {
        &self.inner.tracker
    }

    /// The key directory (kept here because it shares the queue's database).
    pub fn directory(&self) -> &crate::directory::Directory {
        &self.inner.directory
    }

    /// The secure web mail portal's store.
    pub fn portal(&self) -> &crate::portal::Portal {
        &self.inner.portal
    }

    pub fn has_room_for(&self, size: u64) -> bool {
        self.inner.spool.has_room_for(size)
    }

    /// Sends a request to the scheduler.
    pub fn request(&self, request: SchedulerRequest) -> Result<(), String> {
        self.inner
            .scheduler
            .send(request)
            .map_err(|_| "scheduler is not running".to_string())
    }

    /// Takes a message from SMTP: durable in the spool before this returns.
    pub async fn accept(
        &self,
        queue_id: &QueueId,
        envelope: &Envelope,
        header: &[u8],
        body: &[u8],
    ) -> io::Result<()> {
        self.inner
            .spool
            .store(queue_id, envelope, header, body)
            .await?;
        let size = (header.len() + body.len()) as u64;
        let labels = crate::tracking::messages::Labels::of(body);
        tracing::info!(
            queue_id = %queue_id,
            session_id = %envelope.session_id,
            client = %envelope.client_ip,
            sender = %envelope.sender_text(),
            recipients = envelope.recipients.len(),
            size,
            tls = envelope.tls,
            "message accepted"
        );
        self.register(queue_id, envelope, size, &envelope.client_ip, Some(&labels));
        Ok(())
    }

    /// Queues a message this gateway wrote itself (a DSN), durably.
    pub async fn inject(&self, envelope: &Envelope, content: &[u8]) -> io::Result<QueueId> {
        let queue_id = QueueId::new();
        self.inner
            .spool
            .store(&queue_id, envelope, b"", content)
            .await?;
        let labels = crate::tracking::messages::Labels::of(content);
        self.register(
            &queue_id,
            envelope,
            content.len() as u64,
            "local",
            Some(&labels),
        );
        Ok(queue_id)
    }

    /// Records state and tracking for a spooled message and wakes the scheduler.
    fn register(
        &self,
        queue_id: &QueueId,
        envelope: &Envelope,
        size: u64,
        remote: &str,
        labels: Option<&crate::tracking::messages::Labels>,
    ) {
        let entry = QueueEntry::new(queue_id, envelope, size);
        if let Err(e) = self.inner.state.put(&entry) {
            // The spool file is the truth; start-up reconciliation recreates the state.
            tracing::error!(queue_id = %queue_id, error = %e, "queue state not written");
        }
        let sender = envelope.sender_text();
        for r in &envelope.recipients {
            self.inner.tracker.record_labelled(
                queue_id.as_str(),
                EventKind::Received,
                Direction::In,
                &sender,
                &r.address.to_string(),
                remote,
                &format!("{size} octets"),
                labels,
            );
        }
        let _ = self.request(SchedulerRequest::Wake(queue_id.clone()));
    }
}
