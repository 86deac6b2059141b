//! Parse stage: the spooled message → a parsed MIME tree and the facts the
//! policy decides on.
//!
//! mail-parser does the MIME work; this module bounds it (parts, nesting
//! depth, attachments, how much body text the policy may scan) and refuses a
//! message that exceeds a bound with a permanent error instead of deciding
//! on half of it. It also recognises a message that arrived encrypted
//! (S/MIME enveloped data, PGP/MIME, inline PGP) so the unwrap stage knows
//! which engine to ask.
//!
//! Trusts: nothing in the content. The trigger header is only believed when
//! the caller says the connecting host is trusted.

use mail_parser::{MessageParser, MimeHeaders, PartType};

use crate::policy::{Attachment, MessageFacts, Wrapping};

/// Bounds on what the parse stage accepts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// MIME parts in the whole tree, nested messages included.
    pub max_parts: usize,
    /// Nesting of multiparts and attached messages.
    pub max_depth: usize,
    /// Attachments listed in the facts (the rest still travel, unlisted).
    pub max_attachments: usize,
    /// Octets of decoded body text the policy may scan.
    pub max_body_text: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_parts: 2000,
            max_depth: 32,
            max_attachments: 500,
            max_body_text: 256 * 1024,
        }
    }
}

/// Why a message could not be parsed; permanent (the same bytes fail again).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the message has no header section")]
    NotAMessage,
    #[error("the message has more than {0} MIME parts")]
    TooManyParts(usize),
    #[error("the message's MIME parts nest deeper than {0} levels")]
    TooDeep(usize),
}

/// What the envelope and the connection add to the content.
#[derive(Debug, Clone, Default)]
pub struct Context<'a> {
    /// The envelope sender (empty for `<>`).
    pub sender: &'a str,
    pub sender_internal: bool,
    /// The policy's trigger header name.
    pub trigger_header: &'a str,
    /// Whether the connecting host may set the trigger header.
    pub trigger_trusted: bool,
}

/// Parses `content` and returns the facts for the policy.
pub fn facts(
    content: &[u8],
    context: &Context<'_>,
    limits: Limits,
) -> Result<MessageFacts, ParseError> {
    let message = MessageParser::default()
        .parse(content)
        .ok_or(ParseError::NotAMessage)?;
    check_shape(&message, limits)?;

    let mut body_text = String::new();
    for index in 0..message.text_body.len() {
        if body_text.len() >= limits.max_body_text {
            break;
        }
        if let Some(text) = message.body_text(index) {
            push_bounded(&mut body_text, &text, limits.max_body_text);
            push_bounded(&mut body_text, "\n", limits.max_body_text);
        }
    }
    let attachments = message
        .attachments
        .iter()
        .filter_map(|id| message.parts.get(usize::try_from(*id).ok()?))
        .take(limits.max_attachments)
        .map(|part| Attachment {
            name: part.attachment_name().map(str::to_owned),
            content_type: part
                .content_type()
                .map(|ct| {
                    format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("octet-stream"))
                        .to_ascii_lowercase()
                })
                .unwrap_or_else(|| "application/octet-stream".to_owned()),
        })
        .collect();
    let trigger_header = message
        .headers_raw()
        .find(|(name, _)| name.eq_ignore_ascii_case(context.trigger_header))
        .map(|(_, value)| value.trim().to_owned());

    Ok(MessageFacts {
        sender: context.sender.to_owned(),
        sender_internal: context.sender_internal,
        sender_groups: Vec::new(),
        subject: message.subject().unwrap_or("").to_owned(),
        body_text,
        attachments,
        size: u64::try_from(content.len()).unwrap_or(u64::MAX),
        trigger_header,
        trigger_trusted: context.trigger_trusted,
        encrypted_for_gateway: wrapping(&message),
    })
}

/// [`wrapping`] of raw message bytes (`None` for what is not a message).
/// The header alone decides S/MIME and PGP/MIME, so their (large, base64)
/// bodies are not parsed; a text or multipart message is parsed whole to
/// look for inline PGP.
pub fn wrapping_of(content: &[u8]) -> Option<Wrapping> {
    wrapping_from_header_first(content, true)
}

/// [`wrapping_of`] for a message about to be sent: inline PGP counts only
/// as a single text part, because a multipart with one armored part may
/// carry clear siblings (the fail-closed guard's reading).
pub fn wrapping_as_sent(content: &[u8]) -> Option<Wrapping> {
    wrapping_from_header_first(content, false)
}

fn wrapping_from_header_first(content: &[u8], inline_in_multipart: bool) -> Option<Wrapping> {
    use mail_parser::MimeHeaders;
    let parser = MessageParser::default();
    if let Some(header) = header_of(content).and_then(|h| parser.parse(h)) {
        let ct = header.root_part().content_type();
        let plain_multipart = ct.is_some_and(|ct| {
            ct.ctype().eq_ignore_ascii_case("multipart")
                && !ct
                    .subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case("encrypted"))
        });
        if plain_multipart && !inline_in_multipart {
            return None;
        }
        let may_be_inline =
            plain_multipart || ct.is_none_or(|ct| ct.ctype().eq_ignore_ascii_case("text"));
        if !may_be_inline {
            return wrapping(&header);
        }
    }
    parser.parse(content).and_then(|message| wrapping(&message))
}

