//! The daemon's side of `sealgate_api::portal::mailbox::MailboxService`:
//! folder listings with search and sort, moving, own folders, and the
//! sending: the reply (to the sender, or to all internal recipients; to
//! a stored or a pushed message) and the new message to internal users,
//! all through one [`PortalServer::send`] (files checked, MIME built by
//! [`outgoing`], queued, tracked) with its sealed copy in Sent.
//!
//! Search works over sealed summaries: a listing unwraps, on the token,
//! the key of each message of the folder (at most
//! [`folders::MAX_LISTED`], the newest) to open its summary, then
//! filters and sorts in memory ([`folders`]). Nothing about the search
//! is stored.

use sealgate_api::portal::MessageSummary;
use sealgate_api::portal::mailbox::{
    Draft, FolderInfo, Mailbox, MailboxQuery, MailboxService, NewMessage, SendingRules,
};
use sealgate_api::{BoxFuture, ServiceError};

use super::PortalServer;
use crate::address::Address;
use crate::envelope::{Envelope, EnvelopeRecipient, now_ms};
use crate::portal::folders::{self, Filter, Folder, FolderName, Listed};
use crate::portal::store::{IndexEntry, Summary};
use crate::portal::{outgoing, view};

fn no_folder() -> ServiceError {
    ServiceError::NotFound {
        what: "folder".into(),
    }
}

fn parse_name(field: &str, text: &str) -> Result<FolderName, ServiceError> {
    FolderName::parse(text).map_err(|e| ServiceError::invalid(field, e.to_string()))
}

fn info(folder: &Folder, entries: &[IndexEntry]) -> FolderInfo {
    let mine = entries.iter().filter(|e| e.folder == folder.as_str());
    let (count, unread) = mine.fold((0, 0), |(c, u), e| (c + 1, u + usize::from(!e.read)));
    FolderInfo {
        name: folder.as_str().to_owned(),
        label: folder.label().to_owned(),
        own: matches!(folder, Folder::Own(_)),
        count,
        unread,
    }
}

impl PortalServer {
    fn folder_list(
        &self,
        address: &str,
        entries: &[IndexEntry],
    ) -> Result<Vec<FolderInfo>, ServiceError> {
        let own = self.portal().messages.own_folders(address)?;
        Ok([Folder::Inbox, Folder::Sent, Folder::Trash]
            .into_iter()
            .chain(own.into_iter().map(Folder::Own))
            .map(|f| info(&f, entries))
            .collect())
    }

    fn listing(&self, address: &str, query: &MailboxQuery) -> Result<Mailbox, ServiceError> {
        let folder = match query.folder.as_str() {
            "" => Folder::Inbox,
            f => Folder::parse(f).ok_or_else(no_folder)?,
        };
        let store = &self.portal().messages;
        if !store.has_folder(address, &folder)? {
            return Err(no_folder());
        }
        let entries = store.entries(address)?;
        let folders = self.folder_list(address, &entries)?;
        let mut here: Vec<IndexEntry> = entries
            .into_iter()
            .filter(|e| e.folder == folder.as_str())
            .collect();
        here.sort_by_key(|e| std::cmp::Reverse(e.stored_ms));
        let truncated = here.len() > folders::MAX_LISTED;
        here.truncate(folders::MAX_LISTED);
        let filter = Filter {
            text: query.text.clone(),
            from_ms: query.from_ms,
            to_ms: query.to_ms,
        };
        let mut listed = Vec::new();
        for entry in here {
            let summary = store.summary(&entry)?;
            if filter.matches(entry.stored_ms, &summary) {
                let l = Listed {
                    stored_ms: entry.stored_ms,
                    summary,
                };
                listed.push((entry, l));
            }
        }
        folders::sort(&mut listed, query.sort, query.descending, |(_, l)| l);
        let folder_info = folders
            .iter()
            .find(|f| f.name == folder.as_str())
            .cloned()
            .ok_or_else(no_folder)?;
        Ok(Mailbox {
            folder: folder_info,
            folders,
            messages: listed
                .into_iter()
                .map(|(e, l)| message_summary(&e, l.summary))
                .collect(),
            truncated,
        })
    }

