//! Decryption of mail encrypted for the gateway: PGP/MIME (RFC 3156 §4,
//! `multipart/encrypted`) and inline PGP (armored `PGP MESSAGE` blocks in
//! text parts).
//!
//! Integrity before release (RFC 9580 §13.7, Efail): the plaintext is
//! collected in memory, and handed back only when Sequoia has reached the
//! end of the message and checked the MDC (SEIPD v1) or every AEAD chunk
//! and the final tag (SEIPD v2). Sequoia refuses SED packets and SEIPD v1
//! without a valid MDC. Any failure — no matching key, bad session key,
//! integrity, limits, garbage — is the one [`Error::Decrypt`]; only a token
//! outage is reported apart ([`Error::is_temporary`]), so the message is
//! deferred rather than bounced. Discarded plaintext is zeroed.
//!
//! Limits: input size, decompressed size (the plaintext buffer stops one
//! byte past the limit) and the number of compression layers (counted as
//! packets arrive, so a nested bomb stops at its second layer).
//!
//! Trusts: the gateway identity and the token. The message is
//! attacker-controlled.

use std::borrow::Cow;
use std::cell::Cell;
use std::io::Read;

use mail_parser::MimeHeaders as _;
use sequoia_openpgp as openpgp;

use openpgp::Cert;
use openpgp::KeyHandle;
use openpgp::crypto::SessionKey;
use openpgp::packet::{PKESK, SKESK};
use openpgp::parse::stream::{
    DecryptionHelper, DecryptorBuilder, MessageStructure, VerificationHelper,
};
use openpgp::parse::{PacketParser, Parse};
use openpgp::types::SymmetricAlgorithm;

use crate::armor;
use crate::dearmor::{self, Dearmor};
use crate::error::{Error, Result};
use crate::gateway::GatewayIdentity;
use crate::limits::Limits;
use crate::mime;
use crate::plaintext::{self, Plaintext};
use crate::verify::{Collector, Outcome, Verdict, verdict};

/// How the message was encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// RFC 3156 `multipart/encrypted`.
    PgpMime,
    /// Armored blocks in text parts.
    Inline,
}

/// A decrypted message.
#[derive(Debug)]
#[non_exhaustive]
pub struct Decrypted {
    /// The message with the encryption removed (RFC 5322, CRLF).
    pub message: Plaintext,
    /// How it was encrypted.
    pub format: Format,
    /// What the signatures inside the encryption establish.
    pub verdict: Verdict,
    /// Certificates carried by the signatures inside the encryption: the
    /// Key Block subpacket (GnuPG's `--include-key-block`) of each, hashed
    /// area only, only its signature's maker, valid under the standard
    /// policy, within the limits (the rules of [`crate::harvest`]). Not
    /// checked against the `From` address: that is the caller's (as for
    /// [`crate::harvest()`]). Empty when there are none.
    pub carried_certs: Vec<Cert>,
}

/// What the signatures inside one encrypted blob gave: their outcomes and
/// the certificates their Key Blocks carried.
#[derive(Debug, Default)]
pub(crate) struct Inside {
    pub(crate) outcomes: Vec<Outcome>,
    pub(crate) carried: Vec<Cert>,
}

impl Inside {
    /// Adds `other`'s outcomes and the certificates not carried yet.
    fn extend(&mut self, other: Inside) {
        self.outcomes.extend(other.outcomes);
        crate::harvest::add_unseen(&mut self.carried, other.carried);
    }
}

struct Helper<'a> {
    identity: &'a GatewayIdentity,
    collect: Collector,
    outage: &'a Cell<Option<sealgate_hsm::Error>>,
}

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        self.collect.get_certs(ids)
    }
    fn inspect(&mut self, pp: &PacketParser) -> openpgp::Result<()> {
        self.collect.inspect(pp)
    }
    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        self.collect.check(structure)
    }
}

