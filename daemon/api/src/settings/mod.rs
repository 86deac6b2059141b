//! The run-time settings: everything an administrator changes while the
//! gateway runs, as one typed tree. The same schema is read from the
//! bootstrap file's tables on first start, written and read by
//! `sealgate settings export|apply` (TOML), shown and edited by the web UI,
//! and stored as versions by the daemon's settings store.
//!
//! Types only, with their defaults: what the daemon's own checks say
//! about a whole [`Settings`] (ranges, combinations, rules that compile)
//! is in the daemon, which refuses an invalid version with every error
//! naming its key ([`crate::FieldError`]).
//!
//! Unknown keys are refused everywhere (`deny_unknown_fields`), so a typo
//! never silently does nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub mod fields;
pub mod policy;
pub mod portal;
pub mod trust;

pub use policy::PolicyConfig;

/// Every run-time setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The name this gateway announces in its SMTP banner, EHLO and
    /// Received headers, and names its certificates after.
    pub hostname: String,
    pub smtp: SmtpSettings,
    pub relay: RelaySettings,
    pub delivery: DeliverySettings,
    /// Who gets what: rules, defaults and per-domain/address settings.
    pub policy: PolicyConfig,
    /// Local distribution lists: list address → members (addresses or lists).
    pub lists: BTreeMap<String, Vec<String>>,
    /// Local sender groups for policy rules: name → members (addresses or groups).
    pub groups: BTreeMap<String, Vec<String>>,
    /// An LDAP directory for distribution lists and sender groups.
    pub ldap: Option<LdapSettings>,
    /// Invitations to held recipients.
    pub invitations: InvitationSettings,
    pub tracking: TrackingSettings,
    /// Authenticated TLS to next hops: levels per domain, anchors, TLS-RPT.
    pub outbound_tls: trust::OutboundTlsSettings,
    /// Where keys are looked for when the directory has none.
    pub discovery: trust::DiscoverySettings,
    /// S/MIME trust anchors, CRLs, ciphers by capability.
    pub smime: trust::SmimeTrustSettings,
    /// Secure web mail for recipients without keys.
    pub portal: portal::PortalSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            hostname: "sealgate.localhost".into(),
            smtp: SmtpSettings::default(),
            relay: RelaySettings::default(),
            delivery: DeliverySettings::default(),
            policy: PolicyConfig::default(),
            lists: BTreeMap::new(),
            groups: BTreeMap::new(),
            ldap: None,
            invitations: InvitationSettings::default(),
            tracking: TrackingSettings::default(),
            outbound_tls: trust::OutboundTlsSettings::default(),
            discovery: trust::DiscoverySettings::default(),
            smime: trust::SmimeTrustSettings::default(),
            portal: portal::PortalSettings::default(),
        }
    }
}

/// Limits of the SMTP listener and its TLS certificate (the addresses it
/// listens on are bootstrap settings: they are bound before anything else).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpSettings {
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
    /// PEM certificate chain for STARTTLS (and the web listener); empty
    /// means a self-signed one in the data directory.
    pub tls_certificate: Option<PathBuf>,
    /// PEM private key for STARTTLS; goes with `tls_certificate`.
    pub tls_private_key: Option<PathBuf>,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        SmtpSettings {
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

/// Who may relay and which domains are ours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelaySettings {
    /// Domains this gateway accepts mail for from anywhere.
    pub domains: Vec<String>,
    /// Networks whose clients may relay to any domain.
    pub internal_networks: Vec<IpNetwork>,
}

impl Default for RelaySettings {
    fn default() -> Self {
        RelaySettings {
            domains: vec!["localhost".into()],
            internal_networks: vec![IpNetwork::LOOPBACK_V4, IpNetwork::LOOPBACK_V6],
        }
    }
}

