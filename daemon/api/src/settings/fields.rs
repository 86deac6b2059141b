//! What each run-time setting is, for people: a label, one line of help
//! and the kind of form field that edits it, keyed by the dotted key the
//! daemon's checks name in their errors (`smtp.max_recipients`).
//!
//! The one table of these ([`FIELDS`]) is what the web UI builds its
//! settings forms from; its tests fail when a setting of [`Settings`] has
//! no entry here (or an entry names a key that does not exist), so a new
//! setting cannot be added without its label and help.
//!
//! Lists of records and maps (policy rules, per-domain tables, lists and
//! groups) are one entry of kind [`Kind::Table`]: edited as a small TOML
//! document of that subtree. Every scalar has its own entry.

use super::Settings;

/// How a setting is edited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `bool`: a checkbox.
    Bool,
    /// `Option<bool>`: unset (inherit), yes or no.
    OptBool,
    /// An unsigned integer up to `max`.
    Number { max: u64 },
    /// A one-line string.
    Text,
    /// `Option<String>` (or a path): empty means unset.
    OptText,
    /// A multi-line `Option<String>`: empty means unset.
    OptLongText,
    /// `Option<SocketAddr>` (`ip:port`): empty means unset.
    OptSocketAddr,
    /// One of these values (an enum).
    Choice(&'static [&'static str]),
    /// One of these values or unset.
    OptChoice(&'static [&'static str]),
    /// A list of strings, one per line.
    Lines,
    /// `Option<Vec<String>>`, one per line: no lines means unset.
    OptLines,
    /// A list of IP networks (`10.0.0.0/8`), one per line.
    Networks,
    /// An ordered list of these values, one per line.
    ChoiceLines(&'static [&'static str]),
    /// A map or a list of records, edited as a TOML document of that subtree.
    Table,
    /// An optional table: whether it is set at all (its fields follow).
    Presence,
}

/// One setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// The dotted key: `delivery.mode`.
    pub key: &'static str,
    pub label: &'static str,
    /// One line of help.
    pub help: &'static str,
    pub kind: Kind,
}

/// A group of settings shown and saved together: one top-level key
/// (`hostname` is in `general`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    /// The name in URLs: `smtp`.
    pub name: &'static str,
    pub title: &'static str,
}

/// The sections in the order they are shown.
#[rustfmt::skip]
pub const SECTIONS: &[Section] = &[
    Section { name: "general", title: "General" },
    Section { name: "smtp", title: "SMTP listener" },
    Section { name: "relay", title: "Relaying and our domains" },
    Section { name: "delivery", title: "Delivery" },
    Section { name: "policy", title: "Policy" },
    Section { name: "invitations", title: "Invitations" },
    Section { name: "tracking", title: "Message tracking" },
    Section { name: "outbound_tls", title: "Outbound TLS" },
    Section { name: "discovery", title: "Key discovery" },
    Section { name: "smime", title: "S/MIME trust" },
    Section { name: "portal", title: "Secure web mail portal" },
    Section { name: "ldap", title: "LDAP directory" },
    Section { name: "lists", title: "Distribution lists" },
    Section { name: "groups", title: "Sender groups" },
];

impl Field {
    /// The section this setting is shown and saved in.
    pub fn section(&self) -> &'static str {
        match self.key.split_once('.') {
            Some((top, _)) => top,
            None if SECTIONS.iter().any(|s| s.name == self.key) => self.key,
            None => "general",
        }
    }
}

/// The settings of one section, in order.
pub fn section_fields(section: &str) -> impl Iterator<Item = &'static Field> + '_ {
    FIELDS.iter().filter(move |f| f.section() == section)
}

/// The entry for a dotted key.
pub fn field(key: &str) -> Option<&'static Field> {
    FIELDS.iter().find(|f| f.key == key)
}

const U16: u64 = u16::MAX as u64;
const U32: u64 = u32::MAX as u64;
const U64: u64 = u64::MAX;

