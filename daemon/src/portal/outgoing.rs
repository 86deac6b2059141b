//! What the portal sends for its user — a reply (to a stored or a pushed
//! message) or a new message to internal users — as one MIME builder
//! and the checks of what the browser sent: the files (names bounded and
//! sanitised, the total under `portal.attachment_max_mb`) and, for a new
//! message, the recipients (each in `relay.domains`).
//!
//! The message: `text/plain` (UTF-8, base64) alone, or with files
//! `multipart/mixed` of the text and one base64 part per file with
//! `Content-Type; name` and `Content-Disposition: attachment; filename`,
//! non-ASCII or long names as RFC 2231 parameters (`filename*0*=utf-8''…`),
//! the subject RFC 2047 encoded words where it is not ASCII.
//!
//! Trusts: nothing from the browser (names, types, sizes, addresses are
//! all checked here); the caller gives the authenticated address.

use base64::Engine as _;
use sealgate_api::ServiceError;
use sealgate_api::portal::mailbox::Upload;

use crate::address::Address;

/// The longest file name kept (characters); longer ones are cut.
pub const MAX_NAME_CHARS: usize = 100;
/// Files one message may carry.
pub const MAX_ATTACHMENTS: usize = 20;
/// Recipients of one new message.
pub const MAX_RECIPIENTS: usize = 50;
/// The longest text (bytes).
pub const MAX_TEXT: usize = 1024 * 1024;
/// The longest subject (characters).
pub const MAX_SUBJECT_CHARS: usize = 200;

/// Why what the portal user wrote is not sent; each names its form field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutgoingError {
    /// No text.
    #[error("Write a message first.")]
    Empty,
    /// The text is over [`MAX_TEXT`].
    #[error("The text is too long.")]
    TooLong,
    /// The subject is over [`MAX_SUBJECT_CHARS`].
    #[error("The subject is too long (at most {MAX_SUBJECT_CHARS} characters).")]
    SubjectTooLong,
    /// The files together are over `portal.attachment_max_mb`.
    #[error("The attachments take {} together; at most {} may be sent. Nothing was sent.", megabytes(*total), megabytes(*limit))]
    TooLarge { total: u64, limit: u64 },
    /// More than [`MAX_ATTACHMENTS`] files.
    #[error("At most {MAX_ATTACHMENTS} files may be attached. Nothing was sent.")]
    TooManyFiles,
    /// A new message to nobody.
    #[error("Name at least one recipient.")]
    NoRecipient,
    /// More than [`MAX_RECIPIENTS`].
    #[error("At most {MAX_RECIPIENTS} recipients.")]
    TooManyRecipients,
    /// Not a mail address (as written, cut and cleaned).
    #[error("“{0}” is not a mail address. Nothing was sent.")]
    NotAnAddress(String),
    /// Outside the gateway's own domains: the portal is no relay.
    #[error(
        "{0} is not an address of this organisation: messages from here go only to its own addresses. Nothing was sent."
    )]
    NotInternal(String),
}

impl OutgoingError {
    /// The form field it is about.
    pub fn field(&self) -> &'static str {
        match self {
            OutgoingError::Empty | OutgoingError::TooLong => "text",
            OutgoingError::SubjectTooLong => "subject",
            OutgoingError::TooLarge { .. } | OutgoingError::TooManyFiles => "attachments",
            OutgoingError::NoRecipient
            | OutgoingError::TooManyRecipients
            | OutgoingError::NotAnAddress(_)
            | OutgoingError::NotInternal(_) => "to",
        }
    }
}

impl From<OutgoingError> for ServiceError {
    fn from(e: OutgoingError) -> ServiceError {
        ServiceError::invalid(e.field(), e.to_string())
    }
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / (1024.0 * 1024.0))
}

/// A file to send: its name sanitised, its type checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub name: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// The files of one message, checked: empty file fields (no file chosen)
/// are left out; more than [`MAX_ATTACHMENTS`] or more than `limit`
/// bytes together are refused.
pub fn attachments(uploads: Vec<Upload>, limit: u64) -> Result<Vec<Attachment>, OutgoingError> {
    let chosen: Vec<Upload> = uploads
        .into_iter()
        .filter(|u| !(u.bytes.is_empty() && u.name.trim().is_empty()))
        .collect();
    if chosen.len() > MAX_ATTACHMENTS {
        return Err(OutgoingError::TooManyFiles);
    }
    let total: u64 = chosen.iter().map(|u| u.bytes.len() as u64).sum();
    if total > limit {
        return Err(OutgoingError::TooLarge { total, limit });
    }
    Ok(chosen
        .into_iter()
        .enumerate()
        .map(|(i, u)| Attachment {
            name: file_name(&u.name, i),
            content_type: content_type(&u.content_type),
            bytes: u.bytes,
        })
        .collect())
}

