//! Settings of the trust model (issue 16): which next hops must be
//! authenticated and how (`[outbound_tls]`), where keys are looked for when
//! the directory has none (`[discovery]`), and what makes an S/MIME
//! certificate trusted (`[smime]`).
//!
//! Types and defaults only; the daemon checks a whole version (files
//! readable, URLs well formed) and refuses it with every error named.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How the connection to a domain's next hop must be protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsLevel {
    /// Never STARTTLS: in clear, even when the server offers TLS.
    None,
    /// STARTTLS when the server offers it, any certificate; in clear
    /// otherwise (RFC 7435).
    Opportunistic,
    /// STARTTLS always, any certificate: encrypted, not authenticated.
    Required,
    /// STARTTLS with a certificate valid for the MX host name, chained to
    /// the system roots or `trust_anchors`.
    Verify,
    /// DANE (RFC 7672): the MX records, the host's address and its TLSA
    /// records must be DNSSEC-validated and a TLSA record must match.
    Dane,
    /// MTA-STS (RFC 8461): the domain's published policy, fetched over
    /// verified HTTPS and cached, names the MX hosts and demands
    /// certificates valid for them.
    MtaSts,
    /// What a modern MTA does: DANE where the domain publishes TLSA
    /// records under DNSSEC, else MTA-STS where it publishes a policy in
    /// `enforce` mode, else opportunistic.
    Auto,
}

impl TlsLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsLevel::None => "none",
            TlsLevel::Opportunistic => "opportunistic",
            TlsLevel::Required => "required",
            TlsLevel::Verify => "verify",
            TlsLevel::Dane => "dane",
            TlsLevel::MtaSts => "mta-sts",
            TlsLevel::Auto => "auto",
        }
    }
}

/// Outbound TLS: the protection demanded per recipient domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundTlsSettings {
    /// The level for domains not listed in `domain` (`delivery.require_tls_domains`
    /// still means at least `required` for those).
    pub default: TlsLevel,
    /// A level per recipient domain (`"*.example.com"` covers subdomains).
    pub domain: BTreeMap<String, TlsLevel>,
    /// PEM files of CA certificates trusted besides the system roots, for
    /// `verify`, MTA-STS and the HTTPS lookups (MTA-STS policies, WKD).
    pub trust_anchors: Vec<PathBuf>,
    /// Trust the system's CA bundle too.
    pub system_roots: bool,
    /// TLS reporting (RFC 8460) to domains that publish `_smtp._tls`.
    pub report: TlsReportSettings,
}

impl Default for OutboundTlsSettings {
    fn default() -> Self {
        OutboundTlsSettings {
            default: TlsLevel::Opportunistic,
            domain: BTreeMap::new(),
            trust_anchors: Vec::new(),
            system_roots: true,
            report: TlsReportSettings::default(),
        }
    }
}

/// TLS-RPT aggregate reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsReportSettings {
    /// Send reports to the domains that ask for them.
    pub enabled: bool,
    /// Seconds a report covers (RFC 8460: a day).
    pub interval_secs: u64,
    /// The reporting organisation's name; default: the gateway's hostname.
    pub organization: Option<String>,
    /// Where the receiving domain can reach us; default `postmaster@<hostname>`.
    pub contact: Option<String>,
}

impl Default for TlsReportSettings {
    fn default() -> Self {
        TlsReportSettings {
            enabled: true,
            interval_secs: 86_400,
            organization: None,
            contact: None,
        }
    }
}

/// Where recipients' keys are found when the directory has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiscoverySource {
    /// The corporate LDAP directory (`[discovery.ldap]`).
    Ldap,
    /// The recipient domain's Web Key Directory (advanced, then direct).
    Wkd,
    /// SMIMEA (RFC 8162) and OPENPGPKEY (RFC 7929) records under DNSSEC.
    Dane,
}

