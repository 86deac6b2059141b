//! Key material found in mail, for the certificate directory: `Autocrypt:`
//! headers (keydata), attached `application/pgp-keys` parts, armored
//! public key blocks in text parts, and the Key Block subpacket (tag 38,
//! GnuPG's `--include-key-block`: one zero octet, then the signer's
//! certificate) of signatures in `application/pgp-signature` parts and
//! inline cleartext signatures (not in inline `PGP MESSAGE` blocks, which
//! are compressed and not inflated here; inside mail encrypted for the
//! gateway, [`crate::decrypt()`] takes them with `key_block_of` and
//! `key_block_certs` as the packets pass by). A key block counts only from
//! the hashed area and only for the certificate that made the signature
//! (its issuer), so a signature cannot smuggle in third parties' keys.
//!
//! Every candidate passes [`parse_certs`]: bounded size, count of
//! certificates, signatures per certificate and key size, then Sequoia's
//! standard policy with SHA-1 rejected at any date (`crate::policy`),
//! expiry and revocation. What fails is dropped silently: harvesting is best effort.
//!
//! Trusts nothing in the message. Must never: accept a certificate that is
//! not valid under the standard policy now.

use base64::Engine as _;
use mail_parser::MimeHeaders as _;
use sequoia_openpgp as openpgp;

use openpgp::Cert;
use openpgp::KeyHandle;
use openpgp::Packet;
use openpgp::cert::CertParser;
use openpgp::packet::Signature;
use openpgp::packet::signature::subpacket::{SubpacketTag, SubpacketValue};
use openpgp::parse::{PacketParserBuilder, PacketParserResult, Parse};
use openpgp::types::RevocationStatus;

use crate::armor;
use crate::error::{Error, Result};
use crate::limits::Limits;

/// Certificates in `bytes` (binary or armored) that pass the limits and the
/// standard policy. Refuses the whole blob when a limit is exceeded.
pub fn parse_certs(bytes: &[u8], limits: &Limits) -> Result<Vec<Cert>> {
    if bytes.len() > limits.max_input {
        return Err(Error::Limit("certificate size"));
    }
    // First pass: count, without building certificates or checking anything.
    let mut ppr = PacketParserBuilder::from_bytes(bytes)
        .map_err(Error::pgp)?
        .build()
        .map_err(Error::pgp)?;
    let (mut certs, mut sigs) = (0usize, 0usize);
    while let PacketParserResult::Some(pp) = ppr {
        match &pp.packet {
            Packet::PublicKey(_) | Packet::SecretKey(_) => {
                certs += 1;
                sigs = 0;
                if certs > limits.max_certs_per_blob {
                    return Err(Error::Limit("certificates per blob"));
                }
            }
            Packet::Signature(_) => {
                sigs += 1;
                if sigs > limits.max_signatures_per_cert {
                    return Err(Error::Limit("signatures per certificate"));
                }
            }
            _ => {}
        }
        let (_, next) = pp.next().map_err(Error::pgp)?;
        ppr = next;
    }
    let policy = crate::policy::policy();
    let mut out = Vec::new();
    for cert in CertParser::from_bytes(bytes).map_err(Error::pgp)? {
        let Ok(cert) = cert else { continue };
        let cert = cert.strip_secret_key_material();
        let too_big = cert
            .keys()
            .any(|k| k.key().mpis().bits().unwrap_or(0) > limits.max_key_bits);
        if too_big {
            continue;
        }
        let Ok(vc) = cert.with_policy(&policy, None) else {
            continue;
        };
        if vc.alive().is_err() || matches!(vc.revocation_status(), RevocationStatus::Revoked(_)) {
            continue;
        }
        out.push(cert);
    }
    Ok(out)
}

/// The `keydata` of an `Autocrypt:` header value.
fn autocrypt_keydata(value: &str) -> Option<Vec<u8>> {
    let data = value.split(';').find_map(|attr| {
        let (k, v) = attr.split_once('=')?;
        (k.trim().eq_ignore_ascii_case("keydata")).then_some(v)
    })?;
    let clean: String = data.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(clean).ok()
}

/// Whether `part` is `application/<subtype>`.
fn is_application(part: &mail_parser::MessagePart<'_>, subtype: &str) -> bool {
    part.content_type().is_some_and(|c| {
        c.ctype().eq_ignore_ascii_case("application")
            && c.subtype().is_some_and(|s| s.eq_ignore_ascii_case(subtype))
    })
}

