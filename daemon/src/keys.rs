//! The gateway's own keys: those on the PKCS#11 token that open mail
//! encrypted for the gateway (S/MIME) and sign for it, and its OpenPGP
//! identity, loaded together as one [`GatewayKeys`].
//!
//! [`Keys`] is the handle every user shares: it holds the [`KeyStore`] in
//! force (ready, not set up, or unavailable), loads it again on SIGHUP
//! (`systemctl reload`) and on request (after a key operation), and while
//! it is unavailable tries the token again every [`RETRY`] until it opens.
//! A delivery attempt takes the store in force at its start.
//!
//! Trusts: the token and the gateway's own certificate store
//! (`<data>/certs`). Fail closed: a key that was set up but cannot be
//! loaded makes the store unavailable (mail that needs it waits), never
//! "not set up" (mail would pass unopened or unsigned).

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sealgate_hsm::{Hsm, TokenKey};
use sealgate_openpgp::GatewayIdentity;
use sealgate_smime::cert::CertKey;
use sealgate_smime::{Certificate, GatewayKey};

use crate::config::Config;

/// Labels of the token keys that open S/MIME mail for the gateway.
pub const SMIME_KEY_LABELS: &[&str] = &["gateway-decrypt", "gateway-ec-derive"];

/// Label of the token key that signs for the gateway.
pub const SIGN_KEY_LABEL: &str = "gateway-sign";

/// The gateway's keys on the token, with their certificates: those that
/// open mail for the gateway, and the one that signs.
pub struct GatewayKeys {
    smime: Vec<(Certificate, TokenKey)>,
    signer: Option<(TokenKey, Vec<Certificate>)>,
    openpgp: Option<GatewayIdentity>,
}

impl std::fmt::Debug for GatewayKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayKeys")
            .field("smime", &self.smime.len())
            .field("signer", &self.signer.is_some())
            .field(
                "openpgp",
                &self
                    .openpgp
                    .as_ref()
                    .map(|id| id.cert().fingerprint().to_hex()),
            )
            .finish()
    }
}

impl GatewayKeys {
    /// Loads every key in `labels` that has a certificate, the signing key
    /// if it has one, and the gateway's OpenPGP identity from
    /// `openpgp_dir` if one was created there (`sealgate pgp init`).
    ///
    /// A key without any certificate is skipped: it was never set up to
    /// open mail. But a key whose certificate the gateway holds (its own
    /// certificate store, `<data>/certs`) or an OpenPGP identity that
    /// exists must load: if the token cannot produce it, the token is not
    /// whole or not ours (its storage moved, emptied, replaced), and that
    /// is an outage, never "no keys": mail for the gateway would otherwise
    /// leave unopened and mail to sign unsigned. Blocking.
    pub fn load(
        hsm: &Hsm,
        labels: &[&str],
        openpgp_dir: &Path,
    ) -> Result<GatewayKeys, KeyLoadError> {
        let mut smime = Vec::new();
        for label in labels {
            let Some(der) = certificate_of(hsm, label)?.and_then(|chain| chain.into_iter().next())
            else {
                tracing::info!(%label, "no certificate for this token key: it opens no S/MIME mail");
                continue;
            };
            let cert = Certificate::from_der(&der).map_err(|e| KeyLoadError::Missing {
                label: (*label).to_owned(),
                why: format!("its certificate does not parse: {e}"),
            })?;
            let key = match cert.key {
                CertKey::Ec { .. } => hsm.key_agreement(label),
                _ => hsm.decryptor(label),
            };
            let key = key.map_err(|e| KeyLoadError::missing(label, e))?;
            smime.push((cert, key));
        }
        let chain: Vec<Certificate> = certificate_of(hsm, SIGN_KEY_LABEL)?
            .unwrap_or_default()
            .iter()
            .filter_map(|d| Certificate::from_der(d).ok())
            .collect();
        let signer = if chain.is_empty() {
            tracing::info!(
                label = SIGN_KEY_LABEL,
                "no signing key with a certificate: the gateway does not sign"
            );
            None
        } else {
            let key = hsm
                .signer(SIGN_KEY_LABEL)
                .map_err(|e| KeyLoadError::missing(SIGN_KEY_LABEL, e))?;
            Some((key, chain))
        };
        Ok(GatewayKeys {
            smime,
            signer,
            openpgp: load_openpgp(hsm, openpgp_dir)?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.smime.is_empty() && self.signer.is_none() && self.openpgp.is_none()
    }

    /// The gateway's S/MIME signing identity; correspondents are told to
    /// encrypt to the gateway's RSA decryption certificate, if there is one.
    pub fn signing(&self) -> Option<sealgate_smime::SigningIdentity<'_>> {
        let (key, chain) = self.signer.as_ref()?;
        Some(sealgate_smime::SigningIdentity {
            key,
            chain,
            encryption_cert: self
                .smime
                .iter()
                .map(|(cert, _)| cert)
                .find(|cert| matches!(cert.key, CertKey::Rsa { .. })),
        })
    }

    /// The gateway's OpenPGP identity, if one was created.
    pub fn openpgp(&self) -> Option<&GatewayIdentity> {
        self.openpgp.as_ref()
    }

    /// Whether some S/MIME key with a certificate can open mail.
    pub fn opens_smime(&self) -> bool {
        !self.smime.is_empty()
    }

    /// The S/MIME keys that open mail for the gateway, for the engine.
    pub fn smime_keys(&self) -> Vec<GatewayKey<'_>> {
        self.smime
            .iter()
            .map(|(cert, key)| match cert.key {
                CertKey::Ec { .. } => GatewayKey::Ec { cert, key },
                _ => GatewayKey::Rsa { cert, key },
            })
            .collect()
    }
}

