//! The bootstrap configuration: where Sealgate listens, where it keeps its
//! data, which domains and networks are its own and how it delivers.
//!
//! Read once at start-up from a TOML file (`--config FILE`) or taken from the
//! embedded default, which is safe to run on a laptop: loopback only, mail
//! written to a local outbox instead of the Internet.
//!
//! Trusts: nothing. Every key is typed and checked while parsing, unknown keys
//! are refused, and an error names the key and the line in the file so the
//! daemon never starts on a configuration it did not understand.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// The whole bootstrap configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// This node's name in tracking events and cluster views.
    pub node_name: String,
    /// The name this gateway announces in its SMTP banner, EHLO and Received headers.
    pub hostname: String,
    /// Everything mutable lives below this directory (spool, sled, TLS, token).
    pub data_dir: PathBuf,
    pub smtp: SmtpConfig,
    pub relay: RelayConfig,
    pub delivery: DeliveryConfig,
    pub web: WebConfig,
    /// The PKCS#11 token (`[hsm]`); absent means SoftHSM2 with its token in `<data_dir>/hsm`.
    pub hsm: Option<sealgate_hsm::HsmSettings>,
    /// Who gets what: rules, defaults and per-domain/address settings.
    pub policy: crate::policy::PolicyConfig,
    /// Local distribution lists: list address → members (addresses or lists).
    pub lists: std::collections::BTreeMap<String, Vec<String>>,
    /// Local sender groups for policy rules: name → members (addresses or groups).
    pub groups: std::collections::BTreeMap<String, Vec<String>>,
    /// An LDAP directory for distribution lists and sender groups.
    pub ldap: Option<crate::expand::ldap::LdapConfig>,
    /// Invitations to held recipients (`[invitations]`).
    pub invitations: InvitationConfig,
}

/// Invitations: a recipient whose mail is held (encryption required, no
/// certificate or key yet) is told how to provide one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InvitationConfig {
    /// Send invitations (default off: the sender's delay notice is all).
    pub enabled: bool,
    /// The invitation's From address, where replies go. Default: the
    /// address of the gateway's OpenPGP identity, else `postmaster@<hostname>`.
    pub from: Option<String>,
    /// At most one invitation per recipient in this many seconds (default 7 days).
    pub resend_after_secs: u64,
}

impl Default for InvitationConfig {
    fn default() -> Self {
        InvitationConfig {
            enabled: false,
            from: None,
            resend_after_secs: 7 * 24 * 3600,
        }
    }
}

/// The SMTP listener and its limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// Addresses to listen on.
    pub listen: Vec<SocketAddr>,
    /// Largest message accepted, in octets (advertised with SIZE).
    pub max_message_size: u64,
    /// Most recipients in one transaction; the next one gets 452.
    pub max_recipients: usize,
    /// Simultaneous connections from one IP address.
    pub max_connections_per_ip: usize,
    /// Simultaneous connections in all.
    pub max_connections: usize,
    /// Seconds a client may stay silent before it is disconnected.
    pub idle_timeout_secs: u64,
    /// Seconds a whole session may last.
    pub session_timeout_secs: u64,
    /// Errors in one session before it is disconnected.
    pub max_errors: u32,
    /// PEM certificate chain for STARTTLS; empty means a self-signed one in the data dir.
    pub tls_certificate: Option<PathBuf>,
    /// PEM private key for STARTTLS; goes with `tls_certificate`.
    pub tls_private_key: Option<PathBuf>,
}

/// The HTTPS listener for setup, administration and the portal.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Addresses to listen on (HTTPS only); empty disables the web UI.
    pub listen: Vec<SocketAddr>,
    /// Web connections open at once, in all (a new one over it is closed).
    pub max_connections: usize,
    /// Web connections open at once from one address.
    pub max_connections_per_ip: usize,
    /// A session ends after this many seconds without a request.
    pub session_idle_secs: u64,
    /// A session ends this many seconds after login, used or not.
    pub session_max_secs: u64,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 8443))],
            max_connections: 256,
            max_connections_per_ip: 32,
            session_idle_secs: 15 * 60,
            session_max_secs: 8 * 3600,
        }
    }
}

/// Who may relay and which domains are ours.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Domains this gateway accepts mail for from anywhere.
    pub domains: Vec<String>,
    /// Networks whose clients may relay to any domain.
    pub internal_networks: Vec<IpNetwork>,
}

