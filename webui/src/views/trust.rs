//! `/trust`: the trust model's page. Key changes waiting for review (each
//! opened side by side with the key it would replace, to accept or
//! reject), the S/MIME trust anchors and CRLs in force (a CRL can be
//! uploaded), and what we publish: the OPENPGPKEY and SMIMEA records to
//! put into our DNS zone and the Web Key Directory paths this listener
//! serves. Every answer and change is the admin service's.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use sealgate_api::ops::trust::{
    Anchor, AnchorsList, CrlInfo, CrlList, CrlUpload, KeyReview, KeyReviewDetail, PublishRecords,
    Published, ReviewAccept, ReviewList, ReviewReject, ReviewShow,
};
use sealgate_api::{Area, Permission, ServiceError, run};
use serde::Deserialize;

use super::{Errors, now_ms};
use crate::session::Account;
use crate::{Chrome, WebState, render};

#[derive(Template)]
#[template(path = "trust.html")]
struct TrustPage {
    chrome: Chrome,
    reviews: Vec<KeyReview>,
    anchors: Vec<Anchor>,
    crls: Vec<CrlInfo>,
    published: Vec<Published>,
    can_change: bool,
    now: u64,
    errors: Errors,
}

#[derive(Template)]
#[template(path = "trust_review.html")]
struct ReviewPage {
    chrome: Chrome,
    d: KeyReviewDetail,
    can_change: bool,
    now: u64,
}

#[derive(Deserialize)]
pub struct TrustQuery {
    done: Option<String>,
}

/// Fixed words after a change on this page (never text from the URL).
fn notice(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "accepted" => {
            "Key accepted: it is used from now on, and held mail for the address is decided again."
        }
        "rejected" => {
            "Key rejected: the key in use stays, and held mail for the address is decided again."
        }
        "crl" => "CRL uploaded.",
        _ => return None,
    })
}

fn can_change(account: &Account) -> bool {
    account
        .session
        .role
        .allows(Permission::Write(Area::Directory))
}

async fn page(state: &WebState, account: &Account, done: Option<&str>, errors: Errors) -> Response {
    let actor = &account.actor;
    let service = state.service();
    let answers = (
        run(service, actor, &ReviewList {}).await,
        run(service, actor, &AnchorsList {}).await,
        run(service, actor, &CrlList {}).await,
        run(service, actor, &PublishRecords {}).await,
    );
    let (reviews, anchors, crls, published) = match answers {
        (Ok(r), Ok(a), Ok(c), Ok(p)) => (r, a, c, p),
        (Err(e), ..) | (_, Err(e), ..) | (_, _, Err(e), _) | (.., Err(e)) => {
            return crate::error::service_error(&e);
        }
    };
    let failed = !errors.is_empty();
    let mut r = render(&TrustPage {
        chrome: Chrome::for_account(state, account, "Trust", "/trust").with_notice(notice(done)),
        reviews,
        anchors,
        crls,
        published,
        can_change: can_change(account),
        now: now_ms(),
        errors,
    });
    if failed {
        *r.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
    }
    r
}

pub async fn view_trust_get(
    State(state): State<WebState>,
    account: Account,
    Query(q): Query<TrustQuery>,
) -> Response {
    if let Some(refused) = account.refuse(Permission::Read(Area::Directory)) {
        return refused;
    }
    page(&state, &account, q.done.as_deref(), Errors::default()).await
}

#[derive(Deserialize)]
pub struct ReviewQuery {
    id: String,
}

/// `GET /trust/review?id=…`: one key change, both keys side by side.
pub async fn view_trust_review_get(
    State(state): State<WebState>,
    account: Account,
    Query(q): Query<ReviewQuery>,
) -> Response {
    if let Some(refused) = account.refuse(Permission::Read(Area::Directory)) {
        return refused;
    }
    match run(state.service(), &account.actor, &ReviewShow { id: q.id }).await {
        Ok(d) => render(&ReviewPage {
            chrome: Chrome::for_account(&state, &account, "Key change", "/trust"),
            d,
            can_change: can_change(&account),
            now: now_ms(),
        }),
        Err(e) => crate::error::service_error(&e),
    }
}

#[derive(Deserialize)]
pub struct DecideForm {
    id: String,
    /// `accept` or `reject`.
    decision: String,
}

/// `POST /trust/review`: accept or reject one key change.
pub async fn view_trust_review_post(
    State(state): State<WebState>,
    account: Account,
    axum::Form(form): axum::Form<DecideForm>,
) -> Response {
    if let Some(refused) = account.refuse(Permission::Write(Area::Directory)) {
        return refused;
    }
    let id = form.id;
    let (answer, done) = match form.decision.as_str() {
        "accept" => (
            run(state.service(), &account.actor, &ReviewAccept { id }).await,
            "accepted",
        ),
        "reject" => (
            run(state.service(), &account.actor, &ReviewReject { id }).await,
            "rejected",
        ),
        _ => {
            return crate::WebError::BadRequest("decision must be accept or reject")
                .into_response();
        }
    };
    match answer {
        Ok(_) => Redirect::to(&format!("/trust?done={done}")).into_response(),
        Err(e) => crate::error::service_error(&e),
    }
}

/// `POST /trust/crl`: upload a CRL (multipart `file`, or pasted PEM `text`).
pub async fn view_trust_crl_post(
    State(state): State<WebState>,
    account: Account,
    request: axum::extract::Request,
) -> Response {
    if let Some(refused) = account.refuse(Permission::Write(Area::Directory)) {
        return refused;
    }
    let form = match crate::views::multipart::read(request).await {
        Ok(f) => f,
        Err(e) => return crate::WebError::BadRequest(e).into_response(),
    };
    let data = form.file_or_text("file", "text");
    let Some(data) = data else {
        return page(
            &state,
            &account,
            None,
            Errors::one("crl", "Choose a CRL file or paste one."),
        )
        .await;
    };
    let op = CrlUpload {
        data: base64::engine::general_purpose::STANDARD.encode(&data),
    };
    match run(state.service(), &account.actor, &op).await {
        Ok(_) => Redirect::to("/trust?done=crl").into_response(),
        Err(ServiceError::Invalid { errors }) => page(&state, &account, None, Errors(errors)).await,
        Err(e) => crate::error::service_error(&e),
    }
}
