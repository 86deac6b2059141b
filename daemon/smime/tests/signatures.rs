//! Signatures with real peers, both directions: Sealgate signs with token
//! keys (RSA-3072, ECDSA P-256 and P-384), openssl cms and gpgsm verify; openssl
//! and gpgsm sign (RSA 2048/3072/4096, P-256, P-384), Sealgate verifies,
//! including the invalid, signer-mismatch, untrusted and not-fully-signed
//! verdicts, and RSA-PSS (RFC 4056) signatures from openssl. Run by `scripts/test-smime` (feature `token-tests`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use sealgate_smime::signed::now;
use sealgate_smime::{
    Certificate, EncryptOptions, RsaTransport, SignOptions, SigningIdentity, Verdict, cert,
    encrypt_message, mime, sign_message, verify_message,
};

fn anchors() -> Vec<Certificate> {
    let mut out = Vec::new();
    for f in [
        data_dir().join("certs").join("gateway-sign.pem"),
        data_dir().join("certs").join("gateway-ec-sign.pem"),
        data_dir().join("certs").join("smime-p384-sign.pem"),
        peer_file("ca", "pem"),
    ] {
        out.extend(cert::parse_bundle(&std::fs::read(f).unwrap()).unwrap());
    }
    out
}

fn gateway_message(tag: &str) -> Vec<u8> {
    let mut m = sample_message(tag, 700);
    // Replace the From with the gateway's address (its certificates name it).
    let text = String::from_utf8(m.clone()).unwrap();
    m = text
        .replacen(
            "From: alice@peer.test",
            "From: Gateway <gateway@gateway.test>",
            1,
        )
        .into_bytes();
    m
}

/// openssl cms -verify with the gateway roots; returns the content.
fn openssl_verify(msg: &[u8]) -> Vec<u8> {
    let roots = scratch("roots.pem");
    let mut pem = std::fs::read(data_dir().join("certs").join("gateway-sign.pem")).unwrap();
    pem.extend(std::fs::read(data_dir().join("certs").join("gateway-ec-sign.pem")).unwrap());
    pem.extend(std::fs::read(data_dir().join("certs").join("smime-p384-sign.pem")).unwrap());
    std::fs::write(&roots, pem).unwrap();
    openssl_in(
        &[
            "cms",
            "-verify",
            "-CAfile",
            p(&roots),
            "-purpose",
            "smimesign",
        ],
        msg,
    )
}

#[test]
fn sealgate_signs_openssl_verifies() {
    for label in ["gateway-sign", "gateway-ec-sign", "smime-p384-sign"] {
        let (key, chain) = signer(label);
        let id = SigningIdentity {
            key: &key,
            chain: &chain,
            encryption_cert: None,
        };
        for opaque in [false, true] {
            let msg = gateway_message(&format!("{label}-{opaque}"));
            let out = sign_message(&msg, &id, SignOptions { opaque }).unwrap();
            let text = String::from_utf8_lossy(&out);
            if opaque {
                assert!(text.contains("smime-type=signed-data"));
            } else {
                // RSA-3072 and P-256 sign with SHA-256, P-384 with SHA-384.
                let micalg = if label == "smime-p384-sign" {
                    "sha-384"
                } else {
                    "sha-256"
                };
                assert!(text.contains(&format!("micalg={micalg}")), "{text}");
                assert!(text.contains("protocol=\"application/pkcs7-signature\""));
            }
            let content = openssl_verify(&out);
            assert_eq!(content, sample_entity(&format!("{label}-{opaque}"), 700));
            // And Sealgate accepts its own signature.
            let v = verify_message(&out, &anchors(), now()).unwrap();
            assert_eq!(v.verdict, Verdict::Valid, "{label} opaque={opaque}");
            assert!(!v.capabilities.is_empty());
        }
    }
}

