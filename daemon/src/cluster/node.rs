//! This node in its cluster: its heartbeat in the shared store, what it
//! answers its peers, and the cluster-wide views built from every node's
//! answer (`cluster.status`, `cluster.track`).
//!
//! Membership is the `nodes` space: each node writes its [`Member`] record
//! (its state and when) every `heartbeat_secs`. A view asks every member
//! over the cluster API at once, each within the peer timeout, and reports
//! which answered; a node that does not answer is shown with its last
//! heartbeat. The node that builds a view answers for itself directly.
//!
//! Trusts: the shared store for who the members are; peers' answers are
//! taken as their own account of themselves.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sealgate_api::ops::cluster::{
    ClusterReport, ClusterTrackResult, DatabaseHealth, NodeAnswer, NodeState, NodeView,
};
use sealgate_api::ops::status::QueueCounts;
use sealgate_api::ops::tracking::{Event, TrackQuery};
use serde::{Deserialize, Serialize};

use super::peer::{LocalNode, PeerClient, elapsed_ms};
use crate::store::{SharedStore, Space};

/// Most members a cluster view reads.
const MAX_MEMBERS: usize = 1000;

/// A node's record in the `nodes` space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    #[serde(flatten)]
    pub state: NodeState,
    /// A random id made when the node joined: two machines configured
    /// with the same node name are told apart.
    pub id: String,
    pub joined_ms: u64,
}

/// The members of the cluster, by name.
pub fn members(store: &dyn SharedStore) -> Result<Vec<Member>, crate::store::StoreError> {
    Ok(store
        .scan_prefix(Space::Nodes, b"", MAX_MEMBERS)?
        .into_iter()
        .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
        .collect())
}

/// One member's record.
pub fn member(
    store: &dyn SharedStore,
    name: &str,
) -> Result<Option<Member>, crate::store::StoreError> {
    Ok(store
        .get(Space::Nodes, name.as_bytes())?
        .and_then(|v| serde_json::from_slice(&v).ok()))
}

/// Writes a member record.
pub fn register(store: &dyn SharedStore, member: &Member) -> Result<(), crate::store::StoreError> {
    let value = serde_json::to_vec(member)
        .map_err(|e| crate::store::StoreError::Unavailable(e.to_string()))?;
    store.put(Space::Nodes, member.state.name.as_bytes(), &value)
}

/// This node as the daemon runs it.
pub struct DaemonNode {
    pub name: String,
    pub address: String,
    pub started_at_ms: u64,
    pub queue: crate::queue::Queue,
    /// The settings version in force.
    pub settings_version: Box<dyn Fn() -> u64 + Send + Sync>,
    /// The cluster database, when there is one.
    pub database: Option<Arc<super::pg::PgStore>>,
}

impl LocalNode for DaemonNode {
    fn state(&self) -> NodeState {
        NodeState {
            name: self.name.clone(),
            address: self.address.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            settings_version: (self.settings_version)(),
            started_at_ms: self.started_at_ms,
            queue: queue_counts(&self.queue),
            at_ms: crate::envelope::now_ms(),
            database: self.database.as_ref().map(|db| database_health(db)),
        }
    }

    fn track(&self, query: &TrackQuery) -> Result<Vec<Event>, String> {
        local_track(&self.queue, query)
    }
}

/// The cluster database's health as the API shows it.
pub fn database_health(db: &super::pg::PgStore) -> DatabaseHealth {
    let h = db.health();
    DatabaseHealth {
        database: h.database,
        connected: h.connected > 0,
        last_error: h.last_error,
        cache_answers: h.cache_answers,
    }
}

/// Recipients waiting on this node, by state.
pub fn queue_counts(queue: &crate::queue::Queue) -> QueueCounts {
    use crate::queue::state::RecipientStatus;
    let mut counts = QueueCounts::default();
    let Ok(entries) = queue.state().all() else {
        return counts;
    };
    counts.messages = entries.len();
    for recipient in entries.iter().flat_map(|e| e.recipients.iter()) {
        match recipient.status {
            RecipientStatus::Scheduled => counts.scheduled += 1,
            RecipientStatus::Deferred { .. } => counts.deferred += 1,
            RecipientStatus::Held { .. } => counts.held += 1,
            RecipientStatus::Quarantined { .. } => counts.quarantined += 1,
            _ => {}
        }
    }
    counts
}

/// This node's tracking events matching `query`.
pub fn local_track(queue: &crate::queue::Queue, query: &TrackQuery) -> Result<Vec<Event>, String> {
    queue
        .tracker()
        .search(query)
        .map_err(|e| format!("tracking store: {e}"))
}

/// Writes this node's heartbeat every `every`, until the daemon stops.
pub async fn heartbeat(
    store: Arc<dyn SharedStore>,
    local: Arc<dyn LocalNode>,
    id: String,
    every: Duration,
) {
    let joined_ms = {
        let store = store.clone();
        let name = local.state().name;
        tokio::task::spawn_blocking(move || member(&*store, &name).ok().flatten())
            .await
            .ok()
            .flatten()
            .map_or_else(crate::envelope::now_ms, |m| m.joined_ms)
    };
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let store = store.clone();
        let local = local.clone();
        let id = id.clone();
        let written = tokio::task::spawn_blocking(move || {
            let member = Member {
                state: local.state(),
                id,
                joined_ms,
            };
            register(&*store, &member)?;
            // Reading the members keeps the read cache's answer fresh, so
            // that the cluster views know them while the database is away.
            members(&*store).map(|_| ())
        })
        .await;
        if let Ok(Err(e)) = written {
            // The store logs the outage itself, once.
            tracing::debug!(error = %e, "heartbeat not written");
        }
    }
}

