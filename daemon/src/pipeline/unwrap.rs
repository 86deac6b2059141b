//! Unwrap stage: a message encrypted for the gateway is opened on the token,
//! so policy and content checks see the plaintext and each recipient gets
//! it in the form the policy decides.
//!
//! Being encrypted for the gateway means the sender asked for encryption
//! (click-to-encrypt): the caller marks the facts so every external
//! recipient requires a secure method. A message encrypted for someone else
//! is left as it is (end-to-end encrypted mail passes through). A message
//! for us that cannot be opened is refused for good (the sender learns why,
//! without any plaintext); a token outage defers it. CBC content that shows
//! the marks of malleation (Efail gadgets) is refused.
//!
//! S/MIME is opened with the token keys that have certificates; OpenPGP with
//! the gateway's OpenPGP identity (`<data>/openpgp`, keys on the token),
//! after reading whom the message is addressed to. The certificates that
//! OpenPGP signatures inside carried (GnuPG's `--include-key-block`) are
//! handed on for the harvest stage. Signatures inside are checked against
//! the key directory's certificates for the `From` address, so the verdict
//! tells a valid signature (with the signer's trust level) from an
//! invalid one and from one whose signer nobody knows.
//!
//! Trusts: the token and the gateway's own certificates, the directory;
//! nothing in the message (the engines parse it within their limits).

use std::path::Path;

use sealgate_hsm::{Hsm, TokenKey};
use sealgate_openpgp::GatewayIdentity;
use sealgate_smime::cert::CertKey;
use sealgate_smime::efail::CbcVerdict;
use sealgate_smime::{Certificate, GatewayKey};

use super::PipelineError;
use crate::policy::Wrapping;

/// Labels of the token keys that open S/MIME mail for the gateway.
pub const SMIME_KEY_LABELS: &[&str] = &["gateway-decrypt", "gateway-ec-derive"];

/// Label of the token key that signs for the gateway.
pub const SIGN_KEY_LABEL: &str = "gateway-sign";

/// The gateway's keys on the token, with their certificates: those that
/// open mail for the gateway, and the one that signs.
pub struct GatewayKeys {
    smime: Vec<(Certificate, TokenKey)>,
    signer: Option<(TokenKey, Vec<Certificate>)>,
    openpgp: Option<GatewayIdentity>,
}

impl std::fmt::Debug for GatewayKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayKeys")
            .field("smime", &self.smime.len())
            .field("signer", &self.signer.is_some())
            .field(
                "openpgp",
                &self
                    .openpgp
                    .as_ref()
                    .map(|id| id.cert().fingerprint().to_hex()),
            )
            .finish()
    }
}

impl GatewayKeys {
    /// Loads every key in `labels` that has a certificate, the signing key
    /// if it has one, and the gateway's OpenPGP identity from
    /// `openpgp_dir` if one was created there (`sealgate pgp init`).
    ///
    /// A key without any certificate is skipped: it was never set up to
    /// open mail. But a key whose certificate the gateway holds (its own
    /// certificate store, `<data>/certs`) or an OpenPGP identity that
    /// exists must load: if the token cannot produce it, the token is not
    /// whole or not ours (its storage moved, emptied, replaced), and that
    /// is an outage, never "no keys": mail for the gateway would otherwise
    /// leave unopened and mail to sign unsigned. Blocking.
    pub fn load(
        hsm: &Hsm,
        labels: &[&str],
        openpgp_dir: &Path,
    ) -> Result<GatewayKeys, KeyLoadError> {
        let mut smime = Vec::new();
        for label in labels {
            let Some(der) = certificate_of(hsm, label)?.and_then(|chain| chain.into_iter().next())
            else {
                tracing::info!(%label, "no certificate for this token key: it opens no S/MIME mail");
                continue;
            };
            let cert = Certificate::from_der(&der).map_err(|e| KeyLoadError::Missing {
                label: (*label).to_owned(),
                why: format!("its certificate does not parse: {e}"),
            })?;
            let key = match cert.key {
                CertKey::Ec { .. } => hsm.key_agreement(label),
                _ => hsm.decryptor(label),
            };
            let key = key.map_err(|e| KeyLoadError::missing(label, e))?;
            smime.push((cert, key));
        }
        let chain: Vec<Certificate> = certificate_of(hsm, SIGN_KEY_LABEL)?
            .unwrap_or_default()
            .iter()
            .filter_map(|d| Certificate::from_der(d).ok())
            .collect();
        let signer = if chain.is_empty() {
            tracing::info!(
                label = SIGN_KEY_LABEL,
                "no signing key with a certificate: the gateway does not sign"
            );
            None
        } else {
            let key = hsm
                .signer(SIGN_KEY_LABEL)
                .map_err(|e| KeyLoadError::missing(SIGN_KEY_LABEL, e))?;
            Some((key, chain))
        };
        Ok(GatewayKeys {
            smime,
            signer,
            openpgp: load_openpgp(hsm, openpgp_dir)?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.smime.is_empty() && self.signer.is_none() && self.openpgp.is_none()
    }

    /// The gateway's S/MIME signing identity; correspondents are told to
    /// encrypt to the gateway's RSA decryption certificate, if there is one.
    pub fn signing(&self) -> Option<sealgate_smime::SigningIdentity<'_>> {
        let (key, chain) = self.signer.as_ref()?;
        Some(sealgate_smime::SigningIdentity {
            key,
            chain,
            encryption_cert: self
                .smime
                .iter()
                .map(|(cert, _)| cert)
                .find(|cert| matches!(cert.key, CertKey::Rsa { .. })),
        })
    }

    /// The gateway's OpenPGP identity, if one was created.
    pub fn openpgp(&self) -> Option<&GatewayIdentity> {
        self.openpgp.as_ref()
    }

    fn smime_keys(&self) -> Vec<GatewayKey<'_>> {
        self.smime
            .iter()
            .map(|(cert, key)| match cert.key {
                CertKey::Ec { .. } => GatewayKey::Ec { cert, key },
                _ => GatewayKey::Rsa { cert, key },
            })
            .collect()
    }
}

