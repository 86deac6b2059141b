//! Encryption for recipient certificates: RFC 3156 §4 `multipart/encrypted`
//! (or, per recipient option, inline PGP in a `text/plain` body).
//!
//! Recipients: v4 and v6 certificates, valid now under Sequoia's standard
//! policy, not revoked, not expired, with at least one alive encryption
//! subkey flagged for transport encryption; any other certificate is
//! refused with [`Error::UnusableCert`] (fail closed: the caller holds the
//! message). Sequoia writes SEIPD v2 (AEAD) only when every recipient
//! advertises it, SEIPD v1 with MDC otherwise. Optionally signed inside the
//! encryption by the gateway key.
//!
//! Trusts: the recipient certificates the caller chose (the directory).

use std::io::Write;

use sequoia_openpgp as openpgp;

use openpgp::Cert;
use openpgp::serialize::stream::{Encryptor, LiteralWriter, Message, Recipient, Signer};
use openpgp::types::RevocationStatus;

use crate::armorer;
use crate::error::{Error, Result};
use crate::gateway::GatewayIdentity;
use crate::limits::Limits;
use crate::mime;

/// How to encrypt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EncryptOptions {
    /// Inline PGP (an armored block as a `text/plain` body) instead of
    /// PGP/MIME; only for a single `text/plain` body.
    pub inline: bool,
    /// Sign with the gateway key inside the encryption.
    pub sign: bool,
}

impl EncryptOptions {
    /// PGP/MIME, unsigned.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets [`EncryptOptions::inline`].
    pub fn inline(mut self, yes: bool) -> Self {
        self.inline = yes;
        self
    }
    /// Sets [`EncryptOptions::sign`].
    pub fn sign(mut self, yes: bool) -> Self {
        self.sign = yes;
        self
    }
}

fn unusable(cert: &Cert, reason: impl Into<String>) -> Error {
    Error::UnusableCert {
        fingerprint: cert.fingerprint().to_hex(),
        reason: reason.into(),
    }
}

/// Encrypts the concatenation of `pieces` to `recipients`, optionally
/// signing it: a binary OpenPGP message (armored by the caller, see
/// [`armorer`]).
pub(crate) fn encrypt_blob(
    pieces: &[&[u8]],
    recipients: &[Cert],
    signer: Option<&GatewayIdentity>,
) -> Result<Vec<u8>> {
    let policy = crate::policy::policy();
    let mut keys: Vec<Recipient> = Vec::new();
    for cert in recipients {
        let vc = cert
            .with_policy(&policy, None)
            .map_err(|e| unusable(cert, format!("{e:#}")))?;
        if let RevocationStatus::Revoked(_) = vc.revocation_status() {
            return Err(unusable(cert, "revoked"));
        }
        vc.alive().map_err(|_| unusable(cert, "expired"))?;
        let before = keys.len();
        for ka in vc
            .keys()
            .supported()
            .alive()
            .revoked(false)
            .for_transport_encryption()
        {
            keys.push(ka.into());
        }
        if keys.len() == before {
            return Err(unusable(cert, "no usable encryption key"));
        }
    }
    if keys.is_empty() {
        return Err(Error::Malformed("no recipients".into()));
    }
    let mut out = Vec::new();
    {
        let m = Message::new(&mut out);
        let m = Encryptor::for_recipients(m, keys)
            .build()
            .map_err(Error::pgp)?;
        let m = match signer {
            Some(id) => {
                let signer = id.signer();
                let hash = signer.hash();
                Signer::new(m, signer)
                    .and_then(|s| s.hash_algo(hash))
                    .map_err(Error::pgp)?
                    .build()
                    .map_err(Error::pgp)?
            }
            None => m,
        };
        let mut w = LiteralWriter::new(m).build().map_err(Error::pgp)?;
        for piece in pieces {
            w.write_all(piece)?;
        }
        w.finalize().map_err(Error::pgp)?;
    }
    Ok(out)
}

/// Encrypts `message` to `recipients`; `gateway` signs when `opts.sign`.
pub fn encrypt(
    message: &[u8],
    recipients: &[Cert],
    gateway: Option<&GatewayIdentity>,
    opts: EncryptOptions,
    limits: &Limits,
) -> Result<Vec<u8>> {
    if message.len() > limits.max_input {
        return Err(Error::Limit("message size"));
    }
    let signer = if opts.sign {
        Some(gateway.ok_or_else(|| Error::Identity("signing needs the gateway identity".into()))?)
    } else {
        None
    };
    if opts.inline {
        let parsed = mail_parser::MessageParser::default()
            .parse(message)
            .ok_or_else(|| Error::Malformed("not a MIME message".into()))?;
        let root = parsed.root_part();
        let text = match root.text_contents() {
            Some(t) if root.sub_parts().is_none() && !root.is_text_html() => t,
            _ => {
                return Err(Error::Malformed(
                    "inline PGP needs a single text/plain body".into(),
                ));
            }
        };
        let binary = encrypt_blob(&[text.as_bytes()], recipients, signer)?;
        let (header, _) = mime::split_header_body(message);
        let mut out = mime::envelope_fields(header);
        out.extend_from_slice(
            b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\
              Content-Transfer-Encoding: 7bit\r\n\r\n",
        );
        armorer::push_message(&mut out, &binary);
        return Ok(out);
    }
    let (envelope, head, body) = crate::sign::entity_parts(message);
    encrypt_pieces(envelope, &[&head, &body], recipients, gateway, opts)
}

/// PGP/MIME for a message already split by the caller: `envelope` (the
/// header fields that stay visible, CRLF-terminated) and `entity` (the MIME
/// entity to encrypt, CRLF). For header protection (RFC 9788) the caller
/// puts copies of the protected fields into `entity` and obscures them in
/// `envelope`.
pub fn encrypt_entity(
    envelope: Vec<u8>,
    entity: &[u8],
    recipients: &[Cert],
    gateway: Option<&GatewayIdentity>,
    opts: EncryptOptions,
) -> Result<Vec<u8>> {
    encrypt_pieces(envelope, &[entity], recipients, gateway, opts)
}

/// [`encrypt_entity`] for an entity in pieces (header and body, not copied
/// into one buffer first).
fn encrypt_pieces(
    envelope: Vec<u8>,
    entity: &[&[u8]],
    recipients: &[Cert],
    gateway: Option<&GatewayIdentity>,
    opts: EncryptOptions,
) -> Result<Vec<u8>> {
    let signer = if opts.sign {
        Some(gateway.ok_or_else(|| Error::Identity("signing needs the gateway identity".into()))?)
    } else {
        None
    };
    let binary = encrypt_blob(entity, recipients, signer)?;
    let b = mime::boundary();
    let mut out = envelope;
    out.extend_from_slice(b"MIME-Version: 1.0\r\n");
    out.extend_from_slice(
        format!(
            "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\r\n boundary=\"{b}\"\r\n\r\n"
        )
        .as_bytes(),
    );
    out.extend_from_slice(b"This is an OpenPGP/MIME encrypted message (RFC 3156).\r\n");
    out.extend_from_slice(
        format!(
            "--{b}\r\nContent-Type: application/pgp-encrypted\r\n\
             Content-Description: PGP/MIME version identification\r\n\r\nVersion: 1\r\n\r\n\
             --{b}\r\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\
             Content-Description: OpenPGP encrypted message\r\n\
             Content-Disposition: inline; filename=\"encrypted.asc\"\r\n\r\n"
        )
        .as_bytes(),
    );
    armorer::push_message(&mut out, &binary);
    out.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
    Ok(out)
}
