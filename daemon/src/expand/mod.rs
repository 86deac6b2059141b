//! Expand stage: distribution lists become their members, and the sender's
//! groups are looked up, when a message is accepted.
//!
//! Runs between the end of DATA and the spool write, so what is spooled is
//! the final recipient list (each member is then decided on its own by the
//! policy) and the sender's groups travel with the message. A directory
//! server that cannot be reached is a temporary failure: the client gets
//! `451 4.4.3` and tries again; nothing is accepted half-expanded.
//!
//! Sources: local lists and groups from the configuration (`[lists]`,
//! `[groups]`; members are addresses or other lists/groups), and LDAP groups
//! ([`ldap`]). Nesting is followed to `MAX_DEPTH` levels with cycle
//! detection; the expanded list is de-duplicated and capped.
//!
//! Trusts: the configuration and the directory server's answers (bounded
//! in count).

pub mod ldap;

use std::collections::{BTreeMap, BTreeSet};

use crate::address::Address;
use crate::config::Config;
use crate::envelope::{Envelope, EnvelopeRecipient};

/// Deepest nesting of lists in lists that is followed.
pub const MAX_DEPTH: usize = 8;
/// Most recipients a message may have after expansion.
pub const MAX_EXPANDED: usize = 10_000;

/// Why expansion failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// Try again later (the directory server is unreachable or failed).
    #[error("directory unavailable: {0}")]
    Unavailable(String),
    /// More than [`MAX_EXPANDED`] recipients.
    #[error("more than {MAX_EXPANDED} recipients after expansion")]
    TooMany,
}

/// Expands lists and looks up the sender's groups.
#[derive(Debug, Clone, Default)]
pub struct Expander {
    lists: BTreeMap<String, Vec<String>>,
    groups: BTreeMap<String, Vec<String>>,
    ldap: Option<ldap::LdapConfig>,
}