impl DecryptionHelper for Helper<'_> {
    fn decrypt(
        &mut self,
        pkesks: &[PKESK],
        _skesks: &[SKESK],
        sym_algo: Option<SymmetricAlgorithm>,
        decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
    ) -> openpgp::Result<Option<Cert>> {
        for mut d in self.identity.decryptors() {
            let ours = d.public_key().key_handle();
            for pkesk in pkesks {
                if !pkesk.recipient().is_none_or(|r| r.aliases(&ours)) {
                    continue;
                }
                let r = pkesk.decrypt(&mut d, sym_algo);
                if let Some(e) = d.take_outage() {
                    self.outage.set(Some(e));
                    return Err(anyhow::anyhow!("token unavailable"));
                }
                if let Some((algo, sk)) = r
                    && decrypt(algo, &sk)
                {
                    return Ok(None);
                }
            }
        }
        Err(anyhow::anyhow!("no usable session key"))
    }
}

/// Read-ahead inside Sequoia. Integrity-before-release is enforced by
/// [`decrypt_blob`] itself, which returns nothing until the whole message
/// has been read and checked.
const SEQUOIA_BUFFER: usize = 1 << 20;

/// Decrypts one OpenPGP message (armored or binary) for the gateway; the
/// plaintext is returned only after the integrity check passed.
pub(crate) fn decrypt_blob(
    identity: &GatewayIdentity,
    data: &[u8],
    certs: &[Cert],
    limits: &Limits,
) -> Result<(Plaintext, Inside)> {
    let mut out = Plaintext::default();
    let inside = decrypt_blob_into(identity, data, certs, limits, &mut out)?;
    Ok((out, inside))
}

/// Room to reserve for the plaintext of `data`: the length of its binary
/// form (packet framing makes that longer than an uncompressed plaintext),
/// bounded by the plaintext limit. Reserving up front saves the copies
/// (and the zeroing of old buffers) of a growing one.
fn plaintext_estimate(data: &[u8], limits: &Limits) -> usize {
    dearmor::binary_len_bound(data)
        .min(limits.max_plaintext)
        .saturating_add(1)
}

/// Like [`decrypt_blob`], appending the plaintext to `out` (which keeps
/// what it held before). Armored input is de-armored as Sequoia reads it
/// ([`Dearmor`]), not decoded whole first. On failure `out` is truncated
/// back to its old length, the discarded plaintext zeroed.
pub(crate) fn decrypt_blob_into(
    identity: &GatewayIdentity,
    data: &[u8],
    certs: &[Cert],
    limits: &Limits,
    out: &mut Plaintext,
) -> Result<Inside> {
    let start = out.len();
    out.reserve(plaintext_estimate(data, limits), usize::MAX);
    let r = read_plaintext(identity, data, certs, limits, out, start);
    if r.is_err() {
        out.discard_from(start);
    }
    r
}

fn read_plaintext(
    identity: &GatewayIdentity,
    data: &[u8],
    certs: &[Cert],
    limits: &Limits,
    out: &mut Plaintext,
    start: usize,
) -> Result<Inside> {
    let outage = Cell::new(None);
    let fail = |outage: &Cell<Option<sealgate_hsm::Error>>| match outage.take() {
        Some(e) => Error::Hsm(e),
        None => Error::Decrypt,
    };
    let policy = crate::policy::policy();
    let helper = Helper {
        identity,
        collect: Collector::taking_key_blocks(certs.to_vec(), *limits),
        outage: &outage,
    };
    let builder = match Dearmor::new(data) {
        Some(reader) => DecryptorBuilder::from_reader(reader),
        None => DecryptorBuilder::from_bytes(data),
    };
    let mut dec = builder
        .map_err(|_| Error::Decrypt)?
        // This function is the integrity buffer (nothing leaves before the
        // end is checked); a second one inside Sequoia would double the memory.
        .buffer_size(SEQUOIA_BUFFER.min(limits.max_plaintext))
        .with_policy(&policy, None, helper)
        .map_err(|_| fail(&outage))?;
    let limit = limits.max_plaintext.saturating_add(1);
    plaintext::read_to_end(&mut (&mut dec).take(limit as u64), out, limit)
        .map_err(|_| fail(&outage))?;
    if out.len() - start > limits.max_plaintext || !dec.message_processed() {
        return Err(Error::Decrypt);
    }
    let helper = dec.into_helper();
    if !helper.collect.encrypted {
        return Err(Error::Decrypt);
    }
    Ok(Inside {
        outcomes: helper.collect.outcomes,
        carried: helper.collect.carried,
    })
}

