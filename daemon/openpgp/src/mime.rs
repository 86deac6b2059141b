//! The little MIME this engine needs around OpenPGP: header blocks split
//! into fields, content headers told apart from the rest, CRLF
//! canonicalisation, boundaries and base64 bodies. Parsing whole messages
//! is `mail-parser`'s job; this module only cuts and assembles bytes.
//!
//! Trusts nothing: input may be any bytes; every function is total.

use base64::Engine as _;

/// Splits a message or entity at the first empty line: (header block with
/// its final line break, body). Without an empty line, all is header.
pub(crate) fn split_header_body(raw: &[u8]) -> (&[u8], &[u8]) {
    let mut i = 0;
    while i < raw.len() {
        let rest = raw.get(i..).unwrap_or_default();
        if rest.starts_with(b"\r\n") {
            return (
                raw.get(..i).unwrap_or_default(),
                raw.get(i + 2..).unwrap_or_default(),
            );
        }
        if rest.starts_with(b"\n") {
            return (
                raw.get(..i).unwrap_or_default(),
                raw.get(i + 1..).unwrap_or_default(),
            );
        }
        // Skip to the next line.
        match rest.iter().position(|&b| b == b'\n') {
            Some(p) => i += p + 1,
            None => break,
        }
    }
    (raw, &[])
}

/// Header fields, each with its continuation lines, as raw bytes.
pub(crate) fn fields(header: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = Vec::new();
    let mut start: Option<usize> = None;
    let mut i = 0;
    while i < header.len() {
        let line_end = header
            .get(i..)
            .and_then(|r| r.iter().position(|&b| b == b'\n'))
            .map(|p| i + p + 1)
            .unwrap_or(header.len());
        let folded = matches!(header.get(i), Some(b' ' | b'\t'));
        if !folded {
            if let Some(s) = start {
                out.extend(header.get(s..i));
            }
            start = Some(i);
        }
        i = line_end;
    }
    if let Some(s) = start {
        out.extend(header.get(s..));
    }
    out
}

fn field_name(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == b':').unwrap_or(0);
    String::from_utf8_lossy(field.get(..end).unwrap_or_default())
        .trim()
        .to_ascii_lowercase()
}

/// True for the fields that describe the body (`Content-*`, `MIME-Version`).
fn is_content_field(field: &[u8]) -> bool {
    let name = field_name(field);
    name.starts_with("content-") || name == "mime-version"
}

/// The fields that describe the message, not its body, CRLF-terminated.
pub(crate) fn envelope_fields(header: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields(header).into_iter().filter(|f| !is_content_field(f)) {
        out.extend_from_slice(&to_crlf(f));
    }
    out
}

/// The `Content-*` fields (the body's description), CRLF-terminated.
pub(crate) fn content_fields(header: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields(header).into_iter().filter(|f| {
        let n = field_name(f);
        n.starts_with("content-")
    }) {
        out.extend_from_slice(&to_crlf(f));
    }
    out
}

/// Rewrites every line ending as CRLF, and ends a non-empty text with one.
pub(crate) fn to_crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 32 + 2);
    push_crlf(&mut out, data);
    out
}

/// Appends `data` to `out` with every line ending as CRLF, and ends a
/// non-empty text with one. Copies in one piece when `data` has no bare LF
/// (checked in one vectorised pass), else line by line.
pub(crate) fn push_crlf(out: &mut Vec<u8>, data: &[u8]) {
    if !has_bare_lf(data) {
        out.extend_from_slice(data);
        if !data.is_empty() && !data.ends_with(b"\n") {
            out.extend_from_slice(b"\r\n");
        }
        return;
    }
    let mut rest = data;
    while let Some(p) = memchr::memchr(b'\n', rest) {
        let line = rest.get(..p).unwrap_or_default();
        out.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        out.extend_from_slice(b"\r\n");
        rest = rest.get(p + 1..).unwrap_or_default();
    }
    out.extend_from_slice(rest);
    if !rest.is_empty() {
        out.extend_from_slice(b"\r\n");
    }
}

/// True if `data` has an LF without a CR before it. One pass without a
/// branch per byte (the compiler vectorises it), not a search per line:
/// a 10 MB plaintext has ~130,000 lines.
pub(crate) fn has_bare_lf(data: &[u8]) -> bool {
    let bare = |prev: u8, byte: u8| u8::from(byte == b'\n') & u8::from(prev != b'\r');
    let first = data.first().is_some_and(|&b| b == b'\n');
    let rest = data
        .iter()
        .zip(data.iter().skip(1))
        .fold(0, |seen, (&prev, &byte)| seen | bare(prev, byte));
    first || rest != 0
}

