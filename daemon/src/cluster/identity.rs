//! Node identities: the cluster CA, whose key is on the token, and each
//! node's own TLS certificate, which it issues.
//!
//! Every node of a cluster uses the same token (a network HSM, or for
//! development one SoftHSM token directory they share), so the node that
//! runs `sealgate cluster init` creates the CA key there (`cluster-ca`,
//! ECDSA P-256, never extractable) and a self-signed CA certificate
//! (path length 0: it certifies nodes only); every node that joins asks
//! the token to sign a certificate for a key of its own. That key is the
//! node's identity and stays on its disk (`<data_dir>/cluster/node.key`,
//! mode 0600): it authenticates the node to its peers (mutual TLS), it
//! protects no mail.
//!
//! A node certificate names the node (`dNSName` = node name), which is
//! what a peer checks when it connects; it is valid for both ends of a
//! connection (serverAuth and clientAuth).
//!
//! Trusts: the token, and the CA certificate stored with the cluster.
//! Must never: put a node's key on the shared token or in the database,
//! or accept a certificate that does not chain to the cluster CA.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// The token key of the cluster CA.
pub const CA_LABEL: &str = "cluster-ca";
/// Days a node certificate is valid; `sealgate cluster join` renews it.
pub const NODE_CERT_DAYS: i64 = 730;
/// Days the cluster CA certificate is valid.
pub const CA_DAYS: i64 = 3650;

/// Why an identity could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The token failed (temporary when it is only unreachable).
    #[error("token: {0}")]
    Token(#[from] sealgate_hsm::Error),
    /// A certificate could not be made or read.
    #[error("certificate: {0}")]
    Certificate(String),
    /// A file of the node's identity.
    #[error("{path}: {error}")]
    File { path: PathBuf, error: String },
    /// This node has no identity yet.
    #[error(
        "this node has not joined a cluster ({0} is missing): run `sealgate cluster init` on the \
         first node, `sealgate cluster join` on the others"
    )]
    NotJoined(PathBuf),
    /// The node name cannot name a node in a certificate.
    #[error(
        "node name {0:?}: a cluster node's name must be a DNS name (letters, digits, '-', '.')"
    )]
    BadName(String),
}

/// `<data_dir>/cluster`: the node's identity files.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("cluster")
}

/// Checks that `name` can name a node in its certificate.
pub fn check_name(name: &str) -> Result<(), IdentityError> {
    match ServerName::try_from(name) {
        Ok(ServerName::DnsName(_)) if !name.ends_with('.') => Ok(()),
        _ => Err(IdentityError::BadName(name.to_owned())),
    }
}

/// The cluster CA certificate (DER) on the token, created (key and
/// self-signed certificate) when the token has none.
pub fn ensure_ca(hsm: &sealgate_hsm::Hsm, cluster: &str) -> Result<Vec<u8>, IdentityError> {
    match hsm.certificate_chain(CA_LABEL) {
        Ok(chain) => {
            if let Some(leaf) = chain.into_iter().next() {
                return Ok(leaf);
            }
        }
        Err(sealgate_hsm::Error::NoCertificate(_) | sealgate_hsm::Error::KeyNotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    match hsm.key_info(CA_LABEL) {
        Ok(_) => {}
        Err(sealgate_hsm::Error::KeyNotFound(_)) => {
            hsm.generate(
                CA_LABEL,
                sealgate_hsm::KeyAlgorithm::P256,
                sealgate_hsm::KeyUsage::Sign,
            )?;
        }
        Err(e) => return Err(e.into()),
    }
    let key = sealgate_hsm::certs::TokenSigningKey::new(hsm.signer(CA_LABEL)?);
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("Sealgate cluster CA {cluster}"));
    dn.push(DnType::OrganizationName, "Sealgate cluster");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(CA_DAYS);
    let cert = params
        .self_signed(&key)
        .map_err(|e| IdentityError::Certificate(e.to_string()))?;
    let der = cert.der().to_vec();
    hsm.import_certificate(CA_LABEL, &der)?;
    Ok(der)
}

/// A new key for node `name` and its certificate, issued by the CA key on
/// the token; `hosts` are the names or addresses peers may use to reach
/// it (added to the certificate). Writes the identity files.
pub fn issue_node(
    hsm: &sealgate_hsm::Hsm,
    ca_der: &[u8],
    name: &str,
    hosts: &[String],
    data_dir: &Path,
) -> Result<Identity, IdentityError> {
    check_name(name)?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| IdentityError::Certificate(e.to_string()))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationName, "Sealgate cluster");
    params.distinguished_name = dn;
    let bad = |e: rcgen::Error| IdentityError::Certificate(e.to_string());
    params
        .subject_alt_names
        .push(SanType::DnsName(name.to_owned().try_into().map_err(bad)?));
    for host in hosts {
        if host == name {
            continue;
        }
        let san = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.clone().try_into().map_err(bad)?),
        };
        params.subject_alt_names.push(san);
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(NODE_CERT_DAYS);
    let signer = sealgate_hsm::certs::TokenSigningKey::new(hsm.signer(CA_LABEL)?);
    let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(ca_der.to_vec()), signer)
        .map_err(|e| IdentityError::Certificate(format!("the cluster CA certificate: {e}")))?;
    let cert = params.signed_by(&key, &issuer).map_err(bad)?;
    let dir = dir(data_dir);
    std::fs::create_dir_all(&dir).map_err(|e| file_error(&dir, e))?;
    let ca_pem = pem_of(&[ca_der.to_vec()]);
    write_file(&dir.join("node.key"), key.serialize_pem().as_bytes(), 0o600)?;
    write_file(
        &dir.join("node.pem"),
        pem_of(&[cert.der().to_vec(), ca_der.to_vec()]).as_bytes(),
        0o644,
    )?;
    write_file(&dir.join("ca.pem"), ca_pem.as_bytes(), 0o644)?;
    Identity::load(data_dir, name)
}

