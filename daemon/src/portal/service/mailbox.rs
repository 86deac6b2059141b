//! The daemon's side of `sealgate_api::portal::mailbox::MailboxService`:
//! folder listings with search and sort, moving, own folders, and the
//! reply (to the sender, or to all internal recipients) with its sealed
//! copy in Sent.
//!
//! Search works over sealed summaries: a listing unwraps, on the token,
//! the key of each message of the folder (at most
//! [`folders::MAX_LISTED`], the newest) to open its summary, then
//! filters and sorts in memory ([`folders`]). Nothing about the search
//! is stored.

use sealgate_api::portal::MessageSummary;
use sealgate_api::portal::mailbox::{FolderInfo, Mailbox, MailboxQuery, MailboxService};
use sealgate_api::{BoxFuture, ServiceError};

use super::PortalServer;
use crate::address::Address;
use crate::envelope::{Envelope, EnvelopeRecipient, now_ms};
use crate::portal::folders::{self, Filter, Folder, FolderName, Listed};
use crate::portal::store::{IndexEntry, Summary};
use crate::portal::view;

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
    /// the session's own); queued with client `portal`, then sealed
    /// into the account's Sent.
    pub(super) async fn send_reply(
        &self,
        session: &str,
        id: &str,
        text: &str,
        all: bool,
    ) -> Result<String, ServiceError> {
        if text.trim().is_empty() {
            return Err(ServiceError::invalid("text", "Write a reply first."));
        }
        if text.len() > 1024 * 1024 {
            return Err(ServiceError::invalid("text", "The reply is too long."));
        }
        let address = self.address_of(session)?;
        let opened = {
            let me = self.clone_handle();
            let (address, id) = (address.clone(), id.to_owned());
            tokio::task::spawn_blocking(move || me.portal().messages.read(&address, &id))
                .await
                .map_err(|e| ServiceError::failed(format!("stopped: {e}")))??
        };
        let Some(original_sender) = Address::parse(&opened.summary.sender) else {
            return Err(ServiceError::invalid(
                "text",
                "This message has no sender to reply to.",
            ));
        };
        if original_sender.to_string().eq_ignore_ascii_case(&address) {
            // A copy of the recipient's own reply (in Sent, or moved out
            // of it): a reply would go back to themselves.
            return Err(ServiceError::invalid(
                "text",
                "This is a copy of your own reply; reply to the message it answers.",
            ));
        }
        let from = Self::parse(&address)?;
        let config = self.config();
        let copies = if all {
            copies_for_reply_all(
                &view::recipients(&opened.content),
                &original_sender,
                &address,
                |domain| config.is_local_domain(domain),
            )
        } else {
            Vec::new()
        };
        let reply_id = crate::portal::store::new_id().map_err(ServiceError::from)?;
        let to = [original_sender.to_string()];
        let cc: Vec<String> = copies.iter().map(ToString::to_string).collect();
        let content = view::reply_to(
            &config.hostname,
            &address,
            &opened.summary,
            (&to, &cc),
            text,
            &format!("portal-{reply_id}"),
        );
        let mut envelope = Envelope {
            sender: Some(from),
            // Not an internal network and not "local": the pipeline
            // decides as for mail from outside, and sends no notices
            // to the portal user's address.
            client_ip: "portal".into(),
            ..Envelope::from_gateway(
                original_sender,
                &config.hostname,
                format!("portal-reply-{reply_id}"),
            )
        };
        envelope
            .recipients
            .extend(copies.into_iter().map(|address| EnvelopeRecipient {
                address,
                notify: None,
                orcpt: None,
            }));
        let queued = self.queue.inject(&envelope, &content).await.map_err(|e| {
            tracing::warn!(error = %e, "portal reply not queued");
            ServiceError::Unavailable {
                what: "the queue".into(),
            }
        })?;
        let queued = queued.to_string();
        let kind = if all {
            "replied to all of"
        } else {
            "replied to"
        };
        self.track(
            &opened.entry.queue_id,
            &address,
            &format!("{kind} {id}: queued as {queued}"),
        );
        self.keep_sent(
            &address,
            &queued,
            &opened.summary,
            [to.as_slice(), &cc].concat(),
            content,
        )
        .await;
        Ok(queued)
    }

    /// Seals a copy of a sent reply into the account's Sent (kept as
    /// long as mail for the address is). The reply is sent already: a
    /// copy that cannot be stored is logged, not an error.
    async fn keep_sent(
        &self,
        address: &str,
        queued: &str,
        original: &Summary,
        recipients: Vec<String>,
        content: Vec<u8>,
    ) {
        let summary = Summary {
            // A Sent copy's list line names whom it went to.
            from: recipients.join(", "),
            sender: address.to_owned(),
            subject: view::summarise(&content, address).0.subject,
            message_id: original.message_id.clone(),
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
                attachments: 0,
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
                    &format!("reply kept in Sent as {}", entry.id),
                );
            }
            Ok((Err(e), _, _)) => {
                tracing::warn!(error = %e, "portal: no copy of the reply in Sent")
            }
            Err(e) => tracing::warn!(error = %e, "portal: no copy of the reply in Sent"),
        }
    }
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
        text: &'a str,
    ) -> BoxFuture<'a, Result<String, ServiceError>> {
        Box::pin(self.send_reply(session, id, text, true))
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
