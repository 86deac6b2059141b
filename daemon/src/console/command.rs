//! The fixed allow-list of system commands the console may run.
//!
//! Every command is a constant argument vector; nothing the administrator
//! types ever becomes part of a command line.

use std::io::Write;
use std::process::Command as Process;

use super::{ConsoleError, Context};

/// A system command the console is allowed to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
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
}

/// The terminals the recovery menu runs on, as in [`Command::ConsoleState`].
pub(crate) const CONSOLES: [&str; 2] = ["ttyS0", "tty1"];

impl Command {
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
        )
    }

    fn display(self) -> String {
        self.argv().join(" ")
    }

    /// Run a read-only query and return its standard output, or `None` when
    /// the tool is missing or fails (the caller shows "unknown").
    pub(crate) fn query(self) -> Option<String> {
        let (program, args) = self.argv().split_first()?;
        let output = Process::new(program).args(args).output().ok()?;
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
        let (program, args) = self
            .argv()
            .split_first()
            .ok_or_else(|| failed("empty command".into()))?;
        let status = Process::new(program)
            .args(args)
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
        };
        let mut out = Vec::new();
        assert!(Command::PowerOff.execute(&ctx, &mut out).is_ok());
        assert_eq!(
            String::from_utf8_lossy(&out),
            "dry run: would run `systemctl poweroff`\n"
        );
    }
}
