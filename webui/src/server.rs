//! The HTTPS listener: TLS, HTTP/1.1 and HTTP/2 over hyper, with limits
//! of its own so that no number of web clients can starve the rest of the
//! gateway.
//!
//! What a client outside can hold is bounded here, before any handler
//! runs: connections in all and per address (over either, a new
//! connection is closed at once), the TLS handshake, the time to send the
//! request head, the time to send the body and be answered, the size of
//! the head and of the body, and the lifetime of a connection. A flood of
//! slow clients therefore costs at most `max_connections` descriptors,
//! each for a bounded time, and SMTP keeps its own (see the systemd
//! unit's `LimitNOFILE`, sized for both listeners).
//!
//! Trusts: nothing from the network; the client's address is the
//! kernel's (no `X-Forwarded-For`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// The client's address as the kernel gave it, in every request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// What one listener allows.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections open at once, in all.
    pub max_connections: usize,
    /// Connections open at once from one address.
    pub max_connections_per_ip: usize,
    /// Time for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time to send a request's head (and, kept alive, to start the next).
    pub header_timeout: Duration,
    /// Time to send a request's body and get the answer.
    pub request_timeout: Duration,
    /// The longest a connection stays open.
    pub connection_lifetime: Duration,
    /// Largest request head (octets).
    pub max_header_bytes: usize,
    /// Largest request body (octets): an upload of a message or a backup.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            max_connections_per_ip: 32,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            connection_lifetime: Duration::from_secs(300),
            max_header_bytes: 16 * 1024,
            max_body_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Connections per address, released when a connection ends.
#[derive(Default)]
struct PerIp {
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerIp {
    fn try_take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = open.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            table: self.clone(),
            ip,
        })
    }
}

struct IpSlot {
    table: Arc<PerIp>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self
            .table
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// The acceptor of the configuration in force, rebuilt (with ALPN) only
/// when the configuration changes.
#[derive(Default)]
struct Acceptors {
    current: Option<(Arc<rustls::ServerConfig>, TlsAcceptor)>,
}

impl Acceptors {
    fn for_config(&mut self, config: Arc<rustls::ServerConfig>) -> TlsAcceptor {
        if let Some((seen, acceptor)) = &self.current
            && Arc::ptr_eq(seen, &config)
        {
            return acceptor.clone();
        }
        let mut with_alpn = (*config).clone();
        with_alpn.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(with_alpn));
        self.current = Some((config, acceptor.clone()));
        acceptor
    }
}

/// Serves `app` over TLS on `listener` until the process ends. `tls`
/// gives the server configuration for each new connection (so a new
/// certificate applies without a restart).
pub async fn serve(
    listener: TcpListener,
    tls: impl Fn() -> Arc<rustls::ServerConfig> + Send + Sync + 'static,
    app: Router,
    limits: Limits,
) {
    let mut acceptors = Acceptors::default();
    let total = Arc::new(Semaphore::new(limits.max_connections));
    let per_ip = Arc::new(PerIp::default());
    let limits = Arc::new(limits);
    let mut refused_logged = std::time::Instant::now()
        .checked_sub(Duration::from_secs(60))
        .unwrap_or_else(std::time::Instant::now);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                // Out of descriptors (EMFILE) or a client gone before
                // accept: wait a little instead of spinning on it.
                tracing::warn!(error = %e, "web listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(total_slot) = total.clone().try_acquire_owned() else {
            if refused_logged.elapsed() > Duration::from_secs(60) {
                tracing::warn!(
                    max = limits.max_connections,
                    "web listener full: new connections are closed"
                );
                refused_logged = std::time::Instant::now();
            }
            drop(tcp);
            continue;
        };
        let Some(ip_slot) = per_ip.try_take(peer.ip(), limits.max_connections_per_ip) else {
            tracing::debug!(client = %peer, "web: too many connections from this address");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptors.for_config(tls());
        let app = app.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            let _slots = (total_slot, ip_slot);
            let Ok(Ok(stream)) =
                tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await
            else {
                tracing::debug!(client = %peer, "web TLS handshake failed or timed out");
                return;
            };
            let app = app.map_request(move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ClientAddr(peer));
                request
            });
            let service = TowerToHyperService::new(app);
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(limits.max_header_bytes.max(8192))
                .keep_alive(true);
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_concurrent_streams(32)
                .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
                .keep_alive_interval(Some(Duration::from_secs(30)))
                .keep_alive_timeout(Duration::from_secs(10));
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(limits.connection_lifetime, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(client = %peer, error = %e, "web connection error"),
                Err(_) => tracing::debug!(client = %peer, "web connection reached its lifetime"),
            }
        });
    }
}
