//! Secure web mail for recipients without keys: the **pull** model.
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

/// The portal's state: sealed messages and accounts, in the shared store.
#[derive(Clone)]
pub struct Portal {
    pub messages: store::MessageStore,
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
            messages: store::MessageStore::open(shared, wrappers),
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
    if s.lockout_after == 0 {
        errors.push(FieldError::new(
            "portal.lockout_after",
            "must be at least 1",
        ));
    }
    errors
}
