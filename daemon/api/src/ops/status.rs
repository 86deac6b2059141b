//! The gateway's state at a glance.

use serde::{Deserialize, Serialize};

use super::operation;
use crate::{Area, Permission};

/// Recipients waiting, by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCounts {
    pub messages: usize,
    pub scheduled: usize,
    pub deferred: usize,
    pub held: usize,
    pub quarantined: usize,
}

/// Whether the gateway's keys can be used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum KeyStoreState {
    /// No token set up (or no key with a certificate).
    NotSetUp,
    /// Set up but not usable now: mail that needs it waits.
    Unavailable {
        reason: String,
    },
    Ready,
}

/// Space on the data partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskUsage {
    pub total_bytes: u64,
    pub free_bytes: u64,
}

/// Something that expires soon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expiring {
    /// `gateway key gateway-sign`, `directory entry 3f2a… (bob@x.example)`.
    pub what: String,
    pub not_after_ms: u64,
}

/// `status`: this node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {}
operation!(
    Status,
    "status",
    Permission::Read(Area::Status),
    StatusReport
);

/// The answer to [`Status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub node: String,
    pub version: String,
    pub hostname: String,
    pub started_at_ms: u64,
    /// The settings version in force.
    pub settings_version: u64,
    /// The bootstrap file's settings differ from the version in force (the
    /// store is authoritative after the first start; see docs/CONFIG.md).
    pub file_settings_differ: bool,
    pub queue: QueueCounts,
    pub key_store: KeyStoreState,
    /// The state store failed (a full disk) and waits to be reopened.
    pub storage_failed: Option<String>,
    pub data_disk: DiskUsage,
    /// Certificates and keys that expire within 30 days.
    pub expiring: Vec<Expiring>,
}
