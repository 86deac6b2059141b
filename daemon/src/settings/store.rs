//! Settings versions in the shared store: version number (u64, big-endian)
//! → the version's record (JSON: who, when, why, and the whole settings).
//!
//! Versions are never changed or removed. A new version takes the next
//! number with a compare-and-swap on its key, so two writers never both
//! get one number; a writer whose base is no longer the current version
//! gets [`CommitError::Conflict`].
//!
//! Trusts: the shared store; every settings tree stored here was checked
//! (`config::check_settings`) by the caller before.

use std::sync::Arc;

use sealgate_api::Actor;
use sealgate_api::ops::settings::{SettingsVersion, VersionMeta};
use sealgate_api::settings::Settings;
use serde::{Deserialize, Serialize};

use crate::store::{SharedStore, Space, StoreError};

/// Why a version was not stored.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The change was made from `expected`, but `current` is in force now.
    #[error("the settings changed meanwhile (edited {expected}, current {current})")]
    Conflict { expected: u64, current: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Serialize, Deserialize)]
struct Record {
    meta: VersionMeta,
    settings: Settings,
}

/// The settings versions.
#[derive(Clone)]
pub struct SettingsStore {
    shared: Arc<dyn SharedStore>,
}

fn key(version: u64) -> [u8; 8] {
    version.to_be_bytes()
}

fn decode(value: &[u8]) -> Result<SettingsVersion, StoreError> {
    let record: Record = serde_json::from_slice(value)
        .map_err(|e| StoreError::Unavailable(format!("a settings version does not decode: {e}")))?;
    Ok(SettingsVersion {
        meta: record.meta,
        settings: record.settings,
    })
}

impl SettingsStore {
    pub fn new(shared: Arc<dyn SharedStore>) -> SettingsStore {
        SettingsStore { shared }
    }

    /// The shared store the versions live in (for change notifications).
    pub fn shared(&self) -> &Arc<dyn SharedStore> {
        &self.shared
    }

    /// The newest version, if any was ever stored.
    pub fn current(&self) -> Result<Option<SettingsVersion>, StoreError> {
        match self.shared.last(Space::Settings)? {
            Some((_, value)) => decode(&value).map(Some),
            None => Ok(None),
        }
    }

    /// Version `version`, if it exists.
    pub fn get(&self, version: u64) -> Result<Option<SettingsVersion>, StoreError> {
        match self.shared.get(Space::Settings, &key(version))? {
            Some(value) => decode(&value).map(Some),
            None => Ok(None),
        }
    }

    /// Who made the newest `limit` versions, newest first.
    pub fn history(&self, limit: usize) -> Result<Vec<VersionMeta>, StoreError> {
        self.shared
            .range(Space::Settings, &[], None, true, limit)?
            .into_iter()
            .map(|(_, value)| decode(&value).map(|v| v.meta))
            .collect()
    }

    /// Stores `settings` as the next version, made by `author` from
    /// version `base` (`None`: whatever is current). `restores` names the
    /// version a rollback brings back.
    pub fn commit(
        &self,
        base: Option<u64>,
        settings: Settings,
        author: &Actor,
        comment: Option<String>,
        restores: Option<u64>,
    ) -> Result<VersionMeta, CommitError> {
        let current = self.current()?.map_or(0, |v| v.meta.version);
        if let Some(base) = base
            && base != current
        {
            return Err(CommitError::Conflict {
                expected: base,
                current,
            });
        }
        let version = current + 1;
        let meta = VersionMeta {
            version,
            author: author.name.clone(),
            role: author.role,
            via: author.via,
            time_ms: crate::envelope::now_ms(),
            comment: comment.filter(|c| !c.trim().is_empty()),
            restores,
        };
        let record = serde_json::to_vec(&Record {
            meta: meta.clone(),
            settings,
        })
        .map_err(|e| StoreError::Unavailable(format!("settings not encodable: {e}")))?;
        if !self
            .shared
            .compare_and_swap(Space::Settings, &key(version), None, Some(&record))?
        {
            // Another writer took this number first.
            return Err(CommitError::Conflict {
                expected: base.unwrap_or(current),
                current: version,
            });
        }
        self.shared.flush()?;
        Ok(meta)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn store() -> SettingsStore {
        let dir = std::env::temp_dir().join(format!(
            "sealgate-settings-{}",
            crate::util::new_session_id()
        ));
        let db = crate::db::Db::open(&dir).unwrap();
        SettingsStore::new(Arc::new(crate::store::SledStore::new(&db)))
    }

    #[test]
    fn versions_count_up_and_a_stale_base_conflicts() {
        let s = store();
        assert!(s.current().unwrap().is_none());
        let root = Actor::local_root();
        let v1 = s
            .commit(None, Settings::default(), &root, None, None)
            .unwrap();
        assert_eq!(v1.version, 1);
        let changed = Settings {
            hostname: "gw.example".into(),
            ..Settings::default()
        };
        let v2 = s
            .commit(Some(1), changed.clone(), &root, Some("rename".into()), None)
            .unwrap();
        assert_eq!(v2.version, 2);
        // A second writer that also started from version 1 loses, whole.
        let err = s
            .commit(Some(1), Settings::default(), &root, None, None)
            .unwrap_err();
        assert!(matches!(
            err,
            CommitError::Conflict {
                expected: 1,
                current: 2
            }
        ));
        assert_eq!(s.current().unwrap().unwrap().settings, changed);
        assert_eq!(s.get(1).unwrap().unwrap().settings, Settings::default());
        let history = s.history(10).unwrap();
        assert_eq!(
            history.iter().map(|m| m.version).collect::<Vec<_>>(),
            [2, 1]
        );
        assert_eq!(history[0].comment.as_deref(), Some("rename"));
    }
}