/// The header of a message with the empty line that ends it, if it has one.
fn header_of(content: &[u8]) -> Option<&[u8]> {
    let mut at = 0;
    for line in content.split_inclusive(|b| *b == b'\n') {
        at += line.len();
        if line == b"\r\n" || line == b"\n" {
            return content.get(..at);
        }
    }
    None
}

/// The encryption the message arrived in, judged from its top-level type
/// (and, for inline PGP, its first text part).
pub fn wrapping(message: &mail_parser::Message<'_>) -> Option<Wrapping> {
    let root = message.root_part();
    let ct = root.content_type()?;
    let ctype = ct.ctype().to_ascii_lowercase();
    let subtype = ct.subtype().unwrap_or("").to_ascii_lowercase();
    match (ctype.as_str(), subtype.as_str()) {
        ("application", "pkcs7-mime" | "x-pkcs7-mime") => {
            let smime_type = ct
                .attribute("smime-type")
                .unwrap_or("")
                .to_ascii_lowercase();
            match smime_type.as_str() {
                "enveloped-data" | "authenveloped-data" => Some(Wrapping::Smime),
                // Older clients leave smime-type out; the file name tells.
                "" if root
                    .attachment_name()
                    .is_some_and(|n| n.eq_ignore_ascii_case("smime.p7m")) =>
                {
                    Some(Wrapping::Smime)
                }
                _ => None,
            }
        }
        ("multipart", "encrypted")
            if ct
                .attribute("protocol")
                .is_some_and(|p| p.eq_ignore_ascii_case("application/pgp-encrypted")) =>
        {
            Some(Wrapping::Openpgp)
        }
        ("text", _) | ("multipart", _) => {
            let first_text = message.text_body.first()?;
            let part = message.parts.get(usize::try_from(*first_text).ok()?)?;
            let text = part.text_contents()?;
            text.trim_start()
                .starts_with("-----BEGIN PGP MESSAGE-----")
                .then_some(Wrapping::Openpgp)
        }
        _ => None,
    }
}

