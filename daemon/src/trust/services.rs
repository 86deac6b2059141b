//! The trust machinery the pipeline, the delivery and the admin service
//! share: the review queue, key discovery, S/MIME anchors and CRLs, DKIM.
//!
//! Discovery, the anchors and the DKIM verifier follow the settings: each
//! is built for the settings in force on first use and built again when
//! those settings change (the review queue and the persisted CRLs and
//! MTA-STS policies outlive versions). Background work that ends (a key
//! lookup, a CRL fetch) wakes the scheduler for the mail that waited on it.

use std::sync::{Arc, Mutex};

use crate::config::Config;
use crate::discovery::Discovery;
use crate::dkim::DkimVerifier;
use crate::smime_trust::SmimeTrust;
use crate::store::SharedStore;

use super::review::Reviews;

/// One instance per settings fingerprint.
type Built<T> = Mutex<Option<(String, Arc<T>)>>;

/// The shared trust machinery.
pub struct Services {
    pub reviews: Reviews,
    tls: Arc<crate::outbound_tls::OutboundTls>,
    db: Option<crate::db::Db>,
    /// Where finished lookups are announced (the running daemon's queue).
    queue: Option<crate::queue::Queue>,
    discovery: Built<Discovery>,
    smime: Built<SmimeTrust>,
    dkim: Built<DkimVerifier>,
}

impl Services {
    pub fn new(
        shared: Arc<dyn SharedStore>,
        tls: Arc<crate::outbound_tls::OutboundTls>,
        db: Option<crate::db::Db>,
        queue: Option<crate::queue::Queue>,
    ) -> Services {
        Services {
            reviews: Reviews::new(shared),
            tls,
            db,
            queue,
            discovery: Mutex::new(None),
            smime: Mutex::new(None),
            dkim: Mutex::new(None),
        }
    }

    pub fn outbound_tls(&self) -> &Arc<crate::outbound_tls::OutboundTls> {
        &self.tls
    }

    /// Tells the scheduler that keys for `addresses` (or `@domain`s) may
    /// have arrived: mail held for them is looked at again.
    pub fn keys_arrived(&self, addresses: Vec<String>) {
        if let Some(queue) = &self.queue
            && !addresses.is_empty()
        {
            let _ = queue.request(crate::queue::SchedulerRequest::KeysArrived(addresses));
        }
    }

    fn built<T>(
        slot: &Built<T>,
        key: String,
        make: impl FnOnce() -> Result<Arc<T>, String>,
    ) -> Result<Arc<T>, String> {
        let mut slot = slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((k, v)) = slot.as_ref()
            && *k == key
        {
            return Ok(v.clone());
        }
        let made = make()?;
        *slot = Some((key, made.clone()));
        Ok(made)
    }

    /// Key discovery under `config`'s settings; `None` when it is off.
    pub fn discovery(&self, config: &Config) -> Result<Option<Arc<Discovery>>, String> {
        if config.discovery.order.is_empty() {
            return Ok(None);
        }
        let key = serde_json::to_string(&(&config.discovery, &config.outbound_tls))
            .map_err(|e| e.to_string())?;
        let policy = self.tls.policy(config)?;
        let queue = self.queue.clone();
        Self::built(&self.discovery, key, || {
            let discovery = Arc::new(Discovery::new(
                config.discovery.clone(),
                policy.https().clone(),
                policy.dns().clone(),
            ));
            // Finished lookups wake the mail that waited on them.
            if let (Some(queue), Ok(handle)) = (queue, tokio::runtime::Handle::try_current()) {
                let mut done = discovery.completed();
                let weak = Arc::downgrade(&discovery);
                handle.spawn(async move {
                    loop {
                        match done.recv().await {
                            Ok(address) => {
                                let _ = queue.request(crate::queue::SchedulerRequest::KeysArrived(
                                    vec![address],
                                ));
                            }
                            // Finished lookups were missed: wake everything
                            // that waits on one (each is decided again, and
                            // waits again if its lookup still runs).
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                                let waiting = super::resolve::waiting_on_lookups(&queue);
                                let _ = queue
                                    .request(crate::queue::SchedulerRequest::KeysArrived(waiting));
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                        }
                        if weak.strong_count() == 0 {
                            return;
                        }
                    }
                });
            }
            Ok(discovery)
        })
        .map(Some)
    }

    /// The S/MIME anchors and CRLs under `config`'s settings.
    pub fn smime(&self, config: &Config) -> Result<Arc<SmimeTrust>, String> {
        let key = serde_json::to_string(&(&config.smime, &config.outbound_tls))
            .map_err(|e| e.to_string())?;
        let https = self.tls.policy(config).ok().map(|p| p.https().clone());
        let db = self.db.clone();
        let queue = self.queue.clone();
        Self::built(&self.smime, key, || {
            let trust = Arc::new(SmimeTrust::new(&config.smime, https, db.as_ref())?);
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(SmimeTrust::run(Arc::downgrade(&trust)));
                // A CRL that arrives wakes the mail that waited on it.
                if let Some(queue) = queue {
                    let mut changed = trust.changed();
                    let weak = Arc::downgrade(&trust);
                    handle.spawn(async move {
                        loop {
                            match changed.recv().await {
                                Ok(())
                                | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                            }
                            if weak.strong_count() == 0 {
                                return;
                            }
                            let waiting = super::resolve::waiting_on_lookups(&queue);
                            if !waiting.is_empty() {
                                let _ = queue
                                    .request(crate::queue::SchedulerRequest::KeysArrived(waiting));
                            }
                        }
                    });
                }
            }
            Ok(trust)
        })
    }

    /// The DKIM verifier through `config`'s DNS server.
    pub fn dkim(&self, config: &Config) -> Result<Arc<DkimVerifier>, String> {
        let key = format!("{:?}", config.delivery.dns_server);
        let server = config.delivery.dns_server;
        Self::built(&self.dkim, key, || DkimVerifier::new(server).map(Arc::new))
    }
}
