//! Recipient infos: recovering the content-encryption key (CEK) with a
//! gateway key on the token, and wrapping a CEK for recipients.
//!
//! - KeyTransRecipientInfo (RFC 5652 6.2.1): RSA PKCS#1 v1.5 (with the
//!   token's implicit rejection, so a bad block yields a wrong key and the
//!   content fails like any other wrong key) and RSAES-OAEP with SHA-1 or
//!   SHA-256 (RFC 8017, RFC 4055).
//! - KeyAgreeRecipientInfo (RFC 5652 6.2.2, RFC 5753): ephemeral-static
//!   ECDH on P-256/P-384, the shared secret computed on the token, the ANSI
//!   X9.63 KDF over ECC-CMS-SharedInfo, AES key wrap (RFC 3394).
//!
//! Trusts: the token; every recipient info is attacker-controlled. Must
//! never: tell apart why a key could not be recovered.

use aws_lc_rs::digest;
use aws_lc_rs::key_wrap::{self, AesKek, KeyWrap};
use sealgate_hsm::{KeyAgreement, OaepHash, RsaDecryptor};
use zeroize::Zeroizing;

use crate::cert::{CertKey, Certificate};
use crate::der::{self, Tlv, tag};
use crate::error::Error;
use crate::oid;

/// A gateway key that can open messages, with its certificate.
#[derive(Clone, Copy)]
pub enum GatewayKey<'a> {
    /// RSA key transport.
    Rsa {
        /// The key's certificate (its issuer/serial or SKI names it in messages).
        cert: &'a Certificate,
        /// The token key.
        key: &'a dyn RsaDecryptor,
    },
    /// ECDH key agreement.
    Ec {
        /// The key's certificate.
        cert: &'a Certificate,
        /// The token key.
        key: &'a dyn KeyAgreement,
    },
}

impl std::fmt::Debug for GatewayKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, cert) = match self {
            GatewayKey::Rsa { cert, .. } => ("rsa", cert),
            GatewayKey::Ec { cert, .. } => ("ec", cert),
        };
        write!(f, "GatewayKey({kind}, serial {:02x?})", cert.serial)
    }
}

/// How the CEK was protected for the recipient that matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyProtection {
    /// RSA PKCS#1 v1.5 key transport.
    RsaPkcs1v15,
    /// RSA-OAEP with SHA-1.
    RsaOaepSha1,
    /// RSA-OAEP with SHA-256.
    RsaOaepSha256,
    /// ECDH (ephemeral-static) with the named KDF hash and AES key wrap.
    Ecdh {
        /// KDF hash output length in bits (160, 224, 256, 384, 512).
        kdf_bits: u16,
        /// AES key-wrap key length in bits.
        wrap_bits: u16,
    },
}

/// One parsed recipient info, kept as borrowed slices.
#[derive(Debug)]
pub enum RecipientInfo<'a> {
    /// KeyTransRecipientInfo.
    KeyTrans {
        /// The `rid` element.
        rid: Tlv<'a>,
        /// keyEncryptionAlgorithm.
        alg: Tlv<'a>,
        /// encryptedKey.
        encrypted_key: &'a [u8],
    },
    /// KeyAgreeRecipientInfo.
    KeyAgree {
        /// The originator's public point (uncompressed).
        originator_point: Vec<u8>,
        /// user keying material, if any.
        ukm: Option<Vec<u8>>,
        /// keyEncryptionAlgorithm (ECDH scheme OID and wrap algorithm).
        alg: Tlv<'a>,
        /// recipientEncryptedKeys entries (rid, encryptedKey).
        keys: Vec<(Tlv<'a>, &'a [u8])>,
    },
    /// Any other kind (KEK, password, other): never matches a gateway key.
    Other,
}

/// Most recipient infos read from one message.
pub const MAX_RECIPIENT_INFOS: usize = 1024;

/// Parses the `recipientInfos` SET.
pub fn parse_all<'a>(set: Tlv<'a>) -> Result<Vec<RecipientInfo<'a>>, Error> {
    let set = set.expect(tag::SET, "recipientInfos")?;
    let mut out = Vec::new();
    for ri in set.children() {
        let ri = ri?;
        if out.len() >= MAX_RECIPIENT_INFOS {
            return Err(Error::Limit("recipient info count"));
        }
        out.push(parse_one(ri)?);
    }
    if out.is_empty() {
        return Err(Error::Malformed("no recipient infos".to_owned()));
    }
    Ok(out)
}

