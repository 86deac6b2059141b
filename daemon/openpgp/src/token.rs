//! Token keys as Sequoia signers and decryptors.
//!
//! Sequoia signs and decrypts through its `crypto::Signer` and
//! `crypto::Decryptor` traits; these adapters implement them over the
//! `sealgate-hsm` traits, so no private key is ever in the process.
//!
//! - RSA session keys (PKESK v3) are decrypted with the token's PKCS#1 v1.5
//!   *implicit rejection*: a bad block yields a pseudo-random value of the
//!   requested length, never an error. A v3 PKESK does not say how long its
//!   payload is (the cipher octet is inside), so when Sequoia gives no length
//!   the token is asked for every candidate length in one call (one raw RSA
//!   operation, `decrypt_pkcs1v15_lengths`), every answer is checked, and the
//!   one whose cipher octet and checksum fit is returned; otherwise the first
//!   pseudo-random value is, and Sequoia's checksum check fails. The work done
//!   is the same for every ciphertext. OpenPGP strips leading zeros of the
//!   RSA ciphertext MPI; the token layer left-pads it to the modulus length.
//! - ECDH (RFC 9580 §11.5): the token computes the shared X coordinate with
//!   the sender's ephemeral point; the KDF and AES key unwrap run in Sequoia.
//! - Signatures: Sequoia hashes, the token signs the digest; ECDSA's DER
//!   signature is split into the OpenPGP `r`, `s` MPIs.
//!
//! A token outage travels through Sequoia's `anyhow` as the token's own
//! error and is recovered by [`crate::Error::pgp`], so it stays temporary.
//! Trusts: the token. The ciphertexts are attacker-controlled.

use std::sync::Arc;

use sealgate_hsm::{KeyAgreement, PublicKey, RsaDecryptor, SignatureScheme};
use sequoia_openpgp as openpgp;

use openpgp::crypto::SessionKey;
use openpgp::crypto::mem::Protected;
use openpgp::crypto::mpi::{self, MPI};
use openpgp::packet::Key;
use openpgp::packet::key::{PublicParts, UnspecifiedRole};
use openpgp::types::{HashAlgorithm, SymmetricAlgorithm};

/// The OpenPGP public key with the token key behind it.
pub(crate) type PublicKeyPacket = Key<PublicParts, UnspecifiedRole>;

/// Payload lengths of a PKESK v3 RSA block (cipher octet, key, checksum)
/// for AES-256, AES-192 and AES-128, most likely first.
const V3_CANDIDATES: [usize; 3] = [35, 27, 19];

/// A token signing key as a Sequoia signer.
pub(crate) struct TokenSigner {
    key: PublicKeyPacket,
    token: Arc<dyn sealgate_hsm::Signer>,
    hashes: &'static [HashAlgorithm],
}

impl TokenSigner {
    pub(crate) fn new(key: PublicKeyPacket, token: Arc<dyn sealgate_hsm::Signer>) -> Self {
        let hashes: &'static [HashAlgorithm] = match token.public_key() {
            PublicKey::Rsa { .. } => &[
                HashAlgorithm::SHA256,
                HashAlgorithm::SHA512,
                HashAlgorithm::SHA384,
            ],
            PublicKey::Ec {
                curve: sealgate_hsm::Curve::P256,
                ..
            } => &[HashAlgorithm::SHA256],
            PublicKey::Ec { .. } => &[HashAlgorithm::SHA384],
            _ => &[HashAlgorithm::SHA256],
        };
        TokenSigner { key, token, hashes }
    }

    /// The hash this key signs with by default (the curve's own for ECDSA).
    pub(crate) fn hash(&self) -> HashAlgorithm {
        self.hashes
            .first()
            .copied()
            .unwrap_or(HashAlgorithm::SHA256)
    }
}

impl openpgp::crypto::Signer for TokenSigner {
    fn public(&self) -> &PublicKeyPacket {
        &self.key
    }

    fn acceptable_hashes(&self) -> &[HashAlgorithm] {
        self.hashes
    }

    fn sign(&mut self, hash_algo: HashAlgorithm, digest: &[u8]) -> openpgp::Result<mpi::Signature> {
        let public = self.token.public_key();
        let scheme = match (public, hash_algo) {
            (PublicKey::Rsa { .. }, HashAlgorithm::SHA256) => SignatureScheme::RsaPkcs1Sha256,
            (PublicKey::Rsa { .. }, HashAlgorithm::SHA384) => SignatureScheme::RsaPkcs1Sha384,
            (PublicKey::Rsa { .. }, HashAlgorithm::SHA512) => SignatureScheme::RsaPkcs1Sha512,
            (PublicKey::Ec { .. }, HashAlgorithm::SHA256) => SignatureScheme::EcdsaP256Sha256,
            (PublicKey::Ec { .. }, HashAlgorithm::SHA384) => SignatureScheme::EcdsaP384Sha384,
            _ => {
                return Err(openpgp::Error::UnsupportedHashAlgorithm(hash_algo).into());
            }
        };
        let sig = self.token.sign_digest(scheme, digest)?;
        match public {
            PublicKey::Rsa { .. } => Ok(mpi::Signature::RSA { s: MPI::new(&sig) }),
            PublicKey::Ec { curve, .. } => {
                let half = curve.field_len();
                let raw = sealgate_hsm::ecdsa_der_to_raw(&sig, half).ok_or_else(|| {
                    openpgp::Error::BadSignature(
                        "token returned a malformed ECDSA signature".into(),
                    )
                })?;
                let (r, s) = raw.split_at_checked(half).ok_or_else(|| {
                    openpgp::Error::BadSignature("token returned a short ECDSA signature".into())
                })?;
                Ok(mpi::Signature::ECDSA {
                    r: MPI::new(r),
                    s: MPI::new(s),
                })
            }
            _ => Err(openpgp::Error::InvalidOperation("unsupported token key".into()).into()),
        }
    }
}