/// A file name as the browser sent it, made safe: the last path element
/// only (`/` or `\`), no control characters or quotes, no leading dots,
/// at most [`MAX_NAME_CHARS`]; nothing left: `attachment-N`.
pub fn file_name(raw: &str, index: usize) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = last
        .chars()
        .filter(|c| !c.is_control() && *c != '"')
        .collect();
    let clean = clean.trim().trim_start_matches('.').trim();
    let cut: String = clean.chars().take(MAX_NAME_CHARS).collect();
    let cut = cut.trim_end().to_owned();
    if cut.is_empty() {
        format!("attachment-{}", index + 1)
    } else {
        cut
    }
}

/// The browser's media type if it is one (`type/subtype`, token
/// characters, parameters dropped), else `application/octet-stream`.
pub fn content_type(raw: &str) -> String {
    let essence = raw
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let token = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    match essence.split_once('/') {
        Some((t, s)) if token(t) && token(s) => essence,
        _ => "application/octet-stream".to_owned(),
    }
}

/// The recipients of a new message, as typed (separated by commas,
/// semicolons or white space): each a mail address in our own domains
/// (`internal`, `relay.domains`), once each (case aside). The first
/// refused one is named.
pub fn internal_recipients(
    typed: &str,
    internal: impl Fn(&str) -> bool,
) -> Result<Vec<Address>, OutgoingError> {
    let mut out: Vec<Address> = Vec::new();
    for word in typed
        .split([',', ';', ' ', '\t', '\r', '\n'])
        .map(str::trim)
        .filter(|w| !w.is_empty())
    {
        let bare = word
            .strip_prefix('<')
            .and_then(|w| w.strip_suffix('>'))
            .unwrap_or(word);
        let Some(address) = Address::parse(bare) else {
            let shown: String = bare.chars().filter(|c| !c.is_control()).take(80).collect();
            return Err(OutgoingError::NotAnAddress(shown));
        };
        if !internal(&address.domain_lower()) {
            return Err(OutgoingError::NotInternal(address.to_string()));
        }
        let lower = address.to_string().to_ascii_lowercase();
        if !out
            .iter()
            .any(|a| a.to_string().eq_ignore_ascii_case(&lower))
        {
            out.push(address);
        }
        if out.len() > MAX_RECIPIENTS {
            return Err(OutgoingError::TooManyRecipients);
        }
    }
    if out.is_empty() {
        return Err(OutgoingError::NoRecipient);
    }
    Ok(out)
}

/// The text and subject as written, checked.
pub fn check_text(text: &str, subject: &str) -> Result<(), OutgoingError> {
    if text.trim().is_empty() {
        return Err(OutgoingError::Empty);
    }
    if text.len() > MAX_TEXT {
        return Err(OutgoingError::TooLong);
    }
    if subject.chars().count() > MAX_SUBJECT_CHARS {
        return Err(OutgoingError::SubjectTooLong);
    }
    Ok(())
}

/// One message the portal user sends.
pub struct Message<'a> {
    pub hostname: &'a str,
    /// The authenticated address.
    pub from: &'a str,
    pub to: &'a [String],
    pub cc: &'a [String],
    pub subject: &'a str,
    /// The Message-ID answered (`<…>`), for `In-Reply-To`/`References`.
    pub parent: Option<&'a str>,
    pub text: &'a str,
    pub attachments: &'a [Attachment],
    /// The Message-ID's left part (random).
    pub message_id: &'a str,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Base64 in lines of 76, each ending in CRLF.
fn base64_lines(out: &mut String, bytes: &[u8]) {
    let encoded = b64().encode(bytes);
    for chunk in encoded.as_bytes().chunks(76) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push_str("\r\n");
    }
}

/// A subject for the header: control characters dropped; not ASCII:
/// RFC 2047 encoded words of at most 39 bytes each (lines under 78), folded.
pub fn encode_subject(subject: &str) -> String {
    let subject: String = subject.chars().filter(|c| !c.is_control()).collect();
    if subject.is_ascii() {
        return subject;
    }
    let mut words = Vec::new();
    let mut word = String::new();
    for c in subject.chars() {
        if word.len() + c.len_utf8() > 39 {
            words.push(format!("=?utf-8?b?{}?=", b64().encode(word.as_bytes())));
            word.clear();
        }
        word.push(c);
    }
    if !word.is_empty() {
        words.push(format!("=?utf-8?b?{}?=", b64().encode(word.as_bytes())));
    }
    words.join("\r\n ")
}