/// What builds the cluster views: this node, the shared store, and (in a
/// cluster) the client that asks the peers.
pub struct ClusterView {
    pub node: String,
    pub store: Arc<dyn SharedStore>,
    /// This node (answers for itself); `None` in a process that only
    /// looks (the CLI), which asks every node over the network.
    pub local: Option<Arc<dyn LocalNode>>,
    /// `None` on a single appliance.
    pub peers: Option<PeerClient>,
    pub database: Option<Arc<super::pg::PgStore>>,
}

impl ClusterView {
    /// Every node, asked now (`cluster.status`).
    pub async fn status(&self) -> ClusterReport {
        let members = self.read_members().await;
        let mut views = Vec::new();
        let mut asks = tokio::task::JoinSet::new();
        for member in members {
            let this_node = member.state.name == self.node;
            if let (true, Some(local)) = (this_node, &self.local) {
                let local = local.clone();
                let started = Instant::now();
                let state = tokio::task::spawn_blocking(move || local.state())
                    .await
                    .unwrap_or(member.state.clone());
                views.push(NodeView {
                    name: member.state.name.clone(),
                    address: member.state.address.clone(),
                    answers: true,
                    latency_ms: Some(elapsed_ms(started)),
                    error: None,
                    last_heartbeat_ms: Some(member.state.at_ms),
                    state,
                    this_node: true,
                });
                continue;
            }
            let Some(client) = self.peers.clone() else {
                continue;
            };
            asks.spawn(async move {
                let started = Instant::now();
                let answer = client.node(&member.state.name, &member.state.address).await;
                let latency = elapsed_ms(started);
                let (answers, error, state) = match answer {
                    Ok(state) => (true, None, state),
                    Err(e) => (false, Some(e.to_string()), member.state.clone()),
                };
                NodeView {
                    name: member.state.name.clone(),
                    address: member.state.address.clone(),
                    answers,
                    latency_ms: answers.then_some(latency),
                    error,
                    last_heartbeat_ms: Some(member.state.at_ms),
                    state,
                    this_node,
                }
            });
        }
        while let Some(view) = asks.join_next().await {
            if let Ok(view) = view {
                views.push(view);
            }
        }
        if views.is_empty()
            && let Some(local) = &self.local
        {
            // A single appliance (or a member list the store cannot give now).
            let local = local.clone();
            if let Ok(state) = tokio::task::spawn_blocking(move || local.state()).await {
                views.push(NodeView {
                    name: state.name.clone(),
                    address: state.address.clone(),
                    answers: true,
                    latency_ms: Some(0),
                    error: None,
                    last_heartbeat_ms: None,
                    state,
                    this_node: true,
                });
            }
        }
        views.sort_by(|a, b| a.name.cmp(&b.name));
        ClusterReport {
            node: self.node.clone(),
            clustered: self.peers.is_some(),
            database: self.database.as_ref().map(|db| database_health(db)),
            nodes: views,
        }
    }

    /// A tracking search on every node, merged by time (`cluster.track`).
    pub async fn track(&self, query: &TrackQuery) -> ClusterTrackResult {
        let limit = query.limit.unwrap_or(1000).min(super::peer::MAX_EVENTS);
        let mut query = query.clone();
        // One more than asked: whether the page is full shows.
        query.limit = Some(limit.saturating_add(1));
        let members = self.read_members().await;
        let mut asks = tokio::task::JoinSet::new();
        let mut local_done = false;
        for member in members {
            let name = member.state.name.clone();
            if name == self.node
                && let Some(local) = &self.local
            {
                local_done = true;
                asks.spawn(ask_local(local.clone(), name, query.clone()));
                continue;
            }
            let Some(client) = self.peers.clone() else {
                continue;
            };
            let query = query.clone();
            asks.spawn(async move {
                let started = Instant::now();
                let answer = client.track(&name, &member.state.address, &query).await;
                (name, answer.map_err(|e| e.to_string()), elapsed_ms(started))
            });
        }
        if !local_done && let Some(local) = &self.local {
            asks.spawn(ask_local(local.clone(), self.node.clone(), query.clone()));
        }
        let mut events = Vec::new();
        let mut nodes = Vec::new();
        while let Some(done) = asks.join_next().await {
            let Ok((node, answer, elapsed_ms)) = done else {
                continue;
            };
            match answer {
                Ok(found) => {
                    nodes.push(NodeAnswer {
                        node,
                        answered: true,
                        events: found.len(),
                        elapsed_ms,
                        error: None,
                    });
                    events.extend(found);
                }
                Err(error) => nodes.push(NodeAnswer {
                    node,
                    answered: false,
                    events: 0,
                    elapsed_ms,
                    error: Some(error),
                }),
            }
        }
        events.sort_by(|a, b| {
            (a.time_ms, &a.node, &a.queue_id).cmp(&(b.time_ms, &b.node, &b.queue_id))
        });
        let truncated = events.len() > limit;
        events.truncate(limit);
        nodes.sort_by(|a, b| a.node.cmp(&b.node));
        ClusterTrackResult {
            events,
            nodes,
            truncated,
        }
    }

    async fn read_members(&self) -> Vec<Member> {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || members(&*store)).await {
            Ok(Ok(members)) => members,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cluster members not readable");
                Vec::new()
            }
            Err(_) => Vec::new(),
        }
    }
}

async fn ask_local(
    local: Arc<dyn LocalNode>,
    name: String,
    query: TrackQuery,
) -> (String, Result<Vec<Event>, String>, u64) {
    let started = Instant::now();
    let answer = tokio::task::spawn_blocking(move || local.track(&query))
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    (name, answer, elapsed_ms(started))
}