fn parse_one(ri: Tlv<'_>) -> Result<RecipientInfo<'_>, Error> {
    match ri.tag {
        tag::SEQUENCE => {
            let mut f = ri.children();
            f.need("ktri version")?.expect(tag::INTEGER, "version")?;
            let rid = f.need("ktri rid")?;
            let alg = f
                .need("ktri algorithm")?
                .expect(tag::SEQUENCE, "algorithm")?;
            let ek = f
                .need("ktri key")?
                .expect(tag::OCTET_STRING, "encryptedKey")?;
            Ok(RecipientInfo::KeyTrans {
                rid,
                alg,
                encrypted_key: ek.body,
            })
        }
        t if t == tag::ctx(1) => {
            let mut f = ri.children();
            f.need("kari version")?.expect(tag::INTEGER, "version")?;
            let originator = f
                .need("kari originator")?
                .expect(tag::ctx(0), "originator")?;
            let orig = originator.children().need("originator key")?;
            if orig.tag != tag::ctx(1) {
                return Err(Error::Unsupported(
                    "key agreement with a static originator key".to_owned(),
                ));
            }
            let mut ok = orig.children();
            ok.need("originator key algorithm")?;
            let point = ok
                .need("originator point")?
                .expect(tag::BIT_STRING, "point")?;
            let originator_point = match point.body.split_first() {
                Some((0, p)) => p.to_vec(),
                _ => return Err(Error::Malformed("originator point".to_owned())),
            };
            let ukm = match f.optional(tag::ctx(1))? {
                Some(u) => Some(
                    u.children()
                        .need("ukm")?
                        .expect(tag::OCTET_STRING, "ukm")?
                        .body
                        .to_vec(),
                ),
                None => None,
            };
            let alg = f
                .need("kari algorithm")?
                .expect(tag::SEQUENCE, "algorithm")?;
            let reks = f
                .need("recipientEncryptedKeys")?
                .expect(tag::SEQUENCE, "keys")?;
            let mut keys = Vec::new();
            for rek in reks.children() {
                let rek = rek?.expect(tag::SEQUENCE, "RecipientEncryptedKey")?;
                let mut r = rek.children();
                let rid = r.need("rid")?;
                let ek = r.need("encryptedKey")?.expect(tag::OCTET_STRING, "key")?;
                if keys.len() >= MAX_RECIPIENT_INFOS {
                    return Err(Error::Limit("recipient info count"));
                }
                keys.push((rid, ek.body));
            }
            Ok(RecipientInfo::KeyAgree {
                originator_point,
                ukm,
                alg,
                keys,
            })
        }
        _ => Ok(RecipientInfo::Other),
    }
}

/// Whether a recipient identifier names `cert`: IssuerAndSerialNumber, a
/// `[0]` SubjectKeyIdentifier, or a `[0]` RecipientKeyIdentifier (kari).
fn rid_matches(rid: &Tlv<'_>, cert: &Certificate) -> bool {
    match rid.tag {
        tag::SEQUENCE => {
            let mut f = rid.children();
            match (f.next(), f.next()) {
                (Some(Ok(issuer)), Some(Ok(serial))) if serial.tag == tag::INTEGER => {
                    cert.matches_issuer_serial(issuer.raw, serial.body)
                }
                _ => false,
            }
        }
        t if t == tag::ctx_prim(0) => cert.matches_key_id(rid.body),
        t if t == tag::ctx(0) => match rid.children().next() {
            Some(Ok(ski)) if ski.tag == tag::OCTET_STRING => cert.matches_key_id(ski.body),
            _ => false,
        },
        _ => false,
    }
}

/// A recovered content key: index of the recipient info, how it was
/// protected, the key.
pub type Candidate = (usize, KeyProtection, Zeroizing<Vec<u8>>);

/// Tries `keys` against the recipient infos; returns the candidate CEKs in
/// order (index of the recipient info, how the key was protected, the CEK).
/// `cek_len` is the content cipher's key length.
pub fn recover_ceks(
    infos: &[RecipientInfo<'_>],
    keys: &[GatewayKey<'_>],
    cek_len: usize,
) -> Result<Vec<Candidate>, Error> {
    let mut out = Vec::new();
    let mut last_err = None;
    for (i, info) in infos.iter().enumerate() {
        for key in keys {
            let r = match (info, key) {
                (
                    RecipientInfo::KeyTrans {
                        rid,
                        alg,
                        encrypted_key,
                    },
                    GatewayKey::Rsa { cert, key },
                ) if rid_matches(rid, cert) => key_transport(*alg, encrypted_key, *key, cek_len),
                (
                    RecipientInfo::KeyAgree {
                        originator_point,
                        ukm,
                        alg,
                        keys: reks,
                    },
                    GatewayKey::Ec { cert, key },
                ) => match reks.iter().find(|(rid, _)| rid_matches(rid, cert)) {
                    Some((_, ek)) => key_agree(*alg, originator_point, ukm.as_deref(), ek, *key),
                    None => continue,
                },
                _ => continue,
            };
            match r {
                Ok((prot, cek)) => out.push((i, prot, cek)),
                // The token being down must defer the message, not look like "no key".
                Err(e) if e.is_temporary() => return Err(e),
                Err(e) => last_err = Some(e),
            }
        }
    }
    if out.is_empty() {
        return Err(last_err.unwrap_or(Error::NoMatchingRecipient));
    }
    Ok(out)
}

/// The OAEP hash named by RSAES-OAEP-params; only MGF1 with the same hash
/// and an empty label are accepted.
fn oaep_hash(params: Option<Tlv<'_>>) -> Result<OaepHash, Error> {
    let Some(params) = params else {
        return Ok(OaepHash::Sha1);
    };
    let mut label = |_| Err(Error::Unsupported("OAEP label".to_owned()));
    let (hash, mgf_hash) = crate::cert::rsa_hash_params(params, "RSAES-OAEP-params", &mut label)?;
    match (hash, mgf_hash) {
        (oid::SHA1, oid::SHA1) => Ok(OaepHash::Sha1),
        (oid::SHA256, oid::SHA256) => Ok(OaepHash::Sha256),
        _ => Err(Error::Unsupported("OAEP hash".to_owned())),
    }
}

fn key_transport(
    alg: Tlv<'_>,
    encrypted_key: &[u8],
    key: &dyn RsaDecryptor,
    cek_len: usize,
) -> Result<(KeyProtection, Zeroizing<Vec<u8>>), Error> {
    let mut a = alg.children();
    let o = a.need("key transport OID")?.expect(tag::OID, "OID")?;
    let params = a.next().transpose()?.filter(|p| p.tag != tag::NULL);
    // RSA ciphertexts may arrive without leading zeros; the token wants k bytes.
    let k = key.public_key().rsa_len();
    if encrypted_key.len() > k {
        return Err(Error::Decrypt);
    }
    let mut ct = vec![0u8; k - encrypted_key.len()];
    ct.extend_from_slice(encrypted_key);
    match o.body {
        oid::RSA_ENCRYPTION => {
            let cek = key.decrypt_pkcs1v15(&ct, cek_len)?;
            Ok((KeyProtection::RsaPkcs1v15, cek))
        }
        oid::RSAES_OAEP => {
            let hash = oaep_hash(params)?;
            let cek = key.decrypt_oaep(hash, &ct).map_err(|e| {
                if e.is_temporary() {
                    Error::Hsm(e)
                } else {
                    Error::Decrypt
                }
            })?;
            let prot = match hash {
                OaepHash::Sha256 => KeyProtection::RsaOaepSha256,
                _ => KeyProtection::RsaOaepSha1,
            };
            Ok((prot, cek))
        }
        _ => Err(Error::Unsupported("key transport algorithm".to_owned())),
    }
}

/// The ECDH KDF hash for a key-agreement scheme OID.
fn kdf_hash(scheme: &[u8]) -> Result<&'static digest::Algorithm, Error> {
    Ok(match scheme {
        oid::ECDH_SHA1_KDF | oid::ECDH_COFACTOR_SHA1_KDF => &digest::SHA1_FOR_LEGACY_USE_ONLY,
        oid::ECDH_SHA224_KDF => &digest::SHA224,
        oid::ECDH_SHA256_KDF | oid::ECDH_COFACTOR_SHA256_KDF => &digest::SHA256,
        oid::ECDH_SHA384_KDF | oid::ECDH_COFACTOR_SHA384_KDF => &digest::SHA384,
        oid::ECDH_SHA512_KDF | oid::ECDH_COFACTOR_SHA512_KDF => &digest::SHA512,
        _ => return Err(Error::Unsupported("key agreement scheme".to_owned())),
    })
}

/// The AES key wrap (RFC 3394) a key-agreement info names.
#[derive(Debug, Clone, Copy)]
enum Wrap {
    /// aws-lc's key wrap (AES-128, AES-256).
    AwsLc(&'static key_wrap::AesBlockCipher),
    /// AES-192 key wrap (which aws-lc lacks), done here over AES-192-ECB.
    Aes192,
}

impl Wrap {
    fn parse(wrap_oid: &[u8]) -> Result<Wrap, Error> {
        match wrap_oid {
            oid::AES128_WRAP => Ok(Wrap::AwsLc(&key_wrap::AES_128)),
            oid::AES192_WRAP => Ok(Wrap::Aes192),
            oid::AES256_WRAP => Ok(Wrap::AwsLc(&key_wrap::AES_256)),
            _ => Err(Error::Unsupported("key wrap algorithm".to_owned())),
        }
    }

    fn key_len(self) -> usize {
        match self {
            Wrap::AwsLc(c) => key_wrap::BlockCipher::key_len(c),
            Wrap::Aes192 => 24,
        }
    }

    fn unwrap(self, kek: &[u8], wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        match self {
            Wrap::AwsLc(c) => {
                let kek = AesKek::new(c, kek).map_err(|_| Error::Decrypt)?;
                let mut cek = Zeroizing::new(vec![0u8; wrapped.len()]);
                let n = kek
                    .unwrap(wrapped, cek.as_mut_slice())
                    .map_err(|_| Error::Decrypt)?
                    .len();
                cek.truncate(n);
                Ok(cek)
            }
            Wrap::Aes192 => aes192_kw_unwrap(kek, wrapped),
        }
    }
}

/// RFC 3394 section 2.2.2 unwrap with AES-192 (index-based form), checking
/// the default IV A6A6A6A6A6A6A6A6 in constant time.
fn aes192_kw_unwrap(kek: &[u8], wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
    use aws_lc_rs::cipher::{AES_192, DecryptingKey, DecryptionContext, UnboundCipherKey};
    if !wrapped.len().is_multiple_of(8) || wrapped.len() < 24 || wrapped.len() > 64 {
        return Err(Error::Decrypt);
    }
    let key = DecryptingKey::ecb(UnboundCipherKey::new(&AES_192, kek).map_err(|_| Error::Decrypt)?)
        .map_err(|_| Error::Decrypt)?;
    let n = wrapped.len() / 8 - 1;
    let (a0, rest) = wrapped.split_at(8);
    let mut a = [0u8; 8];
    a.copy_from_slice(a0);
    let mut r = Zeroizing::new(rest.to_vec());
    for j in (0..6u64).rev() {
        for i in (1..=n).rev() {
            let t = (n as u64) * j + i as u64;
            let mut block = Zeroizing::new([0u8; 16]);
            for (b, x) in block.iter_mut().zip(a.iter().zip(t.to_be_bytes())) {
                *b = x.0 ^ x.1;
            }
            let ri = r.get_mut((i - 1) * 8..i * 8).ok_or(Error::Decrypt)?;
            block
                .get_mut(8..)
                .ok_or(Error::Decrypt)?
                .copy_from_slice(ri);
            key.decrypt(block.as_mut_slice(), DecryptionContext::None)
                .map_err(|_| Error::Decrypt)?;
            a.copy_from_slice(block.get(..8).ok_or(Error::Decrypt)?);
            ri.copy_from_slice(block.get(8..).ok_or(Error::Decrypt)?);
        }
    }
    let iv_ok = aws_lc_rs::constant_time::verify_slices_are_equal(&a, &[0xa6; 8]).is_ok();
    if !iv_ok {
        return Err(Error::Decrypt);
    }
    Ok(r)
}

/// ANSI X9.63 KDF: hash(Z || counter || SharedInfo) blocks up to `len` bytes.
fn x963_kdf(
    hash: &'static digest::Algorithm,
    z: &[u8],
    shared_info: &[u8],
    len: usize,
) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(len + 64));
    let mut counter: u32 = 1;
    while out.len() < len {
        let mut ctx = digest::Context::new(hash);
        ctx.update(z);
        ctx.update(&counter.to_be_bytes());
        ctx.update(shared_info);
        out.extend_from_slice(ctx.finish().as_ref());
        counter = counter.wrapping_add(1);
    }
    out.truncate(len);
    out
}

/// DER ECC-CMS-SharedInfo (RFC 5753 7.2).
fn shared_info(wrap_alg_der: &[u8], ukm: Option<&[u8]>, kek_bits: u32) -> Vec<u8> {
    let supp = der::cons(tag::ctx(2), &[&der::octets(&kek_bits.to_be_bytes())]);
    match ukm {
        Some(u) => der::seq(&[
            wrap_alg_der,
            &der::cons(tag::ctx(0), &[&der::octets(u)]),
            &supp,
        ]),
        None => der::seq(&[wrap_alg_der, &supp]),
    }
}

fn key_agree(
    alg: Tlv<'_>,
    originator_point: &[u8],
    ukm: Option<&[u8]>,
    encrypted_key: &[u8],
    key: &dyn KeyAgreement,
) -> Result<(KeyProtection, Zeroizing<Vec<u8>>), Error> {
    let mut a = alg.children();
    let scheme = a.need("key agreement OID")?.expect(tag::OID, "OID")?;
    let hash = kdf_hash(scheme.body)?;
    let wrap = a
        .need("key wrap algorithm")?
        .expect(tag::SEQUENCE, "wrap")?;
    let wrap_oid = wrap.children().need("wrap OID")?.expect(tag::OID, "OID")?;
    let wrap_kind = Wrap::parse(wrap_oid.body)?;
    let kek_len = wrap_kind.key_len();
    let z = key.agree(originator_point).map_err(|e| {
        if e.is_temporary() {
            Error::Hsm(e)
        } else {
            Error::Decrypt
        }
    })?;
    let info = shared_info(wrap.raw, ukm, (kek_len * 8) as u32);
    let kek = x963_kdf(hash, &z, &info, kek_len);
    let cek = wrap_kind.unwrap(&kek, encrypted_key)?;
    Ok((
        KeyProtection::Ecdh {
            kdf_bits: (hash.output_len() * 8) as u16,
            wrap_bits: (kek_len * 8) as u16,
        },
        cek,
    ))
}

// ---------------------------------------------------------------- writing

/// RSA key transport for new messages. The default is PKCS#1 v1.5, which
/// every S/MIME client reads (gpgsm 2.2 reads no OAEP); the pipeline and
/// `sealgate smime encrypt` both start from it, and OAEP is chosen
/// explicitly (`policy.engine.smime_rsa_oaep`, `--oaep`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RsaTransport {
    /// RSAES-OAEP with SHA-256 and MGF1-SHA-256.
    OaepSha256,
    /// PKCS#1 v1.5 (the default).
    #[default]
    Pkcs1v15,
}

