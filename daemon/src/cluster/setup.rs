//! Making a cluster: `sealgate cluster init` turns a single node into the
//! first node of a cluster, `sealgate cluster join` adds a node.
//!
//! `init` (on the first node, its daemon stopped, `[cluster]` set in its
//! bootstrap file):
//! 1. connects to the database and migrates its schema; refuses a
//!    database that already holds a cluster;
//! 2. creates the cluster CA on the token (`cluster-ca`) unless it is there;
//! 3. copies the node's shared state (settings versions, audit log, key
//!    directory, invitation claims, accounts, sessions) from its sled
//!    database into PostgreSQL, page by page (each page whole or not at
//!    all; a repeated run overwrites with the same data);
//! 4. issues the node's own certificate and registers it as a member;
//! 5. stores the CA certificate with the cluster: the mark that the
//!    cluster exists, written last, so a failed `init` can be run again.
//!
//! `join` (on every other node, before its first start with `[cluster]`):
//! checks that the cluster exists and that this node's token holds the
//! cluster's CA key (so it also holds the gateway keys the cluster uses),
//! that no other live node runs under the same name, then issues the
//! node's certificate and registers it. `join --renew` issues a new
//! certificate for a node that has one.
//!
//! Trusts: the bootstrap file, the token, the database.

use std::path::Path;
use std::time::Duration;

use sealgate_api::ops::cluster::NodeState;

use super::identity::{self, IdentityError};
use super::node::{self, Member};
use super::pg::PgStore;
use crate::config::Config;
use crate::store::{SharedStore, SledStore, Space, StoreError};

/// How long `init` and `join` wait for the database.
const CONNECT_WAIT: Duration = Duration::from_secs(20);
/// Pairs copied per statement.
const PAGE: usize = 500;

/// Why `init` or `join` stopped.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("no [cluster] table in the bootstrap file: add one (see docs/CLUSTER.md)")]
    NotConfigured,
    #[error("{0}")]
    Setup(#[from] super::pg::PgSetupError),
    #[error("the cluster database cannot be reached: {0}")]
    NoDatabase(String),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Identity(#[from] IdentityError),
    #[error(
        "this database already holds a cluster: run `sealgate cluster join` on this node instead"
    )]
    AlreadyInitialised,
    #[error(
        "the database holds no cluster yet: run `sealgate cluster init` on the first node, then join"
    )]
    NotInitialised,
    #[error(
        "this node's token does not hold the cluster's CA key: every node must use the cluster's \
         token (the same network HSM, or the shared SoftHSM token directory), or it could not \
         open mail encrypted for the gateway ({0})"
    )]
    OtherToken(String),
    #[error(
        "another node runs as {name:?} (its heartbeat is {age_secs} s old): give this node its own `node_name`"
    )]
    NameTaken { name: String, age_secs: u64 },
    #[error(
        "this node already joined the cluster; `sealgate cluster join --renew` issues a new certificate"
    )]
    AlreadyJoined,
    #[error(
        "the node's own database: {0} (`sealgate cluster init` reads it: stop the daemon first)"
    )]
    LocalDb(String),
    #[error("{0}")]
    Io(String),
}

impl SetupError {
    /// Trying again later, unchanged, can succeed.
    pub fn is_temporary(&self) -> bool {
        match self {
            SetupError::NoDatabase(_) | SetupError::Store(_) => true,
            SetupError::Identity(IdentityError::Token(e)) => e.is_temporary(),
            _ => false,
        }
    }
}

/// What `init` did.
#[derive(Debug, Default)]
pub struct InitReport {
    pub database: String,
    /// Pairs copied, per space.
    pub copied: Vec<(Space, usize)>,
    pub ca_created: bool,
    /// The node had no settings versions: the bootstrap file's settings
    /// became the cluster's version 1.
    pub settings_imported: bool,
}

fn open_database(config: &Config) -> Result<PgStore, SetupError> {
    let cluster = config.cluster.as_ref().ok_or(SetupError::NotConfigured)?;
    let pg = PgStore::open(cluster, &config.node_name, None, CONNECT_WAIT)?;
    if !pg.connected() {
        let health = pg.health();
        return Err(SetupError::NoDatabase(format!(
            "{}: {}",
            health.database,
            health.last_error.unwrap_or_else(|| "no answer".into())
        )));
    }
    Ok(pg)
}

