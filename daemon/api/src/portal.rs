//! The secure web mail portal's interface, as types: what the portal's
//! web pages (`webui::portal`) may ask the daemon (`daemon::portal`).
//!
//! The portal's users are external recipients, not administrators, so
//! this is a service of its own beside [`crate::Service`]: no roles and
//! no audit log, but the same discipline. Every call that touches a
//! mailbox takes the session id the browser presented and the daemon
//! resolves it to the address it was opened for: the web layer never
//! names an address for a mailbox, so one recipient cannot reach
//! another's message whatever the request says.
//!
//! Errors are [`ServiceError`]s: `NotFound` for anything that is not
//! this session's (the same answer as for what does not exist),
//! `Unavailable` when the token is away (temporary), `Invalid` naming the
//! field.

pub mod mailbox;

use serde::{Deserialize, Serialize};

use crate::{BoxFuture, ServiceError};

/// What a successful login or enrolment gives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PortalLogin {
    /// A session: its id goes into the portal's cookie.
    Session(String),
    /// The address's domain requires a second factor and none is set up:
    /// show the secret, then [`PortalService::confirm_totp`].
    EnrolTotp {
        enrolment: String,
        secret_base32: String,
        uri: String,
        /// Or a passkey instead of TOTP (needs JavaScript): its ceremony.
        passkey: Option<PasskeyChallenge>,
    },
    /// The password is right and the account has passkeys: the browser
    /// answers the challenge ([`PortalService::passkey_login`]); `totp`:
    /// the account also has TOTP (signing in with password and code works
    /// without JavaScript).
    Passkey {
        challenge: PasskeyChallenge,
        totp: bool,
    },
}

/// A WebAuthn ceremony begun on the server: its id (the state stays in
/// the daemon) and the options for `navigator.credentials` as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasskeyChallenge {
    pub ceremony: String,
    pub options: String,
}

/// A registered passkey, as the preferences list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasskeyInfo {
    /// The credential id (base64url).
    pub id: String,
    /// The name the recipient gave it.
    pub name: String,
    pub created_ms: u64,
}

/// Where a session was opened from, as the web layer saw the login:
/// the client's IP address and its `User-Agent` (the daemon bounds and
/// cleans both; neither is trusted for anything but showing).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionOrigin {
    pub ip: String,
    pub agent: String,
}

/// One live session of the address, as the preferences list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Names the session for [`PortalService::end_session`]: random, kept
    /// with the session; neither its id nor derived from it.
    pub handle: String,
    pub created_ms: u64,
    /// Its last request (to within 30 seconds).
    pub last_ms: u64,
    /// Empty where unknown (sessions opened before this was recorded).
    pub ip: String,
    pub agent: String,
    /// The session that asks.
    pub current: bool,
}

/// One message in the inbox list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageSummary {
    /// Unguessable (128 random bits, hex).
    pub id: String,
    pub from: String,
    pub subject: String,
    /// When the portal stored it (ms since the epoch).
    pub stored_ms: u64,
    /// When it expires (ms since the epoch).
    pub expires_ms: u64,
    pub size: u64,
    pub attachments: usize,
    pub read: bool,
    /// The folder it is in (`inbox`, `sent`, `trash` or an own folder's name).
    #[serde(default)]
    pub folder: String,
}

/// One attachment of a message, without its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentInfo {
    pub index: usize,
    pub name: String,
    pub content_type: String,
    pub size: u64,
}

/// A message opened for reading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageView {
    pub summary: MessageSummary,
    pub to: String,
    pub date: String,
    /// The plain text body (or the HTML body's text).
    pub text: String,
    /// Whether there is an HTML body: the page then frames
    /// [`PortalService::body`], sandboxed, under its own policy.
    pub html: bool,
    /// Whether that HTML has images (blocked until the reader asks).
    pub remote_images: bool,
    pub attachments: Vec<AttachmentInfo>,
}

