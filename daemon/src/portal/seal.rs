//! Encryption at rest for the portal: every stored message has its own
//! random 256-bit data key; its parts are sealed with AES-256-GCM under
//! that key, and the data key itself is wrapped by the token's
//! `at-rest-wrap` key (AES-256-GCM on the token, `sealgate_hsm::KeyWrapper`).
//! Only the wrapped key is stored, so without the token nothing stored
//! opens; destroying the wrapped key destroys the message.
//!
//! Associated data binds every sealed part and the wrapped key to the
//! recipient's address and the message id (and the part's name), so a
//! part moved to another record or another recipient does not open.
//!
//! Trusts: the token. Never writes a data key or plaintext anywhere.

use std::sync::{Arc, Mutex};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use sealgate_hsm::KeyWrapper;
use zeroize::Zeroizing;

use super::PortalError;

/// The token key that wraps the portal's data keys.
pub const WRAP_LABEL: &str = "at-rest-wrap";

/// What binds a sealed part: `sealgate-portal-v1`, the part, the recipient, the id.
pub fn context(part: &str, recipient: &str, id: &str) -> Vec<u8> {
    format!(
        "sealgate-portal-v1\0{part}\0{}\0{id}",
        recipient.to_ascii_lowercase()
    )
    .into_bytes()
}

/// Where the wrapping key comes from: the token (opened when first
/// needed, opened again after an outage) or, in tests, a fixed key.
pub trait WrapperSource: Send + Sync {
    fn wrapper(&self) -> Result<Arc<dyn KeyWrapper>, PortalError>;
    /// Forget a wrapper that failed (the next call opens the token again).
    fn reset(&self) {}
}

/// The token's `at-rest-wrap` key.
pub struct TokenWrappers {
    settings: sealgate_hsm::HsmSettings,
    open: Mutex<Option<Arc<dyn KeyWrapper>>>,
}

impl TokenWrappers {
    pub fn new(settings: sealgate_hsm::HsmSettings) -> TokenWrappers {
        TokenWrappers {
            settings,
            open: Mutex::new(None),
        }
    }
}

impl WrapperSource for TokenWrappers {
    fn wrapper(&self) -> Result<Arc<dyn KeyWrapper>, PortalError> {
        let mut open = self
            .open
            .lock()
            .map_err(|_| PortalError::TokenUnavailable("lock poisoned".into()))?;
        if let Some(w) = open.as_ref() {
            return Ok(Arc::clone(w));
        }
        let hsm = sealgate_hsm::Hsm::open(&self.settings)
            .map_err(|e| PortalError::TokenUnavailable(e.to_string()))?;
        let wrapper: Arc<dyn KeyWrapper> = Arc::new(
            hsm.wrapper(WRAP_LABEL)
                .map_err(|e| PortalError::TokenUnavailable(e.to_string()))?,
        );
        *open = Some(Arc::clone(&wrapper));
        Ok(wrapper)
    }

    fn reset(&self) {
        if let Ok(mut open) = self.open.lock() {
            *open = None;
        }
    }
}

/// A fresh random data key.
pub fn new_data_key() -> Result<Zeroizing<[u8; 32]>, PortalError> {
    let mut key = Zeroizing::new([0u8; 32]);
    SystemRandom::new()
        .fill(&mut key[..])
        .map_err(|_| PortalError::Storage("no randomness".into()))?;
    Ok(key)
}

/// Random bytes (ids, codes).
pub fn random<const N: usize>() -> Result<[u8; N], PortalError> {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| PortalError::Storage("no randomness".into()))?;
    Ok(out)
}

/// `nonce || ciphertext || tag` of `plaintext` under `key`, bound to `aad`.
pub fn seal(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, PortalError> {
    let sealing = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, key).map_err(|_| PortalError::Storage("bad key".into()))?,
    );
    let nonce_bytes = random::<NONCE_LEN>()?;
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + 16);
    out.extend_from_slice(&nonce_bytes);
    let mut body = plaintext.to_vec();
    sealing
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce_bytes),
            Aad::from(aad),
            &mut body,
        )
        .map_err(|_| PortalError::Storage("sealing failed".into()))?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// Reverses [`seal`]; anything altered or bound to another context is
/// [`PortalError::Damaged`].
pub fn open(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, PortalError> {
    let opening =
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| PortalError::Damaged)?);
    let (nonce, body) = sealed
        .split_at_checked(NONCE_LEN)
        .ok_or(PortalError::Damaged)?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| PortalError::Damaged)?;
    let mut body = Zeroizing::new(body.to_vec());
    let len = opening
        .open_in_place(nonce, Aad::from(aad), &mut body)
        .map_err(|_| PortalError::Damaged)?
        .len();
    body.truncate(len);
    Ok(body)
}

/// Wraps a data key on the token.
pub fn wrap(
    source: &dyn WrapperSource,
    key: &[u8; 32],
    context: &[u8],
) -> Result<Vec<u8>, PortalError> {
    let wrapper = source.wrapper()?;
    wrapper.wrap(key, context).map_err(|e| {
        source.reset();
        token_error(&e)
    })
}

/// Unwraps a data key on the token.
pub fn unwrap(
    source: &dyn WrapperSource,
    wrapped: &[u8],
    context: &[u8],
) -> Result<Zeroizing<[u8; 32]>, PortalError> {
    let wrapper = source.wrapper()?;
    let key = wrapper.unwrap(wrapped, context).map_err(|e| {
        if e.is_temporary() {
            source.reset();
        }
        token_error(&e)
    })?;
    let mut out = Zeroizing::new([0u8; 32]);
    if key.len() != 32 {
        return Err(PortalError::Damaged);
    }
    out.copy_from_slice(&key);
    Ok(out)
}

fn token_error(e: &sealgate_hsm::Error) -> PortalError {
    if e.is_temporary() {
        PortalError::TokenUnavailable(e.to_string())
    } else if matches!(e, sealgate_hsm::Error::Decrypt) {
        PortalError::Damaged
    } else {
        PortalError::TokenUnavailable(e.to_string())
    }
}

/// A wrapping key in memory, for tests only (the token's key never leaves it).
#[cfg(test)]
pub struct TestWrappers(pub [u8; 32], pub std::sync::atomic::AtomicBool);

#[cfg(test)]
impl WrapperSource for TestWrappers {
    fn wrapper(&self) -> Result<Arc<dyn KeyWrapper>, PortalError> {
        if self.1.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(PortalError::TokenUnavailable("token removed".into()));
        }
        Ok(Arc::new(TestWrapper(self.0)))
    }
}

#[cfg(test)]
struct TestWrapper([u8; 32]);

#[cfg(test)]
impl KeyWrapper for TestWrapper {
    fn wrap(&self, data_key: &[u8], context: &[u8]) -> Result<Vec<u8>, sealgate_hsm::Error> {
        seal(&self.0, context, data_key).map_err(|_| sealgate_hsm::Error::Decrypt)
    }
    fn unwrap(
        &self,
        wrapped: &[u8],
        context: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, sealgate_hsm::Error> {
        open(&self.0, context, wrapped).map_err(|_| sealgate_hsm::Error::Decrypt)
    }
}
