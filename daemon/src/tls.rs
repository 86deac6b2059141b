//! TLS material and configurations for the SMTP listener and the SMTP client.
//!
//! The listener uses the configured certificate, or a self-signed one that
//! is generated on first start and kept in `<data_dir>/tls/` (mode 0600 for
//! the key) so a newcomer gets STARTTLS at once. The outbound client does
//! opportunistic TLS: it encrypts whenever the peer offers STARTTLS but,
//! like every MTA without DANE or MTA-STS, cannot authenticate the peer.
//! Everything runs on rustls with the aws-lc-rs provider.

use std::fs;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};

use crate::config::Config;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The listener's TLS configuration, creating the self-signed certificate if needed.
pub fn server_config(config: &Config) -> io::Result<Arc<ServerConfig>> {
    let (cert_path, key_path) = match (&config.smtp.tls_certificate, &config.smtp.tls_private_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => {
            let dir = config.data_dir.join("tls");
            let cert = dir.join("smtp-cert.pem");
            let key = dir.join("smtp-key.pem");
            if !cert.exists() || !key.exists() {
                generate_self_signed(&config.hostname, &cert, &key)?;
            }
            (cert, key)
        }
    };
    let certs = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| io::Error::other(format!("{}: {e}", cert_path.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| io::Error::other(format!("{}: {e}", cert_path.display())))?;
    if certs.is_empty() {
        return Err(io::Error::other(format!(
            "{}: no certificate",
            cert_path.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| io::Error::other(format!("{}: {e}", key_path.display())))?;
    let server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(io::Error::other)?;
    Ok(Arc::new(server))
}

fn generate_self_signed(hostname: &str, cert_path: &Path, key_path: &Path) -> io::Result<()> {
    if let Some(dir) = cert_path.parent() {
        fs::create_dir_all(dir)?;
    }
    let certified = self_signed(hostname).map_err(io::Error::other)?;
    let mut key_file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(key_path)?;
    io::Write::write_all(
        &mut key_file,
        certified.signing_key.serialize_pem().as_bytes(),
    )?;
    key_file.sync_all()?;
    fs::write(cert_path, certified.cert.pem())?;
    tracing::info!(certificate = %cert_path.display(), "generated a self-signed TLS certificate for STARTTLS");
    Ok(())
}

/// A self-signed certificate that names the host (subject CN and DNS
/// name), valid from a day ago for 825 days (the longest browsers take),
/// with a fresh P-256 key.
fn self_signed(hostname: &str) -> Result<rcgen::CertifiedKey<rcgen::KeyPair>, rcgen::Error> {
    let mut params = rcgen::CertificateParams::new(vec![hostname.to_string()])?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, hostname);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Sealgate (self-signed)");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(825);
    let signing_key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&signing_key)?;
    Ok(rcgen::CertifiedKey { cert, signing_key })
}

/// The client configuration for opportunistic STARTTLS: encrypt, do not authenticate.
pub fn opportunistic_client_config() -> Arc<ClientConfig> {
    let provider = provider();
    let verifier = Arc::new(AcceptAnyCertificate(provider.clone()));
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth()
        });
    match config {
        Ok(c) => Arc::new(c),
        // The default protocol versions are always supported by aws-lc-rs.
        Err(_) => Arc::new(
            ClientConfig::builder()
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(Arc::new(
                    rustls::crypto::aws_lc_rs::default_provider(),
                ))))
                .with_no_client_auth(),
        ),
    }
}

/// Opportunistic TLS (RFC 7435): any certificate is accepted, but the
/// handshake signature must still verify, so the channel is really encrypted
/// to whoever holds the presented key.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod self_signed_tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn the_generated_certificate_names_the_host_and_expires() {
        let certified = super::self_signed("gw.example.org").unwrap();
        let der = certified.cert.der().to_vec();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
            .unwrap();
        assert_eq!(cn, "gw.example.org");
        let days = (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp())
            / 86400;
        assert_eq!(days, 826);
        assert!(cert.validity().is_valid());
    }
}