/// `sealgate cluster init`.
pub fn init(config: &Config, cluster_name: &str) -> Result<InitReport, SetupError> {
    let cluster = config.cluster.as_ref().ok_or(SetupError::NotConfigured)?;
    identity::check_name(&config.node_name)?;
    let db = crate::daemon::open_db(config).map_err(|e| SetupError::LocalDb(e.to_string()))?;
    let pg = std::sync::Arc::new(open_database(config)?);
    if pg.get(Space::Cluster, b"ca")?.is_some() {
        return Err(SetupError::AlreadyInitialised);
    }
    let hsm = sealgate_hsm::Hsm::open(&config.hsm_settings()).map_err(IdentityError::from)?;
    let had_ca = hsm.certificate_chain(identity::CA_LABEL).is_ok();
    let ca = identity::ensure_ca(&hsm, cluster_name)?;
    let mut report = InitReport {
        database: pg.health().database,
        ca_created: !had_ca,
        ..InitReport::default()
    };
    let sled = SledStore::new(&db);
    for space in Space::ALL {
        if matches!(space, Space::Nodes | Space::Cluster) {
            continue;
        }
        report.copied.push((space, copy_space(&sled, &pg, space)?));
    }
    report.settings_imported = import_settings(config, pg.clone())?;
    let id = node_id(&config.data_dir, true)?;
    identity::issue_node(
        &hsm,
        &ca,
        &config.node_name,
        &hosts(&cluster.advertised()),
        &config.data_dir,
    )?;
    node::register(&*pg, &new_member(config, &*pg, id))?;
    pg.put(Space::Cluster, b"name", cluster_name.as_bytes())?;
    pg.put(Space::Cluster, b"ca", identity::pem_of(&[ca]).as_bytes())?;
    let _ = db.flush();
    Ok(report)
}

/// A node that never ran has no settings versions to copy: its bootstrap
/// file's settings become the cluster's version 1 now, as the daemon's
/// first start would do, so that nodes starting together do not race to
/// import their own files.
fn import_settings(config: &Config, pg: std::sync::Arc<PgStore>) -> Result<bool, SetupError> {
    let settings = crate::settings::SettingsStore::new(pg.clone());
    if settings.current()?.is_some() {
        return Ok(false);
    }
    let actor = sealgate_api::Actor::bootstrap_file();
    let meta = settings
        .commit(
            None,
            config.settings(),
            &actor,
            Some("imported from the bootstrap file by `sealgate cluster init`".into()),
            None,
        )
        .map_err(|e| SetupError::Io(format!("settings: {e}")))?;
    if let Err(e) = crate::audit::Audit::new(pg).record(
        &actor,
        "settings.import",
        serde_json::json!({ "version": meta.version }),
        sealgate_api::ops::audit::AuditOutcome::Done,
        0,
        meta.version,
    ) {
        tracing::warn!(error = %e, "audit record of the settings import not written");
    }
    Ok(true)
}

/// Copies one space from the node's sled into the database, page by page.
fn copy_space(sled: &SledStore, pg: &PgStore, space: Space) -> Result<usize, SetupError> {
    let mut start = Vec::new();
    let mut copied = 0;
    loop {
        let page = sled.range(space, &start, None, false, PAGE)?;
        let Some((last, _)) = page.last() else {
            return Ok(copied);
        };
        start = last.clone();
        start.push(0);
        copied += page.len();
        pg.import(space, page)?;
    }
}

/// What `join` did.
#[derive(Debug)]
pub struct JoinReport {
    pub database: String,
    pub cluster: String,
    pub members: usize,
    /// Shared state in this node's own sled that the cluster does not use.
    pub local_state_left: Vec<(Space, usize)>,
    pub not_after_ms: Option<u64>,
}

