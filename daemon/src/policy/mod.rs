//! Policy: which recipients get the message encrypted, signed, in clear,
//! quarantined or refused, and why.
//!
//! - [`rules`]: the `[policy]` table as written, checked and compiled.
//! - [`facts`]: what the decision may look at (filled by the pipeline).
//! - [`decide`]: the pure decision function and its explanation.
//! - [`glob`]: address and domain wildcards.
//!
//! The pipeline calls [`decide::decide`] once per (expanded) recipient and
//! records [`decide::Decision::explain`] in tracking; `sealgate policy
//! explain` runs the same code on a message from stdin without sending it.

pub mod decide;
pub mod facts;
pub mod glob;
pub mod rules;

pub use decide::{Decision, Source, decide};
pub use facts::{Attachment, Direction, MessageFacts, Recipient, Wrapping};
pub use rules::{Action, Policy, PolicyConfig};

#[cfg(test)]
mod cases;
