//! The node's sled database, as one handle that outlives a storage failure.
//!
//! sled 0.34 makes an I/O error sticky: after one `ENOSPC` (or `EIO`) every
//! later write of that open database fails with the same error, even once
//! the disk has room again, and only a new `open` clears it. So nothing in
//! the daemon holds a `sled::Db` or `sled::Tree` for long: modules keep a
//! [`Tree`] (a name and this handle), each operation borrows the current
//! sled tree, and an I/O error marks the database failed. [`Db::recover`]
//! (a task of the daemon) then reopens it as soon as there is room, without
//! a restart; meanwhile operations fail fast with a temporary error, which
//! the queue survives because the spool files are the truth (DESIGN.md:
//! sled is the index, not the only copy).
//!
//! Iteration errors end the iteration: sled's iterator may return the same
//! error again without advancing, so callers collect into `Result` and stop
//! at the first error, never skip it.
//!
//! Trusts: the data directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use sled::IVec;

/// Free space the database needs before it is reopened after a failure.
pub const REOPEN_RESERVE: u64 = 32 * 1024 * 1024;

/// Shared handle to the node's database.
#[derive(Clone)]
pub struct Db {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    /// `None` while the database is closed for reopening.
    current: RwLock<Option<Generation>>,
    failed: AtomicBool,
    wake: tokio::sync::Notify,
    /// The error that failed the database, for `status` and the log.
    cause: Mutex<Option<String>>,
}

/// One open of the database and the trees opened in it.
struct Generation {
    db: sled::Db,
    trees: Mutex<HashMap<&'static str, sled::Tree>>,
}

/// Where the database stands, for status pages.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Health {
    pub failed: bool,
    /// Why it failed (the first I/O error), while it has not been reopened.
    pub cause: Option<String>,
}

impl Db {
    /// Opens (creating) the database at `path`, mode 0700.
    pub fn open(path: &Path) -> std::io::Result<Db> {
        let db = open_sled(path)?;
        Ok(Db {
            shared: Arc::new(Shared {
                path: path.to_path_buf(),
                current: RwLock::new(Some(Generation {
                    db,
                    trees: Mutex::new(HashMap::new()),
                })),
                failed: AtomicBool::new(false),
                wake: tokio::sync::Notify::new(),
                cause: Mutex::new(None),
            }),
        })
    }

    /// A handle to the tree `name` (opened on first use in each generation).
    pub fn tree(&self, name: &'static str) -> Tree {
        Tree {
            db: self.clone(),
            name,
        }
    }

    /// Whether the database failed and waits to be reopened.
    pub fn health(&self) -> Health {
        Health {
            failed: self.shared.failed.load(Ordering::SeqCst),
            cause: lock(&self.shared.cause).clone(),
        }
    }

    /// A unique, increasing id (sled's counter), for keys that must not collide.
    pub fn generate_id(&self) -> sled::Result<u64> {
        self.with_db(|db| db.generate_id())
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> sled::Result<()> {
        self.with_db(|db| db.flush().map(|_| ()))
    }

    fn with_db<T>(&self, f: impl FnOnce(&sled::Db) -> sled::Result<T>) -> sled::Result<T> {
        let result = {
            let current = read(&self.shared.current);
            match current.as_ref() {
                Some(generation) => f(&generation.db),
                None => Err(reopening()),
            }
        };
        self.observe(result)
    }

    fn sled_tree(&self, name: &'static str) -> sled::Result<sled::Tree> {
        let result = {
            let current = read(&self.shared.current);
            match current.as_ref() {
                Some(generation) => {
                    let mut trees = lock(&generation.trees);
                    match trees.get(name) {
                        Some(tree) => Ok(tree.clone()),
                        None => generation.db.open_tree(name).inspect(|tree| {
                            trees.insert(name, tree.clone());
                        }),
                    }
                }
                None => Err(reopening()),
            }
        };
        self.observe(result)
    }

    /// Notes an I/O error: the database is failed from now on (sled keeps
    /// failing it) until [`Db::recover`] reopens it.
    fn observe<T>(&self, result: sled::Result<T>) -> sled::Result<T> {
        if let Err(sled::Error::Io(e)) = &result
            && !self.shared.failed.swap(true, Ordering::SeqCst)
        {
            tracing::error!(
                error = %e,
                "the state store failed; new mail is still made durable in the spool, \
                 and the store is reopened as soon as the disk has room again"
            );
            *lock(&self.shared.cause) = Some(e.to_string());
            self.shared.wake.notify_one();
        }
        result
    }

    /// Reopens the database after each failure, once the file system has
    /// [`REOPEN_RESERVE`] free; `after` runs after every reopen (the queue
    /// drops entries whose writes were lost). Runs until the daemon stops.
    pub async fn recover(self, after: impl Fn() + Send + 'static) {
        loop {
            self.shared.wake.notified().await;
            while self.shared.failed.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if !has_room(&self.shared.path, REOPEN_RESERVE) {
                    continue;
                }
                let this = self.clone();
                let reopened = tokio::task::spawn_blocking(move || this.reopen()).await;
                match reopened {
                    Ok(Ok(())) => {
                        tracing::info!("the state store was reopened; it works again");
                        after();
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "the state store could not be reopened yet")
                    }
                    Err(e) => tracing::warn!(error = %e, "reopening the state store stopped"),
                }
            }
        }
    }

    /// Closes the failed generation and opens a new one. Operations that
    /// start meanwhile fail with a temporary error.
    fn reopen(&self) -> std::io::Result<()> {
        let mut current = write(&self.shared.current);
        // Dropping the last handles closes the old database and, once
        // sled's flusher thread has let go of it too, its file lock.
        *current = None;
        let mut tries = 0;
        let db = loop {
            match open_sled(&self.shared.path) {
                Ok(db) => break db,
                Err(e) if tries >= 50 => return Err(e),
                Err(_) => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        };
        *current = Some(Generation {
            db,
            trees: Mutex::new(HashMap::new()),
        });
        *lock(&self.shared.cause) = None;
        self.shared.failed.store(false, Ordering::SeqCst);
        Ok(())
    }
}