    /// A reply from the session's address to the original sender and,
    /// with `all`, the original To/Cc addresses in the relay domains (not
    /// the session's own); sent by [`Self::send`].
    pub(super) async fn send_reply(
        &self,
        session: &str,
        id: &str,
        draft: &Draft,
        all: bool,
    ) -> Result<String, ServiceError> {
        outgoing::check_text(&draft.text, "")?;
        let address = self.address_of(session)?;
        let opened = {
            let me = self.clone_handle();
            let (address, id) = (address.clone(), id.to_owned());
            tokio::task::spawn_blocking(move || me.portal().messages.read(&address, &id))
                .await
                .map_err(|e| ServiceError::failed(format!("stopped: {e}")))??
        };
        let kind = if all {
            "replied to all of"
        } else {
            "replied to"
        };
        let thread = Thread {
            summary: &opened.summary,
            content: &opened.content,
            queue_id: &opened.entry.queue_id,
            what: format!("{kind} {id}"),
        };
        self.send_in_thread(&address, &thread, draft, all).await
    }

    /// A reply to a pushed message: its headers come from the posted
    /// ciphertext, opened as for reading; sent as a stored message's reply.
    pub(super) async fn send_push_reply(
        &self,
        session: &str,
        (id, sealed): (&str, std::sync::Arc<Vec<u8>>),
        draft: &Draft,
        all: bool,
    ) -> Result<String, ServiceError> {
        outgoing::check_text(&draft.text, "")?;
        let address = self.address_of(session)?;
        let (record, content) = {
            let me = self.clone_handle();
            let (address, id) = (address.clone(), id.to_owned());
            tokio::task::spawn_blocking(move || {
                me.portal().push.unseal(&address, &id, &sealed, now_ms())
            })
            .await
            .map_err(|e| ServiceError::failed(format!("stopped: {e}")))??
        };
        let (summary, _) = view::summarise(&content, &record.sender);
        let kind = if all {
            "replied to all of"
        } else {
            "replied to"
        };
        let thread = Thread {
            summary: &summary,
            content: &content,
            queue_id: &record.queue_id,
            what: format!("{kind} pushed {id}"),
        };
        self.send_in_thread(&address, &thread, draft, all).await
    }

    /// The reply to `thread`'s message: to its sender (with `all`, also its
    /// internal To/Cc but `address`), `Re:` subject, threaded.
    async fn send_in_thread(
        &self,
        address: &str,
        thread: &Thread<'_>,
        draft: &Draft,
        all: bool,
    ) -> Result<String, ServiceError> {
        let Some(original_sender) = Address::parse(&thread.summary.sender) else {
            return Err(ServiceError::invalid(
                "text",
                "This message has no sender to reply to.",
            ));
        };
        if original_sender.to_string().eq_ignore_ascii_case(address) {
            // A copy of the recipient's own reply (in Sent, or moved out
            // of it): a reply would go back to themselves.
            return Err(ServiceError::invalid(
                "text",
                "This is a copy of your own reply; reply to the message it answers.",
            ));
        }
        let config = self.config();
        let copies = if all {
            copies_for_reply_all(
                &view::recipients(thread.content),
                &original_sender,
                address,
                |domain| config.is_local_domain(domain),
            )
        } else {
            Vec::new()
        };
        self.send(Sending {
            address,
            to: vec![original_sender],
            cc: copies,
            subject: view::reply_subject(&thread.summary.subject),
            parent: thread.summary.message_id.as_deref(),
            draft,
            tracked: Some((thread.queue_id, &thread.what)),
        })
        .await
    }

    /// A new message from the session's address to internal users.
    pub(super) async fn send_new(
        &self,
        session: &str,
        message: &NewMessage,
    ) -> Result<String, ServiceError> {
        let config = self.config();
        if !config.portal.settings.compose {
            return Err(ServiceError::NotFound {
                what: "page".into(),
            });
        }
        let address = self.address_of(session)?;
        let to = outgoing::internal_recipients(&message.to, |d| config.is_local_domain(d))?;
        outgoing::check_text(&message.draft.text, &message.subject)?;
        self.send(Sending {
            address: &address,
            to,
            cc: Vec::new(),
            subject: message.subject.trim().to_owned(),
            parent: None,
            draft: &message.draft,
            tracked: None,
        })
        .await
    }

