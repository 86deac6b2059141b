//! The `[portal]` table: secure web mail for recipients without keys
//! (pull, and push for `push_domains`). The listener's addresses are
//! bootstrap keys (`listen`, bound at start, in the daemon's
//! configuration); everything here can
//! change while the gateway runs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Settings of the secure web mail portal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PortalSettings {
    /// Deliver to the portal (default off: such recipients are held as before).
    pub enabled: bool,
    /// The portal's address as recipients reach it (the notification's
    /// link): `https://mail.example.com` or `https://127.0.0.1:8444`.
    pub url: String,
    /// Also use the portal for `encrypt-if-possible` recipients without a
    /// key (default: they get the message in clear, as the policy allows).
    pub encrypt_if_possible: bool,
    /// Days a message stays in the portal (default 30).
    pub retention_days: u32,
    /// Per recipient domain: days, overriding `retention_days`.
    pub domain_retention_days: BTreeMap<String, u32>,
    /// Megabytes one address's portal mailbox may hold (0: no limit). Mail
    /// beyond it waits in the queue, like mail for a full mailbox, until
    /// the recipient deletes messages or the queue lifetime ends.
    pub quota_mb: u32,
    /// Tell the sender when the recipient first opens a message (a
    /// receipt from the portal, recorded in tracking).
    pub read_receipts: bool,
    /// Megabytes the files attached to one message sent from the portal
    /// (a reply or a new message) may take together (default 10).
    pub attachment_max_mb: u32,
    /// Portal users may write new messages to the organisation's own
    /// addresses (`relay.domains`), not only reply (default off).
    pub compose: bool,
    /// Recipient domains whose portal accounts must use a second factor (TOTP).
    pub require_totp_domains: Vec<String>,
    /// Recipient domains that get **push** instead of pull (when
    /// `policy.methods` names `push`): the message travels sealed in an
    /// HTML attachment of the notification and the gateway keeps only its
    /// wrapped key.
    pub push_domains: Vec<String>,
    /// The notification's language: `en` or `de` (default `en`).
    pub language: String,
    /// Per recipient domain: the notification's language.
    pub domain_language: BTreeMap<String, String>,
    /// The notification's From address (default `postmaster@<hostname>`).
    pub from: Option<String>,
    /// The notification's text, replacing the built-in one (`{sender}`,
    /// `{recipient}`, `{link}`, `{days}` are filled in): plain text;
    /// the HTML part is made from it, escaped.
    pub notification_text: Option<String>,
    /// The notification's subject, replacing the built-in one (same placeholders).
    pub notification_subject: Option<String>,
    /// Failed logins in a row that lock a portal account.
    pub lockout_after: u32,
    /// Seconds a locked portal account stays locked.
    pub lockout_secs: u64,
}

impl Default for PortalSettings {
    fn default() -> Self {
        PortalSettings {
            enabled: false,
            url: "https://127.0.0.1:8444".into(),
            encrypt_if_possible: false,
            retention_days: 30,
            domain_retention_days: BTreeMap::new(),
            quota_mb: 100,
            read_receipts: false,
            attachment_max_mb: 10,
            compose: false,
            require_totp_domains: Vec::new(),
            push_domains: Vec::new(),
            language: "en".into(),
            domain_language: BTreeMap::new(),
            from: None,
            notification_text: None,
            notification_subject: None,
            lockout_after: 5,
            lockout_secs: 15 * 60,
        }
    }
}

impl PortalSettings {
    /// Days a message for `domain` is kept.
    pub fn retention_for(&self, domain: &str) -> u32 {
        self.domain_retention_days
            .iter()
            .find(|(d, _)| d.eq_ignore_ascii_case(domain))
            .map_or(self.retention_days, |(_, days)| *days)
    }

    /// The notification language for `domain`.
    pub fn language_for(&self, domain: &str) -> &str {
        self.domain_language
            .iter()
            .find(|(d, _)| d.eq_ignore_ascii_case(domain))
            .map_or(self.language.as_str(), |(_, l)| l.as_str())
    }

    /// The quota in bytes (`None`: no limit).
    pub fn quota_bytes(&self) -> Option<u64> {
        (self.quota_mb > 0).then(|| u64::from(self.quota_mb) * 1024 * 1024)
    }

    /// The most the files of one message sent from the portal may take (bytes).
    pub fn attachment_max_bytes(&self) -> u64 {
        u64::from(self.attachment_max_mb) * 1024 * 1024
    }

    /// Whether recipients in `domain` get push (the message in an
    /// encrypted HTML attachment) rather than pull.
    pub fn push_for(&self, domain: &str) -> bool {
        self.push_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain))
    }

    /// Whether accounts of `domain` need a second factor.
    pub fn totp_required(&self, domain: &str) -> bool {
        self.require_totp_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain))
    }
}
