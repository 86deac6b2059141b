//! Why a recipient is where it is: one typed reason, from where it arises
//! to the DSN, the queue listing and tracking.
//!
//! Each [`Reason`] knows its RFC 3463 enhanced status code (subject and
//! detail; the class is 4 for a delay and 5 for a failure, decided by what
//! is reported), whether it is temporary, and its words for people. A
//! next hop's reply keeps the next hop's own code, read once where the
//! reply arrives. Nothing recovers a code by parsing our own text later.
//!
//! Codes (RFC 3463, RFC 5248's registry):
//! - policy refusal: 5.7.1 (delivery not authorized, message refused);
//! - encryption required but no key, the key store unavailable, a message
//!   for the gateway that cannot be decrypted, the fail-closed guard:
//!   X.7.5 (cryptographic failure: a key was not available or not valid);
//! - TLS required but not to be had: 4.7.5 as well (RFC 7672 uses it);
//! - a message that cannot be parsed: 5.6.0; tampered CBC content: 5.7.5;
//! - the queue lifetime ran out: X.4.7 (delivery time expired);
//! - the next hop could not be reached: 4.4.1 (no answer) or 4.4.2 (bad
//!   connection); DNS: 4.4.3 (temporary) or 5.1.2 (bad destination
//!   system), null MX 5.1.10 (RFC 7505);
//! - the gateway's own trouble (storage, configuration): 4.3.0 / 4.3.5.

use serde::{Deserialize, Deserializer, Serialize};

/// An RFC 3463 status code without its class: `subject.detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub subject: u16,
    pub detail: u16,
}

impl Status {
    const fn new(subject: u16, detail: u16) -> Status {
        Status { subject, detail }
    }

    /// The full code in `class` (4: delayed, 5: failed).
    pub fn with_class(self, class: u8) -> String {
        format!("{class}.{}.{}", self.subject, self.detail)
    }
}

/// Why a recipient is not (yet) delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// The next hop answered this (its code kept as it came).
    Remote {
        /// The basic reply code (`450`, `550`).
        code: u16,
        /// Its enhanced status code (`5.1.1`), if it gave one.
        enhanced: Option<String>,
        text: String,
    },
    /// The next hop could not be reached or the connection broke.
    Network { detail: String, no_answer: bool },
    /// DNS could not say where to deliver (`permanent`: the domain has no
    /// mail host; null MX).
    Dns {
        detail: String,
        permanent: bool,
        null_mx: bool,
    },
    /// The domain requires TLS and the next hop does not offer it (or the
    /// handshake failed): never sent in clear.
    TlsRequired { detail: String },
    /// Refused by the policy.
    PolicyRefused { explanation: String },
    /// Put aside by the policy (or because it came from outside and cannot
    /// be processed) for an administrator.
    Quarantined { explanation: String },
    /// Encryption is required and there is no usable certificate or key.
    NoKey { detail: String },
    /// The recipient's key is being looked up (key discovery): it waits,
    /// without a notice, and is looked at again when the lookup ends.
    KeyLookup { detail: String },
    /// A different key turned up for the recipient and waits for an
    /// administrator's review: which key is theirs is in question.
    KeyReview { detail: String },
    /// The fail-closed guard stopped a copy that had to be encrypted.
    GuardStopped { detail: String },
    /// The gateway's key store (the token) is not available now.
    KeyStoreUnavailable { detail: String },
    /// The recipient's portal mailbox is over its quota (RFC 3463 X.2.2).
    MailboxFull { detail: String },
    /// Encrypted for the gateway, but it does not open.
    Undecryptable { detail: String },
    /// CBC content with the marks of malleation (Efail).
    Tampered { detail: String },
    /// The message cannot be processed (MIME beyond the limits, broken).
    Unprocessable { detail: String },
    /// Held or quarantined longer than the hold lifetime.
    WaitedTooLong { secs: u64, reason: Box<Reason> },
    /// Still undelivered after the queue lifetime.
    Expired { secs: u64, last: Box<Reason> },
    /// The gateway's own trouble (storage, a spool file, a notice not queued).
    Local { detail: String, config: bool },
    /// Written before reasons were typed (a queue from an earlier version).
    Legacy { text: String },
}

