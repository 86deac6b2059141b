//! The fail-closed guard: the last check of every copy the pipeline plans
//! (`pipeline::process` applies it to the whole plan before returning it).
//!
//! Whatever happened before (an engine bug, a policy mistake, a missing
//! key), an outgoing message for a recipient whose decision requires
//! encryption must be an encrypted entity: S/MIME enveloped data or
//! PGP/MIME / inline PGP. If it is not, it is not sent; the recipient is
//! held and the reason logged.
//!
//! Trusts: nothing; it re-parses the bytes that would be sent (the header,
//! and the whole message when only inline PGP could make it encrypted).

use super::Outgoing;

/// What the guard says when it stops a copy.
pub const STOPPED: &str =
    "fail-closed guard: encryption is required but the outgoing message is not encrypted; not sent";

/// Ok if `out` may be handed to delivery.
pub fn check(out: &Outgoing) -> Result<(), &'static str> {
    if !out.must_be_encrypted {
        return Ok(());
    }
    match super::parse::wrapping_as_sent(&out.content) {
        Some(_) => Ok(()),
        None => Err(STOPPED),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn out(content: &[u8], must: bool) -> Outgoing {
        Outgoing {
            recipients: vec![0],
            content: Arc::new(content.to_vec()),
            must_be_encrypted: must,
        }
    }

    #[test]
    fn clear_content_never_passes_when_encryption_is_required() {
        let clear = b"From: a@b\r\nSubject: x\r\n\r\nsecret\r\n";
        let smime = b"From: a@b\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\r\nMIA=\r\n";
        let signed_only = b"From: a@b\r\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=x\r\n\r\n--x\r\n\r\nsecret\r\n--x--\r\n";
        assert!(check(&out(clear, true)).is_err());
        assert!(check(&out(signed_only, true)).is_err());
        assert!(check(&out(b"", true)).is_err());
        assert!(check(&out(smime, true)).is_ok());
        assert!(check(&out(clear, false)).is_ok());
        let inline = b"From: a@b\r\nContent-Type: text/plain\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n\r\nhQ==\r\n-----END PGP MESSAGE-----\r\n";
        let inline_with_clear_sibling = b"From: a@b\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n\r\nhQ==\r\n-----END PGP MESSAGE-----\r\n--x\r\nContent-Type: text/plain\r\n\r\nsecret\r\n--x--\r\n";
        assert!(check(&out(inline, true)).is_ok());
        assert!(check(&out(inline_with_clear_sibling, true)).is_err());
    }
}
