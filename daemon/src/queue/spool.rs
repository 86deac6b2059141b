//! The spool: one file per accepted message, durable before `250`.
//!
//! Each file holds the envelope and the message, and ends with an explicit
//! end record carrying a CRC-32 of everything before it, so a damaged or
//! truncated file is recognised and moved to `corrupt/`, never silently
//! dropped or half-delivered. The queue can be rebuilt from these files
//! alone.
//!
//! Writing follows the Postfix discipline: write to `tmp/`, fsync, rename
//! into `queue/`, fsync the directory, and only then acknowledge. A single
//! committer thread batches concurrent messages (group commit): one
//! `syncfs` makes a whole batch's data durable, the renames follow, and one
//! directory fsync makes the names durable, so throughput does not collapse
//! on a slow disk.
//!
//! Trusts: the data directory (owned by the daemon). Never trusts file
//! contents: every field is checked when read back.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use tokio::sync::oneshot;

use crate::envelope::Envelope;
use crate::envelope::QueueId;

const MAGIC: &[u8] = b"SEALGATE-SPOOL/1\n";
const END: &[u8] = b"\nEND ";
/// Most messages made durable by one group commit.
const MAX_BATCH: usize = 512;
/// Free space a spool write leaves for the state store (sled), so that a
/// full spool never takes the queue's index down with it.
const STATE_RESERVE: u64 = crate::db::REOPEN_RESERVE;
/// Largest envelope record we read back (1000 recipients fit easily).
const MAX_ENVELOPE_LEN: usize = 4 * 1024 * 1024;

/// A message read back from the spool.
#[derive(Debug, Clone)]
pub struct SpooledMessage {
    pub queue_id: QueueId,
    pub envelope: Envelope,
    /// The message as it will be relayed, our `Received:` header first.
    /// Shared so the pipeline can hand it on without copying.
    pub content: std::sync::Arc<Vec<u8>>,
}

