//! Key discovery: where a recipient's certificate or key is looked for when
//! the directory has none, in the order the settings choose (`[discovery]`
//! `order`): the corporate LDAP directory ([`ldap`]), the recipient
//! domain's Web Key Directory ([`wkd`], advanced then direct), and the
//! domain's own DNSSEC-signed zone ([`dane`]: SMIMEA, OPENPGPKEY). The
//! first source that has something for the address answers; a partner
//! gateway's key is found the same way under `gateway@<domain>` (the
//! local parts in `partner_gateways`) and serves the whole domain.
//!
//! Lookups never block the queue: [`Discovery::status`] answers at once
//! from the caches (found: `found_ttl_secs`; nothing found:
//! `missing_ttl_secs`; a failure: at most a minute) or starts a lookup in
//! the background and answers [`Status::Pending`]; the recipient then
//! waits like a held one, and [`Discovery::completed`] says when to look
//! at it again. Each source has `timeout_secs`; at most `concurrency`
//! lookups run at once; one address is never looked up twice at the same
//! time.
//!
//! What is found is bound to the address before it is offered: OpenPGP
//! keys must carry a user ID with the address, certificates must name it
//! (except a partner gateway's, whose binding is where it was published).
//! The caller stores it in the directory with the source's trust level.
//!
//! Trusts: LDAP as configured; HTTPS servers as authenticated by the root
//! store; DNS answers only when the validating resolver vouched for them.
//! Everything found is parsed by the engines within their limits.

pub mod dane;
pub mod ldap;
pub mod wkd;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sealgate_api::settings::trust::{DiscoverySettings, DiscoverySource};

use crate::directory::Kind;
use crate::dnssec::SecureDns;
use crate::https::HttpsClient;

/// One certificate or key found for an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    pub source: DiscoverySource,
    /// Where exactly: the URL, the LDAP entry, the DNS name.
    pub origin: String,
    pub kind: Kind,
    /// One DER certificate or one binary OpenPGP certificate.
    pub data: Vec<u8>,
    /// Set when it is a partner gateway's key serving this domain.
    pub domain: Option<String>,
}

/// What is known about an address now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Keys found (not yet expired from the cache).
    Found(Arc<Vec<Discovered>>),
    /// Every source was asked and none has a key.
    Missing,
    /// A lookup is running; ask again when [`Discovery::completed`] names it.
    Pending,
    /// A source could not be asked (and none found anything); retried later.
    Failed(Arc<str>),
}

#[derive(Debug, Clone)]
struct Cached {
    status: Status,
    until: Instant,
}

/// How long a failure is believed before the next attempt.
const FAILURE_TTL: Duration = Duration::from_secs(60);
/// Most addresses remembered.
const MAX_CACHED: usize = 100_000;

/// The discovery service (shared; lookups run on the runtime).
pub struct Discovery {
    settings: DiscoverySettings,
    https: Arc<HttpsClient>,
    dns: SecureDns,
    cache: Mutex<HashMap<String, Cached>>,
    running: Mutex<HashSet<String>>,
    permits: Arc<tokio::sync::Semaphore>,
    completed: tokio::sync::broadcast::Sender<String>,
}

impl Discovery {
    pub fn new(settings: DiscoverySettings, https: Arc<HttpsClient>, dns: SecureDns) -> Discovery {
        let permits = Arc::new(tokio::sync::Semaphore::new(settings.concurrency.max(1)));
        Discovery {
            settings,
            https,
            dns,
            cache: Mutex::new(HashMap::new()),
            running: Mutex::new(HashSet::new()),
            permits,
            completed: tokio::sync::broadcast::channel(1024).0,
        }
    }

    /// Whether any source is configured.
    pub fn enabled(&self) -> bool {
        !self.settings.order.is_empty()
    }

    pub fn settings(&self) -> &DiscoverySettings {
        &self.settings
    }

