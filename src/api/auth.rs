//! `POST /open-apis/auth/v3/{tenant,app}_access_token/internal`, the store apps' (ISV) trio
//! `/auth/v3/app_ticket/resend`, `/auth/v3/app_access_token` (with the pushed `app_ticket`, see
//! `delivery::ticket`) and `/auth/v3/tenant_access_token`, plus the bearer check every other
//! endpoint runs first.
//!
//! Token rules (spec §2.2): 2-hour tokens; asking again returns the same token with its remaining
//! lifetime until less than 30 minutes remain, then a new one while the old stays valid. Tokens
//! are stored, so they survive restarts. Failures answer HTTP 200 with a non-zero code.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::extract::RawBody;
use crate::domain::directory::{App, AppKind};
use crate::domain::ids::{new_access_token, AppId, TenantKey};
use crate::envelope::{top_level, ApiError, ApiResult};
use crate::error::{AuthErr, FeishuError};
use crate::state::AppState;
use crate::store::{TokenKind, TokenRecord};

pub const TOKEN_LIFETIME_MS: i64 = 7200 * 1000;
pub const REISSUE_BEFORE_MS: i64 = 30 * 60 * 1000;

/// App credentials.
#[derive(Deserialize, utoipa::ToSchema)]
struct Credentials {
    app_id: Option<String>,
    app_secret: Option<String>,
}

/// Token endpoint failure: HTTP 200, non-zero code, `data: {}`.
fn token_failure(err: AuthErr) -> Response {
    let e = err.entry();
    top_level(&json!({"code": e.code, "msg": e.msg, "data": {}}))
}

/// Checks app_id/app_secret; `Err` is what the failure reply says.
fn check_credentials(state: &AppState, body: &[u8]) -> Result<App, AuthErr> {
    let Ok(creds) = serde_json::from_slice::<Credentials>(body) else {
        return Err(AuthErr::InvalidParam);
    };
    check_app(state, creds)
}

/// Checks parsed app credentials; `Err` is what the failure reply says.
fn check_app(state: &AppState, creds: Credentials) -> Result<App, AuthErr> {
    let (Some(app_id), Some(secret)) = (creds.app_id.filter(|s| !s.is_empty()), creds.app_secret.filter(|s| !s.is_empty()))
    else {
        return Err(AuthErr::InvalidParam);
    };
    let dir = state.directory();
    let Some(app) = dir.app(&AppId(app_id)) else {
        return Err(AuthErr::InvalidParam);
    };
    if !crate::secrets::secret_eq(&secret, &app.app_secret) {
        return Err(AuthErr::AppSecretInvalid);
    }
    Ok(app.clone())
}

/// The live token for (app, tenant, kind), reused while at least 30 minutes remain, else a new one.
async fn issue(state: &AppState, app_id: &AppId, tenant: &TenantKey, kind: TokenKind) -> Result<TokenRecord, ApiError> {
    let now = state.clock.now_ms();
    let fresh = TokenRecord {
        token: new_access_token(),
        kind,
        app_id: app_id.clone(),
        tenant_key: tenant.clone(),
        issued_at_ms: now,
        expires_at_ms: now + TOKEN_LIFETIME_MS,
    };
    // Reused while at least REISSUE_BEFORE_MS remain, i.e. expiring at or after now + that.
    let record = state.store.rotate_token(fresh, now + REISSUE_BEFORE_MS - 1).await?;
    state.token_cache.insert(Arc::new(record.clone()), now);
    Ok(record)
}

fn expire_secs(state: &AppState, t: &TokenRecord) -> i64 {
    ((t.expires_at_ms - state.clock.now_ms()) / 1000).max(0)
}

