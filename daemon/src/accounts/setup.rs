//! The first-run setup on the server side: the one-time token opens a
//! setup session; the wizard's choices are kept as a draft in the shared
//! store (space `Setup`), so an interrupted wizard resumes where it
//! stopped; finishing creates the first administrator, applies the
//! draft as one settings version authored by them, burns the token and
//! ends every setup session.
//!
//! Wrong tokens are throttled for everyone at once (the token is the
//! only secret and 128 bits long; the throttle keeps the log and the CPU
//! quiet): after 5 failures each further one doubles the wait, up to 15
//! minutes. The web layer throttles per address on top.
//!
//! Trusts: the data directory (the token file); the service for the actor.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sealgate_api::ops::accounts::{SessionGrant, SessionKind, TotpEnrolment};
use sealgate_api::ops::setup::{CertificateChoice, DraftAdmin, SetupDraft, SetupState};
use sealgate_api::settings::Settings;
use sealgate_api::{Actor, Role, ServiceError, Via};
use serde::{Deserialize, Serialize};

use super::{Accounts, StoredAccount, check_name, hex, password, totp, unhex};
use crate::envelope::now_ms;
use crate::store::{SharedStore, Space};

/// The account name of setup sessions.
pub const SETUP_ACTOR: &str = "setup";

/// Where the wizard reads, checks and applies settings: the daemon's
/// settings store.
pub trait SettingsPort: Send + Sync {
    /// The version in force and its settings.
    fn current(&self) -> Result<(u64, Settings), ServiceError>;
    /// The whole check of a version; `Invalid` names every key.
    fn check(&self, settings: &Settings) -> Result<(), ServiceError>;
    /// Stores `settings` as a new version made from `base`, by `author`.
    fn apply(
        &self,
        author: &Actor,
        settings: Settings,
        base: u64,
        comment: &str,
    ) -> Result<u64, ServiceError>;
}

/// The first administrator while the wizard runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PendingAdmin {
    name: String,
    password_hash: String,
    secret: String,
    confirmed: bool,
    last_step: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredDraft {
    step: String,
    admin: Option<PendingAdmin>,
    settings: Settings,
    base_version: u64,
    certificate: CertificateChoice,
}

impl StoredDraft {
    fn view(&self) -> SetupDraft {
        SetupDraft {
            step: self.step.clone(),
            admin: self.admin.as_ref().map(|a| DraftAdmin {
                name: a.name.clone(),
                confirmed: a.confirmed,
            }),
            settings: self.settings.clone(),
            base_version: self.base_version,
            certificate: self.certificate,
        }
    }
}

const DRAFT_KEY: &[u8] = b"draft";
const FREE_FAILURES: u32 = 5;

/// The setup wizard's state.
pub struct Setup {
    data_dir: PathBuf,
    accounts: Arc<Accounts>,
    store: Arc<dyn SharedStore>,
    failures: Mutex<(u32, Option<Instant>)>,
}

impl Setup {
    pub fn new(data_dir: PathBuf, accounts: Arc<Accounts>, store: Arc<dyn SharedStore>) -> Setup {
        Setup {
            data_dir,
            accounts,
            store,
            failures: Mutex::new((0, None)),
        }
    }

    /// `setup.state`.
    pub fn state(&self) -> SetupState {
        let completed = self
            .data_dir
            .join(crate::setup_token::COMPLETED_MARKER)
            .exists();
        SetupState {
            open: !completed && crate::setup_token::read(&self.data_dir).is_some(),
            completed,
        }
    }

    fn ensure_open(&self, actor: &Actor) -> Result<(), ServiceError> {
        if !self.state().open {
            return Err(ServiceError::NotFound {
                what: "setup (the gateway is set up)".to_owned(),
            });
        }
        if actor.name != SETUP_ACTOR || actor.via != Via::Web {
            return Err(ServiceError::Denied {
                operation: "setup".to_owned(),
                role: actor.role,
            });
        }
        Ok(())
    }

    fn throttle(&self) -> std::sync::MutexGuard<'_, (u32, Option<Instant>)> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `setup.unlock`.
    pub fn unlock(&self, token: &str, from: Option<String>) -> Result<SessionGrant, ServiceError> {
        if !self.state().open {
            return Err(ServiceError::NotFound {
                what: "setup (the gateway is set up)".to_owned(),
            });
        }
        {
            let guard = self.throttle();
            if let Some(until) = guard.1
                && until > Instant::now()
            {
                return Err(ServiceError::Busy {
                    what: format!(
                        "Too many wrong setup tokens. Try again in {} s.",
                        (until - Instant::now()).as_secs().max(1)
                    ),
                });
            }
        }
        if !crate::setup_token::matches(&self.data_dir, token) {
            let mut guard = self.throttle();
            guard.0 = guard.0.saturating_add(1);
            if guard.0 > FREE_FAILURES {
                let doublings = (guard.0 - FREE_FAILURES - 1).min(20);
                guard.1 = Some(
                    Instant::now()
                        + Duration::from_secs(1u64 << doublings).min(Duration::from_secs(900)),
                );
            }
            tracing::warn!(from = ?from, "setup: a wrong setup token was presented");
            return Err(ServiceError::invalid("token", "not the setup token"));
        }
        *self.throttle() = (0, None);
        self.accounts
            .open_session(SessionKind::Setup, SETUP_ACTOR, Role::Admin, from)
    }

