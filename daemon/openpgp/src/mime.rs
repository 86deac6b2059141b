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
/// non-empty text with one. Copies line by line, not byte by byte.
pub(crate) fn push_crlf(out: &mut Vec<u8>, data: &[u8]) {
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

/// Makes `buf[from..]` CRLF-canonical in place (as [`push_crlf`] would),
/// copying only when it has a bare LF or lacks a final line break.
pub(crate) fn crlf_in_place(buf: &mut Vec<u8>, from: usize) {
    let tail = buf.get(from..).unwrap_or_default();
    let bare_lf =
        memchr::memchr_iter(b'\n', tail).any(|i| i == 0 || tail.get(i - 1) != Some(&b'\r'));
    if bare_lf {
        let canon = zeroize::Zeroizing::new(to_crlf(tail));
        buf.truncate(from);
        buf.extend_from_slice(&canon);
    } else if !tail.is_empty() && !tail.ends_with(b"\n") {
        buf.extend_from_slice(b"\r\n");
    }
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

/// The bodies of a multipart entity's parts, exactly as they appear (the
/// line break before each delimiter belongs to the delimiter, RFC 2046 §5.1.1).
pub(crate) fn multipart_parts<'a>(body: &'a [u8], boundary: &str) -> Vec<&'a [u8]> {
    let delim = format!("--{boundary}");
    let delim = delim.as_bytes();
    // Offsets of delimiter lines: (start of the line break before it, end of its line).
    // The delimiter is searched for (memmem), not every line looked at: a
    // 13.5 MB armored part is ~200,000 lines.
    let mut marks: Vec<(usize, usize, bool)> = Vec::new();
    for line_start in memchr::memmem::find_iter(body, delim) {
        if line_start > 0 && body.get(line_start - 1) != Some(&b'\n') {
            continue;
        }
        let rest = body.get(line_start..).unwrap_or_default();
        let line_len = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
        let tail = rest.get(delim.len()..line_len).unwrap_or_default();
        let closing = tail.starts_with(b"--");
        let before = if line_start >= 2 && body.get(line_start - 2) == Some(&b'\r') {
            line_start - 2
        } else {
            line_start.saturating_sub(1)
        };
        marks.push((before, (line_start + line_len + 1).min(body.len()), closing));
        if closing {
            break;
        }
    }
    marks
        .windows(2)
        .filter_map(|w| match w {
            [(_, start, false), (end, _, _)] if start <= end => body.get(*start..*end),
            _ => None,
        })
        .collect()
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
            let mut buf = b"H: v\n".to_vec();
            crlf_in_place(&mut buf, 5);
            buf.truncate(5);
            buf.extend_from_slice(input);
            crlf_in_place(&mut buf, 5);
            assert_eq!(&buf[5..], want);
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
}
