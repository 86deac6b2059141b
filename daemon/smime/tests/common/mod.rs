//! Shared helpers for the interop tests: the token and the gateway keys and
//! certificates `scripts/test-smime` provisioned, the peer certificates
//! `make-peers.sh` wrote, scratch files, and running openssl and gpgsm.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sealgate_hsm::{Hsm, HsmSettings, TokenKey};
use sealgate_smime::{Certificate, GatewayKey, cert};

fn env_path(name: &str) -> PathBuf {
    PathBuf::from(std::env::var_os(name).unwrap_or_else(|| {
        panic!("{name} unset: run scripts/test-smime (it provisions a token and peers)")
    }))
}

/// The provisioned data dir.
pub fn data_dir() -> PathBuf {
    env_path("SEALGATE_HSM_DATA")
}

/// The peer side (make-peers.sh output).
pub fn peers() -> PathBuf {
    env_path("SMIME_PEERS")
}

/// One token connection for the whole test binary.
pub fn hsm() -> Hsm {
    static HSM: std::sync::OnceLock<Hsm> = std::sync::OnceLock::new();
    HSM.get_or_init(|| Hsm::open(&HsmSettings::with_data_dir(data_dir())).expect("open token"))
        .clone()
}

/// A gateway key on the token with its certificate.
pub struct Gateway {
    pub label: &'static str,
    pub cert: Certificate,
    /// The leaf certificate alone, PEM, for openssl `-recip`.
    pub leaf_pem: PathBuf,
    pub key: TokenKey,
    pub ec: bool,
}

impl Gateway {
    pub fn key(&self) -> GatewayKey<'_> {
        if self.ec {
            GatewayKey::Ec {
                cert: &self.cert,
                key: &self.key,
            }
        } else {
            GatewayKey::Rsa {
                cert: &self.cert,
                key: &self.key,
            }
        }
    }
}

/// The decryption gateways: RSA 2048/3072/4096, ECDH P-256/P-384.
pub const RSA_GATEWAYS: [&str; 3] = ["smime-rsa2048", "gateway-decrypt", "smime-rsa4096"];
pub const EC_GATEWAYS: [&str; 2] = ["gateway-ec-derive", "smime-p384"];

pub fn gateway(label: &'static str) -> Gateway {
    let hsm = hsm();
    let pem = std::fs::read(data_dir().join("certs").join(format!("{label}.pem"))).unwrap();
    let cert = cert::parse_bundle(&pem).unwrap().remove(0);
    // One file per call: tests run in parallel and each writes its own copy
    // (a shared name let one test read a file another was rewriting).
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let leaf_pem = scratch(&format!("{label}-leaf-{n}.pem"));
    openssl(&[
        "x509",
        "-in",
        p(&data_dir().join("certs").join(format!("{label}.pem"))),
        "-out",
        p(&leaf_pem),
    ]);
    let ec = EC_GATEWAYS.contains(&label);
    let key = if ec {
        hsm.key_agreement(label).unwrap()
    } else {
        hsm.decryptor(label).unwrap()
    };
    Gateway {
        label,
        cert,
        leaf_pem,
        key,
        ec,
    }
}

/// A peer's certificate (make-peers.sh names: rsa2048 ... p384, other).
pub fn peer_cert(name: &str) -> Certificate {
    let pem = std::fs::read(peers().join(format!("{name}.pem"))).unwrap();
    cert::parse_bundle(&pem).unwrap().remove(0)
}

pub fn peer_file(name: &str, ext: &str) -> PathBuf {
    peers().join(format!("{name}.{ext}"))
}

pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sealgate-smime-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A test message: header fields, then a MIME entity with CRLF endings.
pub fn sample_message(tag: &str, size: usize) -> Vec<u8> {
    let mut m = format!(
        "From: alice@peer.test\r\nTo: gateway@gateway.test\r\nSubject: test {tag}\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 7bit\r\n\r\n"
    )
    .into_bytes();
    let line = format!("Sealgate interop line for {tag}.\r\n");
    while m.len() < size {
        m.extend_from_slice(line.as_bytes());
    }
    m
}

