//! Fuzzes the S/MIME engine's parsers with arbitrary bytes: the BER reader,
//! EnvelopedData/AuthEnvelopedData up to the recipient match, SignedData
//! verification, certificate bundles, MIME splitting and the Efail CBC
//! check. Nothing may panic, and what parses must hold together: a parsed
//! element's raw bytes are a prefix of the input, multipart parts are
//! slices of the body, and a DER element the reader accepts is re-encoded
//! to the same bytes when it used definite lengths.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sealgate_smime::{cert, der, efail, envelope, mime, verify};

fuzz_target!(|data: &[u8]| {
    // The ASN.1 layer.
    if let Ok((tlv, rest)) = der::read(data) {
        assert_eq!(tlv.raw.len() + rest.len(), data.len());
        assert!(data.starts_with(tlv.raw));
        if !tlv.constructed() && tlv.raw.len() < 128 && tlv.raw.get(1).is_some_and(|l| *l < 0x80) {
            assert_eq!(der::tlv(tlv.tag, tlv.body), tlv.raw);
        }
        let _ = tlv.octets(1 << 20);
        for child in tlv.children().take(64) {
            if child.is_err() {
                break;
            }
        }
    }
    // CMS as DER/BER.
    let _ = envelope::open(data, &[]);
    let _ = cert::parse_bundle(data);
    let _ = verify::verify_cms(data, Some(b"content"), Some("a@b.example"), &[], 0);
    let _ = verify::verify_cms(data, None, None, &[], 0);
    // The same bytes as a message.
    let _ = sealgate_smime::decrypt_message(data, &[]);
    let _ = verify::verify_message(data, &[], 0);
    let _ = efail::check_cbc_content(data);
    if let Ok(e) = mime::parse(data) {
        let ct = e.content_type();
        if let Some(b) = ct.param("boundary") {
            if let Ok(parts) = mime::split_multipart(e.body, b) {
                for p in parts {
                    let start = p.as_ptr() as usize;
                    let body = e.body.as_ptr() as usize;
                    assert!(start >= body && start + p.len() <= body + e.body.len());
                }
            }
        }
        let _ = e.decoded_body();
    }
});
