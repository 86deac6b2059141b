//! Operations with token keys, behind the small traits the crypto engines
//! use: [`RsaDecryptor`], [`Signer`], [`KeyAgreement`], [`KeyWrapper`].
//!
//! The engines (S/MIME, OpenPGP, portal storage, TLS) hold a `dyn Trait`
//! and never see a private key, in the spirit of rustls' `SigningKey` and
//! Sequoia's `crypto::Decryptor`. All methods block on the token (run them
//! in `spawn_blocking` from async code) and are safe to call from many
//! threads at once: each call borrows its own session.
//!
//! Choices made here:
//! - RSA PKCS#1 v1.5 decryption always goes through raw RSA in the token and
//!   a constant-time decoder, with *implicit rejection*: a bad block yields a
//!   deterministic pseudo-random key of the expected length, so an Internet
//!   sender cannot learn anything from the gateway's reaction (Bleichenbacher,
//!   Marvin). The pseudo-random key is HMAC-SHA256 (in the token, with the
//!   non-extractable secret `sealgate-implicit-rejection`) over the key id,
//!   the expected length and the ciphertext, expanded in software. It is the
//!   same across restarts (the secret is on the token, never in the process),
//!   which a per-process secret would not be.
//! - When the message length is not known in advance (OpenPGP v3 PKESK:
//!   AES-256, -192 or -128), [`RsaDecryptor::decrypt_pkcs1v15_lengths`] does
//!   one raw RSA operation and one HMAC for all candidate lengths and decodes
//!   the block once per length, each with its own synthetic value; at most
//!   one answer is the message, and no answer says which (the caller checks
//!   every answer alike). One private-key operation instead of one per length.
//! - OAEP uses the token's `CKM_RSA_PKCS_OAEP` when it has the hash
//!   (SHA-1 on SoftHSM 2.6.1); otherwise raw RSA and a constant-time decoder.
//! - Signatures hash in software (aws-lc) and sign the digest in the token
//!   (`CKM_RSA_PKCS` over a DigestInfo, `CKM_RSA_PKCS_PSS`, `CKM_ECDSA`).
//!   ECDSA signatures are returned DER-encoded (`SEQUENCE { r, s }`, the
//!   X.509/CMS form); [`crate::ecdsa_der_to_raw`] gives `r || s` for OpenPGP.
//! - Data keys are wrapped with AES-256-GCM in the token (`C_Encrypt`):
//!   `0x01 || iv(12) || ciphertext || tag(16)`, with the caller's context as
//!   associated data. SoftHSM 2.6.1 has `CKM_AES_KEY_WRAP(_PAD)` too, but it
//!   only wraps key *objects* and carries no associated data.
//! - The ECDH shared secret (the X coordinate) leaves the token: CMS and
//!   OpenPGP run their KDFs in software. It is derived into a session object
//!   that is destroyed right after reading.
//!
//! Trusts: the token; the ciphertexts and peer keys are attacker-controlled.
//! Must never: tell two decryption failures apart, return an unpadded raw
//! RSA result, or keep derived secrets on the token.

use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType, aead::GcmParams};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use zeroize::Zeroizing;

use crate::der;
use crate::error::{Error, ck};
use crate::keys::{
    Curve, IMPLICIT_REJECTION_LABEL, KeyAlgorithm, KeyInfo, KeyUsage, PublicKey, attr_bytes,
};
use crate::padding::{self, OaepHash};
use crate::token::Hsm;

/// RSA decryption with a token key (key transport in S/MIME and OpenPGP).
pub trait RsaDecryptor: Send + Sync {
    /// The public half (to match recipient infos and export).
    fn public_key(&self) -> &PublicKey;