    /// The one way the portal sends: the files checked against
    /// `portal.attachment_max_mb`, the MIME built ([`outgoing::build`]),
    /// queued with client `portal` (not internal: the policy decides as
    /// for mail from outside, no notices go back to the portal user), a
    /// tracking event, then the sealed copy in Sent.
    async fn send(&self, s: Sending<'_>) -> Result<String, ServiceError> {
        let config = self.config();
        outgoing::check_text(&s.draft.text, &s.subject)?;
        let files = outgoing::attachments(
            s.draft.attachments.clone(),
            config.portal.settings.attachment_max_bytes(),
        )?;
        let from = Self::parse(s.address)?;
        let Some(first) = s.to.first().cloned() else {
            return Err(outgoing::OutgoingError::NoRecipient.into());
        };
        let new_id = crate::portal::store::new_id().map_err(ServiceError::from)?;
        let to: Vec<String> = s.to.iter().map(ToString::to_string).collect();
        let cc: Vec<String> = s.cc.iter().map(ToString::to_string).collect();
        let content = outgoing::build(&outgoing::Message {
            hostname: &config.hostname,
            from: s.address,
            to: &to,
            cc: &cc,
            subject: &s.subject,
            parent: s.parent,
            text: &s.draft.text,
            attachments: &files,
            message_id: &format!("portal-{new_id}"),
        });
        let mut envelope = Envelope {
            sender: Some(from),
            client_ip: "portal".into(),
            ..Envelope::from_gateway(first, &config.hostname, format!("portal-reply-{new_id}"))
        };
        envelope
            .recipients
            .extend(
                s.to.into_iter()
                    .skip(1)
                    .chain(s.cc)
                    .map(|address| EnvelopeRecipient {
                        address,
                        notify: None,
                        orcpt: None,
                    }),
            );
        let queued = self.queue.inject(&envelope, &content).await.map_err(|e| {
            tracing::warn!(error = %e, "portal message not queued");
            ServiceError::Unavailable {
                what: "the queue".into(),
            }
        })?;
        let queued = queued.to_string();
        let files_note = match files.len() {
            0 => String::new(),
            1 => " with 1 attachment".to_owned(),
            n => format!(" with {n} attachments"),
        };
        match s.tracked {
            Some((queue_id, what)) => self.track(
                queue_id,
                s.address,
                &format!("{what}{files_note}: queued as {queued}"),
            ),
            None => self.track(
                &queued,
                s.address,
                &format!(
                    "new message{files_note} to {} from the portal: queued as {queued}",
                    to.join(", ")
                ),
            ),
        }
        self.keep_sent(
            s.address,
            &queued,
            s.parent.map(str::to_owned),
            ([to.as_slice(), &cc].concat(), files.len()),
            content,
        )
        .await;
        Ok(queued)
    }

    /// Seals a copy of a sent message into the account's Sent (kept as
    /// long as mail for the address is), attachments included. The
    /// message is sent already: a copy that cannot be stored is logged,
    /// not an error.
    async fn keep_sent(
        &self,
        address: &str,
        queued: &str,
        parent: Option<String>,
        (recipients, attachments): (Vec<String>, usize),
        content: Vec<u8>,
    ) {
        let summary = Summary {
            // A Sent copy's list line names whom it went to.
            from: recipients.join(", "),
            sender: address.to_owned(),
            subject: view::summarise(&content, address).0.subject,
            message_id: parent,
        };
        let domain = address.rsplit_once('@').map_or("", |(_, d)| d).to_owned();
        let days = self.config().portal.settings.retention_for(&domain);
        let me = self.clone_handle();
        let (address, queued) = (address.to_owned(), queued.to_owned());
        let stored = tokio::task::spawn_blocking(move || {
            let incoming = crate::portal::store::Incoming {
                recipient: &address,
                queue_id: &queued,
                summary: &summary,
                attachments,
                content: &content,
            };
            let r = me
                .portal()
                .messages
                .store_in(&incoming, &Folder::Sent, now_ms(), days);
            (r, address, queued)
        })
        .await;
        match stored {
            Ok((Ok(entry), address, queued)) => {
                self.track(
                    &queued,
                    &address,
                    &format!("copy kept in Sent as {}", entry.id),
                );
            }
            Ok((Err(e), _, _)) => {
                tracing::warn!(error = %e, "portal: no copy of the reply in Sent")
            }
            Err(e) => tracing::warn!(error = %e, "portal: no copy of the reply in Sent"),
        }
    }
}

