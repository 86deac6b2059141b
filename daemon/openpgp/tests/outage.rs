//! The token goes away while the gateway decrypts and signs: every failure
//! is temporary (defer, never bounce) — never the uniform decryption error —
//! and the same identity works again when the token is back. Its own test
//! binary: the token directory is moved away meanwhile. Run by
//! `scripts/test-openpgp`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use sealgate_openpgp::{EncryptOptions, Limits, decrypt, encrypt, sign};

#[test]
fn token_outage_is_temporary_for_decrypt_and_sign() {
    let lim = Limits::default();
    let g = gateways();
    let msgs: Vec<_> = [&g.rsa, &g.p256]
        .into_iter()
        .map(|id| {
            let m = encrypt(
                INNER,
                &[id.cert().clone()],
                None,
                EncryptOptions::new(),
                &lim,
            )
            .unwrap();
            decrypt(id, &m, &[], &lim).unwrap();
            (id, m)
        })
        .collect();

    let data = std::path::PathBuf::from(std::env::var_os("SEALGATE_HSM_DATA").unwrap());
    let tokens = data.join("hsm").join("tokens");
    let away = data.join("hsm").join("tokens.away");
    std::fs::rename(&tokens, &away).unwrap();
    std::fs::create_dir(&tokens).unwrap();

    // Until the pool notices, calls may still succeed; every failure must be temporary.
    let start = Instant::now();
    let mut temporary = 0;
    while temporary < 6 && start.elapsed() < Duration::from_secs(30) {
        for (id, m) in &msgs {
            match decrypt(id, m, &[], &lim) {
                Ok(_) => {}
                Err(e) if e.is_temporary() => temporary += 1,
                Err(e) => panic!("outage gave a permanent error on decrypt: {e}"),
            }
            match sign(id, b"From: gateway@gateway.test\r\n\r\nx\r\n", &lim) {
                Ok(_) => {}
                Err(e) if e.is_temporary() => temporary += 1,
                Err(e) => panic!("outage gave a permanent error on sign: {e}"),
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    std::fs::remove_dir(&tokens).unwrap();
    std::fs::rename(&away, &tokens).unwrap();
    assert!(temporary > 0, "the outage was never noticed");

    let start = Instant::now();
    loop {
        let all_ok = msgs.iter().all(|(id, m)| decrypt(id, m, &[], &lim).is_ok());
        if all_ok {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no recovery after the token came back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
