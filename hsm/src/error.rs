//! The one error type of the key store.
//!
//! Every failure says *which* PKCS#11 function failed (when one did) and
//! whether retrying later can help ([`Error::is_temporary`]). Mail code maps
//! a temporary error to "defer" (4xx, keep the message queued) and a
//! permanent one to "hold for the operator"; neither ever means "send in
//! clear".
//!
//! Trusts: nothing; it only classifies. Must never: carry a PIN, key
//! material or plaintext in a message (errors end up in logs), or let two
//! different RSA padding failures look different ([`Error::Decrypt`] is the
//! single class for every decryption failure).

use cryptoki::context::Function;
use cryptoki::error::{Error as CkError, RvError};

/// What went wrong in the key store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A PKCS#11 function returned an error code.
    #[error("PKCS#11 {function} failed: {rv}")]
    Pkcs11 {
        /// The PKCS#11 function that failed (`C_Decrypt`, `C_Login` ...).
        function: String,
        /// The return value the module gave.
        rv: RvError,
    },
    /// The PKCS#11 module could not be loaded or used (not a PKCS#11 error code).
    #[error("PKCS#11 module {module}: {detail}")]
    Module {
        /// The module path from the settings.
        module: String,
        /// What the loader or the cryptoki wrapper said.
        detail: String,
    },
    /// No slot holds a token with the configured label (token not created, removed or its
    /// storage is gone).
    #[error("no token labelled {0:?} is present")]
    TokenMissing(String),
    /// The PIN file could not be read or is empty.
    #[error("PIN file {path}: {detail}")]
    PinFile {
        /// Where the PIN was expected.
        path: String,
        /// Why it could not be used (never the PIN itself).
        detail: String,
    },
    /// No key (or certificate) with this label exists on the token.
    #[error("no key labelled {0:?} on the token")]
    KeyNotFound(String),
    /// The key exists but its type or usage does not allow the requested operation.
    #[error("key {label:?} cannot be used for {operation}")]
    WrongKey {
        /// Label of the key.
        label: String,
        /// The operation that was asked for.
        operation: &'static str,
    },
    /// A key with this label already exists; labels are unique in Sealgate's scheme.
    #[error("a key labelled {0:?} already exists")]
    KeyExists(String),
    /// Decryption failed. This one class covers every padding, length and integrity
    /// failure so that callers (and attackers watching them) cannot tell them apart.
    #[error("decryption failed")]
    Decrypt,
    /// The input given to an operation is malformed (wrong length, bad encoding).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The key has no certificate, neither in Sealgate's certificate store nor on the token.
    #[error("{0:?} has no certificate")]
    NoCertificate(String),
    /// Certificate creation, parsing or storage failed.
    #[error("certificate: {0}")]
    Certificate(String),
    /// A file of the key store or the provisioning could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// Provisioning could not complete (child process failed, wrong environment).
    #[error("provisioning: {0}")]
    Provision(String),
}

impl Error {
    /// True when retrying later (without operator action) can succeed: the token, its
    /// sessions or its login went away, or the device is busy. Mail is deferred on a
    /// temporary error, never bounced and never sent in clear.
    pub fn is_temporary(&self) -> bool {
        match self {
            Error::Pkcs11 { rv, .. } => rv_is_temporary(*rv),
            // A missing module file or token is what an outage looks like from here
            // (package upgrade, token storage unmounted, HSM rebooting).
            Error::Module { .. } | Error::TokenMissing(_) => true,
            Error::PinFile { .. }
            | Error::KeyNotFound(_)
            | Error::WrongKey { .. }
            | Error::KeyExists(_)
            | Error::Decrypt
            | Error::InvalidInput(_)
            | Error::NoCertificate(_)
            | Error::Certificate(_)
            | Error::Io { .. }
            | Error::Provision(_) => false,
        }
    }

    /// True when the error means the module state (sessions, login, token) is gone and
    /// must be rebuilt before the next operation.
    pub(crate) fn needs_reconnect(&self) -> bool {
        match self {
            Error::Pkcs11 { rv, .. } => rv_needs_reconnect(*rv),
            Error::Module { .. } | Error::TokenMissing(_) => true,
            _ => false,
        }
    }

    /// The PKCS#11 function that failed, if the error came from one.
    pub fn function(&self) -> Option<&str> {
        match self {
            Error::Pkcs11 { function, .. } => Some(function),
            _ => None,
        }
    }

    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

/// Return values that mean the sessions, login or token are gone.
fn rv_needs_reconnect(rv: RvError) -> bool {
    matches!(
        rv,
        RvError::SessionHandleInvalid
            | RvError::SessionClosed
            | RvError::UserNotLoggedIn
            | RvError::DeviceRemoved
            | RvError::DeviceError
            | RvError::TokenNotPresent
            | RvError::TokenNotRecognized
            | RvError::SlotIdInvalid
            | RvError::CryptokiNotInitialized
            | RvError::GeneralError
            | RvError::ObjectHandleInvalid
            | RvError::KeyHandleInvalid
    )
}

fn rv_is_temporary(rv: RvError) -> bool {
    rv_needs_reconnect(rv)
        || matches!(
            rv,
            RvError::DeviceMemory
                | RvError::HostMemory
                | RvError::FunctionCanceled
                | RvError::SessionCount
                | RvError::OperationActive
                | RvError::CantLock
                | RvError::Cancel
        )
}

/// Converts a cryptoki error, keeping the function name.
pub(crate) fn ck(module: &str) -> impl Fn(CkError) -> Error + '_ {
    move |e| from_ck(module, e)
}

pub(crate) fn from_ck(module: &str, e: CkError) -> Error {
    match e {
        CkError::Pkcs11(rv, function) => Error::Pkcs11 {
            function: function_name(function),
            rv,
        },
        other => Error::Module {
            module: module.to_owned(),
            detail: other.to_string(),
        },
    }
}

fn function_name(function: Function) -> String {
    format!("C_{function:?}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn session_loss_is_temporary_and_pin_error_is_not() {
        let lost = from_ck(
            "m",
            CkError::Pkcs11(RvError::SessionHandleInvalid, Function::Decrypt),
        );
        assert!(lost.is_temporary());
        assert!(lost.needs_reconnect());
        assert_eq!(lost.function(), Some("C_Decrypt"));
        let pin = from_ck("m", CkError::Pkcs11(RvError::PinIncorrect, Function::Login));
        assert!(!pin.is_temporary());
        assert!(!Error::Decrypt.is_temporary());
    }
}
