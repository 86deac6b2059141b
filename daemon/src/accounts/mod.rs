//! Web accounts and their sessions, kept in the shared store (spaces
//! `Accounts` and `Sessions`) so that every node of a cluster knows them.
//!
//! - An account: name, role, Argon2id password hash, TOTP secret (none
//!   until enrolled), the last TOTP step it used (a code is never
//!   accepted twice), disabled flag.
//! - A session id is 256 random bits handed to the browser once; the
//!   store keeps only its SHA-256 (`s:<hex>`), so reading the store
//!   gives no session away. A session ends after `idle` without use,
//!   after `absolute` in all, at logout, and when its account is
//!   disabled, changes role, or has its second factor reset or its
//!   password changed.
//! - An enrolment (a TOTP secret waiting for its first code) lives ten
//!   minutes under `e:<hex>` of its id.
//! - Logins: the same answer for an unknown account, a wrong password
//!   and a wrong or missing code (an unknown name still costs an Argon2
//!   verification); per account name, after 5 failures each further one
//!   doubles the wait (2 s … 15 min). The failures are counted in memory
//!   per node (names that do not exist are counted the same way).
//!
//! Trusts: its callers (the service) for the actor; nothing in a request.

pub mod password;
pub mod setup;
pub mod totp;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::digest;
use sealgate_api::ops::Done;
use sealgate_api::ops::accounts::{
    AccountInfo, LoginOutcome, SecondFactor, SessionGrant, SessionInfo, SessionKind, TotpEnrolment,
};
use sealgate_api::{Actor, FieldError, Role, ServiceError};
use serde::{Deserialize, Serialize};

use crate::envelope::now_ms;
use crate::store::{SharedStore, Space};

/// How long sessions live.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub idle: Duration,
    pub absolute: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            idle: Duration::from_secs(15 * 60),
            absolute: Duration::from_secs(8 * 3600),
        }
    }
}

/// How long an enrolment waits for its first code.
const ENROLMENT_LIFETIME_MS: u64 = 10 * 60 * 1000;
/// Failures per account name before delays begin.
const FREE_FAILURES: u32 = 5;
/// The longest wait after failed logins.
const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// Last-seen times are written at most this often (not on every request).
const TOUCH_EVERY_MS: u64 = 30_000;

/// An account as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredAccount {
    pub name: String,
    pub role: Role,
    pub disabled: bool,
    pub password_hash: String,
    /// The TOTP secret (raw bytes, hex); `None` until enrolled.
    pub totp_secret: Option<String>,
    /// The last TOTP step accepted.
    pub totp_last_step: u64,
    pub created_ms: u64,
    pub created_by: String,
    pub last_login_ms: Option<u64>,
}

impl StoredAccount {
    fn info(&self) -> AccountInfo {
        AccountInfo {
            name: self.name.clone(),
            role: self.role,
            disabled: self.disabled,
            second_factor: if self.totp_secret.is_some() {
                SecondFactor::Totp
            } else {
                SecondFactor::None
            },
            created_ms: self.created_ms,
            created_by: self.created_by.clone(),
            last_login_ms: self.last_login_ms,
        }
    }
}

/// A session as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSession {
    kind: SessionKind,
    account: String,
    role: Role,
    created_ms: u64,
    last_seen_ms: u64,
    from: Option<String>,
}

/// An enrolment as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredEnrolment {
    account: String,
    secret: String,
    created_ms: u64,
    from: Option<String>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    until: Instant,
}

/// Accounts and sessions.
pub struct Accounts {
    store: Arc<dyn SharedStore>,
    timeouts: Timeouts,
    failures: Mutex<HashMap<String, Failures>>,
}

