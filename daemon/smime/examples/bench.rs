//! Per-message cost of the S/MIME engine on a provisioned token: decrypt
//! with a token key and encrypt for 1 and 10 recipients, at 10 KB and 10 MB,
//! beside the cost of the token operation alone, of the symmetric work
//! alone (aws-lc in process) and of OpenSSL doing the same whole decrypt in
//! process (`SMIME_read_CMS` with its base64, `CMS_decrypt` with a software
//! copy of the peer RSA-2048 test key, AES), measured in the same run.
//!
//! Target of issue 4, per decrypt: 1.3 x (token op + OpenSSL's whole
//! decrypt - OpenSSL's own RSA-2048 private op), i.e. OpenSSL's in-process
//! parsing and symmetric work with its software RSA replaced by the token.
//! Peak memory of one 10 MB decrypt and encrypt is measured in a child
//! process (VmHWM minus the RSS before the operation).
//!
//! Needs the token scripts/test-smime provisions (SEALGATE_HSM_DATA,
//! SOFTHSM2_CONF) and the peer certificates (SMIME_PEERS). Run with
//! `cargo run --release -p sealgate-smime --example bench`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sealgate_hsm::{Hsm, HsmSettings, RsaDecryptor};
use sealgate_smime::cert::{self, Certificate};
use sealgate_smime::content::ContentCipher;
use sealgate_smime::{EncryptOptions, GatewayKey, RsaTransport, decrypt_message, encrypt_message};

/// OpenSSL in process with a software copy of the peer RSA-2048 test key.
struct OpenSsl {
    key: openssl::pkey::PKey<openssl::pkey::Private>,
    cert: openssl::x509::X509,
    /// Our parse of the same certificate, to encrypt messages for it.
    ours: Certificate,
}

impl OpenSsl {
    fn load() -> OpenSsl {
        let dir = env("SMIME_PEERS");
        let pem = std::fs::read(dir.join("rsa2048.pem")).unwrap();
        let key = std::fs::read(dir.join("rsa2048.key")).unwrap();
        OpenSsl {
            key: openssl::pkey::PKey::private_key_from_pem(&key).unwrap(),
            cert: openssl::x509::X509::from_pem(&pem).unwrap(),
            ours: cert::parse_bundle(&pem).unwrap().remove(0),
        }
    }

    /// The whole decrypt of an S/MIME message: MIME and base64, CMS, RSA,
    /// symmetric decryption; returns the entity.
    fn decrypt(&self, smime: &[u8]) -> Vec<u8> {
        openssl::cms::CmsContentInfo::smime_read_cms(smime)
            .unwrap()
            .decrypt(&self.key, &self.cert)
            .unwrap()
    }

    /// One RSA-2048 PKCS#1 v1.5 private operation, as in the decrypt.
    fn rsa_op(&self) -> impl FnMut() + use<> {
        let rsa = self.key.rsa().unwrap();
        let mut wrapped = vec![0u8; rsa.size() as usize];
        let padding = openssl::rsa::Padding::PKCS1;
        rsa.public_encrypt(&[7u8; 32], &mut wrapped, padding)
            .unwrap();
        let mut out = vec![0u8; rsa.size() as usize];
        move || {
            rsa.private_decrypt(&wrapped, &mut out, padding).unwrap();
        }
    }
}

fn env(name: &str) -> PathBuf {
    PathBuf::from(std::env::var_os(name).unwrap_or_else(|| panic!("{name} unset")))
}

fn message(size: usize) -> Vec<u8> {
    let mut m = b"From: a@peer.test\r\nTo: b@gateway.test\r\nSubject: bench\r\nContent-Type: text/plain\r\n\r\n"
        .to_vec();
    let line = b"The quick brown fox jumps over the lazy dog, and Sealgate encrypts it.\r\n";
    while m.len() < size {
        m.extend_from_slice(line);
    }
    m
}

