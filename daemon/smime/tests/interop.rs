//! Interop of the S/MIME engine with real peers, both directions: openssl
//! cms/smime and gpgsm encrypt, Sealgate decrypts with keys on a SoftHSM2
//! token; Sealgate encrypts, openssl and gpgsm decrypt. Run by
//! `scripts/test-smime` (feature `token-tests`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use sealgate_smime::{
    ContentAlgorithm, EncryptOptions, KeyProtection, RsaTransport, decrypt_message,
    encrypt_message, mime,
};

/// Ciphers openssl encrypts with, and what Sealgate must report.
const CIPHERS: [(&str, ContentAlgorithm); 6] = [
    ("-aes-128-cbc", ContentAlgorithm::Aes128Cbc),
    ("-aes-192-cbc", ContentAlgorithm::Aes192Cbc),
    ("-aes-256-cbc", ContentAlgorithm::Aes256Cbc),
    ("-aes-128-gcm", ContentAlgorithm::Aes128Gcm),
    ("-aes-192-gcm", ContentAlgorithm::Aes192Gcm),
    ("-aes-256-gcm", ContentAlgorithm::Aes256Gcm),
];

/// Forms openssl writes: DER (wrapped in MIME here), streamed BER in an
/// S/MIME message (`-stream`), and PEM.
#[derive(Clone, Copy, Debug)]
enum Form {
    Der,
    StreamedSmime,
}

/// Encrypts `entity` with openssl cms for `recips` and returns a complete message.
fn openssl_cms_encrypt(entity: &[u8], recips: &[&str], extra: &[&str], form: Form) -> Vec<u8> {
    let mut args = vec!["cms", "-encrypt", "-binary"];
    for r in recips {
        args.extend_from_slice(&["-recip", r]);
    }
    // -keyopt applies to the -recip before it.
    args.extend_from_slice(extra);
    match form {
        Form::Der => {
            args.extend_from_slice(&["-outform", "DER"]);
            let der = openssl_in(&args, entity);
            assert_eq!(der.first(), Some(&0x30));
            let mut m = b"From: alice@peer.test\r\nSubject: der\r\nMIME-Version: 1.0\r\n".to_vec();
            m.extend_from_slice(&mime::pkcs7_mime_entity("enveloped-data", &der));
            m
        }
        Form::StreamedSmime => {
            args.extend_from_slice(&["-outform", "SMIME", "-stream"]);
            openssl_in(&args, entity)
        }
    }
}

#[test]
fn openssl_cms_encrypts_sealgate_decrypts_rsa() {
    for label in RSA_GATEWAYS {
        let gw = gateway(label);
        let recip = p(&gw.leaf_pem).to_owned();
        for (cipher, algorithm) in CIPHERS {
            for form in [Form::Der, Form::StreamedSmime] {
                let entity = sample_entity(&format!("{label}{cipher}{form:?}"), 600);
                let msg = openssl_cms_encrypt(&entity, &[&recip], &[cipher], form);
                let out = decrypt_message(&msg, &[gw.key()])
                    .unwrap_or_else(|e| panic!("{label} {cipher} {form:?}: {e}"));
                assert_eq!(out.entity(), entity.as_slice(), "{label} {cipher} {form:?}");
                assert_eq!(out.report.content_algorithm, algorithm);
                assert_eq!(out.report.key_protection, KeyProtection::RsaPkcs1v15);
                assert_eq!(out.report.integrity_protected, cipher.ends_with("gcm"));
                if !cipher.ends_with("gcm") {
                    assert_eq!(
                        out.report.cbc_check,
                        Some(sealgate_smime::efail::CbcVerdict::Clean)
                    );
                }
            }
        }
        // RSA-OAEP with SHA-1 and SHA-256.
        for (md, prot) in [
            ("sha1", KeyProtection::RsaOaepSha1),
            ("sha256", KeyProtection::RsaOaepSha256),
        ] {
            let entity = sample_entity(&format!("{label}-oaep-{md}"), 300);
            let md_opt = format!("rsa_oaep_md:{md}");
            let mgf_opt = format!("rsa_mgf1_md:{md}");
            let extra = [
                "-aes-256-cbc",
                "-keyopt",
                "rsa_padding_mode:oaep",
                "-keyopt",
                &md_opt,
                "-keyopt",
                &mgf_opt,
            ];
            let msg = openssl_cms_encrypt(&entity, &[&recip], &extra, Form::StreamedSmime);
            let out = decrypt_message(&msg, &[gw.key()])
                .unwrap_or_else(|e| panic!("{label} OAEP {md}: {e}"));
            assert_eq!(out.entity(), entity.as_slice());
            assert_eq!(out.report.key_protection, prot);
        }
    }
}

