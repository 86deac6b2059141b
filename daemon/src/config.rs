//! The bootstrap configuration file, and the effective configuration of
//! one settings version.
//!
//! The file (`--config FILE`, or the embedded default, which is safe to
//! run on a laptop: loopback only, mail written to a local outbox) holds
//! two kinds of keys:
//!
//! - **bootstrap**: what must be known before the data directory opens
//!   and never changes while the daemon runs: `node_name`, `data_dir`,
//!   `smtp.listen`, `web.listen`, `[hsm]` (token module, label, PIN file,
//!   SoftHSM configuration), `log`;
//! - **settings** (the schema of `sealgate_api::settings::Settings`):
//!   everything an administrator changes at run time. On the first start
//!   they are imported from the file as settings version 1; after that the
//!   settings store is authoritative (`crate::settings`).
//!
//! [`Config`] is both: parsed from the file, and rebuilt for every
//! settings version by [`Config::with_settings`], so the rest of the
//! daemon reads one effective configuration per version.
//!
//! Trusts: nothing. Every key is typed and checked while parsing, unknown keys
//! are refused, and an error names the key and the line in the file so the
//! daemon never starts on a configuration it did not understand.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sealgate_api::FieldError;
pub use sealgate_api::settings::portal::PortalSettings;
pub use sealgate_api::settings::{
    DeliveryMode, DeliverySettings, InvitationSettings, IpNetwork, LdapSettings, RelaySettings,
    Settings, SmtpSettings, TrackingSettings,
};
use serde::Deserialize;

/// The bootstrap file, and the effective configuration of one settings version.
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
    pub relay: RelaySettings,
    pub delivery: DeliverySettings,
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
    pub ldap: Option<LdapSettings>,
    /// Invitations to held recipients (`[invitations]`).
    pub invitations: InvitationSettings,
    /// Message tracking (`[tracking]`).
    pub tracking: TrackingSettings,
    /// Authenticated TLS to next hops (`[outbound_tls]`).
    pub outbound_tls: sealgate_api::settings::trust::OutboundTlsSettings,
    /// Key discovery when the directory has none (`[discovery]`).
    pub discovery: sealgate_api::settings::trust::DiscoverySettings,
    /// S/MIME trust anchors, revocation, ciphers (`[smime]`).
    pub smime: sealgate_api::settings::trust::SmimeTrustSettings,
    /// Shared state in PostgreSQL for a cluster of nodes (`[cluster]`, bootstrap); absent: a single node.
    pub cluster: Option<crate::cluster::ClusterConfig>,
    /// The secure web mail portal (`[portal]`): its listener (bootstrap)
    /// and its settings.
    pub portal: PortalConfig,
}

/// The `[portal]` table: `listen` (bootstrap: the portal's own HTTPS
/// listener, separate from the administration UI's) and the run-time
/// keys of [`PortalSettings`], written in one table.
#[derive(Debug, Clone, Default)]
pub struct PortalConfig {
    /// Addresses the portal listens on; empty: no portal listener.
    pub listen: Vec<SocketAddr>,
    pub settings: PortalSettings,
}

impl<'de> Deserialize<'de> for PortalConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut table = toml::Table::deserialize(d)?;
        let listen = match table.remove("listen") {
            Some(value) => Vec::<SocketAddr>::deserialize(value).map_err(D::Error::custom)?,
            None => Vec::new(),
        };
        let settings =
            PortalSettings::deserialize(toml::Value::Table(table)).map_err(D::Error::custom)?;
        Ok(PortalConfig { listen, settings })
    }
}

/// The SMTP listener (bootstrap: `listen`) and its limits and certificate
/// (settings: the same keys as [`SmtpSettings`], written in one table).
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

impl SmtpConfig {
    /// The run-time part.
    pub fn settings(&self) -> SmtpSettings {
        SmtpSettings {
            max_message_size: self.max_message_size,
            max_recipients: self.max_recipients,
            max_connections_per_ip: self.max_connections_per_ip,
            max_connections: self.max_connections,
            idle_timeout_secs: self.idle_timeout_secs,
            session_timeout_secs: self.session_timeout_secs,
            max_errors: self.max_errors,
            tls_certificate: self.tls_certificate.clone(),
            tls_private_key: self.tls_private_key.clone(),
        }
    }

