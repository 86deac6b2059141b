//! Secure web mail for recipients without keys: the **pull** model, and
//! **push** ([`push`]: the message sealed into the notification's HTML
//! attachment, only its wrapped key kept here) for the domains in
//! `[portal] push_domains`.
//!
//! A recipient whose decision asks for encryption and who has no usable
//! certificate or key gets method `portal` (`pipeline::portal_method`,
//! when `[portal] enabled` and `policy.methods` names it). The scheduler
//! then stores the message here, sealed ([`seal`], [`store`]: AES-256-GCM
//! per message, the data key wrapped by the token's `at-rest-wrap` key,
//! bound to the recipient and the message id), marks the recipient
//! delivered (remote `portal`), and queues a notification ([`notify`])
//! that names the sender and links to the portal; the link is no
//! credential.
//!
//! The recipient proves control of the address with a one-time code sent
//! there, sets a password (the admin accounts' Argon2id and
//! common-password check, `crate::accounts::password`) and, where the
//! domain requires it, TOTP (`crate::accounts::totp`); then reads,
//! downloads, files into folders ([`folders`]), searches, deletes (into
//! Trash, then for good) and replies ([`service`], the daemon's side of
//! `sealgate_api::portal::PortalService`). A reply enters the queue as
//! mail from the authenticated address to the original sender (and, for
//! reply-all, the internal recipients) and goes through the pipeline
//! like any other mail; a sealed copy stays in the account's Sent.
//!
//! Trusts: the token for confidentiality; the session (resolved here,
//! never named by the web layer) for whose mailbox a request may reach.
//! Must never: write a message or a data key in clear, answer differently
//! for an address with and without an account, or open a message for a
//! session of another address.

pub mod accounts;
pub mod folders;
pub mod kv;
pub mod notify;
pub mod outgoing;
pub mod push;
pub mod seal;
pub mod service;
pub mod store;
pub mod view;

use std::sync::Arc;

use sealgate_api::FieldError;
use sealgate_api::settings::policy::MethodName;
use sealgate_api::settings::portal::PortalSettings;

/// Why a portal operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortalError {
    /// The token (its `at-rest-wrap` key) cannot be reached: try later.
    #[error("the key store is unavailable: {0}")]
    TokenUnavailable(String),
    /// The state store failed (disk full, I/O): try later.
    #[error("portal storage: {0}")]
    Storage(String),
    /// No such message for this address (also: not this address's).
    #[error("no such message")]
    NotFound,
    /// The recipient's mailbox would go over its quota: the message waits
    /// until the recipient deletes some (bytes in use, the quota).
    #[error("{used} of {quota} bytes in use, the message has {size}")]
    OverQuota { used: u64, size: u64, quota: u64 },
    /// A stored part did not authenticate (altered, or moved).
    #[error("the stored message does not open: damaged or altered")]
    Damaged,
    /// A folder operation the mailbox refuses (shown next to the field).
    #[error("{0}")]
    Folder(#[from] folders::FolderError),
}

impl PortalError {
    /// Trying again later can help.
    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            PortalError::TokenUnavailable(_)
                | PortalError::Storage(_)
                | PortalError::OverQuota { .. }
        )
    }
}

impl From<PortalError> for sealgate_api::ServiceError {
    fn from(e: PortalError) -> Self {
        match e {
            PortalError::TokenUnavailable(_) => sealgate_api::ServiceError::Unavailable {
                what: "the key store".into(),
            },
            PortalError::Storage(_) => sealgate_api::ServiceError::Unavailable {
                what: "the portal's storage".into(),
            },
            PortalError::OverQuota { .. } => sealgate_api::ServiceError::Busy {
                what: "the mailbox is full".into(),
            },
            PortalError::NotFound => sealgate_api::ServiceError::NotFound {
                what: "message".into(),
            },
            PortalError::Damaged => sealgate_api::ServiceError::failed("the message does not open"),
            PortalError::Folder(folders::FolderError::NoSuchFolder) => {
                sealgate_api::ServiceError::NotFound {
                    what: "folder".into(),
                }
            }
            PortalError::Folder(e) => sealgate_api::ServiceError::invalid("folder", e.to_string()),
        }
    }
}