/// `policy::Action` values.
pub const ACTIONS: &[&str] = &[
    "encrypt-required",
    "encrypt-if-possible",
    "sign",
    "clear",
    "quarantine",
    "reject",
];
/// `ops::directory::Trust` values, strongest first.
pub const TRUST_LEVELS: &[&str] = &[
    "manual",
    "anchored",
    "dane",
    "wkd",
    "ldap",
    "portal",
    "harvested-dkim",
    "harvested",
];
/// `trust::TlsLevel` values.
pub const TLS_LEVELS: &[&str] = &[
    "none",
    "opportunistic",
    "required",
    "verify",
    "dane",
    "mta-sts",
    "auto",
];

macro_rules! f {
    ($key:literal, $label:literal, $help:literal, $kind:expr) => {
        Field {
            key: $key,
            label: $label,
            help: $help,
            kind: $kind,
        }
    };
}

/// Every run-time setting.
#[rustfmt::skip]
pub const FIELDS: &[Field] = &[
    f!("hostname", "Host name", "The name announced in the SMTP banner, EHLO and Received headers; certificates are named after it.", Kind::Text),
    // smtp
    f!("smtp.max_message_size", "Largest message (octets)", "Larger messages are refused; advertised with SIZE.", Kind::Number { max: U64 }),
    f!("smtp.max_recipients", "Most recipients per message", "The next recipient in the same transaction gets 452.", Kind::Number { max: U64 }),
    f!("smtp.max_connections_per_ip", "Connections per IP address", "Simultaneous connections from one address.", Kind::Number { max: U64 }),
    f!("smtp.max_connections", "Connections in all", "Simultaneous SMTP connections.", Kind::Number { max: U64 }),
    f!("smtp.idle_timeout_secs", "Idle timeout (seconds)", "A client silent this long is disconnected.", Kind::Number { max: U64 }),
    f!("smtp.session_timeout_secs", "Session timeout (seconds)", "The longest a whole session may last.", Kind::Number { max: U64 }),
    f!("smtp.max_errors", "Errors per session", "A session with this many errors is disconnected.", Kind::Number { max: U32 }),
    f!("smtp.tls_certificate", "TLS certificate (PEM file)", "Certificate chain for STARTTLS and the web listener; empty: a self-signed one in the data directory.", Kind::OptText),
    f!("smtp.tls_private_key", "TLS private key (PEM file)", "The key that goes with the TLS certificate.", Kind::OptText),
    // relay
    f!("relay.domains", "Our domains", "One per line: domains this gateway accepts mail for from anywhere.", Kind::Lines),
    f!("relay.internal_networks", "Internal networks", "One per line (10.0.0.0/8, ::1/128): clients there may relay to any domain.", Kind::Networks),
    // delivery
    f!("delivery.mode", "Delivery mode", "Where mail goes that no route and no internal server covers: an outbox folder, a smart host, or each domain's MX hosts.", Kind::Choice(&["outbox", "smarthost", "mx"])),
    f!("delivery.outbox_dir", "Outbox folder", "For the outbox mode; empty: <data directory>/outbox.", Kind::OptText),
    f!("delivery.smarthost", "Smart host", "host:port for the smarthost mode.", Kind::OptText),
    f!("delivery.internal_server", "Internal mail server", "host:port: mail for our own domains goes there, whatever the mode says.", Kind::OptText),
    f!("delivery.routes", "Routes per domain", "A next hop per recipient domain, before everything else: \"partner.example\" = \"10.1.2.3:25\".", Kind::Table),
    f!("delivery.mx_port", "MX port", "Port for MX delivery (25 on the Internet).", Kind::Number { max: U16 }),
    f!("delivery.dns_server", "DNS server", "ip:port for MX lookups; empty: the system resolver.", Kind::OptSocketAddr),
    f!("delivery.require_tls_domains", "Domains that require TLS", "One per line: mail for these domains is never sent in clear.", Kind::Lines),
    f!("delivery.queue_lifetime_secs", "Queue lifetime (seconds)", "A message queued this long bounces (default 5 days).", Kind::Number { max: U64 }),
    f!("delivery.hold_lifetime_secs", "Hold lifetime (seconds)", "A recipient held or quarantined this long gets the sender a failure notice (default 7 days).", Kind::Number { max: U64 }),
    f!("delivery.delay_warning_secs", "Delay notice after (seconds)", "The sender of a message still retried gets one delay notice (0: never).", Kind::Number { max: U64 }),
    f!("delivery.retry_initial_secs", "First retry (seconds)", "The first retry delay; it doubles on each failure.", Kind::Number { max: U64 }),
    f!("delivery.retry_max_secs", "Longest retry delay (seconds)", "Retry delays never grow beyond this.", Kind::Number { max: U64 }),
    f!("delivery.concurrency", "Deliveries at once", "Deliveries running at the same time.", Kind::Number { max: U64 }),
    f!("delivery.timeout_secs", "Network timeout (seconds)", "Wait for a TCP connect or a reply from the remote server.", Kind::Number { max: U64 }),
    // policy
    f!("policy.default.outbound", "Default: outbound", "The action for mail from us to outside when no rule or setting says otherwise.", Kind::Choice(ACTIONS)),
    f!("policy.default.inbound", "Default: inbound", "The action for mail from outside to us.", Kind::Choice(ACTIONS)),
    f!("policy.default.internal", "Default: internal", "The action for mail from us to us.", Kind::Choice(ACTIONS)),
    f!("policy.default.external", "Default: external", "The action for mail from outside to outside (relayed).", Kind::Choice(ACTIONS)),
    f!("policy.boundary_only", "Encrypt only at the boundary", "Internal recipients never get an encrypting action.", Kind::Bool),
    f!("policy.strip_subject_keyword", "Remove the subject keyword", "A matched subject keyword is removed before delivery.", Kind::Bool),
    f!("policy.trigger_header", "Trigger header", "The header a client plug-in or DLP system sets to ask for encryption.", Kind::Text),
    f!("policy.trusted_trigger_hosts", "Hosts trusted to trigger", "One network per line: the trigger header counts only from these.", Kind::Networks),
    f!("policy.settings.action", "Global action", "The action when no rule matches; unset: the default per direction.", Kind::OptChoice(ACTIONS)),
    f!("policy.settings.sign", "Sign outbound mail", "Sign what goes out, in addition to encrypting or alone; domains and addresses may override.", Kind::OptBool),
    f!("policy.settings.neutral_subject", "Neutral subject", "Replace the visible subject of encrypted mail by a neutral one.", Kind::OptBool),
    f!("policy.settings.trust_harvested_keys", "Trust keys taken from mail", "Keys from Autocrypt headers and signatures serve encrypt-required mail (trust on first use).", Kind::OptBool),
    f!("policy.settings.required_trust", "Least trust for required encryption", "The least trust level a key needs for encrypt-required mail; unset: portal.", Kind::OptChoice(TRUST_LEVELS)),
    f!("policy.settings.pinned_keys", "Pinned keys", "Fingerprints, one per line: only these keys are used; others wait for review. Empty: no pinning.", Kind::OptLines),
    f!("policy.settings.autocrypt", "Autocrypt header", "Put the gateway's OpenPGP key in an Autocrypt header of mail it signs.", Kind::OptBool),
    f!("policy.settings.methods", "Methods for all recipients", "One per line (smime, openpgp, portal), in order; domains and addresses may set their own. Empty: the list below.", Kind::OptLines),
    f!("policy.domain", "Settings per domain", "TOML: a table per recipient domain with the same keys as the global settings.", Kind::Table),
    f!("policy.address", "Settings per address", "TOML: a table per recipient address with the same keys as the global settings.", Kind::Table),
    f!("policy.rule", "Rules", "TOML: [[rule]] tables, tried in order; the first whose conditions all hold decides.", Kind::Table),
    f!("policy.methods", "Methods in order", "One per line (smime, openpgp, push, portal): the order in which a recipient's methods are tried.", Kind::ChoiceLines(&["smime", "openpgp", "push", "portal"])),
    f!("policy.engine.smime_rsa_oaep", "S/MIME with RSA-OAEP", "RSA-OAEP key transport instead of PKCS#1 v1.5 (which every client reads).", Kind::Bool),
    // invitations
    f!("invitations.enabled", "Send invitations", "A recipient whose mail is held is told how to provide a certificate or key.", Kind::Bool),
    f!("invitations.from", "Invitation From address", "Where replies go; empty: the gateway's OpenPGP address, else postmaster@<hostname>.", Kind::OptText),
    f!("invitations.resend_after_secs", "Resend after (seconds)", "At most one invitation per recipient in this time.", Kind::Number { max: U64 }),
    // tracking
    f!("tracking.retention_days", "Keep events (days)", "Older tracking events are removed; the audit log is kept as long.", Kind::Number { max: U32 }),
    // outbound_tls
    f!("outbound_tls.default", "Default TLS level", "The protection demanded of next hops for domains not listed below.", Kind::Choice(TLS_LEVELS)),
    f!("outbound_tls.domain", "TLS level per domain", "TOML: \"partner.example\" = \"dane\" (\"*.example.com\" covers subdomains).", Kind::Table),
    f!("outbound_tls.trust_anchors", "Trusted CA files", "PEM files, one per line, trusted besides the system roots for verify, MTA-STS and HTTPS lookups.", Kind::Lines),
    f!("outbound_tls.system_roots", "Trust the system CAs", "Use the system's CA bundle too.", Kind::Bool),
    f!("outbound_tls.report.enabled", "Send TLS reports", "TLS-RPT (RFC 8460) to domains that ask for them.", Kind::Bool),
    f!("outbound_tls.report.interval_secs", "Report interval (seconds)", "The time a report covers (a day in RFC 8460).", Kind::Number { max: U64 }),
    f!("outbound_tls.report.organization", "Reporting organisation", "The name in reports; empty: the host name.", Kind::OptText),
    f!("outbound_tls.report.contact", "Report contact", "Where the receiving domain reaches us; empty: postmaster@<hostname>.", Kind::OptText),
    // discovery
    f!("discovery.order", "Sources in order", "One per line (ldap, wkd, dane); empty turns discovery off.", Kind::ChoiceLines(&["ldap", "wkd", "dane"])),
    f!("discovery.timeout_secs", "Timeout per source (seconds)", "The time one source may take for one address.", Kind::Number { max: U64 }),
    f!("discovery.found_ttl_secs", "Found keys kept (seconds)", "A found key is used this long before it is looked up again.", Kind::Number { max: U64 }),
    f!("discovery.missing_ttl_secs", "\"Nothing found\" kept (seconds)", "No key is believed this long before the next lookup.", Kind::Number { max: U64 }),
    f!("discovery.partner_gateways", "Partner gateway local parts", "One per line: for \"gateway\", gateway@partner.example's key serves every address there.", Kind::Lines),
    f!("discovery.concurrency", "Lookups at once", "The rest wait their turn.", Kind::Number { max: U64 }),
    f!("discovery.ldap", "Look up keys in LDAP", "Ask an LDAP directory for certificates and keys (ldap in the order above).", Kind::Presence),
    f!("discovery.ldap.url", "Key LDAP URL", "ldap://host:port or ldaps://host:port.", Kind::Text),
    f!("discovery.ldap.bind_dn", "Key LDAP bind DN", "Bind as this DN; empty: anonymous.", Kind::Text),
    f!("discovery.ldap.bind_password_file", "Key LDAP password file", "A file whose first line is the bind password.", Kind::OptText),
    f!("discovery.ldap.base_dn", "Key LDAP base DN", "Where searches start.", Kind::Text),
    f!("discovery.ldap.filter", "Key LDAP filter", "Finds a person's entry; {address} is replaced.", Kind::Text),
    // smime
    f!("smime.trust_anchors", "S/MIME CA files", "PEM files, one per line: certificates that chain to one are anchored.", Kind::Lines),
    f!("smime.system_anchors", "Trust the system CAs for S/MIME", "Use the system's CA bundle for S/MIME too.", Kind::Bool),
    f!("smime.crl_refresh_secs", "CRL refresh (seconds)", "Time between fetches of a CRL (sooner when its next update passes).", Kind::Number { max: U64 }),
    f!("smime.crl_timeout_secs", "CRL fetch timeout (seconds)", "The time one CRL fetch may take.", Kind::Number { max: U64 }),
    f!("smime.cipher", "Cipher per domain", "TOML: \"partner.example\" = \"gcm\" (auto, gcm or cbc), over the capabilities.", Kind::Table),
    f!("smime.refuse_unprotected", "Refuse unprotected mail", "Refuse inbound mail for the gateway without integrity protection (CBC not signed inside).", Kind::Bool),
    // portal
    f!("portal.enabled", "Deliver to the portal", "Recipients without keys read their mail in the secure web mail portal.", Kind::Bool),
    f!("portal.url", "Portal address", "The portal's address as recipients reach it (the notification's link).", Kind::Text),
    f!("portal.encrypt_if_possible", "Portal for encrypt-if-possible", "Also use the portal for encrypt-if-possible recipients without a key.", Kind::Bool),
    f!("portal.retention_days", "Keep messages (days)", "Days a message stays in the portal.", Kind::Number { max: U32 }),
    f!("portal.domain_retention_days", "Days per domain", "TOML: \"partner.example\" = 90, overriding the days above.", Kind::Table),
    f!("portal.require_totp_domains", "Domains that need TOTP", "One per line: portal accounts of these domains must use a second factor.", Kind::Lines),
    f!("portal.push_domains", "Push domains", "One per line: recipients in these domains get the message sealed in an HTML attachment that opens in the portal (push) instead of waiting in it (pull); policy.methods must name push.", Kind::Lines),
    f!("portal.language", "Notification language", "en or de.", Kind::Text),
    f!("portal.domain_language", "Language per domain", "TOML: \"partner.example\" = \"de\".", Kind::Table),
    f!("portal.from", "Notification From address", "Empty: postmaster@<hostname>.", Kind::OptText),
    f!("portal.notification_text", "Notification text", "Plain text replacing the built-in one; {sender}, {recipient}, {link} and {days} are filled in. Empty: built-in.", Kind::OptLongText),
    f!("portal.notification_subject", "Notification subject", "Replaces the built-in subject (same placeholders). Empty: built-in.", Kind::OptText),
    f!("portal.quota_mb", "Mailbox quota (MB)", "Megabytes one address's portal mailbox may hold; 0: no limit. Mail beyond it waits in the queue.", Kind::Number { max: U32 }),
    f!("portal.read_receipts", "Read receipts", "Tell the sender when the recipient first opens a message.", Kind::Bool),
    f!("portal.attachment_max_mb", "Attachments per message (MB)", "Megabytes the files attached to one reply or new message from the portal may take together (1 to 15).", Kind::Number { max: U32 }),
    f!("portal.compose", "New messages from the portal", "Portal users may also write new messages, to the organisation's own addresses (relay domains) only.", Kind::Bool),
    f!("portal.lockout_after", "Lock after failed logins", "Failed logins in a row that lock a portal account.", Kind::Number { max: U32 }),
    f!("portal.lockout_secs", "Lockout (seconds)", "How long a locked portal account stays locked.", Kind::Number { max: U64 }),
    // ldap
    f!("ldap", "Use an LDAP directory", "Distribution lists and sender groups from LDAP.", Kind::Presence),
    f!("ldap.url", "LDAP URL", "ldap://host:port or ldaps://host:port.", Kind::Text),
    f!("ldap.bind_dn", "Bind DN", "Bind as this DN; empty: anonymous.", Kind::Text),
    f!("ldap.bind_password_file", "Password file", "A file whose first line is the bind password.", Kind::OptText),
    f!("ldap.base_dn", "Base DN", "Where searches start.", Kind::Text),
    f!("ldap.group_filter", "Group filter", "Finds the group of a list address; {address} is replaced.", Kind::Text),
    f!("ldap.person_filter", "Person filter", "Finds a person's entry by address; {address} is replaced.", Kind::Text),
    f!("ldap.member_attribute", "Member attribute", "The attribute listing a group's members.", Kind::Text),
    f!("ldap.mail_attribute", "Mail attribute", "The attribute holding an address.", Kind::Text),
    f!("ldap.group_name_attribute", "Group name attribute", "The attribute that names a group for policy rules.", Kind::Text),
    f!("ldap.timeout_secs", "LDAP timeout (seconds)", "The time one LDAP request may take.", Kind::Number { max: U64 }),
    // lists, groups
    f!("lists", "Distribution lists", "TOML: \"all@example.com\" = [\"alice@example.com\", \"team@example.com\"] (addresses or lists).", Kind::Table),
    f!("groups", "Sender groups", "TOML: finance = [\"alice@example.com\"] (addresses or groups), for policy rules.", Kind::Table),
];