#[test]
fn eight_bit_content_is_made_seven_bit_before_signing() {
    let (key, chain) = signer("gateway-sign");
    let id = SigningIdentity {
        key: &key,
        chain: &chain,
        encryption_cert: None,
    };
    let msg = "From: gateway@gateway.test\nSubject: umlauts\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nGr\u{fc}\u{df}e aus K\u{f6}ln\n";
    let out = sign_message(msg.as_bytes(), &id, SignOptions::default()).unwrap();
    assert!(out.iter().all(|b| *b < 0x80), "signed output is not 7-bit");
    let content = openssl_verify(&out);
    let e = mime::parse(&content).unwrap();
    assert_eq!(e.header("Content-Transfer-Encoding"), Some("base64"));
    assert_eq!(
        e.decoded_body().unwrap(),
        "Gr\u{fc}\u{df}e aus K\u{f6}ln\r\n".as_bytes()
    );
}

/// openssl signs the sample entity as `peer`, detached or opaque, via cms or smime.
fn openssl_sign(peer: &str, signer_file: &str, opaque: bool, smime: bool, tag: &str) -> Vec<u8> {
    openssl_sign_with(peer, signer_file, opaque, smime, tag, &[])
}

/// `openssl_sign` with `extra` arguments for `openssl cms -sign`.
fn openssl_sign_with(
    peer: &str,
    signer_file: &str,
    opaque: bool,
    smime: bool,
    tag: &str,
    extra: &[&str],
) -> Vec<u8> {
    let entity = sample_entity(tag, 600);
    let cmd = if smime { "smime" } else { "cms" };
    let mut args = vec![
        cmd,
        "-sign",
        "-signer",
        signer_file,
        "-inkey",
        "",
        "-certfile",
        "",
    ];
    let key = p(&peer_file(peer, "key")).to_owned();
    let ca = p(&peer_file("ca", "pem")).to_owned();
    args[5] = &key;
    args[7] = &ca;
    if opaque {
        args.push("-nodetach");
    }
    args.extend_from_slice(extra);
    let signed = openssl_in(&args, &entity);
    let mut m = format!("From: {peer}@peer.test\r\nSubject: {tag}\r\n").into_bytes();
    m.extend_from_slice(&signed);
    m
}

#[test]
fn openssl_signs_sealgate_verifies() {
    let anchors = anchors();
    for peer in ["rsa2048", "rsa3072", "rsa4096", "p256", "p384"] {
        let signer_file = p(&peer_file(peer, "pem")).to_owned();
        for opaque in [false, true] {
            for smime in [false, true] {
                let tag = format!("{peer}-{opaque}-{smime}");
                let msg = openssl_sign(peer, &signer_file, opaque, smime, &tag);
                let v = verify_message(&msg, &anchors, now()).unwrap();
                assert_eq!(v.verdict, Verdict::Valid, "{tag}");
                assert_eq!(v.content, sample_entity(&tag, 600));
                assert!(v.signer_chain[0].has_email(&format!("{peer}@peer.test")));
                assert!(v.signing_time.is_some());

                // Untrusted without the anchors.
                let v = verify_message(&msg, &[], now()).unwrap();
                assert!(matches!(v.verdict, Verdict::ValidButUntrusted(_)), "{tag}");

                // One byte altered in the signed content: invalid.
                let text = String::from_utf8(msg.clone()).unwrap();
                let altered = if opaque {
                    // Alter a byte of the base64 body's decoded content.
                    let e = mime::parse(&msg).unwrap();
                    let mut der = e.decoded_body().unwrap();
                    let needle = b"Sealgate interop line";
                    let at = der.windows(needle.len()).position(|w| w == needle).unwrap();
                    der[at] = b's';
                    let mut m = format!("From: {peer}@peer.test\r\n").into_bytes();
                    m.extend_from_slice(&mime::pkcs7_mime_entity("signed-data", &der));
                    m
                } else {
                    text.replacen("Sealgate interop line", "sealgate interop line", 1)
                        .into_bytes()
                };
                let v = verify_message(&altered, &anchors, now()).unwrap();
                assert!(
                    matches!(v.verdict, Verdict::Invalid(_)),
                    "{tag}: {:?}",
                    v.verdict
                );
            }
        }
    }
}