/// PEM text of DER certificates.
pub fn pem_of(ders: &[Vec<u8>]) -> String {
    use base64::Engine as _;
    let mut out = String::new();
    for der in ders {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        for line in b64.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), IdentityError> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| file_error(&tmp, e))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| file_error(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| file_error(path, e))
}

fn file_error(path: &Path, e: impl std::fmt::Display) -> IdentityError {
    IdentityError::File {
        path: path.to_path_buf(),
        error: e.to_string(),
    }
}

/// A node's TLS identity: its key, its certificate chain, the cluster CA.
#[derive(Debug)]
pub struct Identity {
    pub node: String,
    pub ca: CertificateDer<'static>,
    pub chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Identity {
    /// Reads the identity files of the node in `data_dir`.
    pub fn load(data_dir: &Path, node: &str) -> Result<Identity, IdentityError> {
        let dir = dir(data_dir);
        let key_path = dir.join("node.key");
        if !key_path.exists() {
            return Err(IdentityError::NotJoined(key_path));
        }
        let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| file_error(&key_path, e))?;
        let read = |name: &str| {
            let path = dir.join(name);
            super::pgtls::read_certs(&path).map_err(|error| IdentityError::File {
                path: path.clone(),
                error,
            })
        };
        let chain = read("node.pem")?;
        let ca = read("ca.pem")?
            .into_iter()
            .next()
            .ok_or_else(|| file_error(&dir.join("ca.pem"), "no certificate"))?;
        let names = chain
            .first()
            .map(|leaf| names_of(leaf.as_ref()))
            .unwrap_or_default();
        if !names.iter().any(|n| n == node) {
            return Err(IdentityError::Certificate(format!(
                "{} names {names:?}, not this node ({node}): run `sealgate cluster join` again",
                dir.join("node.pem").display()
            )));
        }
        Ok(Identity {
            node: node.to_owned(),
            ca,
            chain,
            key,
        })
    }

    /// When the node's certificate expires (ms since the epoch).
    pub fn not_after_ms(&self) -> Option<u64> {
        let leaf = self.chain.first()?;
        let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
        u64::try_from(cert.validity().not_after.timestamp())
            .ok()
            .map(|s| s.saturating_mul(1000))
    }

    fn roots(&self) -> Result<rustls::RootCertStore, IdentityError> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.ca.clone())
            .map_err(|e| IdentityError::Certificate(format!("the cluster CA: {e}")))?;
        Ok(roots)
    }

    /// The cluster API's server side: only clients with a certificate of
    /// the cluster CA get through the handshake.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, IdentityError> {
        let provider = provider();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(self.roots()?),
            provider.clone(),
        )
        .build()
        .map_err(|e| IdentityError::Certificate(e.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| IdentityError::Certificate(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| IdentityError::Certificate(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// The client side: trusts only the cluster CA, presents this node.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, IdentityError> {
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| IdentityError::Certificate(e.to_string()))?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| IdentityError::Certificate(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The DNS names a node certificate carries (its node name first).
pub fn names_of(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(n) = name {
                names.push((*n).to_owned());
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_dns_names() {
        assert!(check_name("node-a").is_ok());
        assert!(check_name("gw1.example.net").is_ok());
        assert!(check_name("10.0.0.1").is_err());
        assert!(check_name("bad name").is_err());
        assert!(check_name("").is_err());
    }
}
