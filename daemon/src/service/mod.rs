//! The administration service as the web UI needs it now: one
//! [`sealgate_api::Service`] that checks the actor's role, runs the
//! operation and audits it, with the operations of the web layer
//! (`setup.*`, `auth.*`, `accounts.*`) and a node `status`.
//!
//! Interim: the full service (queue, tracking, directory, keys, settings,
//! policy, audit over the live settings store) is being written in
//! main; when it lands, this dispatch table joins it and
//! [`StoreSettings`] gives way to the settings store.
//!
//! Trusts: the actor its front end built (the web layer builds it from a
//! session the accounts module checked; the anonymous actor reaches
//! [`Permission::Public`] operations only).

pub mod accounts;
pub mod delivery_test;
pub mod setup;

use std::sync::Arc;

use sealgate_api::ops::audit::{AuditOutcome, AuditRecord};
use sealgate_api::ops::status::{DiskUsage, KeyStoreState, QueueCounts, StatusReport};
use sealgate_api::settings::{IpNetwork, Settings};
use sealgate_api::{Actor, BoxFuture, FieldError, Operation, Permission, ServiceError};

use crate::accounts::Accounts;
use crate::accounts::setup::{SettingsPort, Setup};
use crate::envelope::now_ms;
use crate::store::{SharedStore, Space};

/// What the handlers share.
pub struct Ctx {
    pub config: Arc<crate::config::Config>,
    pub queue: crate::queue::Queue,
    pub store: Arc<dyn SharedStore>,
    pub accounts: Arc<Accounts>,
    pub setup: Arc<Setup>,
    pub settings: Arc<dyn SettingsPort>,
    pub started_ms: u64,
}

impl Ctx {
    /// Appends an audit record (a failure to audit is logged, never hidden).
    pub fn audit(
        &self,
        actor: &Actor,
        operation: &str,
        args: serde_json::Value,
        outcome: Result<(), ServiceError>,
    ) {
        let version = self.settings.current().map(|(v, _)| v).unwrap_or(0);
        let outcome = match outcome {
            Ok(()) => AuditOutcome::Done,
            Err(ServiceError::Denied { .. }) => AuditOutcome::Denied,
            Err(e) => AuditOutcome::Failed(e.to_string()),
        };
        let mut record = AuditRecord {
            seq: 0,
            time_ms: now_ms(),
            actor: actor.name.clone(),
            role: actor.role,
            via: actor.via,
            from: actor.from.clone(),
            operation: operation.to_owned(),
            args,
            outcome,
            settings_before: version,
            settings_after: self.settings.current().map(|(v, _)| v).unwrap_or(version),
        };
        for _ in 0..16 {
            let next = match self.store.last(Space::Audit) {
                Ok(Some((k, _))) => k
                    .get(..8)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map_or(1, |b| u64::from_be_bytes(b) + 1),
                Ok(None) => 1,
                Err(e) => {
                    tracing::error!(error = %e, operation, "audit record not written");
                    return;
                }
            };
            record.seq = next;
            let Ok(value) = serde_json::to_vec(&record) else {
                return;
            };
            match self
                .store
                .compare_and_swap(Space::Audit, &next.to_be_bytes(), None, Some(&value))
            {
                Ok(true) => return,
                Ok(false) => continue,
                Err(e) => {
                    tracing::error!(error = %e, operation, "audit record not written");
                    return;
                }
            }
        }
    }
}

/// The service.
#[derive(Clone)]
pub struct AdminService {
    ctx: Arc<Ctx>,
}

impl AdminService {
    pub fn new(ctx: Ctx) -> AdminService {
        AdminService { ctx: Arc::new(ctx) }
    }
}

/// Public operations audited by their handlers (security events); the
/// rest of them (session lookups, setup state) are not audited.
const SELF_AUDITED: &[&str] = &[
    "auth.login",
    "auth.enrol_totp",
    "auth.logout",
    "setup.unlock",
];

fn typed<O: Operation>(
    ctx: &Ctx,
    actor: &Actor,
    args: serde_json::Value,
    handler: fn(&Ctx, &Actor, O) -> Result<O::Output, ServiceError>,
) -> Result<serde_json::Value, ServiceError> {
    let op: O = serde_json::from_value(args)
        .map_err(|e| ServiceError::invalid("arguments", format!("{}: {e}", O::NAME)))?;
    // The anonymous actor (a browser before login) reaches public operations only.
    let anonymous = actor.name == "-";
    if (anonymous && O::NEEDS != Permission::Public) || !actor.role.allows(O::NEEDS) {
        let e = ServiceError::Denied {
            operation: O::NAME.to_owned(),
            role: actor.role,
        };
        ctx.audit(actor, O::NAME, op.audit_args(), Err(e.clone()));
        return Err(e);
    }
    let audit_args = O::NEEDS.writes().then(|| op.audit_args());
    let result = handler(ctx, actor, op);
    if let Some(args) = audit_args
        && !SELF_AUDITED.contains(&O::NAME)
    {
        ctx.audit(
            actor,
            O::NAME,
            args,
            result.as_ref().map(|_| ()).map_err(Clone::clone),
        );
    }
    let output = result?;
    serde_json::to_value(output)
        .map_err(|e| ServiceError::failed(format!("{}: answer not encodable: {e}", O::NAME)))
}