#[test]
fn openssl_rsa_pss_signatures_verify() {
    // RFC 4056: OpenSSL's default PSS salt (the longest the key allows) and
    // a salt as long as the digest, SHA-256 and SHA-384, detached and opaque.
    let anchors = anchors();
    let cases: [(&str, &[&str]); 4] = [
        ("rsa2048", &["-keyopt", "rsa_padding_mode:pss"]),
        (
            "rsa3072",
            &[
                "-keyopt",
                "rsa_padding_mode:pss",
                "-keyopt",
                "rsa_pss_saltlen:digest",
            ],
        ),
        (
            "rsa4096",
            &["-keyopt", "rsa_padding_mode:pss", "-md", "sha384"],
        ),
        (
            "rsa2048",
            &[
                "-keyopt",
                "rsa_padding_mode:pss",
                "-keyopt",
                "rsa_pss_saltlen:digest",
                "-md",
                "sha384",
            ],
        ),
    ];
    for (n, (peer, extra)) in cases.into_iter().enumerate() {
        let signer_file = p(&peer_file(peer, "pem")).to_owned();
        let opaque = n % 2 == 1;
        let tag = format!("pss-{peer}-{n}");
        let msg = openssl_sign_with(peer, &signer_file, opaque, false, &tag, extra);
        let v = verify_message(&msg, &anchors, now()).unwrap();
        assert_eq!(v.verdict, Verdict::Valid, "{tag}");
        assert_eq!(v.content, sample_entity(&tag, 600));
        if !opaque {
            let altered = String::from_utf8(msg.clone()).unwrap().replacen(
                "Sealgate interop line",
                "sealgate interop line",
                1,
            );
            let v = verify_message(altered.as_bytes(), &anchors, now()).unwrap();
            assert!(
                matches!(v.verdict, Verdict::Invalid(_)),
                "{tag}: {:?}",
                v.verdict
            );
        }
    }
    // A salt length that is neither is refused (the verdict, not a panic).
    let signer_file = p(&peer_file("rsa2048", "pem")).to_owned();
    let extra = [
        "-keyopt",
        "rsa_padding_mode:pss",
        "-keyopt",
        "rsa_pss_saltlen:20",
    ];
    let msg = openssl_sign_with("rsa2048", &signer_file, false, false, "pss-salt20", &extra);
    let v = verify_message(&msg, &anchors, now()).unwrap();
    assert!(matches!(v.verdict, Verdict::Invalid(_)), "{:?}", v.verdict);
}

#[test]
fn another_address_is_signer_mismatch() {
    // Signed by other@elsewhere.test, sent as rsa2048@peer.test.
    let other = p(&peer_file("other", "pem")).to_owned();
    let msg = openssl_sign("other", &other, false, false, "mismatch");
    let text = String::from_utf8(msg).unwrap();
    let msg = text.replacen(
        "From: other@peer.test",
        "From: Mallory <rsa2048@peer.test>",
        1,
    );
    let v = verify_message(msg.as_bytes(), &anchors(), now()).unwrap();
    assert_eq!(v.verdict, Verdict::SignerMismatch);
}

#[test]
fn partly_signed_message_is_not_fully_signed() {
    let signer_file = p(&peer_file("rsa2048", "pem")).to_owned();
    let signed = openssl_sign("rsa2048", &signer_file, false, false, "partial");
    let e = mime::parse(&signed).unwrap();
    let mut inner = Vec::new();
    for h in &e.headers {
        if h.name.to_ascii_lowercase().starts_with("content-") {
            inner.extend_from_slice(&mime::to_crlf(&h.raw));
        }
    }
    inner.extend_from_slice(b"\r\n");
    inner.extend_from_slice(e.body);
    let mut msg = b"From: rsa2048@peer.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n--outer\r\nContent-Type: text/plain\r\n\r\nUnsigned text added by someone else.\r\n--outer\r\n".to_vec();
    msg.extend_from_slice(&inner);
    msg.extend_from_slice(b"\r\n--outer--\r\n");
    let v = verify_message(&msg, &anchors(), now()).unwrap();
    assert_eq!(v.verdict, Verdict::NotFullySigned);
}

