//! The portal mailbox's folders, and what the list of a folder shows:
//! the search filter and the sort, pure so they test from tables.
//!
//! Every message is in one folder: Inbox (where stored mail arrives),
//! Sent (sealed copies of the recipient's replies), Trash (where delete
//! moves a message; delete there destroys it) or one of the account's
//! own folders. The folder is index metadata (clear, like the times);
//! an own folder's name is a word the recipient chose, bounded in
//! length and number ([`MAX_NAME_CHARS`], [`MAX_OWN_FOLDERS`]).
//!
//! Search runs over the sealed summaries: the service unwraps the
//! summaries of one folder (at most [`MAX_LISTED`], the newest) and
//! filters and sorts them here.
//!
//! Trusts: nothing; every name from the web is parsed into a
//! [`FolderName`] before it reaches the store.

use super::store::Summary;

/// The longest own folder name, in characters.
pub const MAX_NAME_CHARS: usize = 40;
/// How many own folders an account may have.
pub const MAX_OWN_FOLDERS: usize = 50;
/// How many messages of one folder a listing unwraps (the newest): the
/// bound on the work one page of search does on the token.
pub const MAX_LISTED: usize = 1000;

/// Where a message is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Folder {
    Inbox,
    Sent,
    Trash,
    Own(FolderName),
}

impl Folder {
    /// The folder a stored or requested name means; `None`: not a
    /// folder name at all (whether such an own folder exists is the
    /// store's question).
    pub fn parse(text: &str) -> Option<Folder> {
        match text {
            "inbox" => Some(Folder::Inbox),
            "sent" => Some(Folder::Sent),
            "trash" => Some(Folder::Trash),
            own => FolderName::parse(own).ok().map(Folder::Own),
        }
    }

    /// The name as stored and as the web passes it.
    pub fn as_str(&self) -> &str {
        match self {
            Folder::Inbox => "inbox",
            Folder::Sent => "sent",
            Folder::Trash => "trash",
            Folder::Own(name) => name.as_str(),
        }
    }

    /// What the page calls it.
    pub fn label(&self) -> &str {
        match self {
            Folder::Inbox => "Inbox",
            Folder::Sent => "Sent",
            Folder::Trash => "Trash",
            Folder::Own(name) => name.as_str(),
        }
    }
}

/// Why an own folder name or operation is refused (shown next to the field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FolderError {
    #[error("Give the folder a name.")]
    Empty,
    #[error("A folder name has at most {MAX_NAME_CHARS} characters.")]
    TooLong,
    #[error("A folder name cannot contain control characters or slashes.")]
    BadCharacter,
    #[error("Inbox, Sent and Trash are there already; choose another name.")]
    Reserved,
    #[error("You have a folder of that name already.")]
    Exists,
    #[error("You have {MAX_OWN_FOLDERS} folders, the most there can be.")]
    TooMany,
    #[error("Only an empty folder can be deleted: move or delete its messages first.")]
    NotEmpty,
    #[error("There is no such folder.")]
    NoSuchFolder,
    #[error("Messages cannot be moved into Sent.")]
    NotIntoSent,
}

/// An own folder's name: trimmed, 1 to [`MAX_NAME_CHARS`] characters,
/// no control characters or slashes, not Inbox/Sent/Trash in any case.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FolderName(String);

impl FolderName {
    pub fn parse(text: &str) -> Result<FolderName, FolderError> {
        let name = text.trim();
        if name.is_empty() {
            return Err(FolderError::Empty);
        }
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(FolderError::TooLong);
        }
        if name
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\')
        {
            return Err(FolderError::BadCharacter);
        }
        if ["inbox", "sent", "trash"]
            .iter()
            .any(|r| r.eq_ignore_ascii_case(name))
        {
            return Err(FolderError::Reserved);
        }
        Ok(FolderName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether two names are the same folder to a person (case aside).
    pub fn same_as(&self, other: &FolderName) -> bool {
        self.0.to_lowercase() == other.0.to_lowercase()
    }
}

pub use sealgate_api::portal::mailbox::SortKey;

/// One message of a listing with its opened summary.
#[derive(Debug, Clone)]
pub struct Listed {
    pub stored_ms: u64,
    pub summary: Summary,
}

/// The search of a listing: words in sender or subject (case aside),
/// and a time window (ms since the epoch, `to` exclusive).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub text: String,
    pub from_ms: Option<u64>,
    pub to_ms: Option<u64>,
}

