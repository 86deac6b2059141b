//! The portal's **push** delivery: the message travels sealed inside the
//! notification, as an HTML attachment, and the gateway keeps only the
//! key to open it, wrapped on the token (SEPPmail GINA's model).
//!
//! Sealing: a random 128-bit id and a random 256-bit data key; the whole
//! MIME message is sealed with AES-256-GCM under the data key
//! ([`super::seal`], AAD `sealgate-portal-v1\0push\0<recipient>\0<id>`),
//! the data key is wrapped by the token's `at-rest-wrap` key (AAD
//! `…push-key…`), and only a [`PushRecord`] is stored — recipient, id,
//! the wrapped key, times, sender, size — in the shared store's keyspace `portal_push`
//! under `<recipient>\0<id>`. The sealed message goes into the
//! notification's attachment ([`page`]): a static page with no script and
//! no key whose form posts the id and the ciphertext to the portal, where
//! the recipient signs in ([`super::service`], `open_push`). The
//! attachment is the only copy of the message.
//!
//! Opening needs all three: the ciphertext (the recipient's mailbox), the
//! record (looked up under the session's address only, so another
//! address's session finds nothing) and the token. Expiry (the domain's
//! retention days) removes the record, the only copy of the wrapped key:
//! after that the attachment opens nowhere.
//!
//! Trusts: the token; nothing in a posted ciphertext (it authenticates
//! or is refused as [`PortalError::Damaged`]). Never stores the message
//! or the data key.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::PortalError;
use super::kv::Kv;
use super::seal::{self, WrapperSource};
use super::store::{new_id, valid_id};
use crate::store::{SharedStore, Space, StoreError};

/// The largest message sent by push (bytes): its ciphertext travels in a
/// mail and comes back in one form post, both bounded; a larger one is
/// stored in the portal (pull) instead.
pub const MAX_MESSAGE: usize = 8 * 1024 * 1024;

/// The attachment's file name.
pub const FILE_NAME: &str = "secure-message.html";

/// What the gateway keeps of a pushed message: no part of the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushRecord {
    pub id: String,
    pub recipient: String,
    /// The data key wrapped by the token (base64).
    pub wrapped_key: String,
    pub stored_ms: u64,
    pub expires_ms: u64,
    /// The envelope sender (tracking and the page name it anyway).
    pub sender: String,
    pub size: u64,
    /// The queue id it arrived under (for tracking).
    pub queue_id: String,
    /// Opened once already (a read receipt went, where asked for; later
    /// openings send none). Records from before the flag read as unread.
    #[serde(default)]
    pub read: bool,
}

/// A message sealed for push: its record (stored) and its ciphertext
/// (mailed).
pub struct Sealed {
    pub record: PushRecord,
    /// `nonce || ciphertext || tag`.
    pub ciphertext: Vec<u8>,
}

/// The keys of pushed messages.
#[derive(Clone)]
pub struct PushStore {
    tree: Kv,
    wrappers: std::sync::Arc<dyn WrapperSource>,
}