#[test]
fn sign_then_encrypt_nests() {
    let (key, chain) = signer("gateway-sign");
    let id = SigningIdentity {
        key: &key,
        chain: &chain,
        encryption_cert: None,
    };
    let msg = gateway_message("nested");
    let signed = sign_message(&msg, &id, SignOptions::default()).unwrap();
    let enc = encrypt_message(
        &signed,
        &[&peer_cert("rsa3072")],
        EncryptOptions {
            gcm: true,
            rsa: RsaTransport::OaepSha256,
        },
    )
    .unwrap();
    let inner = openssl_in(
        &[
            "cms",
            "-decrypt",
            "-recip",
            p(&peer_file("rsa3072", "pem")),
            "-inkey",
            p(&peer_file("rsa3072", "key")),
        ],
        &enc,
    );
    assert!(String::from_utf8_lossy(&inner).starts_with("Content-Type: multipart/signed"));
    let content = openssl_verify(&inner);
    assert_eq!(content, sample_entity("nested", 700));
}

/// gpgsm both ways (one test: they share GNUPGHOME and its agent).
#[test]
fn gpgsm_signatures_both_ways() {
    gpgsm_trust();
    // Sealgate signs -> gpgsm --verify (detached and opaque, RSA and ECDSA).
    for label in ["gateway-sign", "gateway-ec-sign", "smime-p384-sign"] {
        let (key, chain) = signer(label);
        let id = SigningIdentity {
            key: &key,
            chain: &chain,
            encryption_cert: None,
        };
        for opaque in [false, true] {
            let msg = gateway_message("to-gpgsm");
            let out = sign_message(&msg, &id, SignOptions { opaque }).unwrap();
            let e = mime::parse(&out).unwrap();
            let (ok, _, err) = if opaque {
                let der = e.decoded_body().unwrap();
                let f = scratch(&format!("{label}-opaque.p7m"));
                std::fs::write(&f, der).unwrap();
                gpgsm(&["--verify", p(&f)], b"")
            } else {
                let ct = e.content_type();
                let (signed, sig) =
                    mime::split_signed(e.body, ct.param("boundary").unwrap()).unwrap();
                let sig_file = scratch(&format!("{label}.p7s"));
                let data_file = scratch(&format!("{label}.txt"));
                std::fs::write(&sig_file, sig.decoded_body().unwrap()).unwrap();
                std::fs::write(&data_file, signed).unwrap();
                gpgsm(&["--verify", p(&sig_file), p(&data_file)], b"")
            };
            assert!(ok, "gpgsm --verify {label} opaque={opaque}: {err}");
            assert!(err.contains("Good signature"), "{err}");
        }
    }

    // gpgsm signs -> Sealgate verifies (detached and opaque).
    for peer in ["rsa2048", "rsa4096"] {
        gpgsm_import_p12(peer);
        let fpr = fingerprint(&peer_file(peer, "pem"));
        let entity = sample_entity(&format!("gpgsm-sign-{peer}"), 600);
        let (ok, sig, err) = gpgsm(&["-u", &fpr, "--detach-sign"], &entity);
        assert!(ok, "gpgsm --detach-sign: {err}");
        let b = "gpgsm-boundary";
        let mut msg = format!(
            "From: {peer}@peer.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=\"{b}\"\r\n\r\n--{b}\r\n"
        )
        .into_bytes();
        msg.extend_from_slice(&entity);
        msg.extend_from_slice(
            format!("\r\n--{b}\r\nContent-Type: application/pkcs7-signature\r\nContent-Transfer-Encoding: base64\r\n\r\n")
                .as_bytes(),
        );
        msg.extend_from_slice(&mime::encode_base64(&sig));
        msg.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
        let v = verify_message(&msg, &anchors(), now()).unwrap();
        assert_eq!(v.verdict, Verdict::Valid, "gpgsm detached {peer}");

        let (ok, opaque, err) = gpgsm(&["-u", &fpr, "--sign"], &entity);
        assert!(ok, "gpgsm --sign: {err}");
        let mut msg = format!("From: {peer}@peer.test\r\n").into_bytes();
        msg.extend_from_slice(&mime::pkcs7_mime_entity("signed-data", &opaque));
        let v = verify_message(&msg, &anchors(), now()).unwrap();
        assert_eq!(v.verdict, Verdict::Valid, "gpgsm opaque {peer}");
        assert_eq!(v.content, entity);
    }
}
