//! Fuzzes the DATA reader: arbitrary bytes, cut at arbitrary points.
//!
//! Input layout: 2 bytes of maximum message size, 1 byte of split count,
//! 2 bytes per split offset, then the DATA stream. The stream is fed whole
//! and in pieces; both must find the same end, produce the same message and
//! the same verdict, and the message kept never exceeds the maximum size.
//! An accepted message has only CRLF line ends, no NUL and no line over 998.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sealgate::smtp::data::{DataReader, MAX_TEXT_LINE};

fn take<'a>(data: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if data.len() < n {
        return None;
    }
    let (head, tail) = data.split_at(n);
    *data = tail;
    Some(head)
}

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let Some(size) = take(&mut data, 2) else { return };
    let max_size = u64::from(u16::from_le_bytes([size[0], size[1]]));
    let Some(count) = take(&mut data, 1) else { return };
    let mut splits = Vec::new();
    for _ in 0..(count[0] % 16) {
        let Some(b) = take(&mut data, 2) else { return };
        splits.push(usize::from(u16::from_le_bytes([b[0], b[1]])));
    }
    let input = data;
    for s in &mut splits {
        *s %= input.len() + 1;
    }
    splits.sort_unstable();

    // Whole.
    let mut whole = DataReader::new(max_size);
    let mut whole_out = Vec::new();
    let whole_end = whole.feed(input, &mut whole_out);
    let whole_verdict = whole.verdict();
    let whole_size = whole.size();

    // In pieces, as the socket might deliver them; stop at the end, like the server.
    let mut split = DataReader::new(max_size);
    let mut split_out = Vec::new();
    let mut split_end = None;
    let mut start = 0;
    for cut in splits.iter().copied().chain(std::iter::once(input.len())) {
        if cut < start {
            continue;
        }
        if let Some(n) = split.feed(&input[start..cut], &mut split_out) {
            split_end = Some(start + n);
            break;
        }
        start = cut;
    }

    assert_eq!(whole_end, split_end, "the end of DATA depends on the split");
    assert_eq!(whole_verdict, split.verdict(), "the verdict depends on the split");
    assert_eq!(whole_size, split.size());
    assert!(whole_out.len() as u64 <= max_size, "kept {} octets, max {max_size}", whole_out.len());
    assert!(split_out.len() as u64 <= max_size, "kept {} octets, max {max_size}", split_out.len());
    if whole_size <= max_size {
        assert_eq!(whole_out, split_out, "the message depends on the split");
    } else {
        // Oversize: the message is refused whatever was kept. The reader stops
        // keeping at the first chunk that crosses the limit, and chunks depend
        // on the split, so only require both to be prefixes of the same message.
        let (short, long) = if whole_out.len() <= split_out.len() {
            (&whole_out, &split_out)
        } else {
            (&split_out, &whole_out)
        };
        assert!(long.starts_with(short), "the kept prefix of an oversize message differs");
        assert!(whole_verdict.is_err(), "an oversize message was accepted");
    }

    if let Some(end) = whole_end {
        // Only <CRLF>.<CRLF> ends DATA (or ".\r\n" as the very first line).
        let consumed = &input[..end];
        assert!(
            consumed == b".\r\n" || consumed.ends_with(b"\r\n.\r\n"),
            "DATA ended without <CRLF>.<CRLF>: {:?}",
            &consumed[consumed.len().saturating_sub(8)..]
        );
        if whole_verdict.is_ok() {
            // What is accepted is clean: CRLF only, no NUL, short lines.
            let out = &whole_out;
            for (i, &b) in out.iter().enumerate() {
                assert_ne!(b, 0, "NUL in an accepted message");
                if b == b'\r' {
                    assert_eq!(out.get(i + 1), Some(&b'\n'), "bare CR in an accepted message");
                }
                if b == b'\n' {
                    assert!(i > 0 && out[i - 1] == b'\r', "bare LF in an accepted message");
                }
            }
            for line in out.split(|&b| b == b'\n') {
                assert!(line.len() <= MAX_TEXT_LINE + 1, "line of {} octets accepted", line.len());
            }
        }
    }
});
