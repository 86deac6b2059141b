//! Sending from the portal: the reply and reply-all forms of a stored
//! and of a pushed message, and the new-message page (only while
//! `portal.compose` is on; else its routes answer 404 and the mailbox
//! shows no button). The forms are `multipart/form-data` with file
//! inputs (no JavaScript); a plain urlencoded post (no files) is taken
//! too. Every POST passes the same-origin check of
//! [`crate::security::csrf`] like the portal's other forms; the bodies
//! may be as large as the listener allows (the daemon checks the files
//! against `portal.attachment_max_mb`). A refused message is shown again
//! with the reason and the text as typed (the files must be chosen
//! again: browsers do not let a page fill them in).
//!
//! Trusts: nothing from the request; names, types, sizes and addresses
//! are checked by the daemon (`sealgate::portal::outgoing`).

use askama::Template;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use sealgate_api::ServiceError;
use sealgate_api::portal::mailbox::{Draft, NewMessage, Upload};

use super::{PortalState, Reader, error, messages, render};

/// What a sending form posted.
#[derive(Default)]
pub(super) struct Posted {
    pub to: String,
    pub subject: String,
    pub draft: Draft,
}

/// Reads a sending form: multipart (with files in `attachments`) or
/// urlencoded (text only). A body the listener cut or that is malformed
/// is refused with the reason for the page.
async fn read_posted(request: Request) -> Result<Posted, String> {
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !multipart {
        let axum::extract::Form(form) = axum::extract::Form::<
            std::collections::HashMap<String, String>,
        >::from_request(request, &())
        .await
        .map_err(|_| "The form could not be read; nothing was sent.".to_owned())?;
        let get = |k: &str| form.get(k).cloned().unwrap_or_default();
        return Ok(Posted {
            to: get("to"),
            subject: get("subject"),
            draft: Draft {
                text: get("text"),
                attachments: Vec::new(),
            },
        });
    }
    let mut fields = crate::views::multipart::read(request).await.map_err(|_| {
        "The files are too large for one message or the upload broke off; nothing was sent."
            .to_owned()
    })?;
    let attachments = fields
        .take_all("attachments")
        .into_iter()
        .map(|f| Upload {
            name: f.file_name.unwrap_or_default(),
            content_type: f.content_type.unwrap_or_default(),
            bytes: f.bytes,
        })
        .collect();
    let text = |k: &str| fields.text(k).unwrap_or_default().to_owned();
    Ok(Posted {
        to: text("to"),
        subject: text("subject"),
        draft: Draft {
            text: text("text"),
            attachments,
        },
    })
}

/// The limit for the forms' hint: `10 MB`.
pub(super) fn limit_text(state: &PortalState) -> String {
    let bytes = state.service.sending_rules().attachment_max_bytes;
    format!("{} MB", bytes / (1024 * 1024))
}

/// A refused message shown again: the reason and the text as typed.
pub(super) struct Refused {
    pub text: String,
    pub error: String,
}

/// Splits a service answer: refused (shown on the form) or any other error.
fn refused(e: ServiceError, text: String) -> Result<Refused, ServiceError> {
    match e {
        ServiceError::Invalid { errors } => Ok(Refused {
            text,
            error: messages(errors),
        }),
        e => Err(e),
    }
}

/// `POST /message/{id}/reply` and `/reply-all`.
async fn reply_stored(
    state: PortalState,
    reader: Reader,
    id: String,
    request: Request,
    all: bool,
) -> Response {
    let posted = match read_posted(request).await {
        Ok(p) => p,
        Err(reason) => {
            let again = Refused {
                text: String::new(),
                error: reason,
            };
            return super::message_page(&state, &reader, &id, Some(again), false).await;
        }
    };
    let sent = if all {
        state
            .service
            .reply_all(&reader.session, &id, &posted.draft)
            .await
    } else {
        state
            .service
            .reply(&reader.session, &id, &posted.draft)
            .await
    };
    match sent {
        Ok(_) => Redirect::to("/inbox?done=replied").into_response(),
        Err(e) => match refused(e, posted.draft.text) {
            Ok(again) => super::message_page(&state, &reader, &id, Some(again), false).await,
            Err(e) => error(&e),
        },
    }
}