/// How the portal serves a recipient without a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The message waits sealed in the gateway; the notification links
    /// to the portal.
    Pull,
    /// The message travels sealed in the notification's HTML attachment
    /// ([`push`]); the gateway keeps only its wrapped key.
    Push,
}

impl Method {
    /// The name a recipient's choice is stored under.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Pull => "pull",
            Method::Push => "push",
        }
    }

    /// A stored choice (`push`, `pull`).
    pub fn parse(text: &str) -> Option<Method> {
        match text {
            "pull" => Some(Method::Pull),
            "push" => Some(Method::Push),
            _ => None,
        }
    }
}

/// The portal's method for a recipient and whose choice it is
/// (`pipeline::portal_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    pub method: Method,
    /// The recipient chose it on the preferences page (else the domain's
    /// setting).
    pub chosen: bool,
}

impl Served {
    fn why(self) -> &'static str {
        match (self.method, self.chosen) {
            (Method::Pull, true) => "the recipient chose pull",
            (Method::Push, true) => "the recipient chose push",
            (Method::Pull, false) => "the recipient reads it in the secure web mail portal",
            (Method::Push, false) => "the recipient's domain gets push",
        }
    }

    /// What the policy's explanation (tracking, `policy explain`) says
    /// about the method.
    pub fn describe(self) -> String {
        match self.method {
            Method::Pull => format!("method portal ({})", self.why()),
            Method::Push => format!(
                "method push ({}: an encrypted HTML attachment that opens in the portal after sign-in)",
                self.why()
            ),
        }
    }

    /// What the dry run says happens to a recipient without a key (`why`).
    pub fn outcome(self, why: &str) -> String {
        match self.method {
            Method::Pull => format!(
                "method portal: {why}; {}; stored encrypted in the secure web mail portal, the recipient is notified",
                self.why()
            ),
            Method::Push => format!(
                "method push: {why}; {}; sent sealed in an HTML attachment of the notification that opens in the portal after sign-in; the gateway keeps only the wrapped key",
                self.why()
            ),
        }
    }
}

/// Push or pull for a recipient in `domain` without a key, once the
/// portal takes them: the recipient's own choice where `methods` (the
/// recipient's: the address's, the domain's or `policy.methods`) names
/// its method, else push where it names `push` and the domain is in
/// `push_domains`, else pull where it names `portal`; `None` where it
/// names neither that applies. Pure: `pipeline::portal_method` looks the
/// choice up.
pub fn choose(
    portal: &PortalSettings,
    methods: &[MethodName],
    domain: &str,
    chosen: Option<Method>,
) -> Option<Served> {
    let listed = |m: &Method| match m {
        Method::Push => methods.contains(&MethodName::Push),
        Method::Pull => methods.contains(&MethodName::Portal),
    };
    if let Some(method) = chosen.filter(listed) {
        return Some(Served {
            method,
            chosen: true,
        });
    }
    let by_domain = if portal.push_for(domain) {
        Method::Push
    } else {
        Method::Pull
    };
    [by_domain, Method::Pull]
        .into_iter()
        .find(listed)
        .map(|method| Served {
            method,
            chosen: false,
        })
}

/// The portal's state: sealed messages, push keys and accounts, in the
/// shared store.
#[derive(Clone)]
pub struct Portal {
    pub messages: store::MessageStore,
    pub push: push::PushStore,
    pub accounts: Arc<accounts::PortalAccounts>,
}

impl Portal {
    /// Opens the portal's keyspaces in the shared store (the node's sled,
    /// or the cluster's PostgreSQL); the token is opened when first needed.
    pub fn open(
        shared: &Arc<dyn crate::store::SharedStore>,
        hsm: sealgate_hsm::HsmSettings,
    ) -> Portal {
        Portal::with_wrappers(shared, Arc::new(seal::TokenWrappers::new(hsm)))
    }