#[test]
fn openssl_cms_encrypts_sealgate_decrypts_ecdh() {
    for label in EC_GATEWAYS {
        let gw = gateway(label);
        let recip = p(&gw.leaf_pem).to_owned();
        for (cipher, algorithm) in CIPHERS {
            for form in [Form::Der, Form::StreamedSmime] {
                let entity = sample_entity(&format!("{label}{cipher}{form:?}"), 700);
                let msg = openssl_cms_encrypt(&entity, &[&recip], &[cipher], form);
                let out = decrypt_message(&msg, &[gw.key()])
                    .unwrap_or_else(|e| panic!("{label} {cipher} {form:?}: {e}"));
                assert_eq!(out.entity(), entity.as_slice());
                assert_eq!(out.report.content_algorithm, algorithm);
                assert!(matches!(
                    out.report.key_protection,
                    KeyProtection::Ecdh { .. }
                ));
            }
        }
        // The SHA-256 and SHA-384 KDFs (RFC 5753 schemes) besides openssl's SHA-1 default.
        for md in ["sha256", "sha384"] {
            let entity = sample_entity(&format!("{label}-kdf-{md}"), 300);
            let opt = format!("ecdh_kdf_md:{md}");
            let msg = openssl_cms_encrypt(
                &entity,
                &[&recip],
                &["-aes-256-cbc", "-keyopt", &opt],
                Form::Der,
            );
            let out = decrypt_message(&msg, &[gw.key()]).unwrap_or_else(|e| panic!("{md}: {e}"));
            assert_eq!(out.entity(), entity.as_slice());
        }
    }
}

#[test]
fn openssl_cms_multiple_recipients() {
    let rsa = gateway("gateway-decrypt");
    let ec = gateway("smime-p384");
    let other = p(&peer_file("rsa2048", "pem")).to_owned();
    let other_ec = p(&peer_file("p256", "pem")).to_owned();
    let entity = sample_entity("multi", 2000);
    for cipher in ["-aes-256-cbc", "-aes-256-gcm"] {
        let msg = openssl_cms_encrypt(
            &entity,
            &[&other, p(&rsa.leaf_pem), &other_ec, p(&ec.leaf_pem)],
            &[cipher],
            Form::StreamedSmime,
        );
        let by_rsa = decrypt_message(&msg, &[rsa.key()]).unwrap();
        assert_eq!(by_rsa.entity(), entity.as_slice());
        assert_eq!(by_rsa.report.recipient_index, 1);
        let by_ec = decrypt_message(&msg, &[ec.key()]).unwrap();
        assert_eq!(by_ec.entity(), entity.as_slice());
        assert_eq!(by_ec.report.recipient_index, 3);
        // Not for us: a message only for peers is refused.
        let theirs = openssl_cms_encrypt(&entity, &[&other], &[cipher], Form::Der);
        assert!(matches!(
            decrypt_message(&theirs, &[rsa.key(), ec.key()]),
            Err(sealgate_smime::Error::NoMatchingRecipient)
        ));
    }
}

#[test]
fn openssl_smime_encrypts_sealgate_decrypts() {
    for label in ["smime-rsa2048", "gateway-decrypt"] {
        let gw = gateway(label);
        for cipher in ["-aes128", "-aes256", "-des3"] {
            let entity = sample_entity(&format!("smime{cipher}"), 500);
            let msg = openssl_in(
                &["smime", "-encrypt", "-binary", cipher, p(&gw.leaf_pem)],
                &entity,
            );
            let out =
                decrypt_message(&msg, &[gw.key()]).unwrap_or_else(|e| panic!("{cipher}: {e}"));
            assert_eq!(out.entity(), entity.as_slice());
            assert_eq!(out.report.weak, cipher == "-des3");
        }
    }
}

