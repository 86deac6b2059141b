//! SignedData (RFC 5652 section 5) as S/MIME uses it: the structure, its
//! signed attributes, signature algorithms, and the time values in them.
//! Shared by `sign` (writing) and `verify` (reading).
//!
//! Trusts: nothing. Must never: accept a signature algorithm whose digest
//! differs from the one the signature was checked with.

use aws_lc_rs::{digest, signature};
use sealgate_hsm::SignatureScheme;

use crate::cert::{CertKey, Certificate, rsa_hash_params, spki_key_bits};
use crate::der::{self, Tlv, tag};
use crate::error::Error;
use crate::oid;

/// Most signer infos read from one SignedData.
pub const MAX_SIGNERS: usize = 16;

/// Digest algorithms for content and signed attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digest {
    /// SHA-1 (verification of old mail only).
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl Digest {
    /// From a digest AlgorithmIdentifier OID.
    pub fn from_oid(o: &[u8]) -> Result<Digest, Error> {
        match o {
            oid::SHA1 => Ok(Digest::Sha1),
            oid::SHA256 => Ok(Digest::Sha256),
            oid::SHA384 => Ok(Digest::Sha384),
            oid::SHA512 => Ok(Digest::Sha512),
            _ => Err(Error::Unsupported("digest algorithm".to_owned())),
        }
    }

    /// The OID content octets.
    pub fn oid(self) -> &'static [u8] {
        match self {
            Digest::Sha1 => oid::SHA1,
            Digest::Sha256 => oid::SHA256,
            Digest::Sha384 => oid::SHA384,
            Digest::Sha512 => oid::SHA512,
        }
    }

    /// The `micalg` parameter value (RFC 8551 3.5.3.2).
    pub fn micalg(self) -> &'static str {
        match self {
            Digest::Sha1 => "sha-1",
            Digest::Sha256 => "sha-256",
            Digest::Sha384 => "sha-384",
            Digest::Sha512 => "sha-512",
        }
    }

    fn algorithm(self) -> &'static digest::Algorithm {
        match self {
            Digest::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            Digest::Sha256 => &digest::SHA256,
            Digest::Sha384 => &digest::SHA384,
            Digest::Sha512 => &digest::SHA512,
        }
    }

    /// Hashes `data`.
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.algorithm(), data).as_ref().to_vec()
    }

    /// The digest a token signature scheme uses.
    pub fn of_scheme(scheme: SignatureScheme) -> Digest {
        match scheme {
            SignatureScheme::RsaPkcs1Sha384
            | SignatureScheme::RsaPssSha384
            | SignatureScheme::EcdsaP384Sha384 => Digest::Sha384,
            SignatureScheme::RsaPkcs1Sha512 | SignatureScheme::RsaPssSha512 => Digest::Sha512,
            _ => Digest::Sha256,
        }
    }
}

/// Checks `sig` over `message` with the public key of `cert`, for the
/// signature algorithm `sig_alg` (OID content) and digest `dig`.
pub fn verify_signature(
    cert: &Certificate,
    sig_alg: &[u8],
    dig: Digest,
    message: &[u8],
    sig: &[u8],
) -> Result<(), Error> {
    let bits = spki_key_bits(&cert.spki)?;
    let alg: &'static dyn signature::VerificationAlgorithm = match (&cert.key, sig_alg, dig) {
        (CertKey::Rsa { .. }, oid::RSA_ENCRYPTION | oid::SHA256_WITH_RSA, Digest::Sha256) => {
            &signature::RSA_PKCS1_2048_8192_SHA256
        }
        (CertKey::Rsa { .. }, oid::RSA_ENCRYPTION | oid::SHA384_WITH_RSA, Digest::Sha384) => {
            &signature::RSA_PKCS1_2048_8192_SHA384
        }
        (CertKey::Rsa { .. }, oid::RSA_ENCRYPTION | oid::SHA512_WITH_RSA, Digest::Sha512) => {
            &signature::RSA_PKCS1_2048_8192_SHA512
        }
        (CertKey::Rsa { .. }, oid::RSA_ENCRYPTION | oid::SHA1_WITH_RSA, Digest::Sha1) => {
            &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY
        }
        (
            CertKey::Ec { curve, .. },
            oid::EC_PUBLIC_KEY | oid::ECDSA_SHA256 | oid::ECDSA_SHA384 | oid::ECDSA_SHA512,
            d,
        ) => match (curve, d) {
            (sealgate_hsm::Curve::P256, Digest::Sha256) => &signature::ECDSA_P256_SHA256_ASN1,
            (sealgate_hsm::Curve::P256, Digest::Sha384) => &signature::ECDSA_P256_SHA384_ASN1,
            (sealgate_hsm::Curve::P384, Digest::Sha256) => &signature::ECDSA_P384_SHA256_ASN1,
            (sealgate_hsm::Curve::P384, Digest::Sha384) => &signature::ECDSA_P384_SHA384_ASN1,
            _ => return Err(Error::Unsupported("ECDSA curve and digest".to_owned())),
        },
        _ => return Err(Error::Unsupported("signature algorithm".to_owned())),
    };
    // An explicit ECDSA/RSA-with-hash OID must agree with the digest.
    let oid_digest = match sig_alg {
        oid::SHA256_WITH_RSA | oid::ECDSA_SHA256 => Some(Digest::Sha256),
        oid::SHA384_WITH_RSA | oid::ECDSA_SHA384 => Some(Digest::Sha384),
        oid::SHA512_WITH_RSA | oid::ECDSA_SHA512 => Some(Digest::Sha512),
        oid::SHA1_WITH_RSA => Some(Digest::Sha1),
        _ => None,
    };
    if oid_digest.is_some_and(|d| d != dig) {
        return Err(Error::Unsupported(
            "signature and digest algorithms disagree".to_owned(),
        ));
    }
    signature::UnparsedPublicKey::new(alg, bits)
        .verify(message, sig)
        .map_err(|_| Error::Decrypt)
}

