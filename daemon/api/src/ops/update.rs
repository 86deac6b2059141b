//! Software updates of the appliance: the two root slots and installing a
//! signed update bundle (RAUC) into the one that is not running.

use serde::{Deserialize, Serialize};

use super::operation;
use crate::{Area, Permission};

/// One root slot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootSlot {
    /// `A` or `B`.
    pub name: String,
    /// This slot runs now.
    pub running: bool,
    /// The boot loader's mark: `good`, `bad` (or empty when unknown).
    pub boot_status: String,
    /// The version it holds, when known; `None` for an empty slot.
    pub version: Option<String>,
    /// The boot loader starts this slot on the next boot.
    pub next_boot: bool,
}

/// `update.status`: the root slots and the last update's outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateStatus {}
operation!(
    UpdateStatus,
    "update.status",
    Permission::Read(Area::Status),
    UpdateReport
);

/// The answer to [`UpdateStatus`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateReport {
    /// The running root's version (`/etc/sealgate/image-version`).
    pub running_version: String,
    /// A live system (the ISO): it is installed, not updated.
    pub live: bool,
    /// RAUC answered; when not, `slots` is empty (not an appliance, or
    /// RAUC is down).
    pub slots_known: bool,
    pub slots: Vec<RootSlot>,
    /// "update to 0.2.0: running on slot B", as the boot check recorded it,
    /// or the update waiting for its trial boot.
    pub last_result: Option<String>,
}

/// `update.install`: verify a signed bundle and write it into the root
/// slot that is not running; it starts with the next boot (on trial: a
/// root whose gateway does not start falls back by itself). The source is
/// an absolute path to a file on the appliance or an http(s) URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateInstall {
    pub source: String,
}
operation!(
    UpdateInstall,
    "update.install",
    Permission::Write(Area::Settings),
    UpdateInstalled,
    audit = |s| serde_json::json!({ "source": without_credentials(&s.source) })
);

/// The answer to [`UpdateInstall`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateInstalled {
    /// The slot that now holds the update (`B`), when RAUC says.
    pub slot: Option<String>,
    /// The bundle's version, when RAUC's handler recorded it.
    pub version: Option<String>,
    /// What happens next, in words.
    pub text: String,
}

/// A URL's user name and password do not go into the audit log.
pub fn without_credentials(source: &str) -> String {
    let Some((scheme, rest)) = source.split_once("://") else {
        return source.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}{path}"),
        None => source.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_kept_out_of_the_audit_log() {
        assert_eq!(
            without_credentials("https://u:secret@updates.example/a@b.raucb"),
            "https://***@updates.example/a@b.raucb"
        );
        assert_eq!(
            without_credentials("https://updates.example/a@b.raucb"),
            "https://updates.example/a@b.raucb"
        );
        assert_eq!(without_credentials("/var/lib/x.raucb"), "/var/lib/x.raucb");
    }
}