fn dispatch(
    ctx: &Ctx,
    actor: &Actor,
    name: &str,
    args: serde_json::Value,
) -> Result<serde_json::Value, ServiceError> {
    use sealgate_api::ops::{accounts as a, delivery as d, setup as s, status as st};
    match name {
        a::Login::NAME => typed::<a::Login>(ctx, actor, args, accounts::login),
        a::EnrolTotp::NAME => typed::<a::EnrolTotp>(ctx, actor, args, accounts::enrol_totp),
        a::SessionCheck::NAME => typed::<a::SessionCheck>(ctx, actor, args, accounts::session),
        a::Logout::NAME => typed::<a::Logout>(ctx, actor, args, accounts::logout),
        a::AccountList::NAME => typed::<a::AccountList>(ctx, actor, args, accounts::list),
        a::AccountCreate::NAME => typed::<a::AccountCreate>(ctx, actor, args, accounts::create),
        a::AccountUpdate::NAME => typed::<a::AccountUpdate>(ctx, actor, args, accounts::update),
        a::AccountResetSecondFactor::NAME => {
            typed::<a::AccountResetSecondFactor>(ctx, actor, args, accounts::reset_second_factor)
        }
        a::ChangePassword::NAME => typed::<a::ChangePassword>(ctx, actor, args, accounts::password),
        a::MySessions::NAME => typed::<a::MySessions>(ctx, actor, args, accounts::sessions),
        a::EndSession::NAME => typed::<a::EndSession>(ctx, actor, args, accounts::end_session),
        s::SetupStatus::NAME => typed::<s::SetupStatus>(ctx, actor, args, setup::state),
        s::SetupUnlock::NAME => typed::<s::SetupUnlock>(ctx, actor, args, setup::unlock),
        s::SetupDraftGet::NAME => typed::<s::SetupDraftGet>(ctx, actor, args, setup::draft),
        s::SetupSave::NAME => typed::<s::SetupSave>(ctx, actor, args, setup::save),
        s::SetupAdmin::NAME => typed::<s::SetupAdmin>(ctx, actor, args, setup::admin),
        s::SetupAdminConfirm::NAME => {
            typed::<s::SetupAdminConfirm>(ctx, actor, args, setup::admin_confirm)
        }
        s::SetupFinish::NAME => typed::<s::SetupFinish>(ctx, actor, args, setup::finish),
        st::Status::NAME => typed::<st::Status>(ctx, actor, args, status),
        d::DeliveryTest::NAME => typed::<d::DeliveryTest>(ctx, actor, args, delivery),
        other => Err(ServiceError::UnknownOperation(other.to_owned())),
    }
}

impl sealgate_api::Service for AdminService {
    fn call<'a>(
        &'a self,
        actor: &'a Actor,
        name: &'a str,
        args: serde_json::Value,
    ) -> BoxFuture<'a, Result<serde_json::Value, ServiceError>> {
        let ctx = self.ctx.clone();
        let actor = actor.clone();
        let name = name.to_owned();
        Box::pin(async move {
            // Store calls block and password hashes take CPU: off the runtime's threads.
            tokio::task::spawn_blocking(move || dispatch(&ctx, &actor, &name, args))
                .await
                .map_err(|e| ServiceError::failed(format!("operation stopped: {e}")))?
        })
    }
}

/// `delivery.test` (from the blocking thread the service runs on).
fn delivery(
    ctx: &Ctx,
    _actor: &Actor,
    op: sealgate_api::ops::delivery::DeliveryTest,
) -> Result<sealgate_api::ops::delivery::DeliveryTestReport, ServiceError> {
    let (_, settings) = ctx.settings.current()?;
    tokio::runtime::Handle::current().block_on(delivery_test::run(&settings.hostname, &op))
}