/// Median time of `f` over enough runs to fill about `budget`.
fn time<F: FnMut()>(mut f: F, budget: Duration) -> Duration {
    let start = Instant::now();
    f();
    let once = start.elapsed().max(Duration::from_micros(1));
    let runs = (budget.as_nanos() / once.as_nanos()).clamp(3, 2000) as usize;
    let mut samples: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

/// Medians of several operations sampled in rounds (each round runs each
/// once), so that on a shared machine every column sees the same load.
fn time_together(ops: &mut [&mut dyn FnMut()], budget: Duration) -> Vec<Duration> {
    let start = Instant::now();
    for op in ops.iter_mut() {
        op();
    }
    let once = start.elapsed().max(Duration::from_micros(1));
    let rounds = (budget.as_nanos() / once.as_nanos()).clamp(3, 2000) as usize;
    let mut samples = vec![Vec::with_capacity(rounds); ops.len()];
    for _ in 0..rounds {
        for (op, times) in ops.iter_mut().zip(samples.iter_mut()) {
            let t = Instant::now();
            op();
            times.push(t.elapsed());
        }
    }
    samples
        .into_iter()
        .map(|mut times| {
            times.sort();
            times[times.len() / 2]
        })
        .collect()
}

fn fmt(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.0} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    }
}

