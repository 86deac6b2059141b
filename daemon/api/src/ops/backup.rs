//! Backup and restore of the gateway's shared state: every settings
//! version (policy included), the key directory and its pending reviews,
//! the accounts, and the OpenPGP identity's metadata. Private keys stay
//! in the token and are not in a backup: the token (HSM) is backed up by
//! its own means.
//!
//! A backup is encrypted with a passphrase: Argon2id derives the key,
//! AES-256-GCM seals the contents. Restoring replaces these parts of the
//! state of a fresh install (or of a gateway whose administrator asks
//! for it) and puts the newest settings version in force.

use serde::{Deserialize, Serialize};

use super::operation;
use crate::{Area, Permission};

/// What a backup holds, in counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupSummary {
    /// When the backup was made (ms since the epoch).
    pub created_ms: u64,
    /// The node that made it.
    pub node: String,
    pub settings_versions: usize,
    /// The newest settings version in it.
    pub settings_version: u64,
    pub directory_entries: usize,
    pub accounts: usize,
    pub reviews: usize,
    /// OpenPGP identity metadata files (the keys stay on the token).
    pub openpgp_files: usize,
}

/// An encrypted backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupFile {
    /// A file name for it (`sealgate-backup-<node>-<date>.sgbk`).
    pub name: String,
    /// The encrypted backup, base64.
    pub data: String,
    pub summary: BackupSummary,
}

/// `backup.create`: an encrypted backup of the shared state.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupCreate {
    /// At least 12 characters; needed to restore.
    pub passphrase: String,
}
operation!(
    BackupCreate,
    "backup.create",
    Permission::Write(Area::Accounts),
    BackupFile,
    audit = |_op| serde_json::json!({})
);

/// `backup.restore`: a backup made by `backup.create` replaces the
/// settings history, the directory, the reviews, the accounts and the
/// OpenPGP metadata; the newest settings version is put in force, every
/// web session ends, and a gateway still in its setup wizard counts as
/// set up (its setup token is burned).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRestore {
    /// The encrypted backup, base64.
    pub data: String,
    pub passphrase: String,
}
operation!(
    BackupRestore,
    "backup.restore",
    Permission::Write(Area::Accounts),
    BackupSummary,
    audit = |_op| serde_json::json!({})
);

impl std::fmt::Debug for BackupCreate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupCreate").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for BackupRestore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupRestore")
            .field("bytes", &self.data.len())
            .finish_non_exhaustive()
    }
}