/// The message a reply answers, as the reply needs it.
struct Thread<'a> {
    summary: &'a Summary,
    /// The whole message (its To and Cc for reply-all).
    content: &'a [u8],
    /// Its queue id (tracking).
    queue_id: &'a str,
    /// What tracking says was done (`replied to <id>`).
    what: String,
}

/// One message the portal user sends, checked and addressed.
struct Sending<'a> {
    /// The session's address (From and envelope sender).
    address: &'a str,
    to: Vec<Address>,
    cc: Vec<Address>,
    subject: String,
    /// The Message-ID answered.
    parent: Option<&'a str>,
    draft: &'a Draft,
    /// The answered message's queue id and what was done to it; `None`
    /// (a new message): tracked under its own queue id.
    tracked: Option<(&'a str, &'a str)>,
}

/// Who besides the original sender a reply-all goes to: the addresses
/// the message was written to (To, Cc) that are in our own domains
/// (`internal`), once each, never the sender again nor the replying
/// recipient's own address (case aside). External addresses are left
/// out: the portal answers the organisation that wrote, it is no relay.
pub(super) fn copies_for_reply_all(
    written: &[String],
    original_sender: &Address,
    own: &str,
    internal: impl Fn(&str) -> bool,
) -> Vec<Address> {
    let mut seen = vec![
        own.to_ascii_lowercase(),
        original_sender.to_string().to_ascii_lowercase(),
    ];
    let mut copies = Vec::new();
    for a in written.iter().filter_map(|a| Address::parse(a)) {
        let lower = a.to_string().to_ascii_lowercase();
        if internal(&a.domain_lower()) && !seen.contains(&lower) {
            seen.push(lower);
            copies.push(a);
        }
    }
    copies
}

/// The list line of an entry with its opened summary.
pub(super) fn message_summary(entry: &IndexEntry, s: Summary) -> MessageSummary {
    MessageSummary {
        id: entry.id.clone(),
        from: s.from,
        subject: s.subject,
        stored_ms: entry.stored_ms,
        expires_ms: entry.expires_ms,
        size: entry.size,
        attachments: entry.attachments,
        read: entry.read,
        folder: entry.folder.clone(),
    }
}

