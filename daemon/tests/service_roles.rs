//! Every operation of the administration service called as every role:
//! what a role does not allow is refused before anything happens and is
//! written to the audit log as denied; what it allows is never refused for
//! its role. An operator can change neither settings nor keys.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use base64::Engine as _;
use sealgate::service::{AdminService, Ctx};
use sealgate_api::ops::audit::{AuditOutcome, AuditSearch};
use sealgate_api::{Actor, Operation, Role, Service, ServiceError, Via};
use serde_json::json;

fn service() -> AdminService {
    let dir = std::env::temp_dir().join(format!(
        "sealgate-roles-{}",
        sealgate::util::new_session_id()
    ));
    let config = sealgate::config::Config {
        data_dir: dir,
        ..sealgate::config::Config::default()
    };
    let opened = sealgate::daemon::open(config).unwrap();
    AdminService::new(Ctx::of(
        &opened,
        sealgate::keys::Keys::with(sealgate::keys::KeyStore::NotSetUp),
        false,
    ))
}

/// Arguments each operation accepts (what it does with them does not matter here).
fn sample(name: &str) -> serde_json::Value {
    let message = base64::engine::general_purpose::STANDARD
        .encode(b"From: a@example.org\r\nTo: b@ext.example\r\nSubject: x\r\n\r\nx\r\n");
    match name {
        "queue.show" => json!({"id": "00000000000000000000"}),
        "queue.release" | "queue.retry" | "queue.delete" => {
            json!({"ids": ["00000000000000000000"]})
        }
        "directory.show" => json!({"key": "b@ext.example"}),
        "directory.import" => json!({"data": "", "domain": null}),
        "directory.remove" => json!({"fingerprint": "0000000000000000"}),
        "keys.generate" => json!({"label": "t", "algorithm": "p256", "usage": "sign"}),
        "keys.self_sign" => {
            json!({"label": "t", "subject": {"common_name": "x"}, "issuer": null, "days": 1})
        }
        "keys.csr" => json!({"label": "t", "subject": {"common_name": "x"}}),
        "keys.import_cert" => json!({"label": "t", "certificate": ""}),
        "keys.export_cert" | "keys.delete" => json!({"label": "t"}),
        "keys.pgp_init" => json!({"user_id": "GW <gw@example.org>", "algorithm": null}),
        "settings.get" => json!({"key": "hostname"}),
        "settings.set" => json!({"key": "hostname", "value": "changed.example"}),
        "settings.apply" => json!({
            "settings": serde_json::to_value(sealgate_api::settings::Settings::default()).unwrap()
        }),
        "settings.rollback" => json!({"to": 1}),
        "policy.explain" => json!({"message": message, "recipients": ["b@ext.example"]}),
        "review.show" | "review.accept" | "review.reject" => json!({"id": "b@ext.example/00"}),
        "crl.upload" => json!({"data": ""}),
        "discovery.lookup" => json!({"address": "b@ext.example"}),
        // Port 9 on loopback: refused at once, nothing leaves the machine.
        "delivery.test" => json!({"host": "127.0.0.1", "port": 9}),
        "auth.login" => json!({"name": "nobody", "password": "x"}),
        "auth.enrol_totp" => json!({"enrolment": "x", "code": "000000"}),
        "auth.session" | "auth.logout" => json!({"id": "x"}),
        "accounts.create" => {
            json!({"name": "made-by-test", "role": "auditor", "password": "a long enough passphrase here"})
        }
        "accounts.update" | "accounts.reset_second_factor" => json!({"name": "nobody"}),
        "accounts.password" => json!({"old": "x", "new": "y", "keep": "z"}),
        "accounts.end_session" => json!({"handle": "x"}),
        "setup.unlock" => json!({"token": "x"}),
        "setup.save" => json!({
            "settings": serde_json::to_value(sealgate_api::settings::Settings::default()).unwrap(),
            "step": "identity"
        }),
        "setup.admin" => json!({"name": "x", "password": "y"}),
        "setup.admin_confirm" => json!({"code": "000000"}),
        // Refused before RAUC sees it (not an absolute path or a URL): the
        // test never installs anything on the machine it runs on.
        "update.install" => json!({"source": "relative.raucb"}),
        // Refused by their checks before they touch the token or the store.
        "keys.smime_create" => json!({"address": "not-an-address", "common_name": "x"}),
        "keys.tls_upload" => json!({"certificate": "x", "private_key": "y"}),
        "backup.create" => json!({"passphrase": "short"}),
        "backup.restore" => json!({"data": "x", "passphrase": "y"}),
        "wkd.lookup" => json!({"domain": "example.org"}),
        _ => json!({}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_as_every_role() {
    let service = service();
    let names = sealgate_api::ops::ALL;
    assert!(names.len() >= 30, "the table lists every operation");
    for role in Role::ALL {
        let actor = Actor {
            name: format!("test-{}", role.as_str()),
            role,
            via: Via::Web,
            from: Some("192.0.2.7".into()),
        };
        for name in names {
            let needs = needs(name);
            let result = service.call(&actor, name, sample(name)).await;
            if role.allows(needs) {
                assert!(
                    !matches!(result, Err(ServiceError::Denied { .. })),
                    "{name} refused to {role:?}"
                );
                assert!(
                    !matches!(result, Err(ServiceError::UnknownOperation(_))),
                    "{name} has no handler"
                );
            } else {
                assert!(
                    matches!(&result, Err(ServiceError::Denied { operation, role: r }) if operation == name && *r == role),
                    "{name} as {role:?}: {result:?}"
                );
            }
        }
    }
    // Every denial is in the audit log, with who, from where and what.
    let root = Actor::local_root();
    let records: Vec<sealgate_api::ops::audit::AuditRecord> = sealgate_api::run(
        &service,
        &root,
        &AuditSearch {
            limit: Some(10_000),
            ..AuditSearch::default()
        },
    )
    .await
    .unwrap();
    for role in [Role::Operator, Role::Auditor] {
        for name in names.iter().filter(|n| !role.allows(needs(n))) {
            assert!(
                records.iter().any(|r| r.operation == *name
                    && r.actor == format!("test-{}", role.as_str())
                    && r.outcome == AuditOutcome::Denied
                    && r.from.as_deref() == Some("192.0.2.7")),
                "{name} denied to {role:?} is not in the audit log"
            );
        }
    }
    // The operator could change neither settings nor keys; the admin could.
    let settings_changes: Vec<_> = records
        .iter()
        .filter(|r| r.operation == "settings.set" && r.outcome == AuditOutcome::Done)
        .collect();
    assert_eq!(settings_changes.len(), 1);
    assert_eq!(settings_changes[0].actor, "test-admin");
    assert_eq!(
        settings_changes[0].settings_after,
        settings_changes[0].settings_before + 1
    );
    // Reads are not audited; every change is, whatever its outcome.
    assert!(!records.iter().any(|r| r.operation == "queue.list"));
    assert!(
        records
            .iter()
            .any(|r| r.operation == "queue.delete" && matches!(r.outcome, AuditOutcome::Failed(_)))
    );
}

/// The permission an operation needs, by name.
fn needs(name: &str) -> sealgate_api::Permission {
    use sealgate_api::ops::*;
    macro_rules! table {
        ($($t:ty),* $(,)?) => {
            $(if name == <$t as Operation>::NAME { return <$t as Operation>::NEEDS; })*
        };
    }
    table!(
        queue::QueueList,
        queue::QueueShow,
        queue::QueueRelease,
        queue::QueueRetry,
        queue::QueueDelete,
        tracking::TrackSearch,
        directory::DirectoryList,
        directory::DirectoryShow,
        directory::DirectoryImport,
        directory::DirectoryRemove,
        keys::KeysList,
        keys::KeyGenerate,
        keys::KeySelfSign,
        keys::KeyCsr,
        keys::KeyImportCert,
        keys::KeyExportCert,
        keys::KeyDelete,
        keys::PgpInit,
        keys::PgpRotate,
        keys::PgpExport,
        keys::KeysReload,
        settings::SettingsShow,
        settings::SettingsGet,
        settings::SettingsSet,
        settings::SettingsApply,
        settings::SettingsDiff,
        settings::SettingsHistory,
        settings::SettingsRollback,
        settings::SettingsExport,
        policy::PolicyExplain,
        status::Status,
        audit::AuditSearch,
        trust::ReviewList,
        trust::ReviewShow,
        trust::ReviewAccept,
        trust::ReviewReject,
        trust::AnchorsList,
        trust::CrlList,
        trust::CrlUpload,
        trust::DiscoveryLookup,
        trust::PublishRecords,
        trust::WkdLookup,
        cluster::ClusterStatus,
        cluster::ClusterTrack,
        tracking::TrackMessages,
        dashboard::DashboardTraffic,
        delivery::DeliveryTest,
        accounts::Login,
        accounts::EnrolTotp,
        accounts::SessionCheck,
        accounts::Logout,
        accounts::AccountList,
        accounts::AccountCreate,
        accounts::AccountUpdate,
        accounts::AccountResetSecondFactor,
        accounts::ChangePassword,
        accounts::MySessions,
        accounts::EndSession,
        setup::SetupStatus,
        setup::SetupUnlock,
        setup::SetupDraftGet,
        setup::SetupSave,
        setup::SetupAdmin,
        setup::SetupAdminConfirm,
        setup::SetupFinish,
        update::UpdateStatus,
        update::UpdateInstall,
        keys::SmimeCreate,
        keys::TlsUpload,
        backup::BackupCreate,
        backup::BackupRestore,
    );
    panic!("{name}: not in the table")
}
