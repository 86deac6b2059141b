//! Who calls an operation, and what their role lets them do.
//!
//! Three roles, fixed: `admin` may do everything; `operator` runs the
//! queue (release, retry, delete) and reads tracking, the directory, the
//! policy dry run and the status; `auditor` reads everything, the audit
//! log included, and changes nothing. The table is [`Role::allows`]; the
//! daemon's service checks it before every operation and audits a denial.

use serde::{Deserialize, Serialize};

/// An account's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Operator,
    Auditor,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Operator, Role::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
        }
    }

    /// Whether this role may do what `permission` names.
    pub fn allows(self, permission: Permission) -> bool {
        match (self, permission) {
            (Role::Admin, _) => true,
            (Role::Auditor, Permission::Read(_)) => true,
            (Role::Auditor, Permission::Write(_)) => false,
            (Role::Operator, Permission::Write(area)) => area == Area::Queue,
            (Role::Operator, Permission::Read(area)) => matches!(
                area,
                Area::Queue | Area::Tracking | Area::Directory | Area::Policy | Area::Status
            ),
            // Every account may see and end its own sessions.
            (_, Permission::Own) => true,
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("`{s}` is not a role (admin, operator, auditor)"))
    }
}

/// What an operation touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Area {
    Queue,
    Tracking,
    Directory,
    Keys,
    Settings,
    Policy,
    Status,
    Audit,
    Accounts,
}

/// What an operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "access", content = "area")]
pub enum Permission {
    Read(Area),
    Write(Area),
    /// The caller's own account (its sessions, its second factor).
    Own,
}

impl Permission {
    /// Whether the operation changes something (and is always audited).
    pub fn writes(self) -> bool {
        matches!(self, Permission::Write(_) | Permission::Own)
    }
}

/// Through which front end the call came.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    Cli,
    Web,
    Console,
    /// A bootstrap file read at start.
    File,
    /// Another node of the cluster.
    Cluster,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Cli => "cli",
            Via::Web => "web",
            Via::Console => "console",
            Via::File => "file",
            Via::Cluster => "cluster",
        }
    }
}

/// Who calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The account name (`root` for the local command line).
    pub name: String,
    pub role: Role,
    pub via: Via,
    /// Where from: the browser's address for the web UI.
    pub from: Option<String>,
}

impl Actor {
    /// The local administrator: whoever can open the control socket or the
    /// data directory (root and the daemon's group).
    pub fn local_root() -> Actor {
        Actor {
            name: "root".to_owned(),
            role: Role::Admin,
            via: Via::Cli,
            from: None,
        }
    }

    /// The serial console (physical or virtual access to the appliance).
    pub fn console() -> Actor {
        Actor {
            name: "console".to_owned(),
            role: Role::Admin,
            via: Via::Console,
            from: None,
        }
    }

    /// The bootstrap file, read at start.
    pub fn bootstrap_file() -> Actor {
        Actor {
            name: "bootstrap-file".to_owned(),
            role: Role::Admin,
            via: Via::File,
            from: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_table() {
        for area in [Area::Settings, Area::Keys, Area::Accounts, Area::Directory] {
            assert!(!Role::Operator.allows(Permission::Write(area)));
            assert!(!Role::Auditor.allows(Permission::Write(area)));
            assert!(Role::Admin.allows(Permission::Write(area)));
        }
        assert!(Role::Operator.allows(Permission::Write(Area::Queue)));
        assert!(!Role::Operator.allows(Permission::Read(Area::Settings)));
        assert!(!Role::Operator.allows(Permission::Read(Area::Keys)));
        assert!(!Role::Operator.allows(Permission::Read(Area::Audit)));
        assert!(Role::Auditor.allows(Permission::Read(Area::Audit)));
        assert!(Role::Auditor.allows(Permission::Read(Area::Settings)));
        assert!(!Role::Auditor.allows(Permission::Write(Area::Queue)));
        for role in Role::ALL {
            assert!(role.allows(Permission::Own));
        }
    }
}