/// `sealgate cluster join`.
pub fn join(config: &Config, renew: bool) -> Result<JoinReport, SetupError> {
    let cluster = config.cluster.as_ref().ok_or(SetupError::NotConfigured)?;
    identity::check_name(&config.node_name)?;
    if !renew && identity::Identity::load(&config.data_dir, &config.node_name).is_ok() {
        return Err(SetupError::AlreadyJoined);
    }
    let pg = open_database(config)?;
    let ca_pem = pg
        .get(Space::Cluster, b"ca")?
        .ok_or(SetupError::NotInitialised)?;
    let cluster_name = pg
        .get(Space::Cluster, b"name")?
        .map(|n| String::from_utf8_lossy(&n).into_owned())
        .unwrap_or_default();
    let hsm = sealgate_hsm::Hsm::open(&config.hsm_settings()).map_err(IdentityError::from)?;
    let on_token = hsm
        .certificate_chain(identity::CA_LABEL)
        .map_err(|e| SetupError::OtherToken(e.to_string()))?
        .into_iter()
        .next()
        .ok_or_else(|| SetupError::OtherToken("no CA certificate".into()))?;
    if identity::pem_of(std::slice::from_ref(&on_token)).as_bytes() != ca_pem.as_slice() {
        return Err(SetupError::OtherToken(
            "its CA certificate differs from the cluster's".into(),
        ));
    }
    let id = node_id(&config.data_dir, true)?;
    if let Some(other) = node::member(&pg, &config.node_name)?
        && other.id != id
    {
        let age_ms = crate::envelope::now_ms().saturating_sub(other.state.at_ms);
        if age_ms < cluster.heartbeat_secs.saturating_mul(3000) {
            return Err(SetupError::NameTaken {
                name: config.node_name.clone(),
                age_secs: age_ms / 1000,
            });
        }
    }
    let identity = identity::issue_node(
        &hsm,
        &on_token,
        &config.node_name,
        &hosts(&cluster.advertised()),
        &config.data_dir,
    )?;
    let mut member = new_member(config, &pg, id);
    if let Some(old) = node::member(&pg, &config.node_name)? {
        member.joined_ms = old.joined_ms;
    }
    node::register(&pg, &member)?;
    Ok(JoinReport {
        database: pg.health().database,
        cluster: cluster_name,
        members: node::members(&pg)?.len(),
        local_state_left: local_state(config),
        not_after_ms: identity.not_after_ms(),
    })
}

/// Shared state a joining node holds in its own sled (it stays there,
/// unused while `[cluster]` is set). Empty when the daemon runs (sled is
/// locked) or there is none.
fn local_state(config: &Config) -> Vec<(Space, usize)> {
    if !config.data_dir.join("db").exists() {
        return Vec::new();
    }
    let Ok(db) = crate::daemon::open_db(config) else {
        return Vec::new();
    };
    let sled = SledStore::new(&db);
    [Space::Settings, Space::Directory, Space::Accounts]
        .into_iter()
        .filter_map(|space| {
            let n = sled.range(space, b"", None, false, 100_000).ok()?.len();
            (n > 0).then_some((space, n))
        })
        .collect()
}

/// A member record for this node, as it joins.
fn new_member(config: &Config, store: &dyn SharedStore, id: String) -> Member {
    let now = crate::envelope::now_ms();
    Member {
        state: NodeState {
            name: config.node_name.clone(),
            address: config
                .cluster
                .as_ref()
                .map(super::ClusterConfig::advertised)
                .unwrap_or_default(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            settings_version: super::latest_settings_version(store),
            started_at_ms: 0,
            queue: Default::default(),
            at_ms: now,
            database: None,
        },
        id,
        joined_ms: now,
    }
}

/// The host part of `host:port`, for the node certificate.
fn hosts(advertised: &str) -> Vec<String> {
    crate::config::split_host_port(advertised, 0)
        .map(|(host, _)| vec![host])
        .unwrap_or_default()
}

/// This node's id (`<data_dir>/cluster/node-id`), made when `create`.
pub fn node_id(data_dir: &Path, create: bool) -> Result<String, SetupError> {
    let path = identity::dir(data_dir).join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        Ok(_) | Err(_) if create => {
            let id = crate::util::new_session_id();
            std::fs::create_dir_all(identity::dir(data_dir))
                .and_then(|()| std::fs::write(&path, format!("{id}\n")))
                .map_err(|e| SetupError::Io(format!("{}: {e}", path.display())))?;
            Ok(id)
        }
        Ok(_) => Err(SetupError::Io(format!("{}: empty", path.display()))),
        Err(e) => Err(SetupError::Io(format!("{}: {e}", path.display()))),
    }
}