/// `status` (interim: what the node knows without the settings store).
fn status(
    ctx: &Ctx,
    _actor: &Actor,
    _op: sealgate_api::ops::status::Status,
) -> Result<StatusReport, ServiceError> {
    let mut queue = QueueCounts::default();
    let entries = ctx
        .queue
        .state()
        .all()
        .map_err(|e| ServiceError::Unavailable {
            what: format!("queue state: {e}"),
        })?;
    queue.messages = entries.len();
    for entry in &entries {
        for r in &entry.recipients {
            use crate::queue::state::RecipientStatus as S;
            match r.status {
                S::Scheduled => queue.scheduled += 1,
                S::Deferred { .. } => queue.deferred += 1,
                S::Held { .. } => queue.held += 1,
                S::Quarantined { .. } => queue.quarantined += 1,
                _ => {}
            }
        }
    }
    let data_disk = nix::sys::statvfs::statvfs(&ctx.config.data_dir)
        .map(|s| DiskUsage {
            total_bytes: s.blocks().saturating_mul(s.fragment_size()),
            free_bytes: s.blocks_available().saturating_mul(s.fragment_size()),
        })
        .unwrap_or_default();
    let (version, settings) = ctx.settings.current()?;
    Ok(StatusReport {
        node: ctx.config.node_name.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        hostname: settings.hostname,
        started_at_ms: ctx.started_ms,
        settings_version: version,
        file_settings_differ: false,
        queue,
        key_store: KeyStoreState::NotSetUp,
        storage_failed: None,
        data_disk,
        expiring: Vec::new(),
    })
}

/// Settings versions in the shared store's `Settings` space (version,
/// big-endian → `SettingsVersion` JSON), read from the bootstrap file
/// until a first version exists. Interim: the live settings store
/// replaces it (and applies versions to the running gateway).
pub struct StoreSettings {
    pub store: Arc<dyn SharedStore>,
    pub config: Arc<crate::config::Config>,
}

impl StoreSettings {
    fn bootstrap(&self) -> Settings {
        let c = &self.config;
        let mut s = Settings {
            hostname: c.hostname.clone(),
            ..Settings::default()
        };
        s.relay.domains.clone_from(&c.relay.domains);
        s.relay.internal_networks = c
            .relay
            .internal_networks
            .iter()
            .filter_map(|n| n.to_string().parse::<IpNetwork>().ok())
            .collect();
        s
    }
}

impl SettingsPort for StoreSettings {
    fn current(&self) -> Result<(u64, Settings), ServiceError> {
        match self.store.last(Space::Settings)? {
            Some((key, value)) => {
                let version = key
                    .get(..8)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map_or(0, u64::from_be_bytes);
                let stored: sealgate_api::ops::settings::SettingsVersion =
                    serde_json::from_slice(&value).map_err(|e| {
                        ServiceError::failed(format!("settings version {version} unreadable: {e}"))
                    })?;
                Ok((version, stored.settings))
            }
            None => Ok((0, self.bootstrap())),
        }
    }

    fn check(&self, settings: &Settings) -> Result<(), ServiceError> {
        let mut errors = Vec::new();
        if settings.hostname.trim().is_empty() || settings.hostname.contains(char::is_whitespace) {
            errors.push(FieldError::new(
                "hostname",
                "a host name like mail-gw.example.com",
            ));
        }
        for (i, d) in settings.relay.domains.iter().enumerate() {
            if d.is_empty()
                || !d
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
            {
                errors.push(FieldError::new(
                    format!("relay.domains.{i}"),
                    format!("`{d}` is not a domain name"),
                ));
            }
        }
        let host_port = |key: &str, v: &Option<String>, errors: &mut Vec<FieldError>| {
            if let Some(v) = v {
                let ok = v
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
                if !ok {
                    errors.push(FieldError::new(
                        key,
                        format!("`{v}`: host:port, like relay.example.net:25"),
                    ));
                }
            }
        };
        host_port(
            "delivery.smarthost",
            &settings.delivery.smarthost,
            &mut errors,
        );
        host_port(
            "delivery.internal_server",
            &settings.delivery.internal_server,
            &mut errors,
        );
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ServiceError::Invalid { errors })
        }
    }

    fn apply(
        &self,
        author: &Actor,
        settings: Settings,
        base: u64,
        comment: &str,
    ) -> Result<u64, ServiceError> {
        self.check(&settings)?;
        let (current, _) = self.current()?;
        if current != base {
            return Err(ServiceError::Conflict {
                expected: base,
                current,
            });
        }
        let version = current + 1;
        let record = sealgate_api::ops::settings::SettingsVersion {
            meta: sealgate_api::ops::settings::VersionMeta {
                version,
                author: author.name.clone(),
                role: author.role,
                via: author.via,
                time_ms: now_ms(),
                comment: Some(comment.to_owned()),
                restores: None,
            },
            settings,
        };
        let value = serde_json::to_vec(&record)
            .map_err(|e| ServiceError::failed(format!("settings not encoded: {e}")))?;
        if !self.store.compare_and_swap(
            Space::Settings,
            &version.to_be_bytes(),
            None,
            Some(&value),
        )? {
            return Err(ServiceError::Conflict {
                expected: base,
                current: version,
            });
        }
        self.store.flush()?;
        Ok(version)
    }
}
