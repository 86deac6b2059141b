//! A cluster: several Sealgate nodes running as one gateway.
//!
//! What every node must see the same (settings versions, audit log,
//! accounts and sessions, key directory, invitation claims, membership,
//! the portal's accounts and sealed mailboxes)
//! lives in PostgreSQL behind the same [`SharedStore`] trait a single
//! appliance keeps in sled ([`pg::PgStore`]); what is a node's own stays on
//! its disk: the spool and its queue state (mail never depends on the
//! network to be durable), tracking events, its TLS identity. Nodes
//! authenticate each other with mutual TLS, certificates issued by a
//! cluster CA whose key is on the token.
//!
//! docs/CLUSTER.md tells how to deploy it and how it fails.
//!
//! Trusts: the database server (TLS, verified), and peers that present a
//! certificate of the cluster CA and are members.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::store::{SharedStore, SledStore, Space};

pub mod cli;
pub mod config;
pub mod identity;
pub mod node;
pub mod peer;
pub mod pg;
pub mod pgtls;
pub mod setup;

pub use config::ClusterConfig;

/// How long a starting node waits for the database before it goes on
/// without it (with its cached settings and directory answers).
pub const STARTUP_WAIT: Duration = Duration::from_secs(10);

/// The node-local sled tree that keeps the cluster store's read cache.
pub const READ_CACHE_TREE: &str = "cluster_read_cache";

/// The shared store of this node: PostgreSQL when `[cluster]` is set,
/// else the node's own sled database.
pub enum Shared {
    Single(Arc<SledStore>),
    Cluster(Arc<pg::PgStore>),
}

impl Shared {
    /// Opens the shared store the configuration names. A cluster node
    /// whose database is down still opens (see [`STARTUP_WAIT`]).
    pub fn open(config: &Config, db: &crate::db::Db) -> Result<Shared, pg::PgSetupError> {
        match &config.cluster {
            None => Ok(Shared::Single(Arc::new(SledStore::new(db)))),
            Some(cluster) => {
                let store = pg::PgStore::open(
                    cluster,
                    &config.node_name,
                    Some(db.tree(READ_CACHE_TREE)),
                    STARTUP_WAIT,
                )?;
                Ok(Shared::Cluster(Arc::new(store)))
            }
        }
    }

    /// The cluster database, on a cluster node.
    pub fn database(&self) -> Option<Arc<pg::PgStore>> {
        match self {
            Shared::Single(_) => None,
            Shared::Cluster(pg) => Some(pg.clone()),
        }
    }

    /// The store as the trait the rest of the daemon uses.
    pub fn store(&self) -> Arc<dyn SharedStore> {
        match self {
            Shared::Single(s) => s.clone(),
            Shared::Cluster(s) => s.clone(),
        }
    }
}

/// The newest settings version in the store (keys are versions, u64
/// big-endian), 0 when there is none.
pub fn latest_settings_version(store: &dyn SharedStore) -> u64 {
    store
        .last(Space::Settings)
        .ok()
        .flatten()
        .and_then(|(key, _)| <[u8; 8]>::try_from(key.as_slice()).ok())
        .map_or(0, u64::from_be_bytes)
}

/// The view the `cluster.*` operations use, without starting anything
/// (the CLI on a stopped daemon's data directory): this node answers for
/// itself, the peers are asked over the cluster API when this node has
/// joined a cluster.
pub fn view(
    shared: &Shared,
    queue: &crate::queue::Queue,
    live: Arc<crate::settings::Live>,
) -> Arc<node::ClusterView> {
    let config = live.bootstrap().clone();
    let config = &*config;
    let peers = config.cluster.as_ref().and_then(|cluster| {
        let identity = identity::Identity::load(&config.data_dir, &config.node_name).ok()?;
        let client = identity.client_config().ok()?;
        Some(peer::PeerClient::new(client, cluster.peer_timeout()))
    });
    Arc::new(node::ClusterView {
        node: config.node_name.clone(),
        store: shared.store(),
        local: Some(local_node(config, shared, queue, live)),
        peers,
        database: shared.database(),
    })
}

fn local_node(
    config: &Config,
    shared: &Shared,
    queue: &crate::queue::Queue,
    live: Arc<crate::settings::Live>,
) -> Arc<dyn peer::LocalNode> {
    Arc::new(node::DaemonNode {
        name: config.node_name.clone(),
        address: config
            .cluster
            .as_ref()
            .map(ClusterConfig::advertised)
            .unwrap_or_default(),
        started_at_ms: crate::envelope::now_ms(),
        queue: queue.clone(),
        settings_version: Box::new(move || live.get().version),
        database: shared.database(),
    })
}

/// Days before its expiry from which a node certificate is reported.
const RENEW_WARNING_DAYS: u64 = 30;

/// Starts what a node runs for its cluster: on a cluster node its
/// cluster API (mutual TLS) and its heartbeat; on a single appliance
/// nothing. Returns the view the `cluster.*` operations use. A cluster
/// node that has not joined does not start.
pub async fn start(
    config: &Config,
    shared: &Shared,
    queue: &crate::queue::Queue,
    live: Arc<crate::settings::Live>,
) -> std::io::Result<Arc<node::ClusterView>> {
    let local = local_node(config, shared, queue, live);
    let Some(cluster) = &config.cluster else {
        return Ok(Arc::new(node::ClusterView {
            node: config.node_name.clone(),
            store: shared.store(),
            local: Some(local),
            peers: None,
            database: None,
        }));
    };
    let identity = identity::Identity::load(&config.data_dir, &config.node_name)
        .map_err(std::io::Error::other)?;
    if let Some(not_after) = identity.not_after_ms() {
        let left_days = not_after.saturating_sub(crate::envelope::now_ms()) / 86_400_000;
        if left_days < RENEW_WARNING_DAYS {
            tracing::warn!(
                days = left_days,
                "this node's cluster certificate expires soon: run `sealgate cluster join --renew`"
            );
        }
    }
    let server = identity.server_config().map_err(std::io::Error::other)?;
    let client = identity.client_config().map_err(std::io::Error::other)?;
    let listener = tokio::net::TcpListener::bind(cluster.listen)
        .await
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot listen on {} (cluster.listen): {e}", cluster.listen),
            )
        })?;
    let id = setup::node_id(&config.data_dir, false).map_err(std::io::Error::other)?;
    tokio::spawn(peer::serve(listener, server, local.clone()));
    tokio::spawn(node::heartbeat(
        shared.store(),
        local.clone(),
        id,
        cluster.heartbeat(),
    ));
    tracing::info!(
        listen = %cluster.listen,
        advertise = %cluster.advertised(),
        "cluster node: shared state in the cluster database, peers over mutual TLS"
    );
    Ok(Arc::new(node::ClusterView {
        node: config.node_name.clone(),
        store: shared.store(),
        local: Some(local),
        peers: Some(peer::PeerClient::new(client, cluster.peer_timeout())),
        database: shared.database(),
    }))
}
