//! Certificates: parsing X.509 (PEM, DER, PKCS#7 certs-only bundles), the
//! e-mail addresses they bind, and choosing a recipient's certificate.
//!
//! [`Certificate`] is an owned, parsed view with just what S/MIME needs:
//! issuer and serial (to address recipient infos), subject key identifier,
//! public key, e-mail addresses (subjectAltName rfc822Name and subject
//! emailAddress), validity, key usage, extended key usage and basic
//! constraints. Path building and signature checks live in `verify`.
//!
//! Trusts: nothing; certificates arrive in mail. Bounded by
//! [`MAX_CERT_SIZE`] and [`MAX_CERTS`]. Must never: treat an unparsable
//! extension as absent when it would widen what the certificate may do.

use base64::Engine;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use crate::der::{self, tag};
use crate::error::Error;
use crate::oid;

/// Largest certificate accepted (bytes of DER).
pub const MAX_CERT_SIZE: usize = 64 * 1024;
/// Most certificates taken from one bundle or one SignedData.
pub const MAX_CERTS: usize = 64;

/// The public key in a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertKey {
    /// RSA (the SubjectPublicKeyInfo is kept in [`Certificate::spki`]).
    Rsa {
        /// Modulus length in bytes.
        modulus_len: usize,
    },
    /// EC on a named curve.
    Ec {
        /// The curve.
        curve: sealgate_hsm::Curve,
        /// The uncompressed point.
        point: Vec<u8>,
    },
    /// Anything else (unusable for S/MIME here).
    Other,
}

/// A parsed certificate.
#[derive(Debug, Clone)]
pub struct Certificate {
    der: Vec<u8>,
    /// DER of the issuer Name.
    pub issuer: Vec<u8>,
    /// DER of the subject Name.
    pub subject: Vec<u8>,
    /// Content octets of the serial number INTEGER.
    pub serial: Vec<u8>,
    /// Subject key identifier extension, if present.
    pub subject_key_id: Option<Vec<u8>>,
    /// DER SubjectPublicKeyInfo.
    pub spki: Vec<u8>,
    /// The key, classified.
    pub key: CertKey,
    /// E-mail addresses, lower-cased.
    pub emails: Vec<String>,
    /// Validity start (Unix seconds).
    pub not_before: i64,
    /// Validity end (Unix seconds).
    pub not_after: i64,
    /// Key usage bits, if the extension is present.
    pub key_usage: Option<KeyUsageBits>,
    /// Whether an extended key usage extension is present and whether it
    /// allows e-mail protection (or any purpose).
    pub eku_email: Option<bool>,
    /// Basic constraints: CA flag and path length.
    pub ca: Option<(bool, Option<u32>)>,
    /// The CRL distribution points' URIs (`http://…`, `ldap://…`), at most
    /// [`MAX_CRL_URLS`].
    pub crl_urls: Vec<String>,
    /// DER of the signed TBSCertificate.
    pub tbs: Vec<u8>,
    /// Signature algorithm OID content octets.
    pub signature_alg: Vec<u8>,
    /// DER of the signature algorithm's parameters, if any.
    pub signature_params: Option<Vec<u8>>,
    /// The signature bits.
    pub signature: Vec<u8>,
}

/// The key usage bits S/MIME cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyUsageBits {
    /// digitalSignature.
    pub digital_signature: bool,
    /// nonRepudiation (contentCommitment).
    pub non_repudiation: bool,
    /// keyEncipherment.
    pub key_encipherment: bool,
    /// keyAgreement.
    pub key_agreement: bool,
    /// keyCertSign.
    pub key_cert_sign: bool,
    /// cRLSign.
    pub crl_sign: bool,
}

/// Most CRL distribution point URIs kept per certificate.
pub const MAX_CRL_URLS: usize = 8;

