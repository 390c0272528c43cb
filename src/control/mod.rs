//! The control API under `/_larkstack/`: what a test harness needs to set larkstack up, look
//! inside, break it on purpose and move time. Only the admin token opens it; /open-apis never
//! accepts that token.
//!
//! Replies use the Feishu envelope (`code` 0 on success; 400/401/404 with the HTTP status).

pub mod actors;
pub mod cards;
pub mod client;
pub mod connections;
pub mod console;
pub mod custom_bots;
pub mod deliveries;
pub mod events;
pub mod intercept;
pub mod invitations;
pub mod ndjson;

// The fault injector and the journal are services that `state` holds; their paths here stay.
pub use crate::{faults, journal};

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use serde::Deserialize;
use serde_json::json;

use crate::api::extract::{PathParam, RawBody};
use crate::domain::directory::{AppKind, Directory};
use crate::domain::ids::Uid;
use crate::envelope::{ok, ApiError, ApiResult};
use crate::error::{ControlErr, ServerErr};
use crate::state::AppState;
use crate::store::ImportBatch;

pub use ndjson::STATE_FORMAT;

/// The control API's operations (see `server::routes`), behind the admin token.
pub fn routes(state: Arc<AppState>) -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(directory))
        .routes(routes!(reset))
        .routes(routes!(get_fixture, load_fixture))
        .routes(routes!(export, import))
        .routes(routes!(journal, clear_journal))
        .routes(routes!(events::list))
        .routes(routes!(deliveries::get_settings, deliveries::put_settings))
        .routes(routes!(deliveries::list))
        .routes(routes!(deliveries::redeliver))
        .routes(routes!(connections::list, connections::close_app))
        .routes(routes!(connections::close))
        .routes(routes!(deliveries::list_faults, deliveries::set_fault, deliveries::clear_faults))
        .routes(routes!(list_faults, add_fault, clear_faults))
        .routes(routes!(list_fault_presets))
        .routes(routes!(remove_fault))
        .routes(routes!(clock, set_clock))
        .routes(routes!(actors::list_chats))
        .routes(routes!(actors::chat_detail))
        .routes(routes!(actors::post_as_user))
        .routes(routes!(actors::join_as_user))
        .routes(routes!(actors::add_bot_as_user))
        .routes(routes!(actors::leave_as_user))
        .routes(routes!(actors::enter_p2p))
        .routes(routes!(actors::read_as_user))
        .routes(routes!(actors::react_as_user))
        .routes(routes!(invitations::list, invitations::invite))
        .routes(routes!(invitations::decide))
        .routes(routes!(cards::card_action))
        .routes(routes!(custom_bots::add, custom_bots::list))
        .routes(routes!(custom_bots::remove))
        .routes(routes!(actors::tasks))
        .route_layer(middleware::from_fn_with_state(state, require_admin))
}

pub fn control_error(entry: ControlErr, msg: impl Into<String>) -> ApiError {
    ApiError::Feishu(entry.with_msg(msg.into()))
}

/// Admits only `Authorization: Bearer <admin token>` (or `X-Larkstack-Admin-Token`).
async fn require_admin(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| headers.get("x-larkstack-admin-token").and_then(|v| v.to_str().ok()));
    if given.is_some_and(|t| crate::secrets::secret_eq(t.trim(), &state.admin_token)) {
        next.run(req).await
    } else {
        control_error(ControlErr::Unauthorized, "the control API needs the admin token larkstack printed at start").into_response()
    }
}

/// The query string as `T`; a bad one is a 400 envelope (axum's own rejection is plain text).
pub(crate) fn query<T: serde::de::DeserializeOwned>(uri: &axum::http::Uri) -> Result<T, ApiError> {
    Query::<T>::try_from_uri(uri).map(|Query(q)| q).map_err(|e| control_error(ControlErr::BadRequest, e.body_text()))
}

fn json_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    Ok(crate::api::extract::parse_json(bytes, |field, why| ControlErr::BadRequest.with_msg(format!("invalid JSON body at {field}: {why}")))?)
}

