//! The dashboard's figures: traffic per minute and the latest failures.

use std::sync::Arc;

use sealgate_api::ops::dashboard::{DashboardTraffic, Traffic};
use sealgate_api::{Actor, ServiceError};

use super::{Ctx, blocking, storage};

pub async fn traffic(
    ctx: Arc<Ctx>,
    _: Actor,
    op: DashboardTraffic,
) -> Result<Traffic, ServiceError> {
    blocking(move || {
        ctx.queue
            .tracker()
            .traffic(op.hours.unwrap_or(24), crate::envelope::now_ms())
            .map_err(storage)
    })
    .await
}
