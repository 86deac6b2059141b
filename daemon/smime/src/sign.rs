//! Signing messages with a gateway or domain key on the token: detached
//! `multipart/signed` (RFC 8551 3.5.3) or opaque `application/pkcs7-mime;
//! smime-type=signed-data`.
//!
//! Before signing, the entity is made transport-proof: line endings become
//! CRLF and any body that is not 7-bit text (8-bit bytes, NUL, lines over
//! 998 octets) is re-encoded as base64, recursively inside multiparts, so no
//! relay can alter what was signed. Signed attributes: contentType,
//! signingTime, messageDigest, SMIMECapabilities and, when given,
//! SMIMEEncryptionKeyPreference. The certificate chain is included.
//!
//! Trusts: the token and the certificate the caller pairs with its key.
//! Must never: sign bytes other than those it emits.

use sealgate_hsm::{PublicKey, SignatureScheme, Signer};

use crate::cert::Certificate;
use crate::der::{self, tag};
use crate::error::Error;
use crate::mime;
use crate::oid;
use crate::signed::{self, Digest};

/// How to sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SignOptions {
    /// Opaque SignedData instead of detached `multipart/signed`.
    pub opaque: bool,
}

/// The signing key with its certificate chain (leaf first) and, optionally,
/// the certificate recipients should encrypt to (SMIMEEncryptionKeyPreference).
pub struct SigningIdentity<'a> {
    /// The token key.
    pub key: &'a dyn Signer,
    /// Leaf first, then the chain to include.
    pub chain: &'a [Certificate],
    /// The certificate correspondents should encrypt to, if not the leaf.
    pub encryption_cert: Option<&'a Certificate>,
}

/// The signature scheme used for a token key: RSA PKCS#1 v1.5 with SHA-256,
/// ECDSA P-256/SHA-256, ECDSA P-384/SHA-384.
fn scheme_for(key: &PublicKey) -> Result<(SignatureScheme, &'static [u8]), Error> {
    match key {
        PublicKey::Rsa { .. } => Ok((SignatureScheme::RsaPkcs1Sha256, oid::SHA256_WITH_RSA)),
        PublicKey::Ec {
            curve: sealgate_hsm::Curve::P256,
            ..
        } => Ok((SignatureScheme::EcdsaP256Sha256, oid::ECDSA_SHA256)),
        PublicKey::Ec {
            curve: sealgate_hsm::Curve::P384,
            ..
        } => Ok((SignatureScheme::EcdsaP384Sha384, oid::ECDSA_SHA384)),
        _ => Err(Error::Unsupported("signing key type".to_owned())),
    }
}

/// Whether a body can travel as it is under 7bit.
fn is_7bit(body: &[u8]) -> bool {
    body.iter().all(|b| *b != 0 && *b < 0x80) && body.split(|b| *b == b'\n').all(|l| l.len() <= 998)
}

/// Most multipart nesting followed when making an entity 7-bit.
const MAX_NESTING: usize = 20;

/// Makes an entity 7-bit clean (CRLF, base64 for non-7bit leaf bodies).
pub fn to_7bit(entity: &[u8]) -> Result<Vec<u8>, Error> {
    to_7bit_at(&mime::to_crlf(entity), 0)
}

fn to_7bit_at(entity: &[u8], depth: usize) -> Result<Vec<u8>, Error> {
    if depth > MAX_NESTING {
        return Err(Error::Limit("MIME nesting depth"));
    }
    let e = mime::parse(entity)?;
    let ct = e.content_type();
    if ct.mime_type.starts_with("multipart/") {
        let boundary = ct
            .param("boundary")
            .ok_or_else(|| Error::Malformed("multipart without boundary".to_owned()))?;
        if is_7bit(e.body) {
            return Ok(entity.to_vec());
        }
        let parts = mime::split_multipart(e.body, boundary)?;
        let mut out = header_block(&e, None);
        for p in parts {
            out.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
            out.extend_from_slice(&to_7bit_at(p, depth + 1)?);
        }
        out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        return Ok(out);
    }
    if is_7bit(e.body) {
        return Ok(entity.to_vec());
    }
    let raw = e
        .decoded_body()
        .or_else(|_| Ok::<_, Error>(e.body.to_vec()))?;
    let mut out = header_block(&e, Some("base64"));
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&mime::encode_base64(&raw));
    Ok(out)
}

/// The header fields of `e` (CRLF), with Content-Transfer-Encoding replaced
/// when `cte` is given; no blank line at the end for multiparts (the first
/// delimiter's CRLF provides it).
fn header_block(e: &mime::Entity<'_>, cte: Option<&str>) -> Vec<u8> {
    let mut out = Vec::new();
    for h in &e.headers {
        if cte.is_some() && h.name.eq_ignore_ascii_case("content-transfer-encoding") {
            continue;
        }
        out.extend_from_slice(&mime::to_crlf(&h.raw));
    }
    if let Some(c) = cte {
        out.extend_from_slice(format!("Content-Transfer-Encoding: {c}\r\n").as_bytes());
    }
    out
}

