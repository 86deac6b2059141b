//! [`PgStore`]: the shared state of a cluster in PostgreSQL, behind the
//! same [`SharedStore`] trait as a single node's sled.
//!
//! # How a call runs
//!
//! The trait is synchronous: the pipeline reads the key directory from
//! blocking code, the CLI from a current-thread runtime, the service from
//! `spawn_blocking`. So the database is never driven by the caller's
//! runtime. The store owns a small tokio runtime on threads of its own
//! (`sealgate-pg`), where its connections live; a call hands a future to
//! that runtime and waits for the answer on a channel, at most
//! `[cluster] query_timeout_ms`. Whatever runtime the caller is on (or
//! none), nothing can deadlock on it.
//!
//! Each of `pool_size` connections is kept by a task that connects,
//! prepares the statements and then drives the connection; when it ends
//! (the server went away, a statement timed out and the connection was
//! dropped) the task connects again, backing off to 5 s. A call takes a
//! live connection round-robin and fails at once, without waiting, when
//! there is none: an outage costs the callers nothing but the answer.
//!
//! # Changes and catch-up
//!
//! Connection 0 also listens (`LISTEN sealgate_changes`); a trigger on the
//! table notifies the space of every change at commit (migrations/). A
//! notification moves the [`SharedStore::subscribe`] receiver of its space,
//! so a settings change on one node is applied on every node within the
//! notification's round trip. When the listening connection comes back
//! after an outage every space is reported changed, because notifications
//! sent meanwhile were lost: subscribers read again and catch up.
//!
//! # Failures
//!
//! An outage makes every call return [`StoreError::Unavailable`] with the
//! database named, which the service turns into a refused change with a
//! clear reason, except reads of the spaces mail needs (settings, key
//! directory, cluster membership and CA): their last answers are kept in
//! a read cache (in memory, bounded, and copied to the node's own sled so
//! that a node restarted during an outage has them too) and answer while
//! the database cannot. A lookup never made before has no cached answer
//! and fails: the pipeline then defers the recipient, never sends in
//! clear. This cache answers only when the database does not.
//!
//! # Fresh answers
//!
//! While the listening connection is up, a read of those spaces is also
//! kept in memory as *fresh* with its space's generation: the count of
//! changes this node has heard of for the space (its own writes, and
//! every notification). A later read of the same query answers from
//! memory while the generation is unchanged and the answer is younger
//! than [`FRESH_FOR`]; any change to the space anywhere in the cluster
//! moves the generation at the notification, so a certificate imported
//! on another node is seen as soon as its notification arrives, as the
//! subscribers see it. When the listening connection is down no answer
//! is fresh (notifications could be missed) and every read goes to the
//! database; when it comes back every generation moves. The generation is
//! taken before the query, so an answer that raced a change is never
//! kept as fresh. This takes the database's round trip off most
//! directory lookups on the mail path.
//!
//! # Schema
//!
//! Versioned migrations (refinery, `migrations/V<n>__<name>.sql`, table
//! `sealgate_schema_history`) run on the first connection, under an
//! advisory lock so that nodes starting together migrate once. A node
//! whose binary is older than the schema runs without migrating (rolling
//! upgrades: migrations only add).
//!
//! Trusts: the database server (authenticated by TLS, see `pgtls`).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, watch};
use tokio_postgres::{AsyncMessage, Client, NoTls, Statement};

use super::config::{ClusterConfig, DatabaseTls};
use super::pgtls::MakeRustls;
use crate::store::{Pair, Pairs, SharedStore, Space, StoreError};

// V1: the shared table and its notifications; V2: the portal's keyspaces
// notify nobody.
mod embedded {
    refinery::embed_migrations!("src/cluster/migrations");
}

/// The table of migrations already applied.
const HISTORY_TABLE: &str = "sealgate_schema_history";
/// The advisory lock nodes hold while they migrate.
const MIGRATION_LOCK: i64 = 0x5ea1_6a7e;
/// The channel the table's trigger notifies.
const CHANNEL: &str = "sealgate_changes";
/// Longest wait between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The longest a fresh answer is used without asking the database (a
/// bound in case a notification is lost without the connection ending).
const FRESH_FOR: Duration = Duration::from_secs(5);

/// At most this many fresh answers are kept (then all are dropped).
const FRESH_MAX: usize = 20_000;

/// Why the cluster store could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PgSetupError {
    /// The `[cluster]` table or a file it names is wrong: fix and restart.
    #[error("{0}")]
    Config(String),
    /// The store's runtime could not start.
    #[error("cannot start the database connections: {0}")]
    Runtime(String),
}