/// `; attr="value"` for a plain short ASCII value, else the RFC 2231
/// form (`attr*=utf-8''…`, continued as `attr*0*=`, `attr*1*=` … in
/// pieces of at most 50 characters), each on its own folded line.
pub fn parameter(attr: &str, value: &str) -> String {
    let plain = value.len() <= 50
        && value
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
    if plain {
        return format!(";\r\n {attr}=\"{value}\"");
    }
    // A character's octets stay in one piece: some readers decode each
    // piece on its own.
    let mut pieces: Vec<String> = vec![String::new()];
    let mut buf = [0u8; 4];
    for c in value.chars() {
        let enc: String = c
            .encode_utf8(&mut buf)
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        if pieces.last().is_some_and(|p| p.len() + enc.len() > 50) {
            pieces.push(String::new());
        }
        if let Some(p) = pieces.last_mut() {
            p.push_str(&enc);
        }
    }
    if pieces.len() == 1 {
        return format!(";\r\n {attr}*=utf-8''{}", pieces.concat());
    }
    pieces
        .iter()
        .enumerate()
        .map(|(i, p)| {
            if i == 0 {
                format!(";\r\n {attr}*0*=utf-8''{p}")
            } else {
                format!(";\r\n {attr}*{i}*={p}")
            }
        })
        .collect()
}

