//! Streaming de-armoring of an ASCII-armored `PGP MESSAGE` (RFC 9580 §6.2)
//! for the decryption path: a `Read` over the armored bytes as they lie in
//! the mail, handing Sequoia binary packets a chunk at a time.
//!
//! Why not Sequoia's own armor reader: it filters the base64 byte by byte
//! and was half of the time of a 10 MB decryption (see README, Benchmark).
//! Here runs of plain lines (one width, whole groups of four base64
//! characters, LF or CRLF) have their text gathered into a bounded staging
//! buffer and decoded in one call to `base64-simd` (AVX2/SSE4.1 when the
//! CPU has them, chosen at run time), which checks every character; any
//! other line goes the general path, one call to the `base64` crate per
//! chunk. Nothing is decoded whole.
//!
//! Leniency: header lines (`Key: value`) are skipped, the blank line after
//! them may be missing, the CRC24 footer is ignored (RFC 9580 §6.1: it must
//! not cause rejection; integrity comes from the MDC or AEAD), and trailing
//! whitespace on a line is dropped. Anything else that is not base64 is an
//! I/O error, which the caller turns into its one decryption error.
//!
//! Trusts nothing: the input is attacker-controlled; memory is bounded by
//! [`CHUNK`] whatever the input (an overlong line is taken in pieces).

use std::io::{self, Read};

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Base64 characters decoded per step (a multiple of 4).
const CHUNK: usize = 64 * 1024;

/// Longest line (with its line break) taken by [`Dearmor::plain_lines`];
/// longer ones go through the general path, which takes them in pieces.
const MAX_PLAIN_LINE: usize = 1024;

const BEGIN: &[u8] = b"-----BEGIN PGP MESSAGE-----";

/// Standard alphabet; padding optional (the stream is cut in chunks, and
/// some writers drop it at the end).
const ENGINE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Binary packets out of an armored message.
pub(crate) struct Dearmor<'a> {
    /// Armored lines not yet looked at.
    rest: &'a [u8],
    /// Base64 characters gathered but not yet decoded (< 4 between steps).
    chars: Vec<u8>,
    /// Decoded bytes not yet handed out, from `at`.
    decoded: Vec<u8>,
    at: usize,
    /// The footer (or the end of input) has been reached.
    ended: bool,
}

/// The first line of `data` without its line break, and what follows it.
fn next_line(data: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b'\n', data) {
        Some(p) => (
            data.get(..p).unwrap_or_default(),
            data.get(p + 1..).unwrap_or_default(),
        ),
        None => (data, &[]),
    }
}

fn trim_end(line: &[u8]) -> &[u8] {
    let end = line
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |p| p + 1);
    line.get(..end).unwrap_or_default()
}

fn trim_start(data: &[u8]) -> &[u8] {
    let start = data
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(data.len());
    data.get(start..).unwrap_or_default()
}

/// True for the line that ends the base64 body: the footer or the CRC24.
fn ends_body(line: &[u8]) -> bool {
    line.starts_with(b"-----") || (line.len() == 5 && line.first() == Some(&b'='))
}

/// Skips the armor header lines (`Key: value`) and the blank line after them.
fn skip_headers(mut data: &[u8]) -> &[u8] {
    loop {
        let (line, after) = next_line(data);
        let line = trim_end(line);
        if line.is_empty() {
            return after;
        }
        if !line.contains(&b':') {
            // No blank line after the headers: this is the body already.
            return data;
        }
        if after.is_empty() {
            return after;
        }
        data = after;
    }
}

/// What follows the `BEGIN PGP MESSAGE` line if `data` starts with one
/// (leading whitespace allowed).
fn after_begin(data: &[u8]) -> Option<&[u8]> {
    let (first, after) = next_line(trim_start(data));
    (trim_end(first) == BEGIN).then_some(after)
}

/// True if `data` starts with a `BEGIN PGP MESSAGE` line (leading
/// whitespace allowed): [`Dearmor::new`] takes it, and stops at its footer.
pub(crate) fn is_armored_message(data: &[u8]) -> bool {
    after_begin(data).is_some()
}