/// Certificates carried by a parsed message.
pub(crate) fn from_parsed(parsed: &mail_parser::Message<'_>, limits: &Limits) -> Vec<Cert> {
    let mut blobs: Vec<Vec<u8>> = Vec::new();
    for h in parsed.headers() {
        if h.name().eq_ignore_ascii_case("autocrypt")
            && let Some(raw) = parsed
                .raw_message()
                .get(h.offset_start() as usize..h.offset_end() as usize)
            && let Some(k) = autocrypt_keydata(&String::from_utf8_lossy(raw))
        {
            blobs.push(k);
        }
    }
    for part in &parsed.parts {
        if is_application(part, "pgp-keys") {
            blobs.push(part.contents().to_vec());
        } else if part.is_text()
            && !part.is_text_html()
            && let Some(text) = part.text_contents()
        {
            for b in armor::blocks(text) {
                if b.kind == armor::Kind::PublicKey {
                    blobs.push(b.text.as_bytes().to_vec());
                }
            }
        }
    }
    let mut out: Vec<Cert> = Vec::new();
    for (body, issuers) in signature_key_blocks(parsed, limits) {
        add_unseen(&mut out, key_block_certs(&body, &issuers, limits));
    }
    for blob in blobs.iter().take(limits.max_certs_per_blob) {
        add_unseen(&mut out, parse_certs(blob, limits).unwrap_or_default());
    }
    out
}

/// Appends those of `certs` whose fingerprint `out` does not have yet.
pub(crate) fn add_unseen(out: &mut Vec<Cert>, certs: impl IntoIterator<Item = Cert>) {
    for c in certs {
        if !out.iter().any(|o| o.fingerprint() == c.fingerprint()) {
            out.push(c);
        }
    }
}

/// Key Block subpacket bodies of the signatures found in the message
/// (`application/pgp-signature` parts, armored signatures in text parts),
/// each with the issuers of its signature; at most `max_certs_per_blob`.
fn signature_key_blocks(
    parsed: &mail_parser::Message<'_>,
    limits: &Limits,
) -> Vec<(Vec<u8>, Vec<KeyHandle>)> {
    let mut out = Vec::new();
    for part in &parsed.parts {
        if is_application(part, "pgp-signature") {
            out.extend(signatures_in(part.contents(), limits));
        } else if part.is_text()
            && !part.is_text_html()
            && let Some(text) = part.text_contents()
        {
            // Cleartext signatures only: an inline `PGP MESSAGE` is
            // compressed (gpg --sign) and is not inflated for harvesting.
            for b in armor::blocks(text) {
                if b.kind == armor::Kind::Signed
                    && let Some(sig) = armor::signature_of(b.text)
                {
                    out.extend(signatures_in(sig.as_bytes(), limits));
                }
            }
        }
        if out.len() >= limits.max_certs_per_blob {
            break;
        }
    }
    out.truncate(limits.max_certs_per_blob);
    out
}

/// The Key Block subpacket's tag (RFC 9580 reserves it; GnuPG writes it).
const KEY_BLOCK_TAG: u8 = 38;

/// Signatures that carry a Key Block subpacket (its body and the
/// signature's issuers) in a detached signature blob, armored or binary.
/// Only a run of signature packets is read: at the first other packet
/// (compressed or literal data has no place in a detached signature) it
/// stops, so nothing is ever inflated here; at most
/// `max_signatures_per_cert` packets.
fn signatures_in(bytes: &[u8], limits: &Limits) -> Vec<(Vec<u8>, Vec<KeyHandle>)> {
    let mut out = Vec::new();
    let Ok(mut ppr) = PacketParserBuilder::from_bytes(bytes).and_then(|b| b.build()) else {
        return out;
    };
    let mut packets = 0usize;
    while let PacketParserResult::Some(pp) = ppr {
        packets += 1;
        let Packet::Signature(sig) = &pp.packet else {
            break;
        };
        if packets > limits.max_signatures_per_cert {
            break;
        }
        if let Some(body) = key_block_of(sig) {
            out.push((body, sig.get_issuers()));
        }
        let Ok((_, next)) = pp.next() else { break };
        ppr = next;
    }
    out
}

/// The body of `sig`'s Key Block subpacket, from the hashed area only (an
/// unhashed one could have been added by anyone); `None` when there is none
/// or it is empty.
pub(crate) fn key_block_of(sig: &Signature) -> Option<Vec<u8>> {
    sig.hashed_area()
        .subpackets(SubpacketTag::Reserved(KEY_BLOCK_TAG))
        .find_map(|sp| match sp.value() {
            SubpacketValue::Unknown { body, .. } => Some(body.clone()),
            _ => None,
        })
        .filter(|body| !body.is_empty())
}

