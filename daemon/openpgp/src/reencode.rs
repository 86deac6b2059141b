//! 7-bit re-encoding of a MIME entity before it is signed (RFC 3156 §3 and
//! §5, RFC 1847 §2.1): a relay that downgrades 8-bit content to 7-bit would
//! otherwise change the signed bytes and break the signature.
//!
//! Every leaf part that is not 7-bit (8-bit bytes, NUL, or lines over 998
//! octets) is re-encoded — `text/*` as quoted-printable (readable, and lines
//! starting with `From ` or a lone `.` are escaped, as RFC 3156 §3 asks),
//! anything else as base64 — from its raw bytes, so the decoded content is
//! unchanged. Multiparts are rebuilt with the same boundary from their
//! re-encoded parts (preamble and epilogue dropped); an embedded
//! `message/rfc822` is re-encoded inside (it may not be base64-encoded
//! itself, RFC 2046 §5.2.1). 7-bit parts are kept byte for byte.
//!
//! Refused ([`Error::Malformed`]): 8-bit header fields (they would need RFC
//! 2047 rewriting, which changes what the user wrote), 8-bit bytes inside a
//! part that claims base64 or quoted-printable, and nesting deeper than
//! [`MAX_MIME_DEPTH`].
//!
//! Trusts nothing: the message is the caller's but its structure is not
//! checked anywhere else; every function is total and bounded.

use mail_parser::MimeHeaders as _;

use crate::error::{Error, Result};
use crate::mime;

/// Deepest multipart / message nesting re-encoded.
pub(crate) const MAX_MIME_DEPTH: usize = 16;

/// Longest quoted-printable line, soft break included (RFC 2045 §6.7).
const QP_LINE: usize = 76;

/// What a part's `Content-Type` says about re-encoding it.
enum Shape {
    Multipart(String),
    Message,
    Text,
    Other,
}

/// The shape of an entity from its header block.
fn shape(header: &[u8]) -> Shape {
    let mut block = header.to_vec();
    block.extend_from_slice(b"\r\n");
    let parsed = mail_parser::MessageParser::default().parse_headers(&block);
    let ct = parsed.as_ref().and_then(|m| m.root_part().content_type());
    let Some(ct) = ct else {
        // No Content-Type: text/plain (RFC 2045 §5.2).
        return Shape::Text;
    };
    let main = ct.ctype().to_ascii_lowercase();
    let sub = ct.subtype().unwrap_or_default().to_ascii_lowercase();
    match (main.as_str(), ct.attribute("boundary")) {
        ("multipart", Some(b)) => Shape::Multipart(b.to_owned()),
        ("message", _) if sub == "rfc822" || sub == "global" => Shape::Message,
        ("text", _) => Shape::Text,
        _ => Shape::Other,
    }
}

/// `header`'s fields without `Content-Transfer-Encoding`, CRLF-terminated.
fn without_cte(header: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len());
    for f in mime::fields(header) {
        let name = String::from_utf8_lossy(f).to_ascii_lowercase();
        if !name.starts_with("content-transfer-encoding") {
            out.extend_from_slice(&mime::to_crlf(f));
        }
    }
    out
}

/// `header` (an entity's fields) and `body` as one 7-bit CRLF entity.
pub(crate) fn seven_bit(header: &[u8], body: &[u8]) -> Result<Vec<u8>> {
    entity(header, body, 0)
}

fn entity(header: &[u8], body: &[u8], depth: usize) -> Result<Vec<u8>> {
    if depth > MAX_MIME_DEPTH {
        return Err(Error::Malformed(
            "MIME nesting too deep to re-encode".into(),
        ));
    }
    if !mime::is_7bit(header) {
        return Err(Error::Malformed(
            "8-bit header field in a part to sign: not re-encoded".into(),
        ));
    }
    let mut out = Vec::with_capacity(body.len() + body.len() / 3 + 256);
    if mime::is_7bit(body) {
        out.extend_from_slice(&mime::to_crlf(header));
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&mime::to_crlf_exact(body));
        return Ok(out);
    }
    match shape(header) {
        Shape::Multipart(boundary) => {
            out.extend_from_slice(&without_cte(header));
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&multipart(body, &boundary, depth)?);
        }
        Shape::Message => {
            out.extend_from_slice(&without_cte(header));
            out.extend_from_slice(b"\r\n");
            let (h, b) = mime::split_header_body(body);
            out.extend_from_slice(&entity(h, b, depth + 1)?);
        }
        shape => {
            if !mime::is_identity_encoding(header) {
                return Err(Error::Malformed(
                    "8-bit bytes in an encoded part: not re-encoded".into(),
                ));
            }
            out.extend_from_slice(&without_cte(header));
            if matches!(shape, Shape::Text) {
                out.extend_from_slice(b"Content-Transfer-Encoding: quoted-printable\r\n\r\n");
                out.extend_from_slice(&quoted_printable(body));
            } else {
                out.extend_from_slice(b"Content-Transfer-Encoding: base64\r\n\r\n");
                let lines = mime::base64_lines(body);
                out.extend_from_slice(lines.strip_suffix(b"\r\n").unwrap_or(&lines));
            }
        }
    }
    Ok(out)
}

