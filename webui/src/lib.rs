//! Sealgate's web front end: the first-run setup wizard and the
//! administration UI, served over HTTPS on the management listener.
//!
//! # Design
//!
//! - **A thin front end.** Every handler turns a form into one typed
//!   operation of the admin service ([`sealgate_api::Service`], called
//!   through [`sealgate_api::run`]) and renders the answer; no gateway
//!   logic lives here. The role check and the audit log are the
//!   service's: a page only hides links the role cannot use.
//! - **Server-rendered pages** (askama: compiled, escaping everything by
//!   default), one view module per page (`views::<page>`), handlers named
//!   `view_<page>_<get|post>`, templates under `templates/` named after
//!   them. Every flow works with JavaScript off; the one script
//!   (`static/app.js`) only adds conveniences (confirmations, "select
//!   all"). Static assets are embedded in the binary ([`assets`]): the
//!   pages load nothing from another origin and work offline.
//! - **Security in layers** ([`security`], [`session`], [`server`],
//!   [`throttle`]): listener limits first, then security headers on every
//!   response, a same-origin check on every state change, sessions kept
//!   on the server behind a `__Host-` cookie, throttled logins. Errors
//!   show generic words and an operation id ([`error`]).
//!
//! # Routes, grouped by guard
//!
//! - public: `/login`, `/setup` (unlock), `/healthz`, `/static/*`,
//!   `/.well-known/openpgpkey/*` (our Web Key Directory)
//!   (`/metrics` takes a bearer token or an admin session);
//! - setup session: `/setup/*` while the gateway is not set up;
//! - logged in: everything else; what each role may do is the service's
//!   answer.
//!
//! Trusts: the admin service (in process) and nothing from the network.

use std::net::IpAddr;
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use sealgate_api::{Area, Permission, Role, Service};

pub mod assets;
pub mod error;
pub mod portal;
pub mod security;
pub mod server;
pub mod session;
pub mod svg;
pub mod throttle;
mod views;

pub use error::WebError;
pub use server::{Limits, serve};

/// What the handlers share.
#[derive(Clone)]
pub struct WebState {
    inner: Arc<Inner>,
}

struct Inner {
    service: Arc<dyn Service>,
    /// Failed logins and setup tokens per client address.
    throttle: throttle::Throttle,
    /// The bearer token `/metrics` accepts (besides an admin session).
    metrics_token: Option<String>,
    /// The node's name in the page header.
    node: String,
}

impl WebState {
    pub fn new(service: Arc<dyn Service>, node: String, metrics_token: Option<String>) -> WebState {
        WebState {
            inner: Arc::new(Inner {
                service,
                throttle: throttle::Throttle::new(3),
                metrics_token,
                node,
            }),
        }
    }

    pub fn service(&self) -> &dyn Service {
        &*self.inner.service
    }

    pub fn throttle(&self) -> &throttle::Throttle {
        &self.inner.throttle
    }

    pub fn metrics_token(&self) -> Option<&str> {
        self.inner.metrics_token.as_deref()
    }

    pub fn node(&self) -> &str {
        &self.inner.node
    }
}

