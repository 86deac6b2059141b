//! Portal accounts: one per external address, created when the recipient
//! proves control of the address (a one-time code sent there) and sets a
//! password; sessions kept by hash; lockout after failed logins.
//!
//! Reuses the administrator accounts' parts rather than copies:
//! `crate::accounts::password` (Argon2id, the common-password check, the
//! decoy hash that makes an unknown address cost the same verification)
//! and `crate::accounts::totp` (RFC 6238 with a replay guard).
//!
//! In the shared store (keyspaces `portal_accounts`, `portal_codes`,
//! `portal_sessions`: the node's sled, or the cluster's PostgreSQL), so an
//! account and its sessions work through every node of a cluster.
//!
//! Trusts: nothing in a request. Never stores a password, code or session
//! id, only their hashes.

pub mod passkey;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;

use sealgate_api::{FieldError, ServiceError};

use super::kv::Kv;
use crate::accounts::{hex, password, sha256_hex, totp, unhex};
use crate::envelope::now_ms;
use crate::store::{SharedStore, Space};

/// A code is valid this long.
const CODE_LIFETIME_MS: u64 = 15 * 60 * 1000;
/// At most one code per address in this time.
const CODE_EVERY_MS: u64 = 60 * 1000;
/// Wrong tries before a code is void.
const CODE_TRIES: u32 = 5;
/// A session ends after this long without a request…
const SESSION_IDLE_MS: u64 = 15 * 60 * 1000;
/// …or this long after login.
const SESSION_MAX_MS: u64 = 8 * 3600 * 1000;
/// A TOTP enrolment must be confirmed within this time.
const ENROLMENT_MS: u64 = 10 * 60 * 1000;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Account {
    address: String,
    password_hash: String,
    totp_secret: Option<String>,
    totp_last_step: u64,
    failures: u32,
    locked_until_ms: u64,
    created_ms: u64,
    /// The notification language the recipient chose (`None`: the domain's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    language: Option<String>,
    /// How the recipient chose to get mail without a key: `push` or
    /// `pull` (`None`: as the domain is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delivery: Option<String>,
    /// The passkeys (WebAuthn) registered as second factors; records
    /// written before passkeys existed have none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    passkeys: Vec<passkey::StoredPasskey>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Code {
    hash: String,
    created_ms: u64,
    tries: u32,
    /// SHA-256 of the reset link's token sent with the code (the link
    /// does what the code does, once, within the code's lifetime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    link_hash: Option<String>,
}

/// A one-time code and the link token that goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCode {
    /// Six digits, typed into the code page.
    pub code: String,
    /// 256 random bits for the link `/reset/{token}`.
    pub link: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Session {
    address: String,
    created_ms: u64,
    last_ms: u64,
    /// Names the session in the preferences' list (random; not the id nor
    /// derived from it). Records from before it have none until listed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    handle: String,
    /// The client's IP address at login, as the web layer saw it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    ip: String,
    /// The client's `User-Agent` at login, bounded and cleaned.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    agent: String,
}

impl Session {
    fn live(&self, now: u64) -> bool {
        now.saturating_sub(self.last_ms) <= SESSION_IDLE_MS
            && now.saturating_sub(self.created_ms) <= SESSION_MAX_MS
    }
}

/// The most of a `User-Agent` kept with a session.
const AGENT_CHARS: usize = 120;

