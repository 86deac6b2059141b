//! The mailbox's storage: own folders in `portal_folders`
//! (`<recipient>\0<name>`), moving an entry between folders, and
//! delete's two steps (into Trash; from Trash, destroyed as expiry
//! destroys: the wrapped key first).
//!
//! Every operation takes the session's address and finds entries only
//! under it ([`MessageStore::entry`]), as reading does: another
//! address's id is `NotFound`, whatever the folder.

use super::{IndexEntry, MessageStore, storage};
use crate::portal::PortalError;
use crate::portal::folders::{Folder, FolderError, FolderName, MAX_OWN_FOLDERS};

/// What delete did.
#[derive(Debug, Clone)]
pub enum Discarded {
    /// Moved into Trash: it still opens.
    Trashed(IndexEntry),
    /// Deleted from Trash: its key is destroyed.
    Destroyed(IndexEntry),
}

fn folder_key(recipient: &str, name: &FolderName) -> Vec<u8> {
    format!("{}\0{}", recipient.to_ascii_lowercase(), name.as_str()).into_bytes()
}

fn prefix(recipient: &str) -> Vec<u8> {
    let mut p = recipient.to_ascii_lowercase().into_bytes();
    p.push(0);
    p
}

impl IndexEntry {
    /// The folder the entry is in (an unreadable name: the inbox).
    pub fn folder(&self) -> Folder {
        Folder::parse(&self.folder).unwrap_or(Folder::Inbox)
    }
}

impl MessageStore {
    /// `recipient`'s own folders, by name.
    pub fn own_folders(&self, recipient: &str) -> Result<Vec<FolderName>, PortalError> {
        let p = prefix(recipient);
        let mut out = Vec::new();
        for item in self.folders.scan_prefix(&p).map_err(storage)? {
            let (key, _) = item.map_err(storage)?;
            let name = key.get(p.len()..).unwrap_or_default();
            if let Ok(name) = FolderName::parse(&String::from_utf8_lossy(name)) {
                out.push(name);
            }
        }
        out.sort_by_key(|n| n.as_str().to_lowercase());
        Ok(out)
    }

    /// The own folder of `recipient` that `name` names (case aside).
    fn own_folder(&self, recipient: &str, name: &FolderName) -> Result<FolderName, PortalError> {
        self.own_folders(recipient)?
            .into_iter()
            .find(|n| n.same_as(name))
            .ok_or(PortalError::Folder(FolderError::NoSuchFolder))
    }

    /// Whether `folder` exists for `recipient` (the built-in ones always do).
    pub fn has_folder(&self, recipient: &str, folder: &Folder) -> Result<bool, PortalError> {
        match folder {
            Folder::Own(name) => Ok(self
                .own_folders(recipient)?
                .iter()
                .any(|n| n.as_str() == name.as_str())),
            _ => Ok(true),
        }
    }

    /// A new own folder for `recipient`.
    pub fn create_folder(&self, recipient: &str, name: &FolderName) -> Result<(), PortalError> {
        let existing = self.own_folders(recipient)?;
        if existing.iter().any(|n| n.same_as(name)) {
            return Err(FolderError::Exists.into());
        }
        if existing.len() >= MAX_OWN_FOLDERS {
            return Err(FolderError::TooMany.into());
        }
        self.folders
            .insert(folder_key(recipient, name), &[][..])
            .map_err(storage)?;
        self.folders.flush().map_err(storage)?;
        Ok(())
    }

    /// Renames an own folder and moves its messages with it.
    pub fn rename_folder(
        &self,
        recipient: &str,
        name: &FolderName,
        new_name: &FolderName,
    ) -> Result<(), PortalError> {
        let old = self.own_folder(recipient, name)?;
        if !old.same_as(new_name)
            && self
                .own_folders(recipient)?
                .iter()
                .any(|n| n.same_as(new_name))
        {
            return Err(FolderError::Exists.into());
        }
        // The new name first: a crash half-way leaves both, never a
        // message in a folder that does not exist.
        self.folders
            .insert(folder_key(recipient, new_name), &[][..])
            .map_err(storage)?;
        for mut entry in self.entries(recipient)? {
            if entry.folder == old.as_str() {
                new_name.as_str().clone_into(&mut entry.folder);
                self.put(&entry)?;
            }
        }
        if old.as_str() != new_name.as_str() {
            self.folders
                .remove(folder_key(recipient, &old))
                .map_err(storage)?;
        }
        self.index.flush().map_err(storage)?;
        self.folders.flush().map_err(storage)?;
        Ok(())
    }

    /// Deletes an own folder of `recipient`, only when it is empty.
    pub fn delete_folder(&self, recipient: &str, name: &FolderName) -> Result<(), PortalError> {
        let old = self.own_folder(recipient, name)?;
        if self
            .entries(recipient)?
            .iter()
            .any(|e| e.folder == old.as_str())
        {
            return Err(FolderError::NotEmpty.into());
        }
        self.folders
            .remove(folder_key(recipient, &old))
            .map_err(storage)?;
        self.folders.flush().map_err(storage)?;
        Ok(())
    }

    /// Moves `recipient`'s message `id` into `folder` (one that exists,
    /// not Sent).
    pub fn move_to(
        &self,
        recipient: &str,
        id: &str,
        folder: &Folder,
    ) -> Result<IndexEntry, PortalError> {
        let mut entry = self.entry(recipient, id)?;
        if *folder == Folder::Sent {
            return Err(FolderError::NotIntoSent.into());
        }
        let folder = match folder {
            Folder::Own(name) => Folder::Own(self.own_folder(recipient, name)?),
            other => other.clone(),
        };
        folder.as_str().clone_into(&mut entry.folder);
        self.put(&entry)?;
        self.index.flush().map_err(storage)?;
        Ok(entry)
    }

