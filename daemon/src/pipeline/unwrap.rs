//! Unwrap stage: a message encrypted for the gateway is opened on the token,
//! so policy and content checks see the plaintext and each recipient gets
//! it in the form the policy decides.
//!
//! Being encrypted for the gateway means the sender asked for encryption
//! (click-to-encrypt): the caller marks the facts so every external
//! recipient requires a secure method. A message encrypted for someone else
//! is left as it is (end-to-end encrypted mail passes through). A message
//! for us that cannot be opened is refused for good (the sender learns why,
//! without any plaintext); a token outage defers it. CBC content that shows
//! the marks of malleation (Efail gadgets) is refused.
//!
//! Trusts: the token and the gateway's own certificates; nothing in the
//! message (the S/MIME engine parses it within its limits).

use sealgate_hsm::{Hsm, TokenKey};
use sealgate_smime::cert::CertKey;
use sealgate_smime::efail::CbcVerdict;
use sealgate_smime::{Certificate, GatewayKey};

use super::PipelineError;

/// Labels of the token keys that open S/MIME mail for the gateway.
pub const SMIME_KEY_LABELS: &[&str] = &["gateway-decrypt", "gateway-ec-derive"];

/// Label of the token key that signs for the gateway.
pub const SIGN_KEY_LABEL: &str = "gateway-sign";

/// The gateway's keys on the token, with their certificates: those that
/// open mail for the gateway, and the one that signs.
pub struct GatewayKeys {
    smime: Vec<(Certificate, TokenKey)>,
    signer: Option<(TokenKey, Vec<Certificate>)>,
}

impl std::fmt::Debug for GatewayKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayKeys")
            .field("smime", &self.smime.len())
            .finish()
    }
}

impl GatewayKeys {
    /// Loads every key in `labels` that has a certificate on the token;
    /// keys without one are skipped (and named in the log). Blocking.
    pub fn load(hsm: &Hsm, labels: &[&str]) -> GatewayKeys {
        let mut smime = Vec::new();
        for label in labels {
            let cert = hsm
                .certificate_chain(label)
                .ok()
                .and_then(|chain| chain.into_iter().next())
                .and_then(|der| Certificate::from_der(&der).ok());
            let Some(cert) = cert else {
                tracing::info!(%label, "no certificate for this token key: it opens no S/MIME mail");
                continue;
            };
            let key = match cert.key {
                CertKey::Ec { .. } => hsm.key_agreement(label),
                _ => hsm.decryptor(label),
            };
            match key {
                Ok(key) => smime.push((cert, key)),
                Err(e) => tracing::warn!(%label, error = %e, "token key not usable for decryption"),
            }
        }
        let chain: Vec<Certificate> = hsm
            .certificate_chain(SIGN_KEY_LABEL)
            .map(|ders| {
                ders.iter()
                    .filter_map(|d| Certificate::from_der(d).ok())
                    .collect()
            })
            .unwrap_or_default();
        let signer = match (chain.is_empty(), hsm.signer(SIGN_KEY_LABEL)) {
            (false, Ok(key)) => Some((key, chain)),
            _ => {
                tracing::info!(
                    label = SIGN_KEY_LABEL,
                    "no signing key with a certificate: the gateway does not sign"
                );
                None
            }
        };
        GatewayKeys { smime, signer }
    }

    pub fn is_empty(&self) -> bool {
        self.smime.is_empty() && self.signer.is_none()
    }

    /// The gateway's S/MIME signing identity; correspondents are told to
    /// encrypt to the gateway's RSA decryption certificate, if there is one.
    pub fn signing(&self) -> Option<sealgate_smime::SigningIdentity<'_>> {
        let (key, chain) = self.signer.as_ref()?;
        Some(sealgate_smime::SigningIdentity {
            key,
            chain,
            encryption_cert: self
                .smime
                .iter()
                .map(|(cert, _)| cert)
                .find(|cert| matches!(cert.key, CertKey::Rsa { .. })),
        })
    }

    fn smime_keys(&self) -> Vec<GatewayKey<'_>> {
        self.smime
            .iter()
            .map(|(cert, key)| match cert.key {
                CertKey::Ec { .. } => GatewayKey::Ec { cert, key },
                _ => GatewayKey::Rsa { cert, key },
            })
            .collect()
    }
}

/// What unwrapping did.
#[derive(Debug)]
pub enum Unwrapped {
    /// Not encrypted for the gateway (or no keys): the message goes on as it is.
    AsIs,
    /// Opened: the decrypted message and the verdict for the verdict header.
    Opened { content: Vec<u8>, verdict: String },
}

/// Opens `content` if it is S/MIME encrypted for one of the gateway's keys.
pub fn unwrap(content: &[u8], keys: Option<&GatewayKeys>) -> Result<Unwrapped, PipelineError> {
    let Some(keys) = keys.filter(|k| !k.smime.is_empty()) else {
        return Ok(Unwrapped::AsIs);
    };
    match sealgate_smime::decrypt_message(content, &keys.smime_keys()) {
        Ok(decrypted) => {
            let report = &decrypted.report;
            let integrity = match &report.cbc_check {
                _ if report.integrity_protected => "aead".to_owned(),
                Some(CbcVerdict::Malleated(why)) => {
                    return Err(PipelineError::Permanent(format!(
                        "the encrypted content shows signs of tampering ({why}); not delivered"
                    )));
                }
                Some(CbcVerdict::Clean) => "cbc-checked".to_owned(),
                Some(CbcVerdict::Unverifiable(_)) | None => "none".to_owned(),
                Some(_) => "none".to_owned(),
            };
            let verdict = format!(
                "decrypted=smime; cipher={:?}; integrity={integrity}{}",
                report.content_algorithm,
                if report.weak { "; weak-cipher" } else { "" }
            );
            Ok(Unwrapped::Opened {
                content: decrypted.message.to_vec(),
                verdict,
            })
        }
        Err(sealgate_smime::Error::WrongType(_) | sealgate_smime::Error::NoMatchingRecipient) => {
            Ok(Unwrapped::AsIs)
        }
        Err(e) if e.is_temporary() => Err(PipelineError::Temporary(format!(
            "the key store is unavailable to decrypt the message: {e}"
        ))),
        Err(e) => Err(PipelineError::Permanent(format!(
            "the message is encrypted for the gateway but could not be decrypted: {e}"
        ))),
    }
}