/// Key discovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoverySettings {
    /// The sources asked, in this order; empty turns discovery off.
    pub order: Vec<DiscoverySource>,
    /// Seconds one source may take for one address.
    pub timeout_secs: u64,
    /// Seconds a found key is used before it is looked up again.
    pub found_ttl_secs: u64,
    /// Seconds "nothing found" is believed before the next lookup.
    pub missing_ttl_secs: u64,
    /// Local parts of partner gateways' addresses: for `gateway` the
    /// gateway key of `partner.example` is looked for as
    /// `gateway@partner.example` and serves every address there.
    pub partner_gateways: Vec<String>,
    /// Lookups running at once (the rest wait their turn).
    pub concurrency: usize,
    /// The LDAP directory to ask (`ldap` in `order`).
    pub ldap: Option<DiscoveryLdapSettings>,
}

impl Default for DiscoverySettings {
    fn default() -> Self {
        DiscoverySettings {
            order: Vec::new(),
            timeout_secs: 10,
            found_ttl_secs: 86_400,
            missing_ttl_secs: 3600,
            partner_gateways: Vec::new(),
            concurrency: 8,
            ldap: None,
        }
    }
}

/// LDAP as a key source: people's entries with `userCertificate;binary`,
/// `userSMIMECertificate` and `pgpKey`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoveryLdapSettings {
    /// `ldap://host:port` or `ldaps://host:port`.
    pub url: String,
    /// Bind as this DN (anonymous when empty).
    pub bind_dn: String,
    /// File holding the bind password (first line).
    pub bind_password_file: Option<PathBuf>,
    pub base_dn: String,
    /// Finds a person's entry; `{address}` is replaced (escaped).
    pub filter: String,
}

impl Default for DiscoveryLdapSettings {
    fn default() -> Self {
        DiscoveryLdapSettings {
            url: String::new(),
            bind_dn: String::new(),
            bind_password_file: None,
            base_dn: String::new(),
            filter: "(mail={address})".into(),
        }
    }
}

/// Which content cipher a recipient domain gets for S/MIME.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmimeCipher {
    /// By the recipient's announced capabilities (AES-GCM only when announced).
    Auto,
    /// AuthEnvelopedData with AES-256-GCM.
    Gcm,
    /// EnvelopedData with AES-256-CBC.
    Cbc,
}

/// S/MIME trust: anchors, revocation, ciphers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmimeTrustSettings {
    /// PEM files of CA certificates: a certificate that chains to one
    /// (revocation checked) is `anchored`.
    pub trust_anchors: Vec<PathBuf>,
    /// Trust the system's CA bundle for S/MIME too.
    pub system_anchors: bool,
    /// Seconds between fetches of a CRL (sooner when its nextUpdate passes).
    pub crl_refresh_secs: u64,
    /// Seconds one CRL fetch may take.
    pub crl_timeout_secs: u64,
    /// A content cipher per recipient domain, over the capabilities.
    pub cipher: BTreeMap<String, SmimeCipher>,
    /// Refuse inbound mail for the gateway that has no integrity
    /// protection (CBC content that is not signed inside).
    pub refuse_unprotected: bool,
}

impl Default for SmimeTrustSettings {
    fn default() -> Self {
        SmimeTrustSettings {
            trust_anchors: Vec::new(),
            system_anchors: false,
            crl_refresh_secs: 6 * 3600,
            crl_timeout_secs: 20,
            cipher: BTreeMap::new(),
            refuse_unprotected: false,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn levels_read_as_written() {
        #[derive(Deserialize)]
        struct T {
            outbound_tls: OutboundTlsSettings,
        }
        let t: T = toml_like(
            r#"{"outbound_tls": {"default": "auto", "domain": {"partner.example": "mta-sts"}}}"#,
        );
        assert_eq!(t.outbound_tls.default, TlsLevel::Auto);
        assert_eq!(
            t.outbound_tls.domain.get("partner.example"),
            Some(&TlsLevel::MtaSts)
        );
        assert!(
            serde_json::from_str::<OutboundTlsSettings>(r#"{"defualt": "dane"}"#).is_err(),
            "a typo is refused"
        );
    }

    fn toml_like<T: serde::de::DeserializeOwned>(json: &str) -> T {
        serde_json::from_str(json).unwrap()
    }
}
