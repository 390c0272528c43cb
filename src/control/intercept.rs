//! The layer every `/open-apis` call passes through: fault injection before the handler, the
//! request journal after it.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::faults::Effect;
use super::journal::JournalEntry;
use crate::api::auth::find_live_token;
use crate::api::extract::too_large;
use crate::envelope::{current_log_id, ApiError, FeishuCode};
use crate::error::{GatewayErr, ServerErr};
use crate::state::AppState;

/// Marks a reply whose connection the server closes instead of sending it (the `drop` fault).
#[derive(Debug, Clone, Copy)]
pub struct DropConnection;

pub async fn intercept(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/open-apis/") || (!state.journal.enabled() && state.faults.is_empty()) {
        return next.run(req).await;
    }
    let started = Instant::now();
    let at_ms = state.clock.now_ms();
    let (parts, body) = req.into_parts();
    let method = parts.method.as_str().to_string();
    let path = parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_string(), |p| p.to_string());
    let bearer_token = bearer(&parts.headers).map(str::to_string);
    let limit = crate::api::extract::body_limit_for(&state, parts.uri.path());
    let (request_body, response) = match axum::body::to_bytes(body, limit).await {
        Err(_) => (Bytes::new(), too_large(limit).into_response()),
        Ok(bytes) => {
            let effect = if state.faults.is_empty() {
                None
            } else {
                let app = caller_app(&state, bearer_token.as_deref(), &bytes).await;
                state.faults.take(&method, parts.uri.path(), app.as_deref())
            };
            let response = match effect {
                Some(Effect::Error { http_status, code, msg }) => fault_error(http_status, code, msg),
                Some(Effect::Drop) => {
                    let mut r = ApiError::Feishu(ServerErr::Internal.with_msg("connection dropped by a larkstack fault"))
                        .into_response();
                    r.extensions_mut().insert(DropConnection);
                    r
                }
                Some(delay @ Effect::Delay { .. }) => {
                    tokio::time::sleep(delay.delay().unwrap_or_default()).await;
                    next.run(Request::from_parts(parts, Body::from(bytes.clone()))).await
                }
                None => next.run(Request::from_parts(parts, Body::from(bytes.clone()))).await,
            };
            (bytes, response)
        }
    };
    if !state.journal.enabled() {
        return response;
    }
    let (rparts, rbody) = response.into_parts();
    let response_body = axum::body::to_bytes(rbody, usize::MAX).await.unwrap_or_default();
    state.journal.record(JournalEntry {
        seq: 0,
        at_ms,
        app_id: cached_app(&state, bearer_token.as_deref(), &request_body),
        method,
        path,
        status: rparts.status.as_u16(),
        code: rparts.extensions.get::<FeishuCode>().map(|c| c.0),
        log_id: rparts.headers.get("x-tt-logid").and_then(|v| v.to_str().ok()).map_or_else(current_log_id, str::to_string),
        duration_us: started.elapsed().as_micros() as u64,
        token: bearer_token,
        request_body,
        response_body: response_body.clone(),
        request_body_size: 0,
        response_body_size: 0,
        request_body_truncated: false,
        response_body_truncated: false,
    });
    Response::from_parts(rparts, Body::from(response_body))
}

fn fault_error(http_status: u16, code: i64, msg: String) -> Response {
    let mut err = crate::error::catalogue::injected(code, msg, http_status);
    if code == GatewayErr::RateLimited.code() {
        err.rate_limited = Some(crate::error::RateLimited { limit: 50, reset_secs: 1 });
    }
    let mut resp = ApiError::Feishu(err).into_response();
    resp.headers_mut().insert("x-larkstack-fault", HeaderValue::from_static("1"));
    resp
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")).map(str::trim)
}

/// The app behind the call: its token's app, or the `app_id` of a token request's body.
async fn caller_app(state: &AppState, bearer_token: Option<&str>, body: &[u8]) -> Option<String> {
    match bearer_token {
        Some(token) => find_live_token(state, token).await.ok().flatten().map(|t| t.app_id.0.clone()),
        None => app_id_in_body(body),
    }
}

/// Like `caller_app`, from what the handler has already looked up (no store read).
fn cached_app(state: &AppState, bearer_token: Option<&str>, body: &[u8]) -> Option<String> {
    match bearer_token {
        Some(token) => state.token_cache.get(token).map(|t| t.app_id.0.clone()),
        None => app_id_in_body(body),
    }
}

fn app_id_in_body(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Creds {
        app_id: Option<String>,
    }
    serde_json::from_slice::<Creds>(body).ok()?.app_id
}
