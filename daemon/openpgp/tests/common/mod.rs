//! Shared fixtures for the token tests: the provisioned token
//! (`scripts/test-openpgp`), the gateway identities created on it once per
//! test binary, and the real peers — GnuPG in a throw-away GNUPGHOME and
//! Sequoia's `sq` — with keys they generate themselves.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use sealgate_hsm::{Hsm, HsmSettings};
use sealgate_openpgp::{Cert, GatewayAlgorithm, GatewayIdentity, GatewaySpec};
use sequoia_openpgp::parse::Parse;

/// The token `scripts/test-openpgp` provisioned.
pub fn hsm() -> Hsm {
    static HSM: OnceLock<Hsm> = OnceLock::new();
    HSM.get_or_init(|| {
        let data = std::env::var_os("SEALGATE_HSM_DATA")
            .expect("SEALGATE_HSM_DATA unset: run scripts/test-openpgp (it provisions a token)");
        assert!(
            std::env::var_os("SOFTHSM2_CONF").is_some(),
            "SOFTHSM2_CONF unset: run scripts/test-openpgp"
        );
        Hsm::open(&HsmSettings::with_data_dir(PathBuf::from(data))).expect("open token")
    })
    .clone()
}

/// A scratch directory for this test binary, under the provisioned data dir.
pub fn scratch_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let data = PathBuf::from(std::env::var_os("SEALGATE_HSM_DATA").unwrap());
        let suffix: u32 = rand_u32();
        let d = data.join(format!("openpgp-test-{suffix:08x}"));
        std::fs::create_dir_all(&d).unwrap();
        d
    })
    .clone()
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .unwrap();
    u32::from_be_bytes(b)
}

/// Gateway identities, generated once (SoftHSM fails object creation at
/// random when other sessions search at the same time: generate up front).
pub struct Gateways {
    pub rsa: GatewayIdentity,
    pub p256: GatewayIdentity,
    pub p384: GatewayIdentity,
}

pub fn gateways() -> &'static Gateways {
    static G: OnceLock<Gateways> = OnceLock::new();
    G.get_or_init(|| {
        let hsm = hsm();
        let dir = scratch_dir();
        let tag = dir.file_name().unwrap().to_string_lossy().to_string();
        let make = |alg: GatewayAlgorithm, name: &str| {
            GatewayIdentity::create(
                &hsm,
                &dir.join(name),
                &GatewaySpec {
                    user_id: format!("Sealgate {name} <gateway@gateway.test>"),
                    algorithm: alg,
                    label_prefix: format!("{tag}-{name}"),
                },
            )
            .unwrap_or_else(|e| panic!("create {name} identity: {e}"))
        };
        Gateways {
            rsa: make(GatewayAlgorithm::Rsa3072, "rsa"),
            p256: make(GatewayAlgorithm::P256, "p256"),
            p384: make(GatewayAlgorithm::P384, "p384"),
        }
    })
}

/// The throw-away GNUPGHOME (never ~/.gnupg).
pub fn gnupghome() -> PathBuf {
    PathBuf::from(
        std::env::var_os("SEALGATE_TEST_GNUPGHOME")
            .expect("SEALGATE_TEST_GNUPGHOME unset: run scripts/test-openpgp"),
    )
}

pub fn run(mut cmd: Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn peer");
    // Feed stdin from a thread so a peer writing while it reads cannot fill
    // its stdout pipe and block both sides. A peer may stop reading early (it
    // failed); its exit status says so.
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    let _ = feeder.join();
    out
}

/// Runs gpg in batch mode in the throw-away home; returns its output.
/// One gpg at a time: parallel tests otherwise race on the keyring (a key
/// generated or imported by one test while another decrypts made gpg fail
/// now and then).
pub fn gpg(args: &[&str], stdin: &[u8]) -> Output {
    static GPG: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = GPG.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = Command::new("gpg");
    c.env("GNUPGHOME", gnupghome()).args([
        "--batch",
        "--yes",
        "--no-tty",
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
        "--trust-model",
        "always",
    ]);
    c.args(args);
    run(c, stdin)
}

