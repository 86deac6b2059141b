//! The small part of MIME (RFC 2045-2049) the S/MIME engine needs: split an
//! entity into header and body, read Content-Type and its parameters,
//! decode base64 bodies, split `multipart/signed` into its two parts keeping
//! the exact bytes of the signed part, canonicalise line endings, and write
//! the `application/pkcs7-mime` and `multipart/signed` entities Sealgate
//! sends.
//!
//! Trusts: nothing; all input is mail. Bounded by [`MAX_MESSAGE_SIZE`] and
//! [`MAX_HEADER_LINES`]. Must never: change the bytes of a signed part
//! before its signature is checked.

use base64::Engine;

use crate::error::Error;

/// Largest message (or entity) the engine takes.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;
/// Most header fields read from one entity.
pub const MAX_HEADER_LINES: usize = 1000;

/// One header field, unfolded (name as written, value without the CRLF).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Field name.
    pub name: String,
    /// Unfolded value, leading whitespace trimmed.
    pub value: String,
    /// The field exactly as received (with its folding and line end).
    pub raw: Vec<u8>,
}

/// A MIME entity: header fields and the body bytes.
#[derive(Debug, Clone)]
pub struct Entity<'a> {
    /// Header fields in order.
    pub headers: Vec<Header>,
    /// The body (after the blank line), unchanged.
    pub body: &'a [u8],
}

/// A parsed Content-Type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType {
    /// `type/subtype`, lower-cased.
    pub mime_type: String,
    /// Parameters, names lower-cased, values unquoted.
    pub params: Vec<(String, String)>,
}

impl ContentType {
    /// The value of parameter `name` (case-insensitive name).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Parses a Content-Type value.
    pub fn parse(value: &str) -> ContentType {
        let mut parts = split_params(value).into_iter();
        let mime_type = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let params = parts
            .filter_map(|p| {
                let (n, v) = p.split_once('=')?;
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .map(|v| v.replace("\\\"", "\"").replace("\\\\", "\\"))
                    .unwrap_or_else(|| v.to_owned());
                Some((n.trim().to_ascii_lowercase(), v))
            })
            .collect();
        ContentType { mime_type, params }
    }
}

/// Splits at `;` outside quoted strings.
fn split_params(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in value.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => {
                cur.push(c);
                escaped = true;
            }
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ';' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Splits an entity into header fields and body.
pub fn parse(input: &[u8]) -> Result<Entity<'_>, Error> {
    if input.len() > MAX_MESSAGE_SIZE {
        return Err(Error::Limit("message size"));
    }
    let mut headers: Vec<Header> = Vec::new();
    let mut pos = 0usize;
    loop {
        let rest = input.get(pos..).unwrap_or_default();
        if rest.is_empty() {
            return Ok(Entity { headers, body: &[] });
        }
        let line_end = rest
            .iter()
            .position(|b| *b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let line = rest.get(..line_end).unwrap_or_default();
        let content = trim_eol(line);
        if content.is_empty() {
            return Ok(Entity {
                headers,
                body: rest.get(line_end..).unwrap_or_default(),
            });
        }
        if content.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            let last = headers
                .last_mut()
                .ok_or_else(|| Error::Malformed("header starts with a continuation".to_owned()))?;
            last.value.push(' ');
            last.value.push_str(String::from_utf8_lossy(content).trim());
            last.raw.extend_from_slice(line);
        } else {
            let text = String::from_utf8_lossy(content);
            let (name, value) = text
                .split_once(':')
                .ok_or_else(|| Error::Malformed("header line without a colon".to_owned()))?;
            if headers.len() >= MAX_HEADER_LINES {
                return Err(Error::Limit("header count"));
            }
            headers.push(Header {
                name: name.trim().to_owned(),
                value: value.trim().to_owned(),
                raw: line.to_vec(),
            });
        }
        pos += line_end;
    }
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

impl Entity<'_> {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// The Content-Type (text/plain when absent, RFC 2045).
    pub fn content_type(&self) -> ContentType {
        ContentType::parse(self.header("Content-Type").unwrap_or("text/plain"))
    }

    /// The body with its Content-Transfer-Encoding undone (base64 and the
    /// identity encodings; quoted-printable is not used for CMS bodies).
    pub fn decoded_body(&self) -> Result<Vec<u8>, Error> {
        let cte = self
            .header("Content-Transfer-Encoding")
            .unwrap_or("7bit")
            .trim()
            .to_ascii_lowercase();
        match cte.as_str() {
            "base64" => decode_base64(self.body),
            "7bit" | "8bit" | "binary" => Ok(self.body.to_vec()),
            other => Err(Error::Unsupported(format!(
                "transfer encoding {other} for an S/MIME body"
            ))),
        }
    }
}