    fn load(&self, port: &dyn SettingsPort) -> Result<StoredDraft, ServiceError> {
        if let Some(bytes) = self.store.get(Space::Setup, DRAFT_KEY)? {
            return serde_json::from_slice(&bytes)
                .map_err(|e| ServiceError::failed(format!("setup draft unreadable: {e}")));
        }
        let (base_version, settings) = port.current()?;
        Ok(StoredDraft {
            step: "admin".to_owned(),
            admin: None,
            settings,
            base_version,
            certificate: CertificateChoice::Generated,
        })
    }

    fn store_draft(&self, draft: &StoredDraft) -> Result<(), ServiceError> {
        let bytes = serde_json::to_vec(draft)
            .map_err(|e| ServiceError::failed(format!("setup draft not encoded: {e}")))?;
        self.store.put(Space::Setup, DRAFT_KEY, &bytes)?;
        Ok(())
    }

    /// `setup.draft`.
    pub fn draft(
        &self,
        port: &dyn SettingsPort,
        actor: &Actor,
    ) -> Result<SetupDraft, ServiceError> {
        self.ensure_open(actor)?;
        Ok(self.load(port)?.view())
    }

    /// `setup.save`.
    pub fn save(
        &self,
        port: &dyn SettingsPort,
        actor: &Actor,
        settings: Settings,
        step: &str,
        certificate: Option<CertificateChoice>,
    ) -> Result<SetupDraft, ServiceError> {
        self.ensure_open(actor)?;
        port.check(&settings)?;
        let mut draft = self.load(port)?;
        draft.settings = settings;
        draft.step = step.to_owned();
        if let Some(c) = certificate {
            draft.certificate = c;
        }
        self.store_draft(&draft)?;
        Ok(draft.view())
    }

    /// `setup.admin`: checks name and password, answers the TOTP secret.
    pub fn admin(
        &self,
        port: &dyn SettingsPort,
        actor: &Actor,
        name: &str,
        password_text: &str,
    ) -> Result<TotpEnrolment, ServiceError> {
        self.ensure_open(actor)?;
        let mut errors = Vec::new();
        if let Err(e) = check_name(name) {
            errors.push(e);
        }
        if let Err(e) = password::check(password_text, name, "password") {
            errors.push(e);
        }
        if !errors.is_empty() {
            return Err(ServiceError::Invalid { errors });
        }
        let secret = totp::new_secret();
        let mut draft = self.load(port)?;
        draft.admin = Some(PendingAdmin {
            name: name.to_owned(),
            password_hash: password::hash(password_text).map_err(ServiceError::failed)?,
            secret: hex(&secret),
            confirmed: false,
            last_step: 0,
        });
        draft.step = "admin".to_owned();
        self.store_draft(&draft)?;
        Ok(TotpEnrolment {
            enrolment: String::new(),
            account: name.to_owned(),
            secret_base32: totp::base32(&secret),
            uri: totp::uri(name, &secret),
        })
    }

    /// `setup.admin_confirm`: the first code proves the app has the secret.
    pub fn admin_confirm(
        &self,
        port: &dyn SettingsPort,
        actor: &Actor,
        code: &str,
    ) -> Result<SetupDraft, ServiceError> {
        self.ensure_open(actor)?;
        let mut draft = self.load(port)?;
        let Some(admin) = draft.admin.as_mut() else {
            return Err(ServiceError::invalid(
                "name",
                "Choose the administrator first.",
            ));
        };
        let secret = unhex(&admin.secret).unwrap_or_default();
        let Some(step) = totp::verify(&secret, code, now_ms() / 1000, admin.last_step) else {
            return Err(ServiceError::invalid("code", "wrong code"));
        };
        admin.confirmed = true;
        admin.last_step = step;
        if draft.step == "admin" {
            draft.step = "identity".to_owned();
        }
        self.store_draft(&draft)?;
        Ok(draft.view())
    }

    /// `setup.finish`.
    pub fn finish(
        &self,
        port: &dyn SettingsPort,
        actor: &Actor,
    ) -> Result<SessionGrant, ServiceError> {
        self.ensure_open(actor)?;
        let draft = self.load(port)?;
        let Some(admin) = draft.admin.clone().filter(|a| a.confirmed) else {
            return Err(ServiceError::invalid(
                "admin",
                "The administrator and their second factor are not set up yet.",
            ));
        };
        port.check(&draft.settings)?;
        let account = StoredAccount {
            name: admin.name.clone(),
            role: Role::Admin,
            disabled: false,
            password_hash: admin.password_hash.clone(),
            totp_secret: Some(admin.secret.clone()),
            totp_last_step: admin.last_step,
            created_ms: now_ms(),
            created_by: SETUP_ACTOR.to_owned(),
            last_login_ms: Some(now_ms()),
        };
        self.accounts.put(&account)?;
        let author = Actor {
            name: admin.name.clone(),
            role: Role::Admin,
            via: Via::Web,
            from: actor.from.clone(),
        };
        let version = port.apply(
            &author,
            draft.settings.clone(),
            draft.base_version,
            "first-run setup",
        )?;
        crate::setup_token::complete(&self.data_dir)
            .map_err(|e| ServiceError::failed(format!("the setup token was not burned: {e}")))?;
        self.accounts.end_setup_sessions()?;
        self.store.remove(Space::Setup, DRAFT_KEY)?;
        tracing::info!(admin = %admin.name, version, "setup finished: the setup token is burned");
        self.accounts.open_session(
            SessionKind::Account,
            &admin.name,
            Role::Admin,
            actor.from.clone(),
        )
    }
}
