//! The fixed allow-list of system commands the console may run.
//!
//! Every command is a constant argument vector. One takes one more
//! argument, and only as a parsed value that cannot be anything else: a
//! disk the console itself listed ([`Disk`]), passed as one argument, never
//! through a shell; nothing else the administrator types ever becomes part
//! of a command line. Updates are the service's (`crate::service::update`,
//! with its own two RAUC commands and the parsed bundle source).

use std::io::Write;
use std::process::Command as Process;

use super::install::Disk;
use super::{ConsoleError, Context};

/// A system command the console is allowed to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command<'a> {
    /// State of the gateway service (read-only).
    GatewayState,
    /// State of the recovery menu on the serial console and the local
    /// screen, one line each in the order of [`CONSOLES`] (read-only).
    ConsoleState,
    /// Addresses of all interfaces (read-only).
    Addresses,
    /// Default routes (read-only).
    Routes,
    /// Recent journal lines of the gateway and first boot (read-only).
    RecentLog,
    /// Restart the gateway service.
    RestartGateway,
    /// Restart systemd-networkd so saved network settings take effect.
    RestartNetwork,
    /// Reboot.
    Reboot,
    /// Power off.
    PowerOff,
    /// The block devices the live system could install to (read-only).
    ListDisks,
    /// Write the appliance from the live medium onto a listed disk.
    InstallToDisk(&'a Disk),
    /// Make the other root slot the boot loader's first choice (roll back).
    ActivateOtherSlot,
    /// systemd-timesyncd's servers (read-only).
    TimeSync,
}

/// The terminals the recovery menu runs on, as in [`Command::ConsoleState`].
pub(crate) const CONSOLES: [&str; 2] = ["ttyS0", "tty1"];

impl Command<'_> {
    /// The one checked argument of [`Command::InstallToDisk`].
    fn argument(&self) -> Option<&str> {
        match self {
            Command::InstallToDisk(disk) => Some(disk.path()),
            _ => None,
        }
    }

    /// The constant part of the argument vector.
    fn argv(self) -> &'static [&'static str] {
        match self {
            Command::GatewayState => &["systemctl", "is-active", "sealgate.service"],
            Command::ConsoleState => &[
                "systemctl",
                "is-active",
                "sealgate-console@ttyS0.service",
                "sealgate-console@tty1.service",
            ],
            Command::Addresses => &["ip", "-brief", "address", "show"],
            Command::Routes => &["ip", "route", "show", "default"],
            Command::RecentLog => &[
                "journalctl",
                "--no-pager",
                "--quiet",
                "--output=short",
                "--lines=20",
                "--unit=sealgate.service",
                "--unit=sealgate-growpart.service",
                "--unit=sealgate-firstboot.service",
                "--unit=sealgate-factory-reset.service",
            ],
            Command::RestartGateway => &["systemctl", "restart", "sealgate.service"],
            Command::RestartNetwork => &["systemctl", "restart", "systemd-networkd.service"],
            Command::Reboot => &["systemctl", "reboot"],
            Command::PowerOff => &["systemctl", "poweroff"],
            Command::ListDisks => &[
                "lsblk",
                "--nodeps",
                "--noheadings",
                "--bytes",
                "--pairs",
                "--output",
                "NAME,TYPE,SIZE,RO,TRAN,MODEL",
            ],
            Command::InstallToDisk(_) => &["/usr/libexec/sealgate/install-disk"],
            Command::ActivateOtherSlot => &["rauc", "status", "mark-active", "other"],
            Command::TimeSync => &[
                "timedatectl",
                "show-timesync",
                "--property=ServerName",
                "--property=ServerAddress",
                "--property=LinkNTPServers",
                "--property=SystemNTPServers",
                "--property=FallbackNTPServers",
            ],
        }
    }

    /// Whether the command changes the system (and is skipped in dry-run).
    fn is_privileged(self) -> bool {
        !matches!(
            self,
            Command::GatewayState
                | Command::ConsoleState
                | Command::Addresses
                | Command::Routes
                | Command::RecentLog
                | Command::ListDisks
                | Command::TimeSync
        )
    }

    fn display(self) -> String {
        let mut words = self.argv().join(" ");
        if let Some(arg) = self.argument() {
            words.push(' ');
            words.push_str(arg);
        }
        words
    }

    fn process(self) -> Option<Process> {
        let (program, args) = self.argv().split_first()?;
        let mut process = Process::new(program);
        process.args(args).args(self.argument());
        Some(process)
    }

    /// Run a read-only query and return its standard output, or `None` when
    /// the tool is missing or fails (the caller shows "unknown").
    pub(crate) fn query(self) -> Option<String> {
        let output = self.process()?.output().ok()?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() || !text.trim().is_empty() {
            Some(text)
        } else {
            None
        }
    }

    /// Run a command that changes the system, or describe it in dry-run.
    pub(crate) fn execute(self, ctx: &Context, out: &mut dyn Write) -> Result<(), ConsoleError> {
        if ctx.dry_run && self.is_privileged() {
            writeln!(out, "dry run: would run `{}`", self.display())?;
            return Ok(());
        }
        let failed = |detail: String| ConsoleError::CommandFailed {
            command: self.display(),
            detail,
        };
        let status = self
            .process()
            .ok_or_else(|| failed("empty command".into()))?
            .status()
            .map_err(|e| failed(e.to_string()))?;
        if status.success() {
            Ok(())
        } else {
            Err(failed(status.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_queries_run_in_dry_run() {
        assert!(!Command::GatewayState.is_privileged());
        assert!(Command::Reboot.is_privileged());
        let ctx = Context {
            data_dir: std::env::temp_dir(),
            dry_run: true,
            live: false,
        };
        let mut out = Vec::new();
        assert!(Command::PowerOff.execute(&ctx, &mut out).is_ok());
        assert_eq!(
            String::from_utf8_lossy(&out),
            "dry run: would run `systemctl poweroff`\n"
        );
    }
}