/// Decodes base64 ignoring whitespace and line breaks into one buffer
/// sized up front from the text's length.
///
/// The common form (lines of base64 ended by CRLF or LF) is decoded in one
/// pass: each line is trimmed and staged in a small cache-resident buffer
/// whose whole quanta are decoded straight into the output. Only if that
/// fails (whitespace inside a line, or bad base64) is the text decoded again
/// with every whitespace byte filtered out, which also gives the verdict.
pub fn decode_base64(text: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = vec![0u8; text.len() / 4 * 3 + 3];
    let n = decode_lines(text, &mut out, false)
        .or_else(|_| decode_lines(text, &mut out, true))
        .map_err(|_| Error::Malformed("base64 body".to_owned()))?;
    out.truncate(n);
    Ok(out)
}

/// One pass of [`decode_base64`] into `out` (which has room for the whole
/// result); `filter` removes whitespace inside lines as well. Returns the
/// decoded length.
fn decode_lines(text: &[u8], out: &mut [u8], filter: bool) -> Result<usize, ()> {
    /// Staged base64 decoded at a time (fits in the L1/L2 cache).
    const STAGE: usize = 16 * 1024;
    let engine = &base64::engine::general_purpose::STANDARD;
    let mut stage: Vec<u8> = Vec::with_capacity(STAGE + 128);
    let mut n = 0usize;
    let mut decode = |quanta: &[u8], n: &mut usize| -> Result<(), ()> {
        let dest = out.get_mut(*n..).ok_or(())?;
        *n += engine.decode_slice(quanta, dest).map_err(|_| ())?;
        Ok(())
    };
    let mut start = 0usize;
    let ends = memchr::memchr_iter(b'\n', text).chain(std::iter::once(text.len()));
    for end in ends {
        let line = text.get(start..end).unwrap_or_default().trim_ascii();
        start = end + 1;
        if filter {
            stage.extend(line.iter().filter(|b| !b.is_ascii_whitespace()));
        } else {
            stage.extend_from_slice(line);
        }
        // Decode whole quanta that cannot hold the final padding (a `=`
        // before more data must stay an error, not end one base64 run).
        if stage.len() >= STAGE && memchr::memchr(b'=', &stage).is_none() {
            let whole = stage.len() / 4 * 4;
            decode(stage.get(..whole).unwrap_or_default(), &mut n)?;
            stage.drain(..whole);
        }
    }
    decode(&stage, &mut n)?;
    Ok(n)
}

/// Base64 in 76-character lines with CRLF.
pub fn encode_base64(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    push_base64(&mut out, data);
    out
}

/// Appends base64 in 76-character lines with CRLF to `out`.
pub fn push_base64(out: &mut Vec<u8>, data: &[u8]) {
    out.reserve(data.len() / 57 * 78 + 80);
    let mut line = [0u8; 76];
    for chunk in data.chunks(57) {
        let n = base64::engine::general_purpose::STANDARD
            .encode_slice(chunk, &mut line)
            .unwrap_or(0);
        out.extend_from_slice(line.get(..n).unwrap_or_default());
        out.extend_from_slice(b"\r\n");
    }
}

