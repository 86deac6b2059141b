//! Certificate revocation lists (RFC 5280 §5): a CA's signed list of the
//! serial numbers it has revoked, valid from `thisUpdate` until
//! `nextUpdate`.
//!
//! A CRL counts only after [`Crl::verify_with`] checked it against the
//! issuing CA's certificate (same name, signature by its key, `cRLSign`
//! when the CA states key usages). Indirect CRLs, delta CRLs and
//! distribution-point scoping are not supported: a CRL whose issuing
//! distribution point extension is critical is refused, so nothing is read
//! more widely than it was meant.
//!
//! Trusts: nothing; CRLs come from the network. Bounded by
//! [`MAX_CRL_SIZE`] and [`MAX_ENTRIES`].

use std::collections::HashMap;

use x509_parser::prelude::FromDer;

use crate::cert::Certificate;
use crate::der::{self, tag};
use crate::error::Error;
use crate::signed;

/// Largest CRL accepted (bytes of DER).
pub const MAX_CRL_SIZE: usize = 16 * 1024 * 1024;
/// Most revoked entries read from one CRL.
pub const MAX_ENTRIES: usize = 1_000_000;

/// A parsed CRL.
#[derive(Debug, Clone)]
pub struct Crl {
    der: Vec<u8>,
    /// DER of the issuer Name.
    pub issuer: Vec<u8>,
    /// Unix seconds.
    pub this_update: i64,
    /// Unix seconds, if the CRL says when the next one comes.
    pub next_update: Option<i64>,
    /// The CRL number, if present (hex).
    pub number: Option<String>,
    /// Revoked serial numbers (content octets) → revocation time.
    revoked: HashMap<Vec<u8>, i64>,
    tbs: Vec<u8>,
    signature_alg: Vec<u8>,
    signature: Vec<u8>,
}

impl Crl {
    /// Parses a DER or PEM (`X509 CRL`) CRL.
    pub fn parse(input: &[u8]) -> Result<Crl, Error> {
        let der = if input.starts_with(b"-----BEGIN") {
            pem_body(input)?
        } else {
            input.to_vec()
        };
        Crl::from_der(&der)
    }