/// RSASSA-PSS with the longest salt the key allows (OpenSSL's default when
/// signing), per digest; the shortest accepted salt is the digest length.
static PSS_SHA256_MAX_SALT: signature::RsaParameters =
    signature::RSA_PSS_2048_8192_SHA256.with_pss_salt_length(signature::RsaPssSaltLength::Max);
static PSS_SHA384_MAX_SALT: signature::RsaParameters =
    signature::RSA_PSS_2048_8192_SHA384.with_pss_salt_length(signature::RsaPssSaltLength::Max);
static PSS_SHA512_MAX_SALT: signature::RsaParameters =
    signature::RSA_PSS_2048_8192_SHA512.with_pss_salt_length(signature::RsaPssSaltLength::Max);

/// Checks an RSASSA-PSS signature (RFC 4056) `sig` over `message` with the
/// RSA key of `cert`. The parameters must name `dig` (the signer info's
/// digest) as the hash and as the MGF1 hash, trailer field 1, and a salt as
/// long as the digest (RFC 8017's recommendation) or as long as the key
/// allows (what OpenSSL writes by default); SHA-1 and other salt lengths
/// are [`Error::Unsupported`].
pub fn verify_pss_signature(
    cert: &Certificate,
    params: Option<Tlv<'_>>,
    dig: Digest,
    message: &[u8],
    sig: &[u8],
) -> Result<(), Error> {
    let unsupported = |what: &str| Error::Unsupported(format!("RSASSA-PSS: {what}"));
    if !matches!(cert.key, CertKey::Rsa { .. }) {
        return Err(unsupported("not an RSA key"));
    }
    let params = params.ok_or_else(|| unsupported("SHA-1 (no parameters)"))?;
    let (mut salt, mut trailer) = (20u64, 1u64);
    let mut salt_and_trailer = |field: Tlv<'_>| {
        let value = field.children().need("PSS parameter")?.small_uint()?;
        match field.tag {
            t if t == tag::ctx(2) => salt = value,
            t if t == tag::ctx(3) => trailer = value,
            _ => return Err(Error::Malformed("RSASSA-PSS-params field".to_owned())),
        }
        Ok(())
    };
    let (hash, mgf_hash) = rsa_hash_params(params, "RSASSA-PSS-params", &mut salt_and_trailer)?;
    if hash != dig.oid() || mgf_hash != dig.oid() {
        return Err(unsupported("hash or MGF1 hash other than the digest"));
    }
    if trailer != 1 {
        return Err(unsupported("trailer field"));
    }
    let key = spki_key_bits(&cert.spki)?;
    let modulus_bits = signature::RsaParameters::public_modulus_len(key)
        .map_err(|_| Error::Malformed("RSA public key".to_owned()))?;
    let digest_len = dig.algorithm().output_len() as u64;
    let max_salt = ((u64::from(modulus_bits) + 6) / 8).saturating_sub(digest_len + 2);
    let longest = salt == max_salt;
    let alg: &'static signature::RsaParameters = match dig {
        _ if salt != digest_len && !longest => return Err(unsupported("salt length")),
        Digest::Sha256 if longest => &PSS_SHA256_MAX_SALT,
        Digest::Sha384 if longest => &PSS_SHA384_MAX_SALT,
        Digest::Sha512 if longest => &PSS_SHA512_MAX_SALT,
        Digest::Sha256 => &signature::RSA_PSS_2048_8192_SHA256,
        Digest::Sha384 => &signature::RSA_PSS_2048_8192_SHA384,
        Digest::Sha512 => &signature::RSA_PSS_2048_8192_SHA512,
        Digest::Sha1 => return Err(unsupported("SHA-1")),
    };
    signature::UnparsedPublicKey::new(alg, key)
        .verify(message, sig)
        .map_err(|_| Error::Decrypt)
}

