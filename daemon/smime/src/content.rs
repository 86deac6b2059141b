//! Content encryption: the symmetric ciphers of EnvelopedData and
//! AuthEnvelopedData (RFC 3565 AES-CBC, RFC 5084 AES-GCM, and 3DES-CBC for
//! reading old mail only).
//!
//! Parses the contentEncryptionAlgorithm identifier, decrypts with the
//! content-encryption key (CEK) and encrypts new content with a fresh CEK
//! and IV/nonce from aws-lc's generator.
//!
//! Trusts: the CEK given by the recipient-info code. The algorithm
//! parameters and ciphertext are attacker-controlled. Must never: return
//! plaintext whose GCM tag did not verify, or encrypt with 3DES.

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{
    self, DecryptionContext, EncryptionContext, PaddedBlockDecryptingKey, PaddedBlockEncryptingKey,
    UnboundCipherKey,
};
use aws_lc_rs::iv::FixedLength;
use zeroize::Zeroizing;

use crate::der::{self, Tlv, tag};
use crate::error::Error;
use crate::oid;

/// GCM tag length Sealgate writes and accepts (the only one aws-lc opens).
pub const GCM_TAG_LEN: usize = 16;
const GCM_NONCE_LEN: usize = 12;

/// AES key sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AesSize {
    /// AES-128.
    Aes128,
    /// AES-192.
    Aes192,
    /// AES-256.
    Aes256,
}

impl AesSize {
    /// Key length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            AesSize::Aes128 => 16,
            AesSize::Aes192 => 24,
            AesSize::Aes256 => 32,
        }
    }
}

/// A content-encryption algorithm with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentCipher {
    /// AES in CBC mode with PKCS#7 padding (no integrity of its own).
    AesCbc {
        /// Key size.
        size: AesSize,
        /// The 16-byte IV.
        iv: [u8; 16],
    },
    /// AES-GCM (authenticated; AuthEnvelopedData only).
    AesGcm {
        /// Key size.
        size: AesSize,
        /// The 12-byte nonce.
        nonce: [u8; GCM_NONCE_LEN],
    },
    /// Triple DES in CBC mode: read-only, reported as weak.
    DesEde3Cbc {
        /// The 8-byte IV.
        iv: [u8; 8],
    },
}

/// The algorithm names the decrypt result reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContentAlgorithm {
    /// AES-128-CBC.
    Aes128Cbc,
    /// AES-192-CBC.
    Aes192Cbc,
    /// AES-256-CBC.
    Aes256Cbc,
    /// AES-128-GCM.
    Aes128Gcm,
    /// AES-192-GCM.
    Aes192Gcm,
    /// AES-256-GCM.
    Aes256Gcm,
    /// 3DES-CBC (weak).
    DesEde3Cbc,
}

impl ContentAlgorithm {
    /// Whether the algorithm is too weak to be trusted (3DES).
    pub fn is_weak(self) -> bool {
        self == ContentAlgorithm::DesEde3Cbc
    }

    /// Whether the content carries its own integrity protection (GCM).
    pub fn is_authenticated(self) -> bool {
        matches!(
            self,
            ContentAlgorithm::Aes128Gcm | ContentAlgorithm::Aes192Gcm | ContentAlgorithm::Aes256Gcm
        )
    }
}

fn iv_param<const N: usize>(params: Option<Tlv<'_>>) -> Result<[u8; N], Error> {
    let p = params.ok_or_else(|| Error::Malformed("missing IV".to_owned()))?;
    let p = p.expect(tag::OCTET_STRING, "IV")?;
    p.body
        .try_into()
        .map_err(|_| Error::Malformed("IV of the wrong length".to_owned()))
}

impl ContentCipher {
    /// Parses a contentEncryptionAlgorithm AlgorithmIdentifier.
    pub fn parse(alg: Tlv<'_>) -> Result<ContentCipher, Error> {
        let mut kids = alg.expect(tag::SEQUENCE, "content algorithm")?.children();
        let oid = kids
            .need("content algorithm OID")?
            .expect(tag::OID, "OID")?;
        let params = kids.next().transpose()?;
        let cbc = |size| -> Result<ContentCipher, Error> {
            Ok(ContentCipher::AesCbc {
                size,
                iv: iv_param(params)?,
            })
        };
        let gcm = |size| -> Result<ContentCipher, Error> {
            // GCMParameters ::= SEQUENCE { aes-nonce OCTET STRING, aes-ICVlen INTEGER DEFAULT 12 }
            let p = params
                .ok_or_else(|| Error::Malformed("missing GCM parameters".to_owned()))?
                .expect(tag::SEQUENCE, "GCM parameters")?;
            let mut f = p.children();
            let nonce = f
                .need("GCM nonce")?
                .expect(tag::OCTET_STRING, "GCM nonce")?;
            let nonce: [u8; GCM_NONCE_LEN] = nonce
                .body
                .try_into()
                .map_err(|_| Error::Unsupported("GCM nonces other than 12 bytes".to_owned()))?;
            let icv = match f.next().transpose()? {
                Some(t) => t.small_uint()?,
                None => 12,
            };
            if icv != GCM_TAG_LEN as u64 {
                return Err(Error::Unsupported(format!("GCM tag length {icv}")));
            }
            Ok(ContentCipher::AesGcm { size, nonce })
        };
        match oid.body {
            oid::AES128_CBC => cbc(AesSize::Aes128),
            oid::AES192_CBC => cbc(AesSize::Aes192),
            oid::AES256_CBC => cbc(AesSize::Aes256),
            oid::AES128_GCM => gcm(AesSize::Aes128),
            oid::AES192_GCM => gcm(AesSize::Aes192),
            oid::AES256_GCM => gcm(AesSize::Aes256),
            oid::DES_EDE3_CBC => Ok(ContentCipher::DesEde3Cbc {
                iv: iv_param(params)?,
            }),
            _ => Err(Error::Unsupported(
                "content-encryption algorithm".to_owned(),
            )),
        }
    }