/// Why a spool file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SpoolReadError {
    #[error("spool file i/o: {0}")]
    Io(#[from] io::Error),
    #[error("spool file damaged: {0}")]
    Damaged(&'static str),
}

struct CommitRequest {
    file: File,
    tmp_path: PathBuf,
    final_path: PathBuf,
    done: oneshot::Sender<io::Result<()>>,
}

/// Handle to the spool directories and the group committer.
#[derive(Clone)]
pub struct Spool {
    root: PathBuf,
    committer: mpsc::Sender<CommitRequest>,
    room: std::sync::Arc<RoomCache>,
}

/// The last free-space answer.
#[derive(Default)]
struct RoomCache {
    checked_at_ms: std::sync::atomic::AtomicU64,
    for_size: std::sync::atomic::AtomicU64,
    answer: std::sync::atomic::AtomicBool,
}

impl Spool {
    /// Opens (creating) `<root>/{tmp,queue,corrupt}`, clears `tmp/` (never
    /// acknowledged) and starts the committer thread.
    pub fn open(root: &Path) -> io::Result<Spool> {
        for sub in ["tmp", "queue", "corrupt"] {
            fs::create_dir_all(root.join(sub))?;
        }
        for entry in fs::read_dir(root.join("tmp"))? {
            let _ = fs::remove_file(entry?.path());
        }
        let (tx, rx) = mpsc::channel::<CommitRequest>();
        let queue_dir = root.join("queue");
        std::thread::Builder::new()
            .name("spool-commit".into())
            .spawn(move || committer(rx, &queue_dir))?;
        Ok(Spool {
            root: root.to_path_buf(),
            committer: tx,
            room: Default::default(),
        })
    }

    pub fn queue_dir(&self) -> PathBuf {
        self.root.join("queue")
    }

    fn path_of(&self, queue_id: &QueueId) -> PathBuf {
        self.queue_dir().join(queue_id.as_str())
    }

    /// Stores a message durably. Returns only when the file and its name are
    /// on stable storage; an error means the message was not accepted.
    pub async fn store(
        &self,
        queue_id: &QueueId,
        envelope: &Envelope,
        header: &[u8],
        body: &[u8],
    ) -> io::Result<()> {
        let record = encode(envelope, header, body)?;
        // Asked afresh for every message (the session's answer is cached):
        // fast senders must not fill the disk to the last byte, and the
        // state store needs room to keep working.
        let needed = (record.len() as u64).saturating_add(STATE_RESERVE);
        if !crate::db::has_room(&self.root, needed) {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!("less than {needed} octets free for the spool"),
            ));
        }
        let tmp_path = self.root.join("tmp").join(queue_id.as_str());
        let final_path = self.path_of(queue_id);
        let write_path = tmp_path.clone();
        let file = tokio::task::spawn_blocking(move || -> io::Result<File> {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&write_path)?;
            if let Err(e) = file.write_all(&record) {
                // A half-written file would keep the disk full.
                drop(file);
                let _ = fs::remove_file(&write_path);
                return Err(e);
            }
            Ok(file)
        })
        .await
        .map_err(io::Error::other)??;
        let (done, wait) = oneshot::channel();
        self.committer
            .send(CommitRequest {
                file,
                tmp_path,
                final_path,
                done,
            })
            .map_err(|_| io::Error::other("spool committer stopped"))?;
        wait.await
            .map_err(|_| io::Error::other("spool committer stopped"))?
    }

    /// Reads one spooled message back, checking the end record.
    pub fn read(&self, queue_id: &QueueId) -> Result<SpooledMessage, SpoolReadError> {
        let mut bytes = Vec::new();
        File::open(self.path_of(queue_id))?.read_to_end(&mut bytes)?;
        decode(queue_id, &bytes)
    }

    /// Removes a message whose every recipient is done. A failure is logged
    /// by the caller; at worst the file is found again at start-up.
    pub fn remove(&self, queue_id: &QueueId) -> io::Result<()> {
        fs::remove_file(self.path_of(queue_id))
    }

    /// Moves a damaged file aside for inspection.
    pub fn quarantine(&self, queue_id: &QueueId) -> io::Result<()> {
        fs::rename(
            self.path_of(queue_id),
            self.root.join("corrupt").join(queue_id.as_str()),
        )
    }

    /// Every queue id with a file in `queue/`, oldest first.
    pub fn list(&self) -> io::Result<Vec<QueueId>> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(self.queue_dir())? {
            let name = entry?.file_name();
            if let Some(id) = name.to_str().and_then(QueueId::parse) {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Whether the spool has room for a message of `max_size` octets:
    /// free space must be at least 1.5 times that. The answer is cached for
    /// a quarter of a second (it is asked on every command line).
    pub fn has_room_for(&self, max_size: u64) -> bool {
        use std::sync::atomic::Ordering;
        let now = crate::envelope::now_ms();
        let checked = self.room.checked_at_ms.load(Ordering::Relaxed);
        if now.saturating_sub(checked) < 250
            && self.room.for_size.load(Ordering::Relaxed) == max_size
        {
            return self.room.answer.load(Ordering::Relaxed);
        }
        let answer = self.statvfs_has_room(max_size);
        self.room.answer.store(answer, Ordering::Relaxed);
        self.room.for_size.store(max_size, Ordering::Relaxed);
        self.room.checked_at_ms.store(now, Ordering::Relaxed);
        answer
    }

    fn statvfs_has_room(&self, max_size: u64) -> bool {
        match nix::sys::statvfs::statvfs(&self.root) {
            Ok(stat) => {
                let free = stat.blocks_available().saturating_mul(stat.fragment_size());
                free >= max_size.saturating_mul(3) / 2
            }
            Err(_) => false,
        }
    }
}

/// The committer: batches requests, makes them durable, then answers.
fn committer(rx: mpsc::Receiver<CommitRequest>, queue_dir: &Path) {
    let dir = match File::open(queue_dir) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "spool: cannot open queue directory; refusing all messages");
            for request in rx {
                let _ = request
                    .done
                    .send(Err(io::Error::other("queue directory unavailable")));
            }
            return;
        }
    };
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        let result = commit_batch(&batch, &dir);
        for request in batch {
            let outcome = match &result {
                Ok(()) => Ok(()),
                Err(e) => {
                    let _ = fs::remove_file(&request.tmp_path);
                    let _ = fs::remove_file(&request.final_path);
                    Err(io::Error::new(e.kind(), e.to_string()))
                }
            };
            let _ = request.done.send(outcome);
        }
    }
}

fn commit_batch(batch: &[CommitRequest], dir: &File) -> io::Result<()> {
    match batch {
        [one] => one.file.sync_data()?,
        [first, ..] => nix::unistd::syncfs(&first.file).map_err(io::Error::from)?,
        [] => return Ok(()),
    }
    for request in batch {
        fs::rename(&request.tmp_path, &request.final_path)?;
    }
    dir.sync_all()
}