    pub fn with_wrappers(
        shared: &Arc<dyn crate::store::SharedStore>,
        wrappers: Arc<dyn seal::WrapperSource>,
    ) -> Portal {
        Portal {
            messages: store::MessageStore::open(shared, Arc::clone(&wrappers)),
            push: push::PushStore::open(shared, wrappers),
            accounts: Arc::new(accounts::PortalAccounts::open(shared)),
        }
    }
}

/// Checks the `[portal]` settings; every error names its key.
pub fn check_settings(s: &PortalSettings) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if s.enabled && !s.url.starts_with("https://") {
        errors.push(FieldError::new(
            "portal.url",
            "must be an https:// address (the notification's link)",
        ));
    }
    if s.retention_days == 0 || s.domain_retention_days.values().any(|d| *d == 0) {
        errors.push(FieldError::new(
            "portal.retention_days",
            "must be at least 1 day",
        ));
    }
    for lang in std::iter::once(&s.language).chain(s.domain_language.values()) {
        if !notify::LANGUAGES.contains(&lang.as_str()) {
            errors.push(FieldError::new(
                "portal.language",
                format!("`{lang}` is not one of {}", notify::LANGUAGES.join(", ")),
            ));
        }
    }
    if !(1..=15).contains(&s.attachment_max_mb) {
        errors.push(FieldError::new(
            "portal.attachment_max_mb",
            "must be 1 to 15 (megabytes: the files travel in one form post, and the portal's listener takes bodies up to 16 MB)",
        ));
    }
    if s.lockout_after == 0 {
        errors.push(FieldError::new(
            "portal.lockout_after",
            "must be at least 1",
        ));
    }
    errors
}

#[cfg(test)]
mod tests {
    use sealgate_api::settings::policy::{MethodName, PolicyConfig};

    use super::*;

    /// (methods, domain, the recipient's choice) → (method, chosen)
    type Case<'a> = (
        &'a Vec<MethodName>,
        &'a str,
        Option<Method>,
        Option<(Method, bool)>,
    );

    #[test]
    fn push_or_pull_from_the_choice_the_domain_and_the_methods() {
        use Method::{Pull, Push};
        let portal = PortalSettings {
            push_domains: vec!["Partner.example".into()],
            ..PortalSettings::default()
        };
        let both = vec![MethodName::Smime, MethodName::Push, MethodName::Portal];
        let pull_only = vec![MethodName::Smime, MethodName::Portal];
        let push_only = vec![MethodName::Push];
        // (methods, domain, the recipient's choice) → (method, chosen)
        let cases: &[Case<'_>] = &[
            (&both, "partner.example", None, Some((Push, false))),
            (&both, "other.example", None, Some((Pull, false))),
            (&both, "partner.example", Some(Pull), Some((Pull, true))),
            (&both, "other.example", Some(Push), Some((Push, true))),
            // push not listed: the domain's push and the choice fall back to pull
            (&pull_only, "partner.example", None, Some((Pull, false))),
            (&pull_only, "other.example", Some(Push), Some((Pull, false))),
            // only push listed: pull is no method at all
            (
                &push_only,
                "partner.example",
                Some(Pull),
                Some((Push, false)),
            ),
            (&push_only, "other.example", None, None),
        ];
        for (methods, domain, chosen, want) in cases {
            let got = choose(&portal, methods, domain, *chosen).map(|s| (s.method, s.chosen));
            assert_eq!(got, *want, "{methods:?} {domain} {chosen:?}");
        }
        // Default methods name no push: nothing changes until both are set.
        let served = choose(
            &portal,
            &PolicyConfig::default().methods,
            "partner.example",
            None,
        );
        assert_eq!(served.map(|s| s.method), Some(Pull));
    }

    #[test]
    fn the_explanation_says_whose_choice() {
        let by_domain = Served {
            method: Method::Push,
            chosen: false,
        };
        assert!(
            by_domain
                .describe()
                .starts_with("method push (the recipient's domain gets push")
        );
        let chosen = Served {
            method: Method::Pull,
            chosen: true,
        };
        assert_eq!(
            chosen.describe(),
            "method portal (the recipient chose pull)"
        );
        assert!(
            chosen
                .outcome("no key")
                .starts_with("method portal: no key; the recipient chose pull")
        );
    }
}