    /// Parses a DER CRL.
    pub fn from_der(input: &[u8]) -> Result<Crl, Error> {
        if input.len() > MAX_CRL_SIZE {
            return Err(Error::Limit("CRL size"));
        }
        let bad = |e: String| Error::Malformed(format!("CRL: {e}"));
        let (rest, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(input)
            .map_err(|e| bad(e.to_string()))?;
        if !rest.is_empty() {
            return Err(bad("trailing data".to_owned()));
        }
        for ext in crl.extensions() {
            if ext.critical
                && !matches!(
                    ext.parsed_extension(),
                    x509_parser::extensions::ParsedExtension::CRLNumber(_)
                        | x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(_)
                )
            {
                return Err(Error::Unsupported(
                    "a critical CRL extension (delta or scoped CRL)".to_owned(),
                ));
            }
        }
        let mut revoked = HashMap::new();
        for entry in crl.iter_revoked_certificates() {
            if revoked.len() >= MAX_ENTRIES {
                return Err(Error::Limit("CRL entries"));
            }
            revoked.insert(
                entry.raw_serial().to_vec(),
                entry.revocation_date.timestamp(),
            );
        }
        // The signed part as received, for the signature check.
        let outer = der::read_all(input)?.expect(tag::SEQUENCE, "CertificateList")?;
        let tbs = outer
            .children()
            .need("tbsCertList")?
            .expect(tag::SEQUENCE, "tbsCertList")?
            .raw
            .to_vec();
        Ok(Crl {
            der: input.to_vec(),
            issuer: crl.issuer().as_raw().to_vec(),
            this_update: crl.last_update().timestamp(),
            next_update: crl.next_update().map(|t| t.timestamp()),
            number: crl.crl_number().map(|n| n.to_str_radix(16)),
            revoked,
            tbs,
            signature_alg: crl.signature_algorithm.algorithm.as_bytes().to_vec(),
            signature: crl.signature_value.data.to_vec(),
        })
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// How many certificates it revokes.
    pub fn len(&self) -> usize {
        self.revoked.len()
    }

    pub fn is_empty(&self) -> bool {
        self.revoked.is_empty()
    }

    /// Checks that `issuer` issued this CRL: its subject is the CRL's
    /// issuer, it may sign CRLs, and the signature verifies with its key.
    pub fn verify_with(&self, issuer: &Certificate) -> Result<(), Error> {
        if issuer.subject != self.issuer {
            return Err(Error::Certificate(
                "the CRL was issued by another CA".to_owned(),
            ));
        }
        if issuer.key_usage.is_some_and(|k| !k.crl_sign) {
            return Err(Error::Certificate(
                "the issuer may not sign CRLs".to_owned(),
            ));
        }
        let digest = signed::cert_signature_digest(&self.signature_alg)?;
        signed::verify_signature(
            issuer,
            &self.signature_alg,
            digest,
            &self.tbs,
            &self.signature,
        )
        .map_err(|_| Error::Certificate("the CRL's signature does not verify".to_owned()))
    }

    /// Whether it is in force at `now` (Unix seconds).
    pub fn current_at(&self, now: i64) -> bool {
        self.this_update <= now && self.next_update.is_none_or(|next| now <= next)
    }

    /// When `cert` was revoked, if this CRL (by its issuer) lists it.
    pub fn revoked_at(&self, cert: &Certificate) -> Option<i64> {
        if cert.issuer != self.issuer {
            return None;
        }
        self.revoked.get(&cert.serial).copied()
    }
}

/// The body of the first PEM block.
fn pem_body(input: &[u8]) -> Result<Vec<u8>, Error> {
    let text = std::str::from_utf8(input).map_err(|_| Error::Malformed("PEM".to_owned()))?;
    let start = text
        .find("-----BEGIN")
        .and_then(|i| text.get(i..)?.find('\n').map(|j| i + j + 1))
        .ok_or_else(|| Error::Malformed("PEM header".to_owned()))?;
    let end = text
        .get(start..)
        .and_then(|t| t.find("-----END"))
        .map(|j| start + j)
        .ok_or_else(|| Error::Malformed("PEM footer".to_owned()))?;
    crate::mime::decode_base64(text.get(start..end).unwrap_or("").as_bytes())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    struct Ca {
        key: rcgen::KeyPair,
        cert: rcgen::Certificate,
        params: rcgen::CertificateParams,
    }

    fn ca() -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Test CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = params.clone().self_signed(&key).unwrap();
        Ca { key, cert, params }
    }

    fn leaf(ca: &Ca, serial: u64) -> Certificate {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.serial_number = Some(rcgen::SerialNumber::from(serial));
        p.subject_alt_names = vec![rcgen::SanType::Rfc822Name(
            "bob@example.org".try_into().unwrap(),
        )];
        let issuer = rcgen::Issuer::from_params(&ca.params, &ca.key);
        let c = p.signed_by(&key, &issuer).unwrap();
        Certificate::from_der(c.der()).unwrap()
    }

    fn crl(ca: &Ca, serials: &[u64]) -> Vec<u8> {
        let now = time::OffsetDateTime::now_utc();
        let params = rcgen::CertificateRevocationListParams {
            this_update: now - time::Duration::hours(1),
            next_update: now + time::Duration::days(1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from(*s),
                    revocation_time: now - time::Duration::minutes(5),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let issuer = rcgen::Issuer::from_params(&ca.params, &ca.key);
        params.signed_by(&issuer).unwrap().der().to_vec()
    }

    #[test]
    fn revoked_serials_under_a_verified_signature() {
        let root = ca();
        let ca_cert = Certificate::from_der(root.cert.der()).unwrap();
        let (good, bad) = (leaf(&root, 7), leaf(&root, 8));
        let list = Crl::from_der(&crl(&root, &[8])).unwrap();
        list.verify_with(&ca_cert).unwrap();
        assert!(list.current_at(time::OffsetDateTime::now_utc().unix_timestamp()));
        assert_eq!(list.revoked_at(&good), None);
        assert!(list.revoked_at(&bad).is_some());
        assert_eq!(list.len(), 1);
        // Another CA's certificate cannot vouch for it.
        let other = ca();
        let other_cert = Certificate::from_der(other.cert.der()).unwrap();
        assert!(list.verify_with(&other_cert).is_err());
        // A byte changed in the signed part: refused.
        let mut tampered = crl(&root, &[8]);
        let n = tampered.len();
        tampered[n / 2] ^= 1;
        if let Ok(t) = Crl::from_der(&tampered) {
            assert!(t.verify_with(&ca_cert).is_err());
        }
        assert!(Crl::from_der(b"junk").is_err());
    }
}
