//! The portal's message store: sealed messages in the shared store
//! ([`super::kv`]: the node's sled, or the cluster's PostgreSQL), indexed
//! by recipient.
//!
//! - `portal_index`: `<recipient>\0<id>` → [`IndexEntry`] (JSON): the
//!   wrapped data key, times, size, and the sealed summary (sender,
//!   subject, attachment names). The key begins with the recipient's
//!   address, so a message is found only under the address it was stored
//!   for: a lookup with another session's address finds nothing.
//! - `portal_data`: `<id>` → the sealed message (nonce, ciphertext, tag).
//! - `portal_folders`: `<recipient>\0<name>` → the account's own folders
//!   ([`mailbox`]: folders, move, trash).
//!
//! Nothing in either tree is readable without the token (ids, times,
//! sizes and folders aside). Deleting from Trash or expiring removes the
//! index entry, and with it the only copy of the wrapped key, then the
//! sealed data.
//!
//! Trusts: the data directory for availability only; every sealed part is
//! authenticated when it opens.

mod mailbox;

use std::collections::HashMap;
use std::time::{Duration, Instant};

pub use mailbox::Discarded;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::PortalError;
use super::folders::Folder;
use super::kv::Kv;
use super::seal::{self, WrapperSource};
use crate::store::{SharedStore, Space, StoreError};

/// One stored message in the index.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexEntry {
    pub id: String,
    pub recipient: String,
    pub stored_ms: u64,
    pub expires_ms: u64,
    pub size: u64,
    pub attachments: usize,
    pub read: bool,
    /// The data key wrapped by the token (base64).
    pub wrapped_key: String,
    /// The sealed [`Summary`] (base64).
    pub summary: String,
    /// The queue id the message arrived under (for tracking).
    pub queue_id: String,
    /// The folder it is in ([`super::folders::Folder`]); entries stored
    /// before folders existed are in the inbox.
    #[serde(default = "inbox")]
    pub folder: String,
}

fn inbox() -> String {
    "inbox".to_owned()
}

/// What the inbox shows of a message: sealed like the message.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    pub from: String,
    /// The envelope sender (replies go there).
    pub sender: String,
    pub subject: String,
    pub message_id: Option<String>,
}

/// A message to store for one recipient.
#[derive(Clone, Copy)]
pub struct Incoming<'a> {
    pub recipient: &'a str,
    /// The queue id it arrived under (for tracking).
    pub queue_id: &'a str,
    pub summary: &'a Summary,
    pub attachments: usize,
    /// The whole message.
    pub content: &'a [u8],
}