    /// As lookups finish: the address looked up, or `@domain` for a
    /// partner gateway's lookup (the key that releases held mail).
    pub fn completed(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.completed.subscribe()
    }

    /// The addresses to look up for a recipient: its own, then its
    /// domain's partner gateways (`gateway@domain`).
    pub fn candidates(&self, address: &str) -> Vec<(String, Option<String>)> {
        let address = address.to_ascii_lowercase();
        let mut out = vec![(address.clone(), None)];
        if let Some((_, domain)) = address.rsplit_once('@') {
            for local in &self.settings.partner_gateways {
                let gateway = format!("{}@{domain}", local.to_ascii_lowercase());
                if gateway != address {
                    out.push((gateway, Some(domain.to_owned())));
                }
            }
        }
        out
    }

    /// What is known about `address` (one candidate) now, starting a
    /// lookup in the background when nothing is (needs a tokio runtime).
    pub fn status(self: &Arc<Self>, address: &str, domain: Option<&str>) -> Status {
        let key = address.to_ascii_lowercase();
        if let Some(c) = self.cached(&key) {
            return c;
        }
        {
            let mut running = self
                .running
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !running.insert(key.clone()) {
                return Status::Pending;
            }
        }
        let me = Arc::clone(self);
        let domain = domain.map(str::to_owned);
        tokio::spawn(async move {
            let status = match me.permits.clone().acquire_owned().await {
                Ok(_permit) => me.lookup(&key, domain.as_deref()).await,
                Err(_) => Status::Failed(Arc::from("discovery is shutting down")),
            };
            me.remember(&key, status);
            me.running
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&key);
            let released = match &domain {
                Some(d) => format!("@{d}"),
                None => key,
            };
            let _ = me.completed.send(released);
        });
        Status::Pending
    }

    fn cached(&self, key: &str) -> Option<Status> {
        let cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache
            .get(key)
            .filter(|c| Instant::now() < c.until)
            .map(|c| c.status.clone())
    }

    fn remember(&self, key: &str, status: Status) {
        let ttl = match &status {
            Status::Found(_) => Duration::from_secs(self.settings.found_ttl_secs),
            Status::Missing => Duration::from_secs(self.settings.missing_ttl_secs),
            Status::Failed(_) => {
                FAILURE_TTL.min(Duration::from_secs(self.settings.missing_ttl_secs.max(1)))
            }
            Status::Pending => return,
        };
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= MAX_CACHED {
            let now = Instant::now();
            cache.retain(|_, c| now < c.until);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(
            key.to_owned(),
            Cached {
                status,
                until: Instant::now() + ttl,
            },
        );
    }

    /// Forgets what is cached for `address` (an administrator asked again).
    pub fn forget(&self, address: &str) {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&address.to_ascii_lowercase());
    }

    /// Asks the sources in order, now (also what the background lookups run).
    pub async fn lookup(&self, address: &str, domain: Option<&str>) -> Status {
        let Some((local, host)) = address.rsplit_once('@') else {
            return Status::Missing;
        };
        let timeout = Duration::from_secs(self.settings.timeout_secs.max(1));
        let mut failures = Vec::new();
        for source in &self.settings.order {
            let asked = tokio::time::timeout(timeout, self.ask(*source, address, local, host))
                .await
                .unwrap_or_else(|_| Err(format!("no answer in {}s", timeout.as_secs())));
            match asked {
                Ok(raw) => {
                    let bound = bind(raw, address, domain);
                    if !bound.is_empty() {
                        tracing::info!(address, source = ?source, keys = bound.len(), "keys discovered");
                        return Status::Found(Arc::new(bound));
                    }
                }
                Err(why) => {
                    tracing::info!(address, source = ?source, %why, "key discovery source failed");
                    failures.push(format!("{}: {why}", source_name(*source)));
                }
            }
        }
        if failures.is_empty() {
            Status::Missing
        } else {
            Status::Failed(Arc::from(failures.join("; ")))
        }
    }

    /// One source's raw findings (unbound to the address yet).
    async fn ask(
        &self,
        source: DiscoverySource,
        address: &str,
        local: &str,
        domain: &str,
    ) -> Result<Vec<Discovered>, String> {
        let found = |kind, data, origin: String| Discovered {
            source,
            origin,
            kind,
            data,
            domain: None,
        };
        match source {
            DiscoverySource::Ldap => {
                let Some(settings) = &self.settings.ldap else {
                    return Err("no [discovery.ldap] configured".into());
                };
                let timeout = Duration::from_secs(self.settings.timeout_secs.max(1));
                let hits = ldap::lookup(settings, address, timeout).await?;
                let mut out = Vec::new();
                for (data, dn) in hits.smime {
                    out.push(found(Kind::Smime, data, format!("ldap {dn}")));
                }
                for (data, dn) in hits.openpgp {
                    out.push(found(Kind::Openpgp, data, format!("ldap {dn}")));
                }
                Ok(out)
            }
            DiscoverySource::Wkd => Ok(wkd::fetch(&self.https, local, domain)
                .await?
                .map(|(data, url)| found(Kind::Openpgp, data, url))
                .into_iter()
                .collect()),
            DiscoverySource::Dane => {
                let published = dane::lookup(&self.dns, local, domain)
                    .await
                    .map_err(|e| e.to_string())?;
                let name = dane::label(local);
                let mut out = Vec::new();
                for data in published.smime {
                    out.push(found(
                        Kind::Smime,
                        data,
                        format!("dane SMIMEA {name}._smimecert.{domain}"),
                    ));
                }
                for data in published.openpgp {
                    out.push(found(
                        Kind::Openpgp,
                        data,
                        format!("dane OPENPGPKEY {name}._openpgpkey.{domain}"),
                    ));
                }
                Ok(out)
            }
        }
    }
}