/// What the gateway knows of its own keys, as the scheduler holds it.
#[derive(Debug, Clone, Default)]
pub enum KeyStore {
    /// No token is set up (or it holds no key with a certificate): mail
    /// encrypted for anyone passes through unopened.
    #[default]
    NotSetUp,
    /// A token is set up but could not be opened: mail that may be
    /// encrypted for the gateway waits (deferred) until it can be.
    Unavailable(String),
    /// Loaded.
    Ready(std::sync::Arc<GatewayKeys>),
}

impl KeyStore {
    /// The loaded keys, if any.
    pub fn keys(&self) -> Option<&GatewayKeys> {
        match self {
            KeyStore::Ready(keys) => Some(keys),
            _ => None,
        }
    }
}

/// Why the gateway's keys could not be loaded: the key store is then
/// unavailable (mail that needs it waits), never "not set up".
#[derive(Debug, thiserror::Error)]
pub enum KeyLoadError {
    /// The token could not be reached or answered with an error.
    #[error("token: {0}")]
    Token(#[from] sealgate_hsm::Error),
    /// A key the gateway set up (it holds its certificate) is not on the token.
    #[error(
        "the key {label:?} has a certificate but the token cannot produce it ({why}); \
         is the token's storage missing or replaced?"
    )]
    Missing { label: String, why: String },
    /// The gateway's OpenPGP identity exists but does not load.
    #[error("the gateway's OpenPGP identity does not load: {0}")]
    Openpgp(String),
}

impl KeyLoadError {
    fn missing(label: &str, e: sealgate_hsm::Error) -> KeyLoadError {
        if e.is_temporary() {
            KeyLoadError::Token(e)
        } else {
            KeyLoadError::Missing {
                label: label.to_owned(),
                why: e.to_string(),
            }
        }
    }
}

/// The certificate chain of a token key: `None` when it has none anywhere
/// (never set up to open or sign mail); an error when the token could not
/// be asked.
fn certificate_of(hsm: &Hsm, label: &str) -> Result<Option<Vec<Vec<u8>>>, KeyLoadError> {
    match hsm.certificate_chain(label) {
        Ok(chain) if !chain.is_empty() => Ok(Some(chain)),
        Ok(_) | Err(sealgate_hsm::Error::NoCertificate(_)) => Ok(None),
        // A certificate file that does not read is not "no certificate".
        Err(e) => Err(KeyLoadError::Token(e)),
    }
}

/// The OpenPGP identity in `dir`, if `sealgate pgp init` created one; one
/// that exists and does not load is an error.
fn load_openpgp(hsm: &Hsm, dir: &Path) -> Result<Option<GatewayIdentity>, KeyLoadError> {
    if !dir.join("gateway.toml").exists() {
        tracing::info!(dir = %dir.display(), "no gateway OpenPGP identity: OpenPGP mail for the gateway is not opened");
        return Ok(None);
    }
    match GatewayIdentity::load(hsm, dir) {
        Ok(identity) => Ok(Some(identity)),
        Err(sealgate_openpgp::Error::Hsm(e)) if e.is_temporary() => Err(KeyLoadError::Token(e)),
        Err(e) => Err(KeyLoadError::Openpgp(e.to_string())),
    }
}

/// How often an unavailable key store is tried again.
pub const RETRY: Duration = Duration::from_secs(15);