/// Where the connections to the database stand, for status pages.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PgHealth {
    /// The database as the configuration names it (no password).
    pub database: String,
    /// Connections that are up, of `pool`.
    pub connected: usize,
    pub pool: usize,
    /// Why the last connection attempt or statement failed.
    pub last_error: Option<String>,
    /// Reads answered from the read cache because the database did not.
    pub cache_answers: u64,
    /// Answers in the read cache.
    pub cached: usize,
}

/// The shared store of a cluster.
pub struct PgStore {
    shared: Arc<Shared>,
    runtime: RuntimeThread,
}

struct Shared {
    /// The database, for messages: `host:port/dbname`.
    name: String,
    pg: tokio_postgres::Config,
    tls: Option<MakeRustls>,
    query_timeout: Duration,
    slots: Vec<Slot>,
    next: AtomicUsize,
    up: AtomicUsize,
    /// Set once the schema is known to be current.
    migrated: tokio::sync::Mutex<bool>,
    changes: Mutex<HashMap<Space, watch::Sender<u64>>>,
    last_error: Mutex<Option<String>>,
    cache: ReadCache,
    cache_answers: AtomicU64,
    /// Whether connection 0 listens for changes now.
    listening: std::sync::atomic::AtomicBool,
    /// Per space, the changes this node has heard of ([`Shared::changed`]).
    generations: Mutex<HashMap<Space, u64>>,
    /// Fresh answers by query.
    fresh: Mutex<HashMap<Vec<u8>, Fresh>>,
}

/// A fresh answer: its space's generation when asked, when, the answer.
type Fresh = (u64, std::time::Instant, Vec<u8>);

struct Slot {
    conn: Mutex<Option<Arc<Conn>>>,
    /// Ends the connection (after a statement timed out on it).
    kill: Notify,
}

/// One connection and its prepared statements.
struct Conn {
    client: Client,
    get: Statement,
    put: Statement,
    remove: Statement,
    exists: Statement,
    insert_new: Statement,
    update_if: Statement,
    delete_if: Statement,
    /// Forward/reverse, with/without an end: `[fwd_end, fwd, rev_end, rev]`.
    range: [Statement; 4],
}

