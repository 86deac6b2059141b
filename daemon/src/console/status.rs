//! Menu 1: one screen of appliance status.

use std::fs;
use std::io::Write;
use std::path::Path;

use super::command::{CONSOLES, Command};
use super::{ConsoleError, Context, network, token};

/// `status`.
pub fn show(ctx: &Context, out: &mut dyn Write) -> Result<(), ConsoleError> {
    let gateway = Command::GatewayState
        .query()
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    writeln!(out, "Sealgate {}", env!("CARGO_PKG_VERSION"))?;
    writeln!(out, "Uptime:       {}", uptime())?;
    writeln!(out, "Gateway:      {gateway}")?;
    writeln!(
        out,
        "Consoles:     {}",
        consoles(Command::ConsoleState.query())
    )?;
    writeln!(out, "Network:      {}", network::saved(ctx).summary())?;
    writeln!(out, "Addresses:")?;
    match Command::Addresses.query() {
        Some(text) => {
            for line in text.lines().filter(|l| !l.starts_with("lo ")) {
                writeln!(out, "  {}", clip(line, 76))?;
            }
        }
        None => writeln!(out, "  unknown")?,
    }
    writeln!(
        out,
        "Queue:        {} message file(s) in the spool",
        count_files(&ctx.data_dir.join("spool"), 4)
    )?;
    let hsm = if ctx.data_dir.join("hsm/softhsm2.conf").is_file() {
        "provisioned"
    } else {
        "not provisioned"
    };
    writeln!(out, "HSM token:    {hsm}")?;
    let setup = if token::current(ctx).is_some() {
        "present (setup wizard armed)"
    } else {
        "absent"
    };
    writeln!(out, "Setup token:  {setup}")?;
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    writeln!(
        out,
        "Root fs:      {}",
        describe_mount(&mounts, Path::new("/"))
    )?;
    writeln!(
        out,
        "Data fs:      {}",
        describe_mount(&mounts, &ctx.data_dir)
    )?;
    Ok(())
}

/// "ttyS0 active, tty1 active" from `systemctl is-active` output, one state
/// per line in the order of [`CONSOLES`].
fn consoles(states: Option<String>) -> String {
    let states = states.unwrap_or_default();
    let mut lines = states.lines().map(str::trim);
    CONSOLES
        .iter()
        .map(|tty| format!("{tty} {}", lines.next().unwrap_or("unknown")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// "read-only squashfs /dev/vda2" for the last mount on `target`.
fn describe_mount(mounts: &str, target: &Path) -> String {
    let found = mounts.lines().rev().find_map(|line| {
        let mut f = line.split_whitespace();
        let (source, point, fstype, options) = (f.next()?, f.next()?, f.next()?, f.next()?);
        (Path::new(point) == target).then_some((source, fstype, options))
    });
    match found {
        Some((source, fstype, options)) => {
            let mode = if options.split(',').any(|o| o == "ro") {
                "read-only"
            } else {
                "read-write"
            };
            clip(&format!("{mode} {fstype} {source}"), 64)
        }
        None => "not a mount point".into(),
    }
}

fn uptime() -> String {
    let secs = fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map(|s| s as u64);
    match secs {
        Some(s) => format!(
            "{}d {:02}h {:02}m {:02}s",
            s / 86_400,
            s % 86_400 / 3600,
            s % 3600 / 60,
            s % 60
        ),
        None => "unknown".into(),
    }
}

/// Regular files below `dir`, at most `depth` levels down.
fn count_files(dir: &Path, depth: u32) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_file() => 1,
            Ok(t) if t.is_dir() && depth > 0 => count_files(&entry.path(), depth - 1),
            _ => 0,
        })
        .sum()
}

/// At most `width` characters of `line`, for the 80-column terminal.
pub(crate) fn clip(line: &str, width: usize) -> String {
    line.chars().take(width).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_are_described() {
        let mounts = "/dev/root / squashfs ro,relatime 0 0\n\
                      /dev/vda3 /var/lib/sealgate ext4 rw,noatime 0 0\n";
        assert_eq!(
            describe_mount(mounts, Path::new("/")),
            "read-only squashfs /dev/root"
        );
        assert_eq!(
            describe_mount(mounts, Path::new("/var/lib/sealgate")),
            "read-write ext4 /dev/vda3"
        );
        assert_eq!(describe_mount(mounts, Path::new("/x")), "not a mount point");
    }

    #[test]
    fn console_states_are_named() {
        assert_eq!(
            consoles(Some("active\ninactive\n".into())),
            "ttyS0 active, tty1 inactive"
        );
        assert_eq!(consoles(None), "ttyS0 unknown, tty1 unknown");
    }
}