impl Expander {
    pub fn new(config: &Config) -> Expander {
        let lower = |m: &BTreeMap<String, Vec<String>>| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.to_ascii_lowercase(),
                        v.iter().map(|s| s.to_ascii_lowercase()).collect(),
                    )
                })
                .collect()
        };
        Expander {
            lists: lower(&config.lists),
            groups: lower(&config.groups),
            ldap: config.ldap.clone(),
        }
    }

    /// Whether there is anything to expand at all (skips the work when not).
    pub fn is_empty(&self) -> bool {
        self.lists.is_empty() && self.groups.is_empty() && self.ldap.is_none()
    }

    /// The envelope with lists replaced by their members and the sender's groups filled in.
    pub async fn expand(&self, mut envelope: Envelope) -> Result<Envelope, ExpandError> {
        if self.is_empty() {
            return Ok(envelope);
        }
        let mut session = match &self.ldap {
            Some(settings) => Some(ldap::Session::connect(settings).await?),
            None => None,
        };
        let mut out: Vec<EnvelopeRecipient> = Vec::new();
        let mut seen: BTreeSet<String> = BTreeSet::new();
        for rcpt in std::mem::take(&mut envelope.recipients) {
            let address = rcpt.address.to_string().to_ascii_lowercase();
            let members = self.members_of(&address, session.as_mut()).await?;
            match members {
                None => {
                    if seen.insert(address) {
                        out.push(rcpt);
                    }
                }
                Some(members) => {
                    tracing::info!(list = %address, members = members.len(), "distribution list expanded");
                    for member in members {
                        let Some(parsed) = Address::parse(&member) else {
                            tracing::warn!(list = %address, %member, "list member is not an address; skipped");
                            continue;
                        };
                        if seen.insert(member.clone()) {
                            out.push(EnvelopeRecipient {
                                address: parsed,
                                notify: rcpt.notify,
                                orcpt: rcpt
                                    .orcpt
                                    .clone()
                                    .or_else(|| Some(format!("rfc822;{address}"))),
                            });
                        }
                    }
                }
            }
            if out.len() > MAX_EXPANDED {
                return Err(ExpandError::TooMany);
            }
        }
        envelope.recipients = out;
        if let Some(sender) = envelope
            .sender
            .as_ref()
            .map(|s| s.to_string().to_ascii_lowercase())
        {
            let mut groups = self.local_groups_of(&sender);
            if let Some(session) = session.as_mut() {
                groups.extend(session.groups_of(&sender).await?);
            }
            groups.sort();
            groups.dedup();
            envelope.sender_groups = groups;
        }
        if let Some(session) = session {
            session.close().await;
        }
        Ok(envelope)
    }

    /// Members of a local list or LDAP group (recursively), or `None` if
    /// `address` is neither.
    async fn members_of(
        &self,
        address: &str,
        ldap: Option<&mut ldap::Session>,
    ) -> Result<Option<Vec<String>>, ExpandError> {
        if self.lists.contains_key(address) {
            let mut members = Vec::new();
            let mut visited = BTreeSet::new();
            self.local_members(address, 0, &mut visited, &mut members);
            // Members of a local list may themselves be LDAP groups.
            let Some(ldap) = ldap else {
                return Ok(Some(members));
            };
            let mut out = Vec::new();
            for m in members {
                match ldap.expand_group(&m).await? {
                    Some(more) => out.extend(more),
                    None => out.push(m),
                }
            }
            return Ok(Some(out));
        }
        match ldap {
            Some(ldap) => ldap.expand_group(address).await,
            None => Ok(None),
        }
    }

    fn local_members(
        &self,
        list: &str,
        depth: usize,
        visited: &mut BTreeSet<String>,
        out: &mut Vec<String>,
    ) {
        if depth > MAX_DEPTH || !visited.insert(list.to_owned()) {
            tracing::warn!(%list, "list nesting too deep or a cycle; not followed further");
            return;
        }
        for member in self.lists.get(list).into_iter().flatten() {
            if self.lists.contains_key(member) {
                self.local_members(member, depth + 1, visited, out);
            } else if out.len() <= MAX_EXPANDED {
                out.push(member.clone());
            }
        }
    }

    /// Local groups that contain `sender`, directly or through nested groups.
    pub fn local_groups_of(&self, sender: &str) -> Vec<String> {
        let mut found: BTreeSet<String> = BTreeSet::new();
        let mut frontier = vec![sender.to_owned()];
        for _ in 0..=MAX_DEPTH {
            let mut next = Vec::new();
            for name in &frontier {
                for (group, members) in &self.groups {
                    if members.iter().any(|m| m == name) && found.insert(group.clone()) {
                        next.push(group.clone());
                    }
                }
            }
            if next.is_empty() {
                break;
            }
            frontier = next;
        }
        found.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn expander() -> Expander {
        let mut config = Config::default();
        let map = |pairs: &[(&str, &[&str])]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
                .collect()
        };
        config.lists = map(&[
            (
                "all@example.org",
                &["team@example.org", "boss@example.org", "Ann@example.org"],
            ),
            (
                "team@example.org",
                &["ann@example.org", "ben@example.org", "loop@example.org"],
            ),
            ("loop@example.org", &["all@example.org", "cat@example.org"]),
        ]);
        config.groups = map(&[
            ("legal", &["lee@example.org"]),
            ("management", &["legal", "boss@example.org"]),
            ("nobody", &["x@example.org"]),
        ]);
        Expander::new(&config)
    }

    fn envelope(rcpts: &[&str]) -> Envelope {
        Envelope {
            sender: Address::parse("LEE@example.org"),
            recipients: rcpts
                .iter()
                .map(|r| EnvelopeRecipient {
                    address: Address::parse(r).unwrap(),
                    notify: None,
                    orcpt: None,
                })
                .collect(),
            ret: None,
            envid: None,
            body_type: crate::smtp::command::BodyType::SevenBit,
            smtputf8: false,
            client_ip: "127.0.0.1".into(),
            helo: "c".into(),
            tls: false,
            session_id: "s".into(),
            received_at_ms: 0,
            sender_groups: Vec::new(),
            gateway_notice: false,
        }
    }

    #[tokio::test]
    async fn nested_lists_with_a_cycle_expand_once_each() {
        let e = expander()
            .expand(envelope(&[
                "all@example.org",
                "ben@example.org",
                "out@ext.example",
            ]))
            .await
            .unwrap();
        let got: Vec<String> = e.recipients.iter().map(|r| r.address.to_string()).collect();
        assert_eq!(
            got,
            [
                "ann@example.org",
                "ben@example.org",
                "cat@example.org",
                "boss@example.org",
                "out@ext.example"
            ]
        );
        assert_eq!(
            e.recipients[0].orcpt.as_deref(),
            Some("rfc822;all@example.org")
        );
        assert_eq!(e.recipients[4].orcpt, None);
        assert_eq!(e.sender_groups, ["legal", "management"]);
    }

    #[tokio::test]
    async fn nothing_configured_changes_nothing() {
        let before = envelope(&["all@example.org"]);
        let after = Expander::default().expand(before.clone()).await.unwrap();
        assert_eq!(before, after);
    }
}
