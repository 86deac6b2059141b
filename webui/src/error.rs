//! Errors as a browser sees them: generic words and an operation id; the
//! details go to the log under the same id, so an administrator can find
//! them without the page ever showing internals.
//!
//! [`ServiceError`] becomes an HTTP status in one place
//! ([`ServiceError::http_status`]); this module decides what each one may
//! show: a denial, a missing item, a conflict or a temporary outage are
//! said as they are; anything else is "something went wrong" and an id.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use sealgate_api::ServiceError;

/// An operation id: short, random, to quote to whoever reads the logs.
pub fn new_op_id() -> String {
    let bytes: [u8; 6] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    text: &'a str,
    op_id: Option<&'a str>,
    status: u16,
}

/// A complete error page (no session chrome: it must render whatever failed).
pub fn page(status: StatusCode, title: &str, text: &str, op_id: Option<&str>) -> Response {
    let body = ErrorPage {
        title,
        text,
        op_id,
        status: status.as_u16(),
    }
    .render()
    .unwrap_or_else(|_| "<!doctype html><title>Error</title><p>Error</p>".to_owned());
    (status, Html(body)).into_response()
}

/// Why a page could not be shown.
#[derive(Debug)]
pub enum WebError {
    /// From the admin service.
    Service(ServiceError),
    /// The template did not render (a bug): logged with its id.
    Render(askama::Error),
    /// The request is malformed (a missing field, an unparsable value).
    BadRequest(&'static str),
    /// No such page or item.
    NotFound,
}

impl From<ServiceError> for WebError {
    fn from(e: ServiceError) -> Self {
        WebError::Service(e)
    }
}

impl From<askama::Error> for WebError {
    fn from(e: askama::Error) -> Self {
        WebError::Render(e)
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        match self {
            WebError::NotFound => page(
                StatusCode::NOT_FOUND,
                "Not found",
                "There is no such page here.",
                None,
            ),
            WebError::BadRequest(what) => page(StatusCode::BAD_REQUEST, "Bad request", what, None),
            WebError::Render(e) => {
                let id = new_op_id();
                tracing::error!(op_id = %id, error = %e, "web: a page did not render");
                page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The page could not be shown. Quote the operation id to your administrator.",
                    Some(&id),
                )
            }
            WebError::Service(e) => service_error(&e),
        }
    }
}

/// The page for a service error (see the module doc).
pub fn service_error(e: &ServiceError) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match e {
        ServiceError::Denied { .. } => page(
            status,
            "Not allowed",
            "Your role does not allow this. Ask an administrator if you need it.",
            None,
        ),
        ServiceError::NotFound { what } => {
            page(status, "Not found", &format!("{what}: not found."), None)
        }
        ServiceError::Conflict { .. } | ServiceError::Busy { .. } => {
            page(status, "Try again", &e.to_string(), None)
        }
        ServiceError::Unavailable { .. } => {
            let id = new_op_id();
            tracing::warn!(op_id = %id, error = %e, "web: service unavailable");
            page(
                status,
                "Temporarily unavailable",
                "A part of the gateway is not available right now. Try again in a moment.",
                Some(&id),
            )
        }
        ServiceError::Invalid { errors } => page(
            status,
            "Not accepted",
            &errors
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join("; "),
            None,
        ),
        _ => {
            let id = new_op_id();
            tracing::error!(op_id = %id, error = %e, "web: operation failed");
            page(
                status,
                "Something went wrong",
                "The operation did not complete. Quote the operation id to your administrator.",
                Some(&id),
            )
        }
    }
}