/// How accepted mail leaves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    pub mode: DeliveryMode,
    /// Folder for `mode = "outbox"`; default `<data_dir>/outbox`.
    pub outbox_dir: Option<PathBuf>,
    /// `host:port` for `mode = "smarthost"`.
    pub smarthost: Option<String>,
    /// Port used for MX delivery (25 on the Internet; tests use others).
    pub mx_port: u16,
    /// DNS server for MX lookups (`ip:port`); default is the system resolver.
    pub dns_server: Option<SocketAddr>,
    /// Recipient domains whose delivery must use STARTTLS (never in clear).
    pub require_tls_domains: Vec<String>,
    /// Seconds a message may stay queued before it bounces (default 5 days).
    pub queue_lifetime_secs: u64,
    /// Seconds a recipient may stay held (encryption required, no method yet)
    /// or quarantined before the sender gets a failure notice (default 7 days).
    pub hold_lifetime_secs: u64,
    /// Seconds after which the sender of a message still being retried gets
    /// one delay notice (0: never; default 4 hours).
    pub delay_warning_secs: u64,
    /// First retry delay in seconds; doubles on each failure.
    pub retry_initial_secs: u64,
    /// Longest retry delay in seconds.
    pub retry_max_secs: u64,
    /// Deliveries running at once.
    pub concurrency: usize,
    /// Seconds to wait for a TCP connect or a reply from the remote server.
    pub timeout_secs: u64,
}

/// Where delivered mail goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryMode {
    /// One `.eml` file per delivery in a local folder: nothing leaves the machine.
    Outbox,
    /// Everything goes to one relay host.
    Smarthost,
    /// Each recipient domain's MX hosts, found in DNS.
    Mx,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_name: default_node_name(),
            hostname: "sealgate.localhost".into(),
            data_dir: PathBuf::from("./sealgate-data"),
            smtp: SmtpConfig::default(),
            relay: RelayConfig::default(),
            delivery: DeliveryConfig::default(),
            web: WebConfig::default(),
            hsm: None,
            policy: crate::policy::PolicyConfig::default(),
            lists: std::collections::BTreeMap::new(),
            groups: std::collections::BTreeMap::new(),
            ldap: None,
            invitations: InvitationConfig::default(),
        }
    }
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 2525))],
            max_message_size: 50 * 1024 * 1024,
            max_recipients: 1000,
            max_connections_per_ip: 50,
            max_connections: 1000,
            idle_timeout_secs: 300,
            session_timeout_secs: 1800,
            max_errors: 20,
            tls_certificate: None,
            tls_private_key: None,
        }
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            domains: vec!["localhost".into()],
            internal_networks: vec![
                IpNetwork::from_str("127.0.0.0/8").unwrap_or(IpNetwork::LOOPBACK_V4),
                IpNetwork::LOOPBACK_V6,
            ],
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            mode: DeliveryMode::Outbox,
            outbox_dir: None,
            smarthost: None,
            mx_port: 25,
            dns_server: None,
            require_tls_domains: Vec::new(),
            queue_lifetime_secs: 5 * 24 * 3600,
            hold_lifetime_secs: 7 * 24 * 3600,
            delay_warning_secs: 4 * 3600,
            retry_initial_secs: 60,
            retry_max_secs: 3600,
            concurrency: 20,
            timeout_secs: 60,
        }
    }
}

fn default_node_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "sealgate".into())
}