/// What the gateway knows of its own keys, as the scheduler holds it.
#[derive(Debug, Clone, Default)]
pub enum KeyStore {
    /// No token is set up (or it holds no key with a certificate): mail
    /// encrypted for anyone passes through unopened.
    #[default]
    NotSetUp,
    /// A token is set up but could not be opened: mail that may be
    /// encrypted for the gateway waits (deferred) until it can be.
    Unavailable(String),
    /// Loaded.
    Ready(std::sync::Arc<GatewayKeys>),
}

impl KeyStore {
    /// The loaded keys, if any.
    pub fn keys(&self) -> Option<&GatewayKeys> {
        match self {
            KeyStore::Ready(keys) => Some(keys),
            _ => None,
        }
    }
}

/// Why the gateway's keys could not be loaded: the key store is then
/// unavailable (mail that needs it waits), never "not set up".
#[derive(Debug, thiserror::Error)]
pub enum KeyLoadError {
    /// The token could not be reached or answered with an error.
    #[error("token: {0}")]
    Token(#[from] sealgate_hsm::Error),
    /// A key the gateway set up (it holds its certificate) is not on the token.
    #[error(
        "the key {label:?} has a certificate but the token cannot produce it ({why}); \
         is the token's storage missing or replaced?"
    )]
    Missing { label: String, why: String },
    /// The gateway's OpenPGP identity exists but does not load.
    #[error("the gateway's OpenPGP identity does not load: {0}")]
    Openpgp(String),
}

impl KeyLoadError {
    fn missing(label: &str, e: sealgate_hsm::Error) -> KeyLoadError {
        if e.is_temporary() {
            KeyLoadError::Token(e)
        } else {
            KeyLoadError::Missing {
                label: label.to_owned(),
                why: e.to_string(),
            }
        }
    }
}

/// The certificate chain of a token key: `None` when it has none anywhere
/// (never set up to open or sign mail); an error when the token could not
/// be asked.
fn certificate_of(hsm: &Hsm, label: &str) -> Result<Option<Vec<Vec<u8>>>, KeyLoadError> {
    match hsm.certificate_chain(label) {
        Ok(chain) if !chain.is_empty() => Ok(Some(chain)),
        Ok(_) | Err(sealgate_hsm::Error::NoCertificate(_)) => Ok(None),
        // A certificate file that does not read is not "no certificate".
        Err(e) => Err(KeyLoadError::Token(e)),
    }
}

/// The OpenPGP identity in `dir`, if `sealgate pgp init` created one; one
/// that exists and does not load is an error.
fn load_openpgp(hsm: &Hsm, dir: &Path) -> Result<Option<GatewayIdentity>, KeyLoadError> {
    if !dir.join("gateway.toml").exists() {
        tracing::info!(dir = %dir.display(), "no gateway OpenPGP identity: OpenPGP mail for the gateway is not opened");
        return Ok(None);
    }
    match GatewayIdentity::load(hsm, dir) {
        Ok(identity) => Ok(Some(identity)),
        Err(sealgate_openpgp::Error::Hsm(e)) if e.is_temporary() => Err(KeyLoadError::Token(e)),
        Err(e) => Err(KeyLoadError::Openpgp(e.to_string())),
    }
}

