//! RSA-2048 decryptions per second: through the key store's session pool
//! (1 and 2 workers) beside a bare cryptoki loop (one session per thread) in
//! the same run, on the token `scripts/test-hsm` or `hsm/provision` made.
//!
//! ```sh
//! hsm/provision /tmp/sg && SOFTHSM2_CONF=/tmp/sg/hsm/softhsm2.conf \
//!   cargo run --release -p sealgate-hsm --example bench -- /tmp/sg [seconds] [rounds]
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
    let secs: f64 = args.next().map(|s| s.parse().unwrap()).unwrap_or(2.0);
    let rounds: usize = args.next().map(|s| s.parse().unwrap()).unwrap_or(3);
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

    // Cells alternate within each round and the median of the rounds is shown, so
    // load from other processes hits bare and pooled runs alike.
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut cells: Vec<Vec<f64>> = vec![Vec::new(); 6];
    for _ in 0..rounds {
        cells[0].push(bare(1));
        cells[1].push(pooled(1));
        cells[2].push(bare(2));
        cells[3].push(pooled(2));
    }
    cells[4].push(pkcs1(1));
    cells[5].push(pkcs1(2));
    let m: Vec<f64> = cells.into_iter().map(median).collect();
    println!(
        "RSA-2048 private-key decryptions per second (median of {rounds} rounds of {secs} s; \
         {} CPUs)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("{:<44} {:>10} {:>10}", "path", "1 worker", "2 workers");
    println!(
        "{:<44} {:>10.0} {:>10.0}",
        "bare cryptoki loop, OAEP-SHA1", m[0], m[2]
    );
    println!(
        "{:<44} {:>10.0} {:>10.0}",
        "pool (Hsm::decryptor), OAEP-SHA1", m[1], m[3]
    );
    println!(
        "{:<44} {:>9.1}% {:>9.1}%",
        "pool overhead",
        (1.0 - m[1] / m[0]) * 100.0,
        (1.0 - m[3] / m[2]) * 100.0
    );
    println!(
        "{:<44} {:>10.0} {:>10.0}",
        "pool, PKCS#1 v1.5 + implicit rejection", m[4], m[5]
    );
    // The pool's own bookkeeping (permit, lock, session pop/push), no token call:
    // independent of machine load, unlike the table above.
    let n = 200_000u32;
    let start = Instant::now();
    for _ in 0..n {
        hsm.pool_round_trip().unwrap();
    }
    let per_op = start.elapsed() / n;
    println!(
        "pool bookkeeping per operation: {per_op:?} ({:.3}% of one bare decryption at {:.0}/s)",
        per_op.as_secs_f64() * m[0] * 100.0,
        m[0]
    );
    drop(setup);
    hsm.delete(&label).unwrap();
}
