//! The shared store's contract, run against both implementations: sled
//! (a single node) and PostgreSQL 15 (a cluster; a real server started by
//! the test with `tests/lib/postgres.py`, TLS and SCRAM as in production).
//!
//! The PostgreSQL case needs root (the server runs as `postgres`) and
//! PostgreSQL 15 installed: it is `#[ignore]`d in a plain `cargo test`, and
//! `scripts/test-cluster` runs it (`-- --ignored`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use sealgate::store::{SharedStore, SledStore, Space, StoreError};

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sealgate-{name}-{}-{}",
        std::process::id(),
        sealgate::util::new_session_id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What every implementation must do alike.
fn contract(s: &dyn SharedStore) {
    // Keys are bytes, ordered byte by byte (0x00 and 0xff included).
    let keys: [&[u8]; 6] = [b"", b"\x00", b"a", b"a\x00", b"a\xff", b"b"];
    for k in keys.iter().rev() {
        s.put(Space::Audit, k, &[k.len() as u8]).unwrap();
    }
    let all = s.range(Space::Audit, b"", None, false, 100).unwrap();
    assert_eq!(
        all.iter().map(|(k, _)| k.as_slice()).collect::<Vec<_>>(),
        keys.to_vec()
    );
    let reversed = s.range(Space::Audit, b"a", Some(b"b"), true, 2).unwrap();
    assert_eq!(
        reversed
            .iter()
            .map(|(k, _)| k.as_slice())
            .collect::<Vec<_>>(),
        vec![&b"a\xff"[..], b"a\x00"]
    );
    let prefixed = s.scan_prefix(Space::Audit, b"a", 10).unwrap();
    assert_eq!(prefixed.len(), 3);
    assert_eq!(s.last(Space::Audit).unwrap().unwrap().0, b"b");
    assert_eq!(s.get(Space::Audit, b"a\x00").unwrap(), Some(vec![2]));
    assert_eq!(s.get(Space::Audit, b"zz").unwrap(), None);
    // Spaces are separate.
    assert_eq!(s.get(Space::Settings, b"a").unwrap(), None);
    assert!(s.last(Space::Sessions).unwrap().is_none());
    // Overwrite, remove.
    s.put(Space::Audit, b"a", b"new").unwrap();
    assert_eq!(s.get(Space::Audit, b"a").unwrap(), Some(b"new".to_vec()));
    assert_eq!(s.remove(Space::Audit, b"a").unwrap(), Some(b"new".to_vec()));
    assert_eq!(s.remove(Space::Audit, b"a").unwrap(), None);
    // Compare and swap, every case.
    let k = b"version";
    assert!(s.compare_and_swap(Space::Settings, k, None, None).unwrap());
    assert!(
        s.compare_and_swap(Space::Settings, k, None, Some(b"1"))
            .unwrap()
    );
    assert!(
        !s.compare_and_swap(Space::Settings, k, None, Some(b"x"))
            .unwrap()
    );
    assert!(!s.compare_and_swap(Space::Settings, k, None, None).unwrap());
    assert!(
        !s.compare_and_swap(Space::Settings, k, Some(b"0"), Some(b"2"))
            .unwrap()
    );
    assert!(
        s.compare_and_swap(Space::Settings, k, Some(b"1"), Some(b"2"))
            .unwrap()
    );
    assert!(
        !s.compare_and_swap(Space::Settings, k, Some(b"1"), None)
            .unwrap()
    );
    assert!(
        s.compare_and_swap(Space::Settings, k, Some(b"2"), None)
            .unwrap()
    );
    assert_eq!(s.get(Space::Settings, k).unwrap(), None);
    // A change moves the space's receiver.
    let mut rx = s.subscribe(Space::Invitations);
    rx.mark_unchanged();
    s.put(Space::Invitations, b"bob@example.net", b"1").unwrap();
    assert!(rx.has_changed().unwrap());
    s.flush().unwrap();
}

