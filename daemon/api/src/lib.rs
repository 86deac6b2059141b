//! Sealgate's administration interface, as types.
//!
//! Every administrative operation of the gateway (queue, tracking, key
//! directory, token keys, settings, policy dry run, status, audit log,
//! accounts) is one [`Operation`]: a request struct with its output type,
//! its name on the wire and the [`Permission`] it needs. The daemon
//! implements [`Service`] once; the front ends are thin:
//!
//! - the CLI sends operations over the control socket (one JSON line:
//!   [`WireRequest`]) and prints the answer;
//! - the web UI (`webui/`) calls the service in process through [`run`];
//! - the serial console calls it for what touches gateway state.
//!
//! So no operation is implemented twice, and the role check and the audit
//! log live in one place (the daemon's `service` module), whatever the
//! front end. This crate holds no logic beyond the types, the role table
//! and (de)serialisation: it is what the front ends compile against.
//!
//! Trusts: nothing; it only describes.

use std::future::Future;
use std::pin::Pin;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub mod actor;
pub mod error;
pub mod ops;
pub mod portal;
pub mod settings;

pub use actor::{Actor, Area, Permission, Role, Via};
pub use error::{FieldError, ServiceError};

/// One administrative operation: its arguments (the struct itself), what
/// it returns, its name on the wire and the permission it needs.
pub trait Operation: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The operation's name on the wire and in the audit log (`queue.release`).
    const NAME: &'static str;
    /// What the actor's role must allow.
    const NEEDS: Permission;
    /// What a successful call returns.
    type Output: Serialize + DeserializeOwned + Send + 'static;

    /// The arguments as the audit log records them: never a secret (a
    /// password, a private key, a one-time code) and never a message's
    /// content. Default: the arguments as they are.
    fn audit_args(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// A boxed future, so that [`Service`] can be a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The administration service: one implementation (the daemon), called by
/// every front end. Operations travel by name with JSON arguments, so the
/// same entry point serves the control socket, the web UI and (later)
/// cluster peers; [`run`] gives callers in process a typed call.
pub trait Service: Send + Sync {
    /// Runs the operation `name` with `args` on behalf of `actor`: checks
    /// the actor's role, carries it out, writes the audit log, and answers
    /// with the operation's output as JSON.
    fn call<'a>(
        &'a self,
        actor: &'a Actor,
        name: &'a str,
        args: serde_json::Value,
    ) -> BoxFuture<'a, Result<serde_json::Value, ServiceError>>;
}

/// Runs `op` through `service` as `actor`, typed.
pub async fn run<O: Operation>(
    service: &dyn Service,
    actor: &Actor,
    op: &O,
) -> Result<O::Output, ServiceError> {
    let args = serde_json::to_value(op).map_err(|e| ServiceError::Failed {
        what: format!("{}: arguments not encodable: {e}", O::NAME),
    })?;
    let value = service.call(actor, O::NAME, args).await?;
    serde_json::from_value(value).map_err(|e| ServiceError::Failed {
        what: format!("{}: answer not decodable: {e}", O::NAME),
    })
}

/// One request on the control socket: an operation by name and its
/// arguments. Whoever can open the socket acts as the local administrator
/// (the socket is mode 0660 in the daemon's data directory).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireRequest {
    pub op: String,
    #[serde(default)]
    pub args: serde_json::Value,
}

/// The answer on the control socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireResponse {
    Ok(serde_json::Value),
    Err(ServiceError),
}

impl WireRequest {
    pub fn of<O: Operation>(op: &O) -> Result<WireRequest, ServiceError> {
        Ok(WireRequest {
            op: O::NAME.to_owned(),
            args: serde_json::to_value(op).map_err(|e| ServiceError::Failed {
                what: format!("{}: arguments not encodable: {e}", O::NAME),
            })?,
        })
    }
}