    fn with_settings(listen: Vec<SocketAddr>, s: &SmtpSettings) -> SmtpConfig {
        SmtpConfig {
            listen,
            max_message_size: s.max_message_size,
            max_recipients: s.max_recipients,
            max_connections_per_ip: s.max_connections_per_ip,
            max_connections: s.max_connections,
            idle_timeout_secs: s.idle_timeout_secs,
            session_timeout_secs: s.session_timeout_secs,
            max_errors: s.max_errors,
            tls_certificate: s.tls_certificate.clone(),
            tls_private_key: s.tls_private_key.clone(),
        }
    }
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

impl Default for Config {
    fn default() -> Self {
        Config::with_settings_of(
            default_node_name(),
            PathBuf::from("./sealgate-data"),
            vec![SocketAddr::from(([127, 0, 0, 1], 2525))],
            WebConfig::default(),
            None,
            &Settings::default(),
        )
    }
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig::with_settings(
            vec![SocketAddr::from(([127, 0, 0, 1], 2525))],
            &SmtpSettings::default(),
        )
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
        let mut errors = config.check_bootstrap();
        errors.extend(check_settings(&config.settings()));
        if errors.is_empty() {
            return Ok(config);
        }
        let described: Vec<String> = errors
            .iter()
            .map(|e| {
                let at = line_of_key(text, &e.key)
                    .map(|l| format!("line {l} "))
                    .unwrap_or_default();
                format!("{at}(key `{}`): {}", e.key, e.message)
            })
            .collect();
        Err(ConfigError(format!("{origin}: {}", described.join("; "))))
    }

    /// The configuration of one settings version: this one's bootstrap
    /// keys with `settings`.
    pub fn with_settings(&self, settings: &Settings) -> Config {
        let mut config = Config::with_settings_of(
            self.node_name.clone(),
            self.data_dir.clone(),
            self.smtp.listen.clone(),
            self.web.clone(),
            self.hsm.clone(),
            settings,
        );
        config.cluster = self.cluster.clone();
        config.portal.listen = self.portal.listen.clone();
        config
    }

    fn with_settings_of(
        node_name: String,
        data_dir: PathBuf,
        smtp_listen: Vec<SocketAddr>,
        web: WebConfig,
        hsm: Option<sealgate_hsm::HsmSettings>,
        s: &Settings,
    ) -> Config {
        Config {
            node_name,
            hostname: s.hostname.clone(),
            data_dir,
            smtp: SmtpConfig::with_settings(smtp_listen, &s.smtp),
            relay: s.relay.clone(),
            delivery: s.delivery.clone(),
            web,
            hsm,
            policy: s.policy.clone(),
            lists: s.lists.clone(),
            groups: s.groups.clone(),
            ldap: s.ldap.clone(),
            invitations: s.invitations.clone(),
            tracking: s.tracking.clone(),
            outbound_tls: s.outbound_tls.clone(),
            discovery: s.discovery.clone(),
            smime: s.smime.clone(),
            cluster: None,
            portal: PortalConfig {
                listen: Vec::new(),
                settings: s.portal.clone(),
            },
        }
    }

    /// The run-time settings in this configuration.
    pub fn settings(&self) -> Settings {
        Settings {
            hostname: self.hostname.clone(),
            smtp: self.smtp.settings(),
            relay: self.relay.clone(),
            delivery: self.delivery.clone(),
            policy: self.policy.clone(),
            lists: self.lists.clone(),
            groups: self.groups.clone(),
            ldap: self.ldap.clone(),
            invitations: self.invitations.clone(),
            tracking: self.tracking.clone(),
            outbound_tls: self.outbound_tls.clone(),
            discovery: self.discovery.clone(),
            smime: self.smime.clone(),
            portal: self.portal.settings.clone(),
        }
    }

