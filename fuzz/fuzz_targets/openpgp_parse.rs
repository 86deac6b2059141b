//! Fuzzes the OpenPGP engine's parsers on untrusted input: certificates
//! (binary or armored keyrings, as harvested from mail), and whole messages
//! through verification and harvesting (MIME, armor, Autocrypt headers,
//! OpenPGP packets), and the session-key packets read to learn whom a
//! message is addressed to, the streaming de-armorer and the 7-bit
//! re-encoder used before signing. Decryption needs the token and is covered by the
//! interop tests; everything before the token is here.
//!
//! Properties: nothing panics; every certificate accepted re-encodes and
//! parses back to the same certificate (parse → re-encode → compare).

#![no_main]

use libfuzzer_sys::fuzz_target;
use sealgate_openpgp::openpgp::serialize::SerializeInto;
use sealgate_openpgp::{Limits, addressees, harvest, parse_certs, verify};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_input: 1 << 16,
        max_plaintext: 1 << 20,
        ..Limits::default()
    };
    if let Ok(certs) = parse_certs(data, &limits) {
        assert!(certs.len() <= limits.max_certs_per_blob);
        for cert in certs {
            let bytes = cert.to_vec().expect("an accepted certificate serialises");
            let again = parse_certs(&bytes, &limits).expect("re-encoded certificate parses");
            assert_eq!(again.len(), 1, "re-encoded certificate lost");
            assert_eq!(again.first(), Some(&cert), "re-encoded certificate differs");
        }
    }
    let _ = verify(data, &[], &limits);
    let _ = addressees(data, &limits);
    if let Some(Ok(binary)) = sealgate_openpgp::fuzzing::dearmor(data, 1 << 20) {
        // Base64 shrinks: the binary is never longer than its armor.
        assert!(binary.len() <= data.len(), "de-armoring grew the input");
    }
    let _ = sealgate_openpgp::fuzzing::seven_bit_entity(data);
    if let Ok(certs) = harvest(data, &limits) {
        assert!(certs.len() <= limits.max_certs_per_blob);
    }
});
