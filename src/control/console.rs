//! The web console: static files compiled into the binary, served at `/`. It talks to the
//! control API with the admin token it finds in the page's `#token=` fragment.

use std::sync::Arc;

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::state::AppState;

const INDEX_HTML: &str = include_str!("../../console/index.html");

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/", get(index))
}

async fn index() -> impl IntoResponse {
    ([(CONTENT_TYPE, "text/html; charset=utf-8"), (CACHE_CONTROL, "no-cache")], INDEX_HTML)
}