/// Builds a DER SignedData ContentInfo over `content`; with `embed` the
/// content is included (opaque), otherwise detached.
pub fn signed_data(
    content: &[u8],
    id: &SigningIdentity<'_>,
    embed: bool,
    signing_time: i64,
) -> Result<(Vec<u8>, Digest), Error> {
    let leaf = id
        .chain
        .first()
        .ok_or_else(|| Error::Certificate("no signing certificate".to_owned()))?;
    if leaf.spki != id.key.public_key().spki_der() {
        return Err(Error::Certificate(
            "the certificate is not for the signing key".to_owned(),
        ));
    }
    let (scheme, sig_oid) = scheme_for(id.key.public_key())?;
    let dig = Digest::of_scheme(scheme);
    let digest_alg = der::seq(&[&der::oid(dig.oid())]);
    let attr = |o: &[u8], v: &[u8]| der::seq(&[&der::oid(o), &der::cons(tag::SET, &[v])]);
    let mut attrs = vec![
        attr(oid::CONTENT_TYPE, &der::oid(oid::DATA)),
        attr(oid::SIGNING_TIME, &signed::encode_time(signing_time)),
        attr(oid::MESSAGE_DIGEST, &der::octets(&dig.hash(content))),
        attr(oid::SMIME_CAPABILITIES, &signed::our_capabilities()),
    ];
    let pref = id.encryption_cert.unwrap_or(leaf);
    attrs.push(attr(oid::ENCRYPTION_KEY_PREFERENCE, &pref_ias(pref)));
    let signed_attrs = der::set_of(attrs);
    let signature = id.key.sign(scheme, &signed_attrs)?;
    let mut implicit = signed_attrs.clone();
    if let Some(t) = implicit.first_mut() {
        *t = tag::ctx(0);
    }
    let signer_info = der::seq(&[
        &der::uint(1),
        &leaf.issuer_and_serial(),
        &digest_alg,
        &implicit,
        &der::seq(&[&der::oid(sig_oid)]),
        &der::octets(&signature),
    ]);
    let encap = if embed {
        der::seq(&[
            &der::oid(oid::DATA),
            &der::cons(tag::ctx(0), &[&der::octets(content)]),
        ])
    } else {
        der::seq(&[&der::oid(oid::DATA)])
    };
    let certs: Vec<&[u8]> = id.chain.iter().map(Certificate::der).collect();
    let sd = der::seq(&[
        &der::uint(1),
        &der::cons(tag::SET, &[&digest_alg]),
        &encap,
        &der::cons(tag::ctx(0), &certs),
        &der::cons(tag::SET, &[&signer_info]),
    ]);
    Ok((
        der::seq(&[&der::oid(oid::SIGNED_DATA), &der::cons(tag::ctx(0), &[&sd])]),
        dig,
    ))
}

/// SMIMEEncryptionKeyPreference value: `[0] IMPLICIT IssuerAndSerialNumber`.
fn pref_ias(cert: &Certificate) -> Vec<u8> {
    let mut v = cert.issuer_and_serial();
    if let Some(t) = v.first_mut() {
        *t = tag::ctx(0);
    }
    v
}

/// Signs a message: its MIME entity (Content-* fields and body), made
/// 7-bit and CRLF, is signed; the other header fields stay outside.
pub fn sign_message(
    input: &[u8],
    id: &SigningIdentity<'_>,
    options: SignOptions,
) -> Result<Vec<u8>, Error> {
    let (outer, entity) = crate::split_message(input)?;
    let entity = to_7bit(&entity)?;
    let (der_bytes, dig) = signed_data(&entity, id, options.opaque, signed::now())?;
    let mut out = outer;
    out.extend_from_slice(b"MIME-Version: 1.0\r\n");
    if options.opaque {
        out.extend_from_slice(&mime::pkcs7_mime_entity("signed-data", &der_bytes));
        return Ok(out);
    }
    let b = mime::boundary()?;
    out.extend_from_slice(
        format!(
            "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; \
             micalg={}; boundary=\"{b}\"\r\n\r\n\
             This is an S/MIME signed message.\r\n\r\n--{b}\r\n",
            dig.micalg()
        )
        .as_bytes(),
    );
    out.extend_from_slice(&entity);
    out.extend_from_slice(
        format!(
            "\r\n--{b}\r\n\
             Content-Type: application/pkcs7-signature; name=smime.p7s\r\n\
             Content-Transfer-Encoding: base64\r\n\
             Content-Disposition: attachment; filename=smime.p7s\r\n\r\n"
        )
        .as_bytes(),
    );
    out.extend_from_slice(&mime::encode_base64(&der_bytes));
    out.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
    Ok(out)
}