impl Reason {
    pub fn local(detail: impl Into<String>) -> Reason {
        Reason::Local {
            detail: detail.into(),
            config: false,
        }
    }

    /// The reply of a next hop, with the enhanced code read from its text.
    pub fn remote(code: u16, text: &str) -> Reason {
        let first = text.split(' ').next().unwrap_or("");
        let enhanced = (first.split('.').count() == 3
            && first
                .split('.')
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit())))
        .then(|| first.to_owned());
        Reason::Remote {
            code,
            enhanced,
            text: text.to_owned(),
        }
    }

    /// Whether trying again later can help.
    pub fn is_temporary(&self) -> bool {
        match self {
            Reason::Remote { code, .. } => *code < 500,
            Reason::Dns { permanent, .. } => !permanent,
            Reason::Network { .. }
            | Reason::TlsRequired { .. }
            | Reason::NoKey { .. }
            | Reason::KeyLookup { .. }
            | Reason::KeyReview { .. }
            | Reason::GuardStopped { .. }
            | Reason::KeyStoreUnavailable { .. }
            | Reason::MailboxFull { .. }
            | Reason::Quarantined { .. }
            | Reason::Local { .. }
            | Reason::Legacy { .. } => true,
            Reason::PolicyRefused { .. }
            | Reason::Undecryptable { .. }
            | Reason::Tampered { .. }
            | Reason::Unprocessable { .. }
            | Reason::WaitedTooLong { .. }
            | Reason::Expired { .. } => false,
        }
    }

    /// The code's subject and detail.
    pub fn status(&self) -> Status {
        match self {
            Reason::Remote { enhanced, code, .. } => enhanced
                .as_deref()
                .and_then(|e| {
                    let mut parts = e.split('.').skip(1).map(|p| p.parse::<u16>().ok());
                    Some(Status::new(parts.next()??, parts.next()??))
                })
                .unwrap_or(match code {
                    550 | 551 | 553 => Status::new(1, 0),
                    552 => Status::new(3, 4),
                    _ => Status::new(0, 0),
                }),
            Reason::Network { no_answer, .. } => Status::new(4, if *no_answer { 1 } else { 2 }),
            Reason::Dns {
                permanent, null_mx, ..
            } => match (permanent, null_mx) {
                (_, true) => Status::new(1, 10),
                (true, false) => Status::new(1, 2),
                (false, false) => Status::new(4, 3),
            },
            Reason::TlsRequired { .. }
            | Reason::NoKey { .. }
            | Reason::KeyLookup { .. }
            | Reason::KeyReview { .. }
            | Reason::GuardStopped { .. }
            | Reason::KeyStoreUnavailable { .. }
            | Reason::Undecryptable { .. }
            | Reason::Tampered { .. } => Status::new(7, 5),
            Reason::PolicyRefused { .. } | Reason::Quarantined { .. } => Status::new(7, 1),
            Reason::Unprocessable { .. } => Status::new(6, 0),
            Reason::MailboxFull { .. } => Status::new(2, 2),
            Reason::WaitedTooLong { reason, .. } => reason.status(),
            Reason::Expired { .. } => Status::new(4, 7),
            Reason::Local { config, .. } => Status::new(3, if *config { 5 } else { 0 }),
            Reason::Legacy { .. } => Status::new(0, 0),
        }
    }

    /// The code as it stands now (class 4 if temporary, else 5).
    pub fn code(&self) -> String {
        self.status()
            .with_class(if self.is_temporary() { 4 } else { 5 })
    }

    /// The words for tracking, the queue listing and the DSN.
    pub fn text(&self) -> String {
        match self {
            Reason::Remote { code, text, .. } => format!("{code} {text}"),
            Reason::Network { detail, .. }
            | Reason::TlsRequired { detail }
            | Reason::GuardStopped { detail }
            | Reason::Local { detail, .. } => detail.clone(),
            Reason::Dns { detail, .. } => detail.clone(),
            Reason::PolicyRefused { explanation } => format!("refused by policy ({explanation})"),
            Reason::Quarantined { explanation } => explanation.clone(),
            Reason::NoKey { detail } => format!("encryption required and {detail}"),
            Reason::KeyLookup { detail } => format!("waiting for key discovery: {detail}"),
            Reason::KeyReview { detail } => {
                format!("waiting for an administrator to review a key change: {detail}")
            }
            Reason::KeyStoreUnavailable { detail } => {
                format!("the key store is unavailable ({detail})")
            }
            Reason::MailboxFull { detail } => format!("the recipient's mailbox is full ({detail})"),
            Reason::Undecryptable { detail } => format!(
                "the message is encrypted for the gateway but could not be decrypted: {detail}"
            ),
            Reason::Tampered { detail } => {
                format!("the encrypted content shows signs of tampering ({detail}); not delivered")
            }
            Reason::Unprocessable { detail } => {
                format!("the message cannot be processed: {detail}")
            }
            Reason::WaitedTooLong { secs, reason } => format!(
                "not delivered: waited {secs} s without being released ({})",
                reason.text()
            ),
            Reason::Expired { secs, last } => format!(
                "message expired after {secs} s in the queue; last error: {}",
                last.text()
            ),
            Reason::Legacy { text } => text.clone(),
        }
    }

    /// The next hop's own reply, for the DSN's `Diagnostic-Code`.
    pub fn remote_reply(&self) -> Option<String> {
        match self {
            Reason::Remote { code, text, .. } => Some(format!("{code} {text}")),
            Reason::Expired { last, .. } => last.remote_reply(),
            _ => None,
        }
    }

    /// The view for front ends.
    pub fn view(&self) -> sealgate_api::ops::queue::Reason {
        sealgate_api::ops::queue::Reason {
            code: self.code(),
            temporary: self.is_temporary(),
            text: self.text(),
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text())
    }
}

