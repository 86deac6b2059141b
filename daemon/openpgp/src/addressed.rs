//! Whom an encrypted message is addressed to, read from its public-key
//! encrypted session key packets (PKESK) without decrypting anything.
//!
//! The gateway needs this before it decrypts: a message encrypted for the
//! gateway is opened (and a failure is the sender's problem), while mail
//! encrypted end to end for someone else passes through untouched.
//! [`crate::decrypt()`] cannot tell the two apart on purpose (one uniform
//! error). The recipient key IDs are in the clear in every OpenPGP message,
//! so reading them reveals nothing an observer does not already see.
//!
//! Trusts nothing: the message is parsed within [`Limits`], only up to the
//! first packet that is not a session key packet.

use sequoia_openpgp as openpgp;

use openpgp::KeyHandle;
use openpgp::Packet;
use openpgp::parse::{PacketParser, PacketParserResult, Parse};

use crate::armor;
use crate::gateway::GatewayIdentity;
use crate::limits::Limits;
use crate::{Error, Result};

/// At most this many session key packets are read per encrypted block.
const MAX_SESSION_KEY_PACKETS: usize = 256;

/// Who the encrypted blocks of a message are for.
#[derive(Debug, Clone, Default)]
pub struct Addressees {
    /// Key IDs or fingerprints named by the session key packets.
    pub keys: Vec<KeyHandle>,
    /// A session key packet names no key (a "wildcard" or anonymous
    /// recipient): every key of the gateway may have to be tried.
    pub anonymous: bool,
}

impl Addressees {
    /// True when one of `identity`'s keys (current or rotated) or an
    /// anonymous recipient is among the addressees.
    pub fn include(&self, identity: &GatewayIdentity) -> bool {
        self.anonymous
            || identity.cert().keys().any(|k| {
                let ours = k.key().key_handle();
                self.keys.iter().any(|h| h.aliases(&ours))
            })
    }

    /// True when the message holds no encrypted block at all.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && !self.anonymous
    }
}

/// The addressees of every encrypted block in `message`: the data part of
/// a PGP/MIME (RFC 3156) message, or the armored `PGP MESSAGE` blocks of its
/// text parts (inline). A message that is not OpenPGP encrypted has none.
pub fn addressees(message: &[u8], limits: &Limits) -> Result<Addressees> {
    if message.len() > limits.max_input {
        return Err(Error::Limit("message size"));
    }
    let mut found = Addressees::default();
    // The header alone decides, as in decryption: a PGP/MIME data part is
    // cut at its boundaries without parsing the whole message.
    let head = mail_parser::MessageParser::default()
        .parse_headers(message)
        .ok_or_else(|| Error::Malformed("not a MIME message".into()))?;
    if let Some(data) = crate::decrypt::pgp_mime_data(&head, message)? {
        read_session_key_packets(&data, &mut found)?;
        return Ok(found);
    }
    let parsed = mail_parser::MessageParser::default()
        .parse(message)
        .ok_or_else(|| Error::Malformed("not a MIME message".into()))?;
    for block in inline_blocks(&parsed) {
        read_session_key_packets(block, &mut found)?;
    }
    Ok(found)
}

/// The armored `PGP MESSAGE` blocks of a parsed message's text parts.
fn inline_blocks<'a>(parsed: &'a mail_parser::Message<'a>) -> Vec<&'a [u8]> {
    parsed
        .parts
        .iter()
        .filter(|part| part.is_text() && !part.is_text_html())
        .filter_map(|part| part.text_contents())
        .flat_map(armor::blocks)
        .filter(|b| b.kind == armor::Kind::Message)
        .map(|b| b.text.as_bytes())
        .collect()
}

/// Reads the leading session key packets of one OpenPGP message.
fn read_session_key_packets(data: &[u8], found: &mut Addressees) -> Result<()> {
    let malformed = |_| Error::Malformed("unreadable OpenPGP packets".into());
    let mut ppr = PacketParser::from_bytes(data).map_err(malformed)?;
    let mut seen = 0usize;
    while let PacketParserResult::Some(pp) = ppr {
        match &pp.packet {
            Packet::PKESK(pkesk) => match pkesk.recipient() {
                Some(handle) => found.keys.push(handle),
                None => found.anonymous = true,
            },
            Packet::SKESK(_) => {}
            _ => break,
        }
        seen += 1;
        if seen > MAX_SESSION_KEY_PACKETS {
            return Err(Error::Limit("session key packets"));
        }
        // `next`, not `recurse`: session key packets have no children, and
        // the encrypted container that follows is never entered.
        ppr = pp.next().map_err(malformed)?.1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn clear_mail_has_no_addressees() {
        let msg = b"From: a@b.test\r\nSubject: hi\r\n\r\nhello\r\n";
        let found = addressees(msg, &Limits::default()).unwrap();
        assert!(found.is_empty());
    }

    #[test]
    fn garbage_in_an_armored_block_is_an_error_not_a_panic() {
        let msg = b"From: a@b.test\r\nContent-Type: text/plain\r\n\r\n\
            -----BEGIN PGP MESSAGE-----\r\n\r\nAAAA\r\n-----END PGP MESSAGE-----\r\n";
        assert!(addressees(msg, &Limits::default()).is_err());
    }
}
