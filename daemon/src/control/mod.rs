//! The local control channel: the CLI's verbs reach the running daemon's
//! administration service over a Unix socket in the data directory,
//! because sled lets only one process open the database. When the daemon
//! is not running the CLI opens the data directory itself and calls the
//! same service (`cli::control`).
//!
//! One request per connection: a JSON line `sealgate_api::WireRequest`
//! (an operation's name and its arguments), answered by one JSON line
//! `WireResponse`. The service checks roles and writes the audit log; this
//! module only carries bytes.
//!
//! Trusts: whoever can open the socket, which is created mode 0660 inside
//! the daemon's data directory, so only root and the daemon's group can;
//! they act as the local administrator (`Actor::local_root`). Requests are
//! at most 4 MiB.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sealgate_api::{Actor, Service, ServiceError, WireRequest, WireResponse};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// Big enough for a certificate bundle, a key or a message for a dry run.
const MAX_REQUEST: usize = 4 * 1024 * 1024;

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("control.sock")
}

/// Serves the control socket until the daemon stops.
pub async fn serve(data_dir: PathBuf, service: Arc<dyn Service>) -> std::io::Result<()> {
    let path = socket_path(&data_dir);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o660))?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let service = service.clone();
            tokio::spawn(async move {
                if let Err(e) = handle_client(stream, &*service).await {
                    tracing::debug!(error = %e, "control client error");
                }
            });
        }
    });
    Ok(())
}

async fn handle_client(stream: UnixStream, service: &dyn Service) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read).take(MAX_REQUEST as u64);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let response = match serde_json::from_str::<WireRequest>(&line) {
        Ok(request) => {
            match service
                .call(&Actor::local_root(), &request.op, request.args)
                .await
            {
                Ok(value) => WireResponse::Ok(value),
                Err(e) => WireResponse::Err(e),
            }
        }
        Err(e) => WireResponse::Err(ServiceError::invalid(
            "request",
            format!("not a request: {e}"),
        )),
    };
    let mut out = serde_json::to_vec(&response).map_err(std::io::Error::other)?;
    out.push(b'\n');
    write.write_all(&out).await?;
    write.shutdown().await
}

/// Sends a request to a running daemon; `Ok(None)` if none is listening.
pub async fn call_daemon(
    data_dir: &Path,
    request: &WireRequest,
) -> std::io::Result<Option<WireResponse>> {
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
