//! RSA-2048 decryptions per second: through the key store's session pool
//! (1 and 2 workers) beside a bare cryptoki loop (one session per thread) in
//! the same run, on the token `scripts/test-hsm` or `hsm/provision` made.
//!
//! ```sh
//! hsm/provision /tmp/sg && SOFTHSM2_CONF=/tmp/sg/hsm/softhsm2.conf \
//!   cargo run --release -p sealgate-hsm --example bench -- /tmp/sg [seconds]
//! ```
//!
//! Trusts: its operator. Must never: run against a production token (it
//! creates and deletes a key labelled `bench-...`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::MechanismType;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::object::{Attribute, ObjectClass};
use cryptoki::session::UserType;
use sealgate_hsm::{Hsm, HsmSettings, KeyAlgorithm, KeyUsage, OaepHash, RsaDecryptor};

fn oaep() -> Mechanism<'static> {
    Mechanism::RsaPkcsOaep(PkcsOaepParams::new(
        MechanismType::SHA1,
        PkcsMgfType::MGF1_SHA1,
        PkcsOaepSource::empty(),
    ))
}

/// Runs `threads` copies of `op` for `secs`, returns operations per second.
fn run(threads: usize, secs: f64, op: Arc<dyn Fn() + Send + Sync>) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (stop, count, op) = (stop.clone(), count.clone(), op.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    op();
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let data = args
        .next()
        .or_else(|| std::env::var("SEALGATE_HSM_DATA").ok())
        .expect("usage: bench DATA_DIR [seconds]");
    let secs: f64 = args.next().map(|s| s.parse().unwrap()).unwrap_or(3.0);
    let settings = HsmSettings::with_data_dir(&data);
    let hsm = Hsm::open(&settings).expect("open token (is SOFTHSM2_CONF set?)");
    let label = format!("bench-rsa2048-{}", std::process::id());
    hsm.generate(&label, KeyAlgorithm::Rsa2048, KeyUsage::Decrypt)
        .unwrap();
    let key = hsm.decryptor(&label).unwrap();

    // The bare loop: its own handle on the (already initialised) module.
    let pkcs11 = Pkcs11::new(&settings.module).unwrap();
    let _ = pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let slot = pkcs11
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| pkcs11.get_token_info(*s).unwrap().label() == settings.token_label)
        .unwrap();
    let setup = pkcs11.open_rw_session(slot).unwrap();
    let pin = secrecy::SecretString::from(
        std::fs::read_to_string(settings.pin_path())
            .unwrap()
            .trim()
            .to_owned(),
    );
    let _ = setup.login(UserType::User, Some(&pin));
    let find = |class| {
        setup
            .find_objects(&[
                Attribute::Class(class),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
            .unwrap()[0]
    };
    let (pubh, privh) = (
        find(ObjectClass::PUBLIC_KEY),
        find(ObjectClass::PRIVATE_KEY),
    );
    let ct = Arc::new(setup.encrypt(&oaep(), pubh, &[7u8; 32]).unwrap());
    assert_eq!(
        &key.decrypt_oaep(OaepHash::Sha1, &ct).unwrap()[..],
        &[7u8; 32]
    );

    let bare = |threads| {
        let p = pkcs11.clone();
        let ct = ct.clone();
        // One session per thread, opened on first use in that thread.
        let op: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
            thread_local! {
                static SESSION: std::cell::RefCell<Option<cryptoki::session::Session>> =
                    const { std::cell::RefCell::new(None) };
            }
            SESSION.with(|cell| {
                let mut s = cell.borrow_mut();
                let s = s.get_or_insert_with(|| p.open_ro_session(slot).unwrap());
                let out = s.decrypt(&oaep(), privh, &ct).unwrap();
                assert_eq!(out.len(), 32);
            });
        });
        run(threads, secs, op)
    };
    let pooled = |threads| {
        let key = key.clone();
        let ct = ct.clone();
        let op: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
            let out = key.decrypt_oaep(OaepHash::Sha1, &ct).unwrap();
            assert_eq!(out.len(), 32);
        });
        run(threads, secs, op)
    };
    let pkcs1 = |threads| {
        let key = key.clone();
        let ct = ct.clone();
        // PKCS#1 v1.5 path: token HMAC (implicit rejection) + raw RSA + software decode.
        let op: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
            let out = key.decrypt_pkcs1v15(&ct, 32).unwrap();
            assert_eq!(out.len(), 32);
        });
        run(threads, secs, op)
    };

    println!("RSA-2048 private-key decryptions per second ({secs} s per cell)");
    println!("{:<44} {:>10} {:>10}", "path", "1 worker", "2 workers");
    let b1 = bare(1);
    let p1 = pooled(1);
    let b2 = bare(2);
    let p2 = pooled(2);
    let i1 = pkcs1(1);
    let i2 = pkcs1(2);
    println!(
        "{:<44} {:>10.0} {:>10.0}",
        "bare cryptoki loop, OAEP-SHA1", b1, b2
    );
    println!(
        "{:<44} {:>10.0} {:>10.0}",
        "pool (Hsm::decryptor), OAEP-SHA1", p1, p2
    );
    println!(
        "{:<44} {:>9.1}% {:>9.1}%",
        "pool overhead",
        (1.0 - p1 / b1) * 100.0,
        (1.0 - p2 / b2) * 100.0
    );
    println!(
        "{:<44} {:>10.0} {:>10.0}",
        "pool, PKCS#1 v1.5 + implicit rejection", i1, i2
    );
    drop(setup);
    hsm.delete(&label).unwrap();
}
