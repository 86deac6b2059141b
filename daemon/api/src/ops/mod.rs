//! The operations, one struct each, grouped by what they touch. The name
//! of each is its wire name (`queue.release`); the daemon's `service`
//! module has one handler per operation.

use serde::{Deserialize, Serialize};

pub mod accounts;
pub mod audit;
pub mod backup;
pub mod cluster;
pub mod dashboard;
pub mod delivery;
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

/// Declares the [`crate::Operation`] impl of a request struct.
macro_rules! operation {
    ($ty:ty, $name:literal, $needs:expr, $out:ty) => {
        impl $crate::Operation for $ty {
            const NAME: &'static str = $name;
            const NEEDS: $crate::Permission = $needs;
            type Output = $out;
        }
    };
    ($ty:ty, $name:literal, $needs:expr, $out:ty, audit = |$s:ident| $audit:expr) => {
        impl $crate::Operation for $ty {
            const NAME: &'static str = $name;
            const NEEDS: $crate::Permission = $needs;
            type Output = $out;
            fn audit_args(&self) -> serde_json::Value {
                let $s = self;
                $audit
            }
        }
    };
}
pub(crate) use operation;

/// What a change did, in words (and the ids it changed, for bulk changes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    pub text: String,
    /// The ids that were changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
    /// The ids that were not, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<ItemError>,
}

/// One item of a bulk change that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemError {
    pub id: String,
    pub error: crate::ServiceError,
}

/// The names of every operation, for the service's dispatch table test.
pub const ALL: &[&str] = &[
    <queue::QueueList as crate::Operation>::NAME,
    <queue::QueueShow as crate::Operation>::NAME,
    <queue::QueueRelease as crate::Operation>::NAME,
    <queue::QueueRetry as crate::Operation>::NAME,
    <queue::QueueDelete as crate::Operation>::NAME,
    <tracking::TrackSearch as crate::Operation>::NAME,
    <directory::DirectoryList as crate::Operation>::NAME,
    <directory::DirectoryShow as crate::Operation>::NAME,
    <directory::DirectoryImport as crate::Operation>::NAME,
    <directory::DirectoryRemove as crate::Operation>::NAME,
    <keys::KeysList as crate::Operation>::NAME,
    <keys::KeyGenerate as crate::Operation>::NAME,
    <keys::KeySelfSign as crate::Operation>::NAME,
    <keys::KeyCsr as crate::Operation>::NAME,
    <keys::KeyImportCert as crate::Operation>::NAME,
    <keys::KeyExportCert as crate::Operation>::NAME,
    <keys::KeyDelete as crate::Operation>::NAME,
    <keys::PgpInit as crate::Operation>::NAME,
    <keys::PgpRotate as crate::Operation>::NAME,
    <keys::PgpExport as crate::Operation>::NAME,
    <keys::KeysReload as crate::Operation>::NAME,
    <settings::SettingsShow as crate::Operation>::NAME,
    <settings::SettingsGet as crate::Operation>::NAME,
    <settings::SettingsSet as crate::Operation>::NAME,
    <settings::SettingsApply as crate::Operation>::NAME,
    <settings::SettingsDiff as crate::Operation>::NAME,
    <settings::SettingsHistory as crate::Operation>::NAME,
    <settings::SettingsRollback as crate::Operation>::NAME,
    <settings::SettingsExport as crate::Operation>::NAME,
    <policy::PolicyExplain as crate::Operation>::NAME,
    <status::Status as crate::Operation>::NAME,
    <audit::AuditSearch as crate::Operation>::NAME,
    <trust::ReviewList as crate::Operation>::NAME,
    <trust::ReviewShow as crate::Operation>::NAME,
    <trust::ReviewAccept as crate::Operation>::NAME,
    <trust::ReviewReject as crate::Operation>::NAME,
    <trust::AnchorsList as crate::Operation>::NAME,
    <trust::CrlList as crate::Operation>::NAME,
    <trust::CrlUpload as crate::Operation>::NAME,
    <trust::DiscoveryLookup as crate::Operation>::NAME,
    <trust::PublishRecords as crate::Operation>::NAME,
    <trust::WkdLookup as crate::Operation>::NAME,
    <cluster::ClusterStatus as crate::Operation>::NAME,
    <cluster::ClusterTrack as crate::Operation>::NAME,
    <tracking::TrackMessages as crate::Operation>::NAME,
    <dashboard::DashboardTraffic as crate::Operation>::NAME,
    <delivery::DeliveryTest as crate::Operation>::NAME,
    <accounts::Login as crate::Operation>::NAME,
    <accounts::EnrolTotp as crate::Operation>::NAME,
    <accounts::SessionCheck as crate::Operation>::NAME,
    <accounts::Logout as crate::Operation>::NAME,
    <accounts::AccountList as crate::Operation>::NAME,
    <accounts::AccountCreate as crate::Operation>::NAME,
    <accounts::AccountUpdate as crate::Operation>::NAME,
    <accounts::AccountResetSecondFactor as crate::Operation>::NAME,
    <accounts::ChangePassword as crate::Operation>::NAME,
    <accounts::MySessions as crate::Operation>::NAME,
    <accounts::EndSession as crate::Operation>::NAME,
    <setup::SetupStatus as crate::Operation>::NAME,
    <setup::SetupUnlock as crate::Operation>::NAME,
    <setup::SetupDraftGet as crate::Operation>::NAME,
    <setup::SetupSave as crate::Operation>::NAME,
    <setup::SetupAdmin as crate::Operation>::NAME,
    <setup::SetupAdminConfirm as crate::Operation>::NAME,
    <setup::SetupFinish as crate::Operation>::NAME,
    <update::UpdateStatus as crate::Operation>::NAME,
    <update::UpdateInstall as crate::Operation>::NAME,
    <keys::SmimeCreate as crate::Operation>::NAME,
    <keys::TlsUpload as crate::Operation>::NAME,
    <backup::BackupCreate as crate::Operation>::NAME,
    <backup::BackupRestore as crate::Operation>::NAME,
];