impl Certificate {
    /// Parses one DER certificate.
    pub fn from_der(der_bytes: &[u8]) -> Result<Certificate, Error> {
        if der_bytes.len() > MAX_CERT_SIZE {
            return Err(Error::Limit("certificate size"));
        }
        let bad = |e: String| Error::Malformed(format!("certificate: {e}"));
        let (rest, x) = x509_parser::certificate::X509Certificate::from_der(der_bytes)
            .map_err(|e| bad(e.to_string()))?;
        if !rest.is_empty() {
            return Err(bad("trailing data".to_owned()));
        }
        let tbs = &x.tbs_certificate;
        let spki = tbs.subject_pki.raw.to_vec();
        let key = classify_key(&spki)?;
        let mut emails = Vec::new();
        let mut subject_key_id = None;
        let mut key_usage = None;
        let mut eku_email = None;
        let mut ca = None;
        let mut crl_urls = Vec::new();
        for ext in tbs.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(san) => {
                    for name in &san.general_names {
                        if let GeneralName::RFC822Name(m) = name {
                            emails.push(m.to_ascii_lowercase());
                        }
                    }
                }
                ParsedExtension::SubjectKeyIdentifier(id) => subject_key_id = Some(id.0.to_vec()),
                ParsedExtension::KeyUsage(ku) => {
                    key_usage = Some(KeyUsageBits {
                        digital_signature: ku.digital_signature(),
                        non_repudiation: ku.non_repudiation(),
                        key_encipherment: ku.key_encipherment(),
                        key_agreement: ku.key_agreement(),
                        key_cert_sign: ku.key_cert_sign(),
                        crl_sign: ku.crl_sign(),
                    })
                }
                ParsedExtension::ExtendedKeyUsage(eku) => {
                    eku_email = Some(eku.email_protection || eku.any)
                }
                ParsedExtension::BasicConstraints(bc) => ca = Some((bc.ca, bc.path_len_constraint)),
                ParsedExtension::CRLDistributionPoints(points) => {
                    for point in points.iter() {
                        if let Some(x509_parser::extensions::DistributionPointName::FullName(
                            names,
                        )) = &point.distribution_point
                        {
                            for name in names {
                                if let GeneralName::URI(uri) = name
                                    && crl_urls.len() < MAX_CRL_URLS
                                    && uri.len() <= 2048
                                {
                                    crl_urls.push((*uri).to_owned());
                                }
                            }
                        }
                    }
                }
                ParsedExtension::UnsupportedExtension { .. } if ext.critical => {
                    return Err(Error::Certificate(
                        "unsupported critical extension".to_owned(),
                    ));
                }
                ParsedExtension::ParseError { .. } => {
                    return Err(bad("unparsable extension".to_owned()));
                }
                _ => {}
            }
        }
        for attr in tbs.subject.iter_email() {
            if let Ok(m) = attr.as_str() {
                let m = m.to_ascii_lowercase();
                if !emails.contains(&m) {
                    emails.push(m);
                }
            }
        }
        Ok(Certificate {
            der: der_bytes.to_vec(),
            issuer: tbs.issuer.as_raw().to_vec(),
            subject: tbs.subject.as_raw().to_vec(),
            serial: tbs.raw_serial().to_vec(),
            subject_key_id,
            spki,
            key,
            emails,
            not_before: tbs.validity.not_before.timestamp(),
            not_after: tbs.validity.not_after.timestamp(),
            key_usage,
            eku_email,
            ca,
            crl_urls,
            tbs: tbs.as_ref().to_vec(),
            signature_alg: x.signature_algorithm.algorithm.as_bytes().to_vec(),
            signature_params: signature_params(der_bytes)?,
            signature: x.signature_value.data.to_vec(),
        })
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Whether the certificate names `address` (case-insensitive).
    pub fn has_email(&self, address: &str) -> bool {
        let a = address.trim().to_ascii_lowercase();
        self.emails.contains(&a)
    }

    /// Whether `now` (Unix seconds) lies in the validity period.
    pub fn valid_at(&self, now: i64) -> bool {
        self.not_before <= now && now <= self.not_after
    }

    /// Whether the key may be used to encrypt for this certificate's holder
    /// (keyEncipherment for RSA, keyAgreement for EC; no key usage extension
    /// allows both; an EKU without e-mail protection forbids it).
    pub fn can_encrypt(&self) -> bool {
        if self.eku_email == Some(false) {
            return false;
        }
        match (&self.key, self.key_usage) {
            (CertKey::Rsa { .. }, Some(ku)) => ku.key_encipherment,
            (CertKey::Ec { .. }, Some(ku)) => ku.key_agreement,
            (CertKey::Other, _) => false,
            (_, None) => true,
        }
    }

    /// Whether the certificate matches an IssuerAndSerialNumber.
    pub fn matches_issuer_serial(&self, issuer: &[u8], serial: &[u8]) -> bool {
        self.issuer == issuer && self.serial == serial
    }

    /// Whether the certificate matches a subject key identifier (the
    /// extension, or the SHA-1 of the key bits when it has none).
    pub fn matches_key_id(&self, id: &[u8]) -> bool {
        match &self.subject_key_id {
            Some(ski) => ski == id,
            None => spki_key_bits(&self.spki)
                .map(|bits| {
                    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, bits)
                        .as_ref()
                        == id
                })
                .unwrap_or(false),
        }
    }

    /// DER IssuerAndSerialNumber of this certificate.
    pub fn issuer_and_serial(&self) -> Vec<u8> {
        der::seq(&[&self.issuer, &der::tlv(tag::INTEGER, &self.serial)])
    }
}