/// Decrypts a message encrypted for the gateway (PGP/MIME or inline).
/// `known` are certificates the caller trusts (to check signatures inside).
pub fn decrypt(
    identity: &GatewayIdentity,
    message: &[u8],
    known: &[Cert],
    limits: &Limits,
) -> Result<Decrypted> {
    if message.len() > limits.max_input {
        return Err(Error::Limit("message size"));
    }
    // The header alone first: a PGP/MIME message is cut at its boundaries
    // without parsing (or copying) the large encrypted part.
    let head = mail_parser::MessageParser::default()
        .parse_headers(message)
        .ok_or_else(|| Error::Malformed("not a MIME message".into()))?;
    let from = head
        .header_raw("From")
        .map(mime::address_of)
        .unwrap_or_default();
    if let Some(data) = pgp_mime_data(&head, message)? {
        return decrypt_pgp_mime(identity, message, &data, &from, known, limits);
    }
    decrypt_inline(identity, message, &from, known, limits)
}

/// The encrypted data of a PGP/MIME message, judged from its parsed header
/// `head` (`MessageParser::parse_headers`); `None` when it is not
/// `multipart/encrypted` (inline blocks are then in its text parts).
pub(crate) fn pgp_mime_data<'a>(
    head: &mail_parser::Message<'_>,
    message: &'a [u8],
) -> Result<Option<Cow<'a, [u8]>>> {
    let ct = head.root_part().content_type();
    let pgp_mime = ct.is_some_and(|c| {
        c.ctype().eq_ignore_ascii_case("multipart")
            && c.subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("encrypted"))
    });
    if !pgp_mime {
        return Ok(None);
    }
    let boundary = ct.and_then(|c| c.attribute("boundary"));
    encrypted_data(message, boundary).map(Some)
}

/// The encrypted data of a `multipart/encrypted` message (its second part,
/// RFC 3156 §4), borrowed from `message` when it has no transfer encoding
/// (the usual case), decoded by `mail-parser` otherwise. An armored message
/// is handed on with what follows it (the closing delimiter, the epilogue):
/// its footer ends it, and the de-armorer stops there, so the part is read
/// once rather than first searched for its end.
fn encrypted_data<'a>(message: &'a [u8], boundary: Option<&str>) -> Result<Cow<'a, [u8]>> {
    let missing = || Error::Malformed("multipart/encrypted without its data part".into());
    let boundary = boundary.ok_or_else(missing)?;
    let (_, body) = mime::split_header_body(message);
    let onward = mime::part_onward(body, boundary, 1).ok_or_else(missing)?;
    let (part_header, part_onward) = mime::split_header_body(onward);
    if mime::is_identity_encoding(part_header) {
        if dearmor::is_armored_message(part_onward) {
            return Ok(Cow::Borrowed(part_onward));
        }
        let part = mime::multipart_parts(body, boundary)
            .get(1)
            .copied()
            .ok_or_else(missing)?;
        return Ok(Cow::Borrowed(mime::split_header_body(part).1));
    }
    let parsed = mail_parser::MessageParser::default()
        .parse(message)
        .ok_or_else(|| Error::Malformed("not a MIME message".into()))?;
    let root = parsed.root_part();
    let data = root
        .sub_parts()
        .and_then(|ids| ids.get(1))
        .and_then(|id| parsed.part(*id))
        .ok_or_else(missing)?;
    Ok(Cow::Owned(data.contents().to_vec()))
}