/// Tenants, apps with credentials, users with every ID per app, and aPaaS tasks.
pub fn directory_json(dir: &Directory) -> serde_json::Value {
    let apps: Vec<_> = dir
        .apps()
        .iter()
        .map(|a| {
            json!({
                "key": a.key, "name": a.name, "app_id": a.app_id, "app_secret": a.app_secret,
                "kind": if a.kind == AppKind::Store { "store" } else { "self_built" }, "developer": a.developer,
                "bot": a.bot, "home_tenant_key": a.home_tenant, "scopes": a.scopes,
                "installed_tenant_keys": a.installs.keys().collect::<Vec<_>>(),
                "events": a.events,
            })
        })
        .collect();
    let users: Vec<_> = dir
        .users()
        .iter()
        .map(|u| {
            let open_ids: serde_json::Map<_, _> = dir.apps().iter().map(|a| (a.key.clone(), json!(dir.open_id(a, u)))).collect();
            let union_ids: serde_json::Map<_, _> =
                dir.apps().iter().map(|a| (a.developer.clone(), json!(dir.union_id(&a.developer, u)))).collect();
            json!({
                "key": u.key, "name": u.name, "tenant_key": u.tenant_key, "user_id": u.user_id,
                "status": if u.is_active() { "active" } else { "resigned" }, "email": u.email, "mobile": u.mobile,
                "kunlun_id": u.kunlun_id, "open_ids": open_ids, "union_ids": union_ids,
            })
        })
        .collect();
    let tenants: Vec<_> = dir.tenants().iter().map(|t| json!({"key": t.key, "name": t.name, "tenant_key": t.tenant_key})).collect();
    let key_of = |uid: &Uid| dir.user(uid).map(|u| u.key.clone());
    let tasks: Vec<_> = dir
        .apaas()
        .tasks
        .iter()
        .map(|t| {
            let w = dir.apaas().workflow_of(t);
            json!({
                "key": t.key, "task_id": t.task_id, "tenant_key": w.tenant_key, "status": t.status,
                "workflow_instance": {"key": w.key, "id": w.id, "api_id": w.api_id, "label": w.label, "status": w.status},
                "initiator": key_of(&w.initiator),
                "assignees": t.assignees.iter().map(key_of).collect::<Vec<_>>(),
                "cc": t.cc.iter().map(key_of).collect::<Vec<_>>(),
                "start_time_ms": t.start_time_ms,
            })
        })
        .collect();
    json!({"tenants": tenants, "apps": apps, "users": users, "tasks": tasks})
}

#[utoipa::path(
    get,
    path = "/_larkstack/directory",
    operation_id = "get_directory",
    tag = "control",
    summary = "Tenants, apps with credentials, users with their IDs, aPaaS tasks",
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub(crate) async fn directory(State(state): State<Arc<AppState>>) -> ApiResult {
    Ok(ok(&directory_json(&state.directory())))
}

/// Forgets everything that happened since start: chats, messages, dedup keys, task links, events
/// (seqs start over at 1), the journal, faults and rate windows. The directory, tokens and the
/// clock stay.
#[utoipa::path(
    post,
    path = "/_larkstack/reset",
    operation_id = "reset_state",
    tag = "control",
    summary = "Forget chats, messages, dedup keys, task links, the journal, faults and rate windows",
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub(crate) async fn reset(State(state): State<Arc<AppState>>) -> ApiResult {
    clear_runtime(&state).await?;
    Ok(ok(&json!({})))
}

async fn clear_runtime(state: &AppState) -> Result<(), ApiError> {
    state.store.clear().await?;
    state.journal.clear();
    state.faults.clear();
    state.deliveries.reset();
    state.limits.clear().await?;
    Ok(())
}

#[utoipa::path(
    get,
    path = "/_larkstack/fixture",
    tag = "control",
    summary = "The directory fixture (TOML)",
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub(crate) async fn get_fixture(State(state): State<Arc<AppState>>) -> ApiResult {
    Ok(ok(&json!({ "fixture": *state.fixture_text.read() })))
}

/// Loads a fixture (TOML body) as the directory, then resets like `/_larkstack/reset`: chats of
/// the old directory would name people who may no longer exist. Kept for the next start.
#[utoipa::path(
    put,
    path = "/_larkstack/fixture",
    tag = "control",
    summary = "Load a fixture as the directory, then reset",
    request_body(content = String, content_type = "application/toml", description = "A fixture (docs/fixture.md)"),
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub(crate) async fn load_fixture(State(state): State<Arc<AppState>>, RawBody(body): RawBody) -> ApiResult {
    let text = String::from_utf8(body.to_vec()).map_err(|_| control_error(ControlErr::BadRequest, "the fixture must be UTF-8 TOML"))?;
    install_fixture(&state, text).await?;
    clear_runtime(&state).await?;
    Ok(ok(&directory_json(&state.directory())))
}