    /// The algorithm's name for reports.
    pub fn algorithm(&self) -> ContentAlgorithm {
        match self {
            ContentCipher::AesCbc { size, .. } => match size {
                AesSize::Aes128 => ContentAlgorithm::Aes128Cbc,
                AesSize::Aes192 => ContentAlgorithm::Aes192Cbc,
                AesSize::Aes256 => ContentAlgorithm::Aes256Cbc,
            },
            ContentCipher::AesGcm { size, .. } => match size {
                AesSize::Aes128 => ContentAlgorithm::Aes128Gcm,
                AesSize::Aes192 => ContentAlgorithm::Aes192Gcm,
                AesSize::Aes256 => ContentAlgorithm::Aes256Gcm,
            },
            ContentCipher::DesEde3Cbc { .. } => ContentAlgorithm::DesEde3Cbc,
        }
    }

    /// Length of the CEK in bytes.
    pub fn key_len(&self) -> usize {
        match self {
            ContentCipher::AesCbc { size, .. } | ContentCipher::AesGcm { size, .. } => {
                size.key_len()
            }
            ContentCipher::DesEde3Cbc { .. } => 24,
        }
    }

    /// The DER AlgorithmIdentifier (GCM with the ICV length written out:
    /// OpenSSL needs it explicitly).
    pub fn to_der(&self) -> Vec<u8> {
        match self {
            ContentCipher::AesCbc { size, iv } => {
                let o = match size {
                    AesSize::Aes128 => oid::AES128_CBC,
                    AesSize::Aes192 => oid::AES192_CBC,
                    AesSize::Aes256 => oid::AES256_CBC,
                };
                der::seq(&[&der::oid(o), &der::octets(iv)])
            }
            ContentCipher::AesGcm { size, nonce } => {
                let o = match size {
                    AesSize::Aes128 => oid::AES128_GCM,
                    AesSize::Aes192 => oid::AES192_GCM,
                    AesSize::Aes256 => oid::AES256_GCM,
                };
                let params = der::seq(&[&der::octets(nonce), &der::uint(GCM_TAG_LEN as u64)]);
                der::seq(&[&der::oid(o), &params])
            }
            ContentCipher::DesEde3Cbc { iv } => {
                der::seq(&[&der::oid(oid::DES_EDE3_CBC), &der::octets(iv)])
            }
        }
    }

    /// A new AES-256 cipher (CBC or GCM) with a random IV or nonce.
    pub fn fresh_aes256(gcm: bool) -> Result<ContentCipher, Error> {
        if gcm {
            let mut nonce = [0u8; GCM_NONCE_LEN];
            aws_lc_rs::rand::fill(&mut nonce)?;
            Ok(ContentCipher::AesGcm {
                size: AesSize::Aes256,
                nonce,
            })
        } else {
            let mut iv = [0u8; 16];
            aws_lc_rs::rand::fill(&mut iv)?;
            Ok(ContentCipher::AesCbc {
                size: AesSize::Aes256,
                iv,
            })
        }
    }