/// What unwrapping did.
#[derive(Debug)]
pub enum Unwrapped {
    /// Not encrypted for the gateway (or no keys): the message goes on as it is.
    AsIs,
    /// Opened: the decrypted message, how it was wrapped, the verdict for
    /// the verdict header, and the OpenPGP certificates the signatures
    /// inside carried (Key Block subpackets, each its signature's maker,
    /// valid under the engine's policy; not yet checked against `From`,
    /// that is the harvest stage's), which the decrypted MIME no longer shows.
    Opened {
        content: Vec<u8>,
        wrapping: Wrapping,
        verdict: String,
        carried: Vec<sealgate_openpgp::Cert>,
    },
}

/// Opens `content` if it is encrypted (S/MIME or OpenPGP, as the parse
/// stage's [`super::parse::wrapping_of`] says) for one of the gateway's
/// keys. While the key store is unavailable an encrypted message is
/// deferred: it may be for the gateway, and passing it on would deliver
/// ciphertext nobody can read (or, worse, skip the recipient's own
/// encryption). Without a key store the message is not even looked at.
pub fn unwrap(
    content: &[u8],
    store: &KeyStore,
    directory: &crate::directory::Directory,
) -> Result<Unwrapped, PipelineError> {
    if matches!(store, KeyStore::NotSetUp) {
        return Ok(Unwrapped::AsIs);
    }
    let wrapping = super::parse::wrapping_of(content);
    let keys = match store {
        KeyStore::Ready(keys) => keys,
        KeyStore::Unavailable(why) if wrapping.is_some() => {
            return Err(PipelineError::Temporary(format!(
                "the key store is unavailable ({why}); the message may be encrypted for the gateway"
            )));
        }
        _ => return Ok(Unwrapped::AsIs),
    };
    match (wrapping, &keys.openpgp) {
        (Some(Wrapping::Openpgp), Some(identity)) => unwrap_openpgp(content, identity, directory),
        (Some(Wrapping::Openpgp), None) => Ok(Unwrapped::AsIs),
        // The S/MIME engine judges the rest itself (it also knows the
        // legacy forms the parse stage does not name).
        _ if keys.smime.is_empty() => Ok(Unwrapped::AsIs),
        _ => unwrap_smime(content, keys),
    }
}

/// Opens an OpenPGP message addressed to the gateway's identity; mail for
/// anyone else passes through as it is.
fn unwrap_openpgp(
    content: &[u8],
    identity: &GatewayIdentity,
    directory: &crate::directory::Directory,
) -> Result<Unwrapped, PipelineError> {
    let limits = sealgate_openpgp::Limits::default();
    let addressed = match sealgate_openpgp::addressees(content, &limits) {
        Ok(found) => found.include(identity),
        // Unreadable packets: not something we can open, and not ours to
        // judge; it passes as it is (policy still decides the recipients).
        Err(_) => false,
    };
    if !addressed {
        return Ok(Unwrapped::AsIs);
    }
    let known = known_signers(content, directory)?;
    match sealgate_openpgp::decrypt(identity, content, &known, &limits) {
        Ok(decrypted) => Ok(Unwrapped::Opened {
            content: decrypted.message.to_vec(),
            wrapping: Wrapping::Openpgp,
            verdict: format!(
                "decrypted=openpgp; format={}; integrity=mdc-or-aead; signature={}",
                match decrypted.format {
                    sealgate_openpgp::Format::PgpMime => "pgp-mime",
                    _ => "inline",
                },
                signature_verdict(&decrypted.verdict, directory)
            ),
            carried: decrypted.carried_certs,
        }),
        Err(e) if e.is_temporary() => Err(PipelineError::Temporary(format!(
            "the key store is unavailable to decrypt the message: {e}"
        ))),
        Err(e) => Err(PipelineError::Permanent(format!(
            "the message is encrypted for the gateway but could not be decrypted: {e}"
        ))),
    }
}

/// The directory's OpenPGP certificates for the `From` address of the
/// (still encrypted) message: the signers the verdict can call known. A
/// directory that cannot be read defers the message (a signature must not
/// be called unknown because storage failed).
fn known_signers(
    content: &[u8],
    directory: &crate::directory::Directory,
) -> Result<Vec<sealgate_openpgp::Cert>, PipelineError> {
    let Some(from) = mail_parser::MessageParser::default()
        .parse_headers(content)
        .and_then(|h| {
            h.header_raw("From")
                .and_then(sealgate_smime::verify::from_address)
        })
    else {
        return Ok(Vec::new());
    };
    let entries = directory
        .lookup(&from)
        .map_err(|e| PipelineError::Temporary(format!("key directory not readable: {e}")))?;
    let limits = sealgate_openpgp::Limits::default();
    Ok(entries
        .iter()
        .filter(|e| e.kind == crate::directory::Kind::Openpgp)
        .filter_map(|e| sealgate_openpgp::parse_certs(&e.data, &limits).ok())
        .flatten()
        .collect())
}