pub fn source_name(source: DiscoverySource) -> &'static str {
    match source {
        DiscoverySource::Ldap => "ldap",
        DiscoverySource::Wkd => "wkd",
        DiscoverySource::Dane => "dane",
    }
}

/// Splits what a source returned into single certificates and keeps those
/// bound to `address`: OpenPGP certificates with a user ID naming it,
/// X.509 certificates that name it and may encrypt (a partner gateway's,
/// `domain` set, need not name it). Unparsable material is dropped.
pub fn bind(raw: Vec<Discovered>, address: &str, domain: Option<&str>) -> Vec<Discovered> {
    let limits = sealgate_openpgp::Limits::default();
    let mut out: Vec<Discovered> = Vec::new();
    for item in raw {
        match item.kind {
            Kind::Openpgp => {
                let Ok(certs) = sealgate_openpgp::parse_certs(&item.data, &limits) else {
                    continue;
                };
                for cert in certs {
                    let Ok(summary) = sealgate_openpgp::summarize(&cert) else {
                        continue;
                    };
                    let names = summary
                        .emails
                        .iter()
                        .any(|e| e.eq_ignore_ascii_case(address));
                    if names && summary.can_encrypt {
                        out.push(Discovered {
                            data: summary.binary,
                            domain: domain.map(str::to_owned),
                            ..item.clone()
                        });
                    }
                }
            }
            Kind::Smime => {
                let Ok(certs) = sealgate_smime::cert::parse_bundle(&item.data) else {
                    continue;
                };
                for cert in certs {
                    if cert.ca.is_some_and(|(ca, _)| ca) || !cert.can_encrypt() {
                        continue;
                    }
                    if domain.is_none() && !cert.has_email(address) {
                        continue;
                    }
                    out.push(Discovered {
                        data: cert.der().to_vec(),
                        domain: domain.map(str::to_owned),
                        ..item.clone()
                    });
                }
            }
        }
    }
    out.dedup_by(|a, b| a.data == b.data);
    out
}