async fn install_fixture(state: &AppState, text: String) -> Result<(), ApiError> {
    let directory = Directory::from_toml(&text).map_err(|e| control_error(ControlErr::BadRequest, e.to_string()))?;
    if let Some(file) = &state.fixture_file {
        crate::secrets::write_private(file, text.as_bytes()).map_err(|e| control_error(ControlErr::Failed, format!("{}: {e}", file.display())))?;
    }
    state.replace_directory(directory);
    // The new fixture's event settings replace any set at run time.
    state.deliveries.clear_settings(&*state.store).await?;
    *state.fixture_text.write() = Some(text);
    Ok(())
}

/// Streams the whole state as NDJSON (`application/x-ndjson`, see `ndjson`): a header line with
/// the format and the fixture, one line per record, an end line with the record count. Memory
/// does not grow with the state.
#[utoipa::path(
    get,
    path = "/_larkstack/state",
    operation_id = "export_state",
    tag = "control",
    summary = "Export the whole state (NDJSON stream)",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The state: a header line, one line per record, an end line", content_type = "application/x-ndjson", body = String),
        crate::openapi::ErrorResponse,
    ),
)]
pub(crate) async fn export(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let mut records = state.store.export();
    // A store that fails before the first record gets an error envelope; later failures break
    // the stream off (see `ndjson::export_body`).
    let first = records.recv().await;
    if let Some(Err(e)) = first {
        return Err(e.into());
    }
    let header = ndjson::StateHeader { larkstack_state: STATE_FORMAT, fixture: state.fixture_text.read().clone() };
    let body = ndjson::export_body(&header, first, records);
    Ok(([(axum::http::header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

/// Replaces the whole state with an exported one (its fixture too, when it carries one), read
/// as a stream: no body limit applies, and the store receives the records in batches within one
/// transaction, committed only once the end line has arrived. Any failure leaves the state as it
/// was. Tokens not in the state stop working.
#[utoipa::path(
    put,
    path = "/_larkstack/state",
    operation_id = "import_state",
    tag = "control",
    summary = "Replace the whole state with an exported one (NDJSON stream)",
    request_body(content = String, content_type = "application/x-ndjson", description = "A state as GET /_larkstack/state sends it"),
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub(crate) async fn import(State(state): State<Arc<AppState>>, req: Request) -> ApiResult {
    let mut lines = ndjson::Lines::new(req.into_body().into_data_stream());
    let first = lines.next().await?.ok_or_else(|| control_error(ControlErr::BadRequest, "the body is empty, not a larkstack state"))?;
    let header: ndjson::StateHeader = serde_json::from_slice(&first)
        .map_err(|e| control_error(ControlErr::BadRequest, format!("line 1 is not a larkstack state header: {e}")))?;
    if header.larkstack_state != STATE_FORMAT {
        return Err(control_error(ControlErr::BadRequest, format!("state format {} is not {STATE_FORMAT}", header.larkstack_state)));
    }
    // A new fixture is checked before anything changes, and installed once the store has the state.
    let fixture = header.fixture.filter(|t| state.fixture_text.read().as_ref() != Some(t));
    if let Some(text) = &fixture {
        Directory::from_toml(text).map_err(|e| control_error(ControlErr::BadRequest, format!("the state's fixture: {e}")))?;
    }
    let (batches, received) = tokio::sync::mpsc::channel(2);
    let store = state.store.clone();
    let storing = tokio::spawn(async move { store.import(received).await });
    let fed = ndjson::feed(&mut lines, &batches).await;
    if fed.is_ok() {
        let _ = batches.send(ImportBatch::End).await;
    }
    // Without `End`, the store rolls back.
    drop(batches);
    let stored = storing.await.map_err(|e| control_error(ControlErr::Failed, format!("import failed: {e}")))?;
    let records = match (fed, stored) {
        (Err(ndjson::FeedError::Invalid(e)), _) => return Err(e),
        (_, Err(e)) => {
            tracing::error!(error = %e, "state import failed");
            return Err(control_error(ControlErr::Failed, format!("the store did not take the state, nothing changed: {e}")));
        }
        (Ok(records), Ok(_)) => records,
        (Err(ndjson::FeedError::StoreGone), Ok(_)) => return Err(control_error(ControlErr::Failed, "the store stopped reading the state")),
    };
    if let Some(text) = fixture {
        install_fixture(&state, text).await?;
    }
    state.token_cache.clear();
    state.limits.clear().await?;
    // A new outbox: fanned out from its start (at-least-once, like a restart).
    state.deliveries.reset();
    Ok(ok(&json!({ "records": records })))
}

#[utoipa::path(
    get,
    path = "/_larkstack/journal",
    operation_id = "get_journal",
    tag = "control",
    summary = "The latest /open-apis calls, newest first",
    params(
        ("app_id" = Option<String>, Query, description = "Calls of this app"),
        ("path" = Option<String>, Query, description = "Substring of the path"),
        ("method" = Option<String>, Query),
        ("code" = Option<i64>, Query, description = "Feishu code of the reply"),
        ("after" = Option<u64>, Query, description = "Entries after this seq (for polling)"),
        ("limit" = Option<u64>, Query),
    ),
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub(crate) async fn journal(State(state): State<Arc<AppState>>, uri: axum::http::Uri) -> ApiResult {
    let filter: journal::JournalFilter = query(&uri)?;
    let j = &state.journal;
    Ok(ok(&json!({ "capacity": j.capacity(), "max_bytes": j.max_bytes(), "bytes": j.bytes(), "items": j.list(&filter) })))
}

#[utoipa::path(
    delete,
    path = "/_larkstack/journal",
    tag = "control",
    summary = "Empty the journal",
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub(crate) async fn clear_journal(State(state): State<Arc<AppState>>) -> ApiResult {
    state.journal.clear();
    Ok(ok(&json!({})))
}

#[utoipa::path(
    get,
    path = "/_larkstack/faults",
    tag = "control",
    summary = "Fault rules and presets",
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub(crate) async fn list_faults(State(state): State<Arc<AppState>>) -> ApiResult {
    Ok(ok(&json!({ "items": state.faults.list(), "presets": faults::PRESETS })))
}

/// Every preset a rule's `preset` may name: its description and the effect it gives the rule.
#[utoipa::path(
    get,
    path = "/_larkstack/faults/presets",
    tag = "control",
    summary = "Fault presets: name, description and the effect a rule made from each gets",
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub(crate) async fn list_fault_presets() -> ApiResult {
    Ok(ok(&json!({ "items": faults::presets() })))
}

#[utoipa::path(
    post,
    path = "/_larkstack/faults",
    tag = "control",
    summary = "Add a fault rule",
    request_body(content = faults::FaultSpec, content_type = "application/json"),
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub(crate) async fn add_fault(State(state): State<Arc<AppState>>, RawBody(body): RawBody) -> ApiResult {
    let spec: faults::FaultSpec = json_body(&body)?;
    let rule = state.faults.add(spec).map_err(|e| control_error(ControlErr::BadRequest, e))?;
    Ok(ok(&rule))
}

#[utoipa::path(
    delete,
    path = "/_larkstack/faults/{id}",
    tag = "control",
    summary = "Remove a fault rule",
    params(("id" = String, Path, description = "The rule's id")),
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub(crate) async fn remove_fault(State(state): State<Arc<AppState>>, PathParam(id): PathParam) -> ApiResult {
    let id: u64 = id.parse().map_err(|_| control_error(ControlErr::NotFound, "no such fault"))?;
    if !state.faults.remove(id) {
        return Err(control_error(ControlErr::NotFound, "no such fault"));
    }
    Ok(ok(&json!({})))
}

#[utoipa::path(
    delete,
    path = "/_larkstack/faults",
    tag = "control",
    summary = "Remove every fault rule",
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub(crate) async fn clear_faults(State(state): State<Arc<AppState>>) -> ApiResult {
    state.faults.clear();
    Ok(ok(&json!({})))
}

fn clock_view(state: &AppState) -> serde_json::Value {
    json!({ "now_ms": state.clock.now_ms(), "frozen": state.clock.is_frozen() })
}

#[utoipa::path(
    get,
    path = "/_larkstack/clock",
    operation_id = "get_clock",
    tag = "control",
    summary = "The larkstack clock",
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub(crate) async fn clock(State(state): State<Arc<AppState>>) -> ApiResult {
    Ok(ok(&clock_view(&state)))
}

/// The latest time the clock may show: 2399-12-31T23:59:59.999Z (the rate limiter counts
/// nanoseconds in a u64, which ends in 2554).
pub const MAX_CLOCK_MS: i64 = 13_569_465_599_999;

/// Clock changes, applied in this order: `freeze`, `set_ms`, `advance_ms` / `advance` ("10h30m").
#[derive(Deserialize, utoipa::ToSchema)]
struct ClockChange {
    freeze: Option<bool>,
    #[schema(minimum = 0, maximum = 13_569_465_599_999_i64)]
    set_ms: Option<i64>,
    advance_ms: Option<i64>,
    advance: Option<String>,
}

#[utoipa::path(
    post,
    path = "/_larkstack/clock",
    tag = "control",
    summary = "Freeze, set or advance the clock",
    request_body(content = ClockChange, content_type = "application/json"),
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub(crate) async fn set_clock(State(state): State<Arc<AppState>>, RawBody(body): RawBody) -> ApiResult {
    let change: ClockChange = json_body(&body)?;
    let advance = match &change.advance {
        Some(text) => Some(parse_duration_ms(text).ok_or_else(|| control_error(ControlErr::BadRequest, format!("{text:?} is not a duration like 90s, 10m, 10h30m, 2d")))?),
        None => None,
    };
    // Times before 1970 or after 2399 (or sums that overflow) are refused before anything changes:
    // the clock's arithmetic (token expiry, windows, log ids) assumes sane milliseconds.
    let by = change.advance_ms.unwrap_or(0).checked_add(advance.unwrap_or(0));
    let target = by.and_then(|by| change.set_ms.unwrap_or_else(|| state.clock.now_ms()).checked_add(by));
    let in_range = |ms: i64| (0..=MAX_CLOCK_MS).contains(&ms);
    if !(target.is_some_and(in_range) && change.set_ms.is_none_or(in_range)) {
        return Err(control_error(ControlErr::BadRequest, format!("the clock must stay between 0 and {MAX_CLOCK_MS} ms (1970 to 2399)")));
    }
    let by = by.unwrap_or(0);
    match change.freeze {
        Some(true) => state.clock.freeze(),
        Some(false) => state.clock.unfreeze(),
        None => {}
    }
    if let Some(ms) = change.set_ms {
        state.clock.set_ms(ms);
    }
    if by != 0 {
        state.clock.advance_ms(by);
    }
    if let Some(redis) = &state.shared {
        redis.publish_clock(&state.clock).await?;
    }
    Ok(ok(&clock_view(&state)))
}

/// `1d2h3m4s500ms`-style durations (a leading `-` goes back in time).
pub fn parse_duration_ms(text: &str) -> Option<i64> {
    let (sign, mut rest) = match text.trim().strip_prefix('-') {
        Some(r) => (-1, r),
        None => (1, text.trim()),
    };
    let mut total: i64 = 0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let ms = match &rest[..unit] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(ms)?)?;
        rest = &rest[unit..];
    }
    Some(sign * total)
}

/// `GET /healthz`: the store answers, and Redis too when the node shares state through it.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "ops",
    summary = "Whether the store (and Redis, with --redis) answers, and the last store write did not fail",
    responses(crate::openapi::FeishuResponses),
)]
pub async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    if let Some(failure) = state.store.last_write_failure() {
        let at = chrono::DateTime::from_timestamp_millis(failure.at_ms).map(|t| t.to_rfc3339()).unwrap_or_default();
        return control_error(ControlErr::Unavailable, format!("store writes failing: the last write failed at {at}: {}", failure.error))
            .into_response();
    }
    if let Err(e) = state.store.ping().await {
        return control_error(ControlErr::Unavailable, format!("store unavailable: {e}")).into_response();
    }
    if let Some(redis) = &state.shared {
        if let Err(e) = redis.ping().await {
            return control_error(ControlErr::Unavailable, format!("redis unavailable: {e}")).into_response();
        }
    }
    ok(&json!({"status": "ok"}))
}