impl MailboxService for PortalServer {
    fn mailbox<'a>(
        &'a self,
        session: &'a str,
        query: &'a MailboxQuery,
    ) -> BoxFuture<'a, Result<Mailbox, ServiceError>> {
        let me = self.clone_handle();
        let (session, query) = (session.to_owned(), query.clone());
        Self::blocking(move || {
            let address = me.address_of(&session)?;
            me.listing(&address, &query)
        })
    }

    fn folders<'a>(
        &'a self,
        session: &'a str,
    ) -> BoxFuture<'a, Result<Vec<FolderInfo>, ServiceError>> {
        let me = self.clone_handle();
        let session = session.to_owned();
        Self::blocking(move || {
            let address = me.address_of(&session)?;
            let entries = me.portal().messages.entries(&address)?;
            me.folder_list(&address, &entries)
        })
    }

    fn move_message<'a>(
        &'a self,
        session: &'a str,
        id: &'a str,
        folder: &'a str,
    ) -> BoxFuture<'a, Result<(), ServiceError>> {
        let me = self.clone_handle();
        let (session, id, folder) = (session.to_owned(), id.to_owned(), folder.to_owned());
        Self::blocking(move || {
            let address = me.address_of(&session)?;
            let target = Folder::parse(&folder).ok_or_else(no_folder)?;
            let entry = me.portal().messages.move_to(&address, &id, &target)?;
            me.track(
                &entry.queue_id,
                &address,
                &format!("moved {id} to {}", target.label()),
            );
            Ok(())
        })
    }

    fn create_folder<'a>(
        &'a self,
        session: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), ServiceError>> {
        let me = self.clone_handle();
        let (session, text) = (session.to_owned(), name.to_owned());
        Self::blocking(move || {
            let address = me.address_of(&session)?;
            let name = parse_name("name", &text)?;
            me.portal()
                .messages
                .create_folder(&address, &name)
                .map_err(|e| folder_error("name", e))
        })
    }

    fn rename_folder<'a>(
        &'a self,
        session: &'a str,
        name: &'a str,
        new_name: &'a str,
    ) -> BoxFuture<'a, Result<(), ServiceError>> {
        let me = self.clone_handle();
        let (session, old, new) = (session.to_owned(), name.to_owned(), new_name.to_owned());
        Self::blocking(move || {
            let address = me.address_of(&session)?;
            let old = FolderName::parse(&old).map_err(|_| no_folder())?;
            let new = parse_name("new_name", &new)?;
            me.portal()
                .messages
                .rename_folder(&address, &old, &new)
                .map_err(|e| folder_error("new_name", e))
        })
    }

    fn delete_folder<'a>(
        &'a self,
        session: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), ServiceError>> {
        let me = self.clone_handle();
        let (session, old) = (session.to_owned(), name.to_owned());
        Self::blocking(move || {
            let address = me.address_of(&session)?;
            let old = FolderName::parse(&old).map_err(|_| no_folder())?;
            me.portal()
                .messages
                .delete_folder(&address, &old)
                .map_err(|e| folder_error("name", e))
        })
    }

    fn reply_all<'a>(
        &'a self,
        session: &'a str,
        id: &'a str,
        draft: &'a Draft,
    ) -> BoxFuture<'a, Result<String, ServiceError>> {
        Box::pin(self.send_reply(session, id, draft, true))
    }

    fn sending_rules(&self) -> SendingRules {
        let config = self.config();
        SendingRules {
            compose: config.portal.settings.compose,
            attachment_max_bytes: config.portal.settings.attachment_max_bytes(),
        }
    }

    fn compose<'a>(
        &'a self,
        session: &'a str,
        message: &'a NewMessage,
    ) -> BoxFuture<'a, Result<String, ServiceError>> {
        Box::pin(self.send_new(session, message))
    }

    fn reply_push<'a>(
        &'a self,
        session: &'a str,
        id: &'a str,
        sealed: std::sync::Arc<Vec<u8>>,
        draft: &'a Draft,
        all: bool,
    ) -> BoxFuture<'a, Result<String, ServiceError>> {
        Box::pin(self.send_push_reply(session, (id, sealed), draft, all))
    }
}

/// A refused folder operation, named after the form's field.
fn folder_error(field: &str, e: crate::portal::PortalError) -> ServiceError {
    match e {
        crate::portal::PortalError::Folder(folders::FolderError::NoSuchFolder) => no_folder(),
        crate::portal::PortalError::Folder(f) => ServiceError::invalid(field, f.to_string()),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reply_all_goes_to_internal_recipients_once_and_never_to_oneself() {
        let written: Vec<String> = [
            "dan@partner.example",
            "Alice@Example.org",
            "bob@example.org",
            "carol@example.org",
            "alice@example.org",
            "mallory@elsewhere.example",
            "not an address",
        ]
        .map(String::from)
        .to_vec();
        let sender = Address::parse("carol@example.org").unwrap();
        let copies = copies_for_reply_all(&written, &sender, "Dan@partner.example", |d| {
            d == "example.org" || d == "partner.example"
        });
        let copies: Vec<String> = copies.iter().map(ToString::to_string).collect();
        assert_eq!(copies, ["Alice@Example.org", "bob@example.org"]);
    }
}
