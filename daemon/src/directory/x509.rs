//! Reading recipients' X.509 certificates for the directory: PEM (one or
//! many) or DER in, the facts the directory keeps out (addresses, validity,
//! whether the key may be used to encrypt mail).
//!
//! Addresses come from subjectAltName rfc822Name entries and the subject's
//! emailAddress attribute, lower-cased. A certificate may encrypt mail when
//! its key usage (if present) allows keyEncipherment or keyAgreement and its
//! extended key usage (if present) includes emailProtection or anyExtendedKeyUsage.
//!
//! Trusts: nothing; sizes and counts are bounded before parsing.

use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

/// Largest certificate accepted, and most certificates in one import.
pub const MAX_CERT_LEN: usize = 64 * 1024;
pub const MAX_CERTS: usize = 100;

/// What the directory keeps about one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    pub der: Vec<u8>,
    /// SHA-256 of the DER, lower-case hex.
    pub fingerprint: String,
    pub subject: String,
    pub addresses: Vec<String>,
    pub not_before_ms: u64,
    pub not_after_ms: u64,
    pub can_encrypt: bool,
    /// A CA certificate (basicConstraints cA): never an encryption target.
    pub is_ca: bool,
}

/// Why certificates could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("no certificate found (expected PEM or DER X.509)")]
    NoCertificate,
    #[error("more than {MAX_CERTS} certificates")]
    TooMany,
    #[error("a certificate is larger than {MAX_CERT_LEN} octets")]
    TooLarge,
    #[error("not an X.509 certificate: {0}")]
    Malformed(String),
}

/// Splits PEM text into DER certificates, or takes the input as one DER certificate.
pub fn split(input: &[u8]) -> Result<Vec<Vec<u8>>, CertError> {
    if input.first() == Some(&0x30) {
        if input.len() > MAX_CERT_LEN {
            return Err(CertError::TooLarge);
        }
        return Ok(vec![input.to_vec()]);
    }
    let text = std::str::from_utf8(input).map_err(|_| CertError::NoCertificate)?;
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let after = rest.get(start + 27..).unwrap_or("");
        let Some(end) = after.find("-----END CERTIFICATE-----") else {
            return Err(CertError::Malformed(
                "PEM block without its END line".into(),
            ));
        };
        let body: String = after
            .get(..end)
            .unwrap_or("")
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if body.len() > MAX_CERT_LEN * 4 / 3 + 4 {
            return Err(CertError::TooLarge);
        }
        use base64::Engine as _;
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|e| CertError::Malformed(format!("PEM base64: {e}")))?;
        out.push(der);
        if out.len() > MAX_CERTS {
            return Err(CertError::TooMany);
        }
        rest = after.get(end + 25..).unwrap_or("");
    }
    if out.is_empty() {
        return Err(CertError::NoCertificate);
    }
    Ok(out)
}

/// Parses one DER certificate.
pub fn read(der: &[u8]) -> Result<CertFacts, CertError> {
    if der.len() > MAX_CERT_LEN {
        return Err(CertError::TooLarge);
    }
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| CertError::Malformed(e.to_string()))?;
    let mut addresses = Vec::new();
    let mut key_usage_ok = true;
    let mut eku_ok = true;
    let mut is_ca = false;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    if let GeneralName::RFC822Name(mail) = name {
                        addresses.push(mail.to_ascii_lowercase());
                    }
                }
            }
            ParsedExtension::KeyUsage(ku) => {
                key_usage_ok = ku.key_encipherment() || ku.key_agreement();
            }
            ParsedExtension::ExtendedKeyUsage(eku) => {
                eku_ok = eku.email_protection || eku.any;
            }
            ParsedExtension::BasicConstraints(bc) => is_ca = bc.ca,
            _ => {}
        }
    }
    for attr in cert.subject().iter_email() {
        if let Ok(mail) = attr.as_str() {
            addresses.push(mail.to_ascii_lowercase());
        }
    }
    addresses.sort();
    addresses.dedup();
    let to_ms = |t: x509_parser::time::ASN1Time| {
        u64::try_from(t.timestamp())
            .unwrap_or(0)
            .saturating_mul(1000)
    };
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    Ok(CertFacts {
        der: der.to_vec(),
        fingerprint: digest.as_ref().iter().map(|b| format!("{b:02x}")).collect(),
        subject: cert.subject().to_string(),
        addresses,
        not_before_ms: to_ms(cert.validity().not_before),
        not_after_ms: to_ms(cert.validity().not_after),
        can_encrypt: key_usage_ok && eku_ok && !is_ca,
        is_ca,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn cert(usage: &[rcgen::KeyUsagePurpose], emails: &[&str]) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = emails
            .iter()
            .map(|e| rcgen::SanType::Rfc822Name((*e).try_into().unwrap()))
            .collect();
        params.key_usages = usage.to_vec();
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::EmailProtection];
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn reads_addresses_usage_and_fingerprint() {
        let pem = cert(
            &[rcgen::KeyUsagePurpose::KeyEncipherment],
            &["Bob@Ext.Example", "bob2@ext.example"],
        );
        let ders = split(pem.as_bytes()).unwrap();
        let facts = read(&ders[0]).unwrap();
        assert_eq!(facts.addresses, ["bob2@ext.example", "bob@ext.example"]);
        assert!(facts.can_encrypt);
        assert_eq!(facts.fingerprint.len(), 64);
        assert!(facts.not_after_ms > facts.not_before_ms);
        let sign_only = cert(
            &[rcgen::KeyUsagePurpose::DigitalSignature],
            &["c@x.example"],
        );
        assert!(
            !read(&split(sign_only.as_bytes()).unwrap()[0])
                .unwrap()
                .can_encrypt
        );
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert_eq!(split(b"hello"), Err(CertError::NoCertificate));
        assert!(matches!(
            read(&[0x30, 0x03, 1, 2, 3]),
            Err(CertError::Malformed(_))
        ));
        assert!(matches!(
            split(b"-----BEGIN CERTIFICATE-----\nAAAA"),
            Err(CertError::Malformed(_))
        ));
        assert_eq!(
            split(&vec![0x30; MAX_CERT_LEN + 1]),
            Err(CertError::TooLarge)
        );
    }
}
