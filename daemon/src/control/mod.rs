//! The local control channel: CLI verbs (`sealgate queue …`, `sealgate
//! track …`) talk to the running daemon over a Unix socket in the data
//! directory, because sled lets only one process open the database. When
//! the daemon is not running the CLI opens the data directory itself.
//!
//! Trusts: whoever can open the socket, which is created mode 0660 inside
//! the daemon's data directory, so only root and the daemon's group can.
//! Requests are one JSON line each, at most 1 MiB.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::queue::state::QueueEntry;
use crate::queue::{Queue, SchedulerRequest};
use crate::tracking::{Event, Query};

/// Big enough for a certificate bundle or an OpenPGP key in base64.
const MAX_REQUEST: usize = 1024 * 1024;

/// A request from the CLI.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    QueueList,
    QueueShow {
        id: String,
    },
    QueueDelete {
        id: String,
    },
    QueueRetry {
        id: String,
    },
    QueueRelease {
        id: String,
    },
    Track {
        query: Query,
    },
    /// Import certificates (base64 of the PEM or DER file), for their
    /// addresses or, with `domain`, as a partner gateway's certificate.
    DirectoryImport {
        data: String,
        domain: Option<String>,
    },
    DirectoryList,
    /// Entries for an address, `@domain`, or a fingerprint (prefix).
    DirectoryShow {
        key: String,
    },
    DirectoryRemove {
        fingerprint: String,
    },
}

/// The daemon's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Entries {
        entries: Vec<QueueEntry>,
    },
    Message {
        entry: QueueEntry,
        headers: String,
    },
    Events {
        events: Vec<Event>,
    },
    Directory {
        entries: Vec<crate::directory::Entry>,
    },
    Done {
        text: String,
    },
    Error {
        error: String,
    },
}

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("control.sock")
}

/// Serves the control socket until the daemon stops.
pub async fn serve(data_dir: PathBuf, queue: Queue) -> std::io::Result<()> {
    let path = socket_path(&data_dir);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o660))?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let queue = queue.clone();
            tokio::spawn(async move {
                if let Err(e) = handle_client(stream, &queue).await {
                    tracing::debug!(error = %e, "control client error");
                }
            });
        }
    });
    Ok(())
}

async fn handle_client(stream: UnixStream, queue: &Queue) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read).take(MAX_REQUEST as u64);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let response = match serde_json::from_str::<Request>(&line) {
        Ok(request) => execute(queue, request, true).await,
        Err(e) => Response::Error {
            error: format!("bad request: {e}"),
        },
    };
    let mut out = serde_json::to_vec(&response).map_err(std::io::Error::other)?;
    out.push(b'\n');
    write.write_all(&out).await?;
    write.shutdown().await
}

/// Carries out a request; `online` says whether the scheduler is running.
pub async fn execute(queue: &Queue, request: Request, online: bool) -> Response {
    match request {
        Request::QueueList => match queue.state().all() {
            Ok(entries) => Response::Entries { entries },
            Err(e) => Response::Error {
                error: format!("queue state not readable: {e}"),
            },
        },
        Request::QueueShow { id } => match queue.state().get(&id) {
            Ok(Some(entry)) => {
                let headers = queue
                    .spool()
                    .read(&id)
                    .map(|m| {
                        let end = m
                            .content
                            .windows(4)
                            .position(|w| w == b"\r\n\r\n")
                            .unwrap_or(m.content.len());
                        String::from_utf8_lossy(m.content.get(..end).unwrap_or(&[])).into_owned()
                    })
                    .unwrap_or_else(|e| format!("(spool file: {e})"));
                Response::Message { entry, headers }
            }
            Ok(None) => Response::Error {
                error: format!("{id}: not in the queue"),
            },
            Err(e) => Response::Error {
                error: e.to_string(),
            },
        },
        Request::QueueDelete { id } => change(queue, online, id, Change::Delete).await,
        Request::QueueRetry { id } => change(queue, online, id, Change::Retry).await,
        Request::QueueRelease { id } => change(queue, online, id, Change::Release).await,
        Request::Track { query } => match queue.tracker().search(&query) {
            Ok(events) => Response::Events { events },
            Err(e) => Response::Error {
                error: format!("tracking not readable: {e}"),
            },
        },
        Request::DirectoryImport { data, domain } => {
            directory_import(queue, &data, domain.as_deref(), online)
        }
        Request::DirectoryList => match queue.directory().all() {
            Ok(entries) => Response::Directory {
                entries: entries
                    .into_iter()
                    .map(|mut e| {
                        e.data.clear();
                        e
                    })
                    .collect(),
            },
            Err(e) => Response::Error {
                error: e.to_string(),
            },
        },
        Request::DirectoryShow { key } => {
            let directory = queue.directory();
            let found = directory.lookup(&key).and_then(|entries| {
                if entries.is_empty() {
                    match directory.find(&key) {
                        Ok(entry) => Ok(vec![entry]),
                        Err(crate::directory::DirectoryError::NotFound(_)) => Ok(Vec::new()),
                        Err(e) => Err(e),
                    }
                } else {
                    Ok(entries)
                }
            });
            match found {
                Ok(entries) => Response::Directory { entries },
                Err(e) => Response::Error {
                    error: e.to_string(),
                },
            }
        }
        Request::DirectoryRemove { fingerprint } => match queue.directory().remove(&fingerprint) {
            Ok(e) => Response::Done {
                text: format!("removed {} ({})", e.fingerprint, e.subject),
            },
            Err(e) => Response::Error {
                error: e.to_string(),
            },
        },
    }
}

