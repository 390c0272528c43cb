//! The web console: static files compiled into the binary, served at `/` and `/console/*`. It
//! talks only to the control API (and `/healthz`) with the admin token it finds in the page's
//! `#token=` fragment (then keeps in the browser's localStorage).
//!
//! The script is ES modules (`app.js` imports `lib/*.js` and `pages/*.js`) loaded by the browser
//! as they are: no build step. Every file is listed in [`FILES`]; any other `/console/…` path
//! gets the JSON 404 of the router's fallback.

use std::sync::Arc;

use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY as CONTENT_SECURITY_POLICY_HEADER, CONTENT_TYPE, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::state::AppState;

const INDEX_HTML: &str = include_str!("../../console/index.html");

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Every file under `console/` but index.html: its path under `/console/`, content type, body.
pub const FILES: &[(&str, &str, &str)] = &[
    ("app.js", JS, include_str!("../../console/app.js")),
    ("lib/api.js", JS, include_str!("../../console/lib/api.js")),
    ("lib/dom.js", JS, include_str!("../../console/lib/dom.js")),
    ("lib/format.js", JS, include_str!("../../console/lib/format.js")),
    ("lib/page.js", JS, include_str!("../../console/lib/page.js")),
    ("pages/chat.js", JS, include_str!("../../console/pages/chat.js")),
    ("pages/chats.js", JS, include_str!("../../console/pages/chats.js")),
    ("pages/clock.js", JS, include_str!("../../console/pages/clock.js")),
    ("pages/connections.js", JS, include_str!("../../console/pages/connections.js")),
    ("pages/directory.js", JS, include_str!("../../console/pages/directory.js")),
    ("pages/events.js", JS, include_str!("../../console/pages/events.js")),
    ("pages/faults.js", JS, include_str!("../../console/pages/faults.js")),
    ("pages/journal.js", JS, include_str!("../../console/pages/journal.js")),
    ("pages/tasks.js", JS, include_str!("../../console/pages/tasks.js")),
    ("style.css", CSS, include_str!("../../console/style.css")),
];

pub fn router() -> Router<Arc<AppState>> {
    FILES.iter().fold(Router::new().route("/", get(|| file(HTML, INDEX_HTML))), |router, &(path, content_type, body)| {
        router.route(&format!("/console/{path}"), get(move || file(content_type, body)))
    })
}

/// Only the console's own files, in no frame: no inline script or style, no other origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'";

async fn file(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, content_type),
            (CACHE_CONTROL, "no-cache"),
            (CONTENT_SECURITY_POLICY_HEADER, CONTENT_SECURITY_POLICY),
            (X_FRAME_OPTIONS, "DENY"),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
}
