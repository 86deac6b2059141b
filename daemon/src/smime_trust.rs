//! S/MIME trust anchors and certificate revocation lists for the gateway:
//! which CAs make a certificate `anchored`, and whether a certificate on
//! the way to one was revoked.
//!
//! Anchors are the PEM files in `[smime] trust_anchors` (and the system
//! bundle when `system_anchors` is on). CRLs come from the distribution
//! points the certificates name (http or https, fetched in the
//! background, never on the mail's path), or from an administrator's
//! upload; each is verified against its issuer before it is kept, kept in
//! memory and in the node's state store (tree `crls`, so a restart does
//! not forget them), fetched again every `crl_refresh_secs` and as soon as
//! its `nextUpdate` passes. A certificate whose CRL is not at hand yet is
//! "revocation unknown" ([`sealgate_smime::trust::PathVerdict`]), which
//! never counts as anchored; [`SmimeTrust::changed`] says when a CRL
//! arrived, so what waited on it can be looked at again.
//!
//! Trusts: the configured anchors; CRLs only as verified by the engine.
//! Fetches are bounded in size (`sealgate_smime::crl::MAX_CRL_SIZE`) and
//! time (`crl_timeout_secs`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sealgate_api::settings::trust::SmimeTrustSettings;
use sealgate_smime::Certificate;
use sealgate_smime::crl::Crl;
use sealgate_smime::trust::{CrlAnswer, CrlSource, PathCheck, Purpose};

/// Most distribution points remembered.
const MAX_URLS: usize = 10_000;

/// A CRL with where it came from.
#[derive(Debug, Clone)]
struct Held {
    crl: Arc<Crl>,
    /// `upload` or the URL.
    origin: String,
}

/// What the gateway knows about a CRL, for `sealgate crl list`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CrlInfo {
    pub origin: String,
    pub issuer: String,
    pub this_update_ms: u64,
    pub next_update_ms: Option<u64>,
    pub revoked: usize,
}

/// Anchors and CRLs (shared).
pub struct SmimeTrust {
    settings: SmimeTrustSettings,
    anchors: Vec<Certificate>,
    https: Option<Arc<crate::https::HttpsClient>>,
    tree: Option<crate::db::Tree>,
    /// By URL, and `issuer:<sha256 of the issuer name>` for uploads.
    crls: Mutex<HashMap<String, Held>>,
    /// URLs whose fetch failed (and why), so a lookup can say so.
    failures: Mutex<HashMap<String, String>>,
    /// URLs to fetch, with the issuer that must have signed the CRL.
    wanted: Mutex<HashMap<String, Certificate>>,
    queued: Mutex<HashSet<String>>,
    wake: tokio::sync::Notify,
    changed: tokio::sync::broadcast::Sender<()>,
}

/// Reads every certificate in PEM files (CA certificates are what anchors are).
pub fn read_anchors(
    files: &[std::path::PathBuf],
    system: bool,
) -> Result<Vec<Certificate>, String> {
    let mut out = Vec::new();
    for path in files {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let certs = sealgate_smime::cert::parse_bundle(&bytes)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no certificate", path.display()));
        }
        out.extend(certs);
    }
    if system {
        for der in rustls_native_certs::load_native_certs().certs {
            if let Ok(c) = Certificate::from_der(der.as_ref()) {
                out.push(c);
            }
        }
    }
    Ok(out)
}

