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
//! and prints the median of several runs per cell. Every message is also
//! encrypted to a software key, so the symmetric work of the same message
//! can be timed apart (`symm.`); `ratio` is engine / (token + symmetric).
//! `BENCH_ONLY=decrypt`, `decrypt-10kb` or `decrypt-10mb` skips the rest (for
//! `perf record`);
//! `BENCH_MADE=sealgate` or `gpg` keeps only the messages made by that one.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sealgate_hsm::{Hsm, HsmSettings, KeyAgreement, RsaDecryptor, SignatureScheme, Signer};
use sealgate_openpgp::openpgp;

use openpgp::KeyHandle;
use openpgp::cert::{CertBuilder, CipherSuite};
use openpgp::crypto::SessionKey;
use openpgp::packet::{PKESK, SKESK};
use openpgp::parse::Parse;
use openpgp::parse::stream::{
    DecryptionHelper, DecryptorBuilder, MessageStructure, VerificationHelper,
};
use openpgp::policy::StandardPolicy;
use openpgp::serialize::SerializeInto;
use openpgp::types::SymmetricAlgorithm;
use sealgate_openpgp::{
    Cert, EncryptOptions, GatewayAlgorithm, GatewayIdentity, GatewaySpec, Limits, decrypt, encrypt,
};

/// What every cell times: by default the CPU time of this thread, which the
/// token shares (SoftHSM runs in the calling thread), so that other
/// processes on a shared machine weigh little; wall-clock time with
/// `BENCH_CLOCK=wall`.
fn clock() -> Duration {
    static WALL: OnceLock<Option<Instant>> = OnceLock::new();
    let wall = WALL
        .get_or_init(|| (std::env::var("BENCH_CLOCK").as_deref() == Ok("wall")).then(Instant::now));
    match wall {
        Some(epoch) => epoch.elapsed(),
        None => nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
            .unwrap()
            .into(),
    }
}

fn clock_name() -> &'static str {
    if std::env::var("BENCH_CLOCK").as_deref() == Ok("wall") {
        "wall-clock time"
    } else {
        "CPU time of the bench thread, token included"
    }
}

