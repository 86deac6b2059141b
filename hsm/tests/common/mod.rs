//! Shared helpers for the token tests: settings of the token that
//! `scripts/test-hsm` provisioned, unique labels, scratch files, openssl.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use sealgate_hsm::{Hsm, HsmSettings};

/// Settings of the provisioned test token (`SEALGATE_HSM_DATA`, with
/// `SOFTHSM2_CONF` set by the script).
pub fn settings() -> HsmSettings {
    let data = std::env::var_os("SEALGATE_HSM_DATA")
        .expect("SEALGATE_HSM_DATA unset: run scripts/test-hsm (it provisions a token)");
    assert!(
        std::env::var_os("SOFTHSM2_CONF").is_some(),
        "SOFTHSM2_CONF unset: run scripts/test-hsm"
    );
    HsmSettings::with_data_dir(PathBuf::from(data))
}

/// One connection for the whole test binary: dropping the last handle finalizes
/// the module, which would cut the raw sessions some tests open beside it.
pub fn hsm() -> Hsm {
    static HSM: std::sync::OnceLock<Hsm> = std::sync::OnceLock::new();
    HSM.get_or_init(|| Hsm::open(&settings()).expect("open token"))
        .clone()
}

/// A raw cryptoki session on the provisioned token, opened beside the
/// crate's own connection (read-write and logged in, or read-only).
pub fn raw_session(read_write_login: bool) -> cryptoki::session::Session {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    let settings = settings();
    let pkcs11 = Pkcs11::new(&settings.module).unwrap();
    let _ = pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let slot = pkcs11
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| pkcs11.get_token_info(*s).unwrap().label() == settings.token_label)
        .unwrap();
    if !read_write_login {
        return pkcs11.open_ro_session(slot).unwrap();
    }
    let session = pkcs11.open_rw_session(slot).unwrap();
    let pin = secrecy::SecretString::from(
        std::fs::read_to_string(settings.pin_path())
            .unwrap()
            .trim()
            .to_owned(),
    );
    let _ = session.login(cryptoki::session::UserType::User, Some(&pin));
    session
}

/// Encrypts `plaintext` to the public key in `pubfile` with `openssl
/// pkeyutl -encrypt` and the given `-pkeyopt` options; returns the ciphertext.
pub fn openssl_encrypt(pubfile: &Path, plaintext: &[u8], name: &str, opts: &[&str]) -> Vec<u8> {
    let infile = scratch(&format!("{name}.pt"));
    std::fs::write(&infile, plaintext).unwrap();
    let ctfile = scratch(&format!("{name}.ct"));
    let mut args = vec![
        "pkeyutl",
        "-encrypt",
        "-pubin",
        "-inkey",
        p(pubfile),
        "-in",
        p(&infile),
        "-out",
        p(&ctfile),
    ];
    args.extend_from_slice(opts);
    openssl(&args);
    std::fs::read(&ctfile).unwrap()
}

pub fn fresh_label(prefix: &str) -> String {
    let mut b = [0u8; 4];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    format!(
        "t-{prefix}-{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    )
}

pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sealgate-hsm-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut v).unwrap();
    v
}

/// Runs openssl; panics with its stderr if it fails.
pub fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}
