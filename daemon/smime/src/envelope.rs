//! EnvelopedData (RFC 5652 section 6) and AuthEnvelopedData (RFC 5083):
//! opening what was encrypted for a gateway key, and building new ones.
//!
//! Reading takes DER and BER (indefinite lengths, segmented content). The
//! CEK comes from `recipient`, the content cipher from `content`. Writing
//! produces DER: AuthEnvelopedData with AES-256-GCM (the ICV length written
//! explicitly, authAttrs absent) or EnvelopedData with AES-256-CBC.
//!
//! Trusts: the token and the caller's choice of recipients. Must never:
//! return content whose GCM tag failed, or anything when no recipient info
//! matched.

use zeroize::Zeroizing;

use crate::cert::Certificate;
use crate::content::{ContentAlgorithm, ContentCipher};
use crate::der::{self, tag};
use crate::error::Error;
use crate::mime::MAX_MESSAGE_SIZE;
use crate::oid;
use crate::recipient::{self, GatewayKey, KeyProtection, RsaTransport};

/// The result of opening an enveloped message.
#[derive(Debug)]
#[non_exhaustive]
pub struct Opened {
    /// The prefix the caller passed to [`open_after`] (empty for
    /// [`open`]), then the decrypted content from `content_start` on.
    pub content: Zeroizing<Vec<u8>>,
    /// Where the decrypted content starts in `content`.
    pub content_start: usize,
    /// Index of the recipient info that gave the key (in message order).
    pub recipient_index: usize,
    /// How the content key was protected for that recipient.
    pub key_protection: KeyProtection,
    /// The content-encryption algorithm.
    pub content_algorithm: ContentAlgorithm,
    /// True for AuthEnvelopedData whose tag verified (GCM); false for CBC,
    /// whose content anyone could have malleated (see `efail`).
    pub integrity_protected: bool,
    /// True when the content algorithm is weak (3DES).
    pub weak: bool,
}

/// Which envelope a ContentInfo holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvelopeKind {
    /// id-envelopedData.
    Enveloped,
    /// id-ct-authEnvelopedData.
    AuthEnveloped,
}

impl Opened {
    /// The decrypted content alone.
    pub fn plaintext(&self) -> &[u8] {
        self.content.get(self.content_start..).unwrap_or_default()
    }
}