/// `GET /metrics`: Prometheus metrics (see `crate::metrics`).
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "ops",
    summary = "Prometheus metrics (OpenMetrics text)",
    responses(
        (status = 200, description = "OpenMetrics text", body = String, content_type = "application/openmetrics-text"),
        crate::openapi::ErrorResponse,
    ),
)]
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let stats = match state.store.stats().await {
        Ok(stats) => stats,
        Err(e) => return ApiError::Feishu(ControlErr::Unavailable.with_msg(format!("store unavailable: {e}"))).into_response(),
    };
    match state.deliveries.queue(&*state.store).await {
        Ok(queue) => state.metrics.set_delivery_queue(queue.rows.max(0) as usize),
        Err(e) => return ApiError::Feishu(ControlErr::Unavailable.with_msg(format!("store unavailable: {e}"))).into_response(),
    }
    match state.metrics.encode(stats) {
        Ok(text) => {
            let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
            ([(axum::http::header::CONTENT_TYPE, content_type)], text).into_response()
        }
        Err(_) => ApiError::Feishu(ServerErr::Internal.with_msg("metrics encoding failed")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration_ms;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("10h"), Some(36_000_000));
        assert_eq!(parse_duration_ms("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration_ms("2d"), Some(172_800_000));
        assert_eq!(parse_duration_ms("1s500ms"), Some(1_500));
        assert_eq!(parse_duration_ms("-1m"), Some(-60_000));
        assert_eq!(parse_duration_ms("10"), None);
        assert_eq!(parse_duration_ms("h"), None);
        assert_eq!(parse_duration_ms(""), None);
    }
}
