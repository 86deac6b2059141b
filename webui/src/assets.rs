//! Static assets, embedded in the binary at build time: the pages load
//! nothing from another origin and work offline.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// (name, content type, bytes)
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../static/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../static/app.js"),
    ),
    (
        "passkey.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../static/passkey.js"),
    ),
    (
        "portal.css",
        "text/css; charset=utf-8",
        include_bytes!("../static/portal.css"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_bytes!("../static/icon.svg"),
    ),
];

/// `GET /static/{file}`.
pub async fn view_static_get(Path(file): Path<String>) -> Response {
    match FILES.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, bytes)) => {
            let mut response = (StatusCode::OK, *bytes).into_response();
            let h = response.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            );
            response
        }
        None => crate::WebError::NotFound.into_response(),
    }
}
