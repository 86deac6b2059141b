//! TLS to the cluster database: tokio-postgres over rustls (aws-lc-rs).
//!
//! The server's certificate must chain to the configured CA and name the
//! host of the connection string (libpq's `verify-full`); an optional
//! client certificate serves the database's `cert` authentication. The
//! stream offers the `tls-server-end-point` channel binding (RFC 5929), so
//! SCRAM-SHA-256-PLUS binds the password exchange to this TLS session.
//!
//! Trusts: the CA file named in `[cluster] database_ca`.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// Makes TLS connections for tokio-postgres.
#[derive(Clone)]
pub struct MakeRustls {
    config: Arc<rustls::ClientConfig>,
}

impl MakeRustls {
    /// Trusts the CA certificates in `ca` (PEM); presents `client` (a PEM
    /// chain and its key) when given.
    pub fn new(ca: &Path, client: Option<(&Path, &Path)>) -> Result<MakeRustls, String> {
        let mut roots = rustls::RootCertStore::empty();
        let certs = read_certs(ca)?;
        if certs.is_empty() {
            return Err(format!("{}: no certificate", ca.display()));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", ca.display()))?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
        let mut config = match client {
            Some((chain, key)) => {
                let certs = read_certs(chain)?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("{}: {e}", key.display()))?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| format!("{}: {e}", chain.display()))?
            }
            None => builder.with_no_client_auth(),
        };
        // PostgreSQL 17's direct TLS checks this; earlier servers ignore it.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(MakeRustls {
            config: Arc::new(config),
        })
    }
}

pub(crate) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, Self::Error> {
        let name =
            ServerName::try_from(domain.trim_start_matches('[').trim_end_matches(']'))?.to_owned();
        Ok(RustlsConnect {
            config: self.config.clone(),
            name,
        })
    }
}

/// One TLS connection to one host.
pub struct RustlsConnect {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let tls = tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await?;
            Ok(RustlsStream(tls))
        })
    }
}

/// A TLS stream to the database.
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    /// `tls-server-end-point`: a hash of the server's certificate, with
    /// the hash of its signature algorithm (SHA-256 for MD5 and SHA-1).
    fn channel_binding(&self) -> ChannelBinding {
        let (_, session) = self.0.get_ref();
        let Some(cert) = session.peer_certificates().and_then(|c| c.first()) else {
            return ChannelBinding::none();
        };
        let algorithm = match x509_parser::parse_x509_certificate(cert.as_ref()) {
            Ok((_, parsed)) => {
                let oid = parsed.signature_algorithm.algorithm.to_id_string();
                match oid.as_str() {
                    // sha384WithRSAEncryption, ecdsa-with-SHA384
                    "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => &aws_lc_rs::digest::SHA384,
                    // sha512WithRSAEncryption, ecdsa-with-SHA512
                    "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => &aws_lc_rs::digest::SHA512,
                    _ => &aws_lc_rs::digest::SHA256,
                }
            }
            Err(_) => return ChannelBinding::none(),
        };
        ChannelBinding::tls_server_end_point(
            aws_lc_rs::digest::digest(algorithm, cert.as_ref())
                .as_ref()
                .to_vec(),
        )
    }
}
