//! Gateway identity: certificates for token keys.
//!
//! Certificates are made with rcgen, whose signing key is a token key
//! ([`TokenSigningKey`] implements rcgen's `SigningKey`), so the private key
//! never leaves the token. A key that may not sign (a decryption or ECDH
//! key: keys have exactly one purpose) gets its certificate issued by a
//! signing key that has one (`issuer`), and cannot make a CSR; its
//! certificate then comes from the issuer on the token (its subject gets an
//! `OU` naming the purpose, so it never equals the issuer's). A self-signed
//! certificate of a signing key is marked as a CA with path length 0 for
//! that reason: it is the gateway's own root for its single-purpose keys.
//!
//! Certificates are stored twice: on the token as `CKO_CERTIFICATE` with the
//! key's label and `CKA_ID` (so PKCS#11 tools pair them), and in Sealgate's
//! own store, `<data_dir>/certs/<label>.pem` (leaf first, then the chain).
//!
//! Trusts: the token key; imported certificates are checked to carry the
//! key's public key. Must never: store a certificate under a label whose key
//! does not match it, or write outside the certificate directory (labels are
//! restricted to `[A-Za-z0-9._-]`).

use std::io::Write;
use std::path::PathBuf;

use cryptoki::object::{Attribute, CertificateType, ObjectClass};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyUsagePurpose,
    SanType,
};

use crate::error::{Error, ck};
use crate::keys::{Curve, KeyUsage, PublicKey};
use crate::ops::{SignatureScheme, Signer, TokenKey};
use crate::token::Hsm;

/// An rcgen signing key backed by a token key.
#[derive(Debug)]
pub struct TokenSigningKey {
    key: TokenKey,
    scheme: SignatureScheme,
    algorithm: &'static rcgen::SignatureAlgorithm,
    key_bits: Vec<u8>,
}

impl TokenSigningKey {
    /// Wraps a signing key from [`Hsm::signer`]: RSA keys sign with PKCS#1 v1.5 and
    /// SHA-256, P-256 with ECDSA-SHA-256, P-384 with ECDSA-SHA-384.
    pub fn new(key: TokenKey) -> Self {
        let public = Signer::public_key(&key).clone();
        let (scheme, algorithm) = match &public {
            PublicKey::Rsa { .. } => (SignatureScheme::RsaPkcs1Sha256, &rcgen::PKCS_RSA_SHA256),
            PublicKey::Ec {
                curve: Curve::P256, ..
            } => (
                SignatureScheme::EcdsaP256Sha256,
                &rcgen::PKCS_ECDSA_P256_SHA256,
            ),
            PublicKey::Ec { .. } => (
                SignatureScheme::EcdsaP384Sha384,
                &rcgen::PKCS_ECDSA_P384_SHA384,
            ),
        };
        TokenSigningKey {
            key,
            scheme,
            algorithm,
            key_bits: public.key_bits(),
        }
    }
}

impl rcgen::PublicKeyData for TokenSigningKey {
    fn der_bytes(&self) -> &[u8] {
        &self.key_bits
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.algorithm
    }
}

impl rcgen::SigningKey for TokenSigningKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        Signer::sign(&self.key, self.scheme, msg).map_err(|_| rcgen::Error::RemoteKeyError)
    }
}

/// The public key of a key that cannot sign, in the form rcgen wants for the subject.
struct SubjectKey {
    algorithm: &'static rcgen::SignatureAlgorithm,
    key_bits: Vec<u8>,
}

impl rcgen::PublicKeyData for SubjectKey {
    fn der_bytes(&self) -> &[u8] {
        &self.key_bits
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.algorithm
    }
}

/// What goes into a new certificate or CSR.
#[derive(Debug, Clone, Default)]
pub struct CertRequest {
    /// Subject common name.
    pub common_name: String,
    /// Subject organisation, if any.
    pub organization: Option<String>,
    /// E-mail addresses (subjectAltName rfc822Name), for S/MIME.
    pub emails: Vec<String>,
    /// DNS names (subjectAltName dNSName), for TLS and domain encryption.
    pub dns_names: Vec<String>,
    /// Validity in days from now (self-signed and issued certificates).
    pub days: u32,
}

/// Output encodings for certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CertFormat {
    /// PEM, leaf first, then the chain.
    Pem,
    /// DER of the leaf certificate only.
    Der,
}

fn check_label(label: &str) -> Result<(), Error> {
    let ok = !label.is_empty()
        && !label.starts_with('.')
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "label {label:?}: only letters, digits, '.', '_' and '-' are allowed"
        )))
    }
}