/// Builds the recipient info that gives `cek` to `cert`'s holder; returns
/// the DER and whether it is a key-agreement info (which raises the
/// EnvelopedData version).
pub fn build(cert: &Certificate, cek: &[u8], rsa: RsaTransport) -> Result<(Vec<u8>, bool), Error> {
    match &cert.key {
        CertKey::Rsa { .. } => {
            let public = aws_lc_rs::rsa::PublicEncryptingKey::from_der(&cert.spki)
                .map_err(|_| Error::Certificate("unusable RSA key".to_owned()))?;
            let (alg, ek) = match rsa {
                RsaTransport::OaepSha256 => {
                    let k = aws_lc_rs::rsa::OaepPublicEncryptingKey::new(public)?;
                    let mut out = vec![0u8; k.ciphertext_size()];
                    let n = k
                        .encrypt(&aws_lc_rs::rsa::OAEP_SHA256_MGF1SHA256, cek, &mut out, None)?
                        .len();
                    out.truncate(n);
                    let sha256 = der::seq(&[&der::oid(oid::SHA256)]);
                    let mgf = der::seq(&[&der::oid(oid::MGF1), &sha256]);
                    let params = der::seq(&[
                        &der::cons(tag::ctx(0), &[&sha256]),
                        &der::cons(tag::ctx(1), &[&mgf]),
                    ]);
                    (der::seq(&[&der::oid(oid::RSAES_OAEP), &params]), out)
                }
                RsaTransport::Pkcs1v15 => {
                    let k = aws_lc_rs::rsa::Pkcs1PublicEncryptingKey::new(public)?;
                    let mut out = vec![0u8; k.ciphertext_size()];
                    let n = k.encrypt(cek, &mut out)?.len();
                    out.truncate(n);
                    let null = der::tlv(tag::NULL, &[]);
                    (der::seq(&[&der::oid(oid::RSA_ENCRYPTION), &null]), out)
                }
            };
            let ri = der::seq(&[
                &der::uint(0),
                &cert.issuer_and_serial(),
                &alg,
                &der::octets(&ek),
            ]);
            Ok((ri, false))
        }
        CertKey::Ec { curve, point } => {
            let (agreement, hash, scheme, wrap_oid, wrap_cipher, curve_oid) = match curve {
                sealgate_hsm::Curve::P256 => (
                    &aws_lc_rs::agreement::ECDH_P256,
                    &digest::SHA256,
                    oid::ECDH_SHA256_KDF,
                    oid::AES128_WRAP,
                    &key_wrap::AES_128,
                    oid::P256,
                ),
                _ => (
                    &aws_lc_rs::agreement::ECDH_P384,
                    &digest::SHA384,
                    oid::ECDH_SHA384_KDF,
                    oid::AES256_WRAP,
                    &key_wrap::AES_256,
                    oid::P384,
                ),
            };
            let eph = aws_lc_rs::agreement::PrivateKey::generate(agreement)?;
            let eph_pub = eph.compute_public_key()?;
            let peer = aws_lc_rs::agreement::UnparsedPublicKey::new(agreement, point.as_slice());
            let kek_len = key_wrap::BlockCipher::key_len(wrap_cipher);
            let wrap_alg = der::seq(&[&der::oid(wrap_oid)]);
            let info = shared_info(&wrap_alg, None, (kek_len * 8) as u32);
            let kek = aws_lc_rs::agreement::agree(&eph, peer, Error::Crypto("ECDH"), |z| {
                Ok(x963_kdf(hash, z, &info, kek_len))
            })?;
            let kek = AesKek::new(wrap_cipher, &kek)?;
            let mut wrapped = vec![0u8; cek.len() + 8];
            let n = kek.wrap(cek, &mut wrapped)?.len();
            wrapped.truncate(n);
            let orig_alg = der::seq(&[&der::oid(oid::EC_PUBLIC_KEY), &der::oid(curve_oid)]);
            let originator = der::cons(
                tag::ctx(0),
                &[&der::cons(
                    tag::ctx(1),
                    &[&orig_alg, &der::bits(eph_pub.as_ref())],
                )],
            );
            let alg = der::seq(&[&der::oid(scheme), &wrap_alg]);
            let rek = der::seq(&[&cert.issuer_and_serial(), &der::octets(&wrapped)]);
            let ri = der::cons(
                tag::ctx(1),
                &[&der::uint(3), &originator, &alg, &der::seq(&[&rek])],
            );
            Ok((ri, true))
        }
        CertKey::Other => Err(Error::Certificate(
            "only RSA and P-256/P-384 certificates can be encrypted to".to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn kdf_is_x963() {
        // Two blocks, counter big-endian from 1.
        let k = x963_kdf(&digest::SHA256, b"z", b"info", 40);
        let mut c = digest::Context::new(&digest::SHA256);
        c.update(b"z");
        c.update(&[0, 0, 0, 2]);
        c.update(b"info");
        assert_eq!(&k[32..], &c.finish().as_ref()[..8]);
    }
}
