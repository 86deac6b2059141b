//! Sealgate's PKCS#11 key store: every private key Sealgate owns lives in a
//! token (SoftHSM2 in development, CI and the appliance; a real HSM is a
//! module path and a PIN away) and never leaves it.
//!
//! What it gives the rest of Sealgate:
//! - [`Hsm`]: a connection to the token found by label, logged in with the
//!   PIN from its 0600 file, with a bounded session pool and automatic
//!   reconnection after an outage ([`Error::is_temporary`] tells the mail
//!   code to defer).
//! - Key generation in the token ([`Hsm::generate`]), single-purpose keys
//!   ([`KeyUsage`]), listing and public-key export ([`PublicKey`]).
//! - The traits the crypto engines take: [`RsaDecryptor`], [`Signer`],
//!   [`KeyAgreement`], [`KeyWrapper`].
//! - Gateway identity: self-signed certificates and CSRs signed by token
//!   keys (rcgen), certificate import/export ([`certs`]).
//! - Provisioning of a SoftHSM2 token in a data directory ([`provision`]) and
//!   the `sealgate keys` / `sealgate hsm` subcommands ([`cli`]).
//!
//! What it does not do: no private key is ever generated or held in the
//! process, no PIN is ever logged, and the API is blocking (async callers use
//! `tokio::task::spawn_blocking`).
//!
//! ```no_run
//! use sealgate_hsm::{Hsm, HsmSettings, RsaDecryptor, OaepHash};
//! # fn main() -> Result<(), sealgate_hsm::Error> {
//! let hsm = Hsm::open(&HsmSettings::with_data_dir("/var/lib/sealgate"))?;
//! let key = hsm.decryptor("gateway-decrypt")?;
//! # let wrapped_cek = [0u8; 384];
//! match key.decrypt_oaep(OaepHash::Sha256, &wrapped_cek) {
//!     Ok(cek) => { /* decrypt the content */ let _ = cek; }
//!     Err(e) if e.is_temporary() => { /* defer the message: HSM down */ }
//!     Err(e) => { /* hold the message for the operator */ let _ = e; }
//! }
//! # Ok(()) }
//! ```

pub mod certs;
pub mod cli;
mod der;
mod error;
mod keys;
mod ops;
mod padding;
pub mod provision;
mod settings;
mod token;

pub use der::{ecdsa_der_to_raw, ecdsa_raw_to_der};
pub use error::Error;
pub use keys::{Curve, IMPLICIT_REJECTION_LABEL, KeyAlgorithm, KeyInfo, KeyUsage, PublicKey};
pub use ops::{
    KeyAgreement, KeyWrapper, MAX_PKCS1V15_LENGTHS, RsaDecryptor, SignatureScheme, Signer,
    TokenKey, TokenWrapper,
};
pub use padding::OaepHash;
pub use settings::{DEFAULT_MODULE, HsmSettings};
pub use token::{Hsm, Status};