impl Filter {
    pub fn matches(&self, stored_ms: u64, summary: &Summary) -> bool {
        if self.from_ms.is_some_and(|f| stored_ms < f) || self.to_ms.is_some_and(|t| stored_ms >= t)
        {
            return false;
        }
        let needle = self.text.trim().to_lowercase();
        needle.is_empty()
            || summary.from.to_lowercase().contains(&needle)
            || summary.sender.to_lowercase().contains(&needle)
            || summary.subject.to_lowercase().contains(&needle)
    }
}

/// Sorts a listing in place: by `key`, ties by date, `descending` or not.
pub fn sort<T>(items: &mut [T], key: SortKey, descending: bool, of: impl Fn(&T) -> &Listed) {
    items.sort_by(|a, b| {
        let (a, b) = (of(a), of(b));
        let by_key = match key {
            SortKey::Date => std::cmp::Ordering::Equal,
            SortKey::Sender => a
                .summary
                .from
                .to_lowercase()
                .cmp(&b.summary.from.to_lowercase()),
            SortKey::Subject => a
                .summary
                .subject
                .to_lowercase()
                .cmp(&b.summary.subject.to_lowercase()),
        };
        let order = by_key.then(a.stored_ms.cmp(&b.stored_ms));
        if descending { order.reverse() } else { order }
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn listed(ms: u64, from: &str, subject: &str) -> Listed {
        Listed {
            stored_ms: ms,
            summary: Summary {
                from: from.into(),
                sender: from.into(),
                subject: subject.into(),
                message_id: None,
            },
        }
    }

    #[test]
    fn names_are_bounded_and_never_a_builtin_folder() {
        assert_eq!(
            FolderName::parse("  Projects ").unwrap().as_str(),
            "Projects"
        );
        assert_eq!(FolderName::parse(" "), Err(FolderError::Empty));
        assert_eq!(FolderName::parse("TRASH"), Err(FolderError::Reserved));
        assert_eq!(FolderName::parse("a/b"), Err(FolderError::BadCharacter));
        assert_eq!(FolderName::parse("a\u{0}b"), Err(FolderError::BadCharacter));
        assert_eq!(
            FolderName::parse(&"x".repeat(MAX_NAME_CHARS + 1)),
            Err(FolderError::TooLong)
        );
        assert!(FolderName::parse(&"ü".repeat(MAX_NAME_CHARS)).is_ok());
        assert_eq!(Folder::parse("inbox"), Some(Folder::Inbox));
        assert_eq!(Folder::parse("trash"), Some(Folder::Trash));
        assert_eq!(Folder::parse(""), None);
        assert!(
            FolderName::parse("Projects")
                .unwrap()
                .same_as(&FolderName::parse("projects").unwrap())
        );
    }

    #[test]
    fn search_matches_sender_or_subject_in_a_window() {
        let m = listed(5_000, "Carol <carol@example.org>", "Budget 2027");
        let f = |text: &str, from_ms, to_ms| Filter {
            text: text.into(),
            from_ms,
            to_ms,
        };
        assert!(f("", None, None).matches(m.stored_ms, &m.summary));
        assert!(f("budget", None, None).matches(m.stored_ms, &m.summary));
        assert!(f("CAROL", None, None).matches(m.stored_ms, &m.summary));
        assert!(!f("alice", None, None).matches(m.stored_ms, &m.summary));
        assert!(f("", Some(5_000), Some(5_001)).matches(m.stored_ms, &m.summary));
        assert!(!f("", Some(5_001), None).matches(m.stored_ms, &m.summary));
        assert!(!f("", None, Some(5_000)).matches(m.stored_ms, &m.summary));
    }

    #[test]
    fn sorts_by_sender_subject_and_date_either_way() {
        let mut items = vec![
            listed(1, "bob", "zeta"),
            listed(3, "Alice", "beta"),
            listed(2, "carol", "Alpha"),
        ];
        sort(&mut items, SortKey::Sender, false, |l| l);
        let froms: Vec<_> = items.iter().map(|l| l.summary.from.as_str()).collect();
        assert_eq!(froms, ["Alice", "bob", "carol"]);
        sort(&mut items, SortKey::Subject, true, |l| l);
        let subjects: Vec<_> = items.iter().map(|l| l.summary.subject.as_str()).collect();
        assert_eq!(subjects, ["zeta", "beta", "Alpha"]);
        sort(&mut items, SortKey::Date, true, |l| l);
        let times: Vec<_> = items.iter().map(|l| l.stored_ms).collect();
        assert_eq!(times, [3, 2, 1]);
    }
}
