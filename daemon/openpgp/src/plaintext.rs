//! Decrypted bytes, zeroed when they are dropped and when the buffer
//! holding them moves to a bigger one.
//!
//! Why not `zeroize::Zeroizing<Vec<u8>>`: it zeroes a vector's elements one
//! volatile byte write at a time (~3 ms for a 10 MB message here, a tenth
//! of the decryption), and a `Vec` that grows on its own frees its old
//! buffer as it is, plaintext and all. [`Plaintext`] grows by hand (copy,
//! then zero the old buffer) and zeroes through `zeroize`'s bulk path.
//!
//! Invariant, kept by the few methods that change the bytes: every byte of
//! the allocation past the length is zero or was never written. So a drop
//! zeroes the length only, and a buffer may be reserved far larger than it
//! ends up (untouched pages cost nothing, and are not touched to be zeroed).
//!
//! Trusts nothing it reads; holds no key.

use std::fmt;
use std::io::{self, Read};
use std::ops::Deref;

use zeroize::Zeroize as _;

/// Plaintext bytes, zeroed on drop. Reads as a byte slice; its `Debug`
/// shows the length, never the bytes.
#[derive(Default)]
pub struct Plaintext(Vec<u8>);

/// The least a full buffer grows by.
const MIN_GROWTH: usize = 64 * 1024;

/// How many times larger a full buffer becomes: more than two, because
/// growing copies and zeroes what is there (a compressed message gives no
/// hint of its plaintext's size), while room never written costs nothing.
/// Not eight: on the bench a 10 MB plaintext then grew into a 40 MB buffer,
/// past glibc's 32 MiB mmap threshold, where every buffer is fresh pages.
const GROWTH_FACTOR: usize = 4;

/// Zero-filled room handed to a read: it starts at this and doubles up to
/// [`MAX_WINDOW`], so that room no read uses is not zero-filled for nothing.
const MIN_WINDOW: usize = 64 * 1024;
const MAX_WINDOW: usize = 1 << 20;

impl Plaintext {
    /// Plaintext starting with `bytes` (which the caller built, so nothing
    /// past their length was written).
    pub(crate) fn from_fresh(bytes: Vec<u8>) -> Self {
        Plaintext(bytes)
    }

    /// Makes room for `additional` more bytes, moving (copy, zero the old
    /// buffer) if there is not enough; `at_most` bounds the new capacity
    /// from above unless more is needed.
    pub(crate) fn reserve(&mut self, additional: usize, at_most: usize) {
        let needed = self.0.len().saturating_add(additional);
        if needed <= self.0.capacity() {
            return;
        }
        let grown = self
            .0
            .capacity()
            .saturating_mul(GROWTH_FACTOR)
            .max(self.0.capacity().saturating_add(MIN_GROWTH));
        let mut bigger = Vec::with_capacity(grown.min(at_most).max(needed));
        bigger.extend_from_slice(&self.0);
        // The old buffer is dropped here, zeroed.
        *self = Plaintext(bigger);
    }

    /// Appends `data`, moving to a bigger buffer as [`Self::reserve`] does.
    pub(crate) fn extend_from_slice(&mut self, data: &[u8]) {
        self.reserve(data.len(), usize::MAX);
        self.0.extend_from_slice(data);
    }

    /// Zeroes and drops everything from `start` on.
    pub(crate) fn discard_from(&mut self, start: usize) {
        if let Some(tail) = self.0.get_mut(start..) {
            tail.zeroize();
        }
        self.0.truncate(start);
    }

    /// Makes everything from `from` on CRLF-canonical, as
    /// [`crate::mime::to_crlf`] would: no copy when it is already.
    pub(crate) fn canonicalise_crlf_from(&mut self, from: usize) {
        let tail = self.0.get(from..).unwrap_or_default();
        if crate::mime::has_bare_lf(tail) {
            let canon = Plaintext(crate::mime::to_crlf(tail));
            self.discard_from(from);
            self.extend_from_slice(&canon);
        } else if !tail.is_empty() && !tail.ends_with(b"\n") {
            self.extend_from_slice(b"\r\n");
        }
    }
}

impl Drop for Plaintext {
    fn drop(&mut self) {
        // Past the length there is nothing to zero (the invariant).
        self.0.as_mut_slice().zeroize();
    }
}

