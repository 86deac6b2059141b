//! The settings version in force, applied without a restart.
//!
//! A [`Runtime`] is everything one settings version decides, built once
//! and never changed: the effective configuration, the compiled policy,
//! the TLS identity of the listeners, the distribution-list expander.
//! [`Live`] holds the current one; a unit of work (an SMTP session, a
//! delivery attempt) takes it at its start with [`Live::get`] and keeps it
//! to its end, so in-flight work finishes under the version it started
//! with and nothing is processed under a mix of two versions. A new
//! version is built (and checked) first and swapped in whole.
//!
//! Trusts: the settings store; a version is checked again here before it
//! is used, since in a cluster it may name a file this node lacks.

use std::sync::{Arc, RwLock};

use sealgate_api::FieldError;
use sealgate_api::settings::Settings;

use super::SettingsStore;
use crate::config::Config;
use crate::policy::Policy;

/// Everything one settings version decides, ready to use.
pub struct Runtime {
    pub version: u64,
    pub config: Arc<Config>,
    pub policy: Arc<Policy>,
    /// The listeners' TLS identity (SMTP STARTTLS and the web listener).
    pub tls: Arc<rustls::ServerConfig>,
    pub expander: Arc<crate::expand::Expander>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Builds and checks version `version` of `settings` over the
    /// bootstrap keys of `bootstrap`. Every problem names its key.
    pub fn build(
        bootstrap: &Config,
        version: u64,
        settings: &Settings,
    ) -> Result<Runtime, Vec<FieldError>> {
        let errors = crate::config::check_settings(settings);
        if !errors.is_empty() {
            return Err(errors);
        }
        let config = bootstrap.with_settings(settings);
        let policy = Policy::compile(config.policy.clone())
            .map_err(|(key, what)| vec![FieldError::new(key, what)])?;
        let tls = crate::tls::server_config(&config).map_err(|e| {
            let key = if config.smtp.tls_certificate.is_some() {
                "smtp.tls_certificate"
            } else {
                "smtp"
            };
            vec![FieldError::new(key, e.to_string())]
        })?;
        let expander = Arc::new(crate::expand::Expander::new(&config));
        Ok(Runtime {
            version,
            config: Arc::new(config),
            policy: Arc::new(policy),
            tls,
            expander,
        })
    }
}

/// The version in force.
pub struct Live {
    bootstrap: Arc<Config>,
    current: RwLock<Arc<Runtime>>,
    changed: tokio::sync::watch::Sender<u64>,
    /// The bootstrap file's settings differ from the version in force.
    file_differs: bool,
}

impl Live {
    pub fn new(bootstrap: Config, runtime: Runtime, file_differs: bool) -> Live {
        let (changed, _) = tokio::sync::watch::channel(runtime.version);
        Live {
            bootstrap: Arc::new(bootstrap),
            current: RwLock::new(Arc::new(runtime)),
            changed,
            file_differs,
        }
    }

    /// The version in force now; keep it for the whole unit of work.
    pub fn get(&self) -> Arc<Runtime> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The bootstrap configuration (the file as read at start).
    pub fn bootstrap(&self) -> &Arc<Config> {
        &self.bootstrap
    }

    pub fn file_differs(&self) -> bool {
        self.file_differs
    }

    /// Builds `settings` as version `version` over this node's bootstrap keys.
    pub fn build(&self, version: u64, settings: &Settings) -> Result<Runtime, Vec<FieldError>> {
        Runtime::build(&self.bootstrap, version, settings)
    }

    /// Puts `runtime` in force, unless a newer version already is.
    pub fn install(&self, runtime: Runtime) {
        let version = runtime.version;
        {
            let mut current = self
                .current
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if current.version >= version {
                return;
            }
            *current = Arc::new(runtime);
        }
        self.changed.send_replace(version);
        tracing::info!(version, "settings version in force");
    }

    /// A receiver that changes when a new version is in force.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// The settings in force at start: on the first start the bootstrap
/// file's settings become version 1 (author `bootstrap-file`, audited);
/// afterwards the store is authoritative, and a file whose settings differ
/// from the version in force is said so in one log line (and in `status`).
pub fn start(
    file: Config,
    store: &SettingsStore,
    audit: &crate::audit::Audit,
) -> std::io::Result<Live> {
    let from_file = file.settings();
    let invalid = |version: u64, errors: Vec<FieldError>| {
        std::io::Error::other(format!(
            "settings version {version} cannot be used: {}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ))
    };
    match store.current().map_err(std::io::Error::other)? {
        None => {
            let actor = sealgate_api::Actor::bootstrap_file();
            let meta = store
                .commit(
                    None,
                    from_file.clone(),
                    &actor,
                    Some("imported from the bootstrap file on the first start".into()),
                    None,
                )
                .map_err(std::io::Error::other)?;
            if let Err(e) = audit.record(
                &actor,
                "settings.import",
                serde_json::json!({ "version": meta.version }),
                sealgate_api::ops::audit::AuditOutcome::Done,
                0,
                meta.version,
            ) {
                tracing::warn!(error = %e, "audit record of the settings import not written");
            }
            let runtime = Runtime::build(&file, meta.version, &from_file)
                .map_err(|errors| invalid(meta.version, errors))?;
            Ok(Live::new(file, runtime, false))
        }
        Some(current) => {
            let differs = current.settings != from_file;
            if differs {
                tracing::warn!(
                    version = current.meta.version,
                    "the bootstrap file's settings differ from settings version {} in force; the \
                     store is authoritative (apply the file with `sealgate settings apply FILE`)",
                    current.meta.version
                );
            }
            let runtime = Runtime::build(&file, current.meta.version, &current.settings)
                .map_err(|errors| invalid(current.meta.version, errors))?;
            Ok(Live::new(file, runtime, differs))
        }
    }
}

/// Follows the settings store: every version stored (by this node's
/// service, or by another node of a cluster) is put in force. A version
/// that cannot be built here is logged and the one in force stays.
pub async fn follow(live: Arc<Live>, store: SettingsStore) {
    let mut changes = store.shared().subscribe(crate::store::Space::Settings);
    loop {
        if changes.changed().await.is_err() {
            return;
        }
        let current = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.current()).await
        };
        let version = match current {
            Ok(Ok(Some(version))) => version,
            Ok(Ok(None)) => continue,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "settings store not readable; the version in force stays");
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the settings store stopped");
                continue;
            }
        };
        if version.meta.version <= live.get().version {
            continue;
        }
        match live.build(version.meta.version, &version.settings) {
            Ok(runtime) => live.install(runtime),
            Err(errors) => tracing::error!(
                version = version.meta.version,
                errors = %errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
                "a new settings version cannot be applied on this node; the version in force stays"
            ),
        }
    }
}