    /// OAEP decryption with an empty label. Every failure of the ciphertext is
    /// [`Error::Decrypt`].
    fn decrypt_oaep(&self, hash: OaepHash, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error>;

    /// PKCS#1 v1.5 decryption with implicit rejection: returns the `expected_len`-byte
    /// message, or (for any malformed ciphertext) a deterministic pseudo-random value of
    /// the same length. Only token outages and caller mistakes are errors.
    fn decrypt_pkcs1v15(
        &self,
        ciphertext: &[u8],
        expected_len: usize,
    ) -> Result<Zeroizing<Vec<u8>>, Error>;

    /// PKCS#1 v1.5 decryption with implicit rejection for a protocol that does not
    /// say how long the message is (an OpenPGP v3 PKESK): one answer per entry of
    /// `lengths`, each what [`Self::decrypt_pkcs1v15`] gives for that length — the
    /// message if the block is well-formed and carries exactly that many bytes,
    /// otherwise a deterministic pseudo-random value of that length. At most one
    /// answer is the message; telling which one is the caller's job, done on every
    /// answer alike. The default asks once per length; the token key does one raw
    /// RSA operation for all of them.
    fn decrypt_pkcs1v15_lengths(
        &self,
        ciphertext: &[u8],
        lengths: &[usize],
    ) -> Result<Vec<Zeroizing<Vec<u8>>>, Error> {
        lengths
            .iter()
            .map(|&len| self.decrypt_pkcs1v15(ciphertext, len))
            .collect()
    }
}

/// Most lengths [`RsaDecryptor::decrypt_pkcs1v15_lengths`] answers in one call.
pub const MAX_PKCS1V15_LENGTHS: usize = 8;

/// Signature schemes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureScheme {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RsaPkcs1Sha256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RsaPkcs1Sha384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RsaPkcs1Sha512,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256, 32-byte salt.
    RsaPssSha256,
    /// RSASSA-PSS with SHA-384, MGF1-SHA-384, 48-byte salt.
    RsaPssSha384,
    /// RSASSA-PSS with SHA-512, MGF1-SHA-512, 64-byte salt.
    RsaPssSha512,
    /// ECDSA on P-256 with SHA-256 (DER signature).
    EcdsaP256Sha256,
    /// ECDSA on P-384 with SHA-384 (DER signature).
    EcdsaP384Sha384,
}

impl SignatureScheme {
    fn digest(self) -> &'static aws_lc_rs::digest::Algorithm {
        use aws_lc_rs::digest::{SHA256, SHA384, SHA512};
        match self {
            SignatureScheme::RsaPkcs1Sha256
            | SignatureScheme::RsaPssSha256
            | SignatureScheme::EcdsaP256Sha256 => &SHA256,
            SignatureScheme::RsaPkcs1Sha384
            | SignatureScheme::RsaPssSha384
            | SignatureScheme::EcdsaP384Sha384 => &SHA384,
            SignatureScheme::RsaPkcs1Sha512 | SignatureScheme::RsaPssSha512 => &SHA512,
        }
    }

    /// The schemes a public key can make.
    pub fn for_key(key: &PublicKey) -> &'static [SignatureScheme] {
        match key {
            PublicKey::Rsa { .. } => &[
                SignatureScheme::RsaPkcs1Sha256,
                SignatureScheme::RsaPkcs1Sha384,
                SignatureScheme::RsaPkcs1Sha512,
                SignatureScheme::RsaPssSha256,
                SignatureScheme::RsaPssSha384,
                SignatureScheme::RsaPssSha512,
            ],
            PublicKey::Ec {
                curve: Curve::P256, ..
            } => &[SignatureScheme::EcdsaP256Sha256],
            PublicKey::Ec { .. } => &[SignatureScheme::EcdsaP384Sha384],
        }
    }
}

/// Signing with a token key.
pub trait Signer: Send + Sync {
    /// The public half.
    fn public_key(&self) -> &PublicKey;

    /// Hashes `message` with the scheme's hash and signs the digest.
    fn sign(&self, scheme: SignatureScheme, message: &[u8]) -> Result<Vec<u8>, Error> {
        let digest = aws_lc_rs::digest::digest(scheme.digest(), message);
        self.sign_digest(scheme, digest.as_ref())
    }

