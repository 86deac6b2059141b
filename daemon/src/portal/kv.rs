//! One of the portal's keyspaces in the shared store ([`SharedStore`]):
//! the node's sled on a single appliance, PostgreSQL in a cluster, so a
//! message stored through one node is read through any other.
//!
//! The calls are those of a sled tree (the portal was written against
//! sled), with the shared store's error; scans read in pages and answer
//! every pair at once.
//!
//! Trusts: nothing; keys and values are the portal's own.

use std::sync::Arc;

use crate::store::{Pair, SharedStore, Space, StoreError, prefix_end};

/// Pairs read per round trip in a scan.
const PAGE: usize = 500;

/// One keyspace of the portal.
#[derive(Clone)]
pub struct Kv {
    store: Arc<dyn SharedStore>,
    space: Space,
}

impl Kv {
    pub fn new(store: Arc<dyn SharedStore>, space: Space) -> Kv {
        Kv { store, space }
    }

    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.get(self.space, key.as_ref())
    }

    pub fn insert(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<(), StoreError> {
        self.store.put(self.space, key.as_ref(), value.as_ref())
    }

    pub fn remove(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.remove(self.space, key.as_ref())
    }

    /// Sets `key` to `new` only if its value is still `old`; `Ok(false)`
    /// when another writer came first (nothing written).
    pub fn compare_and_swap(
        &self,
        key: impl AsRef<[u8]>,
        old: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, StoreError> {
        self.store
            .compare_and_swap(self.space, key.as_ref(), old, new)
    }

    /// Every pair whose key starts with `prefix`, in key order.
    pub fn scan_prefix(
        &self,
        prefix: impl AsRef<[u8]>,
    ) -> Result<impl Iterator<Item = Result<Pair, StoreError>>, StoreError> {
        let prefix = prefix.as_ref();
        let end = prefix_end(prefix);
        let mut out = Vec::new();
        let mut start = prefix.to_vec();
        loop {
            let page = self
                .store
                .range(self.space, &start, end.as_deref(), false, PAGE)?;
            let full = page.len() == PAGE;
            if let Some((last, _)) = page.last() {
                start = last.clone();
                start.push(0);
            }
            out.extend(page);
            if !full {
                break;
            }
        }
        Ok(out.into_iter().map(Ok))
    }

    /// Every pair, in key order.
    pub fn iter(&self) -> Result<impl Iterator<Item = Result<Pair, StoreError>>, StoreError> {
        self.scan_prefix(b"")
    }

    /// Makes what was written durable (sled: one flush of the node's
    /// database; PostgreSQL: every write is committed already).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.store.flush()
    }
}
