//! The corporate LDAP directory as a key source: a person's entry found by
//! address, with certificates in `userCertificate;binary` (RFC 4523),
//! PKCS#7 bundles in `userSMIMECertificate` (RFC 2798) and OpenPGP keys in
//! `pgpKey` (the PGP keyserver schema).
//!
//! Trusts: the configured server (its answers are bounded: a few entries,
//! a few values each, each value at most [`MAX_VALUE`] octets).

use std::time::Duration;

use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry, ldap_escape};
use sealgate_api::settings::trust::DiscoveryLdapSettings;

/// Most entries taken for one address.
const MAX_ENTRIES: usize = 8;
/// Most values of one attribute taken.
const MAX_VALUES: usize = 16;
/// Largest value taken.
pub const MAX_VALUE: usize = 256 * 1024;

const ATTRIBUTES: [&str; 4] = [
    "userCertificate;binary",
    "userCertificate",
    "userSMIMECertificate",
    "pgpKey",
];

/// What the directory holds for an address.
#[derive(Debug, Default)]
pub struct Found {
    /// DER certificates or PKCS#7 bundles, with the entry's DN.
    pub smime: Vec<(Vec<u8>, String)>,
    /// OpenPGP keys (binary or armored), with the entry's DN.
    pub openpgp: Vec<(Vec<u8>, String)>,
}

/// Searches for `address` (escaped into the filter).
pub async fn lookup(
    settings: &DiscoveryLdapSettings,
    address: &str,
    timeout: Duration,
) -> Result<Found, String> {
    let conn_settings = LdapConnSettings::new().set_conn_timeout(timeout);
    let (conn, mut ldap) = LdapConnAsync::with_settings(conn_settings, &settings.url)
        .await
        .map_err(|e| format!("connect to {}: {e}", settings.url))?;
    ldap3::drive!(conn);
    if !settings.bind_dn.is_empty() {
        let password = match &settings.bind_password_file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("bind password file {}: {e}", path.display()))?
                .lines()
                .next()
                .unwrap_or("")
                .to_owned(),
            None => String::new(),
        };
        ldap.with_timeout(timeout)
            .simple_bind(&settings.bind_dn, &password)
            .await
            .and_then(ldap3::LdapResult::success)
            .map_err(|e| format!("bind as {}: {e}", settings.bind_dn))?;
    }
    let filter = settings.filter.replace("{address}", &ldap_escape(address));
    let (entries, _) = ldap
        .with_timeout(timeout)
        .search(
            &settings.base_dn,
            Scope::Subtree,
            &filter,
            ATTRIBUTES.to_vec(),
        )
        .await
        .and_then(ldap3::SearchResult::success)
        .map_err(|e| format!("search {filter}: {e}"))?;
    let _ = ldap.unbind().await;
    let mut found = Found::default();
    for entry in entries.into_iter().take(MAX_ENTRIES) {
        let entry = SearchEntry::construct(entry);
        let values = |name: &str| -> Vec<Vec<u8>> {
            let wanted = name.to_ascii_lowercase();
            let mut out: Vec<Vec<u8>> = Vec::new();
            for (attr, vals) in &entry.bin_attrs {
                if attr.to_ascii_lowercase() == wanted {
                    out.extend(vals.iter().take(MAX_VALUES).cloned());
                }
            }
            for (attr, vals) in &entry.attrs {
                if attr.to_ascii_lowercase() == wanted {
                    out.extend(vals.iter().take(MAX_VALUES).map(|v| v.as_bytes().to_vec()));
                }
            }
            out.retain(|v| !v.is_empty() && v.len() <= MAX_VALUE);
            out
        };
        for attr in [
            "userCertificate;binary",
            "userCertificate",
            "userSMIMECertificate",
        ] {
            found
                .smime
                .extend(values(attr).into_iter().map(|v| (v, entry.dn.clone())));
        }
        found
            .openpgp
            .extend(values("pgpKey").into_iter().map(|v| (v, entry.dn.clone())));
    }
    Ok(found)
}
