//! The gateway's HTTP(S) client for what it looks up on the web: MTA-STS
//! policies, Web Key Directory keys, certificate revocation lists, TLS-RPT
//! uploads.
//!
//! One reqwest client over rustls with the aws-lc-rs provider and our own
//! root store (the system bundle when enabled, plus the configured trust
//! anchors), names resolved through the gateway's DNS server (the one MX
//! lookups use), no redirects (MTA-STS forbids them, RFC 8461 §3.3; WKD
//! and CRL fetches need none), no proxy from the environment, a timeout
//! per request and a size limit per body.
//!
//! Trusts: servers only as authenticated by the root store. Bodies are
//! read up to their limit and no further.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpsError {
    #[error("{0}")]
    Request(String),
    #[error("the server's certificate is not trusted: {0}")]
    Certificate(String),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("the content type is `{0}`, not the one expected")]
    ContentType(String),
    #[error("the answer is larger than {0} octets")]
    TooLarge(usize),
    #[error("not found")]
    NotFound,
}

impl HttpsError {
    /// Whether the failure was the server's certificate.
    pub fn is_certificate(&self) -> bool {
        matches!(self, HttpsError::Certificate(_))
    }
}

/// The root store: the system bundle (if asked) and the anchors in PEM files.
pub fn root_store(system: bool, anchors: &[PathBuf]) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    if system {
        let found = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            tracing::warn!("no system root certificates found");
        }
    }
    for path in anchors {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no certificate", path.display()));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(roots)
}

/// A hickory resolver on `server` (or the system configuration).
pub fn resolver(server: Option<SocketAddr>) -> std::io::Result<TokioResolver> {
    match server {
        Some(addr) => {
            let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
            let mut udp = ConnectionConfig::udp();
            udp.port = addr.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = addr.port();
            ns.connections = vec![udp, tcp];
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![ns]),
                TokioRuntimeProvider::default(),
            )
            .build()
            .map_err(std::io::Error::other)
        }
        None => TokioResolver::builder_tokio()
            .map_err(std::io::Error::other)?
            .build()
            .map_err(std::io::Error::other),
    }
}

/// Names for reqwest, through the gateway's resolver.
struct Resolve(Arc<TokioResolver>);

impl reqwest::dns::Resolve for Resolve {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.0.clone();
        let host = format!("{}.", name.as_str().trim_end_matches('.'));
        Box::pin(async move {
            let ips = resolver
                .lookup_ip(host.as_str())
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            let addrs: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(ip, 0)).collect();
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The client.
pub struct HttpsClient {
    client: reqwest::Client,
}

impl HttpsClient {
    /// A client trusting `roots`, resolving through `dns_server`.
    pub fn new(
        roots: RootCertStore,
        dns_server: Option<SocketAddr>,
        timeout: Duration,
    ) -> Result<HttpsClient, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let resolver = Arc::new(resolver(dns_server).map_err(|e| e.to_string())?);
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .dns_resolver(Arc::new(Resolve(resolver)))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("sealgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(HttpsClient { client })
    }

    /// GETs `url`; the body if the status is 200, the content type (when
    /// `content_type` is given) starts with it, and it is at most `limit`
    /// octets. 404 is [`HttpsError::NotFound`].
    pub async fn get(
        &self,
        url: &str,
        limit: usize,
        content_type: Option<&str>,
    ) -> Result<Vec<u8>, HttpsError> {
        let response = self.client.get(url).send().await.map_err(classify)?;
        let status = response.status().as_u16();
        if status == 404 {
            return Err(HttpsError::NotFound);
        }
        if status != 200 {
            return Err(HttpsError::Status(status));
        }
        if let Some(wanted) = content_type {
            let got = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_ascii_lowercase();
            if !got.starts_with(wanted) {
                return Err(HttpsError::ContentType(got.chars().take(80).collect()));
            }
        }
        read_limited(response, limit).await
    }

    /// POSTs `body` with `content_type` (TLS-RPT over HTTPS); Ok for any 2xx.
    pub async fn post(
        &self,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<(), HttpsError> {
        let response = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .map_err(classify)?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(HttpsError::Status(status))
        }
    }
}

async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, HttpsError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(HttpsError::TooLarge(limit));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(classify)? {
        if body.len() + chunk.len() > limit {
            return Err(HttpsError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A request error, with a certificate failure told apart.
fn classify(e: reqwest::Error) -> HttpsError {
    let mut source: Option<&dyn std::error::Error> = Some(&e);
    while let Some(s) = source {
        if let Some(tls) = s.downcast_ref::<rustls::Error>()
            && matches!(
                tls,
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
            )
        {
            return HttpsError::Certificate(tls.to_string());
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
            && matches!(tls, rustls::Error::InvalidCertificate(_))
        {
            return HttpsError::Certificate(tls.to_string());
        }
        source = s.source();
    }
    HttpsError::Request(error_chain(&e))
}

/// An error with its causes, `a: b: c`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    let mut n = 0;
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
        n += 1;
        if n > 8 {
            break;
        }
    }
    text
}