/// Rewrites every bare LF as CRLF and adds nothing: the exact bytes a
/// detached signature over a MIME part covers (RFC 3156 §5).
pub(crate) fn to_crlf_exact(data: &[u8]) -> Vec<u8> {
    let mut out = to_crlf(data);
    if !data.ends_with(b"\n") && out.ends_with(b"\r\n") {
        out.truncate(out.len() - 2);
    }
    out
}

/// A fresh multipart boundary.
pub(crate) fn boundary() -> String {
    let bytes: [u8; 18] = rand::random();
    format!(
        "=-sealgate-{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// Base64 in 76-column CRLF lines.
pub(crate) fn base64_lines(data: &[u8]) -> Vec<u8> {
    let text = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = Vec::with_capacity(text.len() + text.len() / 38 + 2);
    for chunk in text.as_bytes().chunks(76) {
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// True when an entity header has no `Content-Transfer-Encoding` or an
/// identity one (`7bit`, `8bit`, `binary`): its body is the content itself.
pub(crate) fn is_identity_encoding(header: &[u8]) -> bool {
    fields(header)
        .into_iter()
        .find(|f| field_name(f) == "content-transfer-encoding")
        .is_none_or(|f| {
            let value = f
                .iter()
                .position(|&b| b == b':')
                .and_then(|p| f.get(p + 1..))
                .unwrap_or_default();
            let value = String::from_utf8_lossy(value).trim().to_ascii_lowercase();
            matches!(value.as_str(), "7bit" | "8bit" | "binary")
        })
}

/// True when every byte is 7-bit and no line is longer than 998 octets.
pub(crate) fn is_7bit(data: &[u8]) -> bool {
    data.iter().all(|&b| b < 0x80 && b != 0) && data.split(|&b| b == b'\n').all(|l| l.len() <= 998)
}

/// The address in a `From`-style value: the part in angle brackets, or the
/// whole value trimmed; lower-cased.
pub(crate) fn address_of(value: &str) -> String {
    let v = match (value.rfind('<'), value.rfind('>')) {
        (Some(a), Some(b)) if a < b => value.get(a + 1..b).unwrap_or(value),
        _ => value,
    };
    v.trim().to_ascii_lowercase()
}

/// The delimiter lines of a multipart body, in order, up to and including
/// the closing one: (start of the line break before the delimiter, end of
/// its line, whether it closes). The delimiter is searched for (memmem),
/// not every line looked at: a 13.5 MB armored part is ~200,000 lines.
fn delimiters<'a>(
    body: &'a [u8],
    delim: &'a [u8],
) -> impl Iterator<Item = (usize, usize, bool)> + 'a {
    let mut closed = false;
    memchr::memmem::find_iter(body, delim)
        .filter(move |&line_start| line_start == 0 || body.get(line_start - 1) == Some(&b'\n'))
        .map(move |line_start| {
            let rest = body.get(line_start..).unwrap_or_default();
            let line_len = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
            let tail = rest.get(delim.len()..line_len).unwrap_or_default();
            let before = if line_start >= 2 && body.get(line_start - 2) == Some(&b'\r') {
                line_start - 2
            } else {
                line_start.saturating_sub(1)
            };
            let end = (line_start + line_len + 1).min(body.len());
            (before, end, tail.starts_with(b"--"))
        })
        .take_while(move |&(_, _, closing)| !std::mem::replace(&mut closed, closing))
}

/// The bodies of a multipart entity's parts, exactly as they appear (the
/// line break before each delimiter belongs to the delimiter, RFC 2046 §5.1.1).
pub(crate) fn multipart_parts<'a>(body: &'a [u8], boundary: &str) -> Vec<&'a [u8]> {
    let delim = format!("--{boundary}");
    let marks: Vec<_> = delimiters(body, delim.as_bytes()).collect();
    marks
        .windows(2)
        .filter_map(|w| match w {
            [(_, start, false), (end, _, _)] if start <= end => body.get(*start..*end),
            _ => None,
        })
        .collect()
}