/// PGP/MIME: the plaintext entity lands right after the message's envelope
/// fields and is canonicalised in place (no copy when it is CRLF already).
fn decrypt_pgp_mime(
    identity: &GatewayIdentity,
    message: &[u8],
    data: &[u8],
    from: &str,
    known: &[Cert],
    limits: &Limits,
) -> Result<Decrypted> {
    let (header, _) = mime::split_header_body(message);
    let mut out = Plaintext::from_fresh(mime::envelope_fields(header));
    out.extend_from_slice(b"MIME-Version: 1.0\r\n");
    let body = out.len();
    let inside = decrypt_blob_into(identity, data, known, limits, &mut out)?;
    out.canonicalise_crlf_from(body);
    Ok(Decrypted {
        message: out,
        format: Format::PgpMime,
        verdict: verdict(&inside.outcomes, from, known),
        carried_certs: inside.carried,
    })
}

/// Inline PGP: every text part with armored messages, decrypted and
/// spliced back in place.
fn decrypt_inline(
    identity: &GatewayIdentity,
    message: &[u8],
    from: &str,
    known: &[Cert],
    limits: &Limits,
) -> Result<Decrypted> {
    let parsed = mail_parser::MessageParser::default()
        .parse(message)
        .ok_or_else(|| Error::Malformed("not a MIME message".into()))?;
    let (header, _) = mime::split_header_body(message);
    let mut edits: Vec<(usize, usize, Plaintext)> = Vec::new();
    let mut inside = Inside::default();
    for (i, part) in parsed.parts.iter().enumerate() {
        if !part.is_text() || part.is_text_html() {
            continue;
        }
        let Some(text) = part.text_contents() else {
            continue;
        };
        let blocks: Vec<_> = armor::blocks(text)
            .into_iter()
            .filter(|b| b.kind == armor::Kind::Message)
            .collect();
        if blocks.is_empty() {
            continue;
        }
        let mut plain = Plaintext::default();
        let mut rest = text;
        for b in blocks {
            let Some(at) = rest.find(b.text) else {
                continue;
            };
            plain.extend_from_slice(rest.get(..at).unwrap_or_default().as_bytes());
            let (p, o) = decrypt_blob(identity, b.text.as_bytes(), known, limits)?;
            plain.extend_from_slice(&p);
            inside.extend(o);
            rest = rest.get(at + b.text.len()..).unwrap_or_default();
        }
        plain.extend_from_slice(rest.as_bytes());
        let mut entity = Plaintext::default();
        entity.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\n");
        entity.extend_from_slice(b"Content-Transfer-Encoding: base64\r\n\r\n");
        entity.extend_from_slice(&Plaintext::from_fresh(mime::base64_lines(&plain)));
        if i == 0 {
            let mut out = Plaintext::from_fresh(mime::envelope_fields(header));
            out.extend_from_slice(b"MIME-Version: 1.0\r\n");
            out.extend_from_slice(&entity);
            return Ok(Decrypted {
                message: out,
                format: Format::Inline,
                verdict: verdict(&inside.outcomes, from, known),
                carried_certs: inside.carried,
            });
        }
        let start = part.raw_header_offset() as usize;
        let end = part.raw_end_offset() as usize;
        edits.push((start, end, entity));
    }
    if edits.is_empty() {
        return Err(Error::Malformed("no OpenPGP encrypted content".into()));
    }
    // Message bytes between the decrypted parts are copied as they are.
    edits.sort_by_key(|e| e.0);
    let mut out = Plaintext::default();
    let mut at = 0;
    for (start, end, entity) in edits {
        let before = message
            .get(at..start)
            .filter(|_| start <= end)
            .ok_or_else(|| Error::Malformed("part offsets out of range".into()))?;
        out.extend_from_slice(before);
        out.extend_from_slice(&entity);
        at = end;
    }
    out.extend_from_slice(
        message
            .get(at..)
            .ok_or_else(|| Error::Malformed("part offsets out of range".into()))?,
    );
    Ok(Decrypted {
        message: out,
        format: Format::Inline,
        verdict: verdict(&inside.outcomes, from, known),
        carried_certs: inside.carried,
    })
}
