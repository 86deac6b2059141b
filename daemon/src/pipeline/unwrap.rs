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
///
/// With `refuse_unprotected` (`smime.refuse_unprotected`), S/MIME mail for
/// the gateway whose content has no integrity protection (CBC, not signed
/// inside by a signature that verifies) is refused: nothing proves it was
/// not altered on the way (Efail-style malleation need not leave marks).
pub fn unwrap(
    content: &[u8],
    store: &KeyStore,
    directory: &crate::directory::Directory,
    refuse_unprotected: bool,
) -> Result<Unwrapped, Reason> {
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
        (Some(Wrapping::Openpgp), Some(identity)) => unwrap_openpgp(content, identity, directory),
        (Some(Wrapping::Openpgp), None) => Ok(Unwrapped::AsIs),
        // The S/MIME engine judges the rest itself (it also knows the
        // legacy forms the parse stage does not name).
        _ if !keys.opens_smime() => Ok(Unwrapped::AsIs),
        _ => unwrap_smime(content, keys, refuse_unprotected),
    }
}

/// Opens an OpenPGP message addressed to the gateway's identity; mail for
/// anyone else passes through as it is.
fn unwrap_openpgp(
    content: &[u8],
    identity: &GatewayIdentity,
    directory: &crate::directory::Directory,
) -> Result<Unwrapped, Reason> {
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
        Err(e) if e.is_temporary() => Err(Reason::KeyStoreUnavailable {
            detail: format!("to decrypt the message: {e}"),
        }),
        Err(e) => Err(Reason::Undecryptable {
            detail: e.to_string(),
        }),
    }
}

/// The directory's OpenPGP certificates for the `From` address of the
/// (still encrypted) message: the signers the verdict can call known. A
/// directory that cannot be read defers the message (a signature must not
/// be called unknown because storage failed).
fn known_signers(
    content: &[u8],
    directory: &crate::directory::Directory,
) -> Result<Vec<sealgate_openpgp::Cert>, Reason> {
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
        .map_err(|e| Reason::local(format!("key directory not readable: {e}")))?;
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
pub(super) fn signature_verdict(
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

/// Whether a signature verdict word says the signed content is intact
/// (whoever signed it and whatever the signer's standing).
fn signature_holds(word: &str) -> bool {
    matches!(
        word,
        "valid" | "valid-untrusted" | "signer-mismatch" | "revoked"
    )
}

/// Opens an S/MIME message encrypted for one of the gateway's keys.
fn unwrap_smime(
    content: &[u8],
    keys: &GatewayKeys,
    refuse_unprotected: bool,
) -> Result<Unwrapped, Reason> {
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
            let signature = smime_signature_word(&decrypted.message);
            if refuse_unprotected && !report.integrity_protected && !signature_holds(signature) {
                return Err(Reason::PolicyRefused {
                    explanation: format!(
                        "smime.refuse_unprotected: encrypted for the gateway with {:?} and \
                         not signed inside (signature={signature}), so nothing proves it \
                         was not altered on the way; send it signed, or with AES-GCM",
                        report.content_algorithm
                    ),
                });
            }
            let verdict = format!(
                "decrypted=smime; cipher={:?}; integrity={integrity}{}; signature={signature}",
                report.content_algorithm,
                if report.weak { "; weak-cipher" } else { "" },
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