    /// Checks the bootstrap keys.
    fn check_bootstrap(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.smtp.listen.is_empty() {
            errors.push(FieldError::new(
                "smtp.listen",
                "at least one address is needed",
            ));
        }
        if self.node_name.is_empty() {
            errors.push(FieldError::new("node_name", "must not be empty"));
        }
        if let Some(Err((key, what))) = self.cluster.as_ref().map(|c| c.check()) {
            errors.push(FieldError::new(key, what));
        }
        errors
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

/// Checks what types alone cannot say about a whole settings tree:
/// combinations and ranges, policies that compile, addresses that parse.
/// Every problem is returned, each naming its dotted key; the same check
/// guards the bootstrap file and every new settings version.
pub fn check_settings(s: &Settings) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut fail = |key: &str, what: &str| errors.push(FieldError::new(key, what));
    if s.hostname.is_empty() || s.hostname.contains([' ', '@', '/', '[', ']']) {
        fail("hostname", "must be a host name");
    }
    if s.smtp.max_message_size < 1024 {
        fail("smtp.max_message_size", "must be at least 1024 octets");
    }
    if s.smtp.max_recipients == 0 {
        fail("smtp.max_recipients", "must be at least 1");
    }
    if s.smtp.max_connections == 0 {
        fail("smtp.max_connections", "must be at least 1");
    }
    if s.smtp.max_connections_per_ip == 0 {
        fail("smtp.max_connections_per_ip", "must be at least 1");
    }
    if s.smtp.tls_certificate.is_some() != s.smtp.tls_private_key.is_some() {
        let key = if s.smtp.tls_certificate.is_some() {
            "smtp.tls_certificate"
        } else {
            "smtp.tls_private_key"
        };
        fail(
            key,
            "`smtp.tls_certificate` and `smtp.tls_private_key` go together",
        );
    }
    if s.delivery.mode == DeliveryMode::Smarthost && s.delivery.smarthost.is_none() {
        fail(
            "delivery.mode",
            "`mode = \"smarthost\"` needs the key `delivery.smarthost`",
        );
    }
    for (key, host) in [
        ("delivery.smarthost", &s.delivery.smarthost),
        ("delivery.internal_server", &s.delivery.internal_server),
    ] {
        if let Some(host) = host
            && let Err(e) = split_host_port(host, 25)
        {
            fail(key, &e);
        }
    }
    for (domain, hop) in &s.delivery.routes {
        if !is_domain_pattern(domain) {
            fail(
                "delivery.routes",
                &format!("`{domain}` is not a domain name"),
            );
        }
        if let Err(e) = split_host_port(hop, 25) {
            fail("delivery.routes", &format!("`{domain}`: {e}"));
        }
    }
    for (key, value) in [
        ("delivery.concurrency", s.delivery.concurrency as u64),
        ("delivery.retry_initial_secs", s.delivery.retry_initial_secs),
        ("delivery.retry_max_secs", s.delivery.retry_max_secs),
        ("delivery.timeout_secs", s.delivery.timeout_secs),
    ] {
        if value == 0 {
            fail(key, "must be at least 1");
        }
    }
    if s.tracking.retention_days == 0 {
        fail("tracking.retention_days", "must be at least 1");
    }
    if let Err((key, what)) = crate::policy::Policy::compile(s.policy.clone()) {
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
        fail(key, &what);
    }
    if let Some(ldap) = &s.ldap {
        errors.extend(crate::expand::ldap::check(ldap));
    }
    if let Some(from) = &s.invitations.from
        && crate::address::Address::parse(from).is_none()
    {
        errors.push(FieldError::new(
            "invitations.from",
            format!("`{from}` is not a mail address (local@domain)"),
        ));
    }
    for domain in &s.relay.domains {
        if !is_domain_pattern(domain) || domain.contains('*') {
            errors.push(FieldError::new(
                "relay.domains",
                format!("`{domain}` is not a domain name"),
            ));
        }
    }
    errors.extend(crate::trust::settings::check(s));
    errors.extend(crate::portal::check_settings(&s.portal));
    errors
}

fn is_domain_pattern(domain: &str) -> bool {
    !domain.is_empty() && !domain.contains(['@', ' ', '[', ']', '/', ':'])
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
