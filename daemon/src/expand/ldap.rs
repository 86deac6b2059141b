//! LDAP groups as distribution lists and sender groups (ldap3 over tokio).
//!
//! A list address is a group entry found with `group_filter` (its `{address}`
//! replaced by the escaped address); its `member_attribute` values are DNs:
//! a member that is itself a group is followed (up to `MAX_DEPTH` levels,
//! each DN once), any other member contributes its `mail_attribute`
//! values. A sender's groups are the groups whose members include the
//! sender's entry, and the groups containing those (same limits).
//!
//! Trusts: the configured server, as far as its answers are bounded
//! (`MAX_ENTRIES` entries read per expansion). Every failure to reach or
//! query it is `ExpandError::Unavailable`, so the message is deferred, never
//! accepted with a partial list.

use std::collections::BTreeSet;
use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry, ldap_escape};

use super::{ExpandError, MAX_DEPTH, MAX_EXPANDED};

/// Most directory entries read while expanding one message.
const MAX_ENTRIES: usize = 20_000;

/// The `[ldap]` table (the schema is in `sealgate_api::settings`).
pub use sealgate_api::settings::LdapSettings as LdapConfig;

/// Checks what types cannot; every error names its key.
pub fn check(ldap: &LdapConfig) -> Vec<sealgate_api::FieldError> {
    use sealgate_api::FieldError;
    let mut errors = Vec::new();
    if !(ldap.url.starts_with("ldap://") || ldap.url.starts_with("ldaps://")) {
        errors.push(FieldError::new(
            "ldap.url",
            "must start with ldap:// or ldaps://",
        ));
    }
    if ldap.base_dn.is_empty() {
        errors.push(FieldError::new("ldap.base_dn", "is required"));
    }
    for (key, filter) in [
        ("ldap.group_filter", &ldap.group_filter),
        ("ldap.person_filter", &ldap.person_filter),
    ] {
        if !filter.contains("{address}") || !filter.starts_with('(') {
            errors.push(FieldError::new(
                key,
                "must be an LDAP filter containing {address}",
            ));
        }
    }
    if ldap.timeout_secs == 0 {
        errors.push(FieldError::new("ldap.timeout_secs", "must be at least 1"));
    }
    errors
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> ExpandError {
    ExpandError::Unavailable(format!("{what}: {e}"))
}

/// One connection to the directory for the expansion of one message.
pub struct Session {
    ldap: Ldap,
    config: LdapConfig,
    timeout: Duration,
    read: usize,
}

impl Session {
    /// Connects and binds.
    pub async fn connect(config: &LdapConfig) -> Result<Session, ExpandError> {
        let timeout = Duration::from_secs(config.timeout_secs);
        let settings = LdapConnSettings::new().set_conn_timeout(timeout);
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &config.url)
            .await
            .map_err(|e| unavailable("connect", e))?;
        ldap3::drive!(conn);
        if !config.bind_dn.is_empty() {
            let password = match &config.bind_password_file {
                Some(path) => std::fs::read_to_string(path)
                    .map_err(|e| unavailable("bind password file", e))?
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_owned(),
                None => String::new(),
            };
            ldap.with_timeout(timeout)
                .simple_bind(&config.bind_dn, &password)
                .await
                .and_then(ldap3::LdapResult::success)
                .map_err(|e| unavailable("bind", e))?;
        }
        Ok(Session {
            ldap,
            config: config.clone(),
            timeout,
            read: 0,
        })
    }

    async fn search(
        &mut self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: Vec<&str>,
    ) -> Result<Vec<SearchEntry>, ExpandError> {
        let (entries, _) = self
            .ldap
            .with_timeout(self.timeout)
            .search(base, scope, filter, attrs)
            .await
            .and_then(ldap3::SearchResult::success)
            .map_err(|e| unavailable("search", e))?;
        self.read += entries.len();
        if self.read > MAX_ENTRIES {
            return Err(ExpandError::TooMany);
        }
        Ok(entries.into_iter().map(SearchEntry::construct).collect())
    }

    fn filter(template: &str, address: &str) -> String {
        template.replace("{address}", &ldap_escape(address))
    }

    /// The members' addresses of the group with this list address, or
    /// `None` if no group has it.
    pub async fn expand_group(
        &mut self,
        address: &str,
    ) -> Result<Option<Vec<String>>, ExpandError> {
        let filter = Self::filter(&self.config.group_filter, address);
        let base = self.config.base_dn.clone();
        let member_attr = self.config.member_attribute.clone();
        let groups = self
            .search(&base, Scope::Subtree, &filter, vec![member_attr.as_str()])
            .await?;
        let Some(group) = groups.into_iter().next() else {
            return Ok(None);
        };
        let mut visited = BTreeSet::from([group.dn.to_ascii_lowercase()]);
        let mut out = Vec::new();
        let mut frontier: Vec<String> = group.attrs.get(&member_attr).cloned().unwrap_or_default();
        for _ in 0..=MAX_DEPTH {
            let mut next = Vec::new();
            for dn in frontier {
                if !visited.insert(dn.to_ascii_lowercase()) {
                    continue; // a cycle or a member listed twice
                }
                let mail_attr = self.config.mail_attribute.clone();
                let entries = match self
                    .search(
                        &dn,
                        Scope::Base,
                        "(objectClass=*)",
                        vec![mail_attr.as_str(), member_attr.as_str()],
                    )
                    .await
                {
                    Ok(e) => e,
                    // A member DN that no longer exists is skipped, not a failure.
                    Err(ExpandError::Unavailable(e)) if e.contains("rc=32") => continue,
                    Err(e) => return Err(e),
                };
                for entry in entries {
                    match entry.attrs.get(&member_attr) {
                        Some(members) => next.extend(members.iter().cloned()),
                        None => out.extend(
                            entry
                                .attrs
                                .get(&mail_attr)
                                .into_iter()
                                .flatten()
                                .map(|m| m.to_ascii_lowercase()),
                        ),
                    }
                }
                if out.len() > MAX_EXPANDED {
                    return Err(ExpandError::TooMany);
                }
            }
            if next.is_empty() {
                break;
            }
            frontier = next;
        }
        Ok(Some(out))
    }

    /// Names of the groups the sender is in, directly or through nested groups.
    pub async fn groups_of(&mut self, sender: &str) -> Result<Vec<String>, ExpandError> {
        let base = self.config.base_dn.clone();
        let filter = Self::filter(&self.config.person_filter, sender);
        let people = self
            .search(&base, Scope::Subtree, &filter, vec!["1.1"])
            .await?;
        let mut names = BTreeSet::new();
        let mut visited = BTreeSet::new();
        let mut frontier: Vec<String> = people.into_iter().map(|p| p.dn).collect();
        let name_attr = self.config.group_name_attribute.clone();
        for _ in 0..=MAX_DEPTH {
            let mut next = Vec::new();
            for dn in frontier {
                if !visited.insert(dn.to_ascii_lowercase()) {
                    continue;
                }
                let filter = format!("({}={})", self.config.member_attribute, ldap_escape(&dn));
                for group in self
                    .search(&base, Scope::Subtree, &filter, vec![name_attr.as_str()])
                    .await?
                {
                    names.extend(group.attrs.get(&name_attr).into_iter().flatten().cloned());
                    next.push(group.dn);
                }
            }
            if next.is_empty() {
                break;
            }
            frontier = next;
        }
        Ok(names.into_iter().collect())
    }

    /// Unbinds (errors do not matter: the connection is dropped anyway).
    pub async fn close(mut self) {
        let _ = self.ldap.unbind().await;
    }
}