fn key(recipient: &str, id: &str) -> Vec<u8> {
    format!("{}\0{id}", recipient.to_ascii_lowercase()).into_bytes()
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn storage(e: StoreError) -> PortalError {
    PortalError::Storage(e.to_string())
}

impl PushStore {
    pub fn open(
        shared: &std::sync::Arc<dyn SharedStore>,
        wrappers: std::sync::Arc<dyn WrapperSource>,
    ) -> PushStore {
        PushStore {
            tree: Kv::new(shared.clone(), Space::PortalPush),
            wrappers,
        }
    }

    /// Seals `content` for `recipient` and stores its wrapped key for
    /// `retention_days`. Blocking (the token wraps the key).
    pub fn seal(
        &self,
        recipient: &str,
        sender: &str,
        queue_id: &str,
        content: &[u8],
        now_ms: u64,
        retention_days: u32,
    ) -> Result<Sealed, PortalError> {
        use base64::Engine as _;
        let recipient = recipient.to_ascii_lowercase();
        let id = new_id()?;
        let data_key = seal::new_data_key()?;
        let wrapped = seal::wrap(
            &*self.wrappers,
            &data_key,
            &seal::context("push-key", &recipient, &id),
        )?;
        let ciphertext = seal::seal(&data_key, &seal::context("push", &recipient, &id), content)?;
        let record = PushRecord {
            id,
            recipient,
            wrapped_key: b64().encode(&wrapped),
            stored_ms: now_ms,
            expires_ms: now_ms.saturating_add(u64::from(retention_days) * 24 * 3600 * 1000),
            sender: sender.to_owned(),
            size: content.len() as u64,
            queue_id: queue_id.to_owned(),
            read: false,
        };
        let json = serde_json::to_vec(&record).map_err(|e| PortalError::Storage(e.to_string()))?;
        self.tree
            .insert(key(&record.recipient, &record.id), json)
            .map_err(storage)?;
        self.tree.flush().map_err(storage)?;
        Ok(Sealed { record, ciphertext })
    }

    /// `recipient`'s record `id` (another address's is not found).
    pub fn record(&self, recipient: &str, id: &str) -> Result<PushRecord, PortalError> {
        if !valid_id(id) {
            return Err(PortalError::NotFound);
        }
        let bytes = self
            .tree
            .get(key(recipient, id))
            .map_err(storage)?
            .ok_or(PortalError::NotFound)?;
        serde_json::from_slice(&bytes).map_err(|_| PortalError::Damaged)
    }

    /// Opens a posted ciphertext of `recipient`'s message `id`: the record
    /// is looked up under `recipient` only, the key unwrapped on the
    /// token, the ciphertext authenticated against recipient and id.
    pub fn unseal(
        &self,
        recipient: &str,
        id: &str,
        ciphertext: &[u8],
        now_ms: u64,
    ) -> Result<(PushRecord, Zeroizing<Vec<u8>>), PortalError> {
        use base64::Engine as _;
        let record = self.record(recipient, id)?;
        if record.expires_ms <= now_ms {
            return Err(PortalError::NotFound);
        }
        let wrapped = b64()
            .decode(&record.wrapped_key)
            .map_err(|_| PortalError::Damaged)?;
        let data_key = seal::unwrap(
            &*self.wrappers,
            &wrapped,
            &seal::context("push-key", &record.recipient, &record.id),
        )?;
        let content = seal::open(
            &data_key,
            &seal::context("push", &record.recipient, &record.id),
            ciphertext,
        )?;
        Ok((record, content))
    }

    /// Marks `record` read; answers whether this was its first opening
    /// (the record as stored decides, not the copy in hand).
    pub fn mark_read(&self, record: &PushRecord) -> Result<bool, PortalError> {
        let k = key(&record.recipient, &record.id);
        let bytes = self
            .tree
            .get(&k)
            .map_err(storage)?
            .ok_or(PortalError::NotFound)?;
        let mut stored: PushRecord =
            serde_json::from_slice(&bytes).map_err(|_| PortalError::Damaged)?;
        if stored.read {
            return Ok(false);
        }
        stored.read = true;
        let json = serde_json::to_vec(&stored).map_err(|e| PortalError::Storage(e.to_string()))?;
        // Of two first openings at once, only the one whose swap lands
        // is the first.
        let first = self
            .tree
            .compare_and_swap(&k, Some(&bytes), Some(&json))
            .map_err(storage)?;
        self.tree.flush().map_err(storage)?;
        Ok(first)
    }

    /// Whether a live push record exists for `recipient` (a code may be
    /// sent: mail waits for the address).
    pub fn has_mail_for(&self, recipient: &str, now_ms: u64) -> Result<bool, PortalError> {
        let mut prefix = recipient.to_ascii_lowercase().into_bytes();
        prefix.push(0);
        for item in self.tree.scan_prefix(prefix).map_err(storage)? {
            let (_, value) = item.map_err(storage)?;
            if let Ok(record) = serde_json::from_slice::<PushRecord>(&value)
                && record.expires_ms > now_ms
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Removes every record whose time ran out (its wrapped key with it);
    /// answers what it removed.
    pub fn expire(&self, now_ms: u64) -> Result<Vec<PushRecord>, PortalError> {
        let mut due = Vec::new();
        for item in self.tree.iter().map_err(storage)? {
            let (k, value) = item.map_err(storage)?;
            match serde_json::from_slice::<PushRecord>(&value) {
                Ok(record) if record.expires_ms <= now_ms => due.push((k, record)),
                Ok(_) => {}
                // A record that does not parse opens nothing: remove it.
                Err(_) => {
                    self.tree.remove(&k).map_err(storage)?;
                }
            }
        }
        for (k, _) in &due {
            self.tree.remove(k).map_err(storage)?;
        }
        if !due.is_empty() {
            self.tree.flush().map_err(storage)?;
        }
        Ok(due.into_iter().map(|(_, r)| r).collect())
    }
}

/// Texts of the attachment page, per language.
struct PageTexts {
    title: &'static str,
    intro: &'static str,
    button: &'static str,
    note: &'static str,
}

const PAGE_EN: PageTexts = PageTexts {
    title: "Secure message",
    intro: "{sender} has sent you an encrypted message. To read it, open it in the secure web mail portal: you sign in there (the first time you confirm your address with a code we mail you and choose a password).",
    button: "Open the message",
    note: "This file holds the message encrypted; it contains no key and runs no script. Keep this mail: the gateway does not keep the message. It can be opened until {until}.",
};

const PAGE_DE: PageTexts = PageTexts {
    title: "Vertrauliche Nachricht",
    intro: "{sender} hat Ihnen eine verschlüsselte Nachricht geschickt. Zum Lesen öffnen Sie sie im sicheren Web-Mail-Portal: Sie melden sich dort an (beim ersten Mal bestätigen Sie Ihre Adresse mit einem Code, den wir Ihnen senden, und wählen ein Passwort).",
    button: "Nachricht öffnen",
    note: "Diese Datei enthält die Nachricht verschlüsselt, keinen Schlüssel und kein Skript. Bewahren Sie diese Mail auf: das Gateway behält die Nachricht nicht. Sie kann bis {until} geöffnet werden.",
};

fn page_texts(language: &str) -> &'static PageTexts {
    match language {
        "de" => &PAGE_DE,
        _ => &PAGE_EN,
    }
}

/// The origin of the portal's address (`https://host[:port]`), for the
/// page's `form-action`.
fn origin(url: &str) -> &str {
    let rest = url.strip_prefix("https://").unwrap_or(url);
    let end = rest
        .find('/')
        .map_or(url.len(), |i| url.len() - rest.len() + i);
    url.get(..end).unwrap_or(url)
}

/// The attachment: a static page whose one form posts the id and the
/// ciphertext to `{portal_url}/push/open`. No script, no key, nothing
/// loaded from anywhere; its own policy lets the form go to the portal
/// only.
pub fn page(portal_url: &str, language: &str, sender: &str, sealed: &Sealed) -> String {
    use base64::Engine as _;
    let t = page_texts(language);
    let esc = super::notify::escape;
    let url = portal_url.trim_end_matches('/');
    // The CSP source is the origin only; a character that could end the
    // attribute or the directive leaves the form with nowhere to go.
    let action_origin = origin(url);
    let form_action = if action_origin
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ":/.-[]".contains(c))
    {
        action_origin.to_owned()
    } else {
        "'none'".to_owned()
    };
    let until = crate::util::rfc5322_date_ms(sealed.record.expires_ms);
    format!(
        "<!doctype html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; form-action {form_action}; base-uri 'none'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <title>{title}</title>\n\
         <style>body{{font-family:system-ui,sans-serif;background:#f4f5f7;color:#1d2430;margin:0;padding:1rem}}\
         main{{max-width:36rem;margin:2rem auto;background:#fff;border:1px solid #d6dae0;border-radius:8px;padding:1.5rem}}\
         h1{{font-size:1.4rem;margin-top:0;color:#14532d}}p{{line-height:1.5}}.note{{color:#4a5361;font-size:.9rem}}\
         button{{font:inherit;font-size:1.1rem;padding:.7rem 1.4rem;border:0;border-radius:6px;background:#166534;color:#fff;cursor:pointer;width:100%}}\
         button:focus{{outline:3px solid #f0b400;outline-offset:2px}}</style>\n\
         </head><body><main>\n<h1>{title}</h1>\n<p>{intro}</p>\n\
         <form method=\"post\" action=\"{action}\" enctype=\"application/x-www-form-urlencoded\">\n\
         <input type=\"hidden\" name=\"id\" value=\"{id}\">\n\
         <input type=\"hidden\" name=\"data\" value=\"{data}\">\n\
         <button type=\"submit\" id=\"open-message\">{button}</button>\n</form>\n\
         <p class=\"note\">{note}</p>\n</main></body></html>\n",
        lang = if language == "de" { "de" } else { "en" },
        title = t.title,
        intro = esc(&t.intro.replace("{sender}", sender)),
        action = esc(&format!("{url}/push/open")),
        id = esc(&sealed.record.id),
        data = b64().encode(&sealed.ciphertext),
        button = t.button,
        note = esc(&t.note.replace("{until}", &until)),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::portal::seal::TestWrappers;

    struct Dir(std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn store() -> (Dir, PushStore, Arc<TestWrappers>) {
        let n: u64 = rand::random();
        let p = std::env::temp_dir().join(format!("sealgate-push-test-{n:x}"));
        std::fs::create_dir_all(&p).unwrap();
        let db = crate::db::Db::open(&p).unwrap();
        let shared: Arc<dyn SharedStore> = Arc::new(crate::store::SledStore::new(&db));
        let wrappers = Arc::new(TestWrappers([9; 32], AtomicBool::new(false)));
        (Dir(p), PushStore::open(&shared, wrappers.clone()), wrappers)
    }

    const MAIL: &[u8] = b"Subject: Quarterly numbers\r\n\r\nunique-line-51c0de\r\n";

    #[test]
    fn sealed_message_opens_for_its_recipient_only_and_is_not_stored() {
        let (dir, store, _) = store();
        let sealed = store
            .seal("Dan@Ext.example", "alice@example.org", "Q1", MAIL, 1000, 30)
            .unwrap();
        let id = sealed.record.id.clone();
        assert!(valid_id(&id));
        assert_eq!(sealed.record.recipient, "dan@ext.example");
        assert_eq!(sealed.record.expires_ms, 1000 + 30 * 86_400_000);
        assert!(
            !sealed
                .ciphertext
                .windows(18)
                .any(|w| w == b"unique-line-51c0de")
        );
        let (record, content) = store
            .unseal("dan@ext.example", &id, &sealed.ciphertext, 2000)
            .unwrap();
        assert_eq!(record, sealed.record);
        assert_eq!(&content[..], MAIL);
        // Another address's session finds no record under the same id.
        assert!(matches!(
            store.unseal("eve@ext.example", &id, &sealed.ciphertext, 2000),
            Err(PortalError::NotFound)
        ));
        // A ciphertext altered, or another message's, does not open.
        let mut altered = sealed.ciphertext.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert!(matches!(
            store.unseal("dan@ext.example", &id, &altered, 2000),
            Err(PortalError::Damaged)
        ));
        let other = store
            .seal("dan@ext.example", "alice@example.org", "Q2", MAIL, 1000, 30)
            .unwrap();
        assert!(matches!(
            store.unseal("dan@ext.example", &id, &other.ciphertext, 2000),
            Err(PortalError::Damaged)
        ));
        assert!(store.has_mail_for("DAN@ext.example", 2000).unwrap());
        assert!(!store.has_mail_for("eve@ext.example", 2000).unwrap());
        // Nothing of the message is in the database files.
        drop(store);
        for entry in walk(&dir.0) {
            let bytes = std::fs::read(&entry).unwrap();
            assert!(!bytes.windows(18).any(|w| w == b"unique-line-51c0de"));
            assert!(!bytes.windows(17).any(|w| w == b"Quarterly numbers"));
        }
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }

    #[test]
    fn the_first_opening_alone_is_the_first_and_old_records_read_as_unread() {
        let (_dir, store, _) = store();
        let sealed = store
            .seal("dan@ext.example", "a@example.org", "Q1", MAIL, 0, 30)
            .unwrap();
        assert!(store.mark_read(&sealed.record).unwrap());
        assert!(!store.mark_read(&sealed.record).unwrap());
        assert!(
            store
                .record("dan@ext.example", &sealed.record.id)
                .unwrap()
                .read
        );
        // A record stored before the flag existed: unread.
        let mut old = serde_json::to_value(&sealed.record).unwrap();
        old.as_object_mut().unwrap().remove("read");
        let parsed: PushRecord = serde_json::from_value(old).unwrap();
        assert!(!parsed.read);
    }

    #[test]
    fn a_record_moved_to_another_recipient_does_not_open() {
        let (_dir, store, _) = store();
        let sealed = store
            .seal("dan@ext.example", "a@example.org", "Q1", MAIL, 0, 30)
            .unwrap();
        let mut moved = sealed.record.clone();
        moved.recipient = "eve@ext.example".into();
        store
            .tree
            .insert(
                key("eve@ext.example", &moved.id),
                serde_json::to_vec(&moved).unwrap(),
            )
            .unwrap();
        assert!(matches!(
            store.unseal("eve@ext.example", &moved.id, &sealed.ciphertext, 1),
            Err(PortalError::Damaged)
        ));
    }

    #[test]
    fn expiry_removes_the_record_and_the_token_away_is_temporary() {
        let (_dir, store, wrappers) = store();
        let sealed = store
            .seal("dan@ext.example", "a@example.org", "Q1", MAIL, 0, 1)
            .unwrap();
        let id = sealed.record.id.clone();
        wrappers.1.store(true, Ordering::SeqCst);
        let err = store
            .unseal("dan@ext.example", &id, &sealed.ciphertext, 1)
            .err()
            .unwrap();
        assert!(err.is_temporary(), "{err}");
        wrappers.1.store(false, Ordering::SeqCst);
        assert!(store.expire(86_400_000 - 1).unwrap().is_empty());
        // Past its time it opens no more, even before the expiry run.
        assert!(matches!(
            store.unseal("dan@ext.example", &id, &sealed.ciphertext, 86_400_000),
            Err(PortalError::NotFound)
        ));
        let removed = store.expire(86_400_000).unwrap();
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].id, id);
        assert!(matches!(
            store.record("dan@ext.example", &id),
            Err(PortalError::NotFound)
        ));
        assert!(!store.has_mail_for("dan@ext.example", 0).unwrap());
    }

    #[test]
    fn the_page_has_a_form_to_the_portal_no_script_and_no_key() {
        let (_dir, store, _) = store();
        let sealed = store
            .seal("dan@ext.example", "a@example.org", "Q1", MAIL, 0, 30)
            .unwrap();
        let html = page(
            "https://portal.example.org:8444/",
            "en",
            "<b>a</b>@example.org",
            &sealed,
        );
        assert!(html.contains("action=\"https://portal.example.org:8444/push/open\""));
        assert!(html.contains("form-action https://portal.example.org:8444;"));
        assert!(html.contains("default-src 'none'"));
        assert!(html.contains(&format!("name=\"id\" value=\"{}\"", sealed.record.id)));
        assert!(html.contains("&lt;b&gt;a&lt;/b&gt;@example.org"));
        for bad in [
            "<script",
            "src=",
            "href=",
            "unique-line",
            &sealed.record.wrapped_key,
        ] {
            assert!(!html.contains(bad), "{bad}");
        }
        assert!(page("https://x.example", "de", "a", &sealed).contains("Nachricht öffnen"));
        assert_eq!(origin("https://h.example:1/a/b"), "https://h.example:1");
        assert_eq!(origin("https://h.example"), "https://h.example");
    }
}
