//! The cluster: its nodes as each one reports itself, and tracking
//! searched on every node at once.
//!
//! A single appliance answers these too: a cluster of one node, with no
//! database.

use serde::{Deserialize, Serialize};

use super::operation;
use super::status::QueueCounts;
use super::tracking::{Event, TrackQuery};
use crate::{Area, Permission};

/// The connections of a node to the cluster database.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseHealth {
    /// `host:port/dbname` (never a password).
    pub database: String,
    /// A connection is up.
    pub connected: bool,
    /// Why the last attempt or statement failed.
    pub last_error: Option<String>,
    /// Reads answered from the node's read cache while the database was away.
    pub cache_answers: u64,
}

/// What a node says about itself: in its heartbeat (written to the
/// shared store every few seconds) and when a peer asks it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    pub name: String,
    /// Where the other nodes reach its cluster API (`host:port`).
    pub address: String,
    /// The software version it runs.
    pub version: String,
    /// The settings version in force on it.
    pub settings_version: u64,
    pub started_at_ms: u64,
    pub queue: QueueCounts,
    /// When the node wrote this.
    pub at_ms: u64,
    /// `None` on a single appliance (no cluster database).
    #[serde(default)]
    pub database: Option<DatabaseHealth>,
}

/// One node as `cluster.status` sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    pub name: String,
    pub address: String,
    /// It answered the status request just now (mutual TLS, within the
    /// peer timeout).
    pub answers: bool,
    /// How long the answer took.
    pub latency_ms: Option<u64>,
    /// Why it did not answer.
    pub error: Option<String>,
    /// Its last heartbeat in the shared store.
    pub last_heartbeat_ms: Option<u64>,
    /// Its state: as it answered now, else as its last heartbeat said.
    pub state: NodeState,
    /// This is the node that answered the request.
    pub this_node: bool,
}

/// `cluster.status`: every node, its version, settings version, queue
/// and whether it answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {}
operation!(
    ClusterStatus,
    "cluster.status",
    Permission::Read(Area::Status),
    ClusterReport
);

/// The answer to [`ClusterStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterReport {
    /// The node that answered.
    pub node: String,
    /// Shared state in a cluster database (`false`: a single appliance).
    pub clustered: bool,
    /// This node's connections to the cluster database.
    pub database: Option<DatabaseHealth>,
    /// Every member, by name.
    pub nodes: Vec<NodeView>,
}

/// How one node answered a cluster-wide search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAnswer {
    pub node: String,
    pub answered: bool,
    /// Events it returned.
    pub events: usize,
    pub elapsed_ms: u64,
    /// Why it did not answer (refused, timed out, not reachable).
    pub error: Option<String>,
}

/// `cluster.track`: a tracking search on every node (concurrently, each
/// within the peer timeout), merged by time, oldest first, at most the
/// query's limit; says which nodes answered and which did not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterTrack {
    #[serde(default)]
    pub query: TrackQuery,
}
operation!(
    ClusterTrack,
    "cluster.track",
    Permission::Read(Area::Tracking),
    ClusterTrackResult
);

/// The answer to [`ClusterTrack`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterTrackResult {
    pub events: Vec<Event>,
    /// Every member asked, by name.
    pub nodes: Vec<NodeAnswer>,
    /// More events matched than the limit: the page is full.
    pub truncated: bool,
}