impl Deref for Plaintext {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Plaintext({} bytes)", self.0.len())
    }
}

/// Reads `reader` to its end, appending to `out`, as `Read::read_to_end`
/// would; `limit` is the most the reader gives (its `take`), which bounds
/// how far `out` grows. Room is zero-filled a window at a time just before
/// it is read into (no `unsafe` here), each byte once, and what the last
/// read left unused is zeroed again before it is cut off, so the invariant
/// holds whatever a reader writes. On error `out` keeps what was read; the
/// caller discards it.
pub(crate) fn read_to_end(
    reader: &mut impl Read,
    out: &mut Plaintext,
    limit: usize,
) -> io::Result<()> {
    let start = out.0.len();
    let mut filled = start;
    let mut window = MIN_WINDOW;
    let result = loop {
        if filled == out.0.len() {
            out.reserve(1, start.saturating_add(limit).saturating_add(1));
            let room = (out.0.capacity() - out.0.len()).min(window);
            out.0.resize(filled + room, 0);
            window = window.saturating_mul(2).min(MAX_WINDOW);
        }
        match reader.read(out.0.get_mut(filled..).unwrap_or_default()) {
            Ok(0) => break Ok(()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    out.discard_from(filled);
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// Hands out `data` a few bytes at a time.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.0.len()).min(7_777);
            let (now, rest) = self.0.split_at(n);
            buf.get_mut(..n).unwrap().copy_from_slice(now);
            self.0 = rest;
            Ok(n)
        }
    }

    #[test]
    fn reads_through_growth_and_keeps_what_was_there() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        for reserve in [0, 10, 299_999, 300_000, 1 << 20] {
            let mut out = Plaintext::from_fresh(b"head:".to_vec());
            out.reserve(reserve, usize::MAX);
            read_to_end(&mut Trickle(&data), &mut out, usize::MAX).unwrap();
            assert_eq!(out.get(..5).unwrap(), b"head:");
            assert!(out.get(5..).unwrap() == data.as_slice(), "{reserve}");
        }
        // Growth stops at the limit (plus the byte that tells it was passed).
        let mut out = Plaintext::default();
        read_to_end(&mut Trickle(&data[..1000]), &mut out, 1000).unwrap();
        assert_eq!(out.0.capacity(), 1001);
    }

    #[test]
    fn cuts_what_a_reader_scribbled_past_its_count() {
        /// Writes its whole buffer with 0xAA, but reports 3 bytes.
        struct Scribbles(bool);
        impl Read for Scribbles {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if std::mem::replace(&mut self.0, true) {
                    return Ok(0);
                }
                buf.fill(0xAA);
                Ok(3)
            }
        }
        let mut out = Plaintext::default();
        read_to_end(&mut Scribbles(false), &mut out, usize::MAX).unwrap();
        // The rest of the window was zeroed by `discard_from` and cut off.
        assert_eq!(&out[..], &[0xAA; 3]);
    }

    #[test]
    fn keeps_what_was_read_before_an_error() {
        struct Fails(bool);
        impl Read for Fails {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if std::mem::replace(&mut self.0, true) {
                    return Err(io::Error::other("broken"));
                }
                buf.get_mut(..3).unwrap().copy_from_slice(b"abc");
                Ok(3)
            }
        }
        let mut out = Plaintext::default();
        assert!(read_to_end(&mut Fails(false), &mut out, usize::MAX).is_err());
        assert_eq!(&out[..], b"abc");
        out.discard_from(1);
        assert_eq!(&out[..], b"a");
        assert_eq!(format!("{out:?}"), "Plaintext(1 bytes)");
    }

    #[test]
    fn canonicalises_line_ends_in_place() {
        for (input, want) in [
            (&b"a\r\nb\r\n"[..], &b"a\r\nb\r\n"[..]),
            (b"a\nb", b"a\r\nb\r\n"),
            (b"a\r\nb", b"a\r\nb\r\n"),
            (b"\nx\r\n", b"\r\nx\r\n"),
        ] {
            let mut buf = Plaintext::from_fresh(b"H: v\n".to_vec());
            buf.extend_from_slice(input);
            buf.canonicalise_crlf_from(5);
            assert_eq!(&buf[..5], b"H: v\n");
            assert_eq!(&buf[5..], want);
        }
    }
}
