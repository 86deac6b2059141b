//! The web listener (HTTPS only). Until the setup wizard and the admin UI
//! exist it is locked: every request without the one-time setup token gets
//! `401`, and a request with it only learns that the token was accepted.
//!
//! Trusts: nothing from the network. The token is compared in constant time
//! and never echoed; responses carry strict security headers and are never
//! cached. Errors show generic text; details go to the log.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Shared state of the web handlers.
#[derive(Clone)]
pub struct WebState {
    pub data_dir: PathBuf,
}

/// The application: routes and middleware, without sockets (tests drive it directly).
pub fn app(state: WebState) -> Router {
    Router::new()
        .fallback(view_setup_gate)
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

/// Every page for now: the setup gate.
async fn view_setup_gate(
    State(state): State<WebState>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let presented = presented_token(&headers, request.uri().query());
    match presented {
        Some(token) if crate::setup_token::matches(&state.data_dir, &token) => (
            StatusCode::OK,
            Html(page(
                "Setup token accepted",
                "The setup token is valid. The setup wizard is not part of this release yet.",
            )),
        )
            .into_response(),
        _ => {
            let mut response = (
                StatusCode::UNAUTHORIZED,
                Html(page(
                    "Setup token required",
                    "This gateway has not been set up. Present the one-time setup token shown on the appliance's console.",
                )),
            )
                .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sealgate-setup\""),
            );
            response
        }
    }
}

/// The token from `Authorization: Bearer …` or the `token` query parameter.
fn presented_token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        && let Some(token) = value.strip_prefix("Bearer ")
    {
        return Some(token.trim().to_string());
    }
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .map(|t| t.chars().filter(char::is_ascii_hexdigit).take(64).collect())
}

fn page(title: &str, text: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sealgate — {title}</title></head>\
         <body><h1>{title}</h1><p>{text}</p></body></html>"
    )
}

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"));
    h.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=()"),
    );
    response
}

/// Serves `app` over TLS on `listener` forever.
pub async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, state: WebState) {
    let mut tls = (*tls).clone();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let app = app(state);
    loop {
        let (tcp, peer): (_, SocketAddr) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "web accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let Ok(Ok(stream)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                tracing::debug!(client = %peer, "web TLS handshake failed");
                return;
            };
            let service = TowerToHyperService::new(app);
            if let Err(e) = Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(client = %peer, error = %e, "web connection error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    async fn get(dir: &std::path::Path, uri: &str, bearer: Option<&str>) -> Response {
        let mut request = axum::http::Request::builder().uri(uri);
        if let Some(b) = bearer {
            request = request.header(header::AUTHORIZATION, format!("Bearer {b}"));
        }
        app(WebState {
            data_dir: dir.to_path_buf(),
        })
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn locked_without_the_token_open_with_it() {
        let dir =
            std::env::temp_dir().join(format!("sealgate-web-{}", crate::util::new_session_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let token = crate::setup_token::ensure(&dir).unwrap().unwrap();
        assert_eq!(
            get(&dir, "/", None).await.status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            get(&dir, "/setup", Some("00000000000000000000000000000000"))
                .await
                .status(),
            StatusCode::UNAUTHORIZED
        );
        let ok = get(&dir, "/setup", Some(&token)).await;
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(
            get(&dir, &format!("/setup?token={token}"), None)
                .await
                .status(),
            StatusCode::OK
        );
        let body = axum::body::to_bytes(get(&dir, "/", None).await.into_body(), 1 << 16)
            .await
            .unwrap();
        assert!(!String::from_utf8_lossy(&body).contains(&token));
        let _ = std::fs::remove_dir_all(dir);
    }
}
