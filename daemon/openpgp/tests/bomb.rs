//! Compression bombs: a message for the gateway whose compressed packet
//! inflates to 1 GiB (single layer, ~1 MB), and a nested one (~ a few KB
//! for 1 GiB: compressed data inside compressed data). Both are refused
//! with the uniform error and with bounded memory; the time taken is
//! printed, never asserted. Run by `scripts/test-openpgp`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::Write;
use std::process::Command;

use common::*;
use sealgate_openpgp::{Error, Limits, decrypt};
use sequoia_openpgp as openpgp;

use openpgp::packet::Tag;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::stream::{ArbitraryWriter, Armorer, Encryptor, Message};

/// Raw deflate streams made by Python's zlib (fast, in C): `single` inflates
/// to a 1 GiB literal packet; `nested` inflates to a compressed packet that
/// inflates to it.
fn bombs() -> (Vec<u8>, Vec<u8>) {
    let dir = scratch_dir();
    let script = r#"
import sys, zlib
def deflate(chunks):
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = [c.compress(x) for x in chunks]
    out.append(c.flush())
    return b"".join(out)
def literal():
    # Old-format literal data packet, indeterminate length.
    yield b"\xaf" + b"b\x00\x00\x00\x00\x00"
    block = bytes(1 << 20)
    for _ in range(1024):
        yield block
single = deflate(literal())
nested = deflate([b"\xa3\x01" + single])
open(sys.argv[1], "wb").write(single)
open(sys.argv[2], "wb").write(nested)
"#;
    let (a, b) = (dir.join("single.deflate"), dir.join("nested.deflate"));
    let st = Command::new("python3")
        .args(["-c", script, s(&a), s(&b)])
        .status()
        .unwrap();
    assert!(st.success());
    (std::fs::read(a).unwrap(), std::fs::read(b).unwrap())
}

/// Encrypts a raw compressed-data packet body (ZIP) to the gateway.
fn bomb_message(deflate: &[u8]) -> Vec<u8> {
    let p = StandardPolicy::new();
    let cert = gateways().rsa.cert();
    let keys: Vec<_> = cert
        .keys()
        .with_policy(&p, None)
        .for_transport_encryption()
        .collect();
    let mut out = Vec::new();
    let m = Message::new(&mut out);
    let m = Armorer::new(m).build().unwrap();
    let m = Encryptor::for_recipients(m, keys).build().unwrap();
    let mut w = ArbitraryWriter::new(m, Tag::CompressedData).unwrap();
    w.write_all(&[1]).unwrap();
    w.write_all(deflate).unwrap();
    w.finalize().unwrap();
    pgp_mime("bomber@example.org", &out)
}

/// Resets the peak-RSS counter (Linux: `5` in `clear_refs`).
fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn compression_bombs_are_refused_with_bounded_memory() {
    let (single, nested) = bombs();
    let id = &gateways().rsa;
    let lim = Limits::default();
    // With a second layer allowed, the nested bomb is stopped by the size limit.
    let two = Limits {
        max_compression_layers: 2,
        ..Limits::default()
    };
    let r = decrypt(id, &bomb_message(&nested), &[], &two);
    assert!(
        matches!(r, Err(Error::Decrypt)),
        "nested, two layers: {r:?}"
    );
    for (name, deflate) in [("nested", &nested), ("single", &single)] {
        let m = bomb_message(deflate);
        reset_peak_rss();
        let before = peak_rss_kib();
        let t = std::time::Instant::now();
        let r = decrypt(id, &m, &[], &lim);
        let took = t.elapsed();
        let grew = peak_rss_kib().saturating_sub(before);
        println!(
            "bomb {name}: {} bytes of message → 1 GiB; refused in {took:?}; peak RSS grew {} MiB",
            m.len(),
            grew / 1024
        );
        assert!(matches!(r, Err(Error::Decrypt)), "{name}: {r:?}");
        // The plaintext buffer (64 MiB limit, grown by doubling) is bounded,
        // never the gigabyte.
        assert!(
            grew < 3 * (lim.max_plaintext as u64 / 1024) + 64 * 1024,
            "{name}: memory grew by {grew} KiB"
        );
    }
    // With a second layer allowed, the nested bomb is stopped by the size limit.
    let two = Limits {
        max_compression_layers: 2,
        ..Limits::default()
    };
    let r = decrypt(id, &bomb_message(&nested), &[], &two);
    assert!(
        matches!(r, Err(Error::Decrypt)),
        "nested, two layers: {r:?}"
    );
}
