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