    /// Delete as the recipient means it: from any folder into Trash;
    /// from Trash, destroyed (the wrapped key first, then the data).
    pub fn discard(&self, recipient: &str, id: &str) -> Result<Discarded, PortalError> {
        let entry = self.entry(recipient, id)?;
        if entry.folder() == Folder::Trash {
            return Ok(Discarded::Destroyed(self.delete(recipient, id)?));
        }
        Ok(Discarded::Trashed(self.move_to(
            recipient,
            id,
            &Folder::Trash,
        )?))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::super::tests::{incoming, store, summary};
    use super::*;

    fn name(n: &str) -> FolderName {
        FolderName::parse(n).unwrap()
    }

    #[test]
    fn move_then_trash_then_destroy() {
        let (_dir, store, _) = store();
        let e = store
            .store(&incoming("dan@ext.example", "Q1", &summary(), b"x"), 0, 30)
            .unwrap();
        assert_eq!(e.folder(), Folder::Inbox);
        // Into a folder that does not exist: refused.
        assert!(matches!(
            store.move_to("dan@ext.example", &e.id, &Folder::Own(name("Projects"))),
            Err(PortalError::Folder(FolderError::NoSuchFolder))
        ));
        store
            .create_folder("dan@ext.example", &name("Projects"))
            .unwrap();
        assert!(matches!(
            store.create_folder("dan@ext.example", &name("projects")),
            Err(PortalError::Folder(FolderError::Exists))
        ));
        // The name as stored, whatever case the request used.
        let moved = store
            .move_to("dan@ext.example", &e.id, &Folder::Own(name("PROJECTS")))
            .unwrap();
        assert_eq!(moved.folder, "Projects");
        assert!(matches!(
            store.move_to("dan@ext.example", &e.id, &Folder::Sent),
            Err(PortalError::Folder(FolderError::NotIntoSent))
        ));
        // Not empty: not deleted; renamed: the message goes with it.
        assert!(matches!(
            store.delete_folder("dan@ext.example", &name("Projects")),
            Err(PortalError::Folder(FolderError::NotEmpty))
        ));
        store
            .rename_folder("dan@ext.example", &name("Projects"), &name("Work"))
            .unwrap();
        assert_eq!(
            store.own_folders("dan@ext.example").unwrap(),
            [name("Work")]
        );
        assert_eq!(
            store.entry("dan@ext.example", &e.id).unwrap().folder,
            "Work"
        );
        // Delete: Trash, where it still opens; delete there: gone.
        assert!(matches!(
            store.discard("dan@ext.example", &e.id).unwrap(),
            Discarded::Trashed(_)
        ));
        assert_eq!(
            store.entry("dan@ext.example", &e.id).unwrap().folder(),
            Folder::Trash
        );
        assert!(store.read("dan@ext.example", &e.id).is_ok());
        store
            .delete_folder("dan@ext.example", &name("Work"))
            .unwrap();
        assert!(store.own_folders("dan@ext.example").unwrap().is_empty());
        assert!(matches!(
            store.discard("dan@ext.example", &e.id).unwrap(),
            Discarded::Destroyed(_)
        ));
        assert!(matches!(
            store.read("dan@ext.example", &e.id),
            Err(PortalError::NotFound)
        ));
        assert!(store.data.get(e.id.as_bytes()).unwrap().is_none());
    }

    #[test]
    fn another_address_cannot_move_delete_or_see_folders() {
        let (_dir, store, _) = store();
        let e = store
            .store(&incoming("dan@ext.example", "Q1", &summary(), b"x"), 0, 30)
            .unwrap();
        store
            .create_folder("dan@ext.example", &name("Projects"))
            .unwrap();
        store
            .create_folder("eve@ext.example", &name("Projects"))
            .unwrap();
        for result in [
            store
                .move_to("eve@ext.example", &e.id, &Folder::Own(name("Projects")))
                .map(|_| ()),
            store
                .move_to("eve@ext.example", &e.id, &Folder::Trash)
                .map(|_| ()),
            store.discard("eve@ext.example", &e.id).map(|_| ()),
        ] {
            assert!(matches!(result, Err(PortalError::NotFound)), "{result:?}");
        }
        assert_eq!(
            store.entry("dan@ext.example", &e.id).unwrap().folder(),
            Folder::Inbox
        );
        store
            .delete_folder("eve@ext.example", &name("Projects"))
            .unwrap();
        assert_eq!(
            store.own_folders("dan@ext.example").unwrap(),
            [name("Projects")]
        );
        // A prefix of another address is not that address.
        assert!(store.own_folders("dan@ext.exampl").unwrap().is_empty());
    }

    #[test]
    fn entries_from_before_folders_are_in_the_inbox() {
        let json = r#"{"id":"00","recipient":"d@x","stored_ms":0,"expires_ms":0,"size":0,
            "attachments":0,"read":false,"wrapped_key":"","summary":"","queue_id":"Q"}"#;
        let entry: IndexEntry = serde_json::from_str(json).unwrap();
        assert_eq!(entry.folder(), Folder::Inbox);
    }

    #[test]
    fn folder_count_is_bounded() {
        let (_dir, store, _) = store();
        for n in 0..MAX_OWN_FOLDERS {
            store
                .create_folder("dan@ext.example", &name(&format!("f{n}")))
                .unwrap();
        }
        assert!(matches!(
            store.create_folder("dan@ext.example", &name("one more")),
            Err(PortalError::Folder(FolderError::TooMany))
        ));
    }
}