/// The application: every route and layer, without sockets (tests drive
/// it with `oneshot`; [`serve`] puts it on a listener).
pub fn app(state: WebState, limits: &Limits) -> Router {
    Router::new()
        .route("/", get(views::home::view_home_get))
        .route("/healthz", get(views::metrics::view_healthz_get))
        .route("/metrics", get(views::metrics::view_metrics_get))
        .route("/static/{file}", get(assets::view_static_get))
        .route(
            "/.well-known/openpgpkey/hu/{hash}",
            get(views::wkd::view_wkd_direct_get),
        )
        .route(
            "/.well-known/openpgpkey/policy",
            get(views::wkd::view_wkd_direct_policy_get),
        )
        .route(
            "/.well-known/openpgpkey/{domain}/hu/{hash}",
            get(views::wkd::view_wkd_advanced_get),
        )
        .route(
            "/.well-known/openpgpkey/{domain}/policy",
            get(views::wkd::view_wkd_advanced_policy_get),
        )
        .route(
            "/login",
            get(views::login::view_login_get).post(views::login::view_login_post),
        )
        .route("/login/enrol", post(views::login::view_enrol_post))
        .route("/logout", post(views::login::view_logout_post))
        .merge(views::setup::routes())
        .route("/dashboard", get(views::dashboard::view_dashboard_get))
        .route("/queue", get(views::queue::view_queue_get))
        .route("/queue/action", post(views::queue::view_queue_action_post))
        .route("/queue/{id}", get(views::queue::view_queue_message_get))
        .route("/tracking", get(views::tracking::view_tracking_get))
        .route(
            "/tracking/{id}",
            get(views::tracking::view_tracking_message_get),
        )
        .route("/directory", get(views::directory::view_directory_get))
        .route(
            "/directory/import",
            post(views::directory::view_directory_import_post),
        )
        .route(
            "/directory/remove",
            post(views::directory::view_directory_remove_post),
        )
        .route(
            "/directory/download/{fingerprint}",
            get(views::directory::view_directory_download_get),
        )
        .route("/trust", get(views::trust::view_trust_get))
        .route(
            "/trust/review",
            get(views::trust::view_trust_review_get).post(views::trust::view_trust_review_post),
        )
        .route("/trust/crl", post(views::trust::view_trust_crl_post))
        .route(
            "/policy",
            get(views::policy::view_policy_get).post(views::policy::view_policy_post),
        )
        .route(
            "/policy/dry-run",
            get(views::policy::view_dry_run_get).post(views::policy::view_dry_run_post),
        )
        .route("/settings", get(views::settings::view_settings_get))
        .route(
            "/settings/section/{name}",
            post(views::settings::view_settings_section_post),
        )
        .route(
            "/settings/toml",
            get(views::settings::view_settings_toml_get)
                .post(views::settings::view_settings_toml_post),
        )
        .route("/settings/history", get(views::settings::view_history_get))
        .route(
            "/settings/rollback",
            post(views::settings::view_rollback_post),
        )
        .route("/keys", get(views::keys::view_keys_get))
        .merge(views::keys::routes())
        .merge(views::backup::routes())
        .route(
            "/keys/download/{label}",
            get(views::keys::view_keys_download_get),
        )
        .route(
            "/accounts",
            get(views::accounts::view_accounts_get).post(views::accounts::view_accounts_post),
        )
        .route(
            "/accounts/update",
            post(views::accounts::view_accounts_update_post),
        )
        .route("/account", get(views::accounts::view_account_get))
        .route(
            "/account/end-session",
            post(views::accounts::view_end_session_post),
        )
        .route(
            "/account/password",
            post(views::accounts::view_password_post),
        )
        .route("/audit", get(views::audit::view_audit_get))
        .route("/cluster", get(views::cluster::view_cluster_get))
        .route(
            "/update",
            get(views::update::view_update_get).post(views::update::view_update_post),
        )
        .fallback(views::home::view_not_found)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(middleware::from_fn(security::csrf))
        .layer(middleware::from_fn_with_state(
            limits.request_timeout,
            security::timeout,
        ))
        .layer(middleware::from_fn(security::headers))
        .with_state(state)
}

/// One entry of the navigation.
pub struct NavItem {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

/// The parts of the page around the content: title, who is logged in,
/// what they may open.
pub struct Chrome {
    pub title: String,
    pub account: Option<String>,
    pub role: Option<&'static str>,
    pub node: String,
    pub nav: Vec<NavItem>,
    /// A message from the last change (fixed texts only, never echoed input).
    pub notice: Option<&'static str>,
}

const PAGES: [(&str, &str, Area); 13] = [
    ("/dashboard", "Dashboard", Area::Status),
    ("/queue", "Queue", Area::Queue),
    ("/tracking", "Tracking", Area::Tracking),
    ("/directory", "Directory", Area::Directory),
    ("/trust", "Trust", Area::Directory),
    ("/policy", "Policy", Area::Policy),
    ("/settings", "Settings", Area::Settings),
    ("/keys", "Keys", Area::Keys),
    ("/accounts", "Accounts", Area::Accounts),
    ("/audit", "Audit log", Area::Audit),
    ("/backup", "Backup", Area::Accounts),
    ("/cluster", "Cluster", Area::Status),
    ("/update", "Update", Area::Status),
];

impl Chrome {
    /// The chrome of a logged-in page; `current` is its path in the navigation.
    pub fn for_account(
        state: &WebState,
        account: &session::Account,
        title: &str,
        current: &str,
    ) -> Chrome {
        let role = account.session.role;
        Chrome {
            title: title.to_owned(),
            account: Some(account.session.account.clone()),
            role: Some(role.as_str()),
            node: state.node().to_owned(),
            nav: nav(role, current),
            notice: None,
        }
    }

    /// The chrome of a page nobody is logged in on (login, setup).
    pub fn public(state: &WebState, title: &str) -> Chrome {
        Chrome {
            title: title.to_owned(),
            account: None,
            role: None,
            node: state.node().to_owned(),
            nav: Vec::new(),
            notice: None,
        }
    }

    pub fn with_notice(mut self, notice: Option<&'static str>) -> Chrome {
        self.notice = notice;
        self
    }
}

/// The pages `role` may open, in order.
pub fn nav(role: Role, current: &str) -> Vec<NavItem> {
    PAGES
        .iter()
        .filter(|(_, _, area)| role.allows(Permission::Read(*area)))
        .map(|(href, label, _)| NavItem {
            href,
            label,
            current: *href == current,
        })
        .collect()
}

/// Renders a template into a response (an error page if it fails).
pub fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => WebError::Render(e).into_response(),
    }
}

/// The client's IP address, for throttling (unknown clients share one slot).
pub fn client_ip(addr: Option<&server::ClientAddr>) -> IpAddr {
    addr.map_or(IpAddr::from([0, 0, 0, 0]), |a| a.0.ip())
}
