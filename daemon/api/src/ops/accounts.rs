//! Accounts of the web UI and their sessions: log in with a password and
//! a second factor, enrol a second factor, look a session up, end it;
//! administrators create, disable and reset accounts.
//!
//! The daemon keeps accounts and sessions in the shared store (so every
//! node of a cluster knows them). A session id is a random 256-bit value
//! that the daemon hands out once and stores only as its SHA-256, so the
//! store holds nothing a browser could present. Sessions end after 15
//! minutes idle or 8 hours in all, at logout, and when the account is
//! disabled, its role changes or its second factor is reset.
//!
//! Login answers the same for an unknown account, a wrong password and a
//! wrong code, and is throttled per account with growing delays (the web
//! layer throttles per address too). A TOTP code is never accepted twice.

use serde::{Deserialize, Serialize};

use super::{Done, operation};
use crate::{Area, Permission, Role};

/// The second factor of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecondFactor {
    /// Not enrolled yet: the next login enrols one before anything else.
    None,
    /// A time-based one-time password (RFC 6238, SHA-1, 6 digits, 30 s).
    Totp,
}

/// An account as administrators see it (never its secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInfo {
    pub name: String,
    pub role: Role,
    pub disabled: bool,
    pub second_factor: SecondFactor,
    pub created_ms: u64,
    pub created_by: String,
    pub last_login_ms: Option<u64>,
}

/// What a session is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionKind {
    /// A logged-in account.
    Account,
    /// The setup wizard, opened with the one-time setup token (admin
    /// rights until setup is finished; then every such session ends).
    Setup,
}

/// A session as the web layer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub kind: SessionKind,
    /// The account name (`setup` for the wizard).
    pub account: String,
    pub role: Role,
    /// A short, non-secret name of the session (hex prefix of its hash):
    /// what the sessions list shows and `accounts.end_session` takes.
    pub handle: String,
    pub created_ms: u64,
    pub last_seen_ms: u64,
    /// When it ends if unused (idle timeout) …
    pub idle_expires_ms: u64,
    /// … and at the latest (absolute timeout).
    pub expires_ms: u64,
    /// The address it was opened from.
    pub from: Option<String>,
}

/// A new session: the id (the secret the browser keeps, shown once) and
/// what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionGrant {
    pub id: String,
    pub session: SessionInfo,
}

/// A second factor to enrol: the secret to show as a QR code (and in
/// base32 for typing), with a short-lived enrolment id that
/// [`EnrolTotp`] takes together with a first code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpEnrolment {
    pub enrolment: String,
    pub account: String,
    /// The shared secret, base32 (RFC 4648, no padding).
    pub secret_base32: String,
    /// `otpauth://totp/…` for authenticator apps (the QR code's content).
    pub uri: String,
}

/// How a login went on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "next")]
pub enum LoginOutcome {
    /// Logged in.
    Session(SessionGrant),
    /// Password right, but no second factor yet: enrol one, then the
    /// session begins.
    Enrol(TotpEnrolment),
}

/// `auth.login`: name, password and (once enrolled) the current code.
/// Every failure is the same `Invalid` answer on the key `login`; too
/// many failures answer `Busy` with the time to wait.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    pub name: String,
    pub password: String,
    #[serde(default)]
    pub code: Option<String>,
}
operation!(
    Login,
    "auth.login",
    Permission::Public,
    LoginOutcome,
    audit = |op| serde_json::json!({ "name": op.name })
);

/// `auth.enrol_totp`: confirms an enrolment with a first code; the
/// session begins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolTotp {
    pub enrolment: String,
    pub code: String,
}
operation!(
    EnrolTotp,
    "auth.enrol_totp",
    Permission::Public,
    SessionGrant,
    audit = |_op| serde_json::json!({})
);

/// `auth.session`: the session with this id, if it is alive; its idle
/// timer starts again (`touch`). Unknown and ended sessions are
/// `NotFound`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCheck {
    pub id: String,
    #[serde(default = "yes")]
    pub touch: bool,
}
operation!(
    SessionCheck,
    "auth.session",
    Permission::Public,
    SessionInfo,
    audit = |_op| serde_json::json!({})
);

fn yes() -> bool {
    true
}

/// `auth.logout`: ends the session with this id (done even if it had
/// already ended).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logout {
    pub id: String,
}
operation!(
    Logout,
    "auth.logout",
    Permission::Public,
    Done,
    audit = |_op| serde_json::json!({})
);

/// `accounts.list`: every account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountList {}
operation!(
    AccountList,
    "accounts.list",
    Permission::Read(Area::Accounts),
    Vec<AccountInfo>
);

/// `accounts.create`: a new account with an initial password; it enrols
/// its second factor at its first login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountCreate {
    pub name: String,
    pub role: Role,
    pub password: String,
}
operation!(
    AccountCreate,
    "accounts.create",
    Permission::Write(Area::Accounts),
    AccountInfo,
    audit = |op| serde_json::json!({ "name": op.name, "role": op.role })
);

/// `accounts.update`: role and/or disabled; either ends the account's
/// sessions (a new session at every privilege change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountUpdate {
    pub name: String,
    #[serde(default)]
    pub role: Option<Role>,
    #[serde(default)]
    pub disabled: Option<bool>,
}
operation!(
    AccountUpdate,
    "accounts.update",
    Permission::Write(Area::Accounts),
    AccountInfo
);

/// `accounts.reset_second_factor`: forgets the account's second factor
/// and ends its sessions; its next login enrols a new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountResetSecondFactor {
    pub name: String,
}
operation!(
    AccountResetSecondFactor,
    "accounts.reset_second_factor",
    Permission::Write(Area::Accounts),
    AccountInfo
);

/// `accounts.password`: the caller's own new password (the old one
/// proves it is them); other sessions of the account end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangePassword {
    pub old: String,
    pub new: String,
    /// The handle of the session asking, which stays.
    pub keep: String,
}
operation!(
    ChangePassword,
    "accounts.password",
    Permission::Own,
    Done,
    audit = |_op| serde_json::json!({})
);

/// `accounts.sessions`: the caller's own sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MySessions {}
operation!(
    MySessions,
    "accounts.sessions",
    Permission::Own,
    Vec<SessionInfo>
);

/// `accounts.end_session`: ends one of the caller's own sessions by its handle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndSession {
    pub handle: String,
}
operation!(EndSession, "accounts.end_session", Permission::Own, Done);
