//! Menu 2: network settings.
//!
//! The root is read-only, so the setting lives on the data partition as a
//! systemd-networkd file (`<data>/network/20-wired.network`). Applying it
//! copies it to `/run/systemd/network/`, where it overrides the factory
//! DHCP file of the same name, and restarts systemd-networkd; at boot
//! `sealgate-network.service` does the same copy before networkd starts.

use std::fmt::Write as _;
use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use super::command::Command;
use super::status::clip;
use super::{ConsoleError, Context};

const FILE_NAME: &str = "20-wired.network";
const RUN_DIR: &str = "/run/systemd/network";

/// A network setting for all wired interfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    /// Address, gateway and DNS by DHCP.
    Dhcp,
    /// A static IPv4 address.
    Static {
        /// Interface address.
        address: Ipv4Addr,
        /// Prefix length, 0..=32.
        prefix: u8,
        /// Default gateway.
        gateway: Option<Ipv4Addr>,
        /// DNS servers.
        dns: Vec<IpAddr>,
    },
}

impl Setting {
    /// Parse what the administrator typed for a static setting.
    pub fn parse_static(
        address: &str,
        gateway: Option<&str>,
        dns: &[String],
    ) -> Result<Self, ConsoleError> {
        let bad = |what: &str, value: &str| {
            ConsoleError::InvalidInput(format!("not a valid {what}: {value:?}"))
        };
        let address = address.trim();
        let (addr, prefix) = address
            .split_once('/')
            .ok_or_else(|| bad("address/prefix (e.g. 192.168.1.10/24)", address))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad("IPv4 address", address))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| bad("prefix length", address))?;
        let gateway = match gateway.map(str::trim).filter(|g| !g.is_empty()) {
            Some(g) => Some(g.parse().map_err(|_| bad("gateway", g))?),
            None => None,
        };
        let dns = dns
            .iter()
            .flat_map(|d| d.split([' ', ',']))
            .filter(|d| !d.is_empty())
            .map(|d| d.parse().map_err(|_| bad("DNS server", d)))
            .collect::<Result<Vec<IpAddr>, _>>()?;
        Ok(Setting::Static {
            address: addr,
            prefix,
            gateway,
            dns,
        })
    }

    /// One line for the status screen.
    pub fn summary(&self) -> String {
        match self {
            Setting::Dhcp => "DHCP".into(),
            Setting::Static {
                address,
                prefix,
                gateway,
                dns,
            } => {
                let mut s = format!("static {address}/{prefix}");
                if let Some(g) = gateway {
                    let _ = write!(s, " gateway {g}");
                }
                for d in dns {
                    let _ = write!(s, " dns {d}");
                }
                s
            }
        }
    }

    /// The systemd-networkd file for this setting.
    fn render(&self) -> String {
        let mut s = String::from(
            "# Written by the Sealgate console (menu 2). Applied at boot by\n\
             # sealgate-network.service.\n\
             [Match]\n\
             Name=en* eth*\n\n\
             [Network]\n",
        );
        match self {
            Setting::Dhcp => s.push_str("DHCP=yes\n"),
            Setting::Static {
                address,
                prefix,
                gateway,
                dns,
            } => {
                s.push_str("DHCP=no\n");
                let _ = writeln!(s, "Address={address}/{prefix}");
                if let Some(g) = gateway {
                    let _ = writeln!(s, "Gateway={g}");
                }
                for d in dns {
                    let _ = writeln!(s, "DNS={d}");
                }
            }
        }
        s
    }

    /// Read a file written by [`Setting::render`].
    fn parse_file(text: &str) -> Option<Self> {
        let mut dhcp = None;
        let mut address = None;
        let mut gateway = None;
        let mut dns = Vec::new();
        for line in text.lines().map(str::trim) {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            match key.trim() {
                "DHCP" => dhcp = Some(value.trim() != "no"),
                "Address" => address = Some(value.trim().to_owned()),
                "Gateway" => gateway = Some(value.trim().to_owned()),
                "DNS" => dns.push(value.trim().to_owned()),
                _ => {}
            }
        }
        match (dhcp, address) {
            (_, Some(address)) => Setting::parse_static(&address, gateway.as_deref(), &dns).ok(),
            (Some(true), None) => Some(Setting::Dhcp),
            _ => None,
        }
    }
}