/// Serialises a spool record: magic, envelope, content length, content, end.
fn encode(envelope: &Envelope, header: &[u8], body: &[u8]) -> io::Result<Vec<u8>> {
    let json = serde_json::to_vec(envelope).map_err(io::Error::other)?;
    let length = header.len() + body.len();
    let mut out = Vec::with_capacity(MAGIC.len() + json.len() + length + 64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&json);
    out.push(b'\n');
    out.extend_from_slice(format!("{length}\n").as_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(body);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(END);
    out.extend_from_slice(format!("{crc:08x}\n").as_bytes());
    Ok(out)
}

/// Parses a spool record, refusing anything that is not whole and intact.
fn decode(queue_id: &QueueId, bytes: &[u8]) -> Result<SpooledMessage, SpoolReadError> {
    use SpoolReadError::Damaged;
    let rest = bytes.strip_prefix(MAGIC).ok_or(Damaged("no magic"))?;
    let trailer_len = END.len() + 9;
    let body_end = bytes
        .len()
        .checked_sub(trailer_len)
        .ok_or(Damaged("truncated"))?;
    let covered = bytes.get(..body_end).ok_or(Damaged("truncated"))?;
    let trailer = bytes.get(body_end..).ok_or(Damaged("truncated"))?;
    let crc_text = trailer.strip_prefix(END).ok_or(Damaged("no end record"))?;
    let crc_text = crc_text
        .strip_suffix(b"\n")
        .ok_or(Damaged("no end record"))?;
    let expected = std::str::from_utf8(crc_text)
        .ok()
        .and_then(|t| u32::from_str_radix(t, 16).ok())
        .ok_or(Damaged("bad end record"))?;
    if crc32fast::hash(covered) != expected {
        return Err(Damaged("checksum mismatch"));
    }
    let newline = rest
        .iter()
        .take(MAX_ENVELOPE_LEN)
        .position(|&b| b == b'\n')
        .ok_or(Damaged("no envelope"))?;
    let envelope: Envelope =
        serde_json::from_slice(rest.get(..newline).ok_or(Damaged("no envelope"))?)
            .map_err(|_| Damaged("bad envelope"))?;
    let rest = rest.get(newline + 1..).ok_or(Damaged("truncated"))?;
    let newline = rest
        .iter()
        .take(24)
        .position(|&b| b == b'\n')
        .ok_or(Damaged("no length"))?;
    let length: usize = std::str::from_utf8(rest.get(..newline).unwrap_or(&[]))
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or(Damaged("bad length"))?;
    let content_start = MAGIC.len() + (bytes.len() - MAGIC.len() - rest.len()) + newline + 1;
    if content_start.checked_add(length) != Some(body_end) {
        return Err(Damaged("length mismatch"));
    }
    let content = std::sync::Arc::new(
        bytes
            .get(content_start..body_end)
            .ok_or(Damaged("truncated"))?
            .to_vec(),
    );
    Ok(SpooledMessage {
        queue_id: queue_id.clone(),
        envelope,
        content,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use crate::address::Address;
    use crate::envelope::EnvelopeRecipient;

    fn envelope() -> Envelope {
        Envelope {
            sender: Address::parse("a@example.org"),
            recipients: vec![EnvelopeRecipient {
                address: Address::parse("b@example.net").unwrap(),
                notify: None,
                orcpt: None,
            }],
            ret: None,
            envid: None,
            body_type: Default::default(),
            smtputf8: false,
            client_ip: "127.0.0.1".into(),
            helo: "c".into(),
            tls: false,
            session_id: "s".into(),
            received_at_ms: 1,
            sender_groups: Vec::new(),
            gateway_notice: false,
        }
    }

    #[test]
    fn record_round_trip_and_damage_detection() {
        let rec = encode(
            &envelope(),
            b"Received: x\r\n",
            b"Subject: y\r\n\r\nbody\r\n",
        )
        .unwrap();
        let id = QueueId::parse("0123456789ABCDEF0123").unwrap();
        let msg = decode(&id, &rec).unwrap();
        assert_eq!(msg.envelope, envelope());
        assert_eq!(*msg.content, b"Received: x\r\nSubject: y\r\n\r\nbody\r\n");
        for cut in [1, 5, rec.len() / 2, rec.len() - 1] {
            assert!(
                decode(&id, &rec[..cut]).is_err(),
                "truncated at {cut} accepted"
            );
        }
        let mut flipped = rec.clone();
        let mid = flipped.len() - 20;
        flipped[mid] ^= 1;
        assert!(decode(&id, &flipped).is_err());
    }

    #[tokio::test]
    async fn store_is_readable_and_listed() {
        let dir = std::env::temp_dir().join(format!(
            "sealgate-spool-test-{}",
            crate::util::new_session_id()
        ));
        let spool = Spool::open(&dir).unwrap();
        let ids: Vec<QueueId> = (0..5).map(|_| QueueId::new()).collect();
        let mut tasks = Vec::new();
        for id in &ids {
            let spool = spool.clone();
            let id = id.clone();
            tasks.push(tokio::spawn(async move {
                spool.store(&id, &envelope(), b"", b"hello\r\n").await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let mut listed = spool.list().unwrap();
        listed.sort();
        let mut expected = ids.clone();
        expected.sort();
        assert_eq!(listed, expected);
        assert_eq!(*spool.read(&ids[0]).unwrap().content, b"hello\r\n");
        assert!(fs::read_dir(dir.join("tmp")).unwrap().next().is_none());
        let _ = fs::remove_dir_all(dir);
    }
}
