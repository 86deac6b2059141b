//! Menu 1: one screen of appliance status: what runs (image version, root
//! slot), where to open the setup wizard and which TLS certificate it
//! shows, the network, time, queue, token and storage state, and the
//! outcome of the last update.

use std::fs;
use std::io::Write;
use std::path::Path;

use base64::Engine as _;

use super::command::{CONSOLES, Command};
use super::{ConsoleError, Context, network, token, update};

/// The effective configuration (render-config), else the factory one.
const CONFIGS: [&str; 2] = ["/run/sealgate/sealgate.toml", "/etc/sealgate/sealgate.toml"];
/// timesyncd touches this once the clock is synchronised.
const TIME_SYNCHRONIZED: &str = "/run/systemd/timesync/synchronized";

/// `status`.
pub fn show(ctx: &Context, out: &mut dyn Write) -> Result<(), ConsoleError> {
    let gateway = Command::GatewayState
        .query()
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    writeln!(out, "Sealgate {}", env!("CARGO_PKG_VERSION"))?;
    writeln!(out, "Image:        {}", clip(&image(ctx), 64))?;
    writeln!(out, "Uptime:       {}", uptime())?;
    writeln!(out, "Gateway:      {gateway}")?;
    writeln!(
        out,
        "Consoles:     {}",
        consoles(Command::ConsoleState.query())
    )?;
    let addresses = Command::Addresses.query();
    writeln!(
        out,
        "Web setup:    {}",
        clip(&web_address(ctx, addresses.as_deref()), 64)
    )?;
    writeln!(
        out,
        "TLS SHA-256:  {}",
        tls_fingerprint(ctx).unwrap_or_else(|| "no certificate yet".into())
    )?;
    writeln!(out, "Network:      {}", network::saved(ctx).summary())?;
    writeln!(out, "Addresses:")?;
    match &addresses {
        Some(text) => {
            for line in text.lines().filter(|l| !l.starts_with("lo ")) {
                writeln!(out, "  {}", clip(line, 76))?;
            }
        }
        None => writeln!(out, "  unknown")?,
    }
    writeln!(
        out,
        "Time sync:    {}",
        clip(&time_sync(Command::TimeSync.query()), 64)
    )?;
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
    if !ctx.live {
        update::show(ctx, out)?;
    }
    Ok(())
}

/// The running root's version, as the build wrote it.
pub(crate) fn image_version() -> String {
    crate::service::update::image_version()
}

/// "0.1.0+1a2b3c, root slot A", or the live system.
fn image(ctx: &Context) -> String {
    let version = image_version();
    if ctx.live {
        return format!("{version}, live system (nothing is saved)");
    }
    match booted_slot() {
        Some(slot) => format!("{version}, root slot {slot}"),
        None => version,
    }
}

/// The root slot the boot loader started (`rauc.slot=` on the command line).
pub(crate) fn booted_slot() -> Option<String> {
    let cmdline = fs::read_to_string("/proc/cmdline").ok()?;
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("rauc.slot="))
        .map(str::to_owned)
}

/// Where an administrator opens the web UI: `https://ADDRESS[:PORT]/setup`
/// while the setup token is armed, from the configured listener and the
/// first IPv4 address of the appliance.
fn web_address(ctx: &Context, addresses: Option<&str>) -> String {
    let listen = CONFIGS
        .iter()
        .find_map(|path| web_listen(&fs::read_to_string(path).ok()?));
    let Some(listen) = listen else {
        return "unknown (no configuration)".into();
    };
    let Some(addr) = listen.first() else {
        return "the web UI is switched off ([web] listen is empty)".into();
    };
    let host = if addr.ip().is_unspecified() {
        match addresses.and_then(first_ipv4) {
            Some(ip) => ip,
            None => return "no IPv4 address yet".into(),
        }
    } else {
        addr.ip().to_string()
    };
    let port = if addr.port() == 443 {
        String::new()
    } else {
        format!(":{}", addr.port())
    };
    let path = if token::current(ctx).is_some() {
        "/setup"
    } else {
        "/"
    };
    format!("https://{host}{port}{path}")
}

