//! Header protection (RFC 9788) for an encrypted copy whose policy asks for
//! a neutral subject: the real header fields travel inside the encryption,
//! and the visible Subject becomes `[...]`.
//!
//! The message is split into the fields that stay visible (every field but
//! `Content-*` and `MIME-Version`, with the Subject obscured) and the entity
//! to encrypt: copies of the protected fields as they were, one `HP-Outer`
//! field per protected field as it is seen outside (so the reader can tell
//! what was hidden), the `Content-*` fields with `hp="cipher"` added to the
//! Content-Type, and the body. The engines encrypt that entity as it is
//! (`encrypt_entity`).
//!
//! Trusts nothing in the content: header fields are copied as octets, and a
//! message without a header/body separator is all header.

/// The visible Subject of a protected message (RFC 9788 §4.2).
pub const OBSCURED_SUBJECT: &str = "[...]";

/// Fields copied into the encrypted entity (lower case).
const PROTECTED: &[&str] = &[
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "in-reply-to",
    "references",
    "keywords",
];

/// A message split for header protection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protected {
    /// Header fields that stay visible (CRLF-terminated, no blank line).
    pub outer: Vec<u8>,
    /// The MIME entity to encrypt (its fields, a blank line, the body).
    pub inner: Vec<u8>,
}

/// Splits `content` (CRLF) for header protection with the Subject obscured.
pub fn protect(content: &[u8]) -> Protected {
    let header_end = content
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(content.len(), |p| p + 2);
    let (head, rest) = content.split_at(header_end.min(content.len()));
    let body = rest.strip_prefix(b"\r\n").unwrap_or(rest);
    let mut outer = Vec::with_capacity(head.len());
    let mut copies = Vec::new();
    let mut hp_outer = Vec::new();
    let mut content_fields = Vec::new();
    let mut has_content_type = false;
    for field in fields(head) {
        let name = field_name(field);
        if name.starts_with("content-") {
            if name == "content-type" {
                has_content_type = true;
                content_fields.extend_from_slice(&with_hp_cipher(field));
            } else {
                content_fields.extend_from_slice(field);
            }
            continue;
        }
        if name == "mime-version" {
            continue;
        }
        let visible: Vec<u8> = if name == "subject" {
            format!("Subject: {OBSCURED_SUBJECT}\r\n").into_bytes()
        } else {
            field.to_vec()
        };
        if PROTECTED.contains(&name.as_str()) {
            copies.extend_from_slice(field);
            hp_outer.extend_from_slice(b"HP-Outer: ");
            hp_outer.extend_from_slice(&visible);
        }
        outer.extend_from_slice(&visible);
    }
    if !has_content_type {
        content_fields
            .extend_from_slice(b"Content-Type: text/plain; charset=us-ascii; hp=\"cipher\"\r\n");
    }
    let mut inner = copies;
    inner.extend_from_slice(&hp_outer);
    inner.extend_from_slice(&content_fields);
    inner.extend_from_slice(b"\r\n");
    inner.extend_from_slice(body);
    Protected { outer, inner }
}

/// The header fields of `head`, each with its continuation lines.
fn fields(head: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = Vec::new();
    let mut start = 0usize;
    let mut at = 0usize;
    for line in head.split_inclusive(|b| *b == b'\n') {
        let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !continuation && at > start {
            out.push(head.get(start..at).unwrap_or_default());
            start = at;
        }
        at += line.len();
    }
    if at > start {
        out.push(head.get(start..at).unwrap_or_default());
    }
    out
}

/// The field's name, lower case, trimmed.
fn field_name(field: &[u8]) -> String {
    let name = field
        .iter()
        .position(|b| *b == b':')
        .and_then(|p| field.get(..p))
        .unwrap_or_default();
    String::from_utf8_lossy(name).trim().to_ascii_lowercase()
}

/// A Content-Type field with `; hp="cipher"` added at its end.
fn with_hp_cipher(field: &[u8]) -> Vec<u8> {
    let value_end = field
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |p| p + 1);
    let mut out = field.get(..value_end).unwrap_or_default().to_vec();
    out.extend_from_slice(b";\r\n hp=\"cipher\"\r\n");
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn subject_goes_inside_and_is_obscured_outside() {
        let raw = b"From: a@b.test\r\nSubject: merger\r\n plans\r\nMIME-Version: 1.0\r\n\
            Content-Type: text/plain;\r\n charset=utf-8\r\nX-Other: kept\r\n\r\nbody\r\n";
        let p = protect(raw);
        assert_eq!(
            p.outer,
            b"From: a@b.test\r\nSubject: [...]\r\nX-Other: kept\r\n".to_vec()
        );
        let inner = String::from_utf8(p.inner).unwrap();
        assert!(inner.starts_with("From: a@b.test\r\nSubject: merger\r\n plans\r\n"));
        assert!(inner.contains("HP-Outer: Subject: [...]\r\n"));
        assert!(inner.contains(
            "Content-Type: text/plain;\r\n charset=utf-8;\r\n hp=\"cipher\"\r\n\r\nbody\r\n"
        ));
        assert!(!inner.contains("X-Other"));
        let parsed = mail_parser::MessageParser::default()
            .parse(inner.as_bytes())
            .unwrap();
        assert_eq!(parsed.subject(), Some("merger plans"));
    }

    #[test]
    fn a_message_without_content_type_gets_one() {
        let p = protect(b"Subject: s\r\n\r\nhi\r\n");
        let inner = String::from_utf8(p.inner).unwrap();
        assert!(
            inner.contains(
                "Content-Type: text/plain; charset=us-ascii; hp=\"cipher\"\r\n\r\nhi\r\n"
            )
        );
    }
}