    /// Signs a digest computed by the caller (CMS signed attributes, OpenPGP).
    fn sign_digest(&self, scheme: SignatureScheme, digest: &[u8]) -> Result<Vec<u8>, Error>;
}

/// ECDH key agreement with a token key.
pub trait KeyAgreement: Send + Sync {
    /// The public half (our ephemeral-static partner sends to this).
    fn public_key(&self) -> &PublicKey;

    /// The raw shared secret (X coordinate) with the peer's uncompressed point.
    fn agree(&self, peer_point: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error>;
}

/// Wrapping of data keys (encryption at rest) with a token secret key.
pub trait KeyWrapper: Send + Sync {
    /// Encrypts and authenticates `data_key`, binding `context` (e.g. a mailbox id).
    fn wrap(&self, data_key: &[u8], context: &[u8]) -> Result<Vec<u8>, Error>;

    /// Reverses [`KeyWrapper::wrap`]; any tampering or wrong context is [`Error::Decrypt`].
    fn unwrap(&self, wrapped: &[u8], context: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error>;
}

/// A key on the token, checked for one purpose at construction.
#[derive(Debug, Clone)]
pub struct TokenKey {
    hsm: Hsm,
    info: KeyInfo,
    public: PublicKey,
}

impl TokenKey {
    fn rsa_modulus(&self) -> &[u8] {
        match &self.public {
            PublicKey::Rsa { n, .. } => n,
            PublicKey::Ec { .. } => &[],
        }
    }

    /// What the store knows about this key.
    pub fn info(&self) -> &KeyInfo {
        &self.info
    }
}

/// A secret (AES) key on the token used for wrapping.
#[derive(Debug, Clone)]
pub struct TokenWrapper {
    hsm: Hsm,
    label: String,
}

const GCM_IV_LEN: usize = 12;
const WRAP_VERSION: u8 = 1;

impl Hsm {
    fn typed_key(&self, label: &str, usage: KeyUsage, op: &'static str) -> Result<TokenKey, Error> {
        let info = self.key_info(label)?;
        match (&info.public, info.usage == usage) {
            (Some(public), true) => Ok(TokenKey {
                hsm: self.clone(),
                public: public.clone(),
                info,
            }),
            _ => Err(Error::WrongKey {
                label: label.to_owned(),
                operation: op,
            }),
        }
    }

    /// The RSA decryption key `label`.
    pub fn decryptor(&self, label: &str) -> Result<TokenKey, Error> {
        let key = self.typed_key(label, KeyUsage::Decrypt, "decryption")?;
        if !matches!(key.public, PublicKey::Rsa { .. }) {
            return Err(Error::WrongKey {
                label: label.to_owned(),
                operation: "decryption",
            });
        }
        Ok(key)
    }

    /// The signing key `label` (RSA or ECDSA).
    pub fn signer(&self, label: &str) -> Result<TokenKey, Error> {
        self.typed_key(label, KeyUsage::Sign, "signing")
    }

    /// The ECDH key `label`.
    pub fn key_agreement(&self, label: &str) -> Result<TokenKey, Error> {
        self.typed_key(label, KeyUsage::Derive, "key agreement")
    }

    /// The AES wrapping key `label`.
    pub fn wrapper(&self, label: &str) -> Result<TokenWrapper, Error> {
        let info = self.key_info(label)?;
        if info.usage != KeyUsage::Wrap || info.algorithm != KeyAlgorithm::Aes256 {
            return Err(Error::WrongKey {
                label: label.to_owned(),
                operation: "wrapping",
            });
        }
        Ok(TokenWrapper {
            hsm: self.clone(),
            label: label.to_owned(),
        })
    }