/// A [`Settings`] with every optional value set and every list and map
/// filled: for tests (here, of the table above; in the web UI, of the
/// forms' round trip).
pub fn sample_all_set() -> Settings {
    use super::policy::{Action, MethodName, Rule};
    use super::{IpNetwork, LdapSettings, trust};
    use std::path::PathBuf;
    let mut s = Settings {
        hostname: "gw.example.org".into(),
        ldap: Some(LdapSettings {
            url: "ldaps://ldap.example.org:636".into(),
            bind_dn: "cn=gw,dc=example,dc=org".into(),
            bind_password_file: Some(PathBuf::from("/etc/sealgate/ldap.pw")),
            base_dn: "dc=example,dc=org".into(),
            ..LdapSettings::default()
        }),
        ..Settings::default()
    };
    s.smtp.tls_certificate = Some(PathBuf::from("/etc/sealgate/tls.pem"));
    s.smtp.tls_private_key = Some(PathBuf::from("/etc/sealgate/tls.key"));
    s.relay.domains = vec!["example.org".into(), "example.net".into()];
    s.relay.internal_networks = vec![IpNetwork::LOOPBACK_V4, IpNetwork::LOOPBACK_V6];
    s.delivery.outbox_dir = Some(PathBuf::from("/var/lib/sealgate/out"));
    s.delivery.smarthost = Some("relay.example.net:25".into());
    s.delivery.internal_server = Some("mail.example.org:25".into());
    s.delivery
        .routes
        .insert("partner.example".into(), "10.1.2.3:25".into());
    s.delivery.dns_server = Some(std::net::SocketAddr::from(([127, 0, 0, 53], 53)));
    s.delivery.require_tls_domains = vec!["bank.example".into()];
    s.policy.trusted_trigger_hosts = vec![IpNetwork::LOOPBACK_V4];
    s.policy.settings = super::policy::RecipientSettings {
        action: Some(Action::EncryptIfPossible),
        sign: Some(true),
        neutral_subject: Some(false),
        trust_harvested_keys: Some(false),
        required_trust: Some(crate::ops::directory::Trust::Dane),
        pinned_keys: Some(vec!["0123456789ABCDEF0123456789ABCDEF01234567".into()]),
        autocrypt: Some(true),
        methods: Some(vec![MethodName::Smime, MethodName::Portal]),
    };
    s.policy
        .domain
        .insert("partner.example".into(), s.policy.settings.clone());
    s.policy
        .address
        .insert("ceo@partner.example".into(), s.policy.settings.clone());
    s.policy.rule = vec![Rule {
        name: "secure subject".into(),
        action: Some(Action::EncryptRequired),
        subject_keyword: vec!["[secure]".into()],
        min_size: Some(1),
        ..Rule::default()
    }];
    s.lists.insert(
        "all@example.org".into(),
        vec!["alice@example.org".into(), "bob@example.org".into()],
    );
    s.groups
        .insert("finance".into(), vec!["alice@example.org".into()]);
    s.invitations.from = Some("keys@example.org".into());
    s.outbound_tls
        .domain
        .insert("partner.example".into(), trust::TlsLevel::Dane);
    s.outbound_tls.trust_anchors = vec![PathBuf::from("/etc/sealgate/ca.pem")];
    s.outbound_tls.report.organization = Some("Example Org".into());
    s.outbound_tls.report.contact = Some("tlsrpt@example.org".into());
    s.discovery.order = vec![trust::DiscoverySource::Wkd, trust::DiscoverySource::Ldap];
    s.discovery.partner_gateways = vec!["gateway".into()];
    s.discovery.ldap = Some(trust::DiscoveryLdapSettings {
        url: "ldap://keys.example.org".into(),
        bind_dn: "cn=keys".into(),
        bind_password_file: Some(PathBuf::from("/etc/sealgate/keys.pw")),
        base_dn: "dc=example,dc=org".into(),
        ..trust::DiscoveryLdapSettings::default()
    });
    s.smime.trust_anchors = vec![PathBuf::from("/etc/sealgate/smime-ca.pem")];
    s.smime
        .cipher
        .insert("old.example".into(), trust::SmimeCipher::Cbc);
    s.portal
        .domain_retention_days
        .insert("partner.example".into(), 90);
    s.portal.require_totp_domains = vec!["bank.example".into()];
    s.portal.push_domains = vec!["partner.example".into()];
    s.portal
        .domain_language
        .insert("partner.de".into(), "de".into());
    s.portal.from = Some("portal@example.org".into());
    s.portal.notification_text = Some("Hello {recipient},\n\n{link}\n".into());
    s.portal.notification_subject = Some("Mail from {sender}".into());
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::Value;

    /// The dotted keys of the leaves of `v` (objects are walked; a
    /// `Table` entry is one leaf).
    fn leaves(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
        if let Value::Object(map) = v {
            let table = field(prefix).is_some_and(|f| f.kind == Kind::Table);
            if !prefix.is_empty() && table {
                out.push((prefix.to_owned(), v.clone()));
                return;
            }
            for (k, child) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(&key, child, out);
            }
        } else {
            out.push((prefix.to_owned(), v.clone()));
        }
    }

    fn at<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
        key.split('.').try_fold(v, |v, k| v.get(k))
    }

    #[test]
    fn the_sample_sets_every_optional_value() {
        let mut out = Vec::new();
        leaves(
            "",
            &serde_json::to_value(sample_all_set()).unwrap(),
            &mut out,
        );
        let unset: Vec<_> = out
            .iter()
            .filter(|(_, v)| v.is_null() || v.as_array().is_some_and(Vec::is_empty))
            .map(|(k, _)| k.as_str())
            .collect();
        assert!(unset.is_empty(), "unset in sample_all_set: {unset:?}");
    }

    #[test]
    fn every_setting_has_a_label_help_and_kind() {
        let mut out = Vec::new();
        leaves(
            "",
            &serde_json::to_value(sample_all_set()).unwrap(),
            &mut out,
        );
        let missing: Vec<_> = out
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| field(k).is_none())
            .collect();
        assert!(
            missing.is_empty(),
            "settings without an entry in FIELDS: {missing:?}"
        );
        for f in FIELDS {
            assert!(!f.label.trim().is_empty(), "{}: no label", f.key);
            assert!(!f.help.trim().is_empty(), "{}: no help", f.key);
            assert!(!f.help.contains('\n'), "{}: help is one line", f.key);
        }
    }

    #[test]
    fn every_entry_names_a_setting_once_in_a_section() {
        let sample = serde_json::to_value(sample_all_set()).unwrap();
        for (i, f) in FIELDS.iter().enumerate() {
            assert!(at(&sample, f.key).is_some(), "{}: no such setting", f.key);
            assert!(
                FIELDS.iter().skip(i + 1).all(|g| g.key != f.key),
                "{}: twice",
                f.key
            );
            assert!(
                SECTIONS.iter().any(|s| s.name == f.section()),
                "{}: section {} not in SECTIONS",
                f.key,
                f.section()
            );
            if f.kind == Kind::Presence {
                assert!(
                    at(&sample, f.key).is_some_and(Value::is_object),
                    "{}",
                    f.key
                );
            }
        }
    }

    #[test]
    fn every_choice_is_a_value_the_settings_accept() {
        let sample = serde_json::to_value(sample_all_set()).unwrap();
        for f in FIELDS {
            let (choices, list) = match f.kind {
                Kind::Choice(c) | Kind::OptChoice(c) => (c, false),
                Kind::ChoiceLines(c) => (c, true),
                _ => continue,
            };
            for c in choices {
                let mut v = sample.clone();
                let mut slot = &mut v;
                for k in f.key.split('.') {
                    slot = slot.get_mut(k).unwrap();
                }
                *slot = if list {
                    Value::from(vec![*c])
                } else {
                    Value::from(*c)
                };
                assert!(
                    serde_json::from_value::<Settings>(v).is_ok(),
                    "{}: {c} is refused",
                    f.key
                );
            }
        }
    }
}
