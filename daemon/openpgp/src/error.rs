//! The engine's one error type.
//!
//! Sequoia reports failures as `anyhow::Error`; they are wrapped here, at the
//! boundary, into variants the pipeline can act on: [`Error::is_temporary`]
//! (the token is down: defer), [`Error::Decrypt`] (one uniform answer for
//! every decryption failure, so the sender learns nothing), and the rest
//! (hold or bounce). Trusts nothing; must never carry plaintext or key
//! material in a message.

/// What went wrong in the OpenPGP engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The token failed; [`Error::is_temporary`] says whether to defer.
    #[error("token: {0}")]
    Hsm(#[from] sealgate_hsm::Error),
    /// The message could not be decrypted (any cause: no key, bad session
    /// key, missing or broken MDC, failed AEAD chunk, SED, limits). Uniform
    /// by design (Efail, RFC 9580 §13.7).
    #[error("the message could not be decrypted")]
    Decrypt,
    /// The input is not the kind of message the operation expects.
    #[error("malformed input: {0}")]
    Malformed(String),
    /// A size, depth or count limit was exceeded.
    #[error("limit exceeded: {0}")]
    Limit(&'static str),
    /// A recipient certificate cannot be used (expired, revoked, no
    /// encryption-capable key under the policy).
    #[error("unusable certificate {fingerprint}: {reason}")]
    UnusableCert {
        /// The certificate's fingerprint.
        fingerprint: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// The gateway identity on disk is missing or does not match the token.
    #[error("gateway identity: {0}")]
    Identity(String),
    /// Reading or writing the identity files failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Any other OpenPGP failure reported by Sequoia.
    #[error("openpgp: {0}")]
    OpenPgp(String),
}

impl Error {
    /// True when retrying later may succeed (the token is unreachable): the
    /// pipeline defers the message instead of bouncing it.
    pub fn is_temporary(&self) -> bool {
        matches!(self, Error::Hsm(e) if e.is_temporary())
    }

    /// Wraps a Sequoia error, keeping a token error that travelled through it.
    pub(crate) fn pgp(e: anyhow::Error) -> Error {
        match e.downcast::<sealgate_hsm::Error>() {
            Ok(hsm) => Error::Hsm(hsm),
            Err(e) => Error::OpenPgp(format!("{e:#}")),
        }
    }
}

/// Result with the engine's error.
pub type Result<T> = std::result::Result<T, Error>;
