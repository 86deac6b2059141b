//! `/`: sends the browser where it belongs (the wizard while the gateway
//! is not set up, the dashboard when logged in, else the login page).

use axum::extract::State;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use sealgate_api::ops::accounts::SessionKind;
use sealgate_api::ops::setup::SetupStatus;

use crate::{WebError, WebState, session};

pub async fn view_home_get(State(state): State<WebState>, parts: Parts) -> Response {
    if let Some((_, s)) = session::lookup(&state, &parts).await {
        return match s.kind {
            SessionKind::Account => Redirect::to("/dashboard").into_response(),
            SessionKind::Setup => Redirect::to("/setup").into_response(),
        };
    }
    match sealgate_api::run(
        state.service(),
        &session::anonymous(&parts),
        &SetupStatus {},
    )
    .await
    {
        Ok(s) if s.open => Redirect::to("/setup").into_response(),
        _ => Redirect::to("/login").into_response(),
    }
}

pub async fn view_not_found() -> Response {
    WebError::NotFound.into_response()
}
