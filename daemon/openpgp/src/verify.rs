//! Signature verification and the verdict.
//!
//! Verifies detached (`multipart/signed`, RFC 3156 §5), inline (cleartext
//! signature framework or signed armored messages in a text part) and —
//! through [`crate::decrypt`] — encrypted-and-signed messages. The result is
//! a [`Verdict`], data for the pipeline and the directory, not an error: a
//! bad signature is a fact about the message, not a failure of the engine.
//!
//! Binding: a signature is `Valid` only when the signing certificate is
//! known (the caller's directory) and one of its valid user IDs carries the
//! `From` address; a certificate found only in the mail itself (Autocrypt,
//! attached key, a signature's Key Block — inside an encrypted message
//! taken by `Collector` as the signature packets pass, before Sequoia asks
//! for certificates) yields `ValidUnknownKey`; a signature whose key is
//! neither known nor carried cannot be checked: `UnknownSigner`, which is
//! not `Invalid` (nothing says it is bad, only that nobody can tell).
//!
//! Trusts: the caller's `known` certificates and Sequoia's standard policy.
//! Everything in the message is attacker-controlled.

use mail_parser::MimeHeaders as _;
use sequoia_openpgp as openpgp;

use openpgp::Cert;
use openpgp::KeyHandle;
use openpgp::cert::amalgamation::ValidAmalgamation as _;
use openpgp::parse::stream::{
    DetachedVerifierBuilder, MessageLayer, MessageStructure, VerificationError, VerificationHelper,
    VerifierBuilder,
};
use openpgp::parse::{PacketParser, Parse};

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::mime;

/// What a message's signatures establish.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// A good signature by a known certificate bound to the `From` address.
    Valid {
        /// The signing certificate's fingerprint.
        signer: String,
    },
    /// A good signature by a certificate that came with the mail only.
    ValidUnknownKey {
        /// The signing certificate's fingerprint.
        signer: String,
    },
    /// A good signature, but no user ID of the signer carries the `From` address.
    SignerMismatch {
        /// The signing certificate's fingerprint.
        signer: String,
        /// The `From` address of the message.
        from: String,
    },
    /// The signature is bad, or its key is unusable.
    Invalid {
        /// Why.
        reason: String,
    },
    /// No certificate for the signing key: neither the caller knows it
    /// nor did the mail carry it, so the signature cannot be checked.
    UnknownSigner {
        /// The issuer's key ID or fingerprint, hex.
        issuer: String,
    },
    /// Only part of the message is covered by a signature.
    NotFullySigned,
    /// The message carries no signature.
    Unsigned,
}

/// One signature's outcome, before the `From` binding.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// Good signature by this certificate, with the addresses of its valid user IDs.
    Good {
        fingerprint: String,
        addresses: Vec<String>,
    },
    /// No certificate for the issuer.
    MissingKey { issuer: String },
    /// Anything else wrong.
    Bad(String),
}

/// Sequoia's verification callbacks: hands out the certificates, counts
/// compression layers as packets arrive, records each signature's outcome,
/// and (when asked to, for decryption) takes the Key Blocks of the
/// signatures it sees.
pub(crate) struct Collector {
    certs: Vec<Cert>,
    limits: Limits,
    compression: usize,
    pub(crate) outcomes: Vec<Outcome>,
    pub(crate) encrypted: bool,
    /// Whether signatures' Key Blocks are taken ([`Collector::taking_key_blocks`]).
    key_blocks: bool,
    /// Key Block subpackets looked at so far (at most `max_certs_per_blob`).
    key_blocks_seen: usize,
    /// Certificates from the Key Blocks of the signatures seen, by the
    /// rules of [`crate::harvest`]: each its signature's maker, valid under
    /// the standard policy.
    pub(crate) carried: Vec<Cert>,
}

impl Collector {
    pub(crate) fn new(certs: Vec<Cert>, limits: Limits) -> Self {
        Collector {
            certs,
            limits,
            compression: 0,
            outcomes: Vec::new(),
            encrypted: false,
            key_blocks: false,
            key_blocks_seen: 0,
            carried: Vec::new(),
        }
    }

    /// Like [`Collector::new`], also taking the Key Block subpacket of
    /// every signature that passes by (inside an encrypted message the MIME
    /// harvest cannot see them) into [`Collector::carried`]. Those
    /// certificates are offered to Sequoia besides `certs`, except where
    /// `certs` already has the certificate: a key block never stands in for
    /// (or adds user IDs to) a certificate the caller knows.
    pub(crate) fn taking_key_blocks(certs: Vec<Cert>, limits: Limits) -> Self {
        Collector {
            key_blocks: true,
            ..Collector::new(certs, limits)
        }
    }