/// The parts of a multipart body, each re-encoded, between the same
/// delimiters (RFC 2046 §5.1.1).
fn multipart(body: &[u8], boundary: &str, depth: usize) -> Result<Vec<u8>> {
    let parts = mime::multipart_parts(body, boundary);
    if parts.is_empty() {
        return Err(Error::Malformed("multipart without parts".into()));
    }
    let mut out = Vec::with_capacity(body.len() + body.len() / 3 + 64);
    for part in parts {
        let (h, b) = mime::split_header_body(part);
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        out.extend_from_slice(&entity(h, b, depth + 1)?);
        // The line break before the next delimiter belongs to it.
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Ok(out)
}

/// Whether byte `b` at `col` of a line of `len` bytes may stay literal.
fn qp_literal(b: u8, col: usize, len: usize) -> bool {
    match b {
        // Trailing white space is encoded: relays strip it.
        b' ' | b'\t' => col + 1 < len,
        b'=' => false,
        33..=126 => true,
        _ => false,
    }
}

/// Quoted-printable (RFC 2045 §6.7) of text: line breaks (LF or CRLF) stay
/// hard CRLF breaks, lines are cut with soft breaks at 76 columns, and a
/// line starting with `From ` or consisting of `.` is escaped.
pub(crate) fn quoted_printable(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 8 + 4);
    let mut lines = text.split(|&b| b == b'\n').peekable();
    while let Some(raw) = lines.next() {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        let escape_first = line.starts_with(b"From ") || line == b".";
        let mut col = 0;
        for (i, &b) in line.iter().enumerate() {
            let literal = qp_literal(b, i, line.len()) && !(i == 0 && escape_first);
            let width = if literal { 1 } else { 3 };
            if col + width > QP_LINE - 1 {
                out.extend_from_slice(b"=\r\n");
                col = 0;
            }
            if literal {
                out.push(b);
            } else {
                out.extend_from_slice(format!("={b:02X}").as_bytes());
            }
            col += width;
        }
        if lines.peek().is_some() {
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn quoted_printable_is_7bit_short_and_escapes() {
        let text = "Grüße\r\nFrom here\n.\r\ntrailing \r\n".as_bytes();
        let qp = quoted_printable(text);
        assert_eq!(
            qp,
            b"Gr=C3=BC=C3=9Fe\r\n=46rom here\r\n=2E\r\ntrailing=20\r\n".to_vec()
        );
        let long = "é".repeat(100);
        let qp = quoted_printable(long.as_bytes());
        assert!(mime::is_7bit(&qp));
        assert!(qp.split(|&b| b == b'\n').all(|l| l.len() <= 77));
    }

    #[test]
    fn multipart_leaves_are_re_encoded_and_7bit_parts_kept() {
        let header = b"Content-Type: multipart/mixed; boundary=\"xx\"\r\n\
                       Content-Transfer-Encoding: 8bit\r\n";
        let body = "pre\r\n--xx\r\nContent-Type: text/plain; charset=utf-8\r\n\
                    Content-Transfer-Encoding: 8bit\r\n\r\nhé\r\n--xx\r\n\
                    Content-Type: text/plain\r\n\r\nplain\r\n--xx\r\n\
                    Content-Type: application/octet-stream\r\n\r\n\x01\u{ff}\r\n--xx--\r\n";
        let out = seven_bit(header, body.as_bytes()).unwrap();
        assert!(mime::is_7bit(&out));
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("Content-Transfer-Encoding: 8bit"), "{text}");
        assert!(
            text.contains("quoted-printable\r\n\r\nh=C3=A9\r\n--xx\r\n"),
            "{text}"
        );
        assert!(text.contains("Content-Type: text/plain\r\n\r\nplain\r\n--xx\r\n"));
        assert!(text.contains("base64\r\n\r\nAcO/\r\n--xx--\r\n"), "{text}");
    }

    #[test]
    fn refuses_what_it_cannot_re_encode() {
        let deep = b"Content-Type: message/rfc822\r\n";
        let mut body = b"Content-Type: text/plain\r\n\r\n\xff\r\n".to_vec();
        for _ in 0..=MAX_MIME_DEPTH {
            let mut b = deep.to_vec();
            b.extend_from_slice(b"\r\n");
            b.extend_from_slice(&body);
            body = b;
        }
        assert!(seven_bit(deep, &body).is_err());
        assert!(seven_bit(b"Content-Type: text/plain; name=\"\xc3\xa9\"\r\n", b"\xff").is_err());
        assert!(seven_bit(b"Content-Transfer-Encoding: base64\r\n", b"\xff").is_err());
    }
}