#[test]
fn sled_keeps_the_contract() {
    let dir = temp_dir("store-sled");
    let db = sealgate::db::Db::open(&dir.join("db")).unwrap();
    contract(&SledStore::new(&db));
    let _ = std::fs::remove_dir_all(dir);
}

mod postgres {
    use super::*;
    use sealgate::cluster::ClusterConfig;
    use sealgate::cluster::pg::PgStore;
    use std::path::{Path, PathBuf};

    /// A PostgreSQL 15 server of this test, stopped and removed on drop.
    struct Server {
        root: PathBuf,
        info: serde_json::Value,
    }

    impl Server {
        fn start() -> Server {
            let root = temp_dir("pg");
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/lib/postgres.py");
            let out = std::process::Command::new("python3")
                .arg(&script)
                .arg("start")
                .arg(&root)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "postgres.py start: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let info = serde_json::from_slice(&out.stdout).unwrap();
            Server { root, info }
        }

        fn config(&self) -> ClusterConfig {
            let text = format!(
                "database_url = {:?}\npassword_file = {:?}\ndatabase_ca = {:?}\nlisten = \"127.0.0.1:1\"\n\
                 query_timeout_ms = 2000\npool_size = 2\n",
                self.info["url"].as_str().unwrap(),
                self.info["password_file"].as_str().unwrap(),
                self.info["ca"].as_str().unwrap(),
            );
            let config: ClusterConfig = toml::from_str(&text).unwrap();
            config.check().unwrap();
            config
        }

        fn pg_ctl(&self, action: &str) {
            let data = self.root.join("data");
            let log = self.root.join("sock/postgres.log");
            let status = std::process::Command::new("runuser")
                .args([
                    "-u",
                    "postgres",
                    "--",
                    "/usr/lib/postgresql/15/bin/pg_ctl",
                    "-D",
                ])
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .args(["-m", "fast", "-w", action])
                .output()
                .unwrap();
            assert!(status.status.success(), "pg_ctl {action}: {status:?}");
        }

        fn open(&self, node: &str, cache: Option<sealgate::db::Tree>) -> PgStore {
            let store =
                PgStore::open(&self.config(), node, cache, Duration::from_secs(20)).unwrap();
            assert!(store.connected(), "{:?}", store.health());
            store
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/lib/postgres.py");
            let _ = std::process::Command::new("python3")
                .arg(script)
                .arg("stop")
                .arg(&self.root)
                .output();
        }
    }