impl PgStore {
    /// Starts the connections to the database of `config` and waits up to
    /// `wait` for the first one (a database that is down does not stop
    /// the node: the connections keep trying). `cache` keeps the read
    /// cache across restarts (the node's own sled tree).
    pub fn open(
        config: &ClusterConfig,
        node: &str,
        cache: Option<crate::db::Tree>,
        wait: Duration,
    ) -> Result<PgStore, PgSetupError> {
        let mut pg: tokio_postgres::Config = config
            .database_url
            .parse()
            .map_err(|e| PgSetupError::Config(format!("cluster.database_url: {e}")))?;
        if let Some(path) = &config.password_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                PgSetupError::Config(format!("cluster.password_file {}: {e}", path.display()))
            })?;
            let password = text.lines().next().unwrap_or("").to_owned();
            if password.is_empty() {
                return Err(PgSetupError::Config(format!(
                    "cluster.password_file {}: empty",
                    path.display()
                )));
            }
            pg.password(password);
        }
        pg.application_name(format!("sealgate {node}"));
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(config.query_timeout().max(Duration::from_secs(1)));
        }
        // A server that vanishes without closing the connection (a cut
        // cable, a failover) is noticed by the kernel, not only by a
        // statement that waits.
        pg.keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(2))
            .keepalives_retries(3)
            .tcp_user_timeout(Duration::from_secs(10));
        let tls = match config.database_tls {
            DatabaseTls::VerifyFull => {
                let ca = config.database_ca.as_deref().ok_or_else(|| {
                    PgSetupError::Config("cluster.database_ca: needed for TLS".into())
                })?;
                let client = config
                    .client_certificate
                    .as_deref()
                    .zip(config.client_key.as_deref());
                pg.ssl_mode(tokio_postgres::config::SslMode::Require);
                Some(MakeRustls::new(ca, client).map_err(PgSetupError::Config)?)
            }
            DatabaseTls::Disable => {
                pg.ssl_mode(tokio_postgres::config::SslMode::Disable);
                None
            }
        };
        let shared = Arc::new(Shared {
            name: describe(&pg),
            pg,
            tls,
            query_timeout: config.query_timeout(),
            slots: (0..config.pool_size)
                .map(|_| Slot {
                    conn: Mutex::new(None),
                    kill: Notify::new(),
                })
                .collect(),
            next: AtomicUsize::new(0),
            up: AtomicUsize::new(0),
            migrated: tokio::sync::Mutex::new(false),
            changes: Mutex::new(HashMap::new()),
            last_error: Mutex::new(None),
            cache: ReadCache::new(config.read_cache_mib.saturating_mul(1024 * 1024), cache),
            cache_answers: AtomicU64::new(0),
            listening: std::sync::atomic::AtomicBool::new(false),
            generations: Mutex::new(HashMap::new()),
            fresh: Mutex::new(HashMap::new()),
        });
        let runtime = RuntimeThread::start().map_err(PgSetupError::Runtime)?;
        for index in 0..shared.slots.len() {
            runtime.handle.spawn(keep_connected(shared.clone(), index));
        }
        let store = PgStore { shared, runtime };
        store.wait_connected(wait);
        Ok(store)
    }

    /// Waits up to `wait` until a connection is up; whether one is.
    pub fn wait_connected(&self, wait: Duration) -> bool {
        let deadline = std::time::Instant::now() + wait;
        loop {
            if self.shared.up.load(Ordering::SeqCst) > 0 {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether a connection is up now.
    pub fn connected(&self) -> bool {
        self.shared.up.load(Ordering::SeqCst) > 0
    }

    pub fn health(&self) -> PgHealth {
        PgHealth {
            database: self.shared.name.clone(),
            connected: self.shared.up.load(Ordering::SeqCst),
            pool: self.shared.slots.len(),
            last_error: lock(&self.shared.last_error).clone(),
            cache_answers: self.shared.cache_answers.load(Ordering::Relaxed),
            cached: self.shared.cache.len(),
        }
    }

    /// Runs `f` on a live connection on the store's runtime and waits for
    /// it, at most the query timeout.
    fn run<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Conn>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, tokio_postgres::Error>> + Send + 'static,
    {
        let Some((index, conn)) = self.shared.pick() else {
            return Err(self.shared.unavailable(None));
        };
        let timeout = self.shared.query_timeout;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime.handle.spawn(async move {
            let answer = tokio::time::timeout(timeout, f(conn)).await;
            let _ = tx.send(answer);
        });
        match rx.recv_timeout(timeout + Duration::from_secs(1)) {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(e))) => Err(self.shared.failed(index, &e)),
            Ok(Err(_)) | Err(_) => {
                let why = format!("no answer within {} ms", timeout.as_millis());
                self.shared.drop_connection(index, &why);
                Err(self.shared.unavailable(Some(why)))
            }
        }
    }

    /// A read of a space whose answers the read cache keeps.
    fn read<T, F, Fut>(
        &self,
        space: Space,
        query: Vec<u8>,
        encode: fn(&T) -> Vec<u8>,
        decode: fn(&[u8]) -> Option<T>,
        f: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Conn>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, tokio_postgres::Error>> + Send + 'static,
    {
        if !cached(space) {
            return self.run(f);
        }
        let generation = self.shared.generation(space);
        if let Some(generation) = generation
            && let Some(value) = self.shared.fresh_answer(&query, generation, decode)
        {
            return Ok(value);
        }
        match self.run(f) {
            Ok(value) => {
                let encoded = encode(&value);
                if let Some(generation) = generation {
                    self.shared
                        .keep_fresh(query.clone(), generation, encoded.clone());
                }
                self.shared.cache.store(query, encoded);
                Ok(value)
            }
            Err(e) => match self.shared.cache.lookup(&query).and_then(|v| decode(&v)) {
                Some(value) => {
                    self.shared.cache_answers.fetch_add(1, Ordering::Relaxed);
                    Ok(value)
                }
                None => Err(e),
            },
        }
    }

    fn changed(&self, space: Space) {
        self.shared.changed(space);
    }

    /// Writes many pairs into `space` at once (overwriting), for
    /// `sealgate cluster init`: one statement per call, so a page is
    /// written whole or not at all, and a repeated import is harmless.
    pub fn import(&self, space: Space, pairs: Pairs) -> Result<(), StoreError> {
        if pairs.is_empty() {
            return Ok(());
        }
        let (keys, values): (Vec<Vec<u8>>, Vec<Vec<u8>>) = pairs.into_iter().unzip();
        self.run(move |c| async move {
            c.client
                .execute(
                    "INSERT INTO sealgate_kv (space, key, value) \
                     SELECT $1, k, v FROM unnest($2::bytea[], $3::bytea[]) AS t(k, v) \
                     ON CONFLICT (space, key) DO UPDATE SET value = EXCLUDED.value",
                    &[&space.name(), &keys, &values],
                )
                .await
        })?;
        self.changed(space);
        Ok(())
    }
}

impl SharedStore for PgStore {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let key = key.to_vec();
        let query = cache_key_get(space, &key);
        self.read(space, query, encode_get, decode_get, move |c| async move {
            let row = c.client.query_opt(&c.get, &[&space.name(), &key]).await?;
            row.map(|r| r.try_get::<_, Vec<u8>>(0)).transpose()
        })
    }

    fn put(&self, space: Space, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let (key, value) = (key.to_vec(), value.to_vec());
        self.run(move |c| async move {
            c.client
                .execute(&c.put, &[&space.name(), &key, &value])
                .await
        })?;
        self.changed(space);
        Ok(())
    }

    fn remove(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let key = key.to_vec();
        let old = self.run(move |c| async move {
            let row = c
                .client
                .query_opt(&c.remove, &[&space.name(), &key])
                .await?;
            row.map(|r| r.try_get::<_, Vec<u8>>(0)).transpose()
        })?;
        self.changed(space);
        Ok(old)
    }

    fn compare_and_swap(
        &self,
        space: Space,
        key: &[u8],
        old: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, StoreError> {
        let key = key.to_vec();
        let (old, new) = (old.map(<[u8]>::to_vec), new.map(<[u8]>::to_vec));
        let swapped = self.run(move |c| async move {
            let name = space.name();
            Ok(match (old, new) {
                (None, None) => c
                    .client
                    .query_opt(&c.exists, &[&name, &key])
                    .await?
                    .is_none(),
                (None, Some(new)) => {
                    c.client
                        .execute(&c.insert_new, &[&name, &key, &new])
                        .await?
                        == 1
                }
                (Some(old), Some(new)) => {
                    c.client
                        .execute(&c.update_if, &[&name, &key, &old, &new])
                        .await?
                        == 1
                }
                (Some(old), None) => {
                    c.client.execute(&c.delete_if, &[&name, &key, &old]).await? == 1
                }
            })
        })?;
        if swapped {
            self.changed(space);
        }
        Ok(swapped)
    }

    fn range(
        &self,
        space: Space,
        start: &[u8],
        end: Option<&[u8]>,
        reverse: bool,
        limit: usize,
    ) -> Result<Pairs, StoreError> {
        let start = start.to_vec();
        let end = end.map(<[u8]>::to_vec);
        let query = cache_key_range(space, &start, end.as_deref(), reverse, limit);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(
            space,
            query,
            encode_pairs,
            decode_pairs,
            move |c| async move {
                let name = space.name();
                let rows = match (&end, reverse) {
                    (Some(end), false) => {
                        c.client
                            .query(&c.range[0], &[&name, &start, end, &limit])
                            .await?
                    }
                    (None, false) => {
                        c.client
                            .query(&c.range[1], &[&name, &start, &limit])
                            .await?
                    }
                    (Some(end), true) => {
                        c.client
                            .query(&c.range[2], &[&name, &start, end, &limit])
                            .await?
                    }
                    (None, true) => {
                        c.client
                            .query(&c.range[3], &[&name, &start, &limit])
                            .await?
                    }
                };
                rows.into_iter()
                    .map(|r| Ok((r.try_get::<_, Vec<u8>>(0)?, r.try_get::<_, Vec<u8>>(1)?)))
                    .collect()
            },
        )
    }

    /// Every statement commits on its own and PostgreSQL makes a commit
    /// durable before it answers: nothing waits to be flushed.
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn subscribe(&self, space: Space) -> watch::Receiver<u64> {
        lock(&self.shared.changes)
            .entry(space)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }
}

/// The spaces whose reads mail and membership need while the database is
/// away: resolving an encrypt-required recipient reads the directory and
/// the key changes waiting for review for the address. Accounts and
/// sessions are not among them: a login must see a disabled account or an
/// ended session at once.
fn cached(space: Space) -> bool {
    matches!(
        space,
        Space::Settings
            | Space::Directory
            | Space::DirectoryIndex
            | Space::Reviews
            | Space::Nodes
            | Space::Cluster
    )
}

impl Shared {
    /// A live connection, round-robin.
    fn pick(&self) -> Option<(usize, Arc<Conn>)> {
        let n = self.slots.len();
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n).find_map(|i| {
            let index = (first + i) % n;
            let slot = self.slots.get(index)?;
            lock(&slot.conn).clone().map(|c| (index, c))
        })
    }

    fn unavailable(&self, why: Option<String>) -> StoreError {
        let why = why
            .or_else(|| lock(&self.last_error).clone())
            .unwrap_or_else(|| "not connected".into());
        StoreError::Unavailable(format!(
            "the cluster database {} cannot be reached ({why})",
            self.name
        ))
    }

    /// A statement failed: a broken connection is dropped and made again;
    /// either way the caller hears that the store is unavailable.
    fn failed(&self, index: usize, e: &tokio_postgres::Error) -> StoreError {
        let why = describe_error(e);
        if e.is_closed() || e.code().is_none() {
            self.drop_connection(index, &why);
        }
        tracing::debug!(database = %self.name, error = %why, "cluster database statement failed");
        *lock(&self.last_error) = Some(why.clone());
        self.unavailable(Some(why))
    }

    fn drop_connection(&self, index: usize, why: &str) {
        if let Some(slot) = self.slots.get(index) {
            *lock(&self.last_error) = Some(why.to_owned());
            slot.kill.notify_waiters();
        }
    }

    fn changed(&self, space: Space) {
        {
            let mut generations = lock(&self.generations);
            let n = generations.entry(space).or_insert(0);
            *n = n.wrapping_add(1);
        }
        if let Some(tx) = lock(&self.changes).get(&space) {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    fn changed_all(&self) {
        for space in Space::ALL {
            self.changed(space);
        }
    }

    /// The generation of `space`, while changes are heard (`None`: no
    /// answer is fresh now).
    fn generation(&self, space: Space) -> Option<u64> {
        self.listening
            .load(Ordering::SeqCst)
            .then(|| lock(&self.generations).get(&space).copied().unwrap_or(0))
    }

    fn fresh_answer<T>(
        &self,
        query: &[u8],
        generation: u64,
        decode: fn(&[u8]) -> Option<T>,
    ) -> Option<T> {
        let fresh = lock(&self.fresh);
        let (kept, at, answer) = fresh.get(query)?;
        if *kept != generation || at.elapsed() > FRESH_FOR {
            return None;
        }
        decode(answer)
    }

    fn keep_fresh(&self, query: Vec<u8>, generation: u64, answer: Vec<u8>) {
        let mut fresh = lock(&self.fresh);
        if fresh.len() >= FRESH_MAX {
            fresh.clear();
        }
        fresh.insert(query, (generation, std::time::Instant::now(), answer));
    }

    fn set_up(&self, index: usize, conn: Option<Arc<Conn>>) {
        let Some(slot) = self.slots.get(index) else {
            return;
        };
        let now_up = conn.is_some();
        if index == 0 {
            // Connection 0 listens: while it is down, changes elsewhere go
            // unheard and no answer is fresh.
            self.listening.store(now_up, Ordering::SeqCst);
        }
        let was_up = std::mem::replace(&mut *lock(&slot.conn), conn).is_some();
        let live = match (was_up, now_up) {
            (false, true) => self.up.fetch_add(1, Ordering::SeqCst) + 1,
            (true, false) => self.up.fetch_sub(1, Ordering::SeqCst).saturating_sub(1),
            _ => return,
        };
        if now_up && live == 1 {
            tracing::info!(database = %self.name, "the cluster database is reachable");
            *lock(&self.last_error) = None;
        } else if !now_up && live == 0 {
            tracing::error!(
                database = %self.name,
                error = ?lock(&self.last_error).as_deref(),
                "the cluster database cannot be reached: mail keeps flowing with the last \
                 settings and the cached key directory; recipients whose keys cannot be \
                 looked up wait in the queue; administrative changes are refused until it returns"
            );
        }
    }
}

/// Keeps connection `index` up for as long as the store lives.
async fn keep_connected(shared: Arc<Shared>, index: usize) {
    let mut backoff = Duration::from_millis(250);
    let mut reported = false;
    loop {
        match connect(&shared, index).await {
            Ok(driver) => {
                backoff = Duration::from_millis(250);
                reported = false;
                if index == 0 {
                    // Notifications sent while this connection was away are
                    // lost: every subscriber reads again.
                    shared.changed_all();
                }
                let why = driver.await.unwrap_or_else(|e| e.to_string());
                *lock(&shared.last_error) = Some(why);
                shared.set_up(index, None);
            }
            Err(why) => {
                if !reported {
                    tracing::warn!(database = %shared.name, error = %why, connection = index, "cannot connect to the cluster database; trying again");
                    reported = true;
                }
                *lock(&shared.last_error) = Some(why);
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Connects, listens (connection 0), migrates (once), prepares, and
/// publishes the connection; returns the task that drives it, which ends
/// with the reason the connection ended.
async fn connect(
    shared: &Arc<Shared>,
    index: usize,
) -> Result<tokio::task::JoinHandle<String>, String> {
    let (mut client, driver) = match &shared.tls {
        Some(tls) => {
            let (client, connection) = shared
                .pg
                .connect(tls.clone())
                .await
                .map_err(|e| describe_error(&e))?;
            (client, spawn_driver(connection, shared.clone(), index))
        }
        None => {
            let (client, connection) = shared
                .pg
                .connect(NoTls)
                .await
                .map_err(|e| describe_error(&e))?;
            (client, spawn_driver(connection, shared.clone(), index))
        }
    };
    let ready = async {
        {
            let mut migrated = shared.migrated.lock().await;
            if !*migrated {
                migrate(&mut client).await?;
                *migrated = true;
            }
        }
        if index == 0 {
            client
                .batch_execute(&format!("LISTEN {CHANNEL}"))
                .await
                .map_err(|e| describe_error(&e))?;
        }
        prepare(client).await
    };
    match tokio::time::timeout(shared.query_timeout * 4, ready).await {
        Ok(Ok(conn)) => {
            shared.set_up(index, Some(Arc::new(conn)));
            Ok(driver)
        }
        Ok(Err(why)) => {
            driver.abort();
            Err(why)
        }
        Err(_) => {
            driver.abort();
            Err("the database did not finish setting up the connection in time".into())
        }
    }
}

/// Drives a connection: delivers notifications, ends when the connection
/// does or when it is told to.
fn spawn_driver<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    shared: Arc<Shared>,
    index: usize,
) -> tokio::task::JoinHandle<String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let kill = async {
            match shared.slots.get(index) {
                Some(slot) => slot.kill.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(kill);
        loop {
            let message = std::future::poll_fn(|cx| connection.poll_message(cx));
            tokio::select! {
                message = message => match message {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        if let Some(space) = Space::ALL.into_iter().find(|s| s.name() == n.payload()) {
                            shared.changed(space);
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return describe_error(&e),
                    None => return "the database closed the connection".to_owned(),
                },
                () = &mut kill => return lock(&shared.last_error).clone().unwrap_or_else(|| "connection dropped".into()),
            }
        }
    })
}

/// Brings the schema up to date, once per cluster (an advisory lock keeps
/// nodes that start together from migrating twice).
async fn migrate(client: &mut Client) -> Result<(), String> {
    let pg = |e: tokio_postgres::Error| describe_error(&e);
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg)?;
    let result = migrate_locked(client).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg);
    result.and(unlocked.map(|_| ()))
}

async fn migrate_locked(client: &mut Client) -> Result<(), String> {
    let pg = |e: tokio_postgres::Error| describe_error(&e);
    let mut runner = embedded::migrations::runner();
    runner.set_migration_table_name(HISTORY_TABLE);
    let newest_known = runner
        .get_migrations()
        .iter()
        .map(|m| i64::from(m.version()))
        .max()
        .unwrap_or(0);
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&HISTORY_TABLE])
        .await
        .and_then(|r| r.try_get(0))
        .map_err(pg)?;
    if exists {
        let applied: Option<i64> = client
            .query_one(
                &format!("SELECT max(version)::int8 FROM {HISTORY_TABLE}"),
                &[],
            )
            .await
            .and_then(|r| r.try_get(0))
            .map_err(pg)?;
        if let Some(applied) = applied
            && applied > newest_known
        {
            tracing::warn!(
                schema = applied,
                known = newest_known,
                "the cluster database's schema is newer than this node's software (a rolling \
                 upgrade?): running without migrating; upgrade this node"
            );
            return Ok(());
        }
    }
    let report = runner
        .run_async(client)
        .await
        .map_err(|e| format!("schema migration failed: {e}"))?;
    for m in report.applied_migrations() {
        tracing::info!(
            version = m.version(),
            name = m.name(),
            "cluster database schema migrated"
        );
    }
    Ok(())
}

async fn prepare(client: Client) -> Result<Conn, String> {
    let pg = |e: tokio_postgres::Error| describe_error(&e);
    const COLS: &str = "FROM sealgate_kv WHERE space = $1";
    let p = |sql: String| {
        let client = &client;
        async move { client.prepare(&sql).await }
    };
    let get = p(format!("SELECT value {COLS} AND key = $2"))
        .await
        .map_err(pg)?;
    let put = p(
        "INSERT INTO sealgate_kv (space, key, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (space, key) DO UPDATE SET value = EXCLUDED.value"
            .to_owned(),
    )
    .await
    .map_err(pg)?;
    let remove =
        p("DELETE FROM sealgate_kv WHERE space = $1 AND key = $2 RETURNING value".to_owned())
            .await
            .map_err(pg)?;
    let exists = p(format!("SELECT 1 {COLS} AND key = $2"))
        .await
        .map_err(pg)?;
    let insert_new = p(
        "INSERT INTO sealgate_kv (space, key, value) VALUES ($1, $2, $3) \
                        ON CONFLICT (space, key) DO NOTHING"
            .to_owned(),
    )
    .await
    .map_err(pg)?;
    let update_if = p(
        "UPDATE sealgate_kv SET value = $4 WHERE space = $1 AND key = $2 AND value = $3".to_owned(),
    )
    .await
    .map_err(pg)?;
    let delete_if =
        p("DELETE FROM sealgate_kv WHERE space = $1 AND key = $2 AND value = $3".to_owned())
            .await
            .map_err(pg)?;
    let range = [
        p(format!(
            "SELECT key, value {COLS} AND key >= $2 AND key < $3 ORDER BY key LIMIT $4"
        ))
        .await
        .map_err(pg)?,
        p(format!(
            "SELECT key, value {COLS} AND key >= $2 ORDER BY key LIMIT $3"
        ))
        .await
        .map_err(pg)?,
        p(format!(
            "SELECT key, value {COLS} AND key >= $2 AND key < $3 ORDER BY key DESC LIMIT $4"
        ))
        .await
        .map_err(pg)?,
        p(format!(
            "SELECT key, value {COLS} AND key >= $2 ORDER BY key DESC LIMIT $3"
        ))
        .await
        .map_err(pg)?,
    ];
    Ok(Conn {
        client,
        get,
        put,
        remove,
        exists,
        insert_new,
        update_if,
        delete_if,
        range,
    })
}

/// `host:port/dbname` of a connection configuration (never the password).
fn describe(pg: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = pg
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let port = pg
                .get_ports()
                .get(i)
                .or_else(|| pg.get_ports().first())
                .copied()
                .unwrap_or(5432);
            match h {
                tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                tokio_postgres::config::Host::Unix(path) => format!("{}", path.display()),
            }
        })
        .collect();
    format!(
        "{}/{}",
        hosts.join(","),
        pg.get_dbname().or(pg.get_user()).unwrap_or("")
    )
}