/// Part `n` (from 0) of a multipart body and everything after it, found
/// without searching past its start: for a part whose content says where
/// it ends (an armored block's footer), so that a 13.5 MB part is not
/// scanned for its closing delimiter as well as read. `None` when the body
/// has no such part.
pub(crate) fn part_onward<'a>(body: &'a [u8], boundary: &str, n: usize) -> Option<&'a [u8]> {
    let delim = format!("--{boundary}");
    let (_, start, closing) = delimiters(body, delim.as_bytes()).nth(n)?;
    if closing {
        return None;
    }
    body.get(start..)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_filters_fields() {
        let raw = b"From: a@b\r\nSubject: x\r\n y\r\nContent-Type: text/plain\r\n\r\nbody\r\n";
        let (h, b) = split_header_body(raw);
        assert_eq!(b, b"body\r\n");
        assert_eq!(fields(h).len(), 3);
        assert_eq!(
            envelope_fields(h),
            b"From: a@b\r\nSubject: x\r\n y\r\n".to_vec()
        );
        assert_eq!(content_fields(h), b"Content-Type: text/plain\r\n".to_vec());
    }

    #[test]
    fn tells_identity_transfer_encodings() {
        assert!(is_identity_encoding(b"Content-Type: a/b\r\n"));
        assert!(is_identity_encoding(
            b"Content-Transfer-Encoding:  7Bit \r\n"
        ));
        assert!(!is_identity_encoding(
            b"content-transfer-encoding: base64\r\n"
        ));
        assert!(!is_identity_encoding(
            b"Content-Transfer-Encoding:\r\n quoted-printable\r\n"
        ));
    }

    #[test]
    fn canonicalises_line_endings() {
        assert_eq!(to_crlf(b"a\nb\r\nc"), b"a\r\nb\r\nc\r\n".to_vec());
        assert_eq!(to_crlf(b"\n\r\n"), b"\r\n\r\n".to_vec());
        assert_eq!(to_crlf(b""), b"".to_vec());
        for (input, want) in [
            (&b"a\r\nb\r\n"[..], &b"a\r\nb\r\n"[..]),
            (b"a\nb", b"a\r\nb\r\n"),
            (b"a\r\nb", b"a\r\nb\r\n"),
            (b"\nx\r\n", b"\r\nx\r\n"),
        ] {
            assert_eq!(to_crlf(input), want.to_vec());
        }
        assert_eq!(address_of("Alice <Alice@Example.org>"), "alice@example.org");
    }

    #[test]
    fn cuts_multipart_bodies() {
        let body = b"preamble\r\n--b\r\nA: 1\r\n\r\none\r\n--b\r\n\r\ntwo\r\n--b--\r\n";
        assert_eq!(
            multipart_parts(body, "b"),
            vec![&b"A: 1\r\n\r\none"[..], &b"\r\ntwo"[..]]
        );
        // Not at a line start, LF only, no closing delimiter, nothing at all.
        let body = b"x--b\n--b\none --b\n--bx\ntwo\n--b\n";
        assert_eq!(
            multipart_parts(body, "b"),
            vec![&b"one --b"[..], &b"two"[..]]
        );
        assert!(multipart_parts(b"--b", "b").is_empty());
        assert!(multipart_parts(b"", "b").is_empty());
    }

    #[test]
    fn finds_a_part_and_what_follows() {
        let body = b"pre\r\n--b\r\nVersion: 1\r\n--b\r\nC: 2\r\n\r\ndata\r\n--b--\r\nepi";
        assert_eq!(
            part_onward(body, "b", 1),
            Some(&b"C: 2\r\n\r\ndata\r\n--b--\r\nepi"[..])
        );
        assert_eq!(part_onward(body, "b", 0), Some(&body[10..]));
        // Past the closing delimiter, or no delimiter at all: no part.
        assert_eq!(part_onward(body, "b", 2), None);
        assert_eq!(part_onward(body, "b", 3), None);
        assert_eq!(part_onward(b"no parts", "b", 0), None);
    }

    #[test]
    fn tells_bare_line_feeds() {
        for (data, bare) in [
            (&b""[..], false),
            (b"\n", true),
            (b"\r\n", false),
            (b"a\r\nb\r\n", false),
            (b"a\r\nb\n", true),
            (b"a\r\r\n\nb", true),
            (b"no line end", false),
        ] {
            assert_eq!(has_bare_lf(data), bare, "{data:?}");
        }
        let mut long = b"line of text\r\n".repeat(10_000);
        assert!(!has_bare_lf(&long));
        long[77_777] = b'\n';
        assert!(has_bare_lf(&long));
    }
}