fn directory_import(queue: &Queue, data: &str, domain: Option<&str>, online: bool) -> Response {
    use base64::Engine as _;
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(data.as_bytes()) else {
        return Response::Error {
            error: "bad request: data is not base64".into(),
        };
    };
    let now = crate::envelope::now_ms();
    let entries =
        match queue
            .directory()
            .import(&bytes, domain, crate::directory::Trust::Manual, "cli", now)
        {
            Ok(e) => e,
            Err(e) => {
                return Response::Error {
                    error: e.to_string(),
                };
            }
        };
    let keys: Vec<String> = entries
        .iter()
        .flat_map(|e| match &e.domain {
            Some(d) => vec![format!("@{d}")],
            None => e.addresses.clone(),
        })
        .collect();
    // Held mail for these recipients is decided again now.
    let released = if online {
        queue
            .request(SchedulerRequest::KeysArrived(keys.clone()))
            .map(|()| "held mail for them is being released".to_owned())
    } else {
        crate::queue::scheduler::release_held_for(queue, &keys, &std::collections::HashSet::new())
            .map(|ids| {
                format!(
                    "{} held message(s) released for when the daemon starts",
                    ids.len()
                )
            })
            .map_err(|e| format!("held mail not released (queue state not readable: {e})"))
    };
    let mut text = String::new();
    for e in &entries {
        text.push_str(&format!(
            "imported {} {} for {}{}\n",
            e.fingerprint,
            e.subject,
            e.domain
                .as_ref()
                .map_or_else(|| e.addresses.join(", "), |d| format!("domain {d}")),
            if e.usable(now) {
                ""
            } else {
                " (NOT usable for encryption: expired, not yet valid, or no encryption key usage)"
            }
        ));
    }
    text.push_str(&released.unwrap_or_else(|e| e));
    Response::Done { text }
}

/// An administrative change to one queued message.
#[derive(Debug, Clone, Copy)]
enum Change {
    Delete,
    Retry,
    Release,
}

/// Applies a change: through the scheduler when the daemon runs (so it
/// never races a delivery), directly on the data directory when it does not.
async fn change(queue: &Queue, online: bool, id: String, change: Change) -> Response {
    let done = match change {
        Change::Delete => "deleted",
        Change::Retry => "scheduled for immediate retry",
        Change::Release => {
            "released: held and quarantined recipients are decided and tried again now"
        }
    };
    let result = if online {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let request = match change {
            Change::Delete => SchedulerRequest::Delete(id.clone(), tx),
            Change::Retry => SchedulerRequest::Retry(id.clone(), tx),
            Change::Release => SchedulerRequest::Release(id.clone(), tx),
        };
        match queue.request(request) {
            Ok(()) => rx.await.unwrap_or_else(|_| Err("scheduler stopped".into())),
            Err(e) => Err(e),
        }
    } else {
        match change {
            Change::Delete => crate::queue::scheduler::delete(queue, &id),
            // Due now: it is tried as soon as the daemon starts.
            Change::Retry => retry_when_started(queue, &id),
            Change::Release => crate::queue::scheduler::release(queue, &id),
        }
    };
    match result {
        Ok(()) => Response::Done {
            text: format!("{id}: {done}"),
        },
        Err(error) => Response::Error { error },
    }
}

fn retry_when_started(queue: &Queue, id: &str) -> Result<(), String> {
    let mut entry = queue
        .state()
        .get(id)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{id}: not in the queue"))?;
    entry.next_attempt_ms = 0;
    queue.state().put(&entry).map_err(|e| e.to_string())
}

/// Sends a request to a running daemon; `Ok(None)` if none is listening.
pub async fn call_daemon(data_dir: &Path, request: &Request) -> std::io::Result<Option<Response>> {
    let stream = match UnixStream::connect(socket_path(data_dir)).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(request).map_err(std::io::Error::other)?;
    line.push(b'\n');
    write.write_all(&line).await?;
    let mut reader = BufReader::new(read);
    let mut answer = String::new();
    reader.read_line(&mut answer).await?;
    serde_json::from_str(&answer)
        .map(Some)
        .map_err(std::io::Error::other)
}