fn params_for(
    req: &CertRequest,
    usage: KeyUsage,
    self_signed: bool,
) -> Result<CertificateParams, Error> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, req.common_name.clone());
    if let Some(o) = &req.organization {
        dn.push(DnType::OrganizationName, o.clone());
    }
    params.distinguished_name = dn;
    let bad = |e: rcgen::Error| Error::Certificate(e.to_string());
    for email in &req.emails {
        params
            .subject_alt_names
            .push(SanType::Rfc822Name(email.clone().try_into().map_err(bad)?));
    }
    for name in &req.dns_names {
        params
            .subject_alt_names
            .push(SanType::DnsName(name.clone().try_into().map_err(bad)?));
    }
    params.key_usages = match usage {
        // A self-signed gateway signing certificate is also the (path length 0) CA
        // that certifies the gateway's single-purpose decryption and ECDH keys.
        KeyUsage::Sign if self_signed => {
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
            vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::ContentCommitment,
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
            ]
        }
        KeyUsage::Sign => vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::ContentCommitment,
        ],
        KeyUsage::Decrypt => vec![KeyUsagePurpose::KeyEncipherment],
        KeyUsage::Derive => vec![KeyUsagePurpose::KeyAgreement],
        KeyUsage::Wrap | KeyUsage::Mac => {
            return Err(Error::Certificate(
                "secret keys have no certificates".to_owned(),
            ));
        }
    };
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::EmailProtection];
    if !req.dns_names.is_empty() {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(req.days.max(1)));
    Ok(params)
}

impl Hsm {
    fn any_key(&self, label: &str) -> Result<(crate::keys::KeyInfo, PublicKey), Error> {
        let info = self.key_info(label)?;
        let public = info.public.clone().ok_or_else(|| {
            Error::Certificate(format!("{label:?} is a secret key; it has no certificate"))
        })?;
        Ok((info, public))
    }

    /// Makes a certificate for key `label` and stores it (token and file store).
    ///
    /// With `issuer = None` the certificate is self-signed, which needs a signing key.
    /// With `issuer = Some(l)`, signing key `l` (whose certificate must be stored)
    /// issues it; that is how decryption and ECDH keys get a gateway certificate.
    /// Returns the DER certificate.
    pub fn create_certificate(
        &self,
        label: &str,
        req: &CertRequest,
        issuer: Option<&str>,
    ) -> Result<Vec<u8>, Error> {
        check_label(label)?;
        let (info, public) = self.any_key(label)?;
        let mut params = params_for(req, info.usage, issuer.is_none())?;
        if issuer.is_some() {
            // The subject must differ from the issuer's (the gateway signing certificate
            // usually has the same common name), or verifiers take it for self-signed.
            let unit = match info.usage {
                KeyUsage::Decrypt => "Sealgate decryption key",
                KeyUsage::Derive => "Sealgate key agreement key",
                _ => "Sealgate key",
            };
            params
                .distinguished_name
                .push(DnType::OrganizationalUnitName, unit);
        }
        // The stored chain: the new certificate, then (when a token key
        // issued it) the issuer's own chain, so an export carries it whole.
        let mut chain_rest: Vec<Vec<u8>> = Vec::new();
        let cert = match issuer {
            None => {
                let key = TokenSigningKey::new(self.signer(label)?);
                params
                    .self_signed(&key)
                    .map_err(|e| Error::Certificate(e.to_string()))?
            }
            Some(issuer_label) => {
                let issuer_key = TokenSigningKey::new(self.signer(issuer_label)?);
                chain_rest = self.certificate_chain(issuer_label)?;
                let issuer_der = chain_rest
                    .first()
                    .cloned()
                    .ok_or_else(|| Error::NoCertificate(issuer_label.to_owned()))?;
                let issuer = Issuer::from_ca_cert_der(&issuer_der.into(), issuer_key)
                    .map_err(|e| Error::Certificate(e.to_string()))?;
                let algorithm = match &public {
                    PublicKey::Rsa { .. } => &rcgen::PKCS_RSA_SHA256,
                    PublicKey::Ec {
                        curve: Curve::P256, ..
                    } => &rcgen::PKCS_ECDSA_P256_SHA256,
                    PublicKey::Ec { .. } => &rcgen::PKCS_ECDSA_P384_SHA384,
                };
                let subject = SubjectKey {
                    algorithm,
                    key_bits: public.key_bits(),
                };
                params
                    .signed_by(&subject, &issuer)
                    .map_err(|e| Error::Certificate(e.to_string()))?
            }
        };
        let der = cert.der().to_vec();
        let mut chain = vec![der.clone()];
        chain.extend(chain_rest);
        self.store_certificates(label, &info.id, &chain)?;
        Ok(der)
    }

    /// A PKCS#10 request (PEM) for signing key `label`, for an external CA.
    pub fn create_csr(&self, label: &str, req: &CertRequest) -> Result<String, Error> {
        let key = TokenSigningKey::new(self.signer(label).map_err(|e| match e {
            Error::WrongKey { .. } => Error::Certificate(format!(
                "{label:?} cannot sign, so it cannot prove possession in a CSR; \
                 issue its certificate with a signing key instead"
            )),
            other => other,
        })?);
        let params = params_for(req, KeyUsage::Sign, false)?;
        params
            .serialize_request(&key)
            .and_then(|csr| csr.pem())
            .map_err(|e| Error::Certificate(e.to_string()))
    }

