//! The DATA reader: turns the dot-stuffed byte stream after `354` into the
//! message, and finds its end.
//!
//! Only `<CRLF>.<CRLF>` ends the message. A bare CR or bare LF is never a
//! line end: it is recorded and the whole message is refused once its real
//! end arrives, so none of the SMTP smuggling end-of-data variants can start
//! a second, hidden message. The same scan runs while an oversize message is
//! being discarded, so the end is found the same way whether or not bytes
//! are kept.
//!
//! Pure and incremental: feed it whatever the socket gave, in any split.

use super::reply::SessionError;

/// Longest text line: 998 characters plus CRLF (RFC 5322 §2.1.1, RFC 5321 §4.5.3.1.6).
pub const MAX_TEXT_LINE: usize = 998;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line (after CRLF, or at the start of DATA).
    LineStart,
    /// A `.` at the start of a line.
    Dot,
    /// `.` then CR at the start of a line.
    DotCr,
    /// Inside a line.
    Text,
    /// A CR inside or at the end of a line.
    Cr,
}

/// Incremental reader of one message's DATA section.
#[derive(Debug)]
pub struct DataReader {
    state: State,
    max_size: u64,
    size: u64,
    line_len: usize,
    too_big: bool,
    bare_line_ending: bool,
    nul: bool,
    long_line: bool,
}

impl DataReader {
    pub fn new(max_size: u64) -> DataReader {
        DataReader {
            state: State::LineStart,
            max_size,
            size: 0,
            line_len: 0,
            too_big: false,
            bare_line_ending: false,
            nul: false,
            long_line: false,
        }
    }

