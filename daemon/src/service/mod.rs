//! The administration service: every administrative operation, once.
//!
//! The CLI (over the control socket, or on a stopped daemon's data
//! directory), the web UI and the console all call [`AdminService`]
//! through `sealgate_api::Service`. Here, and only here:
//!
//! 1. the request is decoded into its typed operation;
//! 2. the actor's role is checked against the operation's permission
//!    (`sealgate_api::Role::allows`); a denial is audited and answered
//!    with `ServiceError::Denied`;
//! 3. the operation's handler runs (one file per area, each a short
//!    function over [`Ctx`]);
//! 4. every operation that changes something is written to the audit log
//!    with its outcome and the settings versions before and after.
//!
//! Handlers hold no front-end logic (no printing, no HTML) and front ends
//! hold no gateway logic.
//!
//! Trusts: the actor it is given (the front end authenticated it: the
//! control socket's file mode, the web session, the console's physical
//! access).

use std::future::Future;
use std::sync::Arc;

use sealgate_api::ops::audit::AuditOutcome;
use sealgate_api::{Actor, BoxFuture, Operation, Service, ServiceError};

use crate::keys::Keys;
use crate::queue::Queue;
use crate::settings::{Live, SettingsStore};
use crate::store::SharedStore;

pub mod accounts;
pub mod audit;
pub mod backup;
pub mod cluster;
pub mod dashboard;
pub mod delivery_test;
pub mod directory;
pub mod keys;
pub mod policy;
pub mod queue;
pub mod settings;
pub mod setup;
pub mod status;
pub mod tracking;
pub mod trust;
pub mod update;

/// What the handlers work on.
pub struct Ctx {
    /// The settings version in force.
    pub live: Arc<Live>,
    pub settings: SettingsStore,
    pub shared: Arc<dyn SharedStore>,
    pub queue: Queue,
    pub keys: Keys,
    pub audit: crate::audit::Audit,
    /// The node's state store (its health is part of the status).
    pub db: crate::db::Db,
    /// The daemon is running (its scheduler takes queue changes); `false`
    /// for the CLI working on a stopped daemon's data directory.
    pub online: bool,
    pub started_at_ms: u64,
    /// The trust machinery (review queue, discovery, anchors and CRLs).
    pub trust: Arc<crate::trust::services::Services>,
    /// The cluster as this node sees it (a cluster of one on a single appliance).
    pub cluster: Arc<crate::cluster::node::ClusterView>,
    /// Web accounts and sessions.
    pub accounts: Arc<crate::accounts::Accounts>,
    /// The first-run setup wizard's server side.
    pub setup: Arc<crate::accounts::setup::Setup>,
}

impl Ctx {
    /// Audits a call the dispatch does not audit by itself (logins and
    /// the setup token are public operations, audited as security events).
    pub fn audit_event(
        &self,
        actor: &Actor,
        operation: &str,
        args: serde_json::Value,
        outcome: Result<(), &ServiceError>,
    ) {
        let version = self.live.get().version;
        let outcome = match outcome {
            Ok(()) => AuditOutcome::Done,
            Err(ServiceError::Denied { .. }) => AuditOutcome::Denied,
            Err(e) => AuditOutcome::Failed(e.to_string()),
        };
        if let Err(e) = self
            .audit
            .record(actor, operation, args, outcome, version, version)
        {
            tracing::error!(operation, actor = %actor.name, error = %e, "audit record not written");
        }
    }
}