    /// Imports a certificate (PEM or DER; PEM may carry the chain after the leaf)
    /// issued for key `label`. The leaf must carry the key's public key.
    pub fn import_certificate(&self, label: &str, input: &[u8]) -> Result<(), Error> {
        check_label(label)?;
        let (info, public) = self.any_key(label)?;
        let ders: Vec<Vec<u8>> = if input.starts_with(b"-----") {
            pem::parse_many(input)
                .map_err(|e| Error::Certificate(e.to_string()))?
                .into_iter()
                .filter(|p| p.tag() == "CERTIFICATE")
                .map(pem::Pem::into_contents)
                .collect()
        } else {
            vec![input.to_vec()]
        };
        let leaf = ders
            .first()
            .ok_or_else(|| Error::Certificate("no certificate in input".to_owned()))?;
        let (_, cert) = x509_parser::parse_x509_certificate(leaf)
            .map_err(|e| Error::Certificate(format!("leaf: {e}")))?;
        if cert.public_key().subject_public_key.data.as_ref() != public.key_bits().as_slice() {
            return Err(Error::Certificate(format!(
                "the certificate is not for key {label:?} (public keys differ)"
            )));
        }
        for (i, der) in ders.iter().enumerate().skip(1) {
            x509_parser::parse_x509_certificate(der)
                .map_err(|e| Error::Certificate(format!("chain certificate {i}: {e}")))?;
        }
        self.store_certificates(label, &info.id, &ders)
    }

    /// The stored certificate chain of `label`, leaf first (file store; the token's copy
    /// of the leaf when the file is missing).
    pub fn certificate_chain(&self, label: &str) -> Result<Vec<Vec<u8>>, Error> {
        check_label(label)?;
        let path = self.cert_path(label);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(pem::parse_many(&bytes)
                .map_err(|e| Error::Certificate(e.to_string()))?
                .into_iter()
                .filter(|p| p.tag() == "CERTIFICATE")
                .map(pem::Pem::into_contents)
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let module = self.inner_module();
                self.with_store_session(|s, _| {
                    let found = s
                        .find_objects(&[
                            Attribute::Class(ObjectClass::CERTIFICATE),
                            Attribute::Label(label.as_bytes().to_vec()),
                        ])
                        .map_err(ck(&module))?;
                    let h = found
                        .first()
                        .ok_or_else(|| Error::NoCertificate(label.to_owned()))?;
                    let attrs = s
                        .get_attributes(*h, &[cryptoki::object::AttributeType::Value])
                        .map_err(ck(&module))?;
                    Ok(vec![
                        crate::keys::attr_bytes(&attrs, cryptoki::object::AttributeType::Value)
                            .unwrap_or_default(),
                    ])
                })
            }
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// The certificate of `label` encoded as asked (PEM with chain, or the leaf's DER).
    pub fn export_certificate(&self, label: &str, format: CertFormat) -> Result<Vec<u8>, Error> {
        let chain = self.certificate_chain(label)?;
        match format {
            CertFormat::Der => chain
                .into_iter()
                .next()
                .ok_or_else(|| Error::NoCertificate(label.to_owned())),
            CertFormat::Pem => Ok(crate::der::pem_lf("CERTIFICATE", &chain).into_bytes()),
        }
    }

    fn cert_path(&self, label: &str) -> PathBuf {
        self.settings().cert_dir().join(format!("{label}.pem"))
    }

    fn store_certificates(&self, label: &str, id: &[u8], ders: &[Vec<u8>]) -> Result<(), Error> {
        let leaf = ders
            .first()
            .ok_or_else(|| Error::Certificate("no certificate".to_owned()))?;
        let (_, cert) = x509_parser::parse_x509_certificate(leaf)
            .map_err(|e| Error::Certificate(e.to_string()))?;
        let subject = cert.subject().as_raw().to_vec();
        let module = self.inner_module();
        self.with_store_session(|s, _| {
            for old in s
                .find_objects(&[
                    Attribute::Class(ObjectClass::CERTIFICATE),
                    Attribute::Label(label.as_bytes().to_vec()),
                ])
                .map_err(ck(&module))?
            {
                s.destroy_object(old).map_err(ck(&module))?;
            }
            s.create_object(&[
                Attribute::Class(ObjectClass::CERTIFICATE),
                Attribute::CertificateType(CertificateType::X_509),
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Id(id.to_vec()),
                Attribute::Subject(subject.clone()),
                Attribute::Value(leaf.clone()),
            ])
            .map_err(ck(&module))?;
            Ok(())
        })?;
        let dir = self.settings().cert_dir();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let text = crate::der::pem_lf("CERTIFICATE", ders);
        let path = self.cert_path(label);
        let tmp = dir.join(format!(".{label}.pem.tmp"));
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        Ok(())
    }
}
