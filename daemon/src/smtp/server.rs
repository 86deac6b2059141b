//! The inbound SMTP server: listeners, connection limits, timeouts, the read
//! loop that feeds [`super::session::Session`], STARTTLS, and handing
//! accepted messages to the queue.
//!
//! Trusts: the kernel's view of the client address. Every byte from the
//! client goes through bounded readers: command lines are cut at
//! [`MAX_ANY_LINE`], DATA goes through [`DataReader`] with the size limit,
//! and each read has the idle timeout while the whole session has the total
//! timeout. A message is acknowledged with 250 only after the spool has
//! made it durable.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::queue::Queue;
use crate::util::new_session_id;

use super::command::MAX_ANY_LINE;
use super::data::DataReader;
use super::reply::{Reply, SessionError};
use super::session::{Conditions, Session, Step};
use super::stream::MaybeTls;

/// Counts connections per key (a client IP, or `()` for all); the guard
/// gives the slot back. The limit is asked per connection, so a settings
/// change applies to the next one.
struct Slots<K>(Mutex<HashMap<K, usize>>);

impl<K> Default for Slots<K> {
    fn default() -> Self {
        Slots(Mutex::new(HashMap::new()))
    }
}

struct SlotGuard<K: std::hash::Hash + Eq> {
    slots: Arc<Slots<K>>,
    key: K,
}

impl<K: std::hash::Hash + Eq + Clone> Slots<K> {
    fn try_acquire(self: &Arc<Self>, key: K, max: usize) -> Option<SlotGuard<K>> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let count = map.entry(key.clone()).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(SlotGuard {
            slots: self.clone(),
            key,
        })
    }
}

impl<K: std::hash::Hash + Eq> Drop for SlotGuard<K> {
    fn drop(&mut self) {
        let mut map = self.slots.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = map.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// Binds every configured listener (so errors surface before start-up ends).
pub async fn bind(config: &Config) -> io::Result<Vec<TcpListener>> {
    let mut listeners = Vec::new();
    for addr in &config.smtp.listen {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Accepts connections forever on `listener`. Each connection takes the
/// settings version in force when it arrives and keeps it to its end
/// (limits, relay rules, TLS identity, list expansion).
pub async fn serve(listener: TcpListener, live: Arc<crate::settings::Live>, queue: Queue) {
    let per_ip = Arc::new(Slots::<IpAddr>::default());
    let total = Arc::new(Slots::<()>::default());
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let runtime = live.get();
        let config = runtime.config.clone();
        let ip_guard = per_ip.try_acquire(peer.ip(), config.smtp.max_connections_per_ip);
        let total_permit = total.try_acquire((), config.smtp.max_connections);
        let tls = Some(TlsAcceptor::from(runtime.tls.clone()));
        let queue = queue.clone();
        let expander = runtime.expander.clone();
        tokio::spawn(async move {
            let (Some(_ip_guard), Some(_permit)) = (ip_guard, total_permit) else {
                let mut stream = stream;
                let reply = Reply::new(421, "4.7.0", "Too many connections, try again later");
                let _ = stream.write_all(reply.to_wire().as_bytes()).await;
                tracing::info!(client = %peer, "connection refused: limit reached");
                return;
            };
            let session_timeout = config.session_timeout();
            let work = handle_connection(stream, peer, config, tls, queue, expander);
            if tokio::time::timeout(session_timeout, work).await.is_err() {
                tracing::info!(client = %peer, "session timed out");
            }
        });
    }
}

/// The connection's I/O state: the stream, bytes read but not yet used, and
/// replies not yet sent (flushed before every read, for PIPELINING).
struct Connection {
    stream: MaybeTls,
    input: Vec<u8>,
    output: Vec<u8>,
    idle: std::time::Duration,
}

enum LineRead {
    Line(Vec<u8>),
    TooLong,
    Closed,
}

impl Connection {
    async fn flush(&mut self) -> io::Result<()> {
        if !self.output.is_empty() {
            self.stream.write_all(&self.output).await?;
            self.output.clear();
        }
        self.stream.flush().await
    }

    /// Reads more input, flushing pending replies first. `Ok(false)` at EOF.
    async fn fill(&mut self) -> io::Result<bool> {
        self.flush().await?;
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(self.idle, self.stream.read(&mut chunk))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "idle timeout"))??;
        self.input.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
        Ok(n > 0)
    }

    /// The next command line without its line end; over-long lines are
    /// skipped up to their end and reported.
    async fn read_line(&mut self) -> io::Result<LineRead> {
        let mut skipping = false;
        loop {
            if let Some(pos) = self.input.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.input.drain(..=pos).collect();
                if skipping {
                    return Ok(LineRead::TooLong);
                }
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.len() > MAX_ANY_LINE {
                    return Ok(LineRead::TooLong);
                }
                return Ok(LineRead::Line(line));
            }
            if self.input.len() > MAX_ANY_LINE + 2 {
                self.input.clear();
                skipping = true;
            }
            if !self.fill().await? {
                return Ok(LineRead::Closed);
            }
        }
    }

    fn reply(&mut self, reply: &Reply) {
        self.output.extend_from_slice(reply.to_wire().as_bytes());
    }
}