/// A `User-Agent` as kept: without control and bidirectional-formatting
/// characters (they could disguise what the list shows), at most
/// [`AGENT_CHARS`] characters.
fn clean_agent(agent: &str) -> String {
    agent
        .chars()
        .filter(|c| {
            !c.is_control()
                && !matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
        })
        .take(AGENT_CHARS)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// An IP address as kept: only one that parses, in its canonical form.
fn clean_ip(ip: &str) -> String {
    ip.trim()
        .parse::<std::net::IpAddr>()
        .map(|a| a.to_string())
        .unwrap_or_default()
}

fn session_key(id: &str) -> String {
    format!("s:{}", sha256_hex(id))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Enrolment {
    address: String,
    secret: String,
    created_ms: u64,
}

/// How a login or enrolment ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new session id.
    Session(String),
    /// Set up TOTP first: the enrolment id and the secret.
    EnrolTotp { enrolment: String, secret: Vec<u8> },
    /// The password is right and the account has passkeys: the second
    /// step asks for one (`passkey::PortalAccounts::begin_login`).
    Passkey { address: String, totp: bool },
}

/// The portal's accounts, codes and sessions.
pub struct PortalAccounts {
    accounts: Kv,
    codes: Kv,
    sessions: Kv,
}

fn new_token() -> Result<String, ServiceError> {
    let bytes = super::seal::random::<32>().map_err(|e| ServiceError::failed(e.to_string()))?;
    use base64::Engine as _;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn storage(e: impl std::fmt::Display) -> ServiceError {
    tracing::warn!(error = %e, "portal accounts: storage failed");
    ServiceError::Unavailable {
        what: "the portal's storage".into(),
    }
}

/// The one answer for every failed login: unknown address, wrong
/// password, wrong code, locked account.
pub fn login_failed() -> ServiceError {
    ServiceError::invalid(
        "password",
        "The address, password or code is not right, or the account is locked for a while.",
    )
}

fn link_failed() -> ServiceError {
    ServiceError::invalid(
        "link",
        "This link is not valid any more: it was used, or it is older than 15 minutes. Ask for a new one.",
    )
}

/// Where a link token's hash points to its address (in `portal_codes`).
fn link_key(hash: &str) -> String {
    format!("l:{hash}")
}

fn code_failed() -> ServiceError {
    ServiceError::invalid("code", "The code is not right or no longer valid.")
}

impl PortalAccounts {
    pub fn open(shared: &std::sync::Arc<dyn SharedStore>) -> PortalAccounts {
        PortalAccounts {
            accounts: Kv::new(shared.clone(), Space::PortalAccounts),
            codes: Kv::new(shared.clone(), Space::PortalCodes),
            sessions: Kv::new(shared.clone(), Space::PortalSessions),
        }
    }

    fn get<T: serde::de::DeserializeOwned>(
        tree: &Kv,
        key: &str,
    ) -> Result<Option<T>, ServiceError> {
        match tree.get(key.as_bytes()).map_err(storage)? {
            Some(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
            None => Ok(None),
        }
    }

    fn put<T: Serialize>(tree: &Kv, key: &str, value: &T) -> Result<(), ServiceError> {
        let json = serde_json::to_vec(value).map_err(storage)?;
        tree.insert(key.as_bytes(), json).map_err(storage)?;
        tree.flush().map_err(storage)
    }

    /// Whether `address` has an account.
    pub fn exists(&self, address: &str) -> Result<bool, ServiceError> {
        Ok(Self::get::<Account>(&self.accounts, &address.to_ascii_lowercase())?.is_some())
    }

    /// A new six-digit code and link token for `address`, unless one went
    /// out less than a minute ago (then `None`: nothing is sent, the answer
    /// is the same). A new code voids the previous code and link.
    pub fn new_code(&self, address: &str) -> Result<Option<NewCode>, ServiceError> {
        let key = address.to_ascii_lowercase();
        let now = now_ms();
        let old = Self::get::<Code>(&self.codes, &key)?;
        if let Some(old) = &old
            && now.saturating_sub(old.created_ms) < CODE_EVERY_MS
        {
            return Ok(None);
        }
        let n = u32::from_be_bytes(
            super::seal::random::<4>().map_err(|e| ServiceError::failed(e.to_string()))?,
        ) % 1_000_000;
        let code = format!("{n:06}");
        let link = new_token()?;
        let link_hash = sha256_hex(&link);
        if let Some(old) = &old {
            self.void(&key, old)?;
        }
        Self::put(&self.codes, &link_key(&link_hash), &key)?;
        Self::put(
            &self.codes,
            &key,
            &Code {
                hash: sha256_hex(&format!("{key}\0{code}")),
                created_ms: now,
                tries: 0,
                link_hash: Some(link_hash),
            },
        )?;
        Ok(Some(NewCode { code, link }))
    }

    /// Removes a code and its link.
    fn void(&self, key: &str, code: &Code) -> Result<(), ServiceError> {
        if let Some(h) = &code.link_hash {
            self.codes.remove(link_key(h).as_bytes()).map_err(storage)?;
        }
        self.codes.remove(key.as_bytes()).map_err(storage)?;
        Ok(())
    }

    /// The address a reset link was sent to, while the link is valid
    /// (unused, not expired, its code not used up). Consumes nothing.
    pub fn link_address(&self, token: &str) -> Result<String, ServiceError> {
        self.live_link(token).map(|(address, _)| address)
    }

    /// The address of a valid link and the code it goes with; an expired
    /// or used-up one is voided on the way.
    fn live_link(&self, token: &str) -> Result<(String, Code), ServiceError> {
        let hash = sha256_hex(token);
        let Some(address) = Self::get::<String>(&self.codes, &link_key(&hash))? else {
            return Err(link_failed());
        };
        match Self::get::<Code>(&self.codes, &address)? {
            Some(code)
                if code.link_hash.as_deref() == Some(hash.as_str())
                    && now_ms().saturating_sub(code.created_ms) <= CODE_LIFETIME_MS
                    && code.tries < CODE_TRIES =>
            {
                Ok((address, code))
            }
            Some(code) => {
                self.void(&address, &code)?;
                Err(link_failed())
            }
            None => Err(link_failed()),
        }
    }

    /// Sets `new_password` for the address a reset link was sent to,
    /// using the link up (and its code); as [`Self::enrol`] otherwise.
    /// `totp_required` says whether the address's domain needs a second
    /// factor.
    pub fn reset_with_link(
        &self,
        token: &str,
        new_password: &str,
        totp_required: impl FnOnce(&str) -> bool,
    ) -> Result<(String, Outcome), ServiceError> {
        let (key, code) = self.live_link(token)?;
        // Checked before the link is used up: a weak password does not
        // cost the recipient the link.
        password::check(new_password, &key, "password")
            .map_err(|e| ServiceError::Invalid { errors: vec![e] })?;
        self.void(&key, &code)?;
        let totp = totp_required(&key);
        let outcome = self.set_password(&key, new_password, totp)?;
        Ok((key, outcome))
    }

    fn take_code(&self, address: &str, code: &str) -> Result<(), ServiceError> {
        let key = address.to_ascii_lowercase();
        let Some(mut stored) = Self::get::<Code>(&self.codes, &key)? else {
            return Err(code_failed());
        };
        if now_ms().saturating_sub(stored.created_ms) > CODE_LIFETIME_MS
            || stored.tries >= CODE_TRIES
        {
            self.void(&key, &stored)?;
            return Err(code_failed());
        }
        let given = sha256_hex(&format!("{key}\0{}", code.trim()));
        if !bool::from(given.as_bytes().ct_eq(stored.hash.as_bytes())) {
            stored.tries += 1;
            Self::put(&self.codes, &key, &stored)?;
            return Err(code_failed());
        }
        self.void(&key, &stored)?;
        Ok(())
    }

    /// Proves `address` with `code` and sets `new_password` (first visit,
    /// or a reset: a reset asks for the second factor again).
    pub fn enrol(
        &self,
        address: &str,
        code: &str,
        new_password: &str,
        totp_required: bool,
    ) -> Result<Outcome, ServiceError> {
        let key = address.to_ascii_lowercase();
        password::check(new_password, &key, "password")
            .map_err(|e| ServiceError::Invalid { errors: vec![e] })?;
        self.take_code(&key, code)?;
        self.set_password(&key, new_password, totp_required)
    }

    /// After the address is proven: the new password, the second factor
    /// enrolled again where required, every old session ended.
    fn set_password(
        &self,
        key: &str,
        new_password: &str,
        totp_required: bool,
    ) -> Result<Outcome, ServiceError> {
        let hash = password::hash(new_password).map_err(ServiceError::failed)?;
        // A reset keeps what the recipient chose.
        let (language, delivery) = Self::get::<Account>(&self.accounts, key)?
            .map_or((None, None), |a| (a.language, a.delivery));
        let account = Account {
            address: key.to_owned(),
            password_hash: hash,
            totp_secret: None,
            totp_last_step: 0,
            failures: 0,
            locked_until_ms: 0,
            created_ms: now_ms(),
            language,
            delivery,
            // Like the TOTP secret, the passkeys go with a reset: the second
            // factor is enrolled again.
            passkeys: Vec::new(),
        };
        Self::put(&self.accounts, key, &account)?;
        // A reset ends every session of the address.
        self.end_sessions_of(key)?;
        if totp_required {
            return self.enrolment(key);
        }
        self.open_session(key).map(Outcome::Session)
    }

    fn enrolment(&self, address: &str) -> Result<Outcome, ServiceError> {
        let secret = totp::new_secret();
        let id = new_token()?;
        Self::put(
            &self.sessions,
            &format!("e:{}", sha256_hex(&id)),
            &Enrolment {
                address: address.to_owned(),
                secret: hex(&secret),
                created_ms: now_ms(),
            },
        )?;
        Ok(Outcome::EnrolTotp {
            enrolment: id,
            secret,
        })
    }

    /// Confirms a TOTP enrolment with its first code; the session begins.
    pub fn confirm_totp(&self, enrolment: &str, code: &str) -> Result<String, ServiceError> {
        let key = format!("e:{}", sha256_hex(enrolment));
        let Some(e) = Self::get::<Enrolment>(&self.sessions, &key)? else {
            return Err(code_failed());
        };
        if now_ms().saturating_sub(e.created_ms) > ENROLMENT_MS {
            self.sessions.remove(key.as_bytes()).map_err(storage)?;
            return Err(code_failed());
        }
        let secret = unhex(&e.secret).ok_or_else(code_failed)?;
        let Some(step) = totp::verify(&secret, code, now_ms() / 1000, 0) else {
            return Err(code_failed());
        };
        let Some(mut account) = Self::get::<Account>(&self.accounts, &e.address)? else {
            return Err(code_failed());
        };
        account.totp_secret = Some(e.secret);
        account.totp_last_step = step;
        Self::put(&self.accounts, &e.address, &account)?;
        self.sessions.remove(key.as_bytes()).map_err(storage)?;
        self.open_session(&e.address)
    }

    /// Logs in; every failure gives [`login_failed`]. `lockout` is
    /// (failures in a row, seconds locked).
    pub fn login(
        &self,
        address: &str,
        password_text: &str,
        code: Option<&str>,
        totp_required: bool,
        lockout: (u32, u64),
    ) -> Result<Outcome, ServiceError> {
        let key = address.to_ascii_lowercase();
        let account = Self::get::<Account>(&self.accounts, &key)?;
        let hash = account
            .as_ref()
            .map_or_else(|| password::decoy().to_owned(), |a| a.password_hash.clone());
        // Verified in every case, so an unknown address costs the same.
        let password_ok = password::verify(password_text, &hash);
        let Some(mut account) = account else {
            return Err(login_failed());
        };
        let now = now_ms();
        if account.locked_until_ms > now {
            return Err(login_failed());
        }
        let totp_secret = account.totp_secret.as_deref().and_then(unhex);
        let has_passkeys = !account.passkeys.is_empty();
        // A code given for an account with TOTP is checked; else an
        // account with passkeys goes on to the passkey step (the password
        // alone opens nothing); else an account with TOTP needs the code.
        /// What the second factor says.
        enum Second {
            /// Passed (with the TOTP step used, if any).
            Passed(Option<u64>),
            /// Ask for a passkey next.
            Passkey,
            Failed,
        }
        let second = match (&totp_secret, code, has_passkeys) {
            (Some(secret), Some(c), _) => {
                totp::verify(secret, c, now / 1000, account.totp_last_step)
                    .map_or(Second::Failed, |step| Second::Passed(Some(step)))
            }
            (_, _, true) => Second::Passkey,
            (Some(_), None, false) => Second::Failed,
            (None, _, false) => Second::Passed(None),
        };
        match (password_ok, second) {
            (true, Second::Passkey) => Ok(Outcome::Passkey {
                address: key,
                totp: totp_secret.is_some(),
            }),
            (true, Second::Passed(step)) => {
                account.failures = 0;
                if let Some(step) = step {
                    account.totp_last_step = step;
                }
                Self::put(&self.accounts, &key, &account)?;
                if totp_required && account.totp_secret.is_none() && account.passkeys.is_empty() {
                    return self.enrolment(&key);
                }
                self.open_session(&key).map(Outcome::Session)
            }
            _ => {
                account.failures += 1;
                if account.failures >= lockout.0 {
                    account.failures = 0;
                    account.locked_until_ms = now.saturating_add(lockout.1.saturating_mul(1000));
                    tracing::info!(address = %key, "portal account locked after failed logins");
                }
                Self::put(&self.accounts, &key, &account)?;
                Err(login_failed())
            }
        }
    }

    /// The notification language `address` chose, if it has an account
    /// and chose one.
    pub fn language(&self, address: &str) -> Result<Option<String>, ServiceError> {
        Ok(
            Self::get::<Account>(&self.accounts, &address.to_ascii_lowercase())?
                .and_then(|a| a.language),
        )
    }

    /// The delivery the recipient chose (`push` or `pull`), if any.
    pub fn delivery(&self, address: &str) -> Result<Option<String>, ServiceError> {
        Ok(
            Self::get::<Account>(&self.accounts, &address.to_ascii_lowercase())?
                .and_then(|a| a.delivery),
        )
    }

    /// Sets (or with `None` clears) the delivery of an existing account.
    pub fn set_delivery(&self, address: &str, delivery: Option<&str>) -> Result<(), ServiceError> {
        let key = address.to_ascii_lowercase();
        let Some(mut account) = Self::get::<Account>(&self.accounts, &key)? else {
            return Err(ServiceError::NotFound {
                what: "account".into(),
            });
        };
        account.delivery = delivery.map(str::to_owned);
        Self::put(&self.accounts, &key, &account)
    }

    /// Sets (or with `None` clears) the notification language of an
    /// existing account.
    pub fn set_language(&self, address: &str, language: Option<&str>) -> Result<(), ServiceError> {
        let key = address.to_ascii_lowercase();
        let Some(mut account) = Self::get::<Account>(&self.accounts, &key)? else {
            return Err(ServiceError::NotFound {
                what: "account".into(),
            });
        };
        account.language = language.map(str::to_owned);
        Self::put(&self.accounts, &key, &account)
    }

    /// A new password for the account of a live session, given the
    /// current one. Every other session of the address ends; `keep` (the
    /// session that asked) goes on. A wrong current password counts as a
    /// failed login (lockout included).
    pub fn change_password(
        &self,
        address: &str,
        keep: &str,
        current: &str,
        new_password: &str,
        lockout: (u32, u64),
    ) -> Result<(), ServiceError> {
        let key = address.to_ascii_lowercase();
        let Some(mut account) = Self::get::<Account>(&self.accounts, &key)? else {
            return Err(ServiceError::NotFound {
                what: "account".into(),
            });
        };
        if !password::verify(current, &account.password_hash) {
            account.failures += 1;
            if account.failures >= lockout.0 {
                account.failures = 0;
                account.locked_until_ms = now_ms().saturating_add(lockout.1.saturating_mul(1000));
            }
            Self::put(&self.accounts, &key, &account)?;
            return Err(ServiceError::invalid(
                "current",
                "The current password is not right.",
            ));
        }
        password::check(new_password, &key, "new")
            .map_err(|e| ServiceError::Invalid { errors: vec![e] })?;
        account.password_hash = password::hash(new_password).map_err(ServiceError::failed)?;
        account.failures = 0;
        Self::put(&self.accounts, &key, &account)?;
        let kept = session_key(keep);
        self.end_sessions_where(&key, |k| k != kept.as_bytes())
            .map(drop)
    }

    fn open_session(&self, address: &str) -> Result<String, ServiceError> {
        let id = new_token()?;
        let now = now_ms();
        Self::put(
            &self.sessions,
            &session_key(&id),
            &Session {
                address: address.to_owned(),
                created_ms: now,
                last_ms: now,
                handle: new_token()?,
                ip: String::new(),
                agent: String::new(),
            },
        )?;
        Ok(id)
    }

    /// The address of a live session (touching it).
    pub fn session(&self, id: &str) -> Result<String, ServiceError> {
        let key = session_key(id);
        let gone = || ServiceError::NotFound {
            what: "session".into(),
        };
        let Some(mut s) = Self::get::<Session>(&self.sessions, &key)? else {
            return Err(gone());
        };
        let now = now_ms();
        if !s.live(now) {
            self.sessions.remove(key.as_bytes()).map_err(storage)?;
            return Err(gone());
        }
        if now.saturating_sub(s.last_ms) > 30_000 {
            s.last_ms = now;
            Self::put(&self.sessions, &key, &s)?;
        }
        Ok(s.address)
    }

    /// Records where a live session came from, once: a session that has
    /// an origin keeps it.
    pub fn set_origin(&self, id: &str, ip: &str, agent: &str) -> Result<(), ServiceError> {
        let key = session_key(id);
        let Some(mut s) = Self::get::<Session>(&self.sessions, &key)? else {
            return Err(ServiceError::NotFound {
                what: "session".into(),
            });
        };
        if !s.ip.is_empty() || !s.agent.is_empty() || !s.live(now_ms()) {
            return Ok(());
        }
        s.ip = clean_ip(ip);
        s.agent = clean_agent(agent);
        Self::put(&self.sessions, &key, &s)
    }

    /// The live sessions of the address of the live session `id`, that one
    /// first (`current`), then the most recently used. A record from
    /// before handles gets one here.
    pub fn sessions_of(
        &self,
        id: &str,
    ) -> Result<Vec<sealgate_api::portal::SessionInfo>, ServiceError> {
        let address = self.session(id)?;
        let own = session_key(id);
        let now = now_ms();
        let mut out = Vec::new();
        for item in self.sessions.scan_prefix(b"s:").map_err(storage)? {
            let (k, v) = item.map_err(storage)?;
            let Ok(mut s) = serde_json::from_slice::<Session>(&v) else {
                continue;
            };
            if s.address != address || !s.live(now) {
                continue;
            }
            if s.handle.is_empty() {
                s.handle = new_token()?;
                self.sessions
                    .insert(&k, serde_json::to_vec(&s).map_err(storage)?)
                    .map_err(storage)?;
            }
            out.push(sealgate_api::portal::SessionInfo {
                handle: s.handle,
                created_ms: s.created_ms,
                last_ms: s.last_ms,
                ip: s.ip,
                agent: s.agent,
                current: k == own.as_bytes(),
            });
        }
        out.sort_by_key(|s| (!s.current, std::cmp::Reverse(s.last_ms)));
        Ok(out)
    }

    /// Ends the session named `handle` among the other sessions of the
    /// address of the live session `id`; answers that address. Any other
    /// handle (another address's, `id`'s own, unknown) ends nothing and
    /// gives `NotFound`.
    pub fn end_session(&self, id: &str, handle: &str) -> Result<String, ServiceError> {
        let address = self.session(id)?;
        let own = session_key(id);
        let mut found = None;
        if !handle.is_empty() {
            for item in self.sessions.scan_prefix(b"s:").map_err(storage)? {
                let (k, v) = item.map_err(storage)?;
                if k != own.as_bytes()
                    && serde_json::from_slice::<Session>(&v).is_ok_and(|s| {
                        s.address == address
                            && !s.handle.is_empty()
                            && bool::from(s.handle.as_bytes().ct_eq(handle.as_bytes()))
                    })
                {
                    found = Some(k);
                    break;
                }
            }
        }
        let Some(k) = found else {
            return Err(ServiceError::NotFound {
                what: "session".into(),
            });
        };
        self.sessions.remove(k).map_err(storage)?;
        self.sessions.flush().map_err(storage)?;
        Ok(address)
    }

    /// Ends every other session of the address of the live session `id`;
    /// answers the address and how many ended.
    pub fn end_other_sessions(&self, id: &str) -> Result<(String, usize), ServiceError> {
        let address = self.session(id)?;
        let own = session_key(id);
        let n = self.end_sessions_where(&address, |k| k != own.as_bytes())?;
        Ok((address, n))
    }

    pub fn logout(&self, id: &str) -> Result<(), ServiceError> {
        self.sessions
            .remove(session_key(id).as_bytes())
            .map_err(storage)?;
        Ok(())
    }

    fn end_sessions_of(&self, address: &str) -> Result<(), ServiceError> {
        self.end_sessions_where(address, |_| true).map(drop)
    }

    /// Ends the sessions of `address` whose storage key `pick` accepts;
    /// answers how many.
    fn end_sessions_where(
        &self,
        address: &str,
        pick: impl Fn(&[u8]) -> bool,
    ) -> Result<usize, ServiceError> {
        let mut ended = Vec::new();
        for item in self.sessions.scan_prefix(b"s:").map_err(storage)? {
            let (k, v) = item.map_err(storage)?;
            if pick(&k) && serde_json::from_slice::<Session>(&v).is_ok_and(|s| s.address == address)
            {
                ended.push(k);
            }
        }
        let n = ended.len();
        for k in ended {
            self.sessions.remove(k).map_err(storage)?;
        }
        Ok(n)
    }
}

/// The field error for an address that does not parse.
pub fn bad_address() -> ServiceError {
    ServiceError::Invalid {
        errors: vec![FieldError::new("address", "This is not a mail address.")],
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;

    fn accounts() -> (std::path::PathBuf, PortalAccounts) {
        let n: u64 = rand::random();
        let dir = std::env::temp_dir().join(format!("sealgate-portal-acc-{n:x}"));
        let db = crate::db::Db::open(&dir).unwrap();
        let shared: std::sync::Arc<dyn SharedStore> =
            std::sync::Arc::new(crate::store::SledStore::new(&db));
        (dir, PortalAccounts::open(&shared))
    }

    const GOOD: &str = "violet staple gravel orbit";

    #[test]
    fn enrol_with_code_then_login_lockout_and_no_enumeration() {
        let (dir, a) = accounts();
        let code = a.new_code("Dan@ext.example").unwrap().unwrap().code;
        // A second code within a minute is not sent.
        assert!(a.new_code("dan@ext.example").unwrap().is_none());
        // A common password is refused before the code is used.
        assert!(
            a.enrol("dan@ext.example", &code, "password1234", false)
                .is_err()
        );
        assert!(a.enrol("dan@ext.example", "000000x", GOOD, false).is_err());
        let Outcome::Session(s) = a.enrol("dan@ext.example", &code, GOOD, false).unwrap() else {
            panic!("no session");
        };
        assert_eq!(a.session(&s).unwrap(), "dan@ext.example");
        // The code is used up.
        assert!(a.enrol("dan@ext.example", &code, GOOD, false).is_err());
        // Unknown address and wrong password: the same answer.
        let unknown = a.login("nobody@ext.example", GOOD, None, false, (3, 60));
        let wrong = a.login("dan@ext.example", "wrong", None, false, (3, 60));
        assert_eq!(unknown.unwrap_err(), wrong.clone().unwrap_err());
        assert!(
            a.login("dan@ext.example", GOOD, None, false, (3, 60))
                .is_ok()
        );
        for _ in 0..3 {
            assert!(
                a.login("dan@ext.example", "wrong", None, false, (3, 60))
                    .is_err()
            );
        }
        // Locked: even the right password fails, with the same answer.
        assert_eq!(
            a.login("dan@ext.example", GOOD, None, false, (3, 60))
                .unwrap_err(),
            wrong.unwrap_err()
        );
        a.logout(&s).unwrap();
        assert!(a.session(&s).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn totp_where_the_domain_requires_it() {
        let (dir, a) = accounts();
        let code = a.new_code("dan@ext.example").unwrap().unwrap().code;
        let Outcome::EnrolTotp { enrolment, secret } =
            a.enrol("dan@ext.example", &code, GOOD, true).unwrap()
        else {
            panic!("no enrolment");
        };
        let now = now_ms() / 1000;
        let first = format!("{:06}", totp::code(&secret, now / totp::STEP));
        let s = a.confirm_totp(&enrolment, &first).unwrap();
        assert_eq!(a.session(&s).unwrap(), "dan@ext.example");
        // Without the code, or with the used one, no login.
        assert!(
            a.login("dan@ext.example", GOOD, None, true, (9, 60))
                .is_err()
        );
        assert!(
            a.login("dan@ext.example", GOOD, Some(&first), true, (9, 60))
                .is_err()
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn password_change_needs_the_current_one_and_ends_other_sessions() {
        let (dir, a) = accounts();
        let code = a.new_code("dan@ext.example").unwrap().unwrap().code;
        let Outcome::Session(here) = a.enrol("dan@ext.example", &code, GOOD, false).unwrap() else {
            panic!("no session");
        };
        let Outcome::Session(elsewhere) = a
            .login("dan@ext.example", GOOD, None, false, (3, 60))
            .unwrap()
        else {
            panic!("no session");
        };
        const NEW: &str = "amber lantern cobalt fjord";
        let wrong = a
            .change_password("dan@ext.example", &here, "wrong", NEW, (3, 60))
            .unwrap_err();
        assert!(
            matches!(wrong, ServiceError::Invalid { ref errors } if errors[0].key == "current")
        );
        let weak = a
            .change_password("dan@ext.example", &here, GOOD, "password1234", (3, 60))
            .unwrap_err();
        assert!(matches!(weak, ServiceError::Invalid { ref errors } if errors[0].key == "new"));
        // Both sessions still live after refused changes.
        assert!(a.session(&elsewhere).is_ok());
        a.change_password("dan@ext.example", &here, GOOD, NEW, (3, 60))
            .unwrap();
        assert_eq!(a.session(&here).unwrap(), "dan@ext.example");
        assert!(a.session(&elsewhere).is_err());
        assert!(
            a.login("dan@ext.example", GOOD, None, false, (9, 60))
                .is_err()
        );
        assert!(
            a.login("dan@ext.example", NEW, None, false, (9, 60))
                .is_ok()
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn language_is_kept_across_a_reset() {
        let (dir, a) = accounts();
        assert!(a.set_language("dan@ext.example", Some("de")).is_err());
        let code = a.new_code("dan@ext.example").unwrap().unwrap().code;
        a.enrol("dan@ext.example", &code, GOOD, false).unwrap();
        assert_eq!(a.language("Dan@ext.example").unwrap(), None);
        a.set_language("dan@ext.example", Some("de")).unwrap();
        assert_eq!(
            a.language("dan@ext.example").unwrap().as_deref(),
            Some("de")
        );
        // A reset (new code, new password) keeps the choice.
        let accounts = a.accounts.clone();
        let mut stored: Account =
            serde_json::from_slice(&accounts.get(b"dan@ext.example").unwrap().unwrap()).unwrap();
        stored.created_ms = 0;
        PortalAccounts::put(&accounts, "dan@ext.example", &stored).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        a.codes.remove(b"dan@ext.example").unwrap();
        let code = a.new_code("dan@ext.example").unwrap().unwrap().code;
        a.enrol(
            "dan@ext.example",
            &code,
            "amber lantern cobalt fjord",
            false,
        )
        .unwrap();
        assert_eq!(
            a.language("dan@ext.example").unwrap().as_deref(),
            Some("de")
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Makes the stored code for `address` look `created_ms` old.
    fn age_code(a: &PortalAccounts, address: &str, created_ms: u64) {
        let mut stored: Code = PortalAccounts::get(&a.codes, address).unwrap().unwrap();
        stored.created_ms = created_ms;
        PortalAccounts::put(&a.codes, address, &stored).unwrap();
    }

    #[test]
    fn reset_link_once_within_its_lifetime_then_second_factor_again() {
        let (dir, a) = accounts();
        let first = a.new_code("dan@ext.example").unwrap().unwrap();
        let Outcome::EnrolTotp { enrolment, secret } =
            a.enrol("dan@ext.example", &first.code, GOOD, true).unwrap()
        else {
            panic!("no TOTP enrolment");
        };
        let now = now_ms() / 1000;
        let step_code = format!("{:06}", totp::code(&secret, now / totp::STEP));
        let old_session = a.confirm_totp(&enrolment, &step_code).unwrap();
        // The first code's link went with the code.
        assert!(a.link_address(&first.link).is_err());
        // A new code and link (a minute later).
        let reset = a.new_code("dan@ext.example").unwrap().unwrap();
        assert_eq!(a.link_address(&reset.link).unwrap(), "dan@ext.example");
        assert!(a.link_address("not-a-token").is_err());
        // A weak password does not use the link up.
        assert!(
            a.reset_with_link(&reset.link, "password1234", |_| true)
                .is_err()
        );
        let (address, outcome) = a.reset_with_link(&reset.link, GOOD, |_| true).unwrap();
        assert_eq!(address, "dan@ext.example");
        // The second factor is asked again, the old session is gone, and
        // the link and its code are used up.
        assert!(matches!(outcome, Outcome::EnrolTotp { .. }));
        assert!(a.session(&old_session).is_err());
        assert!(a.reset_with_link(&reset.link, GOOD, |_| true).is_err());
        assert!(a.enrol("dan@ext.example", &reset.code, GOOD, true).is_err());
        // An expired link opens nothing, and a new code voids the old link.
        let late = a.new_code("dan@ext.example").unwrap().unwrap();
        age_code(&a, "dan@ext.example", now_ms() - CODE_LIFETIME_MS - 1);
        assert!(a.link_address(&late.link).is_err());
        let newer = a.new_code("dan@ext.example").unwrap().unwrap();
        age_code(&a, "dan@ext.example", 0);
        let newest = a.new_code("dan@ext.example").unwrap().unwrap();
        assert!(a.link_address(&newer.link).is_err());
        assert!(a.link_address(&newest.link).is_ok());
        drop(dir);
    }

    fn logged_in(a: &PortalAccounts, address: &str) -> String {
        let Outcome::Session(s) = a.login(address, GOOD, None, false, (9, 60)).unwrap() else {
            panic!("no session");
        };
        s
    }

    #[test]
    fn sessions_listed_and_ended_only_within_the_address() {
        let (dir, a) = accounts();
        for address in ["dan@ext.example", "eve@ext.example"] {
            let code = a.new_code(address).unwrap().unwrap().code;
            a.enrol(address, &code, GOOD, false).unwrap();
        }
        let here = logged_in(&a, "dan@ext.example");
        let phone = logged_in(&a, "dan@ext.example");
        let laptop = logged_in(&a, "dan@ext.example");
        let eve = logged_in(&a, "eve@ext.example");
        a.set_origin(
            &phone,
            "192.0.2.7",
            "Phone\u{1b}[31m\u{202e}Browser/1.0 ".repeat(20).as_str(),
        )
        .unwrap();
        // The first origin stays.
        a.set_origin(&phone, "198.51.100.1", "Other").unwrap();
        a.set_origin(&here, "not an address", "Desk").unwrap();

        let list = a.sessions_of(&here).unwrap();
        // The enrolment's session and three logins; none of eve's.
        assert_eq!(list.len(), 4);
        assert!(list[0].current);
        assert_eq!(list[0].ip, "");
        assert_eq!(list[0].agent, "Desk");
        assert_eq!(list.iter().filter(|s| s.current).count(), 1);
        let p = list.iter().find(|s| s.ip == "192.0.2.7").unwrap();
        assert!(p.agent.starts_with("Phone[31mBrowser/1.0 Phone"));
        assert_eq!(p.agent.chars().count(), AGENT_CHARS);
        assert!(!p.agent.chars().any(|c| c.is_control() || c == '\u{202e}'));
        // The handle is neither the id nor its hash.
        assert_ne!(p.handle, phone);
        assert!(!p.handle.contains(&sha256_hex(&phone)));

        // Another address's session cannot end dan's phone with its handle.
        let eve_list = a.sessions_of(&eve).unwrap();
        assert_eq!(eve_list.len(), 2);
        assert!(a.end_session(&eve, &p.handle).is_err());
        assert!(a.session(&phone).is_ok());
        // Nor can an empty, unknown or the own handle.
        assert!(a.end_session(&here, "").is_err());
        assert!(a.end_session(&here, "nonsense").is_err());
        assert!(a.end_session(&here, &list[0].handle).is_err());
        assert!(a.session(&here).is_ok());
        // dan ends the phone by its handle.
        assert_eq!(a.end_session(&here, &p.handle).unwrap(), "dan@ext.example");
        assert!(a.session(&phone).is_err());
        assert!(a.session(&laptop).is_ok());
        assert_eq!(a.sessions_of(&here).unwrap().len(), 3);
        // Then every other one: eve's stay.
        assert_eq!(
            a.end_other_sessions(&here).unwrap(),
            ("dan@ext.example".to_owned(), 2)
        );
        assert!(a.session(&laptop).is_err());
        assert!(a.session(&here).is_ok());
        assert_eq!(a.sessions_of(&here).unwrap().len(), 1);
        assert_eq!(a.sessions_of(&eve).unwrap().len(), 2);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_session_recorded_before_origins_and_handles_still_reads() {
        let (dir, a) = accounts();
        let now = now_ms();
        let id = "old-session-id";
        let old = format!(r#"{{"address":"dan@ext.example","created_ms":{now},"last_ms":{now}}}"#);
        a.sessions
            .insert(session_key(id).as_bytes(), old.as_bytes())
            .unwrap();
        assert_eq!(a.session(id).unwrap(), "dan@ext.example");
        let list = a.sessions_of(id).unwrap();
        assert_eq!(list.len(), 1);
        assert!(list[0].current);
        assert_eq!((list[0].ip.as_str(), list[0].agent.as_str()), ("", ""));
        // It got a handle on the way, which stays.
        assert!(!list[0].handle.is_empty());
        assert_eq!(a.sessions_of(id).unwrap()[0].handle, list[0].handle);
        let _ = std::fs::remove_dir_all(dir);
    }
}