/// The server's message (with its SQLSTATE) or the transport's error.
fn describe_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {} ({})", db.severity(), db.message(), db.code().code()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        }
    }
}

/// The store's own tokio runtime, on a thread that owns it (a runtime
/// must not be dropped inside another one). Dropping this ends it.
struct RuntimeThread {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl RuntimeThread {
    fn start() -> Result<RuntimeThread, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sealgate-pg")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("sealgate-pg-main".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
                runtime.shutdown_background();
            })
            .map_err(|e| e.to_string())?;
        Ok(RuntimeThread {
            handle,
            stop: Some(stop),
        })
    }
}

impl Drop for RuntimeThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The last answers to reads, by query, for when the database does not
/// answer. Bounded in bytes (oldest answers go first); copied to the
/// node's sled so that it survives a restart.
struct ReadCache {
    inner: Mutex<CacheInner>,
    budget: usize,
    persist: Option<crate::db::Tree>,
}

#[derive(Default)]
struct CacheInner {
    answers: HashMap<Vec<u8>, Vec<u8>>,
    /// Queries in the order they were first cached.
    order: VecDeque<Vec<u8>>,
    bytes: usize,
}

impl ReadCache {
    fn new(budget: u64, persist: Option<crate::db::Tree>) -> ReadCache {
        let budget = usize::try_from(budget).unwrap_or(usize::MAX);
        let mut inner = CacheInner::default();
        if let Some(tree) = &persist
            && let Ok(iter) = tree.iter()
        {
            for item in iter {
                let Ok((k, v)) = item else { break };
                inner.bytes += k.len() + v.len();
                inner.order.push_back(k.to_vec());
                inner.answers.insert(k.to_vec(), v.to_vec());
                if inner.bytes > budget {
                    break;
                }
            }
        }
        ReadCache {
            inner: Mutex::new(inner),
            budget,
            persist,
        }
    }

