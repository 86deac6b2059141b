//! Why an operation did not happen, in terms a front end can act on: each
//! variant says whether trying again later can help
//! ([`ServiceError::is_temporary`]) and maps to one HTTP status and one
//! CLI exit code, in one place each.

use serde::{Deserialize, Serialize};

use crate::actor::Role;

/// One problem with one key of a request (a settings key, a form field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// The dotted key (`delivery.smarthost`, `policy.rule.3.action`).
    pub key: String,
    pub message: String,
}

impl FieldError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "error", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServiceError {
    /// The actor's role does not allow the operation (it is audited).
    #[error("{role:?} may not {operation}")]
    Denied { operation: String, role: Role },
    /// The request is not acceptable; every problem names its key.
    #[error("{}", join(errors))]
    Invalid { errors: Vec<FieldError> },
    /// What the request names does not exist.
    #[error("{what}: not found")]
    NotFound { what: String },
    /// The settings changed since the caller read them (optimistic
    /// concurrency): read again, then change.
    #[error(
        "the settings changed meanwhile: you edited version {expected}, the current one is {current}"
    )]
    Conflict { expected: u64, current: u64 },
    /// Something is in progress that this must not race (a delivery).
    #[error("{what}")]
    Busy { what: String },
    /// A resource is down (the token, the state store, the cluster
    /// database): try again later.
    #[error("{what}: unavailable, try again later")]
    Unavailable { what: String },
    /// No operation has this name.
    #[error("unknown operation {0:?}")]
    UnknownOperation(String),
    /// It failed for good; the text says why.
    #[error("{what}")]
    Failed { what: String },
}

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl ServiceError {
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> ServiceError {
        ServiceError::Invalid {
            errors: vec![FieldError::new(key, message)],
        }
    }

    pub fn failed(what: impl Into<String>) -> ServiceError {
        ServiceError::Failed { what: what.into() }
    }

    /// Trying again later, unchanged, can succeed.
    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            ServiceError::Busy { .. } | ServiceError::Unavailable { .. }
        )
    }

    /// The HTTP status a web front end answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            ServiceError::Denied { .. } => 403,
            ServiceError::Invalid { .. } => 422,
            ServiceError::NotFound { .. } => 404,
            ServiceError::Conflict { .. } | ServiceError::Busy { .. } => 409,
            ServiceError::Unavailable { .. } => 503,
            ServiceError::UnknownOperation(_) => 400,
            ServiceError::Failed { .. } => 500,
        }
    }

    /// The exit code a command line front end ends with (sysexits.h).
    pub fn exit_code(&self) -> u8 {
        match self {
            ServiceError::Invalid { .. } | ServiceError::UnknownOperation(_) => 65, // EX_DATAERR
            ServiceError::NotFound { .. } => 66,                                    // EX_NOINPUT
            ServiceError::Denied { .. } => 77,                                      // EX_NOPERM
            ServiceError::Conflict { .. }
            | ServiceError::Busy { .. }
            | ServiceError::Unavailable { .. } => 75, // EX_TEMPFAIL
            ServiceError::Failed { .. } => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn errors_travel_as_json_and_keep_their_meaning() {
        let e = ServiceError::Invalid {
            errors: vec![
                FieldError::new("delivery.smarthost", "bad port"),
                FieldError::new("smtp.max_recipients", "must be at least 1"),
            ],
        };
        let back: ServiceError = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
        assert_eq!(
            e.to_string(),
            "delivery.smarthost: bad port; smtp.max_recipients: must be at least 1"
        );
        assert!(!e.is_temporary());
        assert!(
            ServiceError::Unavailable {
                what: "token".into()
            }
            .is_temporary()
        );
        assert_eq!(
            ServiceError::Conflict {
                expected: 3,
                current: 4
            }
            .http_status(),
            409
        );
    }
}