/// Opens a DER/BER ContentInfo holding EnvelopedData or AuthEnvelopedData
/// with one of `keys`.
pub fn open(input: &[u8], keys: &[GatewayKey<'_>]) -> Result<Opened, Error> {
    open_after(input, keys, Vec::new())
}

/// Like [`open`], but the content is decrypted into a buffer that already
/// holds `prefix` (the header fields of the message being rebuilt), so the
/// result needs no further whole-message copy. The ciphertext is copied
/// once, segment by segment for BER, into that buffer and decrypted in
/// place; GCM content is returned only after its tag verified.
pub fn open_after(input: &[u8], keys: &[GatewayKey<'_>], prefix: Vec<u8>) -> Result<Opened, Error> {
    if input.len() > MAX_MESSAGE_SIZE {
        return Err(Error::Limit("message size"));
    }
    let ci = der::read(input)?.0.expect(tag::SEQUENCE, "ContentInfo")?;
    let mut f = ci.children();
    let ct = f.need("content type")?.expect(tag::OID, "content type")?;
    let kind = match ct.body {
        oid::ENVELOPED_DATA => EnvelopeKind::Enveloped,
        oid::AUTH_ENVELOPED_DATA => EnvelopeKind::AuthEnveloped,
        _ => return Err(Error::WrongType("not enveloped data".to_owned())),
    };
    let body = f.need("content")?.expect(tag::ctx(0), "content")?;
    let env = body
        .children()
        .need("envelope")?
        .expect(tag::SEQUENCE, "envelope")?;
    let mut e = env.children();
    e.need("version")?.expect(tag::INTEGER, "version")?;
    e.optional(tag::ctx(0))?; // originatorInfo
    let infos = recipient::parse_all(e.need("recipientInfos")?)?;
    let eci = e
        .need("encryptedContentInfo")?
        .expect(tag::SEQUENCE, "encryptedContentInfo")?;
    let mut c = eci.children();
    c.need("content type")?.expect(tag::OID, "content type")?;
    let cipher = ContentCipher::parse(c.need("content algorithm")?)?;
    let encrypted = match c.next().transpose()? {
        Some(t) if t.tag & 0xdf == tag::ctx_prim(0) => t,
        _ => {
            return Err(Error::Unsupported("detached encrypted content".to_owned()));
        }
    };
    let (aad, mac) = match kind {
        EnvelopeKind::Enveloped => {
            if matches!(cipher, ContentCipher::AesGcm { .. }) {
                return Err(Error::Unsupported(
                    "GCM outside AuthEnvelopedData".to_owned(),
                ));
            }
            (Vec::new(), None)
        }
        EnvelopeKind::AuthEnveloped => {
            if !matches!(cipher, ContentCipher::AesGcm { .. }) {
                return Err(Error::Unsupported(
                    "AuthEnvelopedData needs an authenticated cipher".to_owned(),
                ));
            }
            // authAttrs are authenticated as a DER SET OF (tag 0x31 instead of [1]).
            let aad = match e.optional(tag::ctx(1))? {
                Some(attrs) => der::tlv(tag::SET, attrs.body),
                None => Vec::new(),
            };
            let mac = e.need("mac")?.expect(tag::OCTET_STRING, "mac")?;
            (aad, Some(mac.body))
        }
    };
    let candidates = recipient::recover_ceks(&infos, keys, cipher.key_len())?;
    let algorithm = cipher.algorithm();
    let mut out = Zeroizing::new(prefix);
    let start = out.len();
    let mut last = Error::Decrypt;
    // Several matching infos (rare) mean several tries, each from a fresh
    // copy of the ciphertext: a failed try leaves garbage behind.
    for (index, prot, cek) in candidates {
        out.truncate(start);
        encrypted.append_octets(&mut out, MAX_MESSAGE_SIZE)?;
        let buf = out.get_mut(start..).unwrap_or_default();
        match cipher.decrypt_in_place(&cek, buf, &aad, mac) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(Opened {
                    content: out,
                    content_start: start,
                    recipient_index: index,
                    key_protection: prot,
                    content_algorithm: algorithm,
                    integrity_protected: algorithm.is_authenticated(),
                    weak: algorithm.is_weak(),
                });
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// How to encrypt a new message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EncryptOptions {
    /// Use AuthEnvelopedData with AES-256-GCM (only when every recipient is
    /// known to read it); otherwise EnvelopedData with AES-256-CBC.
    pub gcm: bool,
    /// Key transport for RSA recipients.
    pub rsa: RsaTransport,
}

impl EncryptOptions {
    /// The options for recipients whose harvested SMIMECapabilities (or
    /// directory settings) are `capabilities`, one list per recipient (an
    /// empty list: unknown). GCM only when every recipient announced it.
    pub fn for_capabilities(
        capabilities: &[&[crate::signed::Capability]],
        rsa: RsaTransport,
    ) -> Self {
        let gcm =
            !capabilities.is_empty() && capabilities.iter().all(|c| crate::signed::supports_gcm(c));
        EncryptOptions { gcm, rsa }
    }
}

/// Builds a DER ContentInfo encrypting `content` for `recipients`.
pub fn seal(
    content: Vec<u8>,
    recipients: &[&Certificate],
    options: EncryptOptions,
) -> Result<Vec<u8>, Error> {
    if recipients.is_empty() {
        return Err(Error::Certificate("no recipients".to_owned()));
    }
    if recipients.len() > recipient::MAX_RECIPIENT_INFOS {
        return Err(Error::Limit("recipient info count"));
    }
    let cipher = ContentCipher::fresh_aes256(options.gcm)?;
    let mut cek = Zeroizing::new(vec![0u8; cipher.key_len()]);
    aws_lc_rs::rand::fill(cek.as_mut_slice())?;
    let mut infos = Vec::with_capacity(recipients.len());
    let mut any_kari = false;
    for cert in recipients {
        let (ri, kari) = recipient::build(cert, &cek, options.rsa)?;
        any_kari |= kari;
        infos.push(ri);
    }
    let (ciphertext, mac) = cipher.encrypt(&cek, content, &[])?;
    // Assembled with precomputed headers: the ciphertext is copied once.
    let eci_prefix = [der::oid(oid::DATA), cipher.to_der()].concat();
    let ct_header = der::header(tag::ctx_prim(0), ciphertext.len());
    let eci_len = eci_prefix.len() + ct_header.len() + ciphertext.len();
    let eci_header = der::header(tag::SEQUENCE, eci_len);
    let infos = der::set_of(infos);
    let (ct_oid, before, after) = if options.gcm {
        let mac = mac.ok_or(Error::Crypto("GCM tag"))?;
        (
            oid::AUTH_ENVELOPED_DATA,
            [der::uint(0), infos].concat(),
            der::octets(&mac),
        )
    } else {
        let version = if any_kari { 2 } else { 0 };
        (
            oid::ENVELOPED_DATA,
            [der::uint(version), infos].concat(),
            Vec::new(),
        )
    };
    let env_len = before.len() + eci_header.len() + eci_len + after.len();
    let env_header = der::header(tag::SEQUENCE, env_len);
    let ctx_header = der::header(tag::ctx(0), env_header.len() + env_len);
    let type_oid = der::oid(ct_oid);
    let ci_len = type_oid.len() + ctx_header.len() + env_header.len() + env_len;
    let mut out = der::header(tag::SEQUENCE, ci_len);
    out.reserve(ci_len);
    for part in [
        &type_oid,
        &ctx_header,
        &env_header,
        &before,
        &eci_header,
        &eci_prefix,
        &ct_header,
        &ciphertext,
        &after,
    ] {
        out.extend_from_slice(part);
    }
    Ok(out)
}
