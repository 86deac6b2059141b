//! Sealgate's OpenPGP engine (issue 5): a pure library, MIME in and MIME out,
//! with the gateway's private keys reached only through the `sealgate-hsm`
//! traits.
//!
//! - [`GatewayIdentity`]: the gateway's own certificate on the token.
//! - [`addressees()`]: whom an encrypted message is for, before decrypting.
//! - [`decrypt()`]: PGP/MIME and inline messages encrypted for the gateway,
//!   integrity-checked before any plaintext is released.
//! - [`encrypt()`], [`sign()`]: PGP/MIME (or inline) for recipient certificates.
//! - [`verify()`]: detached, inline and encrypted-and-signed messages; the
//!   verdict is data.
//! - [`harvest()`]: certificates found in mail (Autocrypt, attached keys,
//!   signatures' Key Blocks; those of signatures inside an encrypted message
//!   come with [`decrypt()`]).
//!
//! Built on Sequoia with its OpenSSL backend (constant-time primitives;
//! LGPL-2.0-or-later, see the README). No network, no async, no private key
//! in the process. Trusts the token and the caller's certificate directory;
//! every message and certificate is attacker-controlled.

pub mod addressed;
mod armor;
mod armorer;
pub mod cli;
mod dearmor;
pub mod decrypt;
pub mod encrypt;
pub mod error;
pub mod gateway;
pub mod harvest;
pub mod limits;
mod mime;
mod plaintext;
mod policy;
mod reencode;
pub mod sign;
mod token;
pub mod verify;

pub use addressed::{Addressees, addressees};
pub use decrypt::{Decrypted, Format, decrypt};
pub use encrypt::{EncryptOptions, encrypt, encrypt_entity};
pub use error::{Error, Result};
pub use gateway::{GatewayAlgorithm, GatewayIdentity, GatewaySpec};
pub use harvest::{CertSummary, harvest, parse_certs, summarize};
pub use limits::Limits;
pub use plaintext::Plaintext;
/// The Sequoia version this engine is built on, for callers that need its types.
pub use sequoia_openpgp as openpgp;
pub use sequoia_openpgp::Cert;
pub use sign::sign;
pub use verify::{Verdict, verify};

/// Entry points for the fuzz targets only: the streaming de-armorer and the
/// 7-bit re-encoder read untrusted input but are reached through
/// [`decrypt()`] and [`sign()`] only with a token. Not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    use std::io::Read as _;

    /// De-armors an armored `PGP MESSAGE` as decryption does, up to `max`
    /// output bytes; `None` when `data` is not armored.
    pub fn dearmor(data: &[u8], max: u64) -> Option<std::io::Result<Vec<u8>>> {
        let reader = crate::dearmor::Dearmor::new(data)?;
        let mut out = Vec::new();
        Some(reader.take(max).read_to_end(&mut out).map(|_| out))
    }

    /// The envelope fields and the entity to sign of `message`, 8-bit
    /// parts re-encoded to 7 bits as signing does.
    pub fn seven_bit_entity(message: &[u8]) -> crate::Result<(Vec<u8>, Vec<u8>)> {
        crate::sign::entity(message, true)
    }
}