    /// Raw RSA private operation on a `k`-byte block (`CKM_RSA_X_509`); result
    /// left-padded to `k` bytes. A block not below the modulus is [`Error::Decrypt`].
    fn rsa_raw(&self, label: &str, block: &[u8], n: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        let k = n.len();
        // Public comparison (ciphertext and modulus are public): saves the token a
        // request it would answer with CKR_GENERAL_ERROR.
        if block.len() != k || block >= n {
            return Err(Error::Decrypt);
        }
        let module = self.inner_module();
        let out = self.with_session(|s, live| {
            let h = live.find(s, ObjectClass::PRIVATE_KEY, label, &module)?;
            s.decrypt(&Mechanism::RsaX509, h, block)
                .map_err(|e| data_error(s, &module, e))
        })?;
        let out = Zeroizing::new(out);
        if out.len() > k {
            return Err(Error::Decrypt);
        }
        let mut padded = Zeroizing::new(vec![0u8; k - out.len()]);
        padded.extend_from_slice(&out);
        Ok(padded)
    }

    /// HMAC-SHA256 with the implicit-rejection secret, creating the secret on first use.
    fn implicit_rejection_seed(&self, msg: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        let module = self.inner_module();
        let run = || {
            self.with_session(|s, live| {
                let h = live.find(
                    s,
                    ObjectClass::SECRET_KEY,
                    IMPLICIT_REJECTION_LABEL,
                    &module,
                )?;
                s.sign(&Mechanism::Sha256Hmac, h, msg).map_err(ck(&module))
            })
        };
        match run() {
            Err(Error::KeyNotFound(_)) => {
                match self.generate(
                    IMPLICIT_REJECTION_LABEL,
                    KeyAlgorithm::Hmac256,
                    KeyUsage::Mac,
                ) {
                    Ok(_) | Err(Error::KeyExists(_)) => {}
                    Err(e) => return Err(e),
                }
                run().map(Zeroizing::new)
            }
            other => other.map(Zeroizing::new),
        }
    }
}

/// Classifies the failure of a data operation (`C_Decrypt` ...). SoftHSM answers bad
/// padding, a bad GCM tag and out-of-range input with `CKR_GENERAL_ERROR`, which is
/// also what a vanished token may give: the session is probed, and if it is healthy
/// the failure is the input's ([`Error::Decrypt`]), otherwise the probe's error
/// (temporary) is returned.
pub(crate) fn data_error(
    s: &cryptoki::session::Session,
    module: &str,
    e: cryptoki::error::Error,
) -> Error {
    let err = crate::error::from_ck(module, e);
    let ambiguous = matches!(
        &err,
        Error::Pkcs11 {
            rv: cryptoki::error::RvError::GeneralError,
            ..
        }
    );
    if ambiguous {
        return match s.get_session_info() {
            Ok(_) => Error::Decrypt,
            Err(probe) => crate::error::from_ck(module, probe),
        };
    }
    if err.is_temporary() {
        err
    } else {
        Error::Decrypt
    }
}

/// Left-pads a ciphertext to the modulus length (OpenPGP strips leading zeros).
fn modulus_block(ciphertext: &[u8], k: usize) -> Result<Vec<u8>, Error> {
    if ciphertext.len() > k || k == 0 {
        return Err(Error::Decrypt);
    }
    let mut block = vec![0u8; k - ciphertext.len()];
    block.extend_from_slice(ciphertext);
    Ok(block)
}

impl RsaDecryptor for TokenKey {
    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn decrypt_oaep(&self, hash: OaepHash, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        let k = self.public.rsa_len();
        let block = modulus_block(ciphertext, k)?;
        let module = self.hsm.inner_module();
        let label = &self.info.label;
        let (hash_mech, mgf) = match hash {
            OaepHash::Sha1 => (MechanismType::SHA1, PkcsMgfType::MGF1_SHA1),
            OaepHash::Sha256 => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256),
        };
        let mut skip_native = false;
        let native = self.hsm.with_session(|s, live| {
            skip_native = hash == OaepHash::Sha256
                && live
                    .no_native_oaep_sha256
                    .load(std::sync::atomic::Ordering::Relaxed);
            if skip_native {
                return Ok(None);
            }
            let h = live.find(s, ObjectClass::PRIVATE_KEY, label, &module)?;
            let params = PkcsOaepParams::new(hash_mech, mgf, PkcsOaepSource::empty());
            match s.decrypt(&Mechanism::RsaPkcsOaep(params), h, &block) {
                Ok(m) => Ok(Some(Ok(m))),
                // The token refuses the parameters (SoftHSM 2.6.1: CKR_ARGUMENTS_BAD for
                // SHA-256 at C_DecryptInit): decode in software instead.
                Err(cryptoki::error::Error::Pkcs11(
                    cryptoki::error::RvError::MechanismParamInvalid
                    | cryptoki::error::RvError::MechanismInvalid
                    | cryptoki::error::RvError::ArgumentsBad,
                    cryptoki::context::Function::DecryptInit,
                )) => {
                    if hash == OaepHash::Sha256 {
                        live.no_native_oaep_sha256
                            .store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(None)
                }
                Err(e) => match data_error(s, &module, e) {
                    Error::Decrypt => Ok(Some(Err(Error::Decrypt))),
                    other => Err(other),
                },
            }
        })?;
        match native {
            Some(result) => result.map(Zeroizing::new),
            None => {
                let em = self.hsm.rsa_raw(label, &block, self.rsa_modulus())?;
                padding::oaep_decode(&em, hash).map(Zeroizing::new)
            }
        }
    }

