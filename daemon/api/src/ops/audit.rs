//! The audit log: every change, and every denied call, with who, from
//! where, what, the outcome and the settings versions around it.

use serde::{Deserialize, Serialize};

use super::operation;
use crate::{Area, Permission, Role, Via};

/// How an audited call ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "detail")]
pub enum AuditOutcome {
    Done,
    /// The role did not allow it.
    Denied,
    /// It was tried and failed.
    Failed(String),
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Unique in the log (its time, then random bits: hex).
    pub id: String,
    pub time_ms: u64,
    pub actor: String,
    pub role: Role,
    pub via: Via,
    pub from: Option<String>,
    pub operation: String,
    /// The arguments, without secrets (see `Operation::audit_args`).
    pub args: serde_json::Value,
    pub outcome: AuditOutcome,
    pub settings_before: u64,
    pub settings_after: u64,
}

/// `audit.search`: records, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditSearch {
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
    /// Exact account name.
    pub actor: Option<String>,
    /// Operation name or its prefix (`settings.`).
    pub operation: Option<String>,
    /// Default 200.
    pub limit: Option<usize>,
}
operation!(
    AuditSearch,
    "audit.search",
    Permission::Read(Area::Audit),
    Vec<AuditRecord>
);