pub(super) async fn view_reply_post(
    State(state): State<PortalState>,
    reader: Reader,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    reply_stored(state, reader, id, request, false).await
}

pub(super) async fn view_reply_all_post(
    State(state): State<PortalState>,
    reader: Reader,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    reply_stored(state, reader, id, request, true).await
}

/// `POST /push/{handle}/reply` and `/reply-all`: the parked ciphertext
/// gives the original's headers.
async fn reply_pushed(
    state: PortalState,
    headers: HeaderMap,
    handle: String,
    request: Request,
    all: bool,
) -> Response {
    let o = match super::push::reader_and_parked(&state, &headers, &handle).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let posted = match read_posted(request).await {
        Ok(p) => p,
        Err(reason) => {
            let again = Refused {
                text: String::new(),
                error: reason,
            };
            return super::push::push_page(&state, o, &handle, Some(again), false).await;
        }
    };
    match state
        .service
        .reply_push(&o.session, &o.id, o.sealed.clone(), &posted.draft, all)
        .await
    {
        Ok(_) => Redirect::to("/inbox?done=replied").into_response(),
        Err(e) => match refused(e, posted.draft.text) {
            Ok(again) => super::push::push_page(&state, o, &handle, Some(again), false).await,
            Err(e) => error(&e),
        },
    }
}

pub(super) async fn view_push_reply_post(
    State(state): State<PortalState>,
    headers: HeaderMap,
    Path(handle): Path<String>,
    request: Request,
) -> Response {
    reply_pushed(state, headers, handle, request, false).await
}

pub(super) async fn view_push_reply_all_post(
    State(state): State<PortalState>,
    headers: HeaderMap,
    Path(handle): Path<String>,
    request: Request,
) -> Response {
    reply_pushed(state, headers, handle, request, true).await
}

// ---- a new message --------------------------------------------------------

#[derive(Template)]
#[template(path = "portal/compose.html")]
struct ComposePage {
    address: String,
    to: String,
    subject: String,
    text: String,
    error: Option<String>,
    limit: String,
}

fn compose_page(
    state: &PortalState,
    reader: &Reader,
    posted: Posted,
    error: Option<String>,
) -> Response {
    let refused = error.is_some();
    let mut r = render(&ComposePage {
        address: reader.address.clone(),
        to: posted.to,
        subject: posted.subject,
        text: posted.draft.text,
        error,
        limit: limit_text(state),
    });
    if refused {
        *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    r
}

fn compose_off() -> Response {
    crate::WebError::NotFound.into_response()
}

/// `GET /compose`: the form (404 while `portal.compose` is off).
pub(super) async fn view_compose_get(State(state): State<PortalState>, reader: Reader) -> Response {
    if !state.service.sending_rules().compose {
        return compose_off();
    }
    compose_page(&state, &reader, Posted::default(), None)
}

/// `POST /compose`: sent as a reply is, or the form again with the reason.
pub(super) async fn view_compose_post(
    State(state): State<PortalState>,
    reader: Reader,
    request: Request,
) -> Response {
    if !state.service.sending_rules().compose {
        return compose_off();
    }
    let posted = match read_posted(request).await {
        Ok(p) => p,
        Err(reason) => return compose_page(&state, &reader, Posted::default(), Some(reason)),
    };
    let message = NewMessage {
        to: posted.to,
        subject: posted.subject,
        draft: posted.draft,
    };
    match state.service.compose(&reader.session, &message).await {
        Ok(_) => Redirect::to("/inbox?done=sent").into_response(),
        Err(ServiceError::Invalid { errors }) => {
            let again = Posted {
                to: message.to,
                subject: message.subject,
                draft: Draft {
                    text: message.draft.text,
                    attachments: Vec::new(),
                },
            };
            compose_page(&state, &reader, again, Some(messages(errors)))
        }
        Err(e) => error(&e),
    }
}
