//! The connection to the token: module loading, login, the session pool and
//! recovery after an outage.
//!
//! One [`Hsm`] per module path and process: PKCS#11 has process-wide state
//! (`C_Initialize`, the login), so [`Hsm::open`] hands out clones of one
//! shared connection. Every operation borrows one session from a bounded pool
//! for its whole duration (a PKCS#11 session runs one operation at a time),
//! so 32 concurrent callers get 32 sessions and never `CKR_OPERATION_ACTIVE`.
//!
//! Recovery: when an operation reports that the sessions, the login or the
//! token went away, the caller gets that (temporary) error and the
//! connection is marked broken; the next call finalizes the module,
//! initialises it again, finds the token by label again and logs in again.
//! Re-initialising waits for operations in flight (an `RwLock` held for the
//! duration of each operation), so the module is never finalized under a
//! running call.
//!
//! Trusts: the PKCS#11 module named in the settings, and the PIN file. Must
//! never: log or print the PIN, share one session between two threads, or
//! finalize the module while another thread is inside it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, RwLock, Weak};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use secrecy::SecretString;

use crate::error::{Error, ck, from_ck};
use crate::settings::HsmSettings;

/// A handle to the token. Cheap to clone; all clones share one connection and
/// one session pool. Every method blocks on the token: async callers run them
/// in `tokio::task::spawn_blocking`.
#[derive(Clone)]
pub struct Hsm {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Hsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hsm")
            .field("module", &self.inner.module_name)
            .field("token_label", &self.inner.token_label)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    settings: HsmSettings,
    module_path: PathBuf,
    pub(crate) module_name: String,
    pub(crate) token_label: String,
    pin: AuthPin,
    state: RwLock<Option<Live>>,
    permits: Mutex<usize>,
    permit_freed: Condvar,
}

/// A live connection: the module initialised, the token found, logged in.
pub(crate) struct Live {
    pkcs11: Option<Pkcs11>,
    pub(crate) slot: Slot,
    /// Kept open so the login survives while the pool is empty (closing the
    /// last session of an application logs it out).
    anchor: Mutex<Option<Session>>,
    idle: Mutex<Vec<Session>>,
    broken: AtomicBool,
    handles: Mutex<HashMap<(u64, String), ObjectHandle>>,
    /// Set once the token rejected OAEP with SHA-256 (SoftHSM 2.6.1 does).
    pub(crate) no_native_oaep_sha256: AtomicBool,
    /// Serialises searches against creation and destruction of token objects:
    /// SoftHSM 2.6.1 fails either at random (`CKR_GENERAL_ERROR`) when a
    /// thread creates an object while another searches (SoftHSMv2 #573,
    /// fixed after 2.6.1). Operations on known handles do not take it.
    store: Mutex<()>,
}

impl Drop for Live {
    fn drop(&mut self) {
        lock(&self.idle).clear();
        lock(&self.anchor).take();
        if let Some(p) = self.pkcs11.take() {
            // Errors at finalize are of no use to anybody: the connection is gone either way.
            let _ = p.finalize();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked while holding it; the data
    // (a session list, a counter) is still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The process's open connections, by module path.
type Registry = Mutex<Vec<(PathBuf, Weak<Inner>)>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(Vec::new()))
}

/// Reads the user PIN from its file. The PIN is the first line; surrounding
/// whitespace is ignored.
pub(crate) fn read_pin(settings: &HsmSettings) -> Result<AuthPin, Error> {
    let path = settings.pin_path();
    let text = std::fs::read_to_string(&path).map_err(|e| Error::PinFile {
        path: path.display().to_string(),
        detail: e.kind().to_string(),
    })?;
    let pin = text.lines().next().unwrap_or("").trim().to_owned();
    if pin.is_empty() {
        return Err(Error::PinFile {
            path: path.display().to_string(),
            detail: "empty".to_owned(),
        });
    }
    Ok(SecretString::from(pin))
}

impl Hsm {
    /// Opens (or joins) the process's connection to the token described by `settings`.
    ///
    /// Reads the PIN file now (a missing PIN file is a permanent error) but does not
    /// require the token to be reachable: when it is not, every call returns a
    /// temporary error until it is back. A second `open` with the same module path
    /// returns a handle to the same connection; opening a different token label on
    /// a module already in use is refused (PKCS#11 state is per process).
    pub fn open(settings: &HsmSettings) -> Result<Hsm, Error> {
        let mut reg = lock(registry());
        reg.retain(|(_, w)| w.strong_count() > 0);
        if let Some(inner) = reg
            .iter()
            .find(|(p, _)| *p == settings.module)
            .and_then(|(_, w)| w.upgrade())
        {
            if inner.token_label != settings.token_label {
                return Err(Error::InvalidInput(format!(
                    "module {} is already open for token {:?}",
                    inner.module_name, inner.token_label
                )));
            }
            return Ok(Hsm { inner });
        }
        if settings.is_softhsm() && std::env::var_os("SOFTHSM2_CONF").is_none() {
            return Err(Error::Module {
                module: settings.module.display().to_string(),
                detail: format!(
                    "SoftHSM needs its configuration file, and {} does not exist: create the \
                     token with `sealgate hsm init`, or name the file with `softhsm_conf` in the \
                     bootstrap file's [hsm] table",
                    settings.softhsm_conf().display()
                ),
            });
        }
        let pin = read_pin(settings)?;
        let inner = Arc::new(Inner {
            settings: settings.clone(),
            module_path: settings.module.clone(),
            module_name: settings.module.display().to_string(),
            token_label: settings.token_label.clone(),
            pin,
            state: RwLock::new(None),
            permits: Mutex::new(settings.max_sessions.max(1)),
            permit_freed: Condvar::new(),
        });
        reg.push((settings.module.clone(), Arc::downgrade(&inner)));
        drop(reg);
        let hsm = Hsm { inner };
        // Connect now so configuration mistakes show early; an outage is not
        // fatal, and the caller reports it (a daemon retrying would
        // otherwise log this on every try).
        if let Err(e) = hsm.reconnect() {
            tracing::debug!(error = %e, "token not reachable yet; will retry on use");
        }
        Ok(hsm)
    }

