//! DANE for SMTP (RFC 7672): TLSA records and how a server's certificate
//! chain is matched against them.
//!
//! Only the two usages RFC 7672 §3.1 allows for SMTP count: DANE-EE(3)
//! (the server's own certificate or key; name and dates are not checked,
//! the DNS binding is the authentication) and DANE-TA(2) (a trust anchor
//! that must appear in the chain the server sends; the end entity must
//! chain to it and carry the MX host's or the domain's name). PKIX-TA(0)
//! and PKIX-EE(1) are unusable for SMTP, as are unknown selectors and
//! matching types. A TLSA RRset with records but none usable still
//! demands TLS (RFC 7672 §2.2), just without authentication.
//!
//! Trusts: TLSA records only as the caller got them, DNSSEC-validated.
//! Pure: no I/O.

use std::sync::{Arc, Mutex};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

/// One TLSA record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tlsa {
    pub usage: u8,
    pub selector: u8,
    pub matching: u8,
    pub data: Vec<u8>,
}

impl Tlsa {
    /// Whether RFC 7672 lets SMTP use it.
    pub fn usable(&self) -> bool {
        matches!(self.usage, 2 | 3)
            && matches!(self.selector, 0 | 1)
            && match self.matching {
                0 => !self.data.is_empty() && self.data.len() <= 64 * 1024,
                1 => self.data.len() == 32,
                2 => self.data.len() == 64,
                _ => false,
            }
    }

    /// `3 1 1`, for explanations.
    pub fn describe(&self) -> String {
        let usage = match self.usage {
            2 => "dane-ta",
            3 => "dane-ee",
            _ => "unusable",
        };
        format!("{usage} {} {} {}", self.usage, self.selector, self.matching)
    }

    /// Whether `cert` (DER) is what this record names.
    pub fn matches(&self, cert: &[u8]) -> bool {
        let selected: Vec<u8> = match self.selector {
            0 => cert.to_vec(),
            1 => match spki(cert) {
                Some(s) => s,
                None => return false,
            },
            _ => return false,
        };
        let digest = |alg| aws_lc_rs::digest::digest(alg, &selected).as_ref().to_vec();
        let got = match self.matching {
            0 => selected,
            1 => digest(&aws_lc_rs::digest::SHA256),
            2 => digest(&aws_lc_rs::digest::SHA512),
            _ => return false,
        };
        // Public data, but compare without a data-dependent exit anyway.
        got.len() == self.data.len()
            && aws_lc_rs::constant_time::verify_slices_are_equal(&got, &self.data).is_ok()
    }
}

impl From<&hickory_proto::rr::rdata::TLSA> for Tlsa {
    fn from(r: &hickory_proto::rr::rdata::TLSA) -> Tlsa {
        Tlsa {
            usage: u8::from(r.cert_usage),
            selector: u8::from(r.selector),
            matching: u8::from(r.matching),
            data: r.cert_data.clone(),
        }
    }
}

/// The DER SubjectPublicKeyInfo of a certificate.
fn spki(cert: &[u8]) -> Option<Vec<u8>> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    Some(parsed.tbs_certificate.subject_pki.raw.to_vec())
}

/// Verifies a server's chain against usable TLSA records, remembering
/// which record matched (for tracking). The handshake signature is
/// checked as always: the server must hold the key it presents.
#[derive(Debug)]
pub struct DaneVerifier {
    records: Vec<Tlsa>,
    /// Names the end entity may carry under DANE-TA: the MX host, then
    /// the recipient domain (RFC 7672 §3.2.2).
    names: Vec<String>,
    provider: Arc<CryptoProvider>,
    matched: Mutex<Option<String>>,
}

impl DaneVerifier {
    pub fn new(records: Vec<Tlsa>, names: Vec<String>, provider: Arc<CryptoProvider>) -> Self {
        DaneVerifier {
            records: records.into_iter().filter(Tlsa::usable).collect(),
            names,
            provider,
            matched: Mutex::new(None),
        }
    }