fn vm(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

struct Setup {
    hsm: Hsm,
    cert: Certificate,
    peers: Vec<Certificate>,
}

fn setup(label: &str) -> Setup {
    let data = env("SEALGATE_HSM_DATA");
    let hsm = Hsm::open(&HsmSettings::with_data_dir(&data)).unwrap();
    let pem = std::fs::read(data.join("certs").join(format!("{label}.pem"))).unwrap();
    let cert = cert::parse_bundle(&pem).unwrap().remove(0);
    let peers_dir = env("SMIME_PEERS");
    let mut peers = Vec::new();
    for n in ["rsa2048", "rsa3072", "rsa4096", "p256", "p384", "other"] {
        let pem = std::fs::read(peers_dir.join(format!("{n}.pem"))).unwrap();
        peers.extend(cert::parse_bundle(&pem).unwrap());
    }
    while peers.len() < 10 {
        peers.push(peers[peers.len() % 6].clone());
    }
    Setup { hsm, cert, peers }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let label = "smime-rsa2048";
    if args.get(1).map(String::as_str) == Some("--memory") {
        memory(
            label,
            args.get(2).map(String::as_str).unwrap_or("decrypt"),
            1,
        );
        return;
    }
    // `--repeat decrypt|encrypt N`: one 10 MB operation N times (for perf).
    if args.get(1).map(String::as_str) == Some("--repeat") {
        let n = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(20);
        memory(
            label,
            args.get(2).map(String::as_str).unwrap_or("decrypt"),
            n,
        );
        return;
    }
    let s = setup(label);
    let key = s.hsm.decryptor(label).unwrap();
    let keys = [GatewayKey::Rsa {
        cert: &s.cert,
        key: &key,
    }];
    let budget = Duration::from_secs(2);

    // The token operation alone: one RSA-2048 PKCS#1 v1.5 decryption.
    let wrapped = {
        let public = aws_lc_rs::rsa::PublicEncryptingKey::from_der(&s.cert.spki).unwrap();
        let k = aws_lc_rs::rsa::Pkcs1PublicEncryptingKey::new(public).unwrap();
        let mut out = vec![0u8; k.ciphertext_size()];
        k.encrypt(&[7u8; 32], &mut out).unwrap();
        out
    };
    let mut token_op = || drop(key.decrypt_pkcs1v15(&wrapped, 32).unwrap());
    let ossl = OpenSsl::load();
    let mut ossl_rsa_op = ossl.rsa_op();

    println!("S/MIME engine, per message (median), token key {label} (SoftHSM2), this machine");
    println!(
        "{} in process with a software RSA-2048 key; decrypt columns sampled in alternation\n",
        openssl::version::version(),
    );
    println!(
        "| operation | size | content | Sealgate | token op | symmetric alone | OpenSSL whole decrypt | OpenSSL RSA op | target 1.3x(token+OpenSSL-its RSA) |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for size in [10 * 1024, 10 * 1024 * 1024] {
        let msg = message(size);
        let label_size = if size < 1 << 20 { "10 KB" } else { "10 MB" };
        let budget = if size < 1 << 20 {
            budget
        } else {
            Duration::from_secs(4)
        };
        for gcm in [false, true] {
            let content = if gcm { "AES-256-GCM" } else { "AES-256-CBC" };
            let cipher = ContentCipher::fresh_aes256(gcm).unwrap();
            let sym_dec = {
                let (ct, tag) = cipher.encrypt(&[1u8; 32], msg.clone(), &[]).unwrap();
                time(
                    || {
                        drop(
                            cipher
                                .decrypt(&[1u8; 32], ct.clone(), &[], tag.as_deref())
                                .unwrap(),
                        )
                    },
                    budget,
                )
            };
            let sym_enc = time(
                || drop(cipher.encrypt(&[1u8; 32], msg.clone(), &[]).unwrap()),
                budget,
            );
            let opts = EncryptOptions {
                gcm,
                rsa: RsaTransport::Pkcs1v15,
            };
            let enc = encrypt_message(&msg, &[&s.cert], opts).unwrap();
            let for_ossl = encrypt_message(&msg, &[&ossl.ours], opts).unwrap();
            let ours = decrypt_message(&enc, &keys).unwrap();
            assert_eq!(
                ossl.decrypt(&for_ossl),
                ours.entity(),
                "OpenSSL decrypts the same entity"
            );
            drop(ours);
            let times = time_together(
                &mut [
                    &mut || drop(decrypt_message(&enc, &keys).unwrap()),
                    &mut token_op,
                    &mut || drop(ossl.decrypt(&for_ossl)),
                    &mut ossl_rsa_op,
                ],
                budget * 2,
            );
            let [dec, token, whole, ossl_rsa] = times[..] else {
                unreachable!()
            };
            let target = (token + whole.saturating_sub(ossl_rsa)).mul_f64(1.3);
            println!(
                "| decrypt | {label_size} | {content} | {} | {} | {} | {} | {} | {} |",
                fmt(dec),
                fmt(token),
                fmt(sym_dec),
                fmt(whole),
                fmt(ossl_rsa),
                fmt(target)
            );
            for n in [1usize, 10] {
                let recips: Vec<&Certificate> = s.peers.iter().take(n).collect();
                let opts = EncryptOptions {
                    gcm,
                    rsa: RsaTransport::OaepSha256,
                };
                let t = time(
                    || drop(encrypt_message(&msg, &recips, opts).unwrap()),
                    budget,
                );
                println!(
                    "| encrypt, {n} recipient{} | {label_size} | {content} | {} | – | {} | – | – | – |",
                    if n == 1 { "" } else { "s" },
                    fmt(t),
                    fmt(sym_enc)
                );
            }
        }
    }
    for op in ["decrypt", "encrypt"] {
        let out = std::process::Command::new(&args[0])
            .args(["--memory", op])
            .output()
            .unwrap();
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
}

/// One 10 MB operation (`repeat` times); prints the peak memory it added.
fn memory(label: &str, op: &str, repeat: usize) {
    let s = setup(label);
    let key = s.hsm.decryptor(label).unwrap();
    let keys = [GatewayKey::Rsa {
        cert: &s.cert,
        key: &key,
    }];
    let size = 10 * 1024 * 1024;
    let msg = message(size);
    let opts = EncryptOptions {
        gcm: false,
        rsa: RsaTransport::Pkcs1v15,
    };
    let (input, baseline) = if op == "decrypt" {
        let enc = encrypt_message(&msg, &[&s.cert], opts).unwrap();
        drop(msg);
        let base = vm("VmRSS:");
        (enc, base)
    } else {
        let base = vm("VmRSS:");
        (msg, base)
    };
    // VmHWM only grows: reset it so the peak is this operation's.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = vm("VmRSS:").max(baseline);
    for _ in 0..repeat {
        if op == "decrypt" {
            drop(decrypt_message(&input, &keys).unwrap());
        } else {
            drop(encrypt_message(&input, &[&s.peers[0]], opts).unwrap());
        }
    }
    let peak = vm("VmHWM:");
    println!(
        "peak memory of one 10 MB {op}: {:.1} MB above the {:.1} MB before it ({:.2}x the message; input held by the caller not counted)",
        (peak.saturating_sub(before)) as f64 / 1024.0,
        before as f64 / 1024.0,
        (peak.saturating_sub(before)) as f64 / (size as f64 / 1024.0)
    );
}