    fn decrypt_pkcs1v15(
        &self,
        ciphertext: &[u8],
        expected_len: usize,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        self.decrypt_pkcs1v15_lengths(ciphertext, &[expected_len])?
            .pop()
            .ok_or_else(|| Error::InvalidInput("no answer for one length".into()))
    }

    fn decrypt_pkcs1v15_lengths(
        &self,
        ciphertext: &[u8],
        lengths: &[usize],
    ) -> Result<Vec<Zeroizing<Vec<u8>>>, Error> {
        let k = self.public.rsa_len();
        check_pkcs1v15_lengths(lengths, k)?;
        // The synthetic keys are computed for every ciphertext, good or bad: one
        // HMAC on the token over every length asked for, expanded into one
        // stream cut per length. For a single length this is the same value as
        // before several lengths could be asked for.
        let mut msg = b"sealgate-implicit-rejection-v1".to_vec();
        msg.extend_from_slice(&self.info.id);
        for len in lengths {
            msg.extend_from_slice(&(*len as u64).to_be_bytes());
        }
        msg.extend_from_slice(ciphertext);
        let seed = self.hsm.implicit_rejection_seed(&msg)?;
        let stream = expand(&seed, lengths.iter().sum());
        let mut synthetic = Vec::with_capacity(lengths.len());
        let mut rest: &[u8] = &stream;
        for len in lengths {
            let (mine, tail) = rest.split_at_checked(*len).ok_or(Error::Decrypt)?;
            synthetic.push(Zeroizing::new(mine.to_vec()));
            rest = tail;
        }
        let em = match modulus_block(ciphertext, k).and_then(|block| {
            self.hsm
                .rsa_raw(&self.info.label, &block, self.rsa_modulus())
        }) {
            Ok(em) => em,
            Err(e) if e.is_temporary() => return Err(e),
            // Too long, or not below the modulus: public facts, but still no distinct answer.
            Err(_) => return Ok(synthetic),
        };
        Ok(lengths
            .iter()
            .zip(&synthetic)
            .map(|(len, syn)| Zeroizing::new(padding::pkcs1v15_implicit(&em, *len, syn)))
            .collect())
    }
}

/// Refuses length requests no well-formed block of `k` bytes can answer
/// (public facts about the caller's request, not about the ciphertext).
fn check_pkcs1v15_lengths(lengths: &[usize], k: usize) -> Result<(), Error> {
    if lengths.is_empty() || lengths.len() > MAX_PKCS1V15_LENGTHS {
        return Err(Error::InvalidInput(format!(
            "between 1 and {MAX_PKCS1V15_LENGTHS} lengths, not {}",
            lengths.len()
        )));
    }
    match lengths.iter().find(|&&len| len == 0 || len + 11 > k) {
        Some(len) => Err(Error::InvalidInput(format!(
            "cannot expect {len} bytes from a {k}-byte RSA block"
        ))),
        None => Ok(()),
    }
}

/// Expands a 32-byte seed to `len` bytes (HMAC-SHA256 in counter mode).
fn expand(seed: &[u8], len: usize) -> Zeroizing<Vec<u8>> {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, seed);
    let mut out = Zeroizing::new(Vec::with_capacity(len + 32));
    let mut counter: u32 = 0;
    while out.len() < len {
        let mut ctx = aws_lc_rs::hmac::Context::with_key(&key);
        ctx.update(&counter.to_be_bytes());
        ctx.update(b"expand");
        out.extend_from_slice(ctx.sign().as_ref());
        counter = counter.wrapping_add(1);
    }
    out.truncate(len);
    out
}

const DIGEST_INFO_SHA256: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];
const DIGEST_INFO_SHA384: &[u8] = &[
    0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05,
    0x00, 0x04, 0x30,
];
const DIGEST_INFO_SHA512: &[u8] = &[
    0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05,
    0x00, 0x04, 0x40,
];

