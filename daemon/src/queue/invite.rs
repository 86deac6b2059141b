//! Invitations to held recipients: a short message from the gateway to
//! someone whose mail must reach them encrypted while the gateway has no
//! certificate or key for them yet, saying how to provide one (reply with
//! a signed S/MIME message, or send an OpenPGP key). The reply passes the
//! gateway inbound, `pipeline::harvest` stores what it carries, and the
//! held mail is released encrypted.
//!
//! The invitation names the sender and nothing else of the held message:
//! no subject, no content. It is S/MIME-signed by the gateway's signing key
//! when there is one (the recipient's client learns the gateway's
//! certificate) and carries the gateway's OpenPGP certificate in an
//! `Autocrypt:` header when that certificate names the From address, so
//! the reply can be encrypted too. It goes out with the null sender (RFC
//! 3834: no bounce loops) and marked as a gateway notice, so the policy
//! does not decide over it (it would hold it like the mail it is about).
//!
//! Trusts: the configuration and the gateway's own keys.

use crate::address::Address;
use crate::config::Config;
use crate::envelope::Envelope;
use crate::keys::KeyStore;

/// An invitation ready to queue.
#[derive(Debug)]
pub struct Invitation {
    pub envelope: Envelope,
    pub content: Vec<u8>,
    /// What it carries, for tracking: "signed", "Autocrypt key", both or neither.
    pub carries: String,
}

/// Why no invitation was written now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InviteError {
    /// The token could not sign it now; try with the next held message.
    #[error("the invitation could not be signed now: {0}")]
    Temporary(String),
}

/// The invitation for `recipient`, whose mail from `sender` is held.
/// `queue_id` is the held message's (it only makes the Message-ID unique).
pub fn build(
    config: &Config,
    keys: &KeyStore,
    sender: &Address,
    recipient: &Address,
    queue_id: &str,
) -> Result<Invitation, InviteError> {
    let openpgp = keys.keys().and_then(|k| k.openpgp());
    let openpgp_addresses = openpgp.map(|id| id.email_addresses()).unwrap_or_default();
    let from = from_address(config, &openpgp_addresses);
    let mut head = String::new();
    head.push_str(&format!("From: Secure mail gateway <{from}>\r\n"));
    head.push_str(&format!("To: <{recipient}>\r\n"));
    head.push_str(&format!(
        "Subject: Encrypted message for you from {sender}: please send your certificate or key\r\n"
    ));
    head.push_str(&format!("Date: {}\r\n", crate::util::rfc5322_date_now()));
    head.push_str(&format!(
        "Message-ID: <{queue_id}.{}.invite@{}>\r\n",
        crate::envelope::now_ms(),
        config.hostname
    ));
    head.push_str("Auto-Submitted: auto-generated\r\n");
    let mut carries = Vec::new();
    let autocrypt = openpgp
        .filter(|_| {
            openpgp_addresses
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&from))
        })
        .and_then(|id| id.export_binary().ok())
        .map(|cert| crate::pipeline::render::autocrypt_field(&from, &cert));
    if let Some(field) = &autocrypt {
        head.push_str(field);
        carries.push("Autocrypt key");
    }
    head.push_str("MIME-Version: 1.0\r\n");
    let body = format!(
        "Content-Type: text/plain; charset=us-ascii\r\n\
         Content-Transfer-Encoding: 7bit\r\n\r\n{}",
        instructions(config, sender, recipient, autocrypt.is_some())
    );
    let mut content = head.into_bytes();
    content.extend_from_slice(body.as_bytes());
    match crate::pipeline::render::sign(&content, keys) {
        Ok(signed) => {
            content = signed;
            carries.push("signed");
        }
        Err((true, why)) => return Err(InviteError::Temporary(why)),
        // No signing key: unsigned, but still an invitation.
        Err((false, _)) => {}
    }
    let envelope = Envelope {
        gateway_notice: true,
        ..Envelope::from_gateway(
            recipient.clone(),
            &config.hostname,
            format!("invite-{queue_id}"),
        )
    };
    let carries = if carries.is_empty() {
        "unsigned, no key".to_owned()
    } else {
        carries.join(", ")
    };
    Ok(Invitation {
        envelope,
        content,
        carries,
    })
}

/// The configured From address, else the gateway's OpenPGP address, else postmaster.
fn from_address(config: &Config, openpgp_addresses: &[String]) -> String {
    config
        .invitations
        .from
        .clone()
        .or_else(|| openpgp_addresses.first().cloned())
        .unwrap_or_else(|| format!("postmaster@{}", config.hostname))
}

/// The text the recipient reads.
fn instructions(config: &Config, sender: &Address, recipient: &Address, has_key: bool) -> String {
    let days = config
        .delivery
        .hold_lifetime_secs
        .div_ceil(24 * 3600)
        .max(1);
    let encrypt_reply = if has_key {
        "This message is signed by the gateway and carries the gateway's\r\n\
         OpenPGP key, so you can encrypt your reply as well.\r\n\r\n"
    } else {
        ""
    };
    format!(
        "Hello,\r\n\r\n\
         {sender} has sent you a message that must reach you encrypted.\r\n\
         The secure mail gateway of the sender's organisation ({host}) does\r\n\
         not have a certificate or key for {recipient} yet, so it keeps the\r\n\
         message until you provide one. It is then sent to you at once,\r\n\
         encrypted for you alone.\r\n\r\n\
         To provide one, reply to this message:\r\n\r\n\
         \x20 - S/MIME: reply with a digitally signed message. Your\r\n\
         \x20   certificate travels with the signature.\r\n\
         \x20 - OpenPGP: attach your public key to the reply, or let your mail\r\n\
         \x20   program send it in an Autocrypt header.\r\n\r\n\
         {encrypt_reply}\
         If no certificate or key arrives within {days} days, the message is\r\n\
         returned to its sender. This notice contains nothing of the message\r\n\
         itself.\r\n",
        host = config.hostname,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn address(text: &str) -> Address {
        Address::parse(text).unwrap()
    }

    #[test]
    fn unsigned_invitation_without_keys_names_sender_and_nothing_else() {
        let config = Config::default();
        let invitation = build(
            &config,
            &KeyStore::NotSetUp,
            &address("alice@example.org"),
            &address("dan@ext.example"),
            "Q1",
        )
        .unwrap();
        let text = String::from_utf8_lossy(&invitation.content);
        assert!(text.starts_with("From: Secure mail gateway <postmaster@sealgate.localhost>\r\n"));
        assert!(text.contains("To: <dan@ext.example>\r\n"));
        assert!(text.contains("alice@example.org has sent you a message"));
        assert!(!text.contains("Autocrypt:"));
        assert!(text.contains("within 7 days"));
        assert_eq!(invitation.carries, "unsigned, no key");
        assert!(invitation.envelope.sender.is_none());
        assert!(invitation.envelope.gateway_notice);
        assert!(text.lines().all(|l| l.len() <= 998 && l.is_ascii()));
    }

    #[test]
    fn configured_from_wins() {
        let mut config = Config::default();
        config.invitations.from = Some("keys@example.org".into());
        assert_eq!(
            from_address(&config, &["gateway@example.org".into()]),
            "keys@example.org"
        );
        config.invitations.from = None;
        assert_eq!(
            from_address(&config, &["gateway@example.org".into()]),
            "gateway@example.org"
        );
    }
}
