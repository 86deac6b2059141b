//! The local control channel: CLI verbs (`sealgate queue …`, `sealgate
//! track …`) talk to the running daemon over a Unix socket in the data
//! directory, because sled lets only one process open the database. When
//! the daemon is not running the CLI opens the data directory itself.
//!
//! Trusts: whoever can open the socket, which is created mode 0660 inside
//! the daemon's data directory, so only root and the daemon's group can.
//! Requests are one JSON line each, at most 64 KiB.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::queue::state::QueueEntry;
use crate::queue::{Queue, SchedulerRequest};
use crate::tracking::{Event, Query};

const MAX_REQUEST: usize = 64 * 1024;

/// A request from the CLI.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    QueueList,
    QueueShow { id: String },
    QueueDelete { id: String },
    QueueRetry { id: String },
    Track { query: Query },
}

/// The daemon's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Entries { entries: Vec<QueueEntry> },
    Message { entry: QueueEntry, headers: String },
    Events { events: Vec<Event> },
    Done { text: String },
    Error { error: String },
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
        Request::QueueList => Response::Entries {
            entries: queue.state().all(),
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
        Request::QueueDelete { id } => {
            scheduler_call(queue, online, id, SchedulerRequest::Delete, "deleted").await
        }
        Request::QueueRetry { id } => {
            scheduler_call(
                queue,
                online,
                id,
                SchedulerRequest::Retry,
                "scheduled for immediate retry",
            )
            .await
        }
        Request::Track { query } => Response::Events {
            events: queue.tracker().search(&query),
        },
    }
}

async fn scheduler_call(
    queue: &Queue,
    online: bool,
    id: String,
    make: fn(String, tokio::sync::oneshot::Sender<Result<(), String>>) -> SchedulerRequest,
    done: &str,
) -> Response {
    if !online {
        return offline_change(queue, &id, make, done);
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    if let Err(e) = queue.request(make(id.clone(), tx)) {
        return Response::Error { error: e };
    }
    match rx.await {
        Ok(Ok(())) => Response::Done {
            text: format!("{id}: {done}"),
        },
        Ok(Err(e)) => Response::Error { error: e },
        Err(_) => Response::Error {
            error: "scheduler stopped".into(),
        },
    }
}

/// With the daemon stopped: delete removes the file and state; retry makes
/// the message due now (it is tried when the daemon starts).
fn offline_change(
    queue: &Queue,
    id: &str,
    make: fn(String, tokio::sync::oneshot::Sender<Result<(), String>>) -> SchedulerRequest,
    done: &str,
) -> Response {
    let (tx, _rx) = tokio::sync::oneshot::channel();
    let is_delete = matches!(make(id.to_string(), tx), SchedulerRequest::Delete(..));
    let entry = match queue.state().get(id) {
        Ok(Some(e)) => e,
        Ok(None) => {
            return Response::Error {
                error: format!("{id}: not in the queue"),
            };
        }
        Err(e) => {
            return Response::Error {
                error: e.to_string(),
            };
        }
    };
    let result = if is_delete {
        let _ = queue.spool().remove(id);
        queue.state().remove(id)
    } else {
        let mut entry = entry;
        entry.next_attempt_ms = 0;
        queue.state().put(&entry)
    };
    match result {
        Ok(()) => Response::Done {
            text: format!("{id}: {done}"),
        },
        Err(e) => Response::Error {
            error: e.to_string(),
        },
    }
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