/// Counts parts and measures nesting, nested messages included.
fn check_shape(message: &mail_parser::Message<'_>, limits: Limits) -> Result<(), ParseError> {
    let mut count = 0usize;
    // (message, part index, depth) still to visit.
    let mut stack: Vec<(&mail_parser::Message<'_>, usize, usize)> = vec![(message, 0, 0)];
    while let Some((msg, index, depth)) = stack.pop() {
        count += 1;
        if count > limits.max_parts {
            return Err(ParseError::TooManyParts(limits.max_parts));
        }
        if depth > limits.max_depth {
            return Err(ParseError::TooDeep(limits.max_depth));
        }
        let Some(part) = msg.parts.get(index) else {
            continue;
        };
        match &part.body {
            PartType::Multipart(children) => {
                for child in children {
                    if let Ok(child) = usize::try_from(*child) {
                        stack.push((msg, child, depth + 1));
                    }
                }
            }
            PartType::Message(nested) => stack.push((nested, 0, depth + 1)),
            _ => {}
        }
    }
    Ok(())
}

fn push_bounded(out: &mut String, text: &str, max: usize) {
    let room = max.saturating_sub(out.len());
    if text.len() <= room {
        out.push_str(text);
        return;
    }
    let mut cut = room;
    while cut > 0 && !text.is_char_boundary(cut) {
        cut -= 1;
    }
    out.push_str(text.get(..cut).unwrap_or(""));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn mime_that_trips_mail_parsers_part_bookkeeping_is_parsed_without_a_panic() {
        // Found by the mime_policy fuzzer: a message/rfc822 part whose
        // boundary line is broken. mail-parser leaves the part out.
        let input = include_bytes!(
            "../../../fuzz/seeds/mime_policy/mail-parser-debug-assert-multipart-part-id"
        );
        // Either answer is fine; panicking is not.
        if let Ok(facts) = facts(input, &ctx(), Limits::default()) {
            assert!(facts.attachments.len() <= Limits::default().max_attachments);
        }
    }

    fn ctx() -> Context<'static> {
        Context {
            sender: "alice@corp.example",
            sender_internal: true,
            trigger_header: "X-Sealgate-Encrypt",
            trigger_trusted: true,
        }
    }

    #[test]
    fn facts_of_a_multipart_with_attachment() {
        let raw = b"From: Alice <alice@corp.example>\r\nTo: bob@ext.example\r\nSubject: =?utf-8?q?=5Bsecure=5D_Gr=C3=BC=C3=9Fe?=\r\nX-Sealgate-Encrypt:  yes \r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nStrictly confidential.\r\n--b\r\nContent-Type: application/pdf; name=\"offer.pdf\"\r\nContent-Disposition: attachment; filename=\"offer.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--b--\r\n";
        let f = facts(raw, &ctx(), Limits::default()).unwrap();
        assert_eq!(f.subject, "[secure] Grüße");
        assert!(f.body_text.contains("Strictly confidential."));
        assert_eq!(f.attachments.len(), 1);
        assert_eq!(f.attachments[0].name.as_deref(), Some("offer.pdf"));
        assert_eq!(f.attachments[0].content_type, "application/pdf");
        assert_eq!(f.trigger_header.as_deref(), Some("yes"));
        assert_eq!(f.encrypted_for_gateway, None);
        assert_eq!(f.size, raw.len() as u64);
    }

    #[test]
    fn recognises_encrypted_messages() {
        let smime = b"From: a@b\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\n\r\nMIAGCSqGSIb3DQEHA6CAMIACAQ==\r\n";
        let pgpmime = b"From: a@b\r\nContent-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=x\r\n\r\n--x\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n--x\r\nContent-Type: application/octet-stream\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n\r\nhQ==\r\n-----END PGP MESSAGE-----\r\n--x--\r\n";
        let inline = b"From: a@b\r\nContent-Type: text/plain\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n\r\nhQ==\r\n-----END PGP MESSAGE-----\r\n";
        let signed = b"From: a@b\r\nContent-Type: application/pkcs7-mime; smime-type=signed-data\r\n\r\nMIA=\r\n";
        let plain = b"From: a@b\r\nSubject: hi\r\n\r\nhello\r\n";
        let w = |raw: &[u8]| {
            facts(raw, &ctx(), Limits::default())
                .unwrap()
                .encrypted_for_gateway
        };
        assert_eq!(w(smime), Some(Wrapping::Smime));
        assert_eq!(w(pgpmime), Some(Wrapping::Openpgp));
        assert_eq!(w(inline), Some(Wrapping::Openpgp));
        assert_eq!(w(signed), None);
        assert_eq!(w(plain), None);
        // The header-first shortcut says what a whole parse says, bare LF too.
        let lf = |raw: &[u8]| {
            String::from_utf8_lossy(raw)
                .replace("\r\n", "\n")
                .into_bytes()
        };
        let no_blank_line =
            b"From: a@b\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data";
        for raw in [&smime[..], pgpmime, inline, signed, plain, no_blank_line] {
            assert_eq!(wrapping_of(raw), w(raw), "{}", String::from_utf8_lossy(raw));
            assert_eq!(
                wrapping_of(&lf(raw)),
                w(raw),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        let inline_beside_clear = b"Content-Type: multipart/mixed; boundary=x\n\n--x\nContent-Type: text/plain\n\n-----BEGIN PGP MESSAGE-----\n\nhQ==\n-----END PGP MESSAGE-----\n--x--\n";
        assert_eq!(wrapping_of(inline_beside_clear), Some(Wrapping::Openpgp));
        assert_eq!(wrapping_as_sent(inline_beside_clear), None);
        assert_eq!(wrapping_as_sent(pgpmime), Some(Wrapping::Openpgp));
        assert_eq!(wrapping_as_sent(inline), Some(Wrapping::Openpgp));
    }

    #[test]
    fn bounds_are_enforced() {
        let mut raw =
            String::from("From: a@b\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n");
        for i in 0..40 {
            raw.push_str(&format!(
                "--b{i}\r\nContent-Type: multipart/mixed; boundary=b{}\r\n\r\n",
                i + 1
            ));
        }
        raw.push_str("--b40\r\nContent-Type: text/plain\r\n\r\nx\r\n");
        let limits = Limits {
            max_depth: 10,
            ..Limits::default()
        };
        assert_eq!(
            facts(raw.as_bytes(), &ctx(), limits),
            Err(ParseError::TooDeep(10))
        );
        let mut wide =
            String::from("From: a@b\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n");
        for _ in 0..50 {
            wide.push_str("--b\r\nContent-Type: text/plain\r\n\r\nx\r\n");
        }
        wide.push_str("--b--\r\n");
        let limits = Limits {
            max_parts: 20,
            ..Limits::default()
        };
        assert_eq!(
            facts(wide.as_bytes(), &ctx(), limits),
            Err(ParseError::TooManyParts(20))
        );
        let long = format!("From: a@b\r\n\r\n{}\r\n", "é".repeat(1000));
        let limits = Limits {
            max_body_text: 101,
            ..Limits::default()
        };
        let f = facts(long.as_bytes(), &ctx(), limits).unwrap();
        assert!(f.body_text.len() <= 101 && f.body_text.starts_with('é'));
    }

    #[test]
    fn untrusted_trigger_is_kept_but_marked() {
        let raw = b"From: a@b\r\nX-SEALGATE-ENCRYPT: yes\r\n\r\nhi\r\n";
        let f = facts(
            raw,
            &Context {
                trigger_trusted: false,
                ..ctx()
            },
            Limits::default(),
        )
        .unwrap();
        assert_eq!(f.trigger_header.as_deref(), Some("yes"));
        assert!(!f.trigger_trusted);
    }
}
