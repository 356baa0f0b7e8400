//! `GET /`: a page to try the engine in a browser. One file with its script and
//! style inside (the page must work offline: no CDN); it calls the JSON routes.

use axum::{http::header, response::IntoResponse};

const PAGE: &str = include_str!("page.html");

pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Only this page's own inline script and the same-origin API.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 img-src 'self' blob: data:",
            ),
        ],
        PAGE,
    )
}