fn saved_path(ctx: &Context) -> PathBuf {
    ctx.data_dir.join("network").join(FILE_NAME)
}

/// The saved setting; DHCP (the factory setting) when none is saved.
pub fn saved(ctx: &Context) -> Setting {
    fs::read_to_string(saved_path(ctx))
        .ok()
        .and_then(|t| Setting::parse_file(&t))
        .unwrap_or(Setting::Dhcp)
}

/// `network show`.
pub fn show(ctx: &Context, out: &mut dyn Write) -> Result<(), ConsoleError> {
    writeln!(out, "Saved setting: {}", saved(ctx).summary())?;
    writeln!(out, "Addresses:")?;
    print_indented(Command::Addresses.query(), out)?;
    writeln!(out, "Default routes:")?;
    print_indented(Command::Routes.query(), out)?;
    if let Ok(resolv) = fs::read_to_string("/etc/resolv.conf") {
        for line in resolv.lines().filter(|l| l.starts_with("nameserver")) {
            writeln!(out, "  {}", clip(line, 76))?;
        }
    }
    Ok(())
}

fn print_indented(text: Option<String>, out: &mut dyn Write) -> Result<(), ConsoleError> {
    match text {
        Some(text) if !text.trim().is_empty() => {
            for line in text.lines() {
                writeln!(out, "  {}", clip(line, 76))?;
            }
        }
        _ => writeln!(out, "  none")?,
    }
    Ok(())
}

/// Save `setting` on the data partition and apply it now.
pub fn apply(ctx: &Context, setting: &Setting, out: &mut dyn Write) -> Result<(), ConsoleError> {
    let path = saved_path(ctx);
    write_atomic(&path, &setting.render())?;
    writeln!(out, "Saved network setting: {}", setting.summary())?;
    if ctx.dry_run {
        writeln!(
            out,
            "dry run: would copy {} to {RUN_DIR}/{FILE_NAME}",
            path.display()
        )?;
    } else {
        let run = Path::new(RUN_DIR);
        fs::create_dir_all(run).map_err(|e| ConsoleError::io("creating", run, e))?;
        write_atomic(&run.join(FILE_NAME), &setting.render())?;
    }
    Command::RestartNetwork.execute(ctx, out)?;
    writeln!(out, "Network setting applied.")?;
    Ok(())
}

fn write_atomic(path: &Path, text: &str) -> Result<(), ConsoleError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| ConsoleError::io("creating", dir, e))?;
    let tmp = path.with_extension("tmp");
    {
        let mut file = fs::File::create(&tmp).map_err(|e| ConsoleError::io("creating", &tmp, e))?;
        file.write_all(text.as_bytes())
            .map_err(|e| ConsoleError::io("writing", &tmp, e))?;
        file.sync_all()
            .map_err(|e| ConsoleError::io("syncing", &tmp, e))?;
    }
    fs::rename(&tmp, path).map_err(|e| ConsoleError::io("replacing", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_setting_round_trips_through_the_file() {
        let s = Setting::parse_static(
            "192.168.1.10/24",
            Some("192.168.1.1"),
            &["9.9.9.9 1.1.1.1".into()],
        );
        assert!(s.is_ok(), "parse failed: {s:?}");
        let Ok(s) = s else { return };
        assert_eq!(Setting::parse_file(&s.render()), Some(s.clone()));
        assert_eq!(
            s.summary(),
            "static 192.168.1.10/24 gateway 192.168.1.1 dns 9.9.9.9 dns 1.1.1.1"
        );
        assert_eq!(
            Setting::parse_file(&Setting::Dhcp.render()),
            Some(Setting::Dhcp)
        );
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(Setting::parse_static("192.168.1.10", None, &[]).is_err());
        assert!(Setting::parse_static("192.168.1.10/33", None, &[]).is_err());
        assert!(Setting::parse_static("10.0.0.1/8", Some("x"), &[]).is_err());
        assert!(Setting::parse_static("10.0.0.1/8; reboot", None, &[]).is_err());
    }
}