    /// Takes the Key Block of `sig`, if it has one and the limit allows.
    fn take_key_block(&mut self, sig: &openpgp::packet::Signature) {
        if self.key_blocks_seen >= self.limits.max_certs_per_blob {
            return;
        }
        let Some(body) = crate::harvest::key_block_of(sig) else {
            return;
        };
        self.key_blocks_seen += 1;
        let certs = crate::harvest::key_block_certs(&body, &sig.get_issuers(), &self.limits);
        crate::harvest::add_unseen(&mut self.carried, certs);
    }
}

impl VerificationHelper for Collector {
    /// Called once the signatures have been read (after [`Self::inspect`]
    /// saw them): the streaming verifiers ask for certificates only when
    /// they verify.
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        let mut certs = self.certs.clone();
        crate::harvest::add_unseen(&mut certs, self.carried.iter().cloned());
        Ok(certs)
    }

    fn inspect(&mut self, pp: &PacketParser) -> openpgp::Result<()> {
        match &pp.packet {
            openpgp::Packet::CompressedData(_) => {
                self.compression += 1;
                if self.compression > self.limits.max_compression_layers {
                    return Err(anyhow::anyhow!("too many compression layers"));
                }
            }
            openpgp::Packet::Signature(sig) if self.key_blocks => self.take_key_block(sig),
            _ => {}
        }
        Ok(())
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        for layer in structure {
            match layer {
                MessageLayer::Compression { .. } => {}
                MessageLayer::Encryption { .. } => self.encrypted = true,
                MessageLayer::SignatureGroup { results } => {
                    for r in results {
                        self.outcomes.push(outcome(r));
                    }
                }
            }
        }
        Ok(())
    }
}

fn outcome(
    r: std::result::Result<openpgp::parse::stream::GoodChecksum, VerificationError>,
) -> Outcome {
    match r {
        Ok(good) => {
            let cert = good.ka.valid_cert();
            let addresses = cert
                .userids()
                .filter_map(|u| u.userid().email().ok().flatten())
                .map(|a| a.to_ascii_lowercase())
                .collect();
            Outcome::Good {
                fingerprint: cert.fingerprint().to_hex(),
                addresses,
            }
        }
        Err(VerificationError::MissingKey { sig, .. }) => Outcome::MissingKey {
            issuer: sig
                .get_issuers()
                .first()
                .map(|h| h.to_hex())
                .unwrap_or_default(),
        },
        Err(e) => Outcome::Bad(e.to_string()),
    }
}

/// Turns the signatures' outcomes into one verdict for a sender.
pub(crate) fn verdict(outcomes: &[Outcome], from: &str, known: &[Cert]) -> Verdict {
    if outcomes.is_empty() {
        return Verdict::Unsigned;
    }
    let mut best: Option<Verdict> = None;
    let rank = |v: &Verdict| match v {
        Verdict::Valid { .. } => 6,
        Verdict::ValidUnknownKey { .. } => 5,
        Verdict::SignerMismatch { .. } => 4,
        Verdict::NotFullySigned => 3,
        Verdict::UnknownSigner { .. } => 2,
        Verdict::Invalid { .. } => 1,
        Verdict::Unsigned => 0,
    };
    for o in outcomes {
        let v = match o {
            Outcome::Bad(reason) => {
                // One bad signature spoils the message.
                return Verdict::Invalid {
                    reason: reason.clone(),
                };
            }
            Outcome::MissingKey { issuer } => Verdict::UnknownSigner {
                issuer: issuer.clone(),
            },
            Outcome::Good {
                fingerprint,
                addresses,
            } => {
                let is_known = known
                    .iter()
                    .any(|c| c.fingerprint().to_hex() == *fingerprint);
                if !addresses.iter().any(|a| a == from) {
                    Verdict::SignerMismatch {
                        signer: fingerprint.clone(),
                        from: from.to_owned(),
                    }
                } else if is_known {
                    Verdict::Valid {
                        signer: fingerprint.clone(),
                    }
                } else {
                    Verdict::ValidUnknownKey {
                        signer: fingerprint.clone(),
                    }
                }
            }
        };
        if best.as_ref().is_none_or(|b| rank(&v) > rank(b)) {
            best = Some(v);
        }
    }
    best.unwrap_or(Verdict::Unsigned)
}

