//! DKIM (RFC 6376) for binding keys taken from mail to an authenticated
//! sender: a key that arrives in mail whose `From` domain signed it
//! (aligned, as DMARC means it: the signing domain is the From domain or
//! a parent of it) was at least sent by that domain's mail system, which
//! an attacker on the path cannot fake; mail without such a signature
//! proves nothing about who sent it.
//!
//! Verification is mail-auth's (Stalwart Labs), with its own resolver on
//! the gateway's DNS server. Only the outcome is kept: [`Dkim`] goes into
//! the harvested entry's trust and into tracking.
//!
//! Trusts: DNS for the signers' public keys (as DKIM does; a domain's key
//! record is public data). Nothing in the message is believed before the
//! signature over it verifies.

use std::net::SocketAddr;

use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator};

/// What DKIM says about a message's `From` domain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum Dkim {
    /// A signature by the From domain (or a parent domain) verifies.
    Pass { domain: String },
    /// Signatures verify, but none is the From domain's.
    Unaligned { domains: Vec<String> },
    /// Signatures are present and none verifies; why.
    Fail { reason: String },
    /// The message is not DKIM-signed.
    None,
    /// The signers' keys could not be fetched now.
    TempError { reason: String },
}

impl Dkim {
    /// Whether the From domain is authenticated.
    pub fn aligned(&self) -> bool {
        matches!(self, Dkim::Pass { .. })
    }

    /// For tracking: `pass (partner.example)`, `none`, …
    pub fn describe(&self) -> String {
        match self {
            Dkim::Pass { domain } => format!("pass ({domain})"),
            Dkim::Unaligned { domains } => format!("pass, not aligned ({})", domains.join(", ")),
            Dkim::Fail { reason } => format!("fail ({reason})"),
            Dkim::None => "none".to_owned(),
            Dkim::TempError { reason } => format!("temperror ({reason})"),
        }
    }
}

/// Whether `signer` (a DKIM d= domain) is aligned with `from_domain`
/// (relaxed: the same domain or a parent of it, never a bare TLD).
pub fn aligned(signer: &str, from_domain: &str) -> bool {
    let signer = signer.trim_end_matches('.').to_ascii_lowercase();
    let from = from_domain.trim_end_matches('.').to_ascii_lowercase();
    signer.contains('.') && (from == signer || from.ends_with(&format!(".{signer}")))
}

/// The verifier.
pub struct DkimVerifier {
    authenticator: MessageAuthenticator,
}

impl DkimVerifier {
    /// Verifies through `dns_server` (default: the system resolver).
    pub fn new(dns_server: Option<SocketAddr>) -> Result<DkimVerifier, String> {
        let authenticator = match dns_server {
            Some(addr) => {
                let resolver = crate::https::resolver(Some(addr)).map_err(|e| e.to_string())?;
                MessageAuthenticator(resolver)
            }
            None => MessageAuthenticator::new_system_conf().map_err(|e| e.to_string())?,
        };
        Ok(DkimVerifier { authenticator })
    }

    /// What DKIM says about `message` for its `From` domain.
    pub async fn verify(&self, message: &[u8], from_domain: &str) -> Dkim {
        let Some(parsed) = AuthenticatedMessage::parse(message) else {
            return Dkim::Fail {
                reason: "the message does not parse".into(),
            };
        };
        let outputs = self.authenticator.verify_dkim(&parsed).await;
        if outputs.is_empty() {
            return Dkim::None;
        }
        let mut passed = Vec::new();
        let mut temporary = None;
        let mut failure = None;
        for out in &outputs {
            match out.result() {
                DkimResult::Pass => {
                    if let Some(sig) = out.signature() {
                        if aligned(&sig.d, from_domain) {
                            return Dkim::Pass {
                                domain: sig.d.to_ascii_lowercase(),
                            };
                        }
                        passed.push(sig.d.to_ascii_lowercase());
                    }
                }
                DkimResult::TempError(e) => temporary = Some(e.to_string()),
                DkimResult::Fail(e) | DkimResult::PermError(e) | DkimResult::Neutral(e) => {
                    failure = Some(e.to_string());
                }
                DkimResult::None => {}
            }
        }
        if !passed.is_empty() {
            return Dkim::Unaligned { domains: passed };
        }
        if let Some(reason) = temporary {
            return Dkim::TempError { reason };
        }
        match failure {
            Some(reason) => Dkim::Fail { reason },
            None => Dkim::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_is_relaxed_but_not_loose() {
        assert!(aligned("partner.example", "partner.example"));
        assert!(aligned("partner.example", "mail.partner.example"));
        assert!(aligned("Partner.Example.", "partner.example"));
        assert!(!aligned("example", "partner.example"), "never a bare TLD");
        assert!(!aligned("evil.example", "partner.example"));
        assert!(!aligned("mail.partner.example", "partner.example"));
        assert!(!aligned("artner.example", "partner.example"));
    }
}