/// The digest named by a certificate's signature algorithm.
pub fn cert_signature_digest(sig_alg: &[u8]) -> Result<Digest, Error> {
    match sig_alg {
        oid::SHA256_WITH_RSA | oid::ECDSA_SHA256 => Ok(Digest::Sha256),
        oid::SHA384_WITH_RSA | oid::ECDSA_SHA384 => Ok(Digest::Sha384),
        oid::SHA512_WITH_RSA | oid::ECDSA_SHA512 => Ok(Digest::Sha512),
        _ => Err(Error::Unsupported(
            "certificate signature algorithm".to_owned(),
        )),
    }
}

/// One attribute of a signed-attributes SET: type and first value.
pub fn attribute<'a>(attrs: &Tlv<'a>, wanted: &[u8]) -> Result<Option<Tlv<'a>>, Error> {
    for a in attrs.children() {
        let a = a?.expect(tag::SEQUENCE, "attribute")?;
        let mut f = a.children();
        let t = f
            .need("attribute type")?
            .expect(tag::OID, "attribute type")?;
        if t.body == wanted {
            let values = f.need("attribute values")?.expect(tag::SET, "values")?;
            return values.children().next().transpose();
        }
    }
    Ok(None)
}

/// Unix seconds of a UTCTime or GeneralizedTime (Zulu forms only).
pub fn parse_time(t: &Tlv<'_>) -> Result<i64, Error> {
    let s = std::str::from_utf8(t.body).map_err(|_| Error::Malformed("time".to_owned()))?;
    let s = s
        .strip_suffix('Z')
        .ok_or_else(|| Error::Malformed("time zone".to_owned()))?;
    let digits = |r: std::ops::Range<usize>| -> Result<i64, Error> {
        s.get(r)
            .and_then(|d| d.parse::<i64>().ok())
            .ok_or_else(|| Error::Malformed("time".to_owned()))
    };
    let (year, rest) = match t.tag {
        tag::UTC_TIME => {
            let y = digits(0..2)?;
            (if y >= 50 { 1900 + y } else { 2000 + y }, 2)
        }
        tag::GENERALIZED_TIME => (digits(0..4)?, 4),
        _ => return Err(Error::Malformed("time type".to_owned())),
    };
    let month = digits(rest..rest + 2)?;
    let day = digits(rest + 2..rest + 4)?;
    let hour = digits(rest + 4..rest + 6)?;
    let min = digits(rest + 6..rest + 8)?;
    let sec = digits(rest + 8..rest + 10)?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return Err(Error::Malformed("time".to_owned()));
    }
    Ok(days_from_civil(year, month, day) * 86400 + hour * 3600 + min * 60 + sec)
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// UTCTime (years 1950-2049) or GeneralizedTime for `unix` seconds.
pub fn encode_time(unix: i64) -> Vec<u8> {
    let days = unix.div_euclid(86400);
    let secs = unix.rem_euclid(86400);
    // civil_from_days
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let hms = format!(
        "{:02}{:02}{:02}{:02}{:02}Z",
        m,
        d,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    );
    if (1950..2050).contains(&y) {
        der::tlv(tag::UTC_TIME, format!("{:02}{hms}", y % 100).as_bytes())
    } else {
        der::tlv(tag::GENERALIZED_TIME, format!("{y:04}{hms}").as_bytes())
    }
}

/// Current Unix time.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A capability from an SMIMECapabilities attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capability {
    /// OID content octets.
    pub oid: Vec<u8>,
}

/// Whether a harvested capability list announces AES-GCM (AuthEnvelopedData).
pub fn supports_gcm(caps: &[Capability]) -> bool {
    caps.iter().any(|c| {
        matches!(
            c.oid.as_slice(),
            oid::AES128_GCM | oid::AES192_GCM | oid::AES256_GCM
        )
    })
}

/// Parses an SMIMECapabilities value (SEQUENCE OF SEQUENCE { OID, params }).
pub fn parse_capabilities(v: &Tlv<'_>) -> Result<Vec<Capability>, Error> {
    let mut out = Vec::new();
    for c in v.children() {
        let c = c?.expect(tag::SEQUENCE, "capability")?;
        let o = c
            .children()
            .need("capability OID")?
            .expect(tag::OID, "OID")?;
        if out.len() >= 64 {
            return Err(Error::Limit("capability count"));
        }
        out.push(Capability {
            oid: o.body.to_vec(),
        });
    }
    Ok(out)
}

/// The SMIMECapabilities Sealgate announces, strongest first.
pub fn our_capabilities() -> Vec<u8> {
    let cap = |o: &[u8]| der::seq(&[&der::oid(o)]);
    der::seq(&[
        &cap(oid::AES256_GCM),
        &cap(oid::AES128_GCM),
        &cap(oid::AES256_CBC),
        &cap(oid::AES192_CBC),
        &cap(oid::AES128_CBC),
        &cap(oid::RSAES_OAEP),
    ])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn time_round_trip() {
        for t in [0i64, 951782400, 1_764_300_000, 2_600_000_000] {
            let enc = encode_time(t);
            assert_eq!(parse_time(&der::read_all(&enc).unwrap()).unwrap(), t);
        }
    }
}