/// `[web] listen` of a configuration file.
fn web_listen(toml_text: &str) -> Option<Vec<std::net::SocketAddr>> {
    let value: toml::Value = toml::from_str(toml_text).ok()?;
    let listen = value.get("web")?.get("listen")?.as_array()?;
    Some(
        listen
            .iter()
            .filter_map(|v| v.as_str()?.parse().ok())
            .collect(),
    )
}

/// The first IPv4 address in `ip -brief address` output, lo excepted.
fn first_ipv4(text: &str) -> Option<String> {
    text.lines()
        .filter(|l| !l.starts_with("lo "))
        .flat_map(|l| l.split_whitespace().skip(2))
        .find_map(|w| {
            let ip = w.split('/').next()?;
            ip.parse::<std::net::Ipv4Addr>()
                .ok()
                .map(|ip| ip.to_string())
        })
}

/// SHA-256 of the TLS certificate the web UI and STARTTLS present, so an
/// administrator can check what the browser shows for the self-signed one.
fn tls_fingerprint(ctx: &Context) -> Option<String> {
    let pem = fs::read_to_string(ctx.data_dir.join("tls/smtp-cert.pem")).ok()?;
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .ok()?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der);
    Some(digest.as_ref().iter().map(|b| format!("{b:02x}")).collect())
}

/// One line on time synchronisation from `timedatectl show-timesync`.
fn time_sync(state: Option<String>) -> String {
    let Some(state) = state else {
        return "timesyncd is not running".into();
    };
    let get = |key: &str| {
        state
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(str::trim)
            .unwrap_or("")
            .to_owned()
    };
    let (name, address) = (get("ServerName"), get("ServerAddress"));
    let servers = format!("{} {}", get("LinkNTPServers"), get("SystemNTPServers"));
    // A server from the fallback list (timesyncd.conf.d/sealgate.conf) is in
    // use only when neither DHCP nor the wizard named one: say so.
    let fallback = !name.is_empty()
        && servers.trim().is_empty()
        && get("FallbackNTPServers")
            .split_whitespace()
            .any(|s| s == name);
    let origin = if fallback { " (fallback)" } else { "" };
    if Path::new(TIME_SYNCHRONIZED).exists() && !name.is_empty() {
        format!("synchronised with {name}{origin} {address}")
            .trim()
            .to_owned()
    } else if !name.is_empty() {
        format!("contacting {name}{origin}")
    } else if servers.trim().is_empty() {
        "no NTP server (none by DHCP; the setup wizard sets one)".into()
    } else {
        format!("servers {}", servers.trim())
    }
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
    fn web_address_comes_from_the_listener_and_the_first_ipv4() {
        assert_eq!(
            web_listen("[web]\nlisten = [\"0.0.0.0:8443\"]\n"),
            Some(vec![std::net::SocketAddr::from(([0, 0, 0, 0], 8443))])
        );
        assert_eq!(web_listen("[web]\nlisten = []\n"), Some(vec![]));
        let ip = "lo               UNKNOWN        127.0.0.1/8 ::1/128\n\
                  enp0s2           UP             10.0.2.15/24 fe80::5054:ff:fe12:3456/64\n";
        assert_eq!(first_ipv4(ip).as_deref(), Some("10.0.2.15"));
        assert_eq!(first_ipv4("enp0s2 DOWN \n"), None);
    }

    #[test]
    fn time_sync_is_described() {
        assert_eq!(time_sync(None), "timesyncd is not running");
        assert_eq!(
            time_sync(Some(
                "ServerName=\nServerAddress=\nLinkNTPServers=\nSystemNTPServers=\n".into()
            )),
            "no NTP server (none by DHCP; the setup wizard sets one)"
        );
        assert_eq!(
            time_sync(Some("ServerName=ntp.lan\nServerAddress=\n".into())),
            "contacting ntp.lan"
        );
        assert_eq!(
            time_sync(Some(
                "ServerName=0.debian.pool.ntp.org\nServerAddress=\nLinkNTPServers=\n\
                 SystemNTPServers=\nFallbackNTPServers=0.debian.pool.ntp.org 1.debian.pool.ntp.org\n"
                    .into()
            )),
            "contacting 0.debian.pool.ntp.org (fallback)"
        );
        assert_eq!(
            time_sync(Some(
                "ServerName=ntp.lan\nLinkNTPServers=ntp.lan\nFallbackNTPServers=ntp.lan\n".into()
            )),
            "contacting ntp.lan"
        );
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
