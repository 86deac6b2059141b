//! The pipeline seam between the spool and the outbound queue.
//!
//! For each delivery attempt the scheduler hands the pipeline a spooled
//! message and the recipients still pending; the pipeline answers with the
//! outgoing messages, each for a group of those recipients. Today it relays
//! the message unchanged to all of them; the crypto issues plug their stages
//! in here (parse → unwrap → expand → policy → resolve → render).
//!
//! Contract: a temporary error defers the whole message (it stays queued,
//! nothing is sent); a permanent error bounces the recipients it names.
//! Nothing is ever sent half-processed.

use std::sync::Arc;

pub mod decide;
pub mod parse;

use crate::queue::spool::SpooledMessage;

/// One message to send, for some of the pending recipients.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Indices into the queue entry's recipient list.
    pub recipients: Vec<usize>,
    /// The exact content to send.
    pub content: Arc<Vec<u8>>,
}

/// Why the pipeline could not produce the outgoing messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PipelineError {
    /// Try again later (a key store or directory is unreachable).
    #[error("temporary failure: {0}")]
    Temporary(String),
    /// This message cannot be processed, ever.
    #[error("permanent failure: {0}")]
    Permanent(String),
}

/// Processes a message for its `pending` recipients.
pub fn process(
    message: &SpooledMessage,
    pending: &[usize],
) -> Result<Vec<Outgoing>, PipelineError> {
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    Ok(vec![Outgoing {
        recipients: pending.to_vec(),
        content: Arc::clone(&message.content),
    }])
}