fn issuer_key(issuer_name: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, issuer_name);
    format!(
        "issuer:{}",
        digest
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

impl SmimeTrust {
    /// The anchors and the persisted CRLs; fetching needs [`SmimeTrust::run`].
    pub fn new(
        settings: &SmimeTrustSettings,
        https: Option<Arc<crate::https::HttpsClient>>,
        db: Option<&crate::db::Db>,
    ) -> Result<SmimeTrust, String> {
        let anchors = read_anchors(&settings.trust_anchors, settings.system_anchors)?;
        let trust = SmimeTrust {
            settings: settings.clone(),
            anchors,
            https,
            tree: db.map(|d| d.tree("crls")),
            crls: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            wanted: Mutex::new(HashMap::new()),
            queued: Mutex::new(HashSet::new()),
            wake: tokio::sync::Notify::new(),
            changed: tokio::sync::broadcast::channel(64).0,
        };
        trust.load_persisted();
        Ok(trust)
    }

    pub fn anchors(&self) -> &[Certificate] {
        &self.anchors
    }

    /// Fires whenever a CRL was added or replaced.
    pub fn changed(&self) -> tokio::sync::broadcast::Receiver<()> {
        self.changed.subscribe()
    }

    fn load_persisted(&self) {
        let Some(tree) = &self.tree else { return };
        let Ok(iter) = tree.iter() else { return };
        let mut crls = self
            .crls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for item in iter {
            // Stop at the first storage error (sled may repeat it forever).
            let Ok((key, value)) = item else { break };
            let (Ok(origin), Ok(crl)) = (String::from_utf8(key.to_vec()), Crl::from_der(&value))
            else {
                continue;
            };
            crls.insert(
                origin.clone(),
                Held {
                    crl: Arc::new(crl),
                    origin,
                },
            );
        }
    }

    fn keep(&self, key: String, crl: Crl) {
        if let Some(tree) = &self.tree
            && let Err(e) = tree.insert(key.as_bytes(), crl.der())
        {
            tracing::warn!(error = %e, "CRL not persisted");
        }
        self.crls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                key.clone(),
                Held {
                    crl: Arc::new(crl),
                    origin: key,
                },
            );
        let _ = self.changed.send(());
    }

    /// An administrator's CRL (DER or PEM): kept when one of the anchors,
    /// or one of `issuers` (e.g. intermediates from the directory), issued it.
    pub fn upload(&self, input: &[u8], issuers: &[Certificate]) -> Result<CrlInfo, String> {
        let crl = Crl::parse(input).map_err(|e| e.to_string())?;
        let issuer = self
            .anchors
            .iter()
            .chain(issuers)
            .find(|c| c.subject == crl.issuer && crl.verify_with(c).is_ok())
            .ok_or(
                "no trust anchor or known CA issued this CRL (or its signature does not verify)",
            )?;
        tracing::info!(issuer = %name_text(&issuer.subject), revoked = crl.len(), "CRL uploaded");
        let info = info("upload", &crl);
        self.keep(issuer_key(&crl.issuer), crl);
        Ok(info)
    }

    /// What CRLs are held.
    pub fn list(&self) -> Vec<CrlInfo> {
        let crls = self
            .crls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out: Vec<CrlInfo> = crls
            .values()
            .map(|h| {
                info(
                    if h.origin.starts_with("issuer:") {
                        "upload"
                    } else {
                        &h.origin
                    },
                    &h.crl,
                )
            })
            .collect();
        out.sort_by(|a, b| a.origin.cmp(&b.origin));
        out
    }

    /// Checks `cert` for `purpose` now against the anchors, with issuers
    /// from `pool`, the CRLs at hand (missing ones are asked for).
    pub fn check(&self, cert: &Certificate, pool: &[Certificate], purpose: Purpose) -> PathCheck {
        let now = i64::try_from(crate::envelope::now_ms() / 1000).unwrap_or(i64::MAX);
        sealgate_smime::trust::check(cert, pool, &self.anchors, now, purpose, self)
    }

    fn want(&self, url: &str, issuer: &Certificate) {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return;
        }
        let mut queued = self
            .queued
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if queued.len() >= MAX_URLS || !queued.insert(url.to_owned()) {
            return;
        }
        self.wanted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(url.to_owned(), issuer.clone());
        self.wake.notify_one();
    }

    /// Fetches what is wanted and refreshes what is held, for as long as
    /// this instance is in use (a new settings version builds a new one).
    pub async fn run(me: std::sync::Weak<SmimeTrust>) {
        let mut last_refresh = tokio::time::Instant::now();
        loop {
            let Some(this) = me.upgrade() else { return };
            let refresh = Duration::from_secs(this.settings.crl_refresh_secs.max(60));
            if last_refresh.elapsed() >= refresh {
                this.refresh_all();
                last_refresh = tokio::time::Instant::now();
            }
            let batch: Vec<(String, Certificate)> = this
                .wanted
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .drain()
                .collect();
            for (url, issuer) in batch {
                this.fetch(&url, &issuer).await;
            }
            // Wake on a new wish, or look again within a minute (to notice
            // that this instance was replaced, and for the refresh).
            let _ = tokio::time::timeout(Duration::from_secs(60), this.wake.notified()).await;
        }
    }

    /// Queues every held URL again (the periodic refresh).
    fn refresh_all(&self) {
        let held: Vec<String> = self
            .crls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .filter(|k| !k.starts_with("issuer:"))
            .cloned()
            .collect();
        self.queued
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|u| !held.contains(u));
        // The issuer for a refresh is the anchor or CA that signed it last
        // time; find it among the anchors, else the stored CRL stays until
        // a certificate asks again.
        for url in held {
            let issuer = {
                let crls = self
                    .crls
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                crls.get(&url).and_then(|h| {
                    self.anchors
                        .iter()
                        .find(|a| a.subject == h.crl.issuer)
                        .cloned()
                })
            };
            if let Some(issuer) = issuer {
                self.want(&url, &issuer);
            } else {
                // Re-fetched when a certificate needs it after it expires.
                self.queued
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&url);
            }
        }
    }

    async fn fetch(&self, url: &str, issuer: &Certificate) {
        let result = match &self.https {
            None => Err("no HTTP client".to_owned()),
            Some(https) => {
                let timeout = Duration::from_secs(self.settings.crl_timeout_secs.max(1));
                match tokio::time::timeout(
                    timeout,
                    https.get(url, sealgate_smime::crl::MAX_CRL_SIZE, None),
                )
                .await
                {
                    Err(_) => Err(format!("no answer in {}s", timeout.as_secs())),
                    Ok(Err(e)) => Err(e.to_string()),
                    Ok(Ok(body)) => Crl::parse(&body)
                        .map_err(|e| e.to_string())
                        .and_then(|crl| {
                            crl.verify_with(issuer)
                                .map_err(|e| e.to_string())
                                .map(|()| crl)
                        }),
                }
            }
        };
        self.queued
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(url);
        match result {
            Ok(crl) => {
                tracing::info!(url, revoked = crl.len(), "CRL fetched");
                self.failures
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(url);
                self.keep(url.to_owned(), crl);
            }
            Err(why) => {
                tracing::info!(url, %why, "CRL not fetched");
                self.failures
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(url.to_owned(), why);
                let _ = self.changed.send(());
            }
        }
    }
}