impl Signer for TokenKey {
    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn sign_digest(&self, scheme: SignatureScheme, digest: &[u8]) -> Result<Vec<u8>, Error> {
        if !SignatureScheme::for_key(&self.public).contains(&scheme) {
            return Err(Error::WrongKey {
                label: self.info.label.clone(),
                operation: "this signature scheme",
            });
        }
        if digest.len() != scheme.digest().output_len() {
            return Err(Error::InvalidInput(format!(
                "digest of {} bytes for {scheme:?}",
                digest.len()
            )));
        }
        let pss = |hash_alg, mgf, s_len: u64| {
            Mechanism::RsaPkcsPss(PkcsPssParams {
                hash_alg,
                mgf,
                s_len: s_len.into(),
            })
        };
        let (mechanism, input) = match scheme {
            SignatureScheme::RsaPkcs1Sha256 => {
                (Mechanism::RsaPkcs, [DIGEST_INFO_SHA256, digest].concat())
            }
            SignatureScheme::RsaPkcs1Sha384 => {
                (Mechanism::RsaPkcs, [DIGEST_INFO_SHA384, digest].concat())
            }
            SignatureScheme::RsaPkcs1Sha512 => {
                (Mechanism::RsaPkcs, [DIGEST_INFO_SHA512, digest].concat())
            }
            SignatureScheme::RsaPssSha256 => (
                pss(MechanismType::SHA256, PkcsMgfType::MGF1_SHA256, 32),
                digest.to_vec(),
            ),
            SignatureScheme::RsaPssSha384 => (
                pss(MechanismType::SHA384, PkcsMgfType::MGF1_SHA384, 48),
                digest.to_vec(),
            ),
            SignatureScheme::RsaPssSha512 => (
                pss(MechanismType::SHA512, PkcsMgfType::MGF1_SHA512, 64),
                digest.to_vec(),
            ),
            SignatureScheme::EcdsaP256Sha256 | SignatureScheme::EcdsaP384Sha384 => {
                (Mechanism::Ecdsa, digest.to_vec())
            }
        };
        let module = self.hsm.inner_module();
        let label = &self.info.label;
        let sig = self.hsm.with_session(|s, live| {
            let h = live.find(s, ObjectClass::PRIVATE_KEY, label, &module)?;
            s.sign(&mechanism, h, &input).map_err(ck(&module))
        })?;
        if matches!(self.public, PublicKey::Ec { .. }) {
            der::ecdsa_raw_to_der(&sig).ok_or_else(|| {
                Error::InvalidInput("token returned a malformed ECDSA signature".to_owned())
            })
        } else {
            Ok(sig)
        }
    }
}

