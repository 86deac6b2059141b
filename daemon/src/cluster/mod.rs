//! A cluster: several Sealgate nodes running as one gateway.
//!
//! What every node must see the same (settings versions, audit log,
//! accounts and sessions, key directory, invitation claims, membership)
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
use crate::store::{SharedStore, SledStore};

pub mod config;
pub mod pg;
pub mod pgtls;

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

    /// The store as the trait the rest of the daemon uses.
    pub fn store(&self) -> Arc<dyn SharedStore> {
        match self {
            Shared::Single(s) => s.clone(),
            Shared::Cluster(s) => s.clone(),
        }
    }
}