    fn len(&self) -> usize {
        lock(&self.inner).answers.len()
    }

    fn lookup(&self, query: &[u8]) -> Option<Vec<u8>> {
        lock(&self.inner).answers.get(query).cloned()
    }

    fn store(&self, query: Vec<u8>, answer: Vec<u8>) {
        let size = query.len() + answer.len();
        if size > self.budget / 8 {
            return;
        }
        let mut inner = lock(&self.inner);
        match inner.answers.get(&query) {
            Some(old) if *old == answer => return,
            Some(old) => {
                inner.bytes = inner.bytes.saturating_sub(query.len() + old.len());
            }
            None => inner.order.push_back(query.clone()),
        }
        inner.bytes += size;
        if let Some(tree) = &self.persist {
            // The copy on disk is a convenience: a failure costs only the
            // answers after a restart during an outage.
            let _ = tree.insert(&query, answer.clone());
        }
        inner.answers.insert(query, answer);
        while inner.bytes > self.budget {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            if let Some(old) = inner.answers.remove(&oldest) {
                inner.bytes = inner.bytes.saturating_sub(oldest.len() + old.len());
                if let Some(tree) = &self.persist {
                    let _ = tree.remove(&oldest);
                }
            }
        }
    }
}

fn cache_key_get(space: Space, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(space.name().len() + 2 + key.len());
    out.extend_from_slice(space.name().as_bytes());
    out.extend_from_slice(b"\0g");
    out.extend_from_slice(key);
    out
}