/// An upper bound on the binary length of `data` as [`Dearmor`] reads it:
/// three bytes per four characters if it is an armored message, its own
/// length otherwise (then Sequoia reads it as it is).
pub(crate) fn binary_len_bound(data: &[u8]) -> usize {
    match after_begin(data) {
        Some(_) => data.len() / 4 * 3 + 3,
        None => data.len(),
    }
}

impl<'a> Dearmor<'a> {
    /// A reader over `data` if it is an armored `PGP MESSAGE` (leading
    /// whitespace allowed); `None` for anything else (binary, other kinds),
    /// which the caller hands to Sequoia as it is.
    pub(crate) fn new(data: &'a [u8]) -> Option<Self> {
        Some(Dearmor {
            rest: skip_headers(after_begin(data)?),
            chars: Vec::with_capacity(CHUNK + 128),
            decoded: Vec::with_capacity(CHUNK / 4 * 3 + 3),
            at: 0,
            ended: false,
        })
    }

    /// The common case, without a search per line: while the next lines
    /// are as wide as the first (found with one `memchr`), hold whole groups
    /// of four characters and end in LF or CRLF, gathers their text into
    /// `chars`, up to [`CHUNK`] characters, and decodes the run into
    /// `decoded` in one `base64-simd` call. A padded line is left out (it
    /// ends the data; the general path takes it). If the run does not
    /// decode (a character outside the alphabet, whitespace, the footer),
    /// nothing is consumed and [`Self::refill`]'s general path reads the
    /// same lines, so both paths accept exactly the same input. Only called
    /// with nothing staged in `chars`.
    fn plain_lines(&mut self) {
        let Some(lf) = memchr::memchr(b'\n', self.rest) else {
            return;
        };
        let width = lf + 1;
        let text = if self.rest.get(..lf).is_some_and(|l| l.ends_with(b"\r")) {
            lf - 1
        } else {
            lf
        };
        if text == 0 || text % 4 != 0 || width > MAX_PLAIN_LINE {
            return;
        }
        let run = self.rest.get(..CHUNK / text * width).unwrap_or(self.rest);
        let mut lines = 0;
        for line in run.chunks_exact(width) {
            match line.split_at_checked(text) {
                // `end` is as long as the first line's break: one pattern fits.
                Some((body, [b'\n'] | [b'\r', b'\n'])) => self.chars.extend_from_slice(body),
                _ => break,
            }
            lines += 1;
        }
        if self.chars.last() == Some(&b'=') {
            lines -= 1;
            self.chars.truncate(lines * text);
        }
        self.decoded.resize(self.chars.len() / 4 * 3, 0);
        let decoded = base64_simd::STANDARD.decode(
            &self.chars,
            base64_simd::Out::from_slice(self.decoded.as_mut_slice()),
        );
        let whole = matches!(decoded, Ok(d) if d.len() == self.chars.len() / 4 * 3);
        self.chars.clear();
        if whole {
            self.rest = self.rest.get(lines * width..).unwrap_or_default();
        } else {
            self.decoded.clear();
        }
    }

    /// Decodes the next piece of the body into `decoded` (emptied first):
    /// plain lines directly ([`Self::plain_lines`]), otherwise gathers up to
    /// [`CHUNK`] characters of body lines and decodes the longest prefix
    /// that is a multiple of 4 (everything at the end).
    fn refill(&mut self) -> io::Result<()> {
        self.decoded.clear();
        self.at = 0;
        if self.chars.is_empty() {
            self.plain_lines();
            if !self.decoded.is_empty() {
                return Ok(());
            }
        }
        while self.chars.len() < CHUNK && !self.ended {
            if self.rest.is_empty() {
                self.ended = true;
                break;
            }
            let (line, after) = next_line(self.rest);
            let line = trim_end(line);
            if ends_body(line) {
                self.ended = true;
                break;
            }
            let room = CHUNK - self.chars.len();
            if let Some((part, _)) = line.split_at_checked(room).filter(|_| line.len() > room) {
                // An overlong line: what fits now, the rest in the next step.
                self.chars.extend_from_slice(part);
                self.rest = self.rest.get(room..).unwrap_or_default();
                break;
            }
            self.chars.extend_from_slice(line);
            self.rest = after;
        }
        let take = if self.ended {
            self.chars.len()
        } else {
            self.chars.len() - self.chars.len() % 4
        };
        let input = self.chars.get(..take).unwrap_or_default();
        ENGINE
            .decode_vec(input, &mut self.decoded)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.chars.drain(..take);
        Ok(())
    }
}