#[test]
fn tampered_gcm_and_cbc_are_refused_or_flagged() {
    let gw = gateway("gateway-decrypt");
    let entity = sample_entity("tamper", 400);
    for cipher in ["-aes-256-gcm", "-aes-256-cbc"] {
        let der = openssl_in(
            &[
                "cms",
                "-encrypt",
                "-binary",
                cipher,
                "-outform",
                "DER",
                p(&gw.leaf_pem),
            ],
            &entity,
        );
        // Flip one bit in the middle of the encrypted content (past the recipient info).
        let mut bad = der.clone();
        let i = bad.len() - 120;
        bad[i] ^= 0x01;
        let mut msg = b"Subject: x\r\n".to_vec();
        msg.extend_from_slice(&mime::pkcs7_mime_entity("enveloped-data", &bad));
        match decrypt_message(&msg, &[gw.key()]) {
            Err(sealgate_smime::Error::Decrypt) => {}
            Ok(out) => {
                assert!(cipher.ends_with("cbc"), "tampered GCM content was accepted");
                assert!(
                    matches!(
                        out.report.cbc_check,
                        Some(sealgate_smime::efail::CbcVerdict::Malleated(_))
                    ),
                    "tampered CBC content not flagged: {:?}",
                    out.report.cbc_check
                );
            }
            Err(e) => panic!("{cipher}: unexpected error {e}"),
        }
    }
}

/// Decrypts a Sealgate message with openssl cms and the peer's key.
fn openssl_decrypt(msg: &[u8], peer: &str) -> Vec<u8> {
    openssl_in(
        &[
            "cms",
            "-decrypt",
            "-recip",
            p(&peer_file(peer, "pem")),
            "-inkey",
            p(&peer_file(peer, "key")),
        ],
        msg,
    )
}

#[test]
fn sealgate_encrypts_openssl_decrypts() {
    for peer in ["rsa2048", "rsa3072", "rsa4096", "p256", "p384"] {
        let cert = peer_cert(peer);
        for gcm in [false, true] {
            for rsa in [RsaTransport::OaepSha256, RsaTransport::Pkcs1v15] {
                let tag = format!("{peer}-{gcm}-{rsa:?}");
                let msg = sample_message(&tag, 900);
                let out = encrypt_message(&msg, &[&cert], EncryptOptions { gcm, rsa }).unwrap();
                let text = String::from_utf8_lossy(&out);
                let smime_type = if gcm {
                    "authEnveloped-data"
                } else {
                    "enveloped-data"
                };
                assert!(text.contains(&format!(
                    "Content-Type: application/pkcs7-mime; smime-type={smime_type}; name=smime.p7m"
                )));
                assert!(text.contains("Subject: test "));
                let inner = openssl_decrypt(&out, peer);
                assert_eq!(inner, sample_entity(&tag, 900), "{tag}");
            }
        }
    }
}

#[test]
fn sealgate_encrypts_for_many_recipients() {
    let names = ["rsa2048", "rsa3072", "rsa4096", "p256", "p384", "other"];
    let certs: Vec<_> = names.iter().map(|n| peer_cert(n)).collect();
    let refs: Vec<_> = certs.iter().collect();
    for gcm in [false, true] {
        let msg = sample_message("many", 5000);
        let out = encrypt_message(
            &msg,
            &refs,
            EncryptOptions {
                gcm,
                rsa: RsaTransport::OaepSha256,
            },
        )
        .unwrap();
        for n in names {
            assert_eq!(openssl_decrypt(&out, n), sample_entity("many", 5000), "{n}");
        }
    }
}