/// An attachment's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentData {
    pub name: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// A key or certificate the directory holds for the session's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnKey {
    /// `S/MIME` or `OpenPGP`.
    pub kind: String,
    pub fingerprint: String,
    /// When it stops being usable (ms since the epoch).
    pub expires_ms: u64,
    /// Whether mail to the address can be encrypted with it now.
    pub usable: bool,
    /// Who vouched for it: `portal` for one the recipient uploaded here,
    /// else the directory's level (`manual`, `wkd`, …).
    pub trust: String,
}

/// The recipient's own settings, as the preferences page shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preferences {
    pub address: String,
    /// The notification's language chosen by the recipient; `None`: the
    /// domain's (`effective_language`).
    pub language: Option<String>,
    pub effective_language: String,
    /// The languages to choose from.
    pub languages: Vec<String>,
    /// Keys and certificates mail to this address is encrypted with
    /// instead of coming to the portal.
    pub keys: Vec<OwnKey>,
    /// Bytes the address's messages take in the portal.
    pub used_bytes: u64,
    /// The most they may take (`None`: no limit); new mail beyond it waits.
    pub quota_bytes: Option<u64>,
    /// How mail without a key reaches the recipient, as they chose:
    /// `push` or `pull` (`None`: as the domain is set, `effective_delivery`).
    pub delivery: Option<String>,
    pub effective_delivery: String,
    /// The deliveries to choose from (empty: the gateway offers no choice).
    pub deliveries: Vec<String>,
    /// The account's passkeys.
    #[serde(default)]
    pub passkeys: Vec<PasskeyInfo>,
    /// Whether the account has TOTP.
    #[serde(default)]
    pub totp: bool,
    /// Whether the address's domain requires a second factor.
    #[serde(default)]
    pub second_factor_required: bool,
    /// Whether passkeys can be added here (the portal's URL names a host
    /// name: an IP address is not a valid WebAuthn relying party id).
    #[serde(default)]
    pub passkeys_offered: bool,
}

/// What an upload did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyUploaded {
    /// What was stored (mail held for the address is decided again).
    pub keys: Vec<OwnKey>,
}

