//! The audit log, read.

use std::sync::Arc;

use sealgate_api::ops::audit::{AuditRecord, AuditSearch};
use sealgate_api::{Actor, ServiceError};

use super::{Ctx, blocking};

pub async fn search(
    ctx: Arc<Ctx>,
    _: Actor,
    op: AuditSearch,
) -> Result<Vec<AuditRecord>, ServiceError> {
    blocking(move || Ok(ctx.audit.search(&op)?)).await
}