/// Self-built apps get a token for their own tenant.
/// Side effects: may store one new token.
#[utoipa::path(
    post,
    path = "/open-apis/auth/v3/tenant_access_token/internal",
    tag = "auth",
    summary = "Tenant access token of a self-built app",
    request_body(content = Credentials, content_type = "application/json"),
    responses(
        (status = 200, description = "`code` 0 with the token, else 10003 or 10014", body = crate::openapi::TenantTokenReply),
        crate::openapi::ErrorResponse,
    ),
)]
pub async fn tenant_access_token_internal(State(state): State<Arc<AppState>>, RawBody(body): RawBody) -> ApiResult {
    let app = match check_credentials(&state, &body) {
        Ok(app) => app,
        Err(e) => return Ok(token_failure(e)),
    };
    let Some(home) = app.home_tenant.clone().filter(|_| app.kind == AppKind::SelfBuilt) else {
        // Store apps get tenant tokens through app_access_token + tenant_key.
        return Ok(token_failure(AuthErr::InvalidParam));
    };
    let t = issue(&state, &app.app_id, &home, TokenKind::Tenant).await?;
    Ok(top_level(&json!({"code": 0, "msg": "ok", "tenant_access_token": t.token, "expire": expire_secs(&state, &t)})))
}

/// Any app gets an app token (store apps also without an app_ticket: see docs/parity.md).
/// Side effects: may store one new token.
#[utoipa::path(
    post,
    path = "/open-apis/auth/v3/app_access_token/internal",
    tag = "auth",
    summary = "App access token",
    request_body(content = Credentials, content_type = "application/json"),
    responses(
        (status = 200, description = "`code` 0 with the token, else 10003 or 10014", body = crate::openapi::AppTokenReply),
        crate::openapi::ErrorResponse,
    ),
)]
pub async fn app_access_token_internal(State(state): State<Arc<AppState>>, RawBody(body): RawBody) -> ApiResult {
    let app = match check_credentials(&state, &body) {
        Ok(app) => app,
        Err(e) => return Ok(token_failure(e)),
    };
    // App tokens are not tied to a tenant; they are stored under the empty tenant key.
    let t = issue(&state, &app.app_id, &TenantKey(String::new()), TokenKind::App).await?;
    Ok(top_level(&json!({"code": 0, "msg": "ok", "app_access_token": t.token, "expire": expire_secs(&state, &t)})))
}

/// A store app's credentials and the ticket last pushed to it.
#[derive(Deserialize, utoipa::ToSchema)]
struct StoreAppCredentials {
    app_id: Option<String>,
    app_secret: Option<String>,
    app_ticket: Option<String>,
}

/// A store app trades its current `app_ticket` for an app token. Self-built apps are refused
/// (10003: they use `app_access_token/internal`); a missing, unknown, expired, superseded or
/// another app's ticket answers 10012.
/// Side effects: may store one new token.
#[utoipa::path(
    post,
    path = "/open-apis/auth/v3/app_access_token",
    tag = "auth",
    summary = "App access token of a store app (with its app_ticket)",
    request_body(content = StoreAppCredentials, content_type = "application/json"),
    responses(
        (status = 200, description = "`code` 0 with the token, else 10003, 10012 or 10014", body = crate::openapi::AppTokenReply),
        crate::openapi::ErrorResponse,
    ),
)]
pub async fn app_access_token(State(state): State<Arc<AppState>>, RawBody(body): RawBody) -> ApiResult {
    let Ok(req) = serde_json::from_slice::<StoreAppCredentials>(&body) else {
        return Ok(token_failure(AuthErr::InvalidParam));
    };
    let app = match check_app(&state, Credentials { app_id: req.app_id, app_secret: req.app_secret }) {
        Ok(app) if app.kind == AppKind::Store => app,
        Ok(_) => return Ok(token_failure(AuthErr::InvalidParam)),
        Err(e) => return Ok(token_failure(e)),
    };
    let given = req.app_ticket.unwrap_or_default();
    let current = state.store.app_ticket(&app.app_id).await?;
    let valid = current.is_some_and(|t| {
        !given.is_empty() && crate::secrets::secret_eq(&given, &t.ticket) && t.expires_at_ms > state.clock.now_ms()
    });
    if !valid {
        return Ok(token_failure(AuthErr::AppTicketInvalid));
    }
    let t = issue(&state, &app.app_id, &TenantKey(String::new()), TokenKind::App).await?;
    Ok(top_level(&json!({"code": 0, "msg": "ok", "app_access_token": t.token, "expire": expire_secs(&state, &t)})))
}