    /// The record that authenticated the last handshake, e.g. `dane-ee 3 1 1`.
    pub fn matched(&self) -> Option<String> {
        self.matched
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn remember(&self, what: String) {
        *self
            .matched
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(what);
    }

    /// DANE-TA: `anchor` (in the chain) must issue, through the chain, an
    /// end entity valid for one of the reference names now.
    fn chains_to(
        &self,
        anchor: &CertificateDer<'_>,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let mut roots = RootCertStore::empty();
        roots.add(anchor.clone().into_owned())?;
        let webpki =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        let mut last = rustls::Error::General("no reference name".into());
        for name in &self.names {
            let Ok(server_name) = ServerName::try_from(name.clone()) else {
                continue;
            };
            match webpki.verify_server_cert(end_entity, intermediates, &server_name, &[], now) {
                Ok(_) => return Ok(()),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

impl ServerCertVerifier for DaneVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(r) = self
            .records
            .iter()
            .find(|r| r.usage == 3 && r.matches(end_entity))
        {
            self.remember(r.describe());
            return Ok(ServerCertVerified::assertion());
        }
        let mut why = None;
        for r in self.records.iter().filter(|r| r.usage == 2) {
            for anchor in intermediates.iter().filter(|c| r.matches(c)) {
                match self.chains_to(anchor, end_entity, intermediates, now) {
                    Ok(()) => {
                        self.remember(r.describe());
                        return Ok(ServerCertVerified::assertion());
                    }
                    Err(e) => why = Some(e),
                }
            }
        }
        Err(why.unwrap_or_else(|| {
            rustls::Error::General(
                "DANE: the server's certificate chain matches none of its TLSA records".into(),
            )
        }))
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn cert(name: &str) -> (CertificateDer<'static>, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let c = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let spki = spki(c.der()).unwrap();
        (c.der().clone(), spki)
    }

    fn sha256(b: &[u8]) -> Vec<u8> {
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b)
            .as_ref()
            .to_vec()
    }

    #[test]
    fn records_match_by_selector_and_matching_type() {
        let (der, spki) = cert("mx.example");
        let ee = |selector, matching, data| Tlsa {
            usage: 3,
            selector,
            matching,
            data,
        };
        assert!(ee(1, 1, sha256(&spki)).matches(&der));
        assert!(ee(0, 1, sha256(&der)).matches(&der));
        assert!(ee(0, 0, der.to_vec()).matches(&der));
        let sha512 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA512, &spki);
        assert!(ee(1, 2, sha512.as_ref().to_vec()).matches(&der));
        let (other, _) = cert("mx.example");
        assert!(!ee(1, 1, sha256(&spki)).matches(&other));
    }

    #[test]
    fn only_dane_usages_are_usable_for_smtp() {
        let r = |usage, selector, matching, len| Tlsa {
            usage,
            selector,
            matching,
            data: vec![0; len],
        };
        assert!(r(3, 1, 1, 32).usable());
        assert!(r(2, 0, 1, 32).usable());
        assert!(!r(1, 1, 1, 32).usable(), "PKIX-EE is not for SMTP");
        assert!(!r(0, 0, 1, 32).usable(), "PKIX-TA is not for SMTP");
        assert!(!r(3, 1, 1, 31).usable(), "a SHA-256 has 32 octets");
        assert!(!r(3, 2, 1, 32).usable());
        assert!(!r(3, 1, 3, 32).usable());
    }

    #[test]
    fn the_verifier_accepts_a_matching_end_entity_whatever_its_name() {
        let (der, spki) = cert("some-other-name.example");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let v = DaneVerifier::new(
            vec![Tlsa {
                usage: 3,
                selector: 1,
                matching: 1,
                data: sha256(&spki),
            }],
            vec!["mx.example".into()],
            provider.clone(),
        );
        let name = ServerName::try_from("mx.example").unwrap();
        assert!(
            v.verify_server_cert(&der, &[], &name, &[], UnixTime::now())
                .is_ok()
        );
        assert_eq!(v.matched().as_deref(), Some("dane-ee 3 1 1"));
        let (wrong, _) = cert("mx.example");
        let v = DaneVerifier::new(
            vec![Tlsa {
                usage: 3,
                selector: 1,
                matching: 1,
                data: sha256(&spki),
            }],
            vec!["mx.example".into()],
            provider,
        );
        assert!(
            v.verify_server_cert(&wrong, &[], &name, &[], UnixTime::now())
                .is_err()
        );
    }
}