    /// Module path, for error messages.
    pub(crate) fn inner_module(&self) -> String {
        self.inner.module_name.clone()
    }

    /// The settings this connection was opened with.
    pub fn settings(&self) -> &HsmSettings {
        &self.inner.settings
    }

    /// Label of the token this handle talks to.
    pub fn token_label(&self) -> &str {
        &self.inner.token_label
    }

    /// Runs `f` with a session of its own, logged in, from the pool.
    ///
    /// If `f` fails with an error meaning the connection is gone, the connection is
    /// marked broken and rebuilt at the next call; the error is returned as is
    /// (it is temporary).
    pub(crate) fn with_session<T>(
        &self,
        f: impl FnOnce(&Session, &Live) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let _permit = self.acquire_permit();
        let guard = self.live_guard()?;
        let Some(live) = guard.as_ref() else {
            return Err(Error::TokenMissing(self.inner.token_label.clone()));
        };
        let session = match lock(&live.idle).pop() {
            Some(s) => s,
            None => match live.pkcs11.as_ref() {
                Some(p) => match p.open_rw_session(live.slot) {
                    Ok(s) => s,
                    Err(e) => {
                        let err = from_ck(&self.inner.module_name, e);
                        if err.needs_reconnect() {
                            live.broken.store(true, Ordering::SeqCst);
                        }
                        return Err(err);
                    }
                },
                None => return Err(Error::TokenMissing(self.inner.token_label.clone())),
            },
        };
        let result = f(&session, live);
        match &result {
            Err(e) if e.needs_reconnect() => {
                tracing::warn!(error = %e, "token connection lost; reconnecting on next use");
                live.broken.store(true, Ordering::SeqCst);
                drop(session);
            }
            _ => lock(&live.idle).push(session),
        }
        result
    }

    /// Like [`Hsm::with_session`], holding the object-store lock for the whole
    /// of `f`: for anything that searches for, creates or destroys token
    /// objects. `f` must not call [`Live::find`] (the lock is not reentrant).
    pub(crate) fn with_store_session<T>(
        &self,
        f: impl FnOnce(&Session, &Live) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.with_session(|s, live| {
            let _store = lock(&live.store);
            f(s, live)
        })
    }

    /// A read guard on a live, unbroken connection, reconnecting first if needed.
    fn live_guard(&self) -> Result<std::sync::RwLockReadGuard<'_, Option<Live>>, Error> {
        for _ in 0..2 {
            {
                let guard = self
                    .inner
                    .state
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some(live) = guard.as_ref()
                    && !live.broken.load(Ordering::SeqCst)
                {
                    return Ok(guard);
                }
            }
            self.reconnect()?;
        }
        Err(Error::TokenMissing(self.inner.token_label.clone()))
    }

    /// Throws the current connection away (after the operations in flight ended) and
    /// builds a new one: initialise, find the token by label, log in.
    fn reconnect(&self) -> Result<(), Error> {
        let mut state = self
            .inner
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(live) = state.as_ref()
            && !live.broken.load(Ordering::SeqCst)
        {
            return Ok(()); // another thread reconnected while we waited
        }
        // Drop (and finalize) the old connection before initialising again.
        *state = None;
        *state = Some(self.connect()?);
        tracing::info!(token = %self.inner.token_label, "connected to token");
        Ok(())
    }