/// Verifies a signed message (`multipart/signed` or inline) from the
/// `From` address's point of view. `known` is the caller's directory;
/// certificates carried in the mail are used too, as unknown keys.
pub fn verify(message: &[u8], known: &[Cert], limits: &Limits) -> Result<Verdict> {
    if message.len() > limits.max_input {
        return Err(Error::Limit("message size"));
    }
    let parsed = mail_parser::MessageParser::default()
        .parse(message)
        .ok_or_else(|| Error::Malformed("not a MIME message".into()))?;
    let from = parsed
        .header_raw("From")
        .map(mime::address_of)
        .unwrap_or_default();
    let mut certs: Vec<Cert> = known.to_vec();
    certs.extend(crate::harvest::from_parsed(&parsed, limits));
    let root = parsed.root_part();
    let ct = root.content_type();
    let is = |t: &str, s: &str| {
        ct.is_some_and(|c| {
            c.ctype().eq_ignore_ascii_case(t)
                && c.subtype().is_some_and(|x| x.eq_ignore_ascii_case(s))
        })
    };
    if is("multipart", "signed") {
        let boundary = ct
            .and_then(|c| c.attribute("boundary"))
            .ok_or_else(|| Error::Malformed("multipart/signed without boundary".into()))?;
        let (_, body) = mime::split_header_body(message);
        let parts = mime::multipart_parts(body, boundary);
        let (Some(signed), Some(_)) = (parts.first(), parts.get(1)) else {
            return Err(Error::Malformed("multipart/signed needs two parts".into()));
        };
        let sig_part = root
            .sub_parts()
            .and_then(|ids| ids.get(1))
            .and_then(|id| parsed.part(*id))
            .ok_or_else(|| Error::Malformed("no signature part".into()))?;
        let outcomes = verify_detached(
            &mime::to_crlf_exact(signed),
            sig_part.contents(),
            certs,
            limits,
        )?;
        return Ok(verdict(&outcomes, &from, known));
    }
    // Inline: signed blocks in text parts.
    let mut outcomes = Vec::new();
    let mut unsigned_text = false;
    for part in parsed
        .parts
        .iter()
        .filter(|p| p.is_text() && !p.is_text_html())
    {
        let Some(text) = part.text_contents() else {
            continue;
        };
        let blocks = crate::armor::blocks(text);
        let mut outside = text.to_owned();
        for b in &blocks {
            if b.kind == crate::armor::Kind::Signed || b.kind == crate::armor::Kind::Message {
                match verify_inline(b.text.as_bytes(), certs.clone(), limits) {
                    Ok(o) => outcomes.extend(o),
                    Err(Error::Limit(l)) => return Err(Error::Limit(l)),
                    // Encrypted blocks are not for verify; other failures are a bad signature.
                    Err(e) => outcomes.push(Outcome::Bad(e.to_string())),
                }
            }
            outside = outside.replacen(b.text, "", 1);
        }
        if !outside.trim().is_empty() {
            unsigned_text = true;
        }
    }
    let v = verdict(&outcomes, &from, known);
    if unsigned_text
        && !outcomes.is_empty()
        && !matches!(v, Verdict::Invalid { .. } | Verdict::UnknownSigner { .. })
    {
        return Ok(Verdict::NotFullySigned);
    }
    Ok(v)
}

/// Checks a detached signature over `data` (already canonical).
pub(crate) fn verify_detached(
    data: &[u8],
    signature: &[u8],
    certs: Vec<Cert>,
    limits: &Limits,
) -> Result<Vec<Outcome>> {
    let policy = crate::policy::policy();
    let mut v = DetachedVerifierBuilder::from_bytes(signature)
        .map_err(Error::pgp)?
        .with_policy(&policy, None, Collector::new(certs, *limits))
        .map_err(Error::pgp)?;
    v.verify_bytes(data).map_err(Error::pgp)?;
    Ok(v.into_helper().outcomes)
}

/// Checks an inline-signed armored block (cleartext or signed message).
fn verify_inline(block: &[u8], certs: Vec<Cert>, limits: &Limits) -> Result<Vec<Outcome>> {
    let policy = crate::policy::policy();
    let mut v = VerifierBuilder::from_bytes(block)
        .map_err(Error::pgp)?
        .with_policy(&policy, None, Collector::new(certs, *limits))
        .map_err(Error::pgp)?;
    let mut sink = std::io::sink();
    let copied = std::io::copy(
        &mut std::io::Read::take(&mut v, limits.max_plaintext as u64),
        &mut sink,
    )?;
    if copied >= limits.max_plaintext as u64 {
        return Err(Error::Limit("signed plaintext size"));
    }
    Ok(v.into_helper().outcomes)
}