impl KeyAgreement for TokenKey {
    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn agree(&self, peer_point: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        let PublicKey::Ec { curve, .. } = &self.public else {
            return Err(Error::WrongKey {
                label: self.info.label.clone(),
                operation: "key agreement",
            });
        };
        let field = curve.field_len();
        if peer_point.len() != 2 * field + 1 || peer_point.first() != Some(&0x04) {
            return Err(Error::InvalidInput(
                "peer key must be an uncompressed point on the key's curve".to_owned(),
            ));
        }
        let module = self.hsm.inner_module();
        let label = &self.info.label;
        let secret = self.hsm.with_session(|s, live| {
            let h = live.find(s, ObjectClass::PRIVATE_KEY, label, &module)?;
            let params = Ecdh1DeriveParams::new(EcKdf::null(), peer_point);
            let template = [
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::GENERIC_SECRET),
                Attribute::Token(false),
                Attribute::Sensitive(false),
                Attribute::Extractable(true),
                Attribute::ValueLen((field as u64).into()),
            ];
            let derived = s
                .derive_key(&Mechanism::Ecdh1Derive(params), h, &template)
                .map_err(|e| match data_error(s, &module, e) {
                    // An invalid peer point is the peer's fault, not the token's.
                    Error::Decrypt => {
                        Error::InvalidInput("the token rejected the peer's public key".to_owned())
                    }
                    other => other,
                })?;
            let value = s.get_attributes(derived, &[AttributeType::Value]);
            let destroyed = s.destroy_object(derived);
            let value = value.map_err(ck(&module))?;
            destroyed.map_err(ck(&module))?;
            attr_bytes(&value, AttributeType::Value)
                .ok_or_else(|| Error::InvalidInput("token returned no ECDH secret".to_owned()))
        })?;
        Ok(Zeroizing::new(secret))
    }
}

impl KeyWrapper for TokenWrapper {
    fn wrap(&self, data_key: &[u8], context: &[u8]) -> Result<Vec<u8>, Error> {
        let module = self.hsm.inner_module();
        self.hsm.with_session(|s, live| {
            let h = live.find(s, ObjectClass::SECRET_KEY, &self.label, &module)?;
            let mut iv = [0u8; GCM_IV_LEN];
            s.generate_random_slice(&mut iv).map_err(ck(&module))?;
            let mut iv_param = iv;
            let params = GcmParams::new(&mut iv_param, context, 128.into())
                .map_err(|e| Error::InvalidInput(e.to_string()))?;
            let ct = s
                .encrypt(&Mechanism::AesGcm(params), h, data_key)
                .map_err(ck(&module))?;
            let mut out = Vec::with_capacity(1 + GCM_IV_LEN + ct.len());
            out.push(WRAP_VERSION);
            out.extend_from_slice(&iv);
            out.extend_from_slice(&ct);
            Ok(out)
        })
    }

    fn unwrap(&self, wrapped: &[u8], context: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        let (version, rest) = wrapped.split_first().ok_or(Error::Decrypt)?;
        if *version != WRAP_VERSION || rest.len() < GCM_IV_LEN + 16 {
            return Err(Error::Decrypt);
        }
        let (iv, ct) = rest.split_at_checked(GCM_IV_LEN).ok_or(Error::Decrypt)?;
        let mut iv = iv.to_vec();
        let module = self.hsm.inner_module();
        self.hsm.with_session(|s, live| {
            let h = live.find(s, ObjectClass::SECRET_KEY, &self.label, &module)?;
            let params = GcmParams::new(&mut iv, context, 128.into())
                .map_err(|e| Error::InvalidInput(e.to_string()))?;
            s.decrypt(&Mechanism::AesGcm(params), h, ct)
                .map(Zeroizing::new)
                .map_err(|e| data_error(s, &module, e))
        })
    }
}
