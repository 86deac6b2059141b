//! Shared state: what every node of a cluster must see the same, behind
//! one small interface.
//!
//! The settings versions, the audit log, the key directory, invitation
//! claims and (with the web UI) accounts and sessions are kept through
//! [`SharedStore`]: ordered key/value spaces with compare-and-swap, range
//! scans and change notification. A single appliance keeps them in its
//! own sled database ([`SledStore`], the embedded default); a cluster
//! keeps them in PostgreSQL, behind the same trait. The queue and
//! tracking never go through here: they stay on each node's disk
//! (`db::Db`), so mail never depends on the network to be durable.
//!
//! Calls block (sled is synchronous; so is the pipeline that reads the
//! directory); async callers use `spawn_blocking` or `block_in_place`.
//!
//! Trusts: the data directory (and, for a cluster, the database server).

use std::collections::HashMap;
use std::sync::Mutex;

/// A keyspace of the shared store. Each is one sled tree (same name) on a
/// single node, one key range of a table in a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Space {
    /// Settings versions: version (u64, big-endian) → record (JSON).
    Settings,
    /// The audit log: sequence (u64, big-endian) → record (JSON).
    Audit,
    /// Key directory entries: fingerprint → entry (JSON).
    Directory,
    /// Key directory index: `address-or-@domain` NUL fingerprint → empty.
    DirectoryIndex,
    /// Invitation claims: held recipient address → last invited (ms, u64 BE).
    Invitations,
    /// Web and CLI accounts: name → account (JSON).
    Accounts,
    /// Web sessions: id → session (JSON).
    Sessions,
    /// Key changes waiting for review: `address/fingerprint` → pending (JSON).
    Reviews,
    /// Cluster members: node name → its last heartbeat (JSON).
    Nodes,
    /// Facts about the cluster itself: `ca` → the cluster CA certificate (PEM).
    Cluster,
    /// The setup wizard's draft: `draft` → draft (JSON).
    Setup,
    /// Portal accounts: address → account (JSON; password and TOTP
    /// secret as the admin accounts keep theirs).
    PortalAccounts,
    /// Portal one-time codes and reset links, by hash.
    PortalCodes,
    /// Portal sessions and TOTP enrolments, by hash.
    PortalSessions,
    /// The portal's index: `recipient` NUL `id` → entry (JSON; the data
    /// key wrapped by the token, the sealed summary).
    PortalIndex,
    /// Sealed portal messages: id → AES-256-GCM ciphertext.
    PortalData,
    /// Portal accounts' own folders: `recipient` NUL name → empty.
    PortalFolders,
    /// Push messages' records: `recipient` NUL `id` → record (JSON; the
    /// wrapped key, no message).
    PortalPush,
}

impl Space {
    pub const ALL: [Space; 18] = [
        Space::Settings,
        Space::Audit,
        Space::Directory,
        Space::DirectoryIndex,
        Space::Invitations,
        Space::Accounts,
        Space::Sessions,
        Space::Reviews,
        Space::Nodes,
        Space::Cluster,
        Space::Setup,
        Space::PortalAccounts,
        Space::PortalCodes,
        Space::PortalSessions,
        Space::PortalIndex,
        Space::PortalData,
        Space::PortalFolders,
        Space::PortalPush,
    ];

    /// The name: the sled tree on a single node (the existing trees keep
    /// their names), the key-range prefix in a cluster.
    pub fn name(self) -> &'static str {
        match self {
            Space::Settings => "settings",
            Space::Audit => "audit",
            Space::Directory => "directory",
            Space::DirectoryIndex => "directory_index",
            Space::Invitations => "invitations",
            Space::Accounts => "accounts",
            Space::Sessions => "sessions",
            Space::Reviews => "key_reviews",
            Space::Nodes => "nodes",
            Space::Cluster => "cluster",
            Space::Setup => "setup",
            Space::PortalAccounts => "portal_accounts",
            Space::PortalCodes => "portal_codes",
            Space::PortalSessions => "portal_sessions",
            Space::PortalIndex => "portal_index",
            Space::PortalData => "portal_data",
            Space::PortalFolders => "portal_folders",
            Space::PortalPush => "portal_push",
        }
    }
}

/// Why the shared store did not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or written now (a full disk, the
    /// cluster database down): try again later.
    #[error("shared state unavailable: {0}")]
    Unavailable(String),
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

impl From<StoreError> for sealgate_api::ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(what) => sealgate_api::ServiceError::Unavailable { what },
        }
    }
}

/// One key and its value.
pub type Pair = (Vec<u8>, Vec<u8>);
/// Key/value pairs as a scan returns them.
pub type Pairs = Vec<Pair>;

