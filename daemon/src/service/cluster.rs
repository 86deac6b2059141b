//! The cluster: every node's state, and tracking searched on every node.

use std::sync::Arc;

use sealgate_api::ops::cluster::{ClusterReport, ClusterStatus, ClusterTrack, ClusterTrackResult};
use sealgate_api::{Actor, ServiceError};

use super::Ctx;

pub async fn status(
    ctx: Arc<Ctx>,
    _: Actor,
    _: ClusterStatus,
) -> Result<ClusterReport, ServiceError> {
    Ok(ctx.cluster.status().await)
}

pub async fn track(
    ctx: Arc<Ctx>,
    _: Actor,
    op: ClusterTrack,
) -> Result<ClusterTrackResult, ServiceError> {
    Ok(ctx.cluster.track(&op.query).await)
}