/// How a decryption subkey reaches its token key.
#[derive(Clone)]
pub(crate) enum TokenKeyOp {
    /// RSA key transport.
    Rsa(Arc<dyn RsaDecryptor>),
    /// ECDH key agreement.
    Ecdh(Arc<dyn KeyAgreement>),
}

/// A token decryption (or key agreement) key as a Sequoia decryptor.
pub(crate) struct TokenDecryptor {
    key: PublicKeyPacket,
    op: TokenKeyOp,
    /// A token outage seen during the last call: Sequoia's PKESK decryption
    /// swallows errors, so the caller collects it here to defer the message.
    outage: Option<sealgate_hsm::Error>,
}

impl TokenDecryptor {
    pub(crate) fn new(key: PublicKeyPacket, op: TokenKeyOp) -> Self {
        TokenDecryptor {
            key,
            op,
            outage: None,
        }
    }

    /// The token outage seen since the last call, if any.
    pub(crate) fn take_outage(&mut self) -> Option<sealgate_hsm::Error> {
        self.outage.take()
    }

    /// Passes a token result on, keeping an outage for [`Self::take_outage`].
    fn note<T>(&mut self, r: Result<T, sealgate_hsm::Error>) -> openpgp::Result<T> {
        r.map_err(|e| {
            if e.is_temporary() {
                self.outage = Some(e);
                anyhow::anyhow!("token unavailable")
            } else {
                anyhow::anyhow!("token operation failed")
            }
        })
    }

    pub(crate) fn public_key(&self) -> &PublicKeyPacket {
        &self.key
    }
}

/// Whether `plain` is a well-formed PKESK v3 payload: a known cipher whose
/// key size fits the length, and a matching checksum. Runs over every byte.
fn v3_payload_fits(plain: &[u8]) -> bool {
    let Some((&algo, rest)) = plain.split_first() else {
        return false;
    };
    let Some((key, sum)) = rest.split_at_checked(rest.len().saturating_sub(2)) else {
        return false;
    };
    let size_ok = SymmetricAlgorithm::from(algo)
        .key_size()
        .map(|s| s == key.len())
        .unwrap_or(false);
    let ours = key
        .iter()
        .fold(0u16, |acc, &b| acc.wrapping_add(u16::from(b)));
    let theirs = match sum {
        [hi, lo] => u16::from_be_bytes([*hi, *lo]),
        _ => return false,
    };
    size_ok & (ours == theirs)
}

/// The answer whose cipher octet and checksum fit, else the first (a
/// pseudo-random value, which Sequoia's checksum check then refuses). Every
/// answer is checked, so the work does not depend on which one fits.
fn choose_v3_payload(answers: &[zeroize::Zeroizing<Vec<u8>>]) -> openpgp::Result<SessionKey> {
    let fits: Vec<bool> = answers.iter().map(|a| v3_payload_fits(a)).collect();
    answers
        .iter()
        .zip(&fits)
        .find(|(_, fits)| **fits)
        .or_else(|| answers.iter().zip(&fits).next())
        .map(|(a, _)| SessionKey::from(a.as_slice()))
        .ok_or_else(|| openpgp::Error::InvalidOperation("no candidate".into()).into())
}

impl openpgp::crypto::Decryptor for TokenDecryptor {
    fn public(&self) -> &PublicKeyPacket {
        &self.key
    }

    fn decrypt(
        &mut self,
        ciphertext: &mpi::Ciphertext,
        plaintext_len: Option<usize>,
    ) -> openpgp::Result<SessionKey> {
        match (self.op.clone(), ciphertext) {
            (TokenKeyOp::Rsa(token), mpi::Ciphertext::RSA { c }) => {
                if let Some(len) = plaintext_len {
                    let plain = self.note(token.decrypt_pkcs1v15(c.value(), len))?;
                    return Ok(SessionKey::from(plain.as_slice()));
                }
                let answers =
                    self.note(token.decrypt_pkcs1v15_lengths(c.value(), &V3_CANDIDATES))?;
                choose_v3_payload(&answers)
            }
            (TokenKeyOp::Ecdh(token), mpi::Ciphertext::ECDH { e, .. }) => {
                let shared = self.note(token.agree(e.value()))?;
                let shared = Protected::from(shared.as_slice());
                openpgp::crypto::ecdh::decrypt_unwrap(&self.key, &shared, ciphertext, plaintext_len)
            }
            _ => Err(openpgp::Error::InvalidOperation(
                "ciphertext does not match the token key".into(),
            )
            .into()),
        }
    }
}
