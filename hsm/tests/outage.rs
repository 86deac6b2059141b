//! The token goes away while decryptions run, then comes back: callers see
//! temporary errors only, and the same `Hsm` recovers without a restart.
//! Its own test binary (process): recovery finalizes and re-initialises the
//! module, and the token directory is moved away meanwhile.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{random_bytes, scratch};
use sealgate_hsm::{OaepHash, RsaDecryptor};

fn wait_for(what: &str, deadline: Duration, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn token_outage_gives_temporary_errors_then_recovers() {
    let settings = common::settings();
    let hsm = common::hsm();
    let key = hsm.decryptor("gateway-decrypt").unwrap();
    let pubfile = scratch("outage.pub.pem");
    std::fs::write(&pubfile, RsaDecryptor::public_key(&key).spki_pem()).unwrap();
    let secret = random_bytes(32);
    let ct = common::openssl_encrypt(
        &pubfile,
        &secret,
        "outage",
        &["-pkeyopt", "rsa_padding_mode:oaep"],
    );
    assert_eq!(
        &key.decrypt_oaep(OaepHash::Sha1, &ct).unwrap()[..],
        &secret[..]
    );

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let temporary = Arc::new(AtomicUsize::new(0));
    let permanent = Arc::new(Mutex::new(Vec::<String>::new()));
    let functions = Arc::new(Mutex::new(std::collections::BTreeSet::<String>::new()));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (key, ct, secret) = (key.clone(), ct.clone(), secret.clone());
        let (stop, ok, temporary, permanent, functions) = (
            stop.clone(),
            ok.clone(),
            temporary.clone(),
            permanent.clone(),
            functions.clone(),
        );
        workers.push(std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match key.decrypt_oaep(OaepHash::Sha1, &ct) {
                    Ok(pt) => {
                        assert_eq!(&pt[..], &secret[..]);
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) if e.is_temporary() => {
                        temporary.fetch_add(1, Ordering::SeqCst);
                        functions.lock().unwrap().insert(
                            e.function().unwrap_or("(none)").to_owned() + ": " + &e.to_string(),
                        );
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => permanent.lock().unwrap().push(e.to_string()),
                }
            }
        }));
    }
    wait_for(
        "decryptions before the outage",
        Duration::from_secs(10),
        || ok.load(Ordering::SeqCst) > 50,
    );

    // Outage: the token's storage disappears (unmounted data partition, deleted token).
    let tokens = settings.hsm_dir().join("tokens");
    let away = settings.hsm_dir().join("tokens.away");
    std::fs::rename(&tokens, &away).unwrap();
    std::fs::create_dir(&tokens).unwrap();
    wait_for(
        "temporary errors during the outage",
        Duration::from_secs(20),
        || temporary.load(Ordering::SeqCst) > 20,
    );
    let status = hsm.status();
    assert!(
        !status.token_present || status.error.is_some(),
        "{status:?}"
    );

    // The storage comes back: the same handle recovers without restart.
    std::fs::remove_dir(&tokens).unwrap();
    std::fs::rename(&away, &tokens).unwrap();
    let ok_at_restore = ok.load(Ordering::SeqCst);
    wait_for(
        "decryptions after the outage",
        Duration::from_secs(20),
        || ok.load(Ordering::SeqCst) > ok_at_restore + 50,
    );
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    let permanent = permanent.lock().unwrap();
    assert!(permanent.is_empty(), "permanent errors: {permanent:?}");
    eprintln!(
        "outage: {} ok, {} temporary errors, kinds: {:?}",
        ok.load(Ordering::SeqCst),
        temporary.load(Ordering::SeqCst),
        functions.lock().unwrap()
    );
    assert_eq!(
        &key.decrypt_oaep(OaepHash::Sha1, &ct).unwrap()[..],
        &secret[..]
    );
    assert!(hsm.status().logged_in);
}
