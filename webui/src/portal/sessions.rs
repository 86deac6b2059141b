//! The recipient's sessions on `/preferences`: ending another session of
//! the address by its handle, or every other one. The page's list comes
//! with the preferences (`super::preferences_page`).
//!
//! Trusts: nothing in the form. The daemon looks the handle up among the
//! sessions of the address the presenting session belongs to only, so a
//! handle of another address's session ends nothing.

use axum::Form;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use sealgate_api::ServiceError;

use super::{PortalState, Reader, refused_or};

#[derive(Deserialize)]
pub(super) struct EndForm {
    #[serde(default)]
    handle: String,
}

/// Ends one other session of the address.
pub(super) async fn view_session_end_post(
    State(state): State<PortalState>,
    reader: Reader,
    Form(form): Form<EndForm>,
) -> Response {
    match state
        .service
        .end_session(&reader.session, form.handle.trim())
        .await
    {
        Ok(()) => Redirect::to("/preferences?done=session").into_response(),
        // Another address's, this one's own, or one that ended already:
        // the same answer, on the page.
        Err(ServiceError::NotFound { .. }) => {
            refused_or(
                &state,
                &reader,
                ServiceError::invalid(
                    "session",
                    "That session is not one of your other sessions, or it has ended already.",
                ),
            )
            .await
        }
        Err(e) => refused_or(&state, &reader, e).await,
    }
}

/// Ends every other session of the address.
pub(super) async fn view_sessions_end_others_post(
    State(state): State<PortalState>,
    reader: Reader,
) -> Response {
    match state.service.end_other_sessions(&reader.session).await {
        Ok(_) => Redirect::to("/preferences?done=sessions").into_response(),
        Err(e) => refused_or(&state, &reader, e).await,
    }
}