/// The certificates a Key Block subpacket `body` may contribute: those of
/// its block that pass [`parse_certs`] and hold a key named by `issuers`
/// (the signature's issuers), so a signature brings only its maker's
/// certificate. Anything odd yields nothing.
pub(crate) fn key_block_certs(body: &[u8], issuers: &[KeyHandle], limits: &Limits) -> Vec<Cert> {
    let Some(block) = key_block_body(body, limits) else {
        return Vec::new();
    };
    parse_certs(&block, limits)
        .unwrap_or_default()
        .into_iter()
        .filter(|c| {
            c.keys()
                .any(|k| issuers.iter().any(|i| i.aliases(k.key().key_handle())))
        })
        .collect()
}

/// The certificate bytes of a Key Block subpacket body: a zero octet (the
/// only version defined), then a binary transferable public key.
fn key_block_body(body: &[u8], limits: &Limits) -> Option<Vec<u8>> {
    match body.split_first() {
        Some((0, block)) if !block.is_empty() && block.len() <= limits.max_input => {
            Some(block.to_vec())
        }
        _ => None,
    }
}

/// Certificates carried by a message (Autocrypt header, attached keys),
/// valid under the standard policy.
pub fn harvest(message: &[u8], limits: &Limits) -> Result<Vec<Cert>> {
    if message.len() > limits.max_input {
        return Err(Error::Limit("message size"));
    }
    let parsed = mail_parser::MessageParser::default()
        .parse(message)
        .ok_or_else(|| Error::Malformed("not a MIME message".into()))?;
    Ok(from_parsed(&parsed, limits))
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn reads_autocrypt_keydata() {
        let v = "addr=a@b.example; prefer-encrypt=mutual; keydata=aGVs\r\n bG8=";
        assert_eq!(autocrypt_keydata(v), Some(b"hello".to_vec()));
        assert_eq!(autocrypt_keydata("addr=a@b"), None);
    }
}

/// What the gateway's key directory keeps about an OpenPGP certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// The fingerprint, upper-case hex.
    pub fingerprint: String,
    /// The primary user ID (or the first one), for display.
    pub user_id: String,
    /// E-mail addresses of the user IDs, lower-cased.
    pub emails: Vec<String>,
    /// Creation time of the primary key (Unix seconds).
    pub created_secs: u64,
    /// When the certificate expires (Unix seconds), if it does.
    pub expires_secs: Option<u64>,
    /// Valid under the engine's policy now, not revoked, with a usable
    /// transport-encryption key.
    pub can_encrypt: bool,
    /// The certificate, binary, public parts only.
    pub binary: Vec<u8>,
}

/// Summarises a certificate for the directory (public parts only).
pub fn summarize(cert: &Cert) -> Result<CertSummary> {
    use openpgp::serialize::Serialize as _;
    let secs = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    };
    let policy = crate::policy::policy();
    let mut emails: Vec<String> = cert
        .userids()
        .filter_map(|u| {
            u.userid()
                .email()
                .ok()
                .flatten()
                .map(str::to_ascii_lowercase)
        })
        .collect();
    emails.sort();
    emails.dedup();
    let valid = cert.with_policy(&policy, None).ok();
    let user_id = valid
        .as_ref()
        .and_then(|vc| vc.primary_userid().ok())
        .map(|u| String::from_utf8_lossy(u.userid().value()).into_owned())
        .or_else(|| {
            cert.userids()
                .next()
                .map(|u| String::from_utf8_lossy(u.userid().value()).into_owned())
        })
        .unwrap_or_default();
    let expires_secs = valid
        .as_ref()
        .and_then(|vc| vc.primary_key().key_expiration_time())
        .map(secs);
    let can_encrypt = valid.as_ref().is_some_and(|vc| {
        !matches!(vc.revocation_status(), RevocationStatus::Revoked(_))
            && vc.alive().is_ok()
            && vc
                .keys()
                .supported()
                .alive()
                .revoked(false)
                .for_transport_encryption()
                .next()
                .is_some()
    });
    let mut binary = Vec::new();
    cert.serialize(&mut binary).map_err(Error::pgp)?;
    Ok(CertSummary {
        fingerprint: cert.fingerprint().to_hex(),
        user_id,
        emails,
        created_secs: secs(cert.primary_key().key().creation_time()),
        expires_secs,
        can_encrypt,
        binary,
    })
}