/// SHA-256 of `text`, lower-case hex (how secrets are stored: by hash).
pub(crate) fn sha256_hex(text: &str) -> String {
    digest::digest(&digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect()
}

/// A new secret id: 256 random bits, base64url without padding.
fn new_id() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn session_key(id: &str) -> (Vec<u8>, String) {
    let hash = sha256_hex(id);
    let handle = hash.get(..12).unwrap_or_default().to_owned();
    (format!("s:{hash}").into_bytes(), handle)
}

fn account_key(name: &str) -> Vec<u8> {
    name.to_ascii_lowercase().into_bytes()
}

/// What every failed login says.
fn login_failed() -> ServiceError {
    ServiceError::invalid("login", "wrong name, password or code")
}

/// Account names: 1–64 of letters, digits, `.`, `_`, `-`, `@`.
pub fn check_name(name: &str) -> Result<(), FieldError> {
    if name.is_empty() || name.len() > 64 {
        return Err(FieldError::new("name", "1 to 64 characters."));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".-_@".contains(&b))
    {
        return Err(FieldError::new(
            "name",
            "Letters, digits, dot, dash, underscore and @ only.",
        ));
    }
    if name == "setup" || name == "root" || name == "-" {
        return Err(FieldError::new("name", "This name is reserved."));
    }
    Ok(())
}

/// The accounts and the setup wizard of a node, over its shared store,
/// with the session timeouts of the bootstrap file.
pub fn open(
    shared: &Arc<dyn SharedStore>,
    config: &crate::config::Config,
) -> (Arc<Accounts>, Arc<setup::Setup>) {
    let accounts = Arc::new(Accounts::new(
        shared.clone(),
        Timeouts {
            idle: Duration::from_secs(config.web.session_idle_secs),
            absolute: Duration::from_secs(config.web.session_max_secs),
        },
    ));
    let setup = Arc::new(setup::Setup::new(
        config.data_dir.clone(),
        accounts.clone(),
        shared.clone(),
    ));
    (accounts, setup)
}

impl Accounts {
    pub fn new(store: Arc<dyn SharedStore>, timeouts: Timeouts) -> Accounts {
        Accounts {
            store,
            timeouts,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &str) -> Result<T, ServiceError> {
        serde_json::from_slice(bytes)
            .map_err(|e| ServiceError::failed(format!("{what}: stored record unreadable: {e}")))
    }

    fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, ServiceError> {
        serde_json::to_vec(value).map_err(|e| ServiceError::failed(format!("not encoded: {e}")))
    }

    pub fn get(&self, name: &str) -> Result<Option<StoredAccount>, ServiceError> {
        match self.store.get(Space::Accounts, &account_key(name))? {
            Some(bytes) => Ok(Some(Self::decode(&bytes, "account")?)),
            None => Ok(None),
        }
    }

    pub fn put(&self, account: &StoredAccount) -> Result<(), ServiceError> {
        self.store.put(
            Space::Accounts,
            &account_key(&account.name),
            &Self::encode(account)?,
        )?;
        Ok(())
    }

    fn all(&self) -> Result<Vec<StoredAccount>, ServiceError> {
        self.store
            .range(Space::Accounts, &[], None, false, 10_000)?
            .into_iter()
            .map(|(_, v)| Self::decode(&v, "account"))
            .collect()
    }

    /// Whether any account exists.
    pub fn any(&self) -> Result<bool, ServiceError> {
        Ok(!self
            .store
            .range(Space::Accounts, &[], None, false, 1)?
            .is_empty())
    }

    // ---- throttling ------------------------------------------------------

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failures>> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn throttled(&self, name: &str) -> Result<(), ServiceError> {
        let now = Instant::now();
        if let Some(f) = self.failures().get(&name.to_ascii_lowercase())
            && f.until > now
        {
            return Err(ServiceError::Busy {
                what: format!(
                    "Too many failed logins for this account. Try again in {} s.",
                    (f.until - now).as_secs().max(1)
                ),
            });
        }
        Ok(())
    }

    fn failed(&self, name: &str) {
        let now = Instant::now();
        let mut failures = self.failures();
        if failures.len() > 10_000 {
            failures.retain(|_, f| f.until > now);
        }
        let f = failures
            .entry(name.to_ascii_lowercase())
            .or_insert(Failures {
                count: 0,
                until: now,
            });
        f.count = f.count.saturating_add(1);
        if f.count > FREE_FAILURES {
            // 2 s, 4 s, 8 s … after the free ones.
            let doublings = (f.count - FREE_FAILURES).min(20);
            f.until = now + Duration::from_secs(1u64 << doublings).min(MAX_DELAY);
        }
    }

    fn succeeded(&self, name: &str) {
        self.failures().remove(&name.to_ascii_lowercase());
    }

    // ---- sessions --------------------------------------------------------

    fn info(&self, stored: &StoredSession, handle: String) -> SessionInfo {
        let idle = u64::try_from(self.timeouts.idle.as_millis()).unwrap_or(u64::MAX);
        let absolute = u64::try_from(self.timeouts.absolute.as_millis()).unwrap_or(u64::MAX);
        let expires_ms = stored.created_ms.saturating_add(absolute);
        SessionInfo {
            kind: stored.kind,
            account: stored.account.clone(),
            role: stored.role,
            handle,
            created_ms: stored.created_ms,
            last_seen_ms: stored.last_seen_ms,
            idle_expires_ms: stored.last_seen_ms.saturating_add(idle).min(expires_ms),
            expires_ms,
            from: stored.from.clone(),
        }
    }

    /// Opens a new session (a new id every time: at login, at setup, at
    /// the end of setup).
    pub fn open_session(
        &self,
        kind: SessionKind,
        account: &str,
        role: Role,
        from: Option<String>,
    ) -> Result<SessionGrant, ServiceError> {
        let id = new_id();
        let (key, handle) = session_key(&id);
        let now = now_ms();
        let stored = StoredSession {
            kind,
            account: account.to_owned(),
            role,
            created_ms: now,
            last_seen_ms: now,
            from,
        };
        self.store
            .put(Space::Sessions, &key, &Self::encode(&stored)?)?;
        Ok(SessionGrant {
            id,
            session: self.info(&stored, handle),
        })
    }

    /// The live session with this id; an expired one is removed.
    pub fn session(&self, id: &str, touch: bool) -> Result<SessionInfo, ServiceError> {
        let (key, handle) = session_key(id);
        let gone = || ServiceError::NotFound {
            what: "session".to_owned(),
        };
        let Some(bytes) = self.store.get(Space::Sessions, &key)? else {
            return Err(gone());
        };
        let mut stored: StoredSession = Self::decode(&bytes, "session")?;
        let now = now_ms();
        let info = self.info(&stored, handle.clone());
        if now >= info.idle_expires_ms || now >= info.expires_ms {
            self.store.remove(Space::Sessions, &key)?;
            return Err(gone());
        }
        let idle_ms = u64::try_from(self.timeouts.idle.as_millis()).unwrap_or(u64::MAX);
        if touch && now.saturating_sub(stored.last_seen_ms) >= TOUCH_EVERY_MS.min(idle_ms / 4) {
            stored.last_seen_ms = now;
            let new = Self::encode(&stored)?;
            // Lost to a concurrent touch or logout: either way nothing to redo.
            let _ = self
                .store
                .compare_and_swap(Space::Sessions, &key, Some(&bytes), Some(&new))?;
            return Ok(self.info(&stored, handle));
        }
        Ok(info)
    }

    /// Ends the session with this id (done if it had ended already).
    pub fn logout(&self, id: &str) -> Result<Done, ServiceError> {
        let (key, _) = session_key(id);
        self.store.remove(Space::Sessions, &key)?;
        Ok(Done {
            text: "logged out".to_owned(),
            ..Done::default()
        })
    }

    /// Every stored session with its key and handle.
    fn sessions(&self) -> Result<Vec<(Vec<u8>, String, StoredSession)>, ServiceError> {
        self.store
            .scan_prefix(Space::Sessions, b"s:", 100_000)?
            .into_iter()
            .map(|(k, v)| {
                let handle = String::from_utf8_lossy(k.get(2..14).unwrap_or_default()).into_owned();
                Ok((k, handle, Self::decode(&v, "session")?))
            })
            .collect()
    }

    /// Ends every session matching `which` except the one with handle
    /// `keep`; returns how many ended.
    fn end_sessions(
        &self,
        which: impl Fn(&StoredSession) -> bool,
        keep: Option<&str>,
    ) -> Result<usize, ServiceError> {
        let mut ended = 0;
        for (key, handle, s) in self.sessions()? {
            if which(&s) && keep != Some(handle.as_str()) {
                self.store.remove(Space::Sessions, &key)?;
                ended += 1;
            }
        }
        Ok(ended)
    }

    /// Ends every setup session (when setup finishes).
    pub fn end_setup_sessions(&self) -> Result<usize, ServiceError> {
        self.end_sessions(|s| s.kind == SessionKind::Setup, None)
    }

    /// The caller's own sessions, newest first (expired ones removed).
    pub fn my_sessions(&self, actor: &Actor) -> Result<Vec<SessionInfo>, ServiceError> {
        let now = now_ms();
        let mut out = Vec::new();
        for (key, handle, s) in self.sessions()? {
            if s.kind != SessionKind::Account || !s.account.eq_ignore_ascii_case(&actor.name) {
                continue;
            }
            let info = self.info(&s, handle);
            if now >= info.idle_expires_ms {
                self.store.remove(Space::Sessions, &key)?;
                continue;
            }
            out.push(info);
        }
        out.sort_by_key(|s| std::cmp::Reverse(s.created_ms));
        Ok(out)
    }

    /// Ends one of the caller's own sessions, by its handle.
    pub fn end_session(&self, actor: &Actor, handle: &str) -> Result<Done, ServiceError> {
        for (key, h, s) in self.sessions()? {
            if h == handle
                && s.kind == SessionKind::Account
                && s.account.eq_ignore_ascii_case(&actor.name)
            {
                self.store.remove(Space::Sessions, &key)?;
                return Ok(Done {
                    text: "session ended".to_owned(),
                    changed: vec![h],
                    ..Done::default()
                });
            }
        }
        Err(ServiceError::NotFound {
            what: format!("session {handle}"),
        })
    }

    // ---- login -----------------------------------------------------------

    /// `auth.login`.
    pub fn login(
        &self,
        name: &str,
        password_text: &str,
        code: Option<&str>,
        from: Option<String>,
    ) -> Result<LoginOutcome, ServiceError> {
        self.throttled(name)?;
        let account = self.get(name)?;
        let hash = account
            .as_ref()
            .map_or_else(|| password::decoy().to_owned(), |a| a.password_hash.clone());
        let password_ok = password::verify(password_text, &hash);
        let Some(mut account) = account.filter(|a| password_ok && !a.disabled) else {
            self.failed(name);
            return Err(login_failed());
        };
        let Some(secret) = account.totp_secret.as_deref().and_then(unhex) else {
            // No second factor yet: enrol one before the session begins.
            self.succeeded(name);
            return self.enrolment(&account.name, from).map(LoginOutcome::Enrol);
        };
        let now_secs = now_ms() / 1000;
        let step = code.and_then(|c| totp::verify(&secret, c, now_secs, account.totp_last_step));
        let Some(step) = step else {
            self.failed(name);
            return Err(login_failed());
        };
        account.totp_last_step = step;
        account.last_login_ms = Some(now_ms());
        self.save_step(&account, step)?;
        self.succeeded(name);
        let grant = self.open_session(SessionKind::Account, &account.name, account.role, from)?;
        Ok(LoginOutcome::Session(grant))
    }

    /// Stores an accepted TOTP step unless another login stored a later
    /// one first (then this code counts as used: refused).
    fn save_step(&self, account: &StoredAccount, step: u64) -> Result<(), ServiceError> {
        let key = account_key(&account.name);
        for _ in 0..8 {
            let Some(bytes) = self.store.get(Space::Accounts, &key)? else {
                return Err(login_failed());
            };
            let mut current: StoredAccount = Self::decode(&bytes, "account")?;
            if current.totp_last_step >= step {
                return Err(login_failed());
            }
            current.totp_last_step = step;
            current.last_login_ms = account.last_login_ms;
            let new = Self::encode(&current)?;
            if self
                .store
                .compare_and_swap(Space::Accounts, &key, Some(&bytes), Some(&new))?
            {
                return Ok(());
            }
        }
        Err(ServiceError::Busy {
            what: "the account is being changed; try again".to_owned(),
        })
    }

    fn enrolment(
        &self,
        account: &str,
        from: Option<String>,
    ) -> Result<TotpEnrolment, ServiceError> {
        let secret = totp::new_secret();
        let id = new_id();
        let stored = StoredEnrolment {
            account: account.to_owned(),
            secret: hex(&secret),
            created_ms: now_ms(),
            from,
        };
        self.store.put(
            Space::Sessions,
            format!("e:{}", sha256_hex(&id)).as_bytes(),
            &Self::encode(&stored)?,
        )?;
        Ok(TotpEnrolment {
            enrolment: id,
            account: account.to_owned(),
            secret_base32: totp::base32(&secret),
            uri: totp::uri(account, &secret),
        })
    }

    /// `auth.enrol_totp`: the first code confirms the secret; the session begins.
    pub fn enrol_totp(&self, enrolment: &str, code: &str) -> Result<SessionGrant, ServiceError> {
        let key = format!("e:{}", sha256_hex(enrolment)).into_bytes();
        let gone = || ServiceError::NotFound {
            what: "enrolment".to_owned(),
        };
        let Some(bytes) = self.store.get(Space::Sessions, &key)? else {
            return Err(gone());
        };
        let e: StoredEnrolment = Self::decode(&bytes, "enrolment")?;
        if now_ms().saturating_sub(e.created_ms) > ENROLMENT_LIFETIME_MS {
            self.store.remove(Space::Sessions, &key)?;
            return Err(gone());
        }
        self.throttled(&e.account)?;
        let secret = unhex(&e.secret).ok_or_else(gone)?;
        let Some(step) = totp::verify(&secret, code, now_ms() / 1000, 0) else {
            self.failed(&e.account);
            return Err(ServiceError::invalid("code", "wrong code"));
        };
        let Some(mut account) = self.get(&e.account)? else {
            return Err(gone());
        };
        if account.disabled || account.totp_secret.is_some() {
            return Err(gone());
        }
        account.totp_secret = Some(e.secret.clone());
        account.totp_last_step = step;
        account.last_login_ms = Some(now_ms());
        self.put(&account)?;
        self.store.remove(Space::Sessions, &key)?;
        self.succeeded(&e.account);
        self.open_session(SessionKind::Account, &account.name, account.role, e.from)
    }

    // ---- administration --------------------------------------------------

    pub fn list(&self) -> Result<Vec<AccountInfo>, ServiceError> {
        Ok(self.all()?.iter().map(StoredAccount::info).collect())
    }

    /// A new account, `created_by` the actor; TOTP is enrolled at first login.
    pub fn create(
        &self,
        actor: &Actor,
        name: &str,
        role: Role,
        password_text: &str,
    ) -> Result<AccountInfo, ServiceError> {
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
        let account = StoredAccount {
            name: name.to_owned(),
            role,
            disabled: false,
            password_hash: password::hash(password_text).map_err(ServiceError::failed)?,
            totp_secret: None,
            totp_last_step: 0,
            created_ms: now_ms(),
            created_by: actor.name.clone(),
            last_login_ms: None,
        };
        let value = Self::encode(&account)?;
        if !self
            .store
            .compare_and_swap(Space::Accounts, &account_key(name), None, Some(&value))?
        {
            return Err(ServiceError::invalid(
                "name",
                "An account with this name exists.",
            ));
        }
        Ok(account.info())
    }

    fn change(
        &self,
        name: &str,
        f: impl Fn(&mut StoredAccount),
    ) -> Result<StoredAccount, ServiceError> {
        let key = account_key(name);
        for _ in 0..8 {
            let Some(bytes) = self.store.get(Space::Accounts, &key)? else {
                return Err(ServiceError::NotFound {
                    what: format!("account {name}"),
                });
            };
            let mut account: StoredAccount = Self::decode(&bytes, "account")?;
            f(&mut account);
            let new = Self::encode(&account)?;
            if self
                .store
                .compare_and_swap(Space::Accounts, &key, Some(&bytes), Some(&new))?
            {
                return Ok(account);
            }
        }
        Err(ServiceError::Busy {
            what: format!("account {name} is being changed; try again"),
        })
    }

    fn end_all_of(&self, name: &str, keep: Option<&str>) -> Result<usize, ServiceError> {
        self.end_sessions(
            |s| s.kind == SessionKind::Account && s.account.eq_ignore_ascii_case(name),
            keep,
        )
    }

    /// Role and/or disabled; ends the account's sessions. An
    /// administrator cannot demote or disable themselves (so that one
    /// always remains).
    pub fn update(
        &self,
        actor: &Actor,
        name: &str,
        role: Option<Role>,
        disabled: Option<bool>,
    ) -> Result<AccountInfo, ServiceError> {
        if name.eq_ignore_ascii_case(&actor.name) {
            return Err(ServiceError::invalid(
                "name",
                "You cannot change your own role or disable yourself; ask another administrator.",
            ));
        }
        let account = self.change(name, |a| {
            if let Some(r) = role {
                a.role = r;
            }
            if let Some(d) = disabled {
                a.disabled = d;
            }
        })?;
        self.end_all_of(name, None)?;
        Ok(account.info())
    }

    /// Forgets the second factor; ends the account's sessions.
    pub fn reset_second_factor(&self, name: &str) -> Result<AccountInfo, ServiceError> {
        let account = self.change(name, |a| {
            a.totp_secret = None;
        })?;
        self.end_all_of(name, None)?;
        Ok(account.info())
    }

    /// The caller's own password; their other sessions end.
    pub fn change_password(
        &self,
        actor: &Actor,
        old: &str,
        new: &str,
        keep: &str,
    ) -> Result<Done, ServiceError> {
        let Some(account) = self.get(&actor.name)? else {
            return Err(ServiceError::NotFound {
                what: format!("account {}", actor.name),
            });
        };
        if !password::verify(old, &account.password_hash) {
            self.failed(&actor.name);
            return Err(ServiceError::invalid(
                "old",
                "That is not your current password.",
            ));
        }
        password::check(new, &actor.name, "password")
            .map_err(|e| ServiceError::Invalid { errors: vec![e] })?;
        let hash = password::hash(new).map_err(ServiceError::failed)?;
        self.change(&actor.name, |a| a.password_hash.clone_from(&hash))?;
        let ended = self.end_all_of(&actor.name, Some(keep))?;
        Ok(Done {
            text: format!("password changed; {ended} other session(s) ended"),
            ..Done::default()
        })
    }
}

#[cfg(test)]
mod tests;