/// The whole message, CRLF line ends.
pub fn build(m: &Message<'_>) -> Vec<u8> {
    let list = |addresses: &[String]| {
        addresses
            .iter()
            .map(|a| format!("<{a}>"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = format!("From: <{}>\r\nTo: {}\r\n", m.from, list(m.to));
    if !m.cc.is_empty() {
        out.push_str(&format!("Cc: {}\r\n", list(m.cc)));
    }
    out.push_str(&format!(
        "Subject: {}\r\nDate: {}\r\nMessage-ID: <{}@{}>\r\n",
        encode_subject(m.subject),
        crate::util::rfc5322_date_now(),
        m.message_id,
        m.hostname,
    ));
    if let Some(parent) = m.parent {
        out.push_str(&format!(
            "In-Reply-To: {parent}\r\nReferences: {parent}\r\n"
        ));
    }
    out.push_str(
        "X-Sealgate-Portal: sent by an authenticated portal user\r\nMIME-Version: 1.0\r\n",
    );
    let text = m.text.replace("\r\n", "\n").replace('\n', "\r\n");
    let text_part =
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n";
    if m.attachments.is_empty() {
        out.push_str(text_part);
        base64_lines(&mut out, text.as_bytes());
        return out.into_bytes();
    }
    // Base64 and the headers above never hold "=_": the boundary is unique.
    let boundary = format!("=_sealgate_{}", m.message_id);
    out.push_str(&format!(
        "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n"
    ));
    out.push_str(&format!("--{boundary}\r\n{text_part}"));
    base64_lines(&mut out, text.as_bytes());
    for a in m.attachments {
        out.push_str(&format!(
            "--{boundary}\r\nContent-Type: {}{}\r\nContent-Disposition: attachment{}\r\nContent-Transfer-Encoding: base64\r\n\r\n",
            a.content_type,
            parameter("name", &a.name),
            parameter("filename", &a.name),
        ));
        base64_lines(&mut out, &a.bytes);
    }
    out.push_str(&format!("--{boundary}--\r\n"));
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use mail_parser::{MessageParser, MimeHeaders};

    use super::*;

    fn upload(name: &str, bytes: &[u8]) -> Upload {
        Upload {
            name: name.to_owned(),
            content_type: "application/pdf".to_owned(),
            bytes: bytes.to_vec(),
        }
    }

    #[test]
    fn file_names_lose_paths_controls_and_length() {
        assert_eq!(file_name("C:\\Users\\dan\\report.pdf", 0), "report.pdf");
        assert_eq!(file_name("../../etc/passwd", 0), "passwd");
        assert_eq!(file_name("a\r\nb\u{0}\"c\".txt", 0), "abc.txt");
        assert_eq!(file_name("..", 2), "attachment-3");
        assert_eq!(file_name("  ", 0), "attachment-1");
        assert_eq!(file_name(".hidden", 0), "hidden");
        let long = "ä".repeat(300);
        assert_eq!(file_name(&long, 0).chars().count(), MAX_NAME_CHARS);
        assert_eq!(content_type("Text/Plain; charset=x"), "text/plain");
        assert_eq!(
            content_type("text/plain\r\nX: y"),
            "application/octet-stream"
        );
        assert_eq!(content_type(""), "application/octet-stream");
    }

    #[test]
    fn the_size_limit_counts_all_files_together() {
        let limit = 10;
        assert_eq!(
            attachments(vec![upload("a", b"12345"), upload("b", b"123456")], limit),
            Err(OutgoingError::TooLarge {
                total: 11,
                limit: 10
            })
        );
        let ok = attachments(
            vec![
                upload("a", b"12345"),
                upload("", b""),
                upload("b", b"12345"),
            ],
            limit,
        )
        .unwrap();
        assert_eq!(ok.len(), 2, "the empty file field is no attachment");
        let many = (0..=MAX_ATTACHMENTS).map(|_| upload("x", b"1")).collect();
        assert_eq!(attachments(many, 1000), Err(OutgoingError::TooManyFiles));
        let e: ServiceError = OutgoingError::TooLarge {
            total: 11 * 1024 * 1024,
            limit: 10 * 1024 * 1024,
        }
        .into();
        match e {
            ServiceError::Invalid { errors } => {
                assert_eq!(errors[0].key, "attachments");
                assert!(
                    errors[0].message.contains("11.0 MB"),
                    "{}",
                    errors[0].message
                );
                assert!(
                    errors[0].message.contains("10.0 MB"),
                    "{}",
                    errors[0].message
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn recipients_must_be_internal_and_the_refused_one_is_named() {
        let internal = |d: &str| d == "example.org";
        let got = internal_recipients(
            "alice@example.org, <Bob@Example.org>; ALICE@example.org\nbob@example.org",
            internal,
        )
        .unwrap();
        let got: Vec<String> = got.iter().map(ToString::to_string).collect();
        assert_eq!(got, ["alice@example.org", "Bob@Example.org"]);
        assert_eq!(
            internal_recipients("alice@example.org, mallory@evil.example", internal),
            Err(OutgoingError::NotInternal("mallory@evil.example".into()))
        );
        assert_eq!(
            internal_recipients("not-an-address", internal),
            Err(OutgoingError::NotAnAddress("not-an-address".into()))
        );
        assert_eq!(
            internal_recipients(" , ", internal),
            Err(OutgoingError::NoRecipient)
        );
        let many: Vec<String> = (0..=MAX_RECIPIENTS)
            .map(|i| format!("u{i}@example.org"))
            .collect();
        assert_eq!(
            internal_recipients(&many.join(","), internal),
            Err(OutgoingError::TooManyRecipients)
        );
        assert_eq!(
            OutgoingError::NotInternal("m@x.example".into()).field(),
            "to"
        );
    }

    #[test]
    fn attachments_travel_with_their_names_encoded() {
        let long = format!("{}.pdf", "Übersicht-".repeat(9));
        let files = attachments(
            vec![
                upload("report.pdf", b"%PDF-1.4\n\x00\x01\xff"),
                upload("Größe €.txt", b"hello"),
                upload(&long, b"x"),
            ],
            1000,
        )
        .unwrap();
        let to = ["carol@example.org".to_owned()];
        let raw = build(&Message {
            hostname: "gw.example",
            from: "dan@partner.example",
            to: &to,
            cc: &[],
            subject: "Re: Grüße aus dem Büro, eine ziemlich lange Betreffzeile mit Umlauten äöü",
            parent: Some("<p1@example.org>"),
            text: "Hello\nthere",
            attachments: &files,
            message_id: "portal-abc",
        });
        let text = String::from_utf8(raw.clone()).unwrap();
        assert!(text.lines().all(|l| l.len() <= 78), "{text}");
        assert!(text.contains("filename=\"report.pdf\""), "{text}");
        assert!(
            text.contains("filename*=utf-8''Gr%C3%B6%C3%9Fe%20%E2%82%AC.txt"),
            "{text}"
        );
        assert!(text.contains("filename*0*=utf-8''"), "{text}");
        let parsed = MessageParser::default().parse(&raw).unwrap();
        assert_eq!(
            parsed.subject(),
            Some("Re: Grüße aus dem Büro, eine ziemlich lange Betreffzeile mit Umlauten äöü")
        );
        assert_eq!(parsed.in_reply_to().as_text(), Some("p1@example.org"));
        assert_eq!(parsed.body_text(0).unwrap(), "Hello\r\nthere");
        let names: Vec<String> = parsed
            .attachments()
            .map(|a| a.attachment_name().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(names, ["report.pdf", "Größe €.txt", long.as_str()]);
        let first = parsed.attachment(0).unwrap();
        assert_eq!(first.contents(), b"%PDF-1.4\n\x00\x01\xff");
        assert_eq!(first.content_type().unwrap().subtype(), Some("pdf"));
    }

    #[test]
    fn without_files_it_is_one_text_part() {
        let to = ["carol@example.org".to_owned()];
        let raw = build(&Message {
            hostname: "gw.example",
            from: "dan@partner.example",
            to: &to,
            cc: &[],
            subject: "Hi",
            parent: None,
            text: "x",
            attachments: &[],
            message_id: "portal-1",
        });
        let text = String::from_utf8(raw).unwrap();
        assert!(text.contains("Content-Type: text/plain; charset=utf-8\r\n"));
        assert!(!text.contains("In-Reply-To"));
        assert!(!text.contains("multipart"));
    }
}