/// A configuration that could not be used; the text names the file, the key and the line.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and checks a TOML bootstrap file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: cannot read: {e}", path.display())))?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text)
            .map_err(|e| ConfigError(format!("{origin}: {}", describe_toml_error(text, &e))))?;
        config.check().map_err(|(key, what)| {
            let at = line_of_key(text, key)
                .map(|l| format!("line {l} "))
                .unwrap_or_default();
            ConfigError(format!("{origin}: {at}(key `{key}`): {what}"))
        })?;
        Ok(config)
    }

    /// Checks what types alone cannot say: combinations and ranges.
    /// The error names the offending key (dotted) and what is wrong.
    fn check(&self) -> Result<(), (&'static str, String)> {
        let fail = |key: &'static str, what: &str| Err((key, what.to_string()));
        if self.smtp.listen.is_empty() {
            return fail("smtp.listen", "at least one address is needed");
        }
        if self.smtp.max_message_size < 1024 {
            return fail("smtp.max_message_size", "must be at least 1024 octets");
        }
        if self.smtp.max_recipients == 0 {
            return fail("smtp.max_recipients", "must be at least 1");
        }
        if self.smtp.tls_certificate.is_some() != self.smtp.tls_private_key.is_some() {
            let key = if self.smtp.tls_certificate.is_some() {
                "smtp.tls_certificate"
            } else {
                "smtp.tls_private_key"
            };
            return fail(
                key,
                "`smtp.tls_certificate` and `smtp.tls_private_key` go together",
            );
        }
        if self.delivery.mode == DeliveryMode::Smarthost && self.delivery.smarthost.is_none() {
            return fail(
                "delivery.mode",
                "`mode = \"smarthost\"` needs the key `delivery.smarthost`",
            );
        }
        if let Some(host) = &self.delivery.smarthost {
            split_host_port(host, 25).map_err(|e| ("delivery.smarthost", e))?;
        }
        if self.delivery.concurrency == 0 {
            return fail("delivery.concurrency", "must be at least 1");
        }
        if self.delivery.retry_initial_secs == 0 {
            return fail("delivery.retry_initial_secs", "must be at least 1");
        }
        if self.delivery.retry_max_secs == 0 {
            return fail("delivery.retry_max_secs", "must be at least 1");
        }
        crate::policy::Policy::compile(self.policy.clone()).map_err(|(key, what)| {
            let key = if key.starts_with("policy.") {
                key
            } else {
                // A key inside a `[[policy.rule]]` entry.
                match key {
                    "name" => "policy.rule.name",
                    "action" => "policy.rule.action",
                    "body_regex" => "policy.rule.body_regex",
                    _ => "policy.rule",
                }
            };
            (key, what)
        })?;
        if let Some(ldap) = &self.ldap {
            ldap.check()?;
        }
        if let Some(from) = &self.invitations.from
            && crate::smtp::address::Address::parse(from).is_none()
        {
            return Err((
                "invitations.from",
                format!("`{from}` is not a mail address (local@domain)"),
            ));
        }
        for domain in &self.relay.domains {
            if domain.is_empty() || domain.contains(['@', ' ', '[', ']']) {
                return Err(("relay.domains", format!("`{domain}` is not a domain name")));
            }
        }
        Ok(())
    }

    /// The compiled policy (checked when the configuration was loaded).
    pub fn policy(&self) -> Result<crate::policy::Policy, ConfigError> {
        crate::policy::Policy::compile(self.policy.clone())
            .map_err(|(key, what)| ConfigError(format!("key `{key}`: {what}")))
    }

    /// The key store settings: the `[hsm]` table, or SoftHSM2 in the data directory.
    pub fn hsm_settings(&self) -> sealgate_hsm::HsmSettings {
        self.hsm
            .clone()
            .unwrap_or_else(|| sealgate_hsm::HsmSettings::with_data_dir(&self.data_dir))
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.smtp.idle_timeout_secs)
    }

    pub fn session_timeout(&self) -> Duration {
        Duration::from_secs(self.smtp.session_timeout_secs)
    }

    pub fn outbox_dir(&self) -> PathBuf {
        self.delivery
            .outbox_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("outbox"))
    }

    /// Whether `domain` is one of ours (case-insensitive, exact).
    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.relay
            .domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain))
    }

    /// Whether a client at `ip` may relay to any domain.
    pub fn is_internal(&self, ip: IpAddr) -> bool {
        self.relay.internal_networks.iter().any(|n| n.contains(ip))
    }
}

/// Adds the line and column to toml's message when it has a span.
fn describe_toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim().to_string();
    match error.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or("");
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            let key = key_at(text, span.start)
                .map(|k| format!(" (key `{k}`)"))
                .unwrap_or_default();
            format!("line {line}, column {column}{key}: {message}")
        }
        None => message,
    }
}

/// The dotted key whose line holds `offset`, from the nearest table header.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(line_start..)?.lines().next()?;
    let key = line.split('=').next()?.trim();
    let table = before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && l.ends_with(']'))
        .map(|l| l.trim_matches(['[', ']']).trim().to_string());
    if key.is_empty() || key.starts_with('[') {
        return table;
    }
    Some(match table {
        Some(t) => format!("{t}.{key}"),
        None => key.to_string(),
    })
}

/// The line (1-based) where a dotted key (`table.key`) is set, if it is.
fn line_of_key(text: &str, dotted: &str) -> Option<usize> {
    let (table, key) = match dotted.rsplit_once('.') {
        Some((t, k)) => (Some(t), k),
        None => (None, dotted),
    };
    let mut current: Option<String> = None;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') && trimmed.ends_with(']') {
            current = Some(trimmed.trim_matches(['[', ']']).trim().to_string());
            continue;
        }
        let Some(name) = trimmed.split('=').next().map(str::trim) else {
            continue;
        };
        let in_table = match (table, &current) {
            (Some(t), Some(c)) => t == c,
            (None, None) => true,
            // `table.key = …` written as a dotted key at the top level.
            (Some(t), None) => name == format!("{t}.{key}"),
            (None, Some(_)) => false,
        };
        if in_table && (name == key || table.is_some_and(|t| name == format!("{t}.{key}"))) {
            return Some(index + 1);
        }
    }
    None
}