/// Whether every line ending is already CRLF (no bare CR or LF).
///
/// One branch-free pass over adjacent byte pairs (which vectorises): a CR
/// must be followed by an LF and an LF preceded by a CR, so in every pair
/// "the first is CR" and "the second is LF" must agree.
pub fn is_crlf(input: &[u8]) -> bool {
    const BLOCK: usize = 4096;
    if input.first() == Some(&b'\n') || input.last() == Some(&b'\r') {
        return false;
    }
    let mut at = 0usize;
    while at + 1 < input.len() {
        let end = (at + BLOCK).min(input.len() - 1);
        let firsts = input.get(at..end).unwrap_or_default();
        let seconds = input.get(at + 1..end + 1).unwrap_or_default();
        let mismatch = firsts.iter().zip(seconds).fold(0u8, |acc, (a, b)| {
            acc | (u8::from(*a == b'\r') ^ u8::from(*b == b'\n'))
        });
        if mismatch != 0 {
            return false;
        }
        at = end;
    }
    true
}

/// Converts every line ending to CRLF (bare LF and bare CR alike).
pub fn to_crlf(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + input.len() / 40);
    let mut rest = input;
    while let Some(i) = memchr::memchr2(b'\r', b'\n', rest) {
        let (run, tail) = rest.split_at(i);
        out.extend_from_slice(run);
        out.extend_from_slice(b"\r\n");
        rest = match tail {
            [b'\r', b'\n', more @ ..] => more,
            [_, more @ ..] => more,
            [] => &[],
        };
    }
    out.extend_from_slice(rest);
    out
}

/// The two parts of a `multipart/signed` body: the exact bytes of the
/// first (signed) part, without the CRLF before the delimiter, and the
/// second part as an entity.
pub fn split_signed<'a>(body: &'a [u8], boundary: &str) -> Result<(&'a [u8], Entity<'a>), Error> {
    let parts = split_multipart(body, boundary)?;
    match parts.as_slice() {
        [signed, sig] => Ok((signed, parse(sig)?)),
        _ => Err(Error::Malformed(
            "multipart/signed must have exactly two parts".to_owned(),
        )),
    }
}

/// Most parts read from one multipart body.
const MAX_PARTS: usize = 1000;

/// The parts of a multipart body (exact bytes, the line break before each
/// delimiter belonging to the delimiter, RFC 2046 5.1.1).
pub fn split_multipart<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<&'a [u8]>, Error> {
    if boundary.is_empty() || boundary.len() > 70 {
        return Err(Error::Malformed("multipart boundary".to_owned()));
    }
    let delim = format!("--{boundary}");
    let delim = delim.as_bytes();
    let mut parts = Vec::new();
    let mut start: Option<usize> = None;
    let mut pos = 0usize;
    while pos < body.len() {
        let rest = body.get(pos..).unwrap_or_default();
        let line_len = rest
            .iter()
            .position(|b| *b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let line = trim_eol(rest.get(..line_len).unwrap_or_default());
        if let Some(after) = line.strip_prefix(delim) {
            let closing = after.starts_with(b"--");
            let tail = if closing {
                after.get(2..).unwrap_or_default()
            } else {
                after
            };
            if tail.iter().all(|b| *b == b' ' || *b == b'\t') {
                if let Some(s) = start {
                    // The CRLF (or LF) before the delimiter is part of it.
                    let mut end = pos;
                    if end > s && body.get(end - 1) == Some(&b'\n') {
                        end -= 1;
                        if end > s && body.get(end - 1) == Some(&b'\r') {
                            end -= 1;
                        }
                    }
                    if parts.len() >= MAX_PARTS {
                        return Err(Error::Limit("multipart part count"));
                    }
                    parts.push(body.get(s..end).unwrap_or_default());
                }
                if closing {
                    return Ok(parts);
                }
                start = Some(pos + line_len);
            }
        }
        pos += line_len;
    }
    Err(Error::Malformed(
        "multipart without a closing delimiter".to_owned(),
    ))
}