/// The MIME entity of `sample_message` (Content-* fields and body).
pub fn sample_entity(tag: &str, size: usize) -> Vec<u8> {
    let m = sample_message(tag, size);
    let text = String::from_utf8(m).unwrap();
    let start = text.find("Content-Type:").unwrap();
    text.as_bytes()[start..].to_vec()
}

pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Runs a program with `stdin`; returns (success, stdout, stderr).
pub fn run(program: &str, args: &[&str], stdin: &[u8]) -> (bool, Vec<u8>, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs openssl; panics with its stderr if it fails.
pub fn openssl(args: &[&str]) -> Vec<u8> {
    openssl_in(args, b"")
}

/// Runs openssl with `stdin`; panics with its stderr if it fails.
pub fn openssl_in(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let (ok, out, err) = run("openssl", args, stdin);
    assert!(ok, "openssl {args:?} failed: {err}");
    out
}

/// Runs gpgsm in batch mode in the test GNUPGHOME (set by scripts/test-smime).
pub fn gpgsm(args: &[&str], stdin: &[u8]) -> (bool, Vec<u8>, String) {
    let home = env_path("GNUPGHOME");
    let mut all = vec![
        "--homedir",
        p(&home),
        "--batch",
        "--disable-crl-checks",
        "--disable-policy-checks",
        "--pinentry-mode",
        "loopback",
    ];
    all.extend_from_slice(args);
    run("gpgsm", &all, stdin)
}

/// SHA-1 fingerprint (hex, no colons) of a PEM certificate file.
pub fn fingerprint(pem: &Path) -> String {
    let out = openssl(&["x509", "-in", p(pem), "-noout", "-fingerprint", "-sha1"]);
    let s = String::from_utf8(out).unwrap();
    s.trim().rsplit('=').next().unwrap().replace(':', "")
}

/// The gateway signing identity `label` (its key and certificate chain).
pub fn signer(label: &str) -> (TokenKey, Vec<Certificate>) {
    let key = hsm().signer(label).unwrap();
    let pem = std::fs::read(data_dir().join("certs").join(format!("{label}.pem"))).unwrap();
    (key, cert::parse_bundle(&pem).unwrap())
}

/// Imports the gateway root and the peer CA into the test GNUPGHOME and
/// marks both trusted (idempotent).
pub fn gpgsm_trust() {
    let home = env_path("GNUPGHOME");
    let mut trust = String::new();
    for pem in [
        data_dir().join("certs").join("gateway-sign.pem"),
        data_dir().join("certs").join("gateway-ec-sign.pem"),
        data_dir().join("certs").join("smime-p384-sign.pem"),
        peer_file("ca", "pem"),
    ] {
        let (ok, _, err) = gpgsm(&["--import", p(&pem)], b"");
        assert!(ok, "gpgsm import: {err}");
        trust.push_str(&format!("{} S relax\n", fingerprint(&pem)));
    }
    std::fs::write(home.join("trustlist.txt"), trust).unwrap();
    // gpg-agent caches the trust list: make a running agent read it again.
    let _ = run(
        "gpgconf",
        &["--homedir", p(&home), "--reload", "gpg-agent"],
        b"",
    );
}

/// Imports a peer's PKCS#12 (empty password, read from stdin) into gpgsm.
///
/// Tried up to three times: in one CI run of 2026-12-05 (a loaded
/// machine) gpgsm refused a file it imports every other time ("decryption
/// failed; trying charset …", "possibly bad passphrase given") with the
/// same empty password, and 40 imports of fresh files in fresh homes
/// all worked. The import is this test's setup, not what it tests
/// (Sealgate's encryption, read by gpgsm), so a refusal is retried and
/// each one is printed; three in a row still fail the test.
pub fn gpgsm_import_p12(peer: &str) {
    let mut last = String::new();
    for attempt in 1..=3 {
        let (ok, _, err) = gpgsm(
            &[
                "--passphrase-fd",
                "0",
                "--import",
                p(&peer_file(peer, "p12")),
            ],
            b"\n",
        );
        if ok {
            return;
        }
        eprintln!("gpgsm import p12 {peer}, attempt {attempt}: {err}");
        last = err;
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    panic!("gpgsm import p12 {peer}: {last}");
}