fn cache_key_range(
    space: Space,
    start: &[u8],
    end: Option<&[u8]>,
    reverse: bool,
    limit: usize,
) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(space.name().as_bytes());
    out.extend_from_slice(b"\0r");
    out.push(u8::from(reverse));
    out.extend_from_slice(&(limit as u64).to_be_bytes());
    put_bytes(&mut out, start);
    match end {
        Some(end) => {
            out.push(1);
            put_bytes(&mut out, end);
        }
        None => out.push(0),
    }
    out
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn take_bytes(input: &mut &[u8]) -> Option<Vec<u8>> {
    let (len, rest) = input.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
    let (bytes, rest) = rest.split_at_checked(len)?;
    *input = rest;
    Some(bytes.to_vec())
}

fn encode_get(value: &Option<Vec<u8>>) -> Vec<u8> {
    match value {
        None => vec![0],
        Some(v) => {
            let mut out = Vec::with_capacity(v.len() + 1);
            out.push(1);
            out.extend_from_slice(v);
            out
        }
    }
}

fn decode_get(data: &[u8]) -> Option<Option<Vec<u8>>> {
    match data.split_first()? {
        (0, _) => Some(None),
        (1, rest) => Some(Some(rest.to_vec())),
        _ => None,
    }
}

fn encode_pairs(pairs: &Pairs) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in pairs {
        put_bytes(&mut out, k);
        put_bytes(&mut out, v);
    }
    out
}