/// How accepted mail leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliverySettings {
    /// The route for mail no `routes` entry and no `internal_server` covers.
    pub mode: DeliveryMode,
    /// Folder for `mode = "outbox"`; default `<data_dir>/outbox`.
    pub outbox_dir: Option<PathBuf>,
    /// `host:port` for `mode = "smarthost"`.
    pub smarthost: Option<String>,
    /// `host:port` of the internal mail server: mail for our own domains
    /// (`relay.domains`) goes there, whatever `mode` says.
    pub internal_server: Option<String>,
    /// A next hop (`host:port`) per recipient domain, before everything
    /// else: `"partner.example" = "10.1.2.3:25"`.
    pub routes: BTreeMap<String, String>,
    /// Port used for MX delivery (25 on the Internet; tests use others).
    pub mx_port: u16,
    /// DNS server for MX lookups (`ip:port`); default is the system resolver.
    pub dns_server: Option<std::net::SocketAddr>,
    /// Recipient domains whose delivery must use STARTTLS (never in clear).
    pub require_tls_domains: Vec<String>,
    /// Seconds a message may stay queued before it bounces (default 5 days).
    pub queue_lifetime_secs: u64,
    /// Seconds a recipient may stay held (encryption required, no method
    /// yet) or quarantined before the sender gets a failure notice (default 7 days).
    pub hold_lifetime_secs: u64,
    /// Seconds after which the sender of a message still being retried
    /// gets one delay notice (0: never; default 4 hours).
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

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            mode: DeliveryMode::Outbox,
            outbox_dir: None,
            smarthost: None,
            internal_server: None,
            routes: BTreeMap::new(),
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

/// Where delivered mail goes when no route says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryMode {
    /// One `.eml` file per delivery in a local folder: nothing leaves the machine.
    Outbox,
    /// Everything goes to one relay host.
    Smarthost,
    /// Each recipient domain's MX hosts, found in DNS.
    Mx,
}

impl DeliveryMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryMode::Outbox => "outbox",
            DeliveryMode::Smarthost => "smarthost",
            DeliveryMode::Mx => "mx",
        }
    }
}

/// Invitations: a recipient whose mail is held (encryption required, no
/// certificate or key yet) is told how to provide one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InvitationSettings {
    /// Send invitations (default off: the sender's delay notice is all).
    pub enabled: bool,
    /// The invitation's From address, where replies go. Default: the
    /// address of the gateway's OpenPGP identity, else `postmaster@<hostname>`.
    pub from: Option<String>,
    /// At most one invitation per recipient in this many seconds (default 7 days).
    pub resend_after_secs: u64,
}

impl Default for InvitationSettings {
    fn default() -> Self {
        InvitationSettings {
            enabled: false,
            from: None,
            resend_after_secs: 7 * 24 * 3600,
        }
    }
}

/// Message tracking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackingSettings {
    /// Events older than this many days are removed (in small batches, in
    /// the background); the audit log is kept as long.
    pub retention_days: u32,
}

impl Default for TrackingSettings {
    fn default() -> Self {
        TrackingSettings { retention_days: 90 }
    }
}

/// An LDAP directory for distribution lists and sender groups (`[ldap]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LdapSettings {
    /// `ldap://host:port` or `ldaps://host:port`.
    pub url: String,
    /// Bind as this DN (anonymous when empty).
    pub bind_dn: String,
    /// File holding the bind password (first line).
    pub bind_password_file: Option<PathBuf>,
    pub base_dn: String,
    /// Finds the group for a list address; `{address}` is replaced.
    pub group_filter: String,
    /// Finds a person's entry by address; `{address}` is replaced.
    pub person_filter: String,
    pub member_attribute: String,
    pub mail_attribute: String,
    /// The attribute that names a group for policy rules.
    pub group_name_attribute: String,
    pub timeout_secs: u64,
}

impl Default for LdapSettings {
    fn default() -> Self {
        LdapSettings {
            url: String::new(),
            bind_dn: String::new(),
            bind_password_file: None,
            base_dn: String::new(),
            group_filter:
                "(&(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))(mail={address}))"
                    .into(),
            person_filter: "(&(mail={address})(!(objectClass=groupOfNames)))".into(),
            member_attribute: "member".into(),
            mail_attribute: "mail".into(),
            group_name_attribute: "cn".into(),
            timeout_secs: 10,
        }
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
        address: IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 0)),
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

    /// The network of one address (`/32` or `/128`).
    pub fn host(address: IpAddr) -> IpNetwork {
        IpNetwork {
            address,
            prefix: if address.is_ipv4() { 32 } else { 128 },
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

impl Serialize for IpNetwork {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn networks_match() {
        let n: IpNetwork = "10.1.0.0/16".parse().unwrap();
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.0.9".parse().unwrap()));
        let all: IpNetwork = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.9".parse().unwrap()));
        assert!(!all.contains("2001:db8::1".parse().unwrap()));
        assert!(IpNetwork::LOOPBACK_V4.contains("127.3.2.1".parse().unwrap()));
        assert_eq!(IpNetwork::LOOPBACK_V4.to_string(), "127.0.0.0/8");
    }

    #[test]
    fn defaults_round_trip_through_json() {
        let s = Settings::default();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Settings>(&json).unwrap(), s);
    }
}