/// One named tree of the database, valid across reopens.
#[derive(Clone)]
pub struct Tree {
    db: Db,
    name: &'static str,
}

impl Tree {
    fn with<T>(&self, f: impl FnOnce(&sled::Tree) -> sled::Result<T>) -> sled::Result<T> {
        let tree = self.db.sled_tree(self.name)?;
        self.db.observe(f(&tree))
    }

    pub fn get(&self, key: impl AsRef<[u8]>) -> sled::Result<Option<IVec>> {
        self.with(|t| t.get(key))
    }

    pub fn insert(&self, key: impl AsRef<[u8]>, value: impl Into<IVec>) -> sled::Result<()> {
        self.with(|t| t.insert(key, value).map(|_| ()))
    }

    pub fn remove(&self, key: impl AsRef<[u8]>) -> sled::Result<Option<IVec>> {
        self.with(|t| t.remove(key))
    }

    /// sled's compare-and-swap: `Ok(Err(_))` when the current value was not `old`.
    pub fn compare_and_swap(
        &self,
        key: impl AsRef<[u8]>,
        old: Option<impl AsRef<[u8]>>,
        new: Option<impl Into<IVec>>,
    ) -> sled::Result<Result<(), sled::CompareAndSwapError>> {
        self.with(|t| t.compare_and_swap(key, old, new))
    }

    pub fn flush(&self) -> sled::Result<()> {
        self.with(|t| t.flush().map(|_| ()))
    }

    pub fn len(&self) -> sled::Result<usize> {
        self.with(|t| Ok(t.len()))
    }

    pub fn is_empty(&self) -> sled::Result<bool> {
        self.with(|t| Ok(t.is_empty()))
    }

    /// Every pair in key order; an error (also reported to the database)
    /// should end the caller's loop.
    pub fn iter(&self) -> sled::Result<Iter> {
        let tree = self.db.sled_tree(self.name)?;
        Ok(Iter {
            inner: tree.iter(),
            db: self.db.clone(),
        })
    }

    /// Pairs with keys in `range`, in key order.
    pub fn range<K: AsRef<[u8]>, R: std::ops::RangeBounds<K>>(
        &self,
        range: R,
    ) -> sled::Result<Iter> {
        let tree = self.db.sled_tree(self.name)?;
        Ok(Iter {
            inner: tree.range(range),
            db: self.db.clone(),
        })
    }

    /// Pairs whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> sled::Result<Iter> {
        let tree = self.db.sled_tree(self.name)?;
        Ok(Iter {
            inner: tree.scan_prefix(prefix),
            db: self.db.clone(),
        })
    }
}

/// An iterator over a tree that reports storage errors to the database.
pub struct Iter {
    inner: sled::Iter,
    db: Db,
}

impl Iterator for Iter {
    type Item = sled::Result<(IVec, IVec)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next().map(|item| self.db.observe(item))
    }
}

impl DoubleEndedIterator for Iter {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.inner.next_back().map(|item| self.db.observe(item))
    }
}

fn open_sled(path: &Path) -> std::io::Result<sled::Db> {
    std::fs::create_dir_all(path)?;
    restrict(path);
    sled::Config::new()
        .path(path)
        .flush_every_ms(Some(200))
        .open()
        .map_err(|e| {
            std::io::Error::other(format!(
                "{}: {e} (is another sealgate using this data directory?)",
                path.display()
            ))
        })
}

/// The database holds message metadata and the key directory: only the
/// daemon's user may read it (older data directories were made 0755).
fn restrict(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)) {
        tracing::warn!(path = %path.display(), error = %e, "cannot make the state store private");
    }
}

/// Whether the file system holding `path` has `bytes` free for us.
pub fn has_room(path: &Path, bytes: u64) -> bool {
    match nix::sys::statvfs::statvfs(path) {
        Ok(stat) => stat.blocks_available().saturating_mul(stat.fragment_size()) >= bytes,
        Err(_) => false,
    }
}

fn reopening() -> sled::Error {
    sled::Error::Io(std::io::Error::other(
        "the state store is being reopened after a storage failure",
    ))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn trees_survive_a_reopen() {
        let dir =
            std::env::temp_dir().join(format!("sealgate-db-{}", crate::util::new_session_id()));
        let db = Db::open(&dir.join("db")).unwrap();
        let tree = db.tree("t");
        tree.insert(b"a", &b"1"[..]).unwrap();
        db.flush().unwrap();
        db.reopen().unwrap();
        assert_eq!(tree.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(tree.iter().unwrap().count(), 1);
        let mode = std::fs::metadata(dir.join("db")).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o077, 0);
        let _ = std::fs::remove_dir_all(dir);
    }
}