/// The shared store.
pub trait SharedStore: Send + Sync + 'static {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    fn put(&self, space: Space, key: &[u8], value: &[u8]) -> Result<(), StoreError>;

    /// Removes `key`; returns the value it had.
    fn remove(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Sets `key` to `new` (or removes it, `None`) only if its value is
    /// `old` (`None`: absent). `Ok(false)` when it was not: another writer
    /// came first, nothing was written.
    fn compare_and_swap(
        &self,
        space: Space,
        key: &[u8],
        old: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, StoreError>;

    /// Pairs with `start <= key < end` (`end` `None`: to the last key), in
    /// key order or reversed, at most `limit`.
    fn range(
        &self,
        space: Space,
        start: &[u8],
        end: Option<&[u8]>,
        reverse: bool,
        limit: usize,
    ) -> Result<Pairs, StoreError>;

    /// Pairs whose key starts with `prefix`, in key order, at most `limit`.
    fn scan_prefix(&self, space: Space, prefix: &[u8], limit: usize) -> Result<Pairs, StoreError> {
        match prefix_end(prefix) {
            Some(end) => self.range(space, prefix, Some(&end), false, limit),
            None => self.range(space, prefix, None, false, limit),
        }
    }

    /// The last pair of `space` in key order, if any.
    fn last(&self, space: Space) -> Result<Option<Pair>, StoreError> {
        Ok(self.range(space, &[], None, true, 1)?.into_iter().next())
    }

    /// Makes everything written so far durable.
    fn flush(&self) -> Result<(), StoreError>;

    /// A receiver that changes whenever `space` changes (on any node of a
    /// cluster): settings are applied live from it.
    fn subscribe(&self, space: Space) -> tokio::sync::watch::Receiver<u64>;
}

/// The smallest key greater than every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The shared store of a single node: sled trees in its data directory.
pub struct SledStore {
    db: crate::db::Db,
    changes: Mutex<HashMap<Space, tokio::sync::watch::Sender<u64>>>,
}

impl SledStore {
    pub fn new(db: &crate::db::Db) -> SledStore {
        SledStore {
            db: db.clone(),
            changes: Mutex::new(HashMap::new()),
        }
    }

    fn tree(&self, space: Space) -> crate::db::Tree {
        self.db.tree(space.name())
    }

    fn changed(&self, space: Space) {
        let changes = self
            .changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(tx) = changes.get(&space) {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

impl SharedStore for SledStore {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree(space).get(key)?.map(|v| v.to_vec()))
    }

    fn put(&self, space: Space, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.tree(space).insert(key, value)?;
        self.changed(space);
        Ok(())
    }

    fn remove(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let old = self.tree(space).remove(key)?.map(|v| v.to_vec());
        self.changed(space);
        Ok(old)
    }

    fn compare_and_swap(
        &self,
        space: Space,
        key: &[u8],
        old: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, StoreError> {
        let swapped = self.tree(space).compare_and_swap(key, old, new)?.is_ok();
        if swapped {
            self.changed(space);
        }
        Ok(swapped)
    }

    fn range(
        &self,
        space: Space,
        start: &[u8],
        end: Option<&[u8]>,
        reverse: bool,
        limit: usize,
    ) -> Result<Pairs, StoreError> {
        let tree = self.tree(space);
        let iter = match end {
            Some(end) => tree.range(start..end)?,
            None => tree.range(start..)?,
        };
        let mut out = Vec::new();
        // Stop at the first error: sled may return it again without moving on.
        if reverse {
            for item in iter.rev() {
                let (k, v) = item?;
                out.push((k.to_vec(), v.to_vec()));
                if out.len() >= limit {
                    break;
                }
            }
        } else {
            for item in iter {
                let (k, v) = item?;
                out.push((k.to_vec(), v.to_vec()));
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(self.db.flush()?)
    }

    fn subscribe(&self, space: Space) -> tokio::sync::watch::Receiver<u64> {
        let mut changes = self
            .changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        changes
            .entry(space)
            .or_insert_with(|| tokio::sync::watch::channel(0).0)
            .subscribe()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn store() -> SledStore {
        let dir =
            std::env::temp_dir().join(format!("sealgate-store-{}", crate::util::new_session_id()));
        SledStore::new(&crate::db::Db::open(&dir).unwrap())
    }

    #[test]
    fn ranges_prefixes_and_compare_and_swap() {
        let s = store();
        for k in [b"a1", b"a2", b"b1"] {
            s.put(Space::Audit, k, k).unwrap();
        }
        let keys = |pairs: Pairs| pairs.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(
            keys(s.scan_prefix(Space::Audit, b"a", 10).unwrap()),
            [b"a1".to_vec(), b"a2".to_vec()]
        );
        assert_eq!(
            keys(s.range(Space::Audit, b"", None, true, 2).unwrap()),
            [b"b1".to_vec(), b"a2".to_vec()]
        );
        assert_eq!(s.last(Space::Audit).unwrap().unwrap().0, b"b1");
        assert!(
            s.get(Space::Settings, b"a1").unwrap().is_none(),
            "spaces are separate"
        );
        let mut rx = s.subscribe(Space::Settings);
        assert!(
            s.compare_and_swap(Space::Settings, b"v", None, Some(b"1"))
                .unwrap()
        );
        assert!(
            !s.compare_and_swap(Space::Settings, b"v", None, Some(b"2"))
                .unwrap()
        );
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        assert!(
            s.compare_and_swap(Space::Settings, b"v", Some(b"1"), Some(b"2"))
                .unwrap()
        );
        assert_eq!(s.get(Space::Settings, b"v").unwrap().unwrap(), b"2");
        assert!(rx.has_changed().unwrap());
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff"), None);
    }
}
