//! Settings versions: show, change, compare, roll back.
//!
//! Every change is a new version with its author, time, front end and an
//! optional comment; a change names the version it was made from
//! (`base_version`), and if another change came first it is refused with
//! [`crate::ServiceError::Conflict`], never merged. A rollback is itself a
//! new version.

use serde::{Deserialize, Serialize};

use super::operation;
use crate::settings::Settings;
use crate::{Area, Permission, Role, Via};

/// Who made a version, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionMeta {
    pub version: u64,
    pub author: String,
    pub role: Role,
    pub via: Via,
    pub time_ms: u64,
    pub comment: Option<String>,
    /// Set when this version restores an earlier one.
    pub restores: Option<u64>,
}

/// A version with its settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingsVersion {
    pub meta: VersionMeta,
    pub settings: Settings,
}

/// `settings.show`: a version (default: the current one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingsShow {
    #[serde(default)]
    pub version: Option<u64>,
}
operation!(
    SettingsShow,
    "settings.show",
    Permission::Read(Area::Settings),
    SettingsVersion
);

/// `settings.get`: one key (dotted: `delivery.smarthost`), as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingsGet {
    pub key: String,
    #[serde(default)]
    pub version: Option<u64>,
}
operation!(
    SettingsGet,
    "settings.get",
    Permission::Read(Area::Settings),
    serde_json::Value
);

/// `settings.set`: one key to a new value (JSON, or a TOML value as text
/// for the CLI), as a new version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingsSet {
    pub key: String,
    pub value: serde_json::Value,
    /// The version the change was made from; `None`: the current one.
    #[serde(default)]
    pub base_version: Option<u64>,
    #[serde(default)]
    pub comment: Option<String>,
}
operation!(
    SettingsSet,
    "settings.set",
    Permission::Write(Area::Settings),
    VersionMeta
);

/// `settings.apply`: a whole settings tree as a new version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingsApply {
    pub settings: Settings,
    #[serde(default)]
    pub base_version: Option<u64>,
    #[serde(default)]
    pub comment: Option<String>,
}
operation!(
    SettingsApply,
    "settings.apply",
    Permission::Write(Area::Settings),
    VersionMeta
);

/// One key that differs between two versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Dotted key.
    pub key: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// `settings.diff`: what changed from version `from` (default: the one
/// before `to`) to version `to` (default: the current one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SettingsDiff {
    pub from: Option<u64>,
    pub to: Option<u64>,
}
operation!(
    SettingsDiff,
    "settings.diff",
    Permission::Read(Area::Settings),
    Vec<Change>
);

/// `settings.history`: versions, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SettingsHistory {
    pub limit: Option<usize>,
}
operation!(
    SettingsHistory,
    "settings.history",
    Permission::Read(Area::Settings),
    Vec<VersionMeta>
);

/// `settings.rollback`: version `to`'s settings as a new version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingsRollback {
    pub to: u64,
    #[serde(default)]
    pub base_version: Option<u64>,
    #[serde(default)]
    pub comment: Option<String>,
}
operation!(
    SettingsRollback,
    "settings.rollback",
    Permission::Write(Area::Settings),
    VersionMeta
);

/// `settings.export`: a version as TOML (what `settings apply` reads).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingsExport {
    #[serde(default)]
    pub version: Option<u64>,
}
operation!(
    SettingsExport,
    "settings.export",
    Permission::Read(Area::Settings),
    String
);
