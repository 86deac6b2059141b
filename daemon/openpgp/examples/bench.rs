//! Per-message cost of the OpenPGP engine beside the token operation alone.
//!
//! Needs a provisioned token (as `scripts/test-openpgp` makes one):
//!
//! ```sh
//! SOFTHSM2_CONF=$DATA/hsm/softhsm2.conf SEALGATE_HSM_DATA=$DATA \
//!     cargo run --release -p sealgate-openpgp --example bench
//! ```
//!
//! Creates an RSA-3072 and a P-256 gateway identity under a temporary label
//! prefix, makes messages of 10 KB and 10 MB — SEIPD v2 by the engine, and
//! SEIPD v1 by `gpg` (in a throw-away GNUPGHOME, agent killed at the end) —
//! and prints the median of several runs per cell.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sealgate_hsm::{Hsm, HsmSettings, KeyAgreement, RsaDecryptor, SignatureScheme, Signer};
use sealgate_openpgp::openpgp::cert::{CertBuilder, CipherSuite};
use sealgate_openpgp::{
    Cert, EncryptOptions, GatewayAlgorithm, GatewayIdentity, GatewaySpec, Limits, decrypt, encrypt,
};

fn median(mut f: impl FnMut(), runs: usize) -> Duration {
    let mut t: Vec<Duration> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    t[t.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn message(size: usize) -> Vec<u8> {
    let mut m =
        b"From: a@example.org\r\nSubject: bench\r\nContent-Type: text/plain\r\n\r\n".to_vec();
    let line = b"The quick brown fox jumps over the lazy dog 0123456789 abcdefghij\r\n";
    while m.len() < size {
        m.extend_from_slice(line);
    }
    m
}

fn gpg(home: &Path, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut c = Command::new("gpg")
        .env("GNUPGHOME", home)
        .args(["--batch", "--yes", "--trust-model", "always"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Feed stdin from a thread: gpg writes while it reads, and a full
    // stdout pipe would otherwise block both sides.
    let mut input = c.stdin.take().unwrap();
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || input.write_all(&data));
    let out = c.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    assert!(out.status.success(), "gpg {args:?}");
    out.stdout
}

fn pgp_mime(armored: &[u8]) -> Vec<u8> {
    let mut m = b"From: a@example.org\r\nMIME-Version: 1.0\r\n\
        Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"b\"\r\n\r\n\
        --b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n\
        --b\r\nContent-Type: application/octet-stream\r\n\r\n"
        .to_vec();
    m.extend_from_slice(armored);
    m.extend_from_slice(b"\r\n--b--\r\n");
    m
}

fn main() {
    let data = PathBuf::from(std::env::var_os("SEALGATE_HSM_DATA").expect("SEALGATE_HSM_DATA"));
    let hsm = Hsm::open(&HsmSettings::with_data_dir(&data)).unwrap();
    let tag = format!("bench-{}", std::process::id());
    let dir = data.join(&tag);
    let home = dir.join("gnupg");
    std::fs::create_dir_all(&home).unwrap();
    let lim = Limits::default();

    let ids: Vec<(&str, GatewayIdentity)> = [
        ("rsa3072", GatewayAlgorithm::Rsa3072),
        ("p256", GatewayAlgorithm::P256),
    ]
    .into_iter()
    .map(|(name, alg)| {
        let id = GatewayIdentity::create(
            &hsm,
            &dir.join(name),
            &GatewaySpec {
                user_id: format!("Bench {name} <bench-{name}@gateway.test>"),
                algorithm: alg,
                label_prefix: format!("{tag}-{name}"),
            },
        )
        .unwrap();
        gpg(&home, &["--import"], &id.export_armored().unwrap());
        (name, id)
    })
    .collect();

    // The token operations alone.
    let rsa_dec = hsm.decryptor(&format!("{tag}-rsa3072-enc-1")).unwrap();
    let rsa_ct = vec![0x42u8; 384];
    let t_rsa = median(
        || {
            rsa_dec.decrypt_pkcs1v15(&rsa_ct, 35).unwrap();
        },
        50,
    );
    let ecdh = hsm.key_agreement(&format!("{tag}-p256-enc-1")).unwrap();
    let peer = KeyAgreement::public_key(&ecdh).clone();
    let point = match &peer {
        sealgate_hsm::PublicKey::Ec { point, .. } => point.clone(),
        _ => unreachable!(),
    };
    let t_ecdh = median(
        || {
            ecdh.agree(&point).unwrap();
        },
        50,
    );
    let rsa_sign = hsm.signer(&format!("{tag}-rsa3072-primary")).unwrap();
    let t_sign = median(
        || {
            rsa_sign
                .sign_digest(SignatureScheme::RsaPkcs1Sha256, &[7u8; 32])
                .unwrap();
        },
        50,
    );
    println!("token operation alone (median of 50):");
    println!(
        "  RSA-3072 PKCS#1 v1.5 decrypt (implicit rejection)  {} ms",
        ms(t_rsa)
    );
    println!(
        "  P-256 ECDH                                         {} ms",
        ms(t_ecdh)
    );
    println!(
        "  RSA-3072 sign                                      {} ms",
        ms(t_sign)
    );
    println!();

    println!("decrypt, per message (median):");
    println!(
        "  {:<9} {:<8} {:<26} {:>10} {:>12}",
        "key", "size", "made by", "engine ms", "token ms"
    );
    for (name, id) in &ids {
        let token = if *name == "rsa3072" { t_rsa } else { t_ecdh };
        for (label, size, runs) in [("10 KB", 10_000, 21), ("10 MB", 10_000_000, 5)] {
            let plain = message(size);
            let ours = encrypt(
                &plain,
                &[id.cert().clone()],
                None,
                EncryptOptions::new(),
                &lim,
            )
            .unwrap();
            let fpr = id.cert().fingerprint().to_hex();
            let theirs = pgp_mime(&gpg(&home, &["--armor", "--encrypt", "-r", &fpr], &plain));
            for (who, m, tokens) in [
                ("sealgate (SEIPDv2, PKESKv6)", &ours, 1u32),
                (
                    "gpg (SEIPDv1, PKESKv3)",
                    &theirs,
                    if *name == "rsa3072" { 3 } else { 1 },
                ),
            ] {
                let t = median(
                    || {
                        decrypt(id, m, &[], &lim).unwrap();
                    },
                    runs,
                );
                println!(
                    "  {:<9} {:<8} {:<26} {:>10} {:>12}",
                    name,
                    label,
                    who,
                    ms(t),
                    format!("{} x{tokens}", ms(token))
                );
            }
        }
    }
    println!();

    // Recipients: fresh v4 Cv25519 and RSA-3072 certificates (Sequoia).
    let recipients: Vec<Cert> = (0..10)
        .map(|i| {
            let suite = if i % 2 == 0 {
                CipherSuite::Cv25519
            } else {
                CipherSuite::RSA3k
            };
            CertBuilder::general_purpose(Some(format!("r{i} <r{i}@example.org>")))
                .set_cipher_suite(suite)
                .generate()
                .unwrap()
                .0
                .strip_secret_key_material()
        })
        .collect();
    let gw = &ids[0].1;
    println!("encrypt, per message (median; recipients alternate Cv25519 / RSA-3072):");
    println!(
        "  {:<8} {:<11} {:>12} {:>18}",
        "size", "recipients", "engine ms", "signed (token) ms"
    );
    for (label, size, runs) in [("10 KB", 10_000, 21), ("10 MB", 10_000_000, 5)] {
        let plain = message(size);
        for n in [1usize, 10] {
            let r = &recipients[..n];
            let t = median(
                || {
                    encrypt(&plain, r, None, EncryptOptions::new(), &lim).unwrap();
                },
                runs,
            );
            let ts = median(
                || {
                    encrypt(&plain, r, Some(gw), EncryptOptions::new().sign(true), &lim).unwrap();
                },
                runs,
            );
            println!(
                "  {:<8} {:<11} {:>12} {:>18}",
                label,
                n,
                ms(t),
                format!("{} (+{})", ms(ts), ms(t_sign))
            );
        }
    }
    let _ = Command::new("gpgconf")
        .env("GNUPGHOME", &home)
        .args(["--kill", "all"])
        .status();
    let _ = std::fs::remove_dir_all(&dir);
}
