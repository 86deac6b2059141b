//! Checks of the trust settings (`[outbound_tls]`, `[discovery]`,
//! `[smime]`) that types cannot make: files that must read, URLs that
//! must be LDAP URLs, numbers that must not be zero. Every problem names
//! its dotted key; the same check guards the bootstrap file and every new
//! settings version.

use sealgate_api::FieldError;
use sealgate_api::settings::Settings;
use sealgate_api::settings::trust::DiscoverySource;

pub fn check(s: &Settings) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut fail = |key: &str, what: String| errors.push(FieldError::new(key, what));
    let tls = &s.outbound_tls;
    if let Err(e) = crate::https::root_store(false, &tls.trust_anchors) {
        fail("outbound_tls.trust_anchors", e);
    }
    for domain in tls.domain.keys() {
        let bare = domain.strip_prefix("*.").unwrap_or(domain);
        if bare.is_empty() || !bare.contains('.') || bare.contains(['@', ' ', '/', '*']) {
            fail(
                "outbound_tls.domain",
                format!("`{domain}` is not a domain (or `*.domain`)"),
            );
        }
    }
    if tls.report.interval_secs == 0 {
        fail(
            "outbound_tls.report.interval_secs",
            "must be at least 1".into(),
        );
    }
    let d = &s.discovery;
    if d.timeout_secs == 0 {
        fail("discovery.timeout_secs", "must be at least 1".into());
    }
    if d.concurrency == 0 {
        fail("discovery.concurrency", "must be at least 1".into());
    }
    if d.order.contains(&DiscoverySource::Ldap) && d.ldap.is_none() {
        fail(
            "discovery.order",
            "`ldap` needs a [discovery.ldap] table".into(),
        );
    }
    if let Some(ldap) = &d.ldap {
        if !(ldap.url.starts_with("ldap://") || ldap.url.starts_with("ldaps://")) {
            fail(
                "discovery.ldap.url",
                "must start with ldap:// or ldaps://".into(),
            );
        }
        if ldap.base_dn.is_empty() {
            fail("discovery.ldap.base_dn", "is required".into());
        }
        if !ldap.filter.starts_with('(') || !ldap.filter.contains("{address}") {
            fail(
                "discovery.ldap.filter",
                "must be an LDAP filter containing {address}".into(),
            );
        }
    }
    for local in &d.partner_gateways {
        if local.is_empty() || local.contains(['@', ' ', '<', '>']) {
            fail(
                "discovery.partner_gateways",
                format!("`{local}` is not a local part"),
            );
        }
    }
    let m = &s.smime;
    if let Err(e) = crate::smime_trust::read_anchors(&m.trust_anchors, false) {
        fail("smime.trust_anchors", e);
    }
    if m.crl_timeout_secs == 0 {
        fail("smime.crl_timeout_secs", "must be at least 1".into());
    }
    errors
}