fn info(origin: &str, crl: &Crl) -> CrlInfo {
    let ms = |s: i64| u64::try_from(s).unwrap_or(0).saturating_mul(1000);
    let issuer = name_text(&crl.issuer);
    CrlInfo {
        origin: origin.to_owned(),
        issuer,
        this_update_ms: ms(crl.this_update),
        next_update_ms: crl.next_update.map(ms),
        revoked: crl.len(),
    }
}

/// A DER Name for display (`CN=Test CA`).
fn name_text(der: &[u8]) -> String {
    use x509_parser::prelude::FromDer;
    x509_parser::x509::X509Name::from_der(der)
        .map(|(_, n)| n.to_string())
        .unwrap_or_default()
}

impl CrlSource for SmimeTrust {
    fn crl(&self, cert: &Certificate, issuer: &Certificate) -> CrlAnswer {
        let now = i64::try_from(crate::envelope::now_ms() / 1000).unwrap_or(i64::MAX);
        let crls = self
            .crls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut stale = None;
        for key in cert
            .crl_urls
            .iter()
            .cloned()
            .chain(std::iter::once(issuer_key(&cert.issuer)))
        {
            if let Some(held) = crls.get(&key) {
                if held.crl.current_at(now) {
                    return CrlAnswer::Found(held.crl.clone());
                }
                stale = Some(held.crl.clone());
            }
        }
        drop(crls);
        let fetchable: Vec<&String> = cert
            .crl_urls
            .iter()
            .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
            .collect();
        if fetchable.is_empty() {
            // Published nowhere we can read; an out-of-date upload still
            // says what it says (the engine calls it out of date).
            return match stale {
                Some(crl) => CrlAnswer::Found(crl),
                None => CrlAnswer::NotPublished,
            };
        }
        for url in &fetchable {
            self.want(url, issuer);
        }
        let failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let why = fetchable
            .iter()
            .find_map(|u| failures.get(*u).map(|w| format!("{u}: {w}")))
            .unwrap_or_else(|| {
                format!(
                    "{} is being fetched",
                    fetchable.first().map_or("", |u| u.as_str())
                )
            });
        CrlAnswer::Unavailable(why)
    }
}
