//! The portal's mailbox beyond reading one message: folders (Inbox,
//! Sent, Trash and the recipient's own), the search and sort of a
//! folder's list, moving, reply-all, files in replies, a new message to
//! internal users (compose) and the reply to a pushed message. A supertrait of
//! [`super::PortalService`], so the web layer reaches it through the same
//! service object; every call takes the session, as there.

use serde::{Deserialize, Serialize};

use super::MessageSummary;
use crate::{BoxFuture, ServiceError};

/// What a folder's list is sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SortKey {
    /// When the portal stored it.
    #[default]
    Date,
    /// The From line (for Sent: the recipients).
    Sender,
    Subject,
}

/// Which messages of which folder, in what order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MailboxQuery {
    /// `inbox`, `sent`, `trash` or an own folder's name (empty: `inbox`).
    pub folder: String,
    /// Words the sender or the subject contains (case aside); empty: all.
    pub text: String,
    /// Stored at or after (ms since the epoch).
    pub from_ms: Option<u64>,
    /// Stored before (ms since the epoch).
    pub to_ms: Option<u64>,
    pub sort: SortKey,
    pub descending: bool,
}

/// One folder as the side bar shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderInfo {
    /// What [`MailboxQuery::folder`] and the move take.
    pub name: String,
    /// What the page calls it.
    pub label: String,
    /// One of the recipient's own (can be renamed and, empty, deleted).
    pub own: bool,
    pub count: usize,
    pub unread: usize,
}

/// A folder's list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mailbox {
    /// The folder listed.
    pub folder: FolderInfo,
    /// Every folder of the account: Inbox, Sent, Trash, then the own ones by name.
    pub folders: Vec<FolderInfo>,
    /// The messages that match, in the order asked.
    pub messages: Vec<MessageSummary>,
    /// The folder holds more than one listing opens: only the newest were searched.
    pub truncated: bool,
}

/// A file the portal user attaches, as the browser sent it (name and
/// type are the browser's: the daemon sanitises both).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Upload {
    pub name: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// What the portal user writes: the text and the files.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Draft {
    pub text: String,
    pub attachments: Vec<Upload>,
}

/// A new message to internal users.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NewMessage {
    /// The recipients as typed (commas, semicolons or spaces between).
    pub to: String,
    pub subject: String,
    pub draft: Draft,
}

/// What the forms that send need to know of the settings in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendingRules {
    /// `portal.compose`: the user may write new messages (to internal users).
    pub compose: bool,
    /// `portal.attachment_max_mb` in bytes: the files of one message together.
    pub attachment_max_bytes: u64,
}

/// The mailbox operations, implemented once by the daemon.
pub trait MailboxService: Send + Sync {
    /// One folder's messages that match, sorted. `NotFound` for a folder
    /// the account does not have.
    fn mailbox<'a>(
        &'a self,
        session: &'a str,
        query: &'a MailboxQuery,
    ) -> BoxFuture<'a, Result<Mailbox, ServiceError>>;

    /// The account's folders with their counts.
    fn folders<'a>(
        &'a self,
        session: &'a str,
    ) -> BoxFuture<'a, Result<Vec<FolderInfo>, ServiceError>>;

    /// Moves one of the session's messages into `folder` (not Sent).
    fn move_message<'a>(
        &'a self,
        session: &'a str,
        id: &'a str,
        folder: &'a str,
    ) -> BoxFuture<'a, Result<(), ServiceError>>;

    /// A new own folder (`Invalid` naming `name` when refused).
    fn create_folder<'a>(
        &'a self,
        session: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), ServiceError>>;

    /// Renames an own folder; its messages stay in it.
    fn rename_folder<'a>(
        &'a self,
        session: &'a str,
        name: &'a str,
        new_name: &'a str,
    ) -> BoxFuture<'a, Result<(), ServiceError>>;

    /// Deletes an own folder, only when it is empty.
    fn delete_folder<'a>(
        &'a self,
        session: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), ServiceError>>;

    /// Replies to the original sender and to the message's internal To
    /// and Cc recipients (the gateway's relay domains) but the session's
    /// own address; answers the queue id. A sealed copy goes to Sent.
    fn reply_all<'a>(
        &'a self,
        session: &'a str,
        id: &'a str,
        draft: &'a Draft,
    ) -> BoxFuture<'a, Result<String, ServiceError>>;

    /// The compose switch and the attachment limit in force.
    fn sending_rules(&self) -> SendingRules;

    /// A new message from the session's address to internal users (each
    /// recipient in the relay domains, else `Invalid` naming `to` and
    /// the address); `NotFound` while `portal.compose` is off. Sent as a
    /// reply is; a sealed copy goes to Sent. Answers the queue id.
    fn compose<'a>(
        &'a self,
        session: &'a str,
        message: &'a NewMessage,
    ) -> BoxFuture<'a, Result<String, ServiceError>>;

    /// Replies to a pushed message (`id`, `sealed` as for
    /// [`super::PortalService::open_push`]): to its sender, with `all`
    /// also to its internal To/Cc recipients; as a reply to a stored
    /// message otherwise (Sent copy included).
    fn reply_push<'a>(
        &'a self,
        session: &'a str,
        id: &'a str,
        sealed: std::sync::Arc<Vec<u8>>,
        draft: &'a Draft,
        all: bool,
    ) -> BoxFuture<'a, Result<String, ServiceError>>;
}