/// The portal's operations, implemented once by the daemon (the
/// mailbox's folders, search and reply-all: [`mailbox::MailboxService`]).
pub trait PortalService: mailbox::MailboxService + Send + Sync {
    /// Sends a one-time code to `address` if the portal holds mail for it
    /// or it has an account. The caller always shows the same answer:
    /// `Ok` whether or not a code went out (no account enumeration).
    fn request_code<'a>(
        &'a self,
        address: &'a str,
        from: Option<String>,
    ) -> BoxFuture<'a, Result<(), ServiceError>>;

    /// Proves control of `address` with its code and sets the password
    /// (a first visit, or a reset).
    fn enrol<'a>(
        &'a self,
        address: &'a str,
        code: &'a str,
        password: &'a str,
        from: Option<String>,
    ) -> BoxFuture<'a, Result<PortalLogin, ServiceError>>;

    /// The address a reset link (the token from the code mail's link) was
    /// sent to, while the link is valid; uses nothing up.
    fn reset_address<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<String, ServiceError>>;

    /// Sets the password of the address a reset link was sent to, using
    /// the link (and its code) up: as [`Self::enrol`] with the code.
    fn reset<'a>(
        &'a self,
        token: &'a str,
        password: &'a str,
        from: Option<String>,
    ) -> BoxFuture<'a, Result<PortalLogin, ServiceError>>;

    /// Confirms a TOTP enrolment with its first code.
    fn confirm_totp<'a>(
        &'a self,
        enrolment: &'a str,
        code: &'a str,
    ) -> BoxFuture<'a, Result<String, ServiceError>>;

    /// Ends an enrolment with a passkey instead of TOTP: the ceremony of
    /// the enrolment's [`PortalLogin::EnrolTotp`] `passkey`, the name the
    /// recipient gives it and the browser's answer (JSON). Answers the
    /// session id.
    fn passkey_enrol<'a>(
        &'a self,
        ceremony: &'a str,
        name: &'a str,
        answer: &'a str,
    ) -> BoxFuture<'a, Result<String, ServiceError>>;

    /// The second step of a login with a passkey ([`PortalLogin::Passkey`]):
    /// the browser's answer (JSON). Refused answers count as failed logins
    /// and give the login's one error. Answers the session id.
    fn passkey_login<'a>(
        &'a self,
        ceremony: &'a str,
        answer: &'a str,
        from: Option<String>,
    ) -> BoxFuture<'a, Result<String, ServiceError>>;

    /// The second step of a login with the account's TOTP code instead
    /// of the passkey (works without JavaScript); as [`Self::passkey_login`].
    fn passkey_login_totp<'a>(
        &'a self,
        ceremony: &'a str,
        code: &'a str,
        from: Option<String>,
    ) -> BoxFuture<'a, Result<String, ServiceError>>;

    /// Begins adding a passkey to the session's account (at most 10).
    fn passkey_add_begin<'a>(
        &'a self,
        session: &'a str,
    ) -> BoxFuture<'a, Result<PasskeyChallenge, ServiceError>>;

    /// Ends adding a passkey: the ceremony must be this session's address's.
    fn passkey_add<'a>(
        &'a self,
        session: &'a str,
        ceremony: &'a str,
        name: &'a str,
        answer: &'a str,
    ) -> BoxFuture<'a, Result<(), ServiceError>>;

    /// Removes one of the session's account's passkeys (by id); refused
    /// where it is the last second factor and the domain requires one.
    fn passkey_remove<'a>(
        &'a self,
        session: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<(), ServiceError>>;

    /// Logs in: the same error for an unknown address, a wrong password,
    /// a wrong code and a locked account.
    fn login<'a>(
        &'a self,
        address: &'a str,
        password: &'a str,
        code: Option<&'a str>,
        from: Option<String>,
    ) -> BoxFuture<'a, Result<PortalLogin, ServiceError>>;

    /// The address a live session belongs to (its idle timer starts again).
    fn session<'a>(&'a self, session: &'a str) -> BoxFuture<'a, Result<String, ServiceError>>;

    /// Records where a session just opened came from (the web layer calls
    /// it with the id a login, enrolment or second step answered, before
    /// handing out the cookie). The first origin stays: later calls
    /// change nothing.
    fn session_origin<'a>(
        &'a self,
        session: &'a str,
        origin: SessionOrigin,
    ) -> BoxFuture<'a, Result<(), ServiceError>>;

    /// The live sessions of the session's address, this one first, then
    /// the most recently used.
    fn sessions<'a>(
        &'a self,
        session: &'a str,
    ) -> BoxFuture<'a, Result<Vec<SessionInfo>, ServiceError>>;

    /// Ends another session of the session's address, named by its
    /// handle; `NotFound` for any handle that is not one of them (another
    /// address's, this session's own, an unknown one). A tracking event.
    fn end_session<'a>(
        &'a self,
        session: &'a str,
        handle: &'a str,
    ) -> BoxFuture<'a, Result<(), ServiceError>>;

    /// Ends every other session of the session's address; answers how
    /// many. A tracking event.
    fn end_other_sessions<'a>(
        &'a self,
        session: &'a str,
    ) -> BoxFuture<'a, Result<usize, ServiceError>>;

    /// Ends a session on the server.
    fn logout<'a>(&'a self, session: &'a str) -> BoxFuture<'a, Result<(), ServiceError>>;

    /// The session's messages in every folder, newest first (a folder's
    /// list, searched and sorted: [`mailbox::MailboxService::mailbox`]).
    fn inbox<'a>(
        &'a self,
        session: &'a str,
    ) -> BoxFuture<'a, Result<Vec<MessageSummary>, ServiceError>>;

    /// Opens one of the session's messages (a tracking event).
    fn read<'a>(
        &'a self,
        session: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<MessageView, ServiceError>>;

    /// The sanitised HTML body of one of the session's messages, for the
    /// sandboxed frame of the page [`PortalService::read`] answered (part
    /// of that reading, so no event of its own); with `images`, images
    /// from the Internet (HTTPS only) are kept. Empty without HTML.
    fn body<'a>(
        &'a self,
        session: &'a str,
        id: &'a str,
        images: bool,
    ) -> BoxFuture<'a, Result<String, ServiceError>>;

    /// One attachment of one of the session's messages (a tracking event).
    fn attachment<'a>(
        &'a self,
        session: &'a str,
        id: &'a str,
        index: usize,
    ) -> BoxFuture<'a, Result<AttachmentData, ServiceError>>;

    /// Deletes one of the session's messages: into Trash; from Trash,
    /// its wrapped key is destroyed.
    fn delete<'a>(
        &'a self,
        session: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<(), ServiceError>>;

    /// Replies to the original sender: the reply enters the gateway as
    /// mail from the session's address; answers its queue id.
    fn reply<'a>(
        &'a self,
        session: &'a str,
        id: &'a str,
        draft: &'a mailbox::Draft,
    ) -> BoxFuture<'a, Result<String, ServiceError>>;

    /// Opens a pushed message (`sealgate::portal::push`): `id` and
    /// `sealed` come from the attachment's form, as posted. The key is
    /// looked up under the session's address only, so another address's
    /// session gets `NotFound`, as for an unknown id; a ciphertext that
    /// does not authenticate is refused. A tracking event.
    fn open_push<'a>(
        &'a self,
        session: &'a str,
        id: &'a str,
        sealed: std::sync::Arc<Vec<u8>>,
    ) -> BoxFuture<'a, Result<MessageView, ServiceError>>;

    /// [`PortalService::body`] of a pushed message.
    fn push_body<'a>(
        &'a self,
        session: &'a str,
        id: &'a str,
        sealed: std::sync::Arc<Vec<u8>>,
        images: bool,
    ) -> BoxFuture<'a, Result<String, ServiceError>>;

    /// One attachment of a pushed message (a tracking event).
    fn push_attachment<'a>(
        &'a self,
        session: &'a str,
        id: &'a str,
        sealed: std::sync::Arc<Vec<u8>>,
        index: usize,
    ) -> BoxFuture<'a, Result<AttachmentData, ServiceError>>;

    /// The session's preferences.
    fn preferences<'a>(
        &'a self,
        session: &'a str,
    ) -> BoxFuture<'a, Result<Preferences, ServiceError>>;

    /// The notification language for the session's address (`None`: the
    /// domain's).
    fn set_language<'a>(
        &'a self,
        session: &'a str,
        language: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), ServiceError>>;

    /// How mail without a key reaches the session's address: `push` or
    /// `pull` (`None`: as its domain is set). Refused where the gateway
    /// offers no choice.
    fn set_delivery<'a>(
        &'a self,
        session: &'a str,
        delivery: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), ServiceError>>;

    /// An S/MIME certificate or OpenPGP key for the session's address:
    /// stored in the directory with the `portal` trust level for that
    /// address only (other addresses it names are ignored), so the next
    /// mail is encrypted with it; mail held for the address is decided
    /// again at once.
    fn upload_key<'a>(
        &'a self,
        session: &'a str,
        data: &'a [u8],
    ) -> BoxFuture<'a, Result<KeyUploaded, ServiceError>>;

    /// A new password, given the current one; other sessions of the
    /// address end.
    fn change_password<'a>(
        &'a self,
        session: &'a str,
        current: &'a str,
        new: &'a str,
    ) -> BoxFuture<'a, Result<(), ServiceError>>;
}
