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
//! handed on for the harvest stage.
//!
//! Trusts: the token and the gateway's own certificates; nothing in the
//! message (the engines parse it within their limits).

use sealgate_openpgp::GatewayIdentity;
use sealgate_smime::efail::CbcVerdict;

use crate::keys::{GatewayKeys, KeyStore};
use crate::policy::Wrapping;
use crate::reason::Reason;

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
pub fn unwrap(content: &[u8], store: &KeyStore) -> Result<Unwrapped, Reason> {
    if matches!(store, KeyStore::NotSetUp) {
        return Ok(Unwrapped::AsIs);
    }
    let wrapping = super::parse::wrapping_of(content);
    let keys = match store {
        KeyStore::Ready(keys) => keys,
        KeyStore::Unavailable(why) if wrapping.is_some() => {
            return Err(Reason::KeyStoreUnavailable {
                detail: format!("{why}; the message may be encrypted for the gateway"),
            });
        }
        _ => return Ok(Unwrapped::AsIs),
    };
    match (wrapping, keys.openpgp()) {
        (Some(Wrapping::Openpgp), Some(identity)) => unwrap_openpgp(content, identity),
        (Some(Wrapping::Openpgp), None) => Ok(Unwrapped::AsIs),
        // The S/MIME engine judges the rest itself (it also knows the
        // legacy forms the parse stage does not name).
        _ if !keys.opens_smime() => Ok(Unwrapped::AsIs),
        _ => unwrap_smime(content, keys),
    }
}

/// Opens an OpenPGP message addressed to the gateway's identity; mail for
/// anyone else passes through as it is.
fn unwrap_openpgp(content: &[u8], identity: &GatewayIdentity) -> Result<Unwrapped, Reason> {
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
    match sealgate_openpgp::decrypt(identity, content, &[], &limits) {
        Ok(decrypted) => Ok(Unwrapped::Opened {
            content: decrypted.message.to_vec(),
            wrapping: Wrapping::Openpgp,
            verdict: format!(
                "decrypted=openpgp; format={}; integrity=mdc-or-aead; signature={}",
                match decrypted.format {
                    sealgate_openpgp::Format::PgpMime => "pgp-mime",
                    _ => "inline",
                },
                signature_word(&decrypted.verdict)
            ),
            carried: decrypted.carried_certs,
        }),
        Err(e) if e.is_temporary() => Err(Reason::KeyStoreUnavailable {
            detail: format!("to decrypt the message: {e}"),
        }),
        Err(e) => Err(Reason::Undecryptable {
            detail: e.to_string(),
        }),
    }
}

/// One word for the verdict header: what the signatures inside established.
fn signature_word(verdict: &sealgate_openpgp::Verdict) -> &'static str {
    use sealgate_openpgp::Verdict;
    match verdict {
        Verdict::Valid { .. } => "valid",
        Verdict::ValidUnknownKey { .. } => "valid-unknown-key",
        Verdict::SignerMismatch { .. } => "signer-mismatch",
        Verdict::Invalid { .. } => "invalid",
        Verdict::NotFullySigned => "not-fully-signed",
        _ => "none",
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
            Verdict::NotFullySigned => "not-fully-signed",
            Verdict::Invalid(_) if top_level_signed => "invalid",
            _ => "none",
        },
        // Not signed at all (or not in a form the engine reads as signed).
        Err(_) => "none",
    }
}

/// Opens an S/MIME message encrypted for one of the gateway's keys.
fn unwrap_smime(content: &[u8], keys: &GatewayKeys) -> Result<Unwrapped, Reason> {
    match sealgate_smime::decrypt_message(content, &keys.smime_keys()) {
        Ok(decrypted) => {
            let report = &decrypted.report;
            let integrity = match &report.cbc_check {
                _ if report.integrity_protected => "aead".to_owned(),
                Some(CbcVerdict::Malleated(why)) => {
                    return Err(Reason::Tampered {
                        detail: why.to_string(),
                    });
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
        Err(e) if e.is_temporary() => Err(Reason::KeyStoreUnavailable {
            detail: format!("to decrypt the message: {e}"),
        }),
        Err(e) => Err(Reason::Undecryptable {
            detail: e.to_string(),
        }),
    }
}
