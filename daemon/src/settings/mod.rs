//! Settings that change while the gateway runs.
//!
//! - [`store`]: every version of the settings, with who made it, when, from
//!   which front end and why, in the shared store (so a cluster shares
//!   them); a change names the version it was made from and loses to a
//!   change that came first (optimistic concurrency, never a merge).
//! - [`live`]: the version in force, as one immutable [`live::Runtime`]
//!   (configuration, compiled policy, TLS identity, list expander) that
//!   every unit of work takes at its start: an SMTP session keeps the one
//!   it started with, a delivery attempt uses one from its beginning to its
//!   end, so nothing is ever processed under a mix of two versions.
//! - [`path`]: one setting by its dotted key (`delivery.smarthost`), and the
//!   keys that differ between two versions.
//!
//! The bootstrap file's settings are imported as version 1 on the first
//! start; afterwards the store is authoritative (docs/CONFIG.md).

pub mod live;
pub mod path;
pub mod store;

pub use live::{Live, Runtime};
pub use store::{CommitError, SettingsStore};