    fn wait_changed(rx: &mut tokio::sync::watch::Receiver<u64>, within: Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if rx.has_changed().unwrap_or(false) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// One server for every case: starting one takes seconds.
    #[test]
    #[ignore = "needs root and PostgreSQL 15: scripts/test-cluster runs it"]
    fn postgres_keeps_the_contract_and_fails_safe() {
        let server = Server::start();

        // Two nodes migrate the fresh database at the same moment.
        let config = server.config();
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| PgStore::open(&config, "a", None, Duration::from_secs(20)).unwrap());
            let b = s.spawn(|| PgStore::open(&config, "b", None, Duration::from_secs(20)).unwrap());
            (a.join().unwrap(), b.join().unwrap())
        });
        assert!(a.connected() && b.connected());
        contract(&a);

        // A change on one node reaches the other through LISTEN/NOTIFY.
        let mut on_b = b.subscribe(Space::Settings);
        on_b.mark_unchanged();
        a.put(Space::Settings, b"\0\0\0\0\0\0\0\x07", b"v7")
            .unwrap();
        assert!(wait_changed(&mut on_b, Duration::from_secs(30)));
        assert_eq!(
            b.get(Space::Settings, b"\0\0\0\0\0\0\0\x07").unwrap(),
            Some(b"v7".to_vec())
        );

        // Calls from inside a runtime (async code that forgot
        // spawn_blocking, a current-thread runtime) still answer.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let got = rt.block_on(async { a.get(Space::Settings, b"\0\0\0\0\0\0\0\x07") });
        assert_eq!(got.unwrap(), Some(b"v7".to_vec()));

        // A node with a read cache on its own disk.
        let dir = temp_dir("pg-cache");
        let db = sealgate::db::Db::open(&dir.join("db")).unwrap();
        let c = server.open("c", Some(db.tree(sealgate::cluster::READ_CACHE_TREE)));
        a.put(Space::DirectoryIndex, b"bob@example.net\0ff00", b"")
            .unwrap();
        a.put(Space::Directory, b"ff00", b"bob's certificate")
            .unwrap();
        let index = c
            .scan_prefix(Space::DirectoryIndex, b"bob@example.net\0", 16)
            .unwrap();
        assert_eq!(index.len(), 1);
        assert_eq!(
            c.get(Space::Directory, b"ff00").unwrap(),
            Some(b"bob's certificate".to_vec())
        );
        a.put(Space::Audit, b"seen", b"1").unwrap();
        assert!(c.get(Space::Audit, b"seen").unwrap().is_some());
        let mut settings_on_c = c.subscribe(Space::Settings);

        // The database goes away.
        server.pg_ctl("stop");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while c.connected() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!c.connected(), "the store noticed the outage");
        // Directory lookups made before answer from the cache, at once.
        let started = std::time::Instant::now();
        assert_eq!(
            c.scan_prefix(Space::DirectoryIndex, b"bob@example.net\0", 16)
                .unwrap(),
            index
        );
        assert_eq!(
            c.get(Space::Directory, b"ff00").unwrap(),
            Some(b"bob's certificate".to_vec())
        );
        // One never made before has no answer: it is an error, never "no key".
        let unknown = c.scan_prefix(Space::DirectoryIndex, b"carol@example.net\0", 16);
        match unknown {
            Err(StoreError::Unavailable(why)) => {
                assert!(why.contains("cluster database"), "{why}")
            }
            other => panic!("expected unavailable, got {other:?}"),
        }
        // Audit (not cached) and every write: refused with the reason.
        assert!(matches!(
            c.get(Space::Audit, b"seen"),
            Err(StoreError::Unavailable(_))
        ));
        let refused = c.put(Space::Settings, b"x", b"y").unwrap_err();
        assert!(
            refused.to_string().contains("cannot be reached"),
            "{refused}"
        );
        // Not a timing threshold: the five calls above take microseconds
        // when they fail fast and 2 s each (query_timeout_ms) when they
        // wait; shorter than one timeout means none waited.
        assert!(
            started.elapsed() < Duration::from_millis(2000),
            "an outage answers at once, not after timeouts: {:?}",
            started.elapsed()
        );
        assert!(c.health().cache_answers >= 2);
        drop(c);

        // A node restarted during the outage still has its cached answers.
        let c2 = PgStore::open(
            &server.config(),
            "c",
            Some(db.tree(sealgate::cluster::READ_CACHE_TREE)),
            Duration::from_millis(300),
        )
        .unwrap();
        assert!(!c2.connected());
        assert_eq!(
            c2.get(Space::Directory, b"ff00").unwrap(),
            Some(b"bob's certificate".to_vec())
        );

        // It returns: writes work again and subscribers are told to read
        // again (notifications during the outage were lost).
        settings_on_c = {
            let mut rx = c2.subscribe(Space::Settings);
            rx.mark_unchanged();
            drop(settings_on_c);
            rx
        };
        server.pg_ctl("start");
        assert!(c2.wait_connected(Duration::from_secs(15)));
        assert!(wait_changed(&mut settings_on_c, Duration::from_secs(30)));
        c2.put(Space::Settings, b"x", b"y").unwrap();
        assert!(a.wait_connected(Duration::from_secs(15)));
        assert_eq!(a.get(Space::Settings, b"x").unwrap(), Some(b"y".to_vec()));
        let _ = std::fs::remove_dir_all(dir);
    }
}