/// The DER parameters of a certificate's outer signature algorithm.
fn signature_params(cert: &[u8]) -> Result<Option<Vec<u8>>, Error> {
    let c = der::read_all(cert)?.expect(tag::SEQUENCE, "certificate")?;
    let mut f = c.children();
    f.need("tbsCertificate")?;
    let alg = f
        .need("signatureAlgorithm")?
        .expect(tag::SEQUENCE, "algorithm")?;
    let mut a = alg.children();
    a.need("algorithm OID")?;
    Ok(a.next().transpose()?.map(|p| p.raw.to_vec()))
}

/// The subjectPublicKey bits of a DER SubjectPublicKeyInfo.
pub fn spki_key_bits(spki: &[u8]) -> Result<&[u8], Error> {
    let t = der::read_all(spki)?.expect(tag::SEQUENCE, "SubjectPublicKeyInfo")?;
    let mut kids = t.children();
    kids.need("algorithm")?;
    let bits = kids.need("key")?.expect(tag::BIT_STRING, "key bits")?;
    match bits.body.split_first() {
        Some((0, rest)) => Ok(rest),
        _ => Err(Error::Malformed("key bit string".to_owned())),
    }
}

/// Reads the two fields RSAES-OAEP-params and RSASSA-PSS-params (RFC 8017
/// A.2.1, A.2.3) share: `[0]` the hash and `[1]` the mask generation
/// function, of which only MGF1 is accepted. Returns the hash OID and the
/// MGF1 hash OID, SHA-1 for an absent field (the default of both); every
/// other field is handed to `other`.
pub(crate) fn rsa_hash_params<'a>(
    params: der::Tlv<'a>,
    what: &str,
    other: &mut dyn FnMut(der::Tlv<'a>) -> Result<(), Error>,
) -> Result<(&'a [u8], &'a [u8]), Error> {
    let params = params.expect(tag::SEQUENCE, what)?;
    let mut hash = oid::SHA1;
    let mut mgf_hash = oid::SHA1;
    for field in params.children() {
        let field = field?;
        if field.tag == tag::ctx(0) {
            hash = algorithm_oid(field.children().need("hash")?)?;
        } else if field.tag == tag::ctx(1) {
            let mut mgf = field.children().need("MGF")?.children();
            if mgf.need("MGF OID")?.expect(tag::OID, "MGF")?.body != oid::MGF1 {
                return Err(Error::Unsupported(format!(
                    "{what}: mask generation function"
                )));
            }
            mgf_hash = algorithm_oid(mgf.need("MGF hash")?)?;
        } else {
            other(field)?;
        }
    }
    Ok((hash, mgf_hash))
}

/// The OID of an AlgorithmIdentifier.
fn algorithm_oid(alg: der::Tlv<'_>) -> Result<&[u8], Error> {
    Ok(alg
        .children()
        .need("algorithm OID")?
        .expect(tag::OID, "algorithm")?
        .body)
}

fn classify_key(spki: &[u8]) -> Result<CertKey, Error> {
    let t = der::read_all(spki)?.expect(tag::SEQUENCE, "SubjectPublicKeyInfo")?;
    let mut kids = t.children();
    let alg = kids.need("algorithm")?.expect(tag::SEQUENCE, "algorithm")?;
    let mut a = alg.children();
    let alg_oid = a.need("algorithm OID")?.expect(tag::OID, "OID")?;
    let bits = spki_key_bits(spki)?;
    match alg_oid.body {
        oid::RSA_ENCRYPTION => {
            let k = der::read_all(bits)?.expect(tag::SEQUENCE, "RSAPublicKey")?;
            let n = k
                .children()
                .need("modulus")?
                .expect(tag::INTEGER, "modulus")?;
            let modulus_len = n.body.iter().skip_while(|b| **b == 0).count();
            Ok(CertKey::Rsa { modulus_len })
        }
        oid::EC_PUBLIC_KEY => {
            let curve = a.need("curve")?;
            let curve = match curve.body {
                oid::P256 if curve.tag == tag::OID => sealgate_hsm::Curve::P256,
                oid::P384 if curve.tag == tag::OID => sealgate_hsm::Curve::P384,
                _ => return Ok(CertKey::Other),
            };
            Ok(CertKey::Ec {
                curve,
                point: bits.to_vec(),
            })
        }
        _ => Ok(CertKey::Other),
    }
}