    /// Octets of message seen so far (after un-stuffing), kept or not.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Reads from `input`, appending the message to `out` (until it is too
    /// big, then only scanning). Returns `Some(n)` when the end was found in
    /// the first `n` octets of `input`; the rest belongs to the next command.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Option<usize> {
        let mut i = 0;
        while i < input.len() {
            if self.state == State::Text {
                // Fast path: copy up to the next byte that matters.
                let rest = input.get(i..).unwrap_or(&[]);
                let run = rest
                    .iter()
                    .position(|&b| b == b'\r' || b == b'\n' || b == 0)
                    .unwrap_or(rest.len());
                if run > 0 {
                    self.emit(rest.get(..run).unwrap_or(&[]), out);
                    self.line_len += run;
                    if self.line_len > MAX_TEXT_LINE {
                        self.long_line = true;
                    }
                    i += run;
                    continue;
                }
            }
            let Some(&byte) = input.get(i) else { break };
            i += 1;
            if byte == 0 {
                self.nul = true;
            }
            self.state = match (self.state, byte) {
                (State::LineStart, b'.') => State::Dot,
                (State::LineStart | State::Text, b'\r') => State::Cr,
                (State::LineStart | State::Text | State::Dot, b'\n') => {
                    self.bare_line_ending = true;
                    self.text(b"\n", out)
                }
                (State::LineStart | State::Text, other) => self.text(&[other], out),
                (State::Dot, b'\r') => State::DotCr,
                // The first dot of a line is removed (RFC 5321 §4.5.2).
                (State::Dot, other) => self.text(&[other], out),
                (State::DotCr, b'\n') => {
                    self.state = State::LineStart;
                    return Some(i);
                }
                (State::DotCr, other) => {
                    // ".\r" not followed by LF: a bare CR. Not an end.
                    self.bare_line_ending = true;
                    self.text(b"\r", out);
                    self.after_bare_cr(other, out)
                }
                (State::Cr, b'\n') => {
                    self.emit(b"\r\n", out);
                    self.line_len = 0;
                    State::LineStart
                }
                (State::Cr, other) => {
                    self.bare_line_ending = true;
                    self.text(b"\r", out);
                    self.after_bare_cr(other, out)
                }
            };
        }
        None
    }

    /// Handles the byte that followed a bare CR.
    fn after_bare_cr(&mut self, byte: u8, out: &mut Vec<u8>) -> State {
        match byte {
            b'\r' => State::Cr,
            other => {
                if other == b'\n' {
                    self.bare_line_ending = true;
                }
                self.text(&[other], out)
            }
        }
    }

    fn text(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> State {
        self.emit(bytes, out);
        self.line_len += bytes.len();
        if self.line_len > MAX_TEXT_LINE {
            self.long_line = true;
        }
        State::Text
    }

    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        self.size = self.size.saturating_add(bytes.len() as u64);
        if self.size > self.max_size {
            self.too_big = true;
        }
        if !self.too_big {
            out.extend_from_slice(bytes);
        }
    }

    /// After the end was found: the verdict on the message.
    pub fn verdict(&self) -> Result<(), SessionError> {
        if self.bare_line_ending {
            Err(SessionError::BareLineEnding)
        } else if self.too_big {
            Err(SessionError::MessageTooBig)
        } else if self.nul {
            Err(SessionError::NulInMessage)
        } else if self.long_line {
            Err(SessionError::TextLineTooLong)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn read_all(input: &[u8], max: u64) -> (Option<usize>, Vec<u8>, Result<(), SessionError>) {
        let mut r = DataReader::new(max);
        let mut out = Vec::new();
        let end = r.feed(input, &mut out);
        (end, out, r.verdict())
    }

    #[test]
    fn plain_message_and_unstuffing() {
        let input = b"Subject: x\r\n\r\n..leading dot\r\n.\r\nQUIT\r\n";
        let (end, out, verdict) = read_all(input, 1000);
        assert_eq!(&input[end.unwrap()..], b"QUIT\r\n");
        assert_eq!(out, b"Subject: x\r\n\r\n.leading dot\r\n");
        assert!(verdict.is_ok());
    }

    #[test]
    fn empty_message_ends_at_first_dot_line() {
        let (end, out, _) = read_all(b".\r\n", 10);
        assert_eq!(end, Some(3));
        assert!(out.is_empty());
    }

    #[test]
    fn every_split_gives_the_same_result() {
        let input = b"a\r\n..b\r\nc\r\n.\r\nNEXT";
        let (end, whole, _) = read_all(input, 1000);
        for split in 0..input.len() {
            let mut r = DataReader::new(1000);
            let mut out = Vec::new();
            let first = r.feed(&input[..split], &mut out);
            let got = match first {
                Some(n) => Some(n),
                None => r.feed(&input[split..], &mut out).map(|n| n + split),
            };
            assert_eq!(got, end, "split at {split}");
            assert_eq!(out, whole, "split at {split}");
        }
    }

    /// The end-of-data variants of the SMTP smuggling research: none ends
    /// the message, so the smuggled MAIL FROM stays inside the rejected data.
    #[test]
    fn smuggling_variants_never_end_data() {
        let variants: [&[u8]; 11] = [
            b"\n.\n",
            b"\n.\r\n",
            b"\r\n.\n",
            b"\r.\r",
            b"\r\n.\r",
            b"\r.\r\n",
            b"\n.\r",
            b"\r.\n",
            b"\n\n.\r\n",
            b"\r\n\x00.\r\n",
            b"\r\r\n.\r",
        ];
        for v in variants {
            let mut input = b"Subject: a\r\n\r\nbody".to_vec();
            input.extend_from_slice(v);
            input.extend_from_slice(b"MAIL FROM:<evil@x>\r\nRCPT TO:<v@y>\r\nDATA\r\n");
            let (end, _, _) = read_all(&input, 1 << 20);
            assert_eq!(end, None, "variant {v:?} ended the data early");
            // Completed by a real end: the whole thing is refused.
            input.extend_from_slice(b"smuggled\r\n.\r\n");
            let (end, _, verdict) = read_all(&input, 1 << 20);
            assert_eq!(end, Some(input.len()), "variant {v:?}");
            assert!(verdict.is_err(), "variant {v:?} accepted");
        }
    }

    #[test]
    fn oversize_is_scanned_to_the_real_end() {
        let mut input = vec![b'x'; 50];
        input.extend_from_slice(b"\n.\r\nMAIL FROM:<e@x>\r\n.\r\nQUIT\r\n");
        let (end, out, verdict) = read_all(&input, 10);
        assert_eq!(&input[end.unwrap()..], b"QUIT\r\n");
        assert!(out.len() <= 10);
        assert!(verdict.is_err());
    }

    #[test]
    fn long_lines_and_nul_are_refused() {
        let mut input = vec![b'y'; MAX_TEXT_LINE + 1];
        input.extend_from_slice(b"\r\n.\r\n");
        assert_eq!(
            read_all(&input, 1 << 20).2,
            Err(SessionError::TextLineTooLong)
        );
        let mut ok = vec![b'y'; MAX_TEXT_LINE];
        ok.extend_from_slice(b"\r\n.\r\n");
        assert_eq!(read_all(&ok, 1 << 20).2, Ok(()));
        assert_eq!(
            read_all(b"a\0b\r\n.\r\n", 100).2,
            Err(SessionError::NulInMessage)
        );
    }
}