fn median(mut f: impl FnMut(), runs: usize) -> Duration {
    let mut t: Vec<Duration> = (0..runs)
        .map(|_| {
            let s = clock();
            f();
            clock() - s
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

/// Sequoia's stream decryptor with either a software secret key (to learn
/// the session key once) or the session key itself (to time the symmetric
/// work alone: de-armoring, SEIPD decryption and integrity check,
/// decompression, literal data).
struct SoftHelper {
    key: Option<Cert>,
    session: Option<(Option<SymmetricAlgorithm>, SessionKey)>,
}

impl VerificationHelper for SoftHelper {
    fn get_certs(&mut self, _: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(Vec::new())
    }
    fn check(&mut self, _: MessageStructure) -> openpgp::Result<()> {
        Ok(())
    }
}

impl DecryptionHelper for SoftHelper {
    fn decrypt(
        &mut self,
        pkesks: &[PKESK],
        _: &[SKESK],
        sym_algo: Option<SymmetricAlgorithm>,
        decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
    ) -> openpgp::Result<Option<Cert>> {
        if let Some((algo, sk)) = &self.session {
            assert!(decrypt(*algo, sk));
            return Ok(None);
        }
        let p = StandardPolicy::new();
        let cert = self.key.as_ref().unwrap();
        for ka in cert
            .keys()
            .with_policy(&p, None)
            .secret()
            .for_transport_encryption()
        {
            let mut kp = ka.key().clone().into_keypair().unwrap();
            for pkesk in pkesks {
                if let Some((algo, sk)) = pkesk.decrypt(&mut kp, sym_algo)
                    && decrypt(algo, &sk)
                {
                    self.session = Some((algo, sk));
                    return Ok(None);
                }
            }
        }
        panic!("software key cannot decrypt")
    }
}

/// The armored OpenPGP message inside a PGP/MIME message.
fn armored_part(mime: &[u8]) -> &[u8] {
    let find = |needle: &[u8]| {
        mime.windows(needle.len())
            .position(|w| w == needle)
            .unwrap()
    };
    let end = b"-----END PGP MESSAGE-----";
    &mime[find(b"-----BEGIN PGP MESSAGE-----")..find(end) + end.len()]
}

fn sequoia_decrypt(message: &[u8], helper: SoftHelper) -> (Vec<u8>, SoftHelper) {
    let p = StandardPolicy::new();
    let mut d = DecryptorBuilder::from_bytes(message)
        .unwrap()
        .buffer_size(1 << 20)
        .with_policy(&p, None, helper)
        .unwrap();
    let mut out = Vec::new();
    d.read_to_end(&mut out).unwrap();
    (out, d.into_helper())
}

/// The symmetric work alone for `armored`, a message the software key
/// `soft` can decrypt: it is de-armored and the session key recovered once,
/// here; the returned closure then has Sequoia decrypt the binary message
/// with the session key given (SEIPD, MDC or AEAD, decompression, literal
/// data).
fn symmetric_work(armored: &[u8], soft: &Cert) -> impl FnMut() {
    let mut binary = Vec::new();
    openpgp::armor::Reader::from_bytes(
        armored,
        openpgp::armor::ReaderMode::Tolerant(Some(openpgp::armor::Kind::Message)),
    )
    .read_to_end(&mut binary)
    .unwrap();
    let (_, h) = sequoia_decrypt(
        &binary,
        SoftHelper {
            key: Some(soft.clone()),
            session: None,
        },
    );
    let session = h.session;
    move || {
        sequoia_decrypt(
            &binary,
            SoftHelper {
                key: None,
                session: session.clone(),
            },
        );
    }
}

/// Medians of `a` and `b`, sampled in alternation so that the load of the
/// shared machine weighs on both alike.
fn medians(mut a: impl FnMut(), mut b: impl FnMut(), runs: usize) -> (Duration, Duration) {
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        ta.push(median(&mut a, 1));
        tb.push(median(&mut b, 1));
    }
    let mid = |mut t: Vec<Duration>| {
        t.sort();
        t[t.len() / 2]
    };
    (mid(ta), mid(tb))
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

    // A software key that every bench message is also encrypted to, so that
    // the symmetric work of the very same SEIPD can be timed without the token.
    let soft = CertBuilder::general_purpose(Some("soft <soft@example.org>"))
        .set_cipher_suite(CipherSuite::Cv25519)
        .generate()
        .unwrap()
        .0;
    let soft_pub = soft.clone().strip_secret_key_material();
    gpg(&home, &["--import"], &soft_pub.armored().to_vec().unwrap());
    let soft_fpr = soft.fingerprint().to_hex();
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let made = std::env::var("BENCH_MADE").unwrap_or_default();

    // The token operations alone.
    let rsa_dec = hsm.decryptor(&format!("{tag}-rsa3072-enc-1")).unwrap();
    let rsa_ct = vec![0x42u8; 384];
    let t_rsa = median(
        || {
            rsa_dec.decrypt_pkcs1v15(&rsa_ct, 35).unwrap();
        },
        50,
    );
    let t_rsa3 = median(
        || {
            rsa_dec
                .decrypt_pkcs1v15_lengths(&rsa_ct, &[35, 27, 19])
                .unwrap();
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
    println!("times are {}", clock_name());
    println!("token operation alone (median of 50):");
    println!(
        "  RSA-3072 PKCS#1 v1.5 decrypt (implicit rejection)  {} ms",
        ms(t_rsa)
    );
    println!(
        "  … three lengths in one call (PKESK v3)             {} ms",
        ms(t_rsa3)
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

    println!(
        "decrypt, per message (median); symmetric = Sequoia decrypting the same \
         message, binary, with the session key given (SEIPD, MDC/AEAD, \
         decompression):"
    );
    println!(
        "  {:<9} {:<8} {:<26} {:>10} {:>9} {:>10} {:>7}",
        "key", "size", "made by", "engine ms", "token ms", "symm. ms", "ratio"
    );
    for (name, id) in &ids {
        if only == "encrypt" {
            break;
        }
        let token = if *name == "rsa3072" { t_rsa } else { t_ecdh };
        for (label, size, runs) in [("10 KB", 10_000, 201), ("10 MB", 10_000_000, 21)] {
            if (only == "decrypt-10mb" && size < 1_000_000)
                || (only == "decrypt-10kb" && size > 1_000_000)
            {
                continue;
            }
            let plain = message(size);
            let ours = encrypt(
                &plain,
                &[id.cert().clone(), soft_pub.clone()],
                None,
                EncryptOptions::new(),
                &lim,
            )
            .unwrap();
            let fpr = id.cert().fingerprint().to_hex();
            let theirs = pgp_mime(&gpg(
                &home,
                &["--armor", "--encrypt", "-r", &fpr, "-r", &soft_fpr],
                &plain,
            ));
            for (who, m, token) in [
                ("sealgate (SEIPDv2, PKESKv6)", &ours, token),
                (
                    "gpg (SEIPDv1, PKESKv3)",
                    &theirs,
                    if *name == "rsa3072" { t_rsa3 } else { token },
                ),
            ] {
                if !who.starts_with(made.as_str()) {
                    continue;
                }
                let (t, symmetric) = medians(
                    || {
                        decrypt(id, m, &[], &lim).unwrap();
                    },
                    symmetric_work(armored_part(m), &soft),
                    runs,
                );
                let base = token + symmetric;
                println!(
                    "  {:<9} {:<8} {:<26} {:>10} {:>9} {:>10} {:>7}",
                    name,
                    label,
                    who,
                    ms(t),
                    ms(token),
                    ms(symmetric),
                    format!("{:.2}x", t.as_secs_f64() / base.as_secs_f64())
                );
            }
        }
    }
    println!();
    if only.starts_with("decrypt") {
        return cleanup(&home, &dir);
    }

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
    println!(
        "encrypt, per message (median; recipients alternate Cv25519 / RSA-3072); \
         Sequoia = the same bytes to the same recipients through Sequoia's \
         streaming encryptor, armored, no MIME:"
    );
    println!(
        "  {:<8} {:<11} {:>10} {:>12} {:>7} {:>18}",
        "size", "recipients", "engine ms", "Sequoia ms", "ratio", "signed (token) ms"
    );
    for (label, size, runs) in [("10 KB", 10_000, 51), ("10 MB", 10_000_000, 11)] {
        let plain = message(size);
        for n in [1usize, 10] {
            let r = &recipients[..n];
            let (t, reference) = medians(
                || {
                    encrypt(&plain, r, None, EncryptOptions::new(), &lim).unwrap();
                },
                || {
                    sequoia_encrypt(&plain, r);
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
                "  {:<8} {:<11} {:>10} {:>12} {:>7} {:>18}",
                label,
                n,
                ms(t),
                ms(reference),
                format!("{:.2}x", t.as_secs_f64() / reference.as_secs_f64()),
                format!("{} (+{})", ms(ts), ms(t_sign))
            );
        }
    }
    cleanup(&home, &dir);
}

/// Sequoia alone encrypting `data` to `recipients`' encryption keys,
/// armored: the reference for the engine's encryption.
fn sequoia_encrypt(data: &[u8], recipients: &[Cert]) -> Vec<u8> {
    let p = StandardPolicy::new();
    let keys: Vec<openpgp::serialize::stream::Recipient> = recipients
        .iter()
        .flat_map(|c| {
            c.keys()
                .with_policy(&p, None)
                .supported()
                .alive()
                .revoked(false)
                .for_transport_encryption()
                .map(Into::into)
                .collect::<Vec<_>>()
        })
        .collect();
    let mut out = Vec::new();
    let m = openpgp::serialize::stream::Message::new(&mut out);
    let m = openpgp::serialize::stream::Armorer::new(m).build().unwrap();
    let m = openpgp::serialize::stream::Encryptor::for_recipients(m, keys)
        .build()
        .unwrap();
    let mut w = openpgp::serialize::stream::LiteralWriter::new(m)
        .build()
        .unwrap();
    w.write_all(data).unwrap();
    w.finalize().unwrap();
    out
}

/// Kills the bench's gpg-agent and removes its scratch directory.
fn cleanup(home: &Path, dir: &Path) {
    let _ = Command::new("gpgconf")
        .env("GNUPGHOME", home)
        .args(["--kill", "all"])
        .status();
    let _ = std::fs::remove_dir_all(dir);
}