pub fn gpg_ok(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let out = gpg(args, stdin);
    assert!(
        out.status.success(),
        "gpg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub fn sq_ok(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut c = Command::new("sq");
    c.args(args);
    let out = run(c, stdin);
    assert!(
        out.status.success(),
        "sq {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Peers' keys, generated by the peers themselves.
pub struct Peers {
    /// gpg RSA-3072 key of alice@example.org.
    pub alice: Cert,
    pub alice_fpr: String,
    /// gpg NIST P-256 key of carol@example.org.
    pub carol: Cert,
    pub carol_fpr: String,
    /// sq (Cv25519/Ed25519) key of bob@example.org: secret key file and cert.
    pub bob_key: PathBuf,
    pub bob: Cert,
    pub bob_cert_file: PathBuf,
}

/// The primary key fingerprint of the (newest) gpg key matching `uid`.
pub fn gpg_fpr(uid: &str) -> String {
    let listing = String::from_utf8(gpg_ok(&["--with-colons", "--list-keys", uid], b"")).unwrap();
    let lines: Vec<&str> = listing.lines().collect();
    let newest = lines.iter().rposition(|l| l.starts_with("pub:")).unwrap();
    lines[newest..]
        .iter()
        .find(|l| l.starts_with("fpr:"))
        .unwrap()
        .split(':')
        .nth(9)
        .unwrap()
        .to_owned()
}

fn gpg_new_key(uid: &str, algo: &str) -> (Cert, String) {
    gpg_ok(&["--quick-gen-key", uid, algo, "sign", "never"], b"");
    let fpr = gpg_fpr(uid);
    let enc = if algo.starts_with("rsa") {
        algo
    } else {
        "nistp256"
    };
    gpg_ok(&["--quick-add-key", &fpr, enc, "encr", "never"], b"");
    let cert = Cert::from_bytes(&gpg_ok(&["--export", &fpr], b"")).unwrap();
    (cert, fpr)
}

pub fn peers() -> &'static Peers {
    static P: OnceLock<Peers> = OnceLock::new();
    P.get_or_init(|| {
        let (alice, alice_fpr) = gpg_new_key("Alice <alice@example.org>", "rsa3072");
        let (carol, carol_fpr) = gpg_new_key("Carol <carol@example.org>", "nistp256");
        let dir = scratch_dir();
        let bob_key = dir.join("bob.key");
        let bob_cert_file = dir.join("bob.cert");
        sq_ok(
            &[
                "key",
                "generate",
                "--userid",
                "Bob <bob@example.org>",
                "--export",
                bob_key.to_str().unwrap(),
            ],
            b"",
        );
        let cert = sq_ok(&["key", "extract-cert", bob_key.to_str().unwrap()], b"");
        std::fs::write(&bob_cert_file, &cert).unwrap();
        Peers {
            alice,
            alice_fpr,
            carol,
            carol_fpr,
            bob: Cert::from_bytes(&cert).unwrap(),
            bob_key,
            bob_cert_file,
        }
    })
}

/// Writes `data` to a fresh file in the scratch dir.
pub fn file(name: &str, data: &[u8]) -> PathBuf {
    let p = scratch_dir().join(format!("{name}-{:08x}", rand_u32()));
    std::fs::write(&p, data).unwrap();
    p
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Imports a gateway's exported certificate into gpg; returns its fingerprint.
pub fn gpg_import_gateway(id: &GatewayIdentity) -> String {
    gpg_ok(&["--import"], &id.export_armored().unwrap());
    id.cert().fingerprint().to_hex()
}

/// A small MIME entity (what a PGP/MIME message encrypts).
pub const INNER: &[u8] = b"Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 8bit\r\n\r\n\
Gr\xc3\xbc\xc3\x9fe from the test.\r\nSecond line.\r\n";

/// Wraps an armored OpenPGP message as RFC 3156 `multipart/encrypted`.
pub fn pgp_mime(from: &str, armored: &[u8]) -> Vec<u8> {
    let mut m = format!(
        "From: {from}\r\nTo: gateway@gateway.test\r\nSubject: test\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"xx\"\r\n\r\n\
         --xx\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n\
         --xx\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    m.extend_from_slice(armored);
    m.extend_from_slice(b"\r\n--xx--\r\n");
    m
}

/// A `text/plain` message with an armored block in its body (inline PGP).
pub fn inline(from: &str, armored: &[u8]) -> Vec<u8> {
    let mut m = format!(
        "From: {from}\r\nTo: gateway@gateway.test\r\nSubject: inline\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\r\nHello,\r\n\r\n"
    )
    .into_bytes();
    m.extend_from_slice(armored);
    m.extend_from_slice(b"\r\nBye\r\n");
    m
}

/// The first armored block in `message`.
pub fn armored_block(message: &[u8], kind: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(message);
    let begin = format!("-----BEGIN PGP {kind}-----");
    let end = format!("-----END PGP {kind}-----");
    let a = text.find(&begin).expect("armored block");
    let b = text[a..].find(&end).unwrap() + a + end.len();
    text[a..b].as_bytes().to_vec()
}

/// The boundary of a top-level multipart message.
pub fn boundary(message: &[u8]) -> String {
    let text = String::from_utf8_lossy(message);
    let i = text.find("boundary=\"").unwrap() + 10;
    let j = text[i..].find('"').unwrap() + i;
    text[i..j].to_owned()
}

/// Body part `n` (0-based) of a multipart message, exact bytes without the
/// CRLF that belongs to the next delimiter.
pub fn part(message: &[u8], n: usize) -> Vec<u8> {
    let b = format!("--{}", boundary(message));
    let text = message;
    let mut starts = Vec::new();
    let mut i = 0;
    while let Some(p) = find(&text[i..], b.as_bytes()) {
        let at = i + p;
        if at == 0 || text[at - 1] == b'\n' {
            starts.push(at);
        }
        i = at + b.len();
    }
    let begin = starts[n] + b.len() + 2;
    let end = starts[n + 1] - 2;
    text[begin..end].to_vec()
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The three gateway identities (RSA-3072, P-256, P-384).
pub fn gateways_all() -> [&'static GatewayIdentity; 3] {
    let g = gateways();
    [&g.rsa, &g.p256, &g.p384]
}

/// Asserts that `decrypted` holds [`INNER`].
pub fn assert_inner(decrypted: &[u8]) {
    assert!(
        find(decrypted, INNER).is_some(),
        "decrypted entity differs:\n{}",
        String::from_utf8_lossy(decrypted)
    );
}

/// A message from `from` whose body (with its content fields) is `body_headers`.
pub fn message(from: &str, body_headers: &[u8]) -> Vec<u8> {
    let mut m =
        format!("From: {from}\r\nTo: alice@example.org\r\nSubject: hi\r\nMIME-Version: 1.0\r\n")
            .into_bytes();
    m.extend_from_slice(body_headers);
    m
}

/// RFC 3156 `multipart/signed` from `from`: `entity` and its detached `sig`.
pub fn signed_message(from: &str, entity: &[u8], sig: &[u8], micalg: &str) -> Vec<u8> {
    let mut m = format!(
        "From: {from}\r\nTo: gateway@gateway.test\r\nSubject: signed\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/signed; micalg={micalg}; protocol=\"application/pgp-signature\"; boundary=\"ss\"\r\n\r\n--ss\r\n"
    )
    .into_bytes();
    m.extend_from_slice(entity);
    m.extend_from_slice(b"\r\n--ss\r\nContent-Type: application/pgp-signature\r\n\r\n");
    m.extend_from_slice(sig);
    m.extend_from_slice(b"\r\n--ss--\r\n");
    m
}

/// `binary` armored as a `PGP MESSAGE` by Sequoia.
pub fn armor(binary: &[u8]) -> Vec<u8> {
    let mut w =
        sequoia_openpgp::armor::Writer::new(Vec::new(), sequoia_openpgp::armor::Kind::Message)
            .unwrap();
    w.write_all(binary).unwrap();
    w.finalize().unwrap()
}

/// Asserts that `binary`, armored as PGP/MIME and as inline, is refused by
/// `id` with the one `Error::Decrypt` and no plaintext.
pub fn assert_refused(id: &GatewayIdentity, binary: &[u8], what: &str) {
    for m in [
        pgp_mime("mallory@example.org", &armor(binary)),
        inline("mallory@example.org", &armor(binary)),
    ] {
        match sealgate_openpgp::decrypt(id, &m, &[], &sealgate_openpgp::Limits::default()) {
            Err(sealgate_openpgp::Error::Decrypt) => {}
            Err(e) => panic!("{what}: refused, but not with the uniform error: {e}"),
            Ok(d) => panic!(
                "{what}: accepted, plaintext released: {}",
                String::from_utf8_lossy(&d.message)
            ),
        }
    }
}