/// Splits `host:port` (or `[v6]:port`, or a bare host with `default_port`).
pub fn split_host_port(text: &str, default_port: u16) -> Result<(String, u16), String> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, tail) = rest
            .split_once(']')
            .ok_or_else(|| format!("`{text}`: missing `]`"))?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| format!("`{text}`: bad port"))?,
            None if tail.is_empty() => default_port,
            None => return Err(format!("`{text}`: expected `:port` after `]`")),
        };
        return Ok((host.to_string(), port));
    }
    match text.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            let port = port.parse().map_err(|_| format!("`{text}`: bad port"))?;
            if host.is_empty() {
                return Err(format!("`{text}`: empty host"));
            }
            Ok((host.to_string(), port))
        }
        _ if text.is_empty() => Err("empty host".into()),
        _ => Ok((text.to_string(), default_port)),
    }
}

/// An IP network in CIDR form (`10.0.0.0/8`, `::1/128`, or a bare address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNetwork {
    address: IpAddr,
    prefix: u8,
}

impl IpNetwork {
    pub const LOOPBACK_V4: IpNetwork = IpNetwork {
        address: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        prefix: 8,
    };
    pub const LOOPBACK_V6: IpNetwork = IpNetwork {
        address: IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        prefix: 128,
    };

    /// Whether `ip` lies in this network (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.address, ip) {
            (IpAddr::V4(net), IpAddr::V4(addr)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(addr) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(addr)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(addr) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNetwork {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let address: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not an IP network (like 10.0.0.0/8)"))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: prefix length must be 0..={max}"))?,
            None => max,
        };
        Ok(IpNetwork { address, prefix })
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

impl<'de> Deserialize<'de> for IpNetwork {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn embedded_default_is_loopback_and_outbox() {
        let c = Config::default();
        assert_eq!(c.smtp.listen, vec!["127.0.0.1:2525".parse().unwrap()]);
        assert_eq!(c.delivery.mode, DeliveryMode::Outbox);
        assert!(c.is_internal("127.0.0.1".parse().unwrap()));
        assert!(c.is_internal("::1".parse().unwrap()));
        assert!(!c.is_internal("192.0.2.1".parse().unwrap()));
        assert_eq!(c.data_dir, PathBuf::from("./sealgate-data"));
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let text =
            "hostname = \"gw\"\n\n[smtp]\nlisten = [\"127.0.0.1:25\"]\nmax_mesage_size = 10\n";
        let err = Config::parse(text, "gw.toml").unwrap_err().0;
        assert!(err.starts_with("gw.toml: line 5"), "{err}");
        assert!(err.contains("max_mesage_size"), "{err}");
    }

    #[test]
    fn bad_network_names_key_and_line() {
        let text = "[relay]\ninternal_networks = [\"10.0.0.0/33\"]\n";
        let err = Config::parse(text, "x.toml").unwrap_err().0;
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("relay.internal_networks"), "{err}");
        assert!(err.contains("prefix length"), "{err}");
    }

    #[test]
    fn semantic_errors_name_key_and_line() {
        let text = "[smtp]\nlisten = [\"127.0.0.1:25\"]\nmax_message_size = 10\n";
        let err = Config::parse(text, "gw.toml").unwrap_err().0;
        assert!(
            err.starts_with("gw.toml: line 3 (key `smtp.max_message_size`)"),
            "{err}"
        );
        let text = "[delivery]\nconcurrency = 2\nmode = \"smarthost\"\n";
        let err = Config::parse(text, "gw.toml").unwrap_err().0;
        assert!(
            err.contains("line 3") && err.contains("delivery.smarthost"),
            "{err}"
        );
    }

    #[test]
    fn smarthost_mode_needs_a_host() {
        let err = Config::parse("[delivery]\nmode = \"smarthost\"\n", "x.toml")
            .unwrap_err()
            .0;
        assert!(err.contains("delivery.smarthost"), "{err}");
        let ok = Config::parse(
            "[delivery]\nmode = \"smarthost\"\nsmarthost = \"127.0.0.1:2600\"\n",
            "x.toml",
        )
        .unwrap();
        assert_eq!(ok.delivery.smarthost.as_deref(), Some("127.0.0.1:2600"));
    }

    #[test]
    fn networks_match() {
        let n: IpNetwork = "10.1.0.0/16".parse().unwrap();
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.0.9".parse().unwrap()));
        let all: IpNetwork = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.9".parse().unwrap()));
        assert!(!all.contains("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(
            split_host_port("mx.example:2525", 25).unwrap(),
            ("mx.example".into(), 2525)
        );
        assert_eq!(
            split_host_port("mx.example", 25).unwrap(),
            ("mx.example".into(), 25)
        );
        assert_eq!(split_host_port("[::1]:26", 25).unwrap(), ("::1".into(), 26));
        assert!(split_host_port("mx:bad", 25).is_err());
    }
}