impl Ctx {
    /// The service's view of an opened data directory. Online, the trust
    /// machinery wakes the scheduler when keys arrive (a review decided,
    /// a lookup done); offline there is no scheduler to wake, so mail held
    /// for the address stays held until `queue release`, a later key or
    /// the end of its hold. Its cluster view starts nothing (the CLI on a
    /// stopped daemon); the daemon puts the view of its started cluster
    /// node in its place.
    pub fn of(opened: &crate::daemon::Opened, keys: Keys, online: bool) -> Ctx {
        let trust = Arc::new(crate::trust::services::Services::new(
            opened.shared.clone(),
            Arc::new(crate::outbound_tls::OutboundTls::new(&opened.db)),
            Some(opened.db.clone()),
            online.then(|| opened.queue.clone()),
        ));
        let (accounts, setup) = crate::accounts::open(&opened.shared, opened.live.bootstrap());
        Ctx {
            live: opened.live.clone(),
            settings: opened.settings.clone(),
            shared: opened.shared.clone(),
            queue: opened.queue.clone(),
            keys,
            audit: crate::audit::Audit::new(opened.shared.clone()),
            db: opened.db.clone(),
            online,
            started_at_ms: crate::envelope::now_ms(),
            trust,
            cluster: crate::cluster::view(&opened.cluster, &opened.queue, opened.live.clone()),
            accounts,
            setup,
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

    pub fn ctx(&self) -> &Arc<Ctx> {
        &self.ctx
    }

    async fn dispatch(
        &self,
        actor: &Actor,
        name: &str,
        args: serde_json::Value,
    ) -> Result<serde_json::Value, ServiceError> {
        use sealgate_api::ops::{
            accounts as ac, audit as a, backup as bk, cluster as c, dashboard as db,
            delivery as dl, directory as d, keys as k, policy as p, queue as q, settings as s,
            setup as su, status as st, tracking as t, trust as tr, update as up,
        };
        match name {
            q::QueueList::NAME => self.run(actor, args, queue::list).await,
            q::QueueShow::NAME => self.run(actor, args, queue::show).await,
            q::QueueRelease::NAME => self.run(actor, args, queue::release).await,
            q::QueueRetry::NAME => self.run(actor, args, queue::retry).await,
            q::QueueDelete::NAME => self.run(actor, args, queue::delete).await,
            t::TrackSearch::NAME => self.run(actor, args, tracking::search).await,
            t::TrackMessages::NAME => self.run(actor, args, tracking::messages).await,
            db::DashboardTraffic::NAME => self.run(actor, args, dashboard::traffic).await,
            d::DirectoryList::NAME => self.run(actor, args, directory::list).await,
            d::DirectoryShow::NAME => self.run(actor, args, directory::show).await,
            d::DirectoryImport::NAME => self.run(actor, args, directory::import).await,
            d::DirectoryRemove::NAME => self.run(actor, args, directory::remove).await,
            k::KeysList::NAME => self.run(actor, args, keys::list).await,
            k::KeyGenerate::NAME => self.run(actor, args, keys::generate).await,
            k::KeySelfSign::NAME => self.run(actor, args, keys::self_sign).await,
            k::KeyCsr::NAME => self.run(actor, args, keys::csr).await,
            k::KeyImportCert::NAME => self.run(actor, args, keys::import_cert).await,
            k::KeyExportCert::NAME => self.run(actor, args, keys::export_cert).await,
            k::KeyDelete::NAME => self.run(actor, args, keys::delete).await,
            k::PgpInit::NAME => self.run(actor, args, keys::pgp_init).await,
            k::PgpRotate::NAME => self.run(actor, args, keys::pgp_rotate).await,
            k::PgpExport::NAME => self.run(actor, args, keys::pgp_export).await,
            k::KeysReload::NAME => self.run(actor, args, keys::reload).await,
            k::SmimeCreate::NAME => self.run(actor, args, keys::smime_create).await,
            k::TlsUpload::NAME => self.run(actor, args, keys::tls_upload).await,
            bk::BackupCreate::NAME => self.run(actor, args, backup::create).await,
            bk::BackupRestore::NAME => self.run(actor, args, backup::restore).await,
            s::SettingsShow::NAME => self.run(actor, args, settings::show).await,
            s::SettingsGet::NAME => self.run(actor, args, settings::get).await,
            s::SettingsSet::NAME => self.run(actor, args, settings::set).await,
            s::SettingsApply::NAME => self.run(actor, args, settings::apply).await,
            s::SettingsDiff::NAME => self.run(actor, args, settings::diff).await,
            s::SettingsHistory::NAME => self.run(actor, args, settings::history).await,
            s::SettingsRollback::NAME => self.run(actor, args, settings::rollback).await,
            s::SettingsExport::NAME => self.run(actor, args, settings::export).await,
            p::PolicyExplain::NAME => self.run(actor, args, policy::explain).await,
            st::Status::NAME => self.run(actor, args, status::status).await,
            a::AuditSearch::NAME => self.run(actor, args, audit::search).await,
            tr::ReviewList::NAME => self.run(actor, args, trust::list).await,
            tr::ReviewShow::NAME => self.run(actor, args, trust::show).await,
            tr::ReviewAccept::NAME => self.run(actor, args, trust::accept).await,
            tr::ReviewReject::NAME => self.run(actor, args, trust::reject).await,
            tr::AnchorsList::NAME => self.run(actor, args, trust::anchors).await,
            tr::CrlList::NAME => self.run(actor, args, trust::crl_list).await,
            tr::CrlUpload::NAME => self.run(actor, args, trust::crl_upload).await,
            tr::DiscoveryLookup::NAME => self.run(actor, args, trust::discover).await,
            tr::PublishRecords::NAME => self.run(actor, args, trust::publish).await,
            tr::WkdLookup::NAME => self.run(actor, args, trust::wkd).await,
            c::ClusterStatus::NAME => self.run(actor, args, cluster::status).await,
            c::ClusterTrack::NAME => self.run(actor, args, cluster::track).await,
            ac::Login::NAME => self.run(actor, args, accounts::login).await,
            ac::EnrolTotp::NAME => self.run(actor, args, accounts::enrol_totp).await,
            ac::SessionCheck::NAME => self.run(actor, args, accounts::session).await,
            ac::Logout::NAME => self.run(actor, args, accounts::logout).await,
            ac::AccountList::NAME => self.run(actor, args, accounts::list).await,
            ac::AccountCreate::NAME => self.run(actor, args, accounts::create).await,
            ac::AccountUpdate::NAME => self.run(actor, args, accounts::update).await,
            ac::AccountResetSecondFactor::NAME => {
                self.run(actor, args, accounts::reset_second_factor).await
            }
            ac::ChangePassword::NAME => self.run(actor, args, accounts::password).await,
            ac::MySessions::NAME => self.run(actor, args, accounts::sessions).await,
            ac::EndSession::NAME => self.run(actor, args, accounts::end_session).await,
            su::SetupStatus::NAME => self.run(actor, args, setup::state).await,
            su::SetupUnlock::NAME => self.run(actor, args, setup::unlock).await,
            su::SetupDraftGet::NAME => self.run(actor, args, setup::draft).await,
            su::SetupSave::NAME => self.run(actor, args, setup::save).await,
            su::SetupAdmin::NAME => self.run(actor, args, setup::admin).await,
            su::SetupAdminConfirm::NAME => self.run(actor, args, setup::admin_confirm).await,
            su::SetupFinish::NAME => self.run(actor, args, setup::finish).await,
            dl::DeliveryTest::NAME => self.run(actor, args, delivery_test::test).await,
            up::UpdateStatus::NAME => self.run(actor, args, update::status).await,
            up::UpdateInstall::NAME => self.run(actor, args, update::install_op).await,
            _ => Err(ServiceError::UnknownOperation(name.to_owned())),
        }
    }

    /// Decodes, checks the role, runs `handler`, audits, encodes.
    async fn run<O, F, Fut>(
        &self,
        actor: &Actor,
        args: serde_json::Value,
        handler: F,
    ) -> Result<serde_json::Value, ServiceError>
    where
        O: Operation,
        F: FnOnce(Arc<Ctx>, Actor, O) -> Fut,
        Fut: Future<Output = Result<O::Output, ServiceError>>,
    {
        let args = if args.is_null() {
            serde_json::Value::Object(Default::default())
        } else {
            args
        };
        let op: O = serde_json::from_value(args).map_err(|e| {
            ServiceError::invalid(O::NAME, format!("the request does not fit: {e}"))
        })?;
        let before = self.ctx.live.get().version;
        let recorded = op.audit_args();
        // The anonymous actor (a browser before login) reaches public
        // operations only, whatever its nominal role.
        let anonymous = actor.name == "-" && O::NEEDS != sealgate_api::Permission::Public;
        if anonymous || !actor.role.allows(O::NEEDS) {
            self.audit(actor, O::NAME, recorded, AuditOutcome::Denied, before);
            return Err(ServiceError::Denied {
                operation: O::NAME.to_owned(),
                role: actor.role,
            });
        }
        let result = handler(self.ctx.clone(), actor.clone(), op).await;
        if O::NEEDS.writes() {
            let outcome = match &result {
                Ok(_) => AuditOutcome::Done,
                Err(e) => AuditOutcome::Failed(e.to_string()),
            };
            self.audit(actor, O::NAME, recorded, outcome, before);
        }
        let output = result?;
        serde_json::to_value(output)
            .map_err(|e| ServiceError::failed(format!("{}: answer not encodable: {e}", O::NAME)))
    }

    fn audit(
        &self,
        actor: &Actor,
        operation: &str,
        args: serde_json::Value,
        outcome: AuditOutcome,
        before: u64,
    ) {
        let after = self.ctx.live.get().version;
        if let Err(e) = self
            .ctx
            .audit
            .record(actor, operation, args, outcome, before, after)
        {
            tracing::error!(operation, actor = %actor.name, error = %e, "audit record not written");
        }
    }
}

impl Service for AdminService {
    fn call<'a>(
        &'a self,
        actor: &'a Actor,
        name: &'a str,
        args: serde_json::Value,
    ) -> BoxFuture<'a, Result<serde_json::Value, ServiceError>> {
        Box::pin(self.dispatch(actor, name, args))
    }
}

/// Runs blocking work (sled, the token) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServiceError::failed(format!("the operation stopped: {e}")))?
}

/// A storage error as the service reports it.
pub(crate) fn storage(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Unavailable {
        what: format!("the state store ({e})"),
    }
}