/// Parses certificates from PEM (any number of CERTIFICATE or PKCS7 blocks),
/// one DER certificate, or a DER PKCS#7 certs-only bundle.
pub fn parse_bundle(input: &[u8]) -> Result<Vec<Certificate>, Error> {
    let text = std::str::from_utf8(input)
        .ok()
        .filter(|t| t.contains("-----BEGIN "));
    let mut out = Vec::new();
    if let Some(text) = text {
        for (label, der_bytes) in pem_blocks(text)? {
            match label.as_str() {
                "CERTIFICATE" | "X509 CERTIFICATE" => {
                    push(&mut out, Certificate::from_der(&der_bytes)?)?
                }
                "PKCS7" | "CMS" => {
                    for c in certs_from_pkcs7(&der_bytes)? {
                        push(&mut out, c)?;
                    }
                }
                _ => {}
            }
        }
        return Ok(out);
    }
    let first = der::read(input)?.0;
    let kids = first.children();
    // A certificate starts SEQUENCE { SEQUENCE tbs ... }, a ContentInfo SEQUENCE { OID ... }.
    if kids.peek_tag() == Some(tag::OID) {
        certs_from_pkcs7(input)
    } else {
        Ok(vec![Certificate::from_der(input)?])
    }
}

fn push(out: &mut Vec<Certificate>, c: Certificate) -> Result<(), Error> {
    if out.len() >= MAX_CERTS {
        return Err(Error::Limit("certificate count"));
    }
    out.push(c);
    Ok(())
}

/// The certificates of a SignedData ContentInfo (certs-only or signed).
pub fn certs_from_pkcs7(input: &[u8]) -> Result<Vec<Certificate>, Error> {
    let ci = der::read(input)?.0.expect(tag::SEQUENCE, "ContentInfo")?;
    let mut kids = ci.children();
    let ct = kids
        .need("content type")?
        .expect(tag::OID, "content type")?;
    if ct.body != oid::SIGNED_DATA {
        return Err(Error::WrongType("not a PKCS#7 SignedData".to_owned()));
    }
    let content = kids.need("content")?.expect(tag::ctx(0), "content")?;
    let sd = content.children().need("SignedData")?;
    certs_of_signed_data(sd)
}

/// The `certificates [0]` of a parsed SignedData SEQUENCE.
pub fn certs_of_signed_data(sd: der::Tlv<'_>) -> Result<Vec<Certificate>, Error> {
    let mut out = Vec::new();
    for field in sd.expect(tag::SEQUENCE, "SignedData")?.children() {
        let field = field?;
        if field.tag == tag::ctx(0) {
            for c in field.children() {
                let c = c?;
                // Only X.509 certificates (SEQUENCE); other choices are skipped.
                if c.tag == tag::SEQUENCE {
                    push(&mut out, Certificate::from_der(c.raw)?)?;
                }
            }
        }
    }
    Ok(out)
}

fn pem_blocks(text: &str) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let mut out = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            current = Some((label.to_owned(), String::new()));
        } else if line.starts_with("-----END ") {
            if let Some((label, b64)) = current.take() {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64.as_bytes())
                    .map_err(|_| Error::Malformed("PEM base64".to_owned()))?;
                if out.len() >= MAX_CERTS {
                    return Err(Error::Limit("certificate count"));
                }
                out.push((label, bytes));
            }
        } else if let Some((_, b64)) = current.as_mut() {
            if b64.len() > 2 * MAX_CERT_SIZE {
                return Err(Error::Limit("certificate size"));
            }
            b64.push_str(line);
        }
    }
    Ok(out)
}

/// Chooses the certificate to encrypt to for `address`: names the address,
/// valid at `now`, allowed to encrypt; the newest (latest notBefore) wins.
pub fn select_for_recipient<'a>(
    certs: &'a [Certificate],
    address: &str,
    now: i64,
) -> Option<&'a Certificate> {
    certs
        .iter()
        .filter(|c| c.has_email(address) && c.valid_at(now) && c.can_encrypt())
        .max_by_key(|c| c.not_before)
}
