//! The console's one error type.

use std::path::PathBuf;

/// Why a console action failed. Shown to the administrator as one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsoleError {
    /// Reading or writing a file or the terminal failed.
    #[error("{context} {}: {source}", path.display())]
    Io {
        /// What was being done.
        context: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The terminal went away.
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
    /// The administrator typed something the action cannot use.
    #[error("{0}")]
    InvalidInput(String),
    /// A destructive action was not confirmed with the right word.
    #[error("not confirmed: type {0} to confirm")]
    NotConfirmed(&'static str),
    /// The service refused or failed an operation (an update).
    #[error("{0}")]
    Service(sealgate_api::ServiceError),
    /// An allow-listed system command failed.
    #[error("`{command}` failed: {detail}")]
    CommandFailed {
        /// The command line.
        command: String,
        /// Exit status or start error.
        detail: String,
    },
}

impl From<crate::service::update::UpdateError> for ConsoleError {
    fn from(e: crate::service::update::UpdateError) -> Self {
        match e {
            crate::service::update::UpdateError::InvalidSource(text) => {
                ConsoleError::InvalidInput(text)
            }
            e => ConsoleError::Service(e.into()),
        }
    }
}

impl ConsoleError {
    pub(crate) fn io(
        context: &'static str,
        path: &std::path::Path,
        source: std::io::Error,
    ) -> Self {
        ConsoleError::Io {
            context,
            path: path.to_path_buf(),
            source,
        }
    }
}
