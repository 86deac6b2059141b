//! The cluster API between nodes: HTTP/1.1 over mutual TLS.
//!
//! Each node listens on `[cluster] listen` and answers two requests from
//! its peers, both read-only:
//!
//! - `GET /cluster/v1/node`: its [`NodeState`] (version, settings
//!   version, queue sizes, database connection), fresh;
//! - `POST /cluster/v1/track` with a [`TrackQuery`]: its own tracking
//!   events that match, oldest first.
//!
//! Nothing else: being a cluster node grants no administration of another
//! node. A client must present a certificate of the cluster CA (checked
//! in the TLS handshake; TLS 1.3 only) and the server must present one
//! that names the node the client meant to reach, so neither a stranger
//! nor a node answering for another gets through. Answers are bounded
//! (request and response bodies) and every request has a deadline.
//!
//! Trusts: a peer whose certificate chains to the cluster CA, for these
//! read-only answers. Must never: answer without a verified client
//! certificate, or act on anything a peer sends beyond a search.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use sealgate_api::ops::cluster::NodeState;
use sealgate_api::ops::tracking::{Event, TrackQuery};
use serde::de::DeserializeOwned;
use tokio::net::{TcpListener, TcpStream};

/// Largest request a node accepts from a peer.
const MAX_REQUEST: usize = 64 * 1024;
/// Largest answer a node reads from a peer.
const MAX_ANSWER: usize = 64 * 1024 * 1024;
/// Most events one peer returns for one search.
pub const MAX_EVENTS: usize = 10_000;
/// A peer has this long to finish its TLS handshake with us.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What this node answers its peers with.
pub trait LocalNode: Send + Sync + 'static {
    /// The node's state now.
    fn state(&self) -> NodeState;
    /// This node's tracking events matching `query`, oldest first.
    fn track(&self, query: &TrackQuery) -> Result<Vec<Event>, String>;
}

/// The name of the peer that called, from its verified certificate.
#[derive(Debug, Clone)]
struct Peer(String);

#[derive(Clone)]
struct ApiState {
    local: Arc<dyn LocalNode>,
}

fn router(local: Arc<dyn LocalNode>) -> Router {
    Router::new()
        .route("/cluster/v1/node", get(node))
        .route("/cluster/v1/track", post(track))
        .layer(DefaultBodyLimit::max(MAX_REQUEST))
        .with_state(ApiState { local })
}

async fn node(State(state): State<ApiState>, peer: axum::Extension<Peer>) -> Response {
    tracing::debug!(peer = %peer.0.0, "cluster peer asks for this node's state");
    let local = state.local.clone();
    match tokio::task::spawn_blocking(move || local.state()).await {
        Ok(s) => json(&s),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn track(
    State(state): State<ApiState>,
    peer: axum::Extension<Peer>,
    body: axum::body::Bytes,
) -> Response {
    let mut query: TrackQuery = match serde_json::from_slice(&body) {
        Ok(q) => q,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("not a tracking query: {e}"),
            )
                .into_response();
        }
    };
    tracing::debug!(peer = %peer.0.0, ?query, "cluster peer searches tracking");
    query.limit = Some(query.limit.unwrap_or(1000).min(MAX_EVENTS));
    let local = state.local.clone();
    match tokio::task::spawn_blocking(move || local.track(&query)).await {
        Ok(Ok(events)) => json(&events),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, e).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// A JSON answer.
fn json<T: serde::Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Serves the cluster API on `listener` until the daemon stops.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    local: Arc<dyn LocalNode>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let app = router(local);
    loop {
        let (tcp, from): (_, SocketAddr) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "cluster API accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::info!(client = %from, error = %e, "cluster API: TLS handshake refused");
                    return;
                }
                Err(_) => return,
            };
            let name = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|leaf| super::identity::names_of(leaf.as_ref()))
                .and_then(|names| names.into_iter().next());
            let Some(name) = name else {
                tracing::info!(client = %from, "cluster API: the client certificate names no node");
                return;
            };
            let app = app.layer(axum::Extension(Peer(name)));
            let service = hyper_util::service::TowerToHyperService::new(app);
            if let Err(e) = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .http1_only()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(client = %from, error = %e, "cluster API connection error");
            }
        });
    }
}

/// Why a peer gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    #[error("did not answer within {0} ms")]
    Timeout(u64),
    #[error("cannot connect to {address}: {error}")]
    Connect { address: String, error: String },
    #[error("TLS with {address} failed: {error}")]
    Tls { address: String, error: String },
    #[error("answered {status}: {text}")]
    Refused { status: u16, text: String },
    #[error("unreadable answer: {0}")]
    Answer(String),
}

/// Asks peers, as this node.
#[derive(Clone)]
pub struct PeerClient {
    tls: tokio_rustls::TlsConnector,
    timeout: Duration,
}

impl PeerClient {
    pub fn new(tls: Arc<rustls::ClientConfig>, timeout: Duration) -> PeerClient {
        PeerClient {
            tls: tokio_rustls::TlsConnector::from(tls),
            timeout,
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The state of node `name` at `address`.
    pub async fn node(&self, name: &str, address: &str) -> Result<NodeState, PeerError> {
        self.call(name, address, "GET", "/cluster/v1/node", Vec::new())
            .await
    }

    /// Node `name`'s tracking events matching `query`.
    pub async fn track(
        &self,
        name: &str,
        address: &str,
        query: &TrackQuery,
    ) -> Result<Vec<Event>, PeerError> {
        let body = serde_json::to_vec(query).map_err(|e| PeerError::Answer(e.to_string()))?;
        self.call(name, address, "POST", "/cluster/v1/track", body)
            .await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        name: &str,
        address: &str,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<T, PeerError> {
        let deadline = self.timeout;
        match tokio::time::timeout(deadline, self.exchange(name, address, method, path, body)).await
        {
            Ok(answer) => answer,
            Err(_) => Err(PeerError::Timeout(
                u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
            )),
        }
    }

    async fn exchange<T: DeserializeOwned>(
        &self,
        name: &str,
        address: &str,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<T, PeerError> {
        let connect_error = |error: String| PeerError::Connect {
            address: address.to_owned(),
            error,
        };
        let tls_error = |error: String| PeerError::Tls {
            address: address.to_owned(),
            error,
        };
        let server = ServerName::try_from(name.to_owned()).map_err(|e| tls_error(e.to_string()))?;
        let tcp = TcpStream::connect(address)
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let stream = self
            .tls
            .connect(server, tcp)
            .await
            .map_err(|e| tls_error(e.to_string()))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, name)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(hyper::body::Bytes::from(body)))
            .map_err(|e| PeerError::Answer(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        let status = response.status();
        let bytes = http_body_util::Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| PeerError::Answer(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            return Err(PeerError::Refused {
                status: status.as_u16(),
                text: String::from_utf8_lossy(bytes.get(..bytes.len().min(300)).unwrap_or(&[]))
                    .into_owned(),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| PeerError::Answer(e.to_string()))
    }
}

/// Milliseconds since `start`, for reports.
pub fn elapsed_ms(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}
