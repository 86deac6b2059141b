//! Signing: RFC 3156 §5 `multipart/signed` with an
//! `application/pgp-signature` part made by the gateway's primary key on
//! the token.
//!
//! The signed entity is the original body with its `Content-*` fields,
//! canonicalised to CRLF and 7-bit: every part that is not 7-bit is
//! re-encoded (quoted-printable for text, base64 otherwise, in
//! `crate::reencode`), so no relay needs to touch the signed bytes.
//! `micalg` names the hash actually used. Trusts the gateway identity; the
//! message is the caller's.

use std::borrow::Cow;
use std::io::Write;

use sequoia_openpgp as openpgp;

use openpgp::serialize::stream::{Armorer, Message, Signer};
use openpgp::types::HashAlgorithm;

use crate::error::{Error, Result};
use crate::gateway::GatewayIdentity;
use crate::limits::Limits;
use crate::mime;

/// The body of `message` as a CRLF MIME entity (its `Content-*` fields, an
/// empty line, the body), 7-bit if `seven_bit`, and the envelope fields apart.
pub(crate) fn entity(message: &[u8], seven_bit: bool) -> Result<(Vec<u8>, Vec<u8>)> {
    let (header, body) = mime::split_header_body(message);
    if !seven_bit || mime::is_7bit(body) {
        let (envelope, head, body) = entity_parts(message);
        let mut out = Vec::with_capacity(head.len() + body.len());
        out.extend_from_slice(&head);
        out.extend_from_slice(&body);
        return Ok((envelope, out));
    }
    let envelope = mime::envelope_fields(header);
    let mut out = crate::reencode::seven_bit(&content_head(header), body)?;
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    Ok((envelope, out))
}

/// The `Content-*` fields of `header` (a plain-text type if it has none).
fn content_head(header: &[u8]) -> Vec<u8> {
    let mut content = mime::content_fields(header);
    if content.is_empty() {
        content.extend_from_slice(b"Content-Type: text/plain; charset=us-ascii\r\n");
    }
    content
}

/// [`entity`] without 7-bit re-encoding, in pieces that are not copied:
/// the envelope fields, the entity's header (its `Content-*` fields and the
/// empty line) and its body, borrowed when it is CRLF already (mail from
/// SMTP is).
pub(crate) fn entity_parts(message: &[u8]) -> (Vec<u8>, Vec<u8>, Cow<'_, [u8]>) {
    let (header, body) = mime::split_header_body(message);
    let mut head = content_head(header);
    head.extend_from_slice(b"\r\n");
    let body = if mime::has_bare_lf(body) || !(body.is_empty() || body.ends_with(b"\n")) {
        Cow::Owned(mime::to_crlf(body))
    } else {
        Cow::Borrowed(body)
    };
    (mime::envelope_fields(header), head, body)
}

/// `micalg` value for a hash (RFC 3156 §5).
fn micalg(hash: HashAlgorithm) -> &'static str {
    match hash {
        HashAlgorithm::SHA384 => "pgp-sha384",
        HashAlgorithm::SHA512 => "pgp-sha512",
        _ => "pgp-sha256",
    }
}

/// Signs `message` with the gateway key: returns `multipart/signed`.
pub fn sign(identity: &GatewayIdentity, message: &[u8], limits: &Limits) -> Result<Vec<u8>> {
    if message.len() > limits.max_input {
        return Err(Error::Limit("message size"));
    }
    let (envelope, inner) = entity(message, true)?;
    let signer = identity.signer();
    let hash = signer.hash();
    let mut sig = Vec::new();
    {
        let m = Message::new(&mut sig);
        let m = Armorer::new(m)
            .kind(openpgp::armor::Kind::Signature)
            .build()
            .map_err(Error::pgp)?;
        let mut w = Signer::new(m, signer)
            .and_then(|s| s.hash_algo(hash))
            .map_err(Error::pgp)?
            .detached()
            .build()
            .map_err(Error::pgp)?;
        w.write_all(&inner)?;
        w.finalize().map_err(Error::pgp)?;
    }
    let b = mime::boundary();
    let mut out = envelope;
    out.extend_from_slice(b"MIME-Version: 1.0\r\n");
    out.extend_from_slice(
        format!(
            "Content-Type: multipart/signed; micalg={}; protocol=\"application/pgp-signature\";\r\n boundary=\"{b}\"\r\n\r\n",
            micalg(hash)
        )
        .as_bytes(),
    );
    out.extend_from_slice(b"This is an OpenPGP/MIME signed message (RFC 3156).\r\n");
    out.extend_from_slice(format!("--{b}\r\n").as_bytes());
    out.extend_from_slice(&inner);
    out.extend_from_slice(format!("\r\n--{b}\r\n").as_bytes());
    out.extend_from_slice(
        b"Content-Type: application/pgp-signature; name=\"signature.asc\"\r\n\
          Content-Description: OpenPGP digital signature\r\n\
          Content-Disposition: attachment; filename=\"signature.asc\"\r\n\r\n",
    );
    out.extend_from_slice(&mime::to_crlf(&sig));
    out.extend_from_slice(format!("--{b}--\r\n").as_bytes());
    Ok(out)
}