#[test]
fn sealgate_round_trip_through_the_token() {
    // Encrypt to the gateway's own certificates, decrypt on the token: GCM and CBC, RSA and EC.
    for label in [
        "smime-rsa2048",
        "gateway-ec-derive",
        "smime-p384",
        "smime-rsa4096",
    ] {
        let gw = gateway(label);
        for gcm in [false, true] {
            let msg = sample_message("self", 1000);
            let out = encrypt_message(
                &msg,
                &[&gw.cert],
                EncryptOptions {
                    gcm,
                    rsa: RsaTransport::OaepSha256,
                },
            )
            .unwrap();
            let back = decrypt_message(&out, &[gw.key()]).unwrap();
            assert_eq!(back.entity(), sample_entity("self", 1000).as_slice());
            assert!(String::from_utf8_lossy(&back.message).starts_with("From: alice@peer.test"));
        }
    }
}

/// gpgsm both ways (one test: they share the GNUPGHOME and its agent).
/// gpgsm 2.2 has no AES-GCM and does not encrypt to the ECDH certificates, so
/// the matrix here is RSA and CBC.
#[test]
fn gpgsm_both_ways() {
    gpgsm_trust();

    // gpgsm encrypts -> Sealgate decrypts (RSA 2048/3072/4096; one and two recipients).
    for label in RSA_GATEWAYS {
        let gw = gateway(label);
        let (ok, _, err) = gpgsm(&["--import", p(&gw.leaf_pem)], b"");
        assert!(ok, "gpgsm import: {err}");
        let fpr = fingerprint(&gw.leaf_pem);
        let entity = sample_entity(&format!("gpgsm-{label}"), 800);
        let (ok, der, err) = gpgsm(&["--encrypt", "-r", &fpr], &entity);
        assert!(ok, "gpgsm encrypt: {err}");
        let mut msg = b"Subject: gpgsm\r\n".to_vec();
        msg.extend_from_slice(&mime::pkcs7_mime_entity("enveloped-data", &der));
        let out = decrypt_message(&msg, &[gw.key()]).unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(out.entity(), entity.as_slice());
    }
    let a = gateway("smime-rsa2048");
    let b = gateway("smime-rsa4096");
    let entity = sample_entity("gpgsm-two", 800);
    let (ok, der, err) = gpgsm(
        &[
            "--encrypt",
            "--armor",
            "-r",
            &fingerprint(&a.leaf_pem),
            "-r",
            &fingerprint(&b.leaf_pem),
        ],
        &entity,
    );
    assert!(ok, "gpgsm encrypt: {err}");
    // Armored output: a PEM-like block; strip it to base64 for the MIME body.
    let text = String::from_utf8(der).unwrap();
    let b64: String = text
        .lines()
        .filter(|l| !l.starts_with("-----") && !l.is_empty())
        .collect();
    let mut msg =
        b"Subject: two\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_vec();
    msg.extend_from_slice(b64.as_bytes());
    for gw in [&a, &b] {
        let out = decrypt_message(&msg, &[gw.key()]).unwrap();
        assert_eq!(out.entity(), entity.as_slice());
    }

    // Sealgate encrypts -> gpgsm decrypts (the peer's key imported from PKCS#12).
    for peer in ["rsa2048", "rsa3072", "rsa4096"] {
        gpgsm_import_p12(peer);
        for rsa in [RsaTransport::Pkcs1v15, RsaTransport::OaepSha256] {
            let msg = sample_message(&format!("to-gpgsm-{peer}"), 700);
            let out = encrypt_message(
                &msg,
                &[&peer_cert(peer), &peer_cert("p256")],
                EncryptOptions { gcm: false, rsa },
            )
            .unwrap();
            let e = mime::parse(&out).unwrap();
            let der = e.decoded_body().unwrap();
            let (ok, plain, err) = gpgsm(&["--decrypt"], &der);
            if rsa == RsaTransport::OaepSha256 {
                // gpgsm 2.2 cannot read RSA-OAEP key transport ("error getting
                // encrypted session key"): the README's matrix says so, and
                // recipients known to use gpgsm 2.2 need the PKCS#1 v1.5 setting.
                // If this starts to succeed, update the matrix.
                assert!(!ok, "gpgsm now reads RSA-OAEP: update the README");
                continue;
            }
            assert!(ok, "gpgsm decrypt {peer} {rsa:?}: {err}");
            assert_eq!(plain, sample_entity(&format!("to-gpgsm-{peer}"), 700));
        }
    }
}