fn decode_pairs(mut data: &[u8]) -> Option<Pairs> {
    let mut pairs: Vec<Pair> = Vec::new();
    while !data.is_empty() {
        let k = take_bytes(&mut data)?;
        let v = take_bytes(&mut data)?;
        pairs.push((k, v));
    }
    Some(pairs)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cached_answers_round_trip() {
        let pairs: Pairs = vec![(b"a".to_vec(), b"1".to_vec()), (b"b\0".to_vec(), vec![])];
        assert_eq!(decode_pairs(&encode_pairs(&pairs)).unwrap(), pairs);
        assert_eq!(decode_pairs(&[]).unwrap(), Pairs::new());
        assert!(decode_pairs(&[0, 0, 0, 9, 1]).is_none());
        assert_eq!(decode_get(&encode_get(&None)).unwrap(), None);
        assert_eq!(
            decode_get(&encode_get(&Some(b"x".to_vec()))).unwrap(),
            Some(b"x".to_vec())
        );
        assert_ne!(
            cache_key_range(Space::Directory, b"a", None, false, 1),
            cache_key_range(Space::Directory, b"a", Some(b""), false, 1)
        );
        assert_ne!(
            cache_key_get(Space::Directory, b"x"),
            cache_key_get(Space::DirectoryIndex, b"x")
        );
    }

    #[test]
    fn the_read_cache_is_bounded_and_keeps_the_newest() {
        let cache = ReadCache::new(800, None);
        for i in 0..100u8 {
            cache.store(vec![i], vec![i; 50]);
        }
        assert!(lock(&cache.inner).bytes <= 800);
        assert!(cache.lookup(&[0]).is_none());
        assert_eq!(cache.lookup(&[99]).unwrap(), vec![99; 50]);
        // Too big for one answer: not kept.
        cache.store(vec![200], vec![0; 200]);
        assert!(cache.lookup(&[200]).is_none());
    }
}