/// The gateway's own keys, if a token is set up (configured, or a SoftHSM2
/// token in the data directory) and its keys have certificates. A token
/// that is set up but cannot be opened is `Unavailable`: mail that may be
/// encrypted for the gateway then waits instead of passing unopened.
pub async fn load(config: &Config) -> KeyStore {
    let settings = config.hsm_settings();
    if config.hsm.is_none() && !settings.softhsm_conf().exists() {
        tracing::info!("no key store set up: mail encrypted for the gateway is not opened");
        return KeyStore::NotSetUp;
    }
    let openpgp_dir = config.data_dir.join("openpgp");
    let opened = tokio::task::spawn_blocking(move || {
        let hsm = Hsm::open(&settings)?;
        GatewayKeys::load(&hsm, SMIME_KEY_LABELS, &openpgp_dir)
    })
    .await;
    // An unavailable key store is reported by the caller, once per change.
    match opened {
        Ok(Ok(keys)) if !keys.is_empty() => {
            tracing::info!(?keys, "gateway decryption keys loaded from the token");
            KeyStore::Ready(Arc::new(keys))
        }
        Ok(Ok(_)) => {
            tracing::info!(
                "the token has no decryption key with a certificate: mail encrypted for the gateway is not opened"
            );
            KeyStore::NotSetUp
        }
        Ok(Err(e)) => KeyStore::Unavailable(e.to_string()),
        Err(e) => KeyStore::Unavailable(format!("loading the gateway keys stopped: {e}")),
    }
}

/// Logs an unavailable key store when it becomes so or its reason changes,
/// not on every retry.
fn report_unavailable(previous: Option<&KeyStore>, current: &KeyStore) {
    let KeyStore::Unavailable(why) = current else {
        return;
    };
    if let Some(KeyStore::Unavailable(before)) = previous
        && before == why
    {
        return;
    }
    tracing::error!(
        error = %why,
        "key store unavailable: mail that needs the gateway's keys (encrypted for it, or to be signed) waits; \
         it is tried again every {} s",
        RETRY.as_secs()
    );
}

/// The shared handle to the key store in force.
#[derive(Clone)]
pub struct Keys {
    current: Arc<RwLock<Arc<KeyStore>>>,
    reload: Arc<tokio::sync::Notify>,
    /// Sent after every load, with the store now in force.
    loaded: tokio::sync::watch::Sender<u64>,
    /// A [`Keys::follow`] task runs (the daemon): reloads are answered.
    followed: Arc<std::sync::atomic::AtomicBool>,
}

impl Keys {
    /// Loads the keys once, for a daemon about to start.
    pub async fn open(config: &Config) -> Keys {
        let store = load(config).await;
        report_unavailable(None, &store);
        Keys::with(store)
    }

    /// A handle holding `store` (for the CLI working on a stopped daemon's
    /// data directory, and for tests).
    pub fn with(store: KeyStore) -> Keys {
        Keys {
            current: Arc::new(RwLock::new(Arc::new(store))),
            reload: Arc::new(tokio::sync::Notify::new()),
            loaded: tokio::sync::watch::channel(0).0,
            followed: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    /// The key store in force; keep it for the whole attempt.
    pub fn current(&self) -> Arc<KeyStore> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Asks for a reload (after a key or certificate changed on the token)
    /// and waits until it is done.
    pub async fn reload(&self) {
        if !self.followed.load(std::sync::atomic::Ordering::SeqCst) {
            // No daemon runs: the next start loads the keys.
            return;
        }
        let mut loaded = self.loaded.subscribe();
        loaded.mark_unchanged();
        self.reload.notify_one();
        let _ = tokio::time::timeout(Duration::from_secs(30), loaded.changed()).await;
    }

    fn install(&self, store: KeyStore) {
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(store);
        self.loaded.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Loads the keys again on every SIGHUP and every [`Keys::reload`], so
    /// keys or certificates added to the token take effect without a
    /// restart; and, while the store is unavailable, every [`RETRY`] until
    /// it opens. Runs until the daemon stops.
    pub async fn follow(self, config: Arc<Config>) {
        use tokio::signal::unix::{SignalKind, signal};
        self.followed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let mut hangup = signal(SignalKind::hangup())
            .map_err(|e| tracing::warn!(error = %e, "cannot listen for SIGHUP"))
            .ok();
        loop {
            let retry = matches!(*self.current(), KeyStore::Unavailable(_));
            tokio::select! {
                Some(()) = async { hangup.as_mut()?.recv().await } => {
                    tracing::info!("SIGHUP: loading the gateway keys again");
                }
                () = self.reload.notified() => {}
                () = tokio::time::sleep(RETRY), if retry => {}
            }
            let loaded = load(&config).await;
            report_unavailable(Some(&self.current()), &loaded);
            let usable = !matches!(loaded, KeyStore::Unavailable(_));
            self.install(loaded);
            if usable {
                tracing::info!("gateway keys reloaded: delivery attempts from now on use them");
            }
        }
    }
}