/// The verdict header's words for the signatures inside: `valid` with the
/// signer and its trust in the directory, `valid-unknown-key` (good, by a
/// key only the mail carried), `signer-mismatch`, `invalid`,
/// `unknown-signer` (nobody knows the key: not checkable), or `none`.
fn signature_verdict(
    verdict: &sealgate_openpgp::Verdict,
    directory: &crate::directory::Directory,
) -> String {
    use sealgate_openpgp::Verdict;
    match verdict {
        Verdict::Valid { signer } => {
            let trust = directory
                .get(&signer.to_ascii_lowercase())
                .ok()
                .flatten()
                .map_or("unknown", |e| e.trust.as_str());
            format!("valid; signer={signer}; trust={trust}")
        }
        Verdict::ValidUnknownKey { signer } => format!("valid-unknown-key; signer={signer}"),
        Verdict::SignerMismatch { signer, .. } => format!("signer-mismatch; signer={signer}"),
        Verdict::Invalid { .. } => "invalid".to_owned(),
        Verdict::UnknownSigner { issuer } => format!("unknown-signer; issuer={issuer}"),
        Verdict::NotFullySigned => "not-fully-signed".to_owned(),
        _ => "none".to_owned(),
    }
}

/// One word for the verdict header: what a signature inside opened S/MIME
/// mail establishes (sign-then-encrypt). No trust anchors are configured,
/// so a good signature by the `From` address is `valid-untrusted`.
fn smime_signature_word(inner: &[u8]) -> &'static str {
    use sealgate_smime::Verdict;
    let now = i64::try_from(crate::envelope::now_ms() / 1000).unwrap_or(i64::MAX);
    // Only a signed entity can be "invalid"; for any other multipart the
    // engine answers whether a part inside is signed (not-fully-signed).
    let top_level_signed = mail_parser::MessageParser::default()
        .parse(inner)
        .and_then(|m| {
            use mail_parser::MimeHeaders;
            let ct = m.root_part().content_type()?;
            let subtype = ct.subtype().unwrap_or("").to_ascii_lowercase();
            Some(matches!(
                (ct.ctype().to_ascii_lowercase().as_str(), subtype.as_str()),
                ("multipart", "signed") | ("application", "pkcs7-mime" | "x-pkcs7-mime")
            ))
        })
        .unwrap_or(false);
    match sealgate_smime::verify_message(inner, &[], now) {
        Ok(v) => match v.verdict {
            Verdict::Valid => "valid",
            Verdict::ValidButUntrusted(_) => "valid-untrusted",
            Verdict::SignerMismatch => "signer-mismatch",
            Verdict::Revoked(_) => "revoked",
            Verdict::NotFullySigned => "not-fully-signed",
            Verdict::Invalid(_) if top_level_signed => "invalid",
            _ => "none",
        },
        // Not signed at all (or not in a form the engine reads as signed).
        Err(_) => "none",
    }
}

/// Opens an S/MIME message encrypted for one of the gateway's keys.
fn unwrap_smime(content: &[u8], keys: &GatewayKeys) -> Result<Unwrapped, PipelineError> {
    match sealgate_smime::decrypt_message(content, &keys.smime_keys()) {
        Ok(decrypted) => {
            let report = &decrypted.report;
            let integrity = match &report.cbc_check {
                _ if report.integrity_protected => "aead".to_owned(),
                Some(CbcVerdict::Malleated(why)) => {
                    return Err(PipelineError::Permanent(format!(
                        "the encrypted content shows signs of tampering ({why}); not delivered"
                    )));
                }
                Some(CbcVerdict::Clean) => "cbc-checked".to_owned(),
                Some(CbcVerdict::Unverifiable(_)) | None => "none".to_owned(),
                Some(_) => "none".to_owned(),
            };
            let verdict = format!(
                "decrypted=smime; cipher={:?}; integrity={integrity}{}; signature={}",
                report.content_algorithm,
                if report.weak { "; weak-cipher" } else { "" },
                smime_signature_word(&decrypted.message)
            );
            Ok(Unwrapped::Opened {
                content: decrypted.message.to_vec(),
                wrapping: Wrapping::Smime,
                verdict,
                carried: Vec::new(),
            })
        }
        Err(sealgate_smime::Error::WrongType(_) | sealgate_smime::Error::NoMatchingRecipient) => {
            Ok(Unwrapped::AsIs)
        }
        Err(e) if e.is_temporary() => Err(PipelineError::Temporary(format!(
            "the key store is unavailable to decrypt the message: {e}"
        ))),
        Err(e) => Err(PipelineError::Permanent(format!(
            "the message is encrypted for the gateway but could not be decrypted: {e}"
        ))),
    }
}