    /// Decrypts `ciphertext` with `cek`. For GCM, `aad` is the DER of the
    /// authenticated attributes (or empty) and `tag` the mac; every failure
    /// is [`Error::Decrypt`].
    pub fn decrypt(
        &self,
        cek: &[u8],
        ciphertext: Vec<u8>,
        aad: &[u8],
        mac: Option<&[u8]>,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let mut buf = Zeroizing::new(ciphertext);
        let n = self.decrypt_in_place(cek, buf.as_mut_slice(), aad, mac)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Decrypts `buf` in place with `cek` and returns the length of the
    /// plaintext at its start (CBC padding removed). For GCM the tag `mac`
    /// is verified over the whole of `buf` and `aad` before the length is
    /// returned; on any failure ([`Error::Decrypt`]) the contents of `buf`
    /// are unspecified and must not be used.
    pub fn decrypt_in_place(
        &self,
        cek: &[u8],
        buf: &mut [u8],
        aad: &[u8],
        mac: Option<&[u8]>,
    ) -> Result<usize, Error> {
        if cek.len() != self.key_len() {
            return Err(Error::Decrypt);
        }
        match self {
            ContentCipher::AesCbc { size, iv } => cbc_decrypt(
                cbc_alg(*size),
                cek,
                DecryptionContext::Iv128(FixedLength::from(*iv)),
                buf,
            ),
            ContentCipher::DesEde3Cbc { iv } => {
                #[allow(deprecated)]
                let alg = &cipher::DES_EDE3_FOR_LEGACY_USE_ONLY;
                cbc_decrypt(
                    alg,
                    cek,
                    DecryptionContext::Iv64(FixedLength::from(*iv)),
                    buf,
                )
            }
            ContentCipher::AesGcm { size, nonce } => {
                let mac = mac.ok_or(Error::Decrypt)?;
                if mac.len() != GCM_TAG_LEN {
                    return Err(Error::Decrypt);
                }
                let key = UnboundKey::new(gcm_alg(*size), cek).map_err(|_| Error::Decrypt)?;
                LessSafeKey::new(key)
                    .open_in_place_separate_tag(
                        Nonce::assume_unique_for_key(*nonce),
                        Aad::from(aad),
                        mac,
                        buf,
                    )
                    .map(|plain| plain.len())
                    .map_err(|_| Error::Decrypt)
            }
        }
    }

    /// Encrypts `plaintext` in place with `cek`; returns the ciphertext and,
    /// for GCM, the tag over `aad`. 3DES is refused.
    pub fn encrypt(
        &self,
        cek: &[u8],
        plaintext: Vec<u8>,
        aad: &[u8],
    ) -> Result<(Vec<u8>, Option<Vec<u8>>), Error> {
        let mut buf = plaintext;
        match self {
            ContentCipher::AesCbc { size, iv } => {
                let key = UnboundCipherKey::new(cbc_alg(*size), cek)?;
                let key = PaddedBlockEncryptingKey::cbc_pkcs7(key)?;
                key.less_safe_encrypt(&mut buf, EncryptionContext::Iv128(FixedLength::from(*iv)))?;
                Ok((buf, None))
            }
            ContentCipher::AesGcm { size, nonce } => {
                let key = LessSafeKey::new(UnboundKey::new(gcm_alg(*size), cek)?);
                let tag = key.seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(*nonce),
                    Aad::from(aad),
                    &mut buf,
                )?;
                Ok((buf, Some(tag.as_ref().to_vec())))
            }
            ContentCipher::DesEde3Cbc { .. } => Err(Error::Unsupported(
                "3DES is read-only: Sealgate never encrypts with it".to_owned(),
            )),
        }
    }
}

/// CBC decryption in place with PKCS#7 padding removed; returns the
/// plaintext length. Bad padding is [`Error::Decrypt`] like every failure.
fn cbc_decrypt(
    alg: &'static cipher::Algorithm,
    cek: &[u8],
    iv: DecryptionContext,
    buf: &mut [u8],
) -> Result<usize, Error> {
    let key = UnboundCipherKey::new(alg, cek).map_err(|_| Error::Decrypt)?;
    let key = PaddedBlockDecryptingKey::cbc_pkcs7(key).map_err(|_| Error::Decrypt)?;
    key.decrypt(buf, iv)
        .map(|plain| plain.len())
        .map_err(|_| Error::Decrypt)
}

fn cbc_alg(size: AesSize) -> &'static cipher::Algorithm {
    match size {
        AesSize::Aes128 => &cipher::AES_128,
        AesSize::Aes192 => &cipher::AES_192,
        AesSize::Aes256 => &cipher::AES_256,
    }
}

fn gcm_alg(size: AesSize) -> &'static aead::Algorithm {
    match size {
        AesSize::Aes128 => &aead::AES_128_GCM,
        AesSize::Aes192 => &aead::AES_192_GCM,
        AesSize::Aes256 => &aead::AES_256_GCM,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        for gcm in [false, true] {
            let c = ContentCipher::fresh_aes256(gcm).unwrap();
            let again = ContentCipher::parse(der::read_all(&c.to_der()).unwrap()).unwrap();
            assert_eq!(again, c);
            let cek = [7u8; 32];
            let (ct, tag) = c.encrypt(&cek, b"hello world".to_vec(), b"aad").unwrap();
            let pt = c.decrypt(&cek, ct.clone(), b"aad", tag.as_deref()).unwrap();
            assert_eq!(pt.as_slice(), b"hello world");
            if gcm {
                let mut bad = ct.clone();
                if let Some(b) = bad.first_mut() {
                    *b ^= 1;
                }
                assert!(c.decrypt(&cek, bad, b"aad", tag.as_deref()).is_err());
                assert!(c.decrypt(&cek, ct, b"other", tag.as_deref()).is_err());
            }
        }
    }
}
