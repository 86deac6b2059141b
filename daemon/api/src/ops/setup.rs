//! The first-run setup: while the gateway is not set up, a one-time
//! token (shown on the serial console, printed by `scripts/run`) opens a
//! setup session; the wizard creates the first administrator with a
//! second factor, keeps the choices made so far as a draft (so an
//! interrupted wizard resumes where it stopped), and finishing applies
//! them as one settings version authored by the new administrator,
//! burns the token and ends every setup session.
//!
//! Wrong tokens are throttled with growing delays. Once set up, every
//! `setup.*` operation but `setup.state` is refused until the console's
//! "reset admin access" arms a new token.

use serde::{Deserialize, Serialize};

use super::accounts::{SessionGrant, TotpEnrolment};
use super::operation;
use crate::settings::Settings;
use crate::{Area, Permission};

/// Where setup stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupState {
    /// A token is armed and setup is not finished: the wizard is open.
    pub open: bool,
    /// Setup was finished (the wizard is gone).
    pub completed: bool,
}

/// `setup.state`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupStatus {}
operation!(SetupStatus, "setup.state", Permission::Public, SetupState);

/// `setup.unlock`: the one-time token opens a setup session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupUnlock {
    pub token: String,
}
operation!(
    SetupUnlock,
    "setup.unlock",
    Permission::Public,
    SessionGrant,
    audit = |_op| serde_json::json!({})
);

/// The first administrator as the wizard keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DraftAdmin {
    pub name: String,
    /// The second factor was confirmed with a code.
    pub confirmed: bool,
}

/// The gateway's TLS certificate choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CertificateChoice {
    /// The generated self-signed certificate (names the hostname).
    #[default]
    Generated,
    /// A PEM chain and key uploaded in the wizard.
    Uploaded,
}

/// What the wizard has gathered so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupDraft {
    /// The furthest step reached (`admin`, `identity`, `delivery`,
    /// `certificate`, `keys`, `policy`, `review`).
    pub step: String,
    pub admin: Option<DraftAdmin>,
    /// The settings as they will be applied (starts from the current ones).
    pub settings: Settings,
    /// The settings version the draft started from.
    pub base_version: u64,
    pub certificate: CertificateChoice,
}

/// `setup.draft`: the draft so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupDraftGet {}
operation!(
    SetupDraftGet,
    "setup.draft",
    Permission::Write(Area::Settings),
    SetupDraft
);

/// `setup.save`: settings from one step, checked as a whole (every
/// problem names its key), kept in the draft; `step` is the step to show
/// next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupSave {
    pub settings: Settings,
    pub step: String,
    #[serde(default)]
    pub certificate: Option<CertificateChoice>,
}
operation!(
    SetupSave,
    "setup.save",
    Permission::Write(Area::Settings),
    SetupDraft
);

/// `setup.admin`: the first administrator's name and password (at least
/// 12 characters, not a common password; stored with Argon2id); answers
/// the TOTP secret to enrol, confirmed by [`SetupAdminConfirm`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupAdmin {
    pub name: String,
    pub password: String,
}
operation!(
    SetupAdmin,
    "setup.admin",
    Permission::Write(Area::Accounts),
    TotpEnrolment,
    audit = |op| serde_json::json!({ "name": op.name })
);

/// `setup.admin_confirm`: the first code from the authenticator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupAdminConfirm {
    pub code: String,
}
operation!(
    SetupAdminConfirm,
    "setup.admin_confirm",
    Permission::Write(Area::Accounts),
    SetupDraft,
    audit = |_op| serde_json::json!({})
);

/// `setup.finish`: applies the draft as one settings version authored by
/// the new administrator, burns the token, ends every setup session and
/// opens the administrator's session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupFinish {}
operation!(
    SetupFinish,
    "setup.finish",
    Permission::Write(Area::Settings),
    SessionGrant
);