impl Read for Dearmor<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at >= self.decoded.len() {
            if self.ended && self.chars.is_empty() {
                return Ok(0);
            }
            self.refill()?;
        }
        let ready = self.decoded.get(self.at..).unwrap_or_default();
        let n = ready.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), ready.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn armor(data: &[u8], width: usize, headers: &str, eol: &str) -> Vec<u8> {
        let text = base64::engine::general_purpose::STANDARD.encode(data);
        let mut out = format!("-----BEGIN PGP MESSAGE-----{eol}{headers}{eol}");
        for line in text.as_bytes().chunks(width) {
            out.push_str(std::str::from_utf8(line).unwrap());
            out.push_str(eol);
        }
        out.push_str(&format!("=AbCd{eol}-----END PGP MESSAGE-----{eol}"));
        out.into_bytes()
    }

    fn read_all(data: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        Dearmor::new(data).unwrap().read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn decodes_across_chunks_widths_and_line_ends() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for (width, headers, eol) in [
            (64, "", "\n"),
            (76, "Comment: x\r\nVersion: y\r\n", "\r\n"),
            (61, "", "\r\n"),
        ] {
            let a = armor(&data, width, headers, eol);
            assert_eq!(read_all(&a).unwrap(), data);
        }
        // One line longer than a chunk.
        assert_eq!(read_all(&armor(&data, 1 << 20, "", "\n")).unwrap(), data);
        // Small and empty bodies.
        assert_eq!(read_all(&armor(b"ab", 64, "", "\n")).unwrap(), b"ab");
        assert_eq!(read_all(&armor(b"", 64, "", "\n")).unwrap(), b"");
    }

    #[test]
    fn plain_lines_agree_with_the_general_path() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 13 % 256) as u8).collect();
        // Every length mod 3 (padded last line), widths that are and are not
        // multiples of 4, and a line of another width in the middle.
        for n in [0, 1, 2, 3, 47, 48, 49, 200_000] {
            for (width, eol) in [(64, "\n"), (64, "\r\n"), (4, "\n"), (62, "\r\n")] {
                let a = armor(&data[..n], width, "", eol);
                assert_eq!(read_all(&a).unwrap(), &data[..n], "{n} {width}");
            }
        }
        let a = b"-----BEGIN PGP MESSAGE-----\n\nYWJj\nZGVm\nZ2hp\namts \t\nbW5v  \n\nYWI=\n=AbCd\n-----END PGP MESSAGE-----\n";
        assert_eq!(read_all(a).unwrap(), b"abcdefghijklmnoab");
        // A bad character after good lines of the same width.
        let bad = b"-----BEGIN PGP MESSAGE-----\n\nYWJj\nZGVm\nZ*hp\n-----END PGP MESSAGE-----\n";
        assert!(read_all(bad).is_err());
        // Whitespace inside a line of the common width: the general path
        // trims it (lines "YWJj", "ZGV " → "abc" + the general path's "de").
        let ws = b"-----BEGIN PGP MESSAGE-----\n\nYWJj\nZGVm\nZGU \n-----END PGP MESSAGE-----\n";
        assert_eq!(read_all(ws).unwrap(), b"abcdefde");
    }

    #[test]
    fn refuses_garbage_and_ignores_non_messages() {
        assert!(
            read_all(b"-----BEGIN PGP MESSAGE-----\n\nab*d\n-----END PGP MESSAGE-----\n").is_err()
        );
        assert!(Dearmor::new(b"\x85\x01binary").is_none());
        assert!(Dearmor::new(b"-----BEGIN PGP SIGNATURE-----\n\n").is_none());
        // Headers without the blank line, no footer at all.
        assert_eq!(
            read_all(b"  -----BEGIN PGP MESSAGE-----\nVersion: z\nYWJj\n").unwrap(),
            b"abc"
        );
    }
}
