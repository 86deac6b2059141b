//! Trying a next hop before relying on it: the wizard's and the settings
//! page's "test" button.

use serde::{Deserialize, Serialize};

use super::operation;
use crate::{Area, Permission};

/// `delivery.test`: connects to `host:port`, reads the greeting, says
/// EHLO, STARTTLS (when offered; required with `require_tls`) and EHLO
/// again, then QUIT; no mail is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryTest {
    pub host: String,
    pub port: u16,
    #[serde(default)]
    pub require_tls: bool,
}
operation!(
    DeliveryTest,
    "delivery.test",
    Permission::Write(Area::Settings),
    DeliveryTestReport
);

/// One step of the test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestStep {
    /// `connect`, `greeting`, `EHLO`, `STARTTLS`, `TLS`, `EHLO (TLS)`, `QUIT`.
    pub what: String,
    pub ok: bool,
    /// What the server said or what went wrong.
    pub detail: String,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryTestReport {
    /// The next hop would take mail as configured.
    pub ok: bool,
    /// TLS was negotiated (protocol and cipher in the step's detail).
    pub tls: bool,
    pub steps: Vec<TestStep>,
}