/// A random MIME boundary.
pub fn boundary() -> Result<String, Error> {
    let mut b = [0u8; 12];
    aws_lc_rs::rand::fill(&mut b)?;
    Ok(format!(
        "----sealgate-{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    ))
}

/// Header fields of `entity` other than the MIME content fields
/// (Content-*, MIME-Version), in order, as received.
pub fn non_content_headers(entity: &Entity<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    for h in &entity.headers {
        let n = h.name.to_ascii_lowercase();
        if n.starts_with("content-") || n == "mime-version" {
            continue;
        }
        out.extend_from_slice(&to_crlf(&h.raw));
    }
    out
}

/// An `application/pkcs7-mime` entity (headers and base64 body) holding `der`.
pub fn pkcs7_mime_entity(smime_type: &str, der: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    push_pkcs7_mime_entity(&mut out, smime_type, der);
    out
}

/// Appends an `application/pkcs7-mime` entity holding `der` to `out`.
pub fn push_pkcs7_mime_entity(out: &mut Vec<u8>, smime_type: &str, der: &[u8]) {
    let head = format!(
        "Content-Type: application/pkcs7-mime; smime-type={smime_type}; name=smime.p7m\r\n\
         Content-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=smime.p7m\r\n\r\n"
    );
    out.extend_from_slice(head.as_bytes());
    push_base64(out, der);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn headers_and_params() {
        let m = b"Subject: a\r\n b\r\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\";\r\n\tmicalg=sha-256; boundary=\"x;y\"\r\n\r\nbody";
        let e = parse(m).unwrap();
        assert_eq!(e.header("subject"), Some("a b"));
        let ct = e.content_type();
        assert_eq!(ct.mime_type, "multipart/signed");
        assert_eq!(ct.param("boundary"), Some("x;y"));
        assert_eq!(ct.param("MICALG"), Some("sha-256"));
        assert_eq!(e.body, b"body");
    }

    #[test]
    fn multipart_keeps_exact_bytes() {
        let body = b"preamble\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n\r\n--b\r\nX: y\r\n\r\nsig\r\n--b--\r\n";
        let (signed, sig) = split_signed(body, "b").unwrap();
        assert_eq!(signed, b"Content-Type: text/plain\r\n\r\nhi\r\n");
        assert_eq!(sig.body, b"sig");
        assert!(split_multipart(b"--b\r\nx", "b").is_err());
    }

    #[test]
    fn crlf() {
        assert_eq!(to_crlf(b"a\nb\r\nc\rd"), b"a\r\nb\r\nc\r\nd");
        assert!(is_crlf(b"a\r\nb\r\n") && is_crlf(b""));
        assert!(!is_crlf(b"a\nb") && !is_crlf(b"a\rb") && !is_crlf(b"a\r"));
        assert!(!is_crlf(b"\n") && !is_crlf(b"\r") && !is_crlf(b"\r\r\n") && is_crlf(b"x"));
        let mut long = b"line\r\n".repeat(2000);
        assert!(is_crlf(&long));
        long.insert(4096, b'\n');
        assert!(!is_crlf(&long));
    }

    #[test]
    fn base64_lines_and_whitespace() {
        let data: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let text = encode_base64(&data);
        assert_eq!(decode_base64(&text).unwrap(), data);
        let lf: Vec<u8> = text.iter().copied().filter(|b| *b != b'\r').collect();
        assert_eq!(decode_base64(&lf).unwrap(), data);
        let spaced: Vec<u8> = text.iter().flat_map(|b| [*b, b' ']).collect();
        assert_eq!(decode_base64(&spaced).unwrap(), data);
        assert_eq!(decode_base64(b"").unwrap(), b"");
        assert!(decode_base64(b"QQ==QUFB").is_err());
        assert!(decode_base64(b"QUF*").is_err());
        // Lines of changing width, blank and short lines.
        assert_eq!(
            decode_base64(b"QUFB\r\nQUFBQUFB\r\nQQ\r\n==\r\n").unwrap(),
            b"AAAAAAAAAA"
        );
        let short_lines = b"QUFB\nQ\nQU\nF\n";
        let expected = base64::engine::general_purpose::STANDARD
            .decode("QUFBQQUF")
            .unwrap();
        assert_eq!(decode_base64(short_lines).unwrap(), expected);
    }
}
