//! The gateway's own keys on the PKCS#11 token, their certificates, and
//! the gateway's OpenPGP identity.

use serde::{Deserialize, Serialize};

use super::{Done, operation};
use crate::{Area, Permission};

/// The token as the gateway sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenStatus {
    pub module: String,
    pub label: String,
    pub present: bool,
    pub logged_in: bool,
    /// Why it is not usable, if it is not.
    pub error: Option<String>,
}

/// A certificate, summarised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateInfo {
    pub subject: String,
    pub issuer: String,
    pub emails: Vec<String>,
    pub not_before_ms: u64,
    pub not_after_ms: u64,
    /// SHA-256 of the DER, hex.
    pub fingerprint: String,
    /// Certificates in the stored chain (leaf included).
    pub chain_length: usize,
}

/// One key on the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    pub label: String,
    /// `rsa-3072`, `p-256`, `aes-256`, …
    pub algorithm: String,
    /// `decrypt`, `sign`, `derive`, `wrap`, `mac`.
    pub usage: String,
    pub certificate: Option<CertificateInfo>,
}

/// The gateway's OpenPGP identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenpgpInfo {
    pub fingerprint: String,
    pub user_ids: Vec<String>,
    pub created_ms: u64,
    /// Encryption subkeys, newest last.
    pub subkeys: Vec<String>,
}

/// What the key store holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyStoreView {
    pub token: TokenStatus,
    pub keys: Vec<KeyInfo>,
    pub openpgp: Option<OpenpgpInfo>,
}

/// `keys.list`: the token, its keys and certificates, the OpenPGP identity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysList {}
operation!(
    KeysList,
    "keys.list",
    Permission::Read(Area::Keys),
    KeyStoreView
);

/// `keys.generate`: a new key inside the token (never leaves it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGenerate {
    pub label: String,
    /// `rsa-2048`, `rsa-3072`, `rsa-4096`, `p-256`, `p-384`, `aes-256`, `hmac-256`.
    pub algorithm: String,
    /// `decrypt`, `sign`, `derive`, `wrap`, `mac`.
    pub usage: String,
}
operation!(
    KeyGenerate,
    "keys.generate",
    Permission::Write(Area::Keys),
    KeyInfo
);

/// The subject of a certificate or a request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Subject {
    pub common_name: String,
    pub organization: Option<String>,
    pub emails: Vec<String>,
    pub dns_names: Vec<String>,
}

/// `keys.self_sign`: a certificate for a token key, self-signed or issued
/// by another token key (decryption and key-agreement keys need an issuer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySelfSign {
    pub label: String,
    pub subject: Subject,
    pub issuer: Option<String>,
    pub days: u32,
}
operation!(
    KeySelfSign,
    "keys.self_sign",
    Permission::Write(Area::Keys),
    CertificateInfo
);

/// `keys.csr`: a certificate signing request (PEM) for a signing key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyCsr {
    pub label: String,
    pub subject: Subject,
}
operation!(KeyCsr, "keys.csr", Permission::Write(Area::Keys), String);

/// `keys.import_cert`: the certificate (and chain) a CA issued for a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyImportCert {
    pub label: String,
    /// PEM (leaf first, then the chain), or DER as base64.
    pub certificate: String,
}
operation!(
    KeyImportCert,
    "keys.import_cert",
    Permission::Write(Area::Keys),
    CertificateInfo,
    audit = |op| serde_json::json!({ "label": op.label })
);

/// `keys.export_cert`: a key's certificate with its chain (PEM), or the
/// leaf alone as DER (base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyExportCert {
    pub label: String,
    #[serde(default)]
    pub der: bool,
}
operation!(
    KeyExportCert,
    "keys.export_cert",
    Permission::Read(Area::Keys),
    String
);

/// `keys.delete`: a key and its certificate (cannot be undone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyDelete {
    pub label: String,
}
operation!(
    KeyDelete,
    "keys.delete",
    Permission::Write(Area::Keys),
    Done
);

/// `keys.pgp_init`: the gateway's OpenPGP identity (keys on the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PgpInit {
    /// `Name <address>`.
    pub user_id: String,
    /// `rsa-3072` (default), `p-256`, …
    pub algorithm: Option<String>,
}
operation!(
    PgpInit,
    "keys.pgp_init",
    Permission::Write(Area::Keys),
    OpenpgpInfo
);

/// `keys.pgp_rotate`: a new encryption subkey for the OpenPGP identity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PgpRotate {}
operation!(
    PgpRotate,
    "keys.pgp_rotate",
    Permission::Write(Area::Keys),
    OpenpgpInfo
);

/// `keys.pgp_export`: the gateway's OpenPGP certificate, armored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PgpExport {}
operation!(
    PgpExport,
    "keys.pgp_export",
    Permission::Read(Area::Keys),
    String
);

/// `keys.reload`: load the gateway's keys from the token again (as SIGHUP).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysReload {}
operation!(
    KeysReload,
    "keys.reload",
    Permission::Write(Area::Keys),
    Done
);

/// `keys.smime_create`: the gateway's S/MIME certificates in one step,
/// self-signed: the signing key (`gateway-sign`) gets a CA certificate
/// that names the gateway but carries no mail address, and the
/// decryption key (`gateway-decrypt`) a certificate issued by it that
/// carries `address`. A client that looks the gateway up by its address
/// (NSS, Outlook) so finds the encryption certificate, never the signing
/// one. Keys missing on the token are generated first (RSA 3072).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmimeCreate {
    /// The gateway's mail address (`gateway@example.org`).
    pub address: String,
    /// The name in both certificates (the gateway's host name).
    pub common_name: String,
    #[serde(default)]
    pub organization: Option<String>,
    /// Validity in days (default 825).
    #[serde(default)]
    pub days: Option<u32>,
}
operation!(
    SmimeCreate,
    "keys.smime_create",
    Permission::Write(Area::Keys),
    KeyStoreView
);

/// The TLS certificate the gateway uses for SMTP and its web pages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsUploaded {
    /// Where the chain was stored (for `smtp.tls_certificate`).
    pub certificate_path: String,
    /// Where the key was stored, mode 0600 (for `smtp.tls_private_key`).
    pub private_key_path: String,
    pub certificate: CertificateInfo,
}

/// `keys.tls_upload`: a PEM chain (leaf first) and its private key,
/// checked (they parse, the key belongs to the leaf, the leaf is valid
/// now) and stored on the data partition. With `apply`, a new settings
/// version puts the two paths into `smtp.tls_certificate` and
/// `smtp.tls_private_key` at once (SMTP and the web listener use it from
/// the next connection); without, the caller does (the wizard, when it
/// finishes).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsUpload {
    pub certificate: String,
    pub private_key: String,
    #[serde(default)]
    pub apply: bool,
}
operation!(
    TlsUpload,
    "keys.tls_upload",
    Permission::Write(Area::Keys),
    TlsUploaded,
    audit = |_op| serde_json::json!({})
);

impl std::fmt::Debug for TlsUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsUpload")
            .field("certificate", &self.certificate)
            .finish_non_exhaustive()
    }
}