/// Reads a reason in the typed form, or the plain text that versions
/// before typed reasons wrote into the queue state (`#[serde(deserialize_with)]`).
pub fn typed_or_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Reason, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Typed(Reason),
        Text(String),
    }
    Ok(match Either::deserialize(deserializer)? {
        Either::Typed(reason) => reason,
        Either::Text(text) => Reason::Legacy { text },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn codes() {
        let r = Reason::remote(550, "5.1.1 no such user");
        assert_eq!(r.code(), "5.1.1");
        assert!(!r.is_temporary());
        assert_eq!(Reason::remote(451, "greylisted").code(), "4.0.0");
        let refused = Reason::PolicyRefused {
            explanation: "rule 1".into(),
        };
        assert_eq!(refused.code(), "5.7.1");
        let no_key = Reason::NoKey {
            detail: "no certificate".into(),
        };
        assert_eq!(no_key.code(), "4.7.5");
        let waited = Reason::WaitedTooLong {
            secs: 10,
            reason: Box::new(no_key),
        };
        assert_eq!(waited.code(), "5.7.5");
        let expired = Reason::Expired {
            secs: 10,
            last: Box::new(Reason::remote(451, "4.7.1 greylisted")),
        };
        assert_eq!(expired.code(), "5.4.7");
        assert_eq!(
            expired.remote_reply().as_deref(),
            Some("451 4.7.1 greylisted")
        );
    }

    #[test]
    fn typed_and_legacy_forms_read_back() {
        let r = Reason::Dns {
            detail: "SERVFAIL".into(),
            permanent: false,
            null_mx: false,
        };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Reason>(&json).unwrap(), r);
        #[derive(Deserialize)]
        struct Old {
            #[serde(deserialize_with = "typed_or_text")]
            reason: Reason,
        }
        let old = serde_json::from_str::<Old>("{\"reason\": \"connection refused\"}")
            .unwrap()
            .reason;
        assert_eq!(
            old,
            Reason::Legacy {
                text: "connection refused".into()
            }
        );
        let nested = Reason::Expired {
            secs: 1,
            last: Box::new(r),
        };
        let json = serde_json::to_string(&nested).unwrap();
        assert_eq!(serde_json::from_str::<Reason>(&json).unwrap(), nested);
    }
}