    fn connect(&self) -> Result<Live, Error> {
        let name = &self.inner.module_name;
        let pkcs11 = Pkcs11::new(&self.inner.module_path).map_err(ck(name))?;
        match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(from_ck(name, e)),
        }
        let slot = find_slot(&pkcs11, &self.inner.token_label, name)?;
        let anchor = pkcs11.open_rw_session(slot).map_err(ck(name))?;
        match anchor.login(UserType::User, Some(&self.inner.pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => return Err(from_ck(name, e)),
        }
        Ok(Live {
            pkcs11: Some(pkcs11),
            slot,
            anchor: Mutex::new(Some(anchor)),
            idle: Mutex::new(Vec::new()),
            broken: AtomicBool::new(false),
            handles: Mutex::new(HashMap::new()),
            no_native_oaep_sha256: AtomicBool::new(false),
            store: Mutex::new(()),
        })
    }

    fn acquire_permit(&self) -> Permit<'_> {
        let mut free = lock(&self.inner.permits);
        while *free == 0 {
            free = self
                .inner
                .permit_freed
                .wait(free)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *free -= 1;
        Permit { inner: &self.inner }
    }

    /// Borrows and returns a session without calling the token: the pool's own cost,
    /// measured by the bench. Not for production use.
    #[doc(hidden)]
    pub fn pool_round_trip(&self) -> Result<(), Error> {
        self.with_session(|_, _| Ok(()))
    }

    /// Token and login state, for `sealgate hsm status` and health checks.
    pub fn status(&self) -> Status {
        let mut status = Status {
            module: self.inner.module_name.clone(),
            token_label: self.inner.token_label.clone(),
            token_present: false,
            logged_in: false,
            serial: String::new(),
            mechanisms: Vec::new(),
            key_count: 0,
            error: None,
        };
        let result = self.with_store_session(|session, live| {
            let p = live
                .pkcs11
                .as_ref()
                .ok_or_else(|| Error::TokenMissing(self.inner.token_label.clone()))?;
            let info = p
                .get_token_info(live.slot)
                .map_err(ck(&self.inner.module_name))?;
            status.token_present = true;
            status.serial = info.serial_number().to_owned();
            let si = session
                .get_session_info()
                .map_err(ck(&self.inner.module_name))?;
            status.logged_in = matches!(
                si.session_state(),
                cryptoki::session::SessionState::RoUser | cryptoki::session::SessionState::RwUser
            );
            status.mechanisms = p
                .get_mechanism_list(live.slot)
                .map_err(ck(&self.inner.module_name))?
                .iter()
                .map(|m| m.to_string())
                .collect();
            status.key_count = session
                .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
                .map_err(ck(&self.inner.module_name))?
                .len()
                + session
                    .find_objects(&[Attribute::Class(ObjectClass::SECRET_KEY)])
                    .map_err(ck(&self.inner.module_name))?
                    .len();
            Ok(())
        });
        if let Err(e) = result {
            status.error = Some(e.to_string());
        }
        status
    }
}

/// What `sealgate hsm status` shows.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Status {
    /// Module path.
    pub module: String,
    /// Token label looked for.
    pub token_label: String,
    /// A token with that label was found.
    pub token_present: bool,
    /// Our sessions are logged in as the user.
    pub logged_in: bool,
    /// Token serial number.
    pub serial: String,
    /// Mechanisms the token offers (PKCS#11 names).
    pub mechanisms: Vec<String>,
    /// Number of private and secret keys on the token.
    pub key_count: usize,
    /// Why the token could not be queried, if it could not.
    pub error: Option<String>,
}

struct Permit<'a> {
    inner: &'a Inner,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *lock(&self.inner.permits) += 1;
        self.inner.permit_freed.notify_one();
    }
}

fn find_slot(pkcs11: &Pkcs11, label: &str, module: &str) -> Result<Slot, Error> {
    for slot in pkcs11.get_slots_with_token().map_err(ck(module))? {
        let info = pkcs11.get_token_info(slot).map_err(ck(module))?;
        if info.token_initialized() && info.label().trim_end() == label {
            return Ok(slot);
        }
    }
    Err(Error::TokenMissing(label.to_owned()))
}

impl Live {
    /// Finds one object by class and label, caching its handle for this connection.
    pub(crate) fn find(
        &self,
        session: &Session,
        class: ObjectClass,
        label: &str,
        module: &str,
    ) -> Result<ObjectHandle, Error> {
        let key = (u64::from(class), label.to_owned());
        if let Some(h) = lock(&self.handles).get(&key) {
            return Ok(*h);
        }
        let _store = lock(&self.store);
        let found = session
            .find_objects(&[
                Attribute::Class(class),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
            .map_err(ck(module))?;
        let handle = found
            .first()
            .copied()
            .ok_or_else(|| Error::KeyNotFound(label.to_owned()))?;
        lock(&self.handles).insert(key, handle);
        Ok(handle)
    }

    /// Forgets cached handles (after objects were deleted or replaced).
    pub(crate) fn forget(&self) {
        lock(&self.handles).clear();
    }
}
