//! The one error type of the S/MIME engine.
//!
//! The pipeline needs one distinction above all: [`Error::is_temporary`]
//! (the token is unreachable: defer the message, never bounce it) versus
//! everything else (the message or the configuration is wrong: hold or
//! refuse). Decryption failures of every kind collapse into
//! [`Error::Decrypt`] so no sender can learn which step failed.
//!
//! Trusts: nothing. Must never: carry key material or plaintext in a message.

/// What went wrong in the S/MIME engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The token (HSM) failed; see [`Error::is_temporary`].
    #[error("key store: {0}")]
    Hsm(#[from] sealgate_hsm::Error),
    /// The input is not well-formed (ASN.1, CMS, MIME or X.509).
    #[error("malformed input: {0}")]
    Malformed(String),
    /// The input exceeds one of the engine's limits.
    #[error("input exceeds the limit on {0}")]
    Limit(&'static str),
    /// An algorithm or structure the engine refuses (unknown or too weak).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The message is not for any of the keys the engine was given.
    #[error("no recipient info matches a gateway key")]
    NoMatchingRecipient,
    /// Decryption failed (wrong key, tampered content, bad padding or tag).
    #[error("decryption failed")]
    Decrypt,
    /// The input is not the kind of message the operation expects.
    #[error("not an S/MIME message of the expected type: {0}")]
    WrongType(String),
    /// A certificate cannot be used for what was asked (no usable key,
    /// expired, wrong key usage).
    #[error("certificate: {0}")]
    Certificate(String),
    /// A local cryptographic operation failed (randomness, key setup).
    #[error("cryptographic operation failed: {0}")]
    Crypto(&'static str),
}

impl Error {
    /// True when retrying later can help (the token is unreachable or busy):
    /// the pipeline defers the message instead of bouncing it.
    pub fn is_temporary(&self) -> bool {
        matches!(self, Error::Hsm(e) if e.is_temporary())
    }
}

impl From<aws_lc_rs::error::Unspecified> for Error {
    fn from(_: aws_lc_rs::error::Unspecified) -> Self {
        Error::Crypto("aws-lc")
    }
}