/// A message opened from the store.
pub struct Opened {
    pub entry: IndexEntry,
    pub summary: Summary,
    pub content: Zeroizing<Vec<u8>>,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// The portal's sealed messages.
#[derive(Clone)]
pub struct MessageStore {
    index: Kv,
    data: Kv,
    folders: Kv,
    wrappers: std::sync::Arc<dyn WrapperSource>,
    /// Recent usage per recipient (see [`MessageStore::usage`]).
    usage: std::sync::Arc<std::sync::Mutex<HashMap<String, (u64, Instant)>>>,
}

/// How long a counted usage stands in for a count (messages stored by
/// this node are added to it; a deletion drops it).
const USAGE_FRESH: Duration = Duration::from_secs(30);
/// Recipients whose usage is kept at most (then the memory starts over).
const USAGE_MAX: usize = 10_000;

fn index_key(recipient: &str, id: &str) -> Vec<u8> {
    format!("{}\0{id}", recipient.to_ascii_lowercase()).into_bytes()
}

/// A fresh message id: 128 random bits, hex.
pub fn new_id() -> Result<String, PortalError> {
    Ok(seal::random::<16>()?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Whether `id` has the shape of a message id (checked before any lookup).
pub fn valid_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

impl MessageStore {
    pub fn open(
        shared: &std::sync::Arc<dyn SharedStore>,
        wrappers: std::sync::Arc<dyn WrapperSource>,
    ) -> MessageStore {
        MessageStore {
            index: Kv::new(shared.clone(), Space::PortalIndex),
            data: Kv::new(shared.clone(), Space::PortalData),
            folders: Kv::new(shared.clone(), Space::PortalFolders),
            wrappers,
            usage: Default::default(),
        }
    }

    fn usage_memory(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, Instant)>> {
        self.usage
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Bytes of messages stored for `recipient` (what counts against the
    /// quota). Counted from the index entries at most every 30 s per
    /// recipient; in between, this node's count plus what it stored since
    /// (a deletion here drops the count). Another node's stores and
    /// deletions show at the next count.
    pub fn usage(&self, recipient: &str) -> Result<u64, PortalError> {
        let recipient = recipient.to_ascii_lowercase();
        let now = Instant::now();
        if let Some((used, at)) = self.usage_memory().get(&recipient)
            && now.duration_since(*at) < USAGE_FRESH
        {
            return Ok(*used);
        }
        let used = self.count_usage(&recipient)?;
        let mut memory = self.usage_memory();
        if memory.len() >= USAGE_MAX {
            memory.clear();
        }
        memory.insert(recipient, (used, now));
        Ok(used)
    }

    /// A stored message counts at once for its recipient's known usage.
    fn add_usage(&self, recipient: &str, size: u64) {
        if let Some((used, _)) = self.usage_memory().get_mut(recipient) {
            *used = used.saturating_add(size);
        }
    }

    /// The recipient's usage, counted from every index entry.
    fn count_usage(&self, recipient: &str) -> Result<u64, PortalError> {
        /// An index entry's size alone: checked on every delivery, so the
        /// rest of each entry (keys, sealed summary) is skipped, not copied.
        #[derive(serde::Deserialize)]
        struct Size {
            size: u64,
        }
        let mut prefix = recipient.as_bytes().to_vec();
        prefix.push(0);
        let mut used = 0u64;
        for item in self.index.scan_prefix(prefix).map_err(storage)? {
            let (_, value) = item.map_err(storage)?;
            if let Ok(entry) = serde_json::from_slice::<Size>(&value) {
                used = used.saturating_add(entry.size);
            }
        }
        Ok(used)
    }

    /// Seals and stores `content` for `recipient`; answers the new id.
    /// Blocking (the token wraps the key). Not flushed: a delivery from
    /// the queue, whose spool file stays until the next flush has made
    /// this durable ([`crate::queue::reaper`]).
    pub fn store(
        &self,
        incoming: &Incoming<'_>,
        now_ms: u64,
        retention_days: u32,
    ) -> Result<IndexEntry, PortalError> {
        self.seal_and_put(incoming, &Folder::Inbox, now_ms, retention_days)
    }

    /// [`MessageStore::store`] into `folder` (Sent, for the copy of a
    /// reply), durable when it answers.
    pub fn store_in(
        &self,
        incoming: &Incoming<'_>,
        folder: &Folder,
        now_ms: u64,
        retention_days: u32,
    ) -> Result<IndexEntry, PortalError> {
        let entry = self.seal_and_put(incoming, folder, now_ms, retention_days)?;
        // One flush makes data and index durable (one database).
        self.index.flush().map_err(storage)?;
        Ok(entry)
    }

    fn seal_and_put(
        &self,
        incoming: &Incoming<'_>,
        folder: &Folder,
        now_ms: u64,
        retention_days: u32,
    ) -> Result<IndexEntry, PortalError> {
        let Incoming {
            recipient,
            queue_id,
            summary,
            attachments,
            content,
        } = *incoming;
        let id = new_id()?;
        let key = seal::new_data_key()?;
        let wrapped = seal::wrap(&*self.wrappers, &key, &seal::context("key", recipient, &id))?;
        let body = seal::seal(&key, &seal::context("body", recipient, &id), content)?;
        let summary_json = Zeroizing::new(
            serde_json::to_vec(summary).map_err(|e| PortalError::Storage(e.to_string()))?,
        );
        let sealed_summary = seal::seal(
            &key,
            &seal::context("summary", recipient, &id),
            &summary_json,
        )?;
        use base64::Engine as _;
        let entry = IndexEntry {
            id: id.clone(),
            recipient: recipient.to_ascii_lowercase(),
            stored_ms: now_ms,
            expires_ms: now_ms.saturating_add(u64::from(retention_days) * 24 * 3600 * 1000),
            size: content.len() as u64,
            attachments,
            // A copy of what the recipient sent is not news to them.
            read: *folder == Folder::Sent,
            wrapped_key: b64().encode(&wrapped),
            summary: b64().encode(&sealed_summary),
            queue_id: queue_id.to_owned(),
            folder: folder.as_str().to_owned(),
        };
        self.data.insert(id.as_bytes(), body).map_err(storage)?;
        self.put(&entry)?;
        self.add_usage(&entry.recipient, entry.size);
        Ok(entry)
    }

    fn put(&self, entry: &IndexEntry) -> Result<(), PortalError> {
        let json = serde_json::to_vec(entry).map_err(|e| PortalError::Storage(e.to_string()))?;
        self.index
            .insert(index_key(&entry.recipient, &entry.id), json)
            .map_err(storage)
    }

    /// The index entry of `recipient`'s message `id`.
    pub fn entry(&self, recipient: &str, id: &str) -> Result<IndexEntry, PortalError> {
        if !valid_id(id) {
            return Err(PortalError::NotFound);
        }
        let bytes = self
            .index
            .get(index_key(recipient, id))
            .map_err(storage)?
            .ok_or(PortalError::NotFound)?;
        serde_json::from_slice(&bytes).map_err(|_| PortalError::Damaged)
    }

    /// `recipient`'s messages (index only).
    pub fn entries(&self, recipient: &str) -> Result<Vec<IndexEntry>, PortalError> {
        let mut prefix = recipient.to_ascii_lowercase().into_bytes();
        prefix.push(0);
        let mut out = Vec::new();
        for item in self.index.scan_prefix(prefix).map_err(storage)? {
            let (_, value) = item.map_err(storage)?;
            if let Ok(entry) = serde_json::from_slice::<IndexEntry>(&value) {
                out.push(entry);
            }
        }
        Ok(out)
    }

    fn data_key(&self, entry: &IndexEntry) -> Result<Zeroizing<[u8; 32]>, PortalError> {
        use base64::Engine as _;
        let wrapped = b64()
            .decode(&entry.wrapped_key)
            .map_err(|_| PortalError::Damaged)?;
        seal::unwrap(
            &*self.wrappers,
            &wrapped,
            &seal::context("key", &entry.recipient, &entry.id),
        )
    }

    /// The summary of one entry (unwraps its key on the token).
    pub fn summary(&self, entry: &IndexEntry) -> Result<Summary, PortalError> {
        let key = self.data_key(entry)?;
        self.summary_with(&key, entry)
    }

    fn summary_with(&self, key: &[u8; 32], entry: &IndexEntry) -> Result<Summary, PortalError> {
        use base64::Engine as _;
        let sealed = b64()
            .decode(&entry.summary)
            .map_err(|_| PortalError::Damaged)?;
        let json = seal::open(
            key,
            &seal::context("summary", &entry.recipient, &entry.id),
            &sealed,
        )?;
        serde_json::from_slice(&json).map_err(|_| PortalError::Damaged)
    }

    /// Opens `recipient`'s message `id` whole.
    pub fn read(&self, recipient: &str, id: &str) -> Result<Opened, PortalError> {
        let entry = self.entry(recipient, id)?;
        let key = self.data_key(&entry)?;
        let summary = self.summary_with(&key, &entry)?;
        let sealed = self
            .data
            .get(entry.id.as_bytes())
            .map_err(storage)?
            .ok_or(PortalError::Damaged)?;
        let content = seal::open(
            &key,
            &seal::context("body", &entry.recipient, &entry.id),
            &sealed,
        )?;
        Ok(Opened {
            entry,
            summary,
            content,
        })
    }

    /// Marks a message read; answers whether this was its first opening
    /// (the entry as stored decides: of two first openings at once, only
    /// the one whose swap lands).
    pub fn mark_read(&self, entry: &IndexEntry) -> Result<bool, PortalError> {
        let k = index_key(&entry.recipient, &entry.id);
        let Some(bytes) = self.index.get(&k).map_err(storage)? else {
            return Err(PortalError::NotFound);
        };
        let mut stored: IndexEntry =
            serde_json::from_slice(&bytes).map_err(|_| PortalError::Damaged)?;
        if stored.read {
            return Ok(false);
        }
        stored.read = true;
        let json = serde_json::to_vec(&stored).map_err(|e| PortalError::Storage(e.to_string()))?;
        self.index
            .compare_and_swap(&k, Some(&bytes), Some(&json))
            .map_err(storage)
    }

    /// Deletes `recipient`'s message `id`: the wrapped key first (after
    /// that nothing opens it), then the sealed data.
    pub fn delete(&self, recipient: &str, id: &str) -> Result<IndexEntry, PortalError> {
        let entry = self.entry(recipient, id)?;
        self.usage_memory().remove(&entry.recipient);
        self.index
            .remove(index_key(&entry.recipient, &entry.id))
            .map_err(storage)?;
        self.index.flush().map_err(storage)?;
        self.data.remove(entry.id.as_bytes()).map_err(storage)?;
        Ok(entry)
    }

    /// Removes every message whose time ran out; answers what it removed.
    pub fn expire(&self, now_ms: u64) -> Result<Vec<IndexEntry>, PortalError> {
        let mut due = Vec::new();
        for item in self.index.iter().map_err(storage)? {
            let (_, value) = item.map_err(storage)?;
            if let Ok(entry) = serde_json::from_slice::<IndexEntry>(&value)
                && entry.expires_ms <= now_ms
            {
                due.push(entry);
            }
        }
        for entry in &due {
            self.delete(&entry.recipient, &entry.id)?;
        }
        Ok(due)
    }

    /// Whether anything waits for `recipient`.
    pub fn has_mail_for(&self, recipient: &str) -> Result<bool, PortalError> {
        let mut prefix = recipient.to_ascii_lowercase().into_bytes();
        prefix.push(0);
        Ok(self
            .index
            .scan_prefix(prefix)
            .map_err(storage)?
            .next()
            .is_some())
    }
}

fn storage(e: StoreError) -> PortalError {
    PortalError::Storage(e.to_string())
}

#[cfg(test)]
pub(super) mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::portal::seal::TestWrappers;

    pub(super) fn store() -> (tempfile_dir::Dir, MessageStore, Arc<TestWrappers>) {
        let dir = tempfile_dir::Dir::new();
        let db = crate::db::Db::open(&dir.0).unwrap();
        let shared: Arc<dyn SharedStore> = Arc::new(crate::store::SledStore::new(&db));
        let wrappers = Arc::new(TestWrappers([7; 32], AtomicBool::new(false)));
        (dir, MessageStore::open(&shared, wrappers.clone()), wrappers)
    }

    pub(super) mod tempfile_dir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                let n: u64 = rand::random();
                let p = std::env::temp_dir().join(format!("sealgate-portal-test-{n:x}"));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    pub(super) fn incoming<'a>(
        r: &'a str,
        q: &'a str,
        s: &'a Summary,
        content: &'a [u8],
    ) -> Incoming<'a> {
        Incoming {
            recipient: r,
            queue_id: q,
            summary: s,
            attachments: 0,
            content,
        }
    }

    pub(super) fn summary() -> Summary {
        Summary {
            from: "Alice <alice@example.org>".into(),
            sender: "alice@example.org".into(),
            subject: "Quarterly numbers".into(),
            message_id: Some("<m1@example.org>".into()),
        }
    }

    #[test]
    fn only_the_first_opening_is_the_first() {
        let (_dir, store, _) = store();
        let e = store
            .store(
                &incoming("dan@ext.example", "Q1", &summary(), b"x"),
                1000,
                30,
            )
            .unwrap();
        assert!(store.mark_read(&e).unwrap());
        // The copy in hand still says unread: the stored entry decides.
        assert!(!store.mark_read(&e).unwrap());
        assert!(store.entry("dan@ext.example", &e.id).unwrap().read);
    }

    #[test]
    fn usage_counts_what_is_stored_and_forgets_on_delete() {
        let (_dir, store, _) = store();
        let s = summary();
        let first = store
            .store(&incoming("Dan@Ext.example", "Q1", &s, b"12345"), 1000, 30)
            .unwrap();
        assert_eq!(store.usage("dan@ext.example").unwrap(), 5);
        // Known, then added to as this node stores.
        store
            .store(&incoming("dan@ext.example", "Q2", &s, b"123"), 1000, 30)
            .unwrap();
        assert_eq!(store.usage("DAN@ext.example").unwrap(), 8);
        assert_eq!(store.usage("eve@ext.example").unwrap(), 0);
        // A deletion drops the known figure: counted again.
        store.delete("dan@ext.example", &first.id).unwrap();
        assert_eq!(store.usage("dan@ext.example").unwrap(), 3);
    }

    #[test]
    fn stored_message_opens_only_for_its_recipient() {
        let (dir, store, _) = store();
        let secret = b"Subject: Quarterly numbers\r\n\r\nunique-line-7f3a9c\r\n";
        let e = store
            .store(
                &incoming("Dan@Ext.example", "Q1", &summary(), secret),
                1000,
                30,
            )
            .unwrap();
        assert!(valid_id(&e.id));
        assert_eq!(e.expires_ms, 1000 + 30 * 86_400_000);
        let opened = store.read("dan@ext.example", &e.id).unwrap();
        assert_eq!(&opened.content[..], &secret[..]);
        assert_eq!(opened.summary.subject, "Quarterly numbers");
        // Another address finds nothing under the same id.
        assert!(matches!(
            store.read("eve@ext.example", &e.id),
            Err(PortalError::NotFound)
        ));
        assert!(matches!(
            store.read("dan@ext.example", "not-an-id"),
            Err(PortalError::NotFound)
        ));
        // Nothing of the message is in the database files in clear.
        drop(store);
        for file in walk(&dir.0) {
            let bytes = std::fs::read(&file).unwrap();
            assert!(
                !bytes.windows(18).any(|w| w == b"unique-line-7f3a9c"),
                "{file:?}"
            );
            assert!(!bytes.windows(17).any(|w| w == b"Quarterly numbers"));
        }
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }

    #[test]
    fn a_record_moved_to_another_recipient_does_not_open() {
        let (_dir, store, _) = store();
        let e = store
            .store(&incoming("dan@ext.example", "Q1", &summary(), b"x"), 0, 30)
            .unwrap();
        let mut moved = e.clone();
        moved.recipient = "eve@ext.example".into();
        store.put(&moved).unwrap();
        assert!(matches!(
            store.read("eve@ext.example", &e.id),
            Err(PortalError::Damaged)
        ));
    }

    #[test]
    fn token_away_is_a_temporary_error_and_expiry_destroys() {
        let (_dir, store, wrappers) = store();
        let e = store
            .store(&incoming("dan@ext.example", "Q1", &summary(), b"x"), 0, 1)
            .unwrap();
        wrappers.1.store(true, Ordering::SeqCst);
        let err = store.read("dan@ext.example", &e.id).err().unwrap();
        assert!(err.is_temporary(), "{err}");
        assert!(
            store
                .store(&incoming("dan@ext.example", "Q2", &summary(), b"x"), 0, 1)
                .err()
                .unwrap()
                .is_temporary()
        );
        wrappers.1.store(false, Ordering::SeqCst);
        assert!(store.expire(86_400_000 - 1).unwrap().is_empty());
        assert!(store.data.get(e.id.as_bytes()).unwrap().is_some());
        assert_eq!(store.expire(86_400_000).unwrap().len(), 1);
        assert!(matches!(
            store.read("dan@ext.example", &e.id),
            Err(PortalError::NotFound)
        ));
        assert!(!store.has_mail_for("dan@ext.example").unwrap());
        // Expiry removes the wrapped key (the index entry) and the sealed data.
        let key = index_key("dan@ext.example", &e.id);
        assert!(store.index.get(&key).unwrap().is_none());
        assert!(store.data.get(e.id.as_bytes()).unwrap().is_none());
    }
}
