//! Secure web mail for recipients without keys: the **pull** model, and
//! **push** ([`push`]: the message sealed into the notification's HTML
//! attachment, only its wrapped key kept here) for the domains in
//! `[portal] push_domains`.
//!
//! A recipient whose decision asks for encryption and who has no usable
//! certificate or key gets method `portal` (`pipeline::portal_serves`,
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
//! downloads, deletes and replies ([`service`], the daemon's side of
//! `sealgate_api::portal::PortalService`). A reply enters the queue as
//! mail from the authenticated address to the original sender and goes
//! through the pipeline like any other mail.
//!
//! Trusts: the token for confidentiality; the session (resolved here,
//! never named by the web layer) for whose mailbox a request may reach.
//! Must never: write a message or a data key in clear, answer differently
//! for an address with and without an account, or open a message for a
//! session of another address.

pub mod accounts;
pub mod notify;
pub mod push;
pub mod seal;
pub mod service;
pub mod store;
pub mod view;

use std::sync::Arc;

use sealgate_api::FieldError;
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
    /// A stored part did not authenticate (altered, or moved).
    #[error("the stored message does not open: damaged or altered")]
    Damaged,
}

impl PortalError {
    /// Trying again later can help.
    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            PortalError::TokenUnavailable(_) | PortalError::Storage(_)
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
            PortalError::NotFound => sealgate_api::ServiceError::NotFound {
                what: "message".into(),
            },
            PortalError::Damaged => sealgate_api::ServiceError::failed("the message does not open"),
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

/// The portal's state on this node: sealed messages, push keys and accounts.
#[derive(Clone)]
pub struct Portal {
    pub messages: store::MessageStore,
    pub push: push::PushStore,
    pub accounts: Arc<accounts::PortalAccounts>,
}

impl Portal {
    /// Opens the portal's trees; the token is opened when first needed.
    pub fn open(db: &crate::db::Db, hsm: sealgate_hsm::HsmSettings) -> Portal {
        Portal::with_wrappers(db, Arc::new(seal::TokenWrappers::new(hsm)))
    }

    pub fn with_wrappers(db: &crate::db::Db, wrappers: Arc<dyn seal::WrapperSource>) -> Portal {
        Portal {
            messages: store::MessageStore::open(db, Arc::clone(&wrappers)),
            push: push::PushStore::open(db, wrappers),
            accounts: Arc::new(accounts::PortalAccounts::open(db)),
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
    if s.lockout_after == 0 {
        errors.push(FieldError::new(
            "portal.lockout_after",
            "must be at least 1",
        ));
    }
    errors
}
