//! The dashboard's figures: traffic per minute and recent errors.

use serde::{Deserialize, Serialize};

use super::operation;
use super::tracking::Event;
use crate::{Area, Permission};

/// Messages in and out per bucket over a window ending now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    pub start_ms: u64,
    pub bucket_ms: u64,
    /// Messages received, per bucket, oldest first.
    pub incoming: Vec<u64>,
    /// Deliveries (per recipient), per bucket, oldest first.
    pub outgoing: Vec<u64>,
    /// The latest failures (bounced, deferred, expired), newest first.
    pub last_errors: Vec<Event>,
}

/// `dashboard.traffic`: the last `hours` (default 24) per minute.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DashboardTraffic {
    pub hours: Option<u32>,
}
operation!(
    DashboardTraffic,
    "dashboard.traffic",
    Permission::Read(Area::Status),
    Traffic
);
