//! Tracking search.

use std::sync::Arc;

use sealgate_api::ops::tracking::{Event, TrackSearch};
use sealgate_api::{Actor, ServiceError};

use super::{Ctx, blocking, storage};

pub async fn search(ctx: Arc<Ctx>, _: Actor, op: TrackSearch) -> Result<Vec<Event>, ServiceError> {
    blocking(move || ctx.queue.tracker().search(&op.query).map_err(storage)).await
}