async fn handle_connection(
    stream: TcpStream,
    peer: SocketAddr,
    config: Arc<Config>,
    tls: Option<TlsAcceptor>,
    queue: Queue,
    expander: Arc<crate::expand::Expander>,
) {
    let session_id = new_session_id();
    let span = tracing::info_span!("smtp", session_id = %session_id, client = %peer);
    let _enter = span.enter();
    drop(_enter);
    let mut session = Session::new(config.clone(), peer.ip(), tls.is_some(), session_id.clone());
    let mut conn = Connection {
        stream: MaybeTls::Plain(stream),
        input: Vec::with_capacity(4096),
        output: Vec::with_capacity(1024),
        idle: config.idle_timeout(),
    };
    tracing::debug!(session_id = %session_id, client = %peer, "connection opened");
    conn.reply(&session.greeting());
    if let Err(e) = run_session(
        &mut conn,
        &mut session,
        &config,
        tls.as_ref(),
        &queue,
        &expander,
    )
    .await
    {
        if e.kind() == io::ErrorKind::TimedOut {
            conn.reply(&Reply::new(
                421,
                "4.4.2",
                "Idle timeout, closing connection",
            ));
        }
        tracing::debug!(session_id = %session_id, client = %peer, error = %e, "connection ended");
    }
    let _ = conn.flush().await;
    let _ = conn.stream.shutdown().await;
}

async fn run_session(
    conn: &mut Connection,
    session: &mut Session,
    config: &Config,
    tls: Option<&TlsAcceptor>,
    queue: &Queue,
    expander: &crate::expand::Expander,
) -> io::Result<()> {
    loop {
        let line = match conn.read_line().await? {
            LineRead::Line(line) => line,
            LineRead::TooLong => match session.line_too_long() {
                Step::Close(reply) => {
                    conn.reply(&reply);
                    return Ok(());
                }
                other => {
                    reply_of(conn, &other);
                    continue;
                }
            },
            LineRead::Closed => return Ok(()),
        };
        let conditions = Conditions {
            storage_available: queue.has_room_for(config.smtp.max_message_size),
        };
        match session.handle_line(&line, conditions) {
            Step::Reply(reply) => conn.reply(&reply),
            Step::Close(reply) => {
                conn.reply(&reply);
                return Ok(());
            }
            Step::StartTls(reply) => {
                conn.reply(&reply);
                conn.flush().await?;
                // Anything sent after STARTTLS in the clear is discarded (CVE-2011-0411).
                conn.input.clear();
                let Some(acceptor) = tls else {
                    return Ok(());
                };
                let tcp = conn.stream.take_plain()?;
                let tls_stream = tokio::time::timeout(conn.idle, acceptor.accept(tcp))
                    .await
                    .map_err(|_| {
                        io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timeout")
                    })??;
                conn.stream = MaybeTls::Server(Box::new(tls_stream));
                session.tls_started();
            }
            Step::ReadData(reply) => {
                conn.reply(&reply);
                receive_message(conn, session, queue, expander).await?;
            }
        }
    }
}

fn reply_of(conn: &mut Connection, step: &Step) {
    match step {
        Step::Reply(r) | Step::Close(r) | Step::StartTls(r) | Step::ReadData(r) => conn.reply(r),
    }
}

/// Reads the DATA section and, if it is acceptable, spools it before replying.
async fn receive_message(
    conn: &mut Connection,
    session: &mut Session,
    queue: &Queue,
    expander: &crate::expand::Expander,
) -> io::Result<()> {
    let mut reader = DataReader::new(session.max_message_size());
    let mut body = Vec::with_capacity(16 * 1024);
    loop {
        if let Some(used) = reader.feed(&conn.input, &mut body) {
            conn.input.drain(..used);
            break;
        }
        conn.input.clear();
        if !conn.fill().await? {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed during DATA",
            ));
        }
    }
    let envelope = match session.finish_data(reader.verdict(), &body) {
        Ok(envelope) => envelope,
        Err(step) => {
            tracing::info!(session_id = session.session_id(), "message refused");
            reply_of(conn, &step);
            if let Step::Close(_) = step {
                return Err(io::Error::other("closing after too many errors"));
            }
            return Ok(());
        }
    };
    let queue_id = crate::envelope::QueueId::new();
    let header = session.received_header(&queue_id, &envelope);
    let stored = match expander.expand(envelope).await {
        Ok(envelope) => queue
            .accept(&queue_id, &envelope, header.as_bytes(), &body)
            .await
            .map(|()| queue_id)
            .map_err(|e| {
                tracing::error!(session_id = session.session_id(), error = %e, "spool write failed; message not accepted");
                if e.kind() == io::ErrorKind::StorageFull {
                    SessionError::InsufficientStorage
                } else {
                    SessionError::StorageFailed
                }
            }),
        Err(e) => {
            tracing::warn!(session_id = session.session_id(), error = %e, "distribution list expansion failed; message not accepted");
            Err(match e {
                crate::expand::ExpandError::Unavailable(_) => SessionError::DirectoryUnavailable,
                crate::expand::ExpandError::TooMany => SessionError::ExpansionTooLarge,
            })
        }
    };
    let step = session.stored(stored);
    reply_of(conn, &step);
    if let Step::Close(_) = step {
        return Err(io::Error::other("closing after too many errors"));
    }
    Ok(())
}