/// Asks for a new `app_ticket` to be pushed to the store app's request URL now.
/// Side effects: stores a new ticket (superseding the current one), then pushes it
/// asynchronously; nothing when the app has no request URL. Self-built apps are refused (10003).
#[utoipa::path(
    post,
    path = "/open-apis/auth/v3/app_ticket/resend",
    tag = "auth",
    summary = "Push a store app's app_ticket again",
    request_body(content = Credentials, content_type = "application/json"),
    responses(
        (status = 200, description = "`code` 0, else 10003 or 10014", body = crate::openapi::TicketResendReply),
        crate::openapi::ErrorResponse,
    ),
)]
pub async fn app_ticket_resend(State(state): State<Arc<AppState>>, RawBody(body): RawBody) -> ApiResult {
    let app = match check_credentials(&state, &body) {
        Ok(app) if app.kind == AppKind::Store => app,
        Ok(_) => return Ok(token_failure(AuthErr::InvalidParam)),
        Err(e) => return Ok(token_failure(e)),
    };
    state.tickets.resend(&app.app_id).await?;
    Ok(top_level(&json!({"code": 0, "msg": "ok"})))
}

/// A store app's app token and the tenant that installed it.
#[derive(Deserialize, utoipa::ToSchema)]
struct StoreAppTenantToken {
    app_access_token: Option<String>,
    tenant_key: Option<String>,
}

/// A store app's tenant token for a tenant that installed it.
/// Side effects: may store one new token.
#[utoipa::path(
    post,
    path = "/open-apis/auth/v3/tenant_access_token",
    tag = "auth",
    summary = "Tenant access token of a store app",
    request_body(content = StoreAppTenantToken, content_type = "application/json"),
    responses(
        (status = 200, description = "`code` 0 with the token, else 10003", body = crate::openapi::TenantTokenReply),
        crate::openapi::ErrorResponse,
    ),
)]
pub async fn tenant_access_token(State(state): State<Arc<AppState>>, RawBody(body): RawBody) -> ApiResult {
    let Ok(req) = serde_json::from_slice::<StoreAppTenantToken>(&body) else {
        return Ok(token_failure(AuthErr::InvalidParam));
    };
    let (Some(app_token), Some(tenant_key)) = (req.app_access_token, req.tenant_key) else {
        return Ok(token_failure(AuthErr::InvalidParam));
    };
    let Some(app_record) = find_live_token(&state, &app_token).await?.filter(|t| t.kind == TokenKind::App) else {
        return Ok(token_failure(AuthErr::InvalidParam));
    };
    let tenant = TenantKey(tenant_key);
    let installed = state.directory().app(&app_record.app_id).is_some_and(|a| a.installs.contains_key(&tenant));
    if !installed {
        return Ok(token_failure(AuthErr::InvalidParam));
    }
    let t = issue(&state, &app_record.app_id, &tenant, TokenKind::Tenant).await?;
    Ok(top_level(&json!({"code": 0, "msg": "ok", "tenant_access_token": t.token, "expire": expire_secs(&state, &t)})))
}

/// The stored token if it exists and has not expired by the larkstack clock.
pub(crate) async fn find_live_token(state: &AppState, token: &str) -> Result<Option<Arc<TokenRecord>>, ApiError> {
    let cached = state.token_cache.get(token);
    let record = match cached {
        Some(r) => Some(r),
        None => {
            let found = state.store.find_token(token).await?.map(Arc::new);
            if let Some(r) = &found {
                state.token_cache.insert(r.clone(), state.clock.now_ms());
            }
            found
        }
    };
    Ok(record.filter(|r| r.expires_at_ms > state.clock.now_ms()))
}

/// The bearer check: missing → 99991661, unknown/expired/not a tenant token → 99991663.
pub async fn tenant_token(state: &AppState, headers: &HeaderMap) -> Result<Arc<TokenRecord>, ApiError> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::Feishu(FeishuError::missing_token()))?;
    match find_live_token(state, token).await? {
        Some(r) if r.kind == TokenKind::Tenant => Ok(r),
        _ => Err(ApiError::Feishu(FeishuError::invalid_token())),
    }
}
