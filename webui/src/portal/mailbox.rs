//! The mailbox pages: a folder's list with the folder side bar (above
//! the list on phones), the search form (GET: words, a date window),
//! sorting by the column headers (plain links), moving a message,
//! own folders (create, rename, delete when empty); sending: [`super::compose`].
//! Everything works without JavaScript; every POST passes the same-origin
//! check of [`crate::security::csrf`] like the portal's other forms.
//!
//! Trusts: nothing from the request; the service resolves the session
//! and checks every folder and message against its address.

use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use sealgate_api::ServiceError;
use sealgate_api::portal::mailbox::{FolderInfo, MailboxQuery, SortKey};
use serde::Deserialize;

use super::{PortalState, Reader, Row, error, render};

/// A query value for a link (`&`, `#`, spaces and the rest encoded).
fn enc(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The list of `folder`, as a link.
pub(super) fn folder_url(folder: &str) -> String {
    if folder.is_empty() || folder == "inbox" {
        "/inbox".to_owned()
    } else {
        format!("/inbox?folder={}", enc(folder))
    }
}

/// Midnight UTC of a `YYYY-MM-DD` day, in ms since the epoch.
fn day_ms(text: &str) -> Option<u64> {
    let mut parts = text.trim().splitn(3, '-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u8 = parts.next()?.parse().ok()?;
    let day: u8 = parts.next()?.parse().ok()?;
    let date =
        time::Date::from_calendar_date(year, time::Month::try_from(month).ok()?, day).ok()?;
    let secs = date.midnight().assume_utc().unix_timestamp();
    u64::try_from(secs).ok().map(|s| s * 1000)
}

/// The list's GET parameters, as the browser sends them.
#[derive(Deserialize, Default, Clone)]
pub(super) struct ListQuery {
    #[serde(default)]
    folder: String,
    #[serde(default)]
    q: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    sort: String,
    #[serde(default)]
    order: String,
    #[serde(default)]
    done: Option<String>,
}

impl ListQuery {
    fn sort_key(&self) -> SortKey {
        match self.sort.as_str() {
            "sender" => SortKey::Sender,
            "subject" => SortKey::Subject,
            _ => SortKey::Date,
        }
    }

    /// Dates newest first, names A to Z, unless the order says otherwise.
    fn descending(&self) -> bool {
        match self.order.as_str() {
            "asc" => false,
            "desc" => true,
            _ => self.sort_key() == SortKey::Date,
        }
    }

    /// This list sorted by `key`: the other way round if it is sorted so now.
    fn sorted_url(&self, key: &str) -> String {
        let order = if self.sort_key() == key_of(key) {
            if self.descending() { "asc" } else { "desc" }
        } else if key == "date" {
            "desc"
        } else {
            "asc"
        };
        let mut url = folder_url(&self.folder);
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&format!("sort={key}&order={order}"));
        for (name, value) in [("q", &self.q), ("from", &self.from), ("to", &self.to)] {
            if !value.is_empty() {
                url.push_str(&format!("&{name}={}", enc(value)));
            }
        }
        url
    }

    fn searching(&self) -> bool {
        !(self.q.trim().is_empty() && self.from.trim().is_empty() && self.to.trim().is_empty())
    }
}

fn key_of(key: &str) -> SortKey {
    match key {
        "sender" => SortKey::Sender,
        "subject" => SortKey::Subject,
        _ => SortKey::Date,
    }
}

/// A sortable column header.
struct Column {
    key: &'static str,
    label: &'static str,
    url: String,
    /// `ascending`/`descending` when the list is sorted by it (`aria-sort`).
    sorted: Option<&'static str>,
}

/// A folder in the side bar.
struct FolderLink {
    name: String,
    label: String,
    url: String,
    count: usize,
    unread: usize,
    own: bool,
    current: bool,
}

fn links(folders: Vec<FolderInfo>, current: &str) -> Vec<FolderLink> {
    folders
        .into_iter()
        .map(|f| FolderLink {
            url: folder_url(&f.name),
            current: f.name == current,
            name: f.name,
            label: f.label,
            count: f.count,
            unread: f.unread,
            own: f.own,
        })
        .collect()
}

#[derive(Template)]
#[template(path = "portal/inbox.html")]
struct InboxPage {
    address: String,
    folder: FolderLink,
    folders: Vec<FolderLink>,
    columns: Vec<Column>,
    messages: Vec<Row>,
    notice: Option<String>,
    errors: Vec<String>,
    q: String,
    from: String,
    to: String,
    searching: bool,
    truncated: bool,
    /// `portal.compose`: the "New message" button.
    compose: bool,
}

fn notice(done: Option<&str>) -> Option<String> {
    Some(
        match done? {
            "deleted" => "The message was deleted: it is in Trash until you delete it there.",
            "destroyed" => "The message was deleted for good: its key is destroyed.",
            "replied" => "Your reply was sent; a copy is in Sent.",
            "sent" => "Your message was sent; a copy is in Sent.",
            "moved" => "The message was moved.",
            "created" => "The folder was created.",
            "renamed" => "The folder was renamed.",
            "folder-deleted" => "The folder was deleted.",
            _ => return None,
        }
        .to_owned(),
    )
}

async fn page(state: &PortalState, reader: &Reader, q: ListQuery, errors: Vec<String>) -> Response {
    let mut notes = Vec::new();
    let mut window = |text: &str, what: &str, plus_day: bool| -> Option<u64> {
        if text.trim().is_empty() {
            return None;
        }
        let ms = day_ms(text);
        if ms.is_none() {
            notes.push(format!(
                "The {what} date is not a date like 2026-12-31; it was left out."
            ));
        }
        ms.map(|m| if plus_day { m + 86_400_000 } else { m })
    };
    let from_ms = window(&q.from, "from", false);
    let to_ms = window(&q.to, "to", true);
    let query = MailboxQuery {
        folder: q.folder.clone(),
        text: q.q.clone(),
        from_ms,
        to_ms,
        sort: q.sort_key(),
        descending: q.descending(),
    };
    let mailbox = match state.service.mailbox(&reader.session, &query).await {
        Ok(m) => m,
        Err(e) => return error(&e),
    };
    let current = mailbox.folder.name.clone();
    let who = if current == "sent" { "To" } else { "From" };
    let columns = [
        ("sender", who),
        ("subject", "Subject"),
        ("date", "Received"),
    ]
    .into_iter()
    .map(|(key, label)| Column {
        key,
        label,
        url: q.sorted_url(key),
        sorted: (q.sort_key() == key_of(key)).then(|| {
            if q.descending() {
                "descending"
            } else {
                "ascending"
            }
        }),
    })
    .collect();
    let folder = links(vec![mailbox.folder], &current)
        .pop()
        .unwrap_or(FolderLink {
            name: current.clone(),
            label: current.clone(),
            url: folder_url(&current),
            count: 0,
            unread: 0,
            own: false,
            current: true,
        });
    let refused = !errors.is_empty();
    let mut r = render(&InboxPage {
        address: reader.address.clone(),
        folder,
        folders: links(mailbox.folders, &current),
        columns,
        messages: mailbox.messages.into_iter().map(Row::from).collect(),
        notice: notice(q.done.as_deref()),
        errors: errors.into_iter().chain(notes).collect(),
        searching: q.searching(),
        q: q.q,
        from: q.from,
        to: q.to,
        truncated: mailbox.truncated,
        compose: state.service.sending_rules().compose,
    });
    if refused {
        *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    r
}

pub(super) async fn view_inbox_get(
    State(state): State<PortalState>,
    reader: Reader,
    Query(q): Query<ListQuery>,
) -> Response {
    page(&state, &reader, q, Vec::new()).await
}

/// A refused folder form: the list again with the reasons; anything else an error page.
async fn refused(state: &PortalState, reader: &Reader, folder: &str, e: ServiceError) -> Response {
    match e {
        ServiceError::Invalid { errors } => {
            let q = ListQuery {
                folder: folder.to_owned(),
                ..ListQuery::default()
            };
            page(
                state,
                reader,
                q,
                errors.into_iter().map(|e| e.message).collect(),
            )
            .await
        }
        e => error(&e),
    }
}

fn done(folder: &str, what: &str) -> Response {
    let url = folder_url(folder);
    let sep = if url.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{url}{sep}done={what}")).into_response()
}

#[derive(Deserialize)]
pub(super) struct MoveForm {
    folder: String,
    /// The folder the message was listed in (where the browser goes back).
    #[serde(default)]
    back: String,
}

pub(super) async fn view_move_post(
    State(state): State<PortalState>,
    reader: Reader,
    Path(id): Path<String>,
    Form(form): Form<MoveForm>,
) -> Response {
    match state
        .service
        .move_message(&reader.session, &id, &form.folder)
        .await
    {
        Ok(()) => done(&form.back, "moved"),
        Err(e) => refused(&state, &reader, &form.back, e).await,
    }
}

#[derive(Deserialize)]
pub(super) struct DeleteForm {
    #[serde(default)]
    folder: String,
}

/// Delete: into Trash, or, from Trash, destroyed; back to the folder.
pub(super) async fn view_delete_post(
    State(state): State<PortalState>,
    reader: Reader,
    Path(id): Path<String>,
    Form(form): Form<DeleteForm>,
) -> Response {
    match state.service.delete(&reader.session, &id).await {
        Ok(()) if form.folder == "trash" => done("trash", "destroyed"),
        Ok(()) => done(&form.folder, "deleted"),
        Err(e) => error(&e),
    }
}

#[derive(Deserialize)]
pub(super) struct FolderForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    new_name: String,
}

pub(super) async fn view_folder_create_post(
    State(state): State<PortalState>,
    reader: Reader,
    Form(form): Form<FolderForm>,
) -> Response {
    match state
        .service
        .create_folder(&reader.session, &form.name)
        .await
    {
        Ok(()) => done(form.name.trim(), "created"),
        Err(e) => refused(&state, &reader, "inbox", e).await,
    }
}

pub(super) async fn view_folder_rename_post(
    State(state): State<PortalState>,
    reader: Reader,
    Form(form): Form<FolderForm>,
) -> Response {
    match state
        .service
        .rename_folder(&reader.session, &form.name, &form.new_name)
        .await
    {
        Ok(()) => done(form.new_name.trim(), "renamed"),
        Err(e) => refused(&state, &reader, &form.name, e).await,
    }
}

pub(super) async fn view_folder_delete_post(
    State(state): State<PortalState>,
    reader: Reader,
    Form(form): Form<FolderForm>,
) -> Response {
    match state
        .service
        .delete_folder(&reader.session, &form.name)
        .await
    {
        Ok(()) => done("inbox", "folder-deleted"),
        Err(e) => refused(&state, &reader, &form.name, e).await,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn days_and_sort_links() {
        assert_eq!(day_ms("1970-01-02"), Some(86_400_000));
        assert_eq!(day_ms("2026-02-30"), None);
        assert_eq!(day_ms("yesterday"), None);
        let q = ListQuery {
            folder: "A&B #1".into(),
            q: "x y".into(),
            ..ListQuery::default()
        };
        // Default: newest first; a click on Received turns it round.
        assert!(q.descending());
        assert_eq!(
            q.sorted_url("date"),
            "/inbox?folder=A%26B%20%231&sort=date&order=asc&q=x%20y"
        );
        assert!(q.sorted_url("sender").contains("sort=sender&order=asc"));
        assert_eq!(folder_url("inbox"), "/inbox");
    }
}
