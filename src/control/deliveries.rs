//! Event subscriptions and webhook deliveries: `GET|PUT /_larkstack/apps/{app_id}/events`,
//! `GET /_larkstack/deliveries`, `POST /_larkstack/events/{event_id}/redeliver`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use serde::Deserialize;
use serde_json::json;

use super::{control_error, json_body, query};
use crate::api::extract::{PathParam, RawBody};
use crate::delivery::{send, wire, DeliveryFault};
use crate::domain::ids::AppId;
use crate::domain::subscriptions::{EventSettings, SettingsPatch};
use crate::envelope::{ok, ApiError, ApiResult};
use crate::error::ControlErr;
use crate::state::AppState;
use crate::store::{AttemptBounds, AttemptFilter};

/// Feishu's console wants the challenge echoed within 1 s.
pub const CHALLENGE_TIMEOUT: Duration = Duration::from_secs(1);

/// The app's settings as the store has them now (a PUT on any node counts).
async fn app_settings(state: &AppState, app_id: &str) -> Result<(AppId, EventSettings), ApiError> {
    let app_id = AppId(app_id.to_string());
    let dir = state.directory();
    state
        .deliveries
        .current_settings(&*state.store, &dir, &app_id)
        .await?
        .map(|s| (app_id.clone(), s))
        .ok_or_else(|| control_error(ControlErr::NotFound, format!("no app {app_id}")))
}

/// The app's event subscription, and where its card callbacks go (`callback_url`).
#[utoipa::path(
    get,
    path = "/_larkstack/apps/{app_id}/events",
    operation_id = "get_app_events",
    tag = "control",
    summary = "An app's event subscription (request URL, keys, types, mode)",
    params(("app_id" = String, Path, description = "The app (cli_…)")),
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub(crate) async fn get_settings(State(state): State<Arc<AppState>>, PathParam(app_id): PathParam) -> ApiResult {
    let (_, settings) = app_settings(&state, &app_id).await?;
    Ok(ok(&settings))
}

/// Changes the subscription; a new URL (`event_url`, or `callback_url` for card callbacks) must
/// answer Feishu's `url_verification` challenge.
#[utoipa::path(
    put,
    path = "/_larkstack/apps/{app_id}/events",
    operation_id = "put_app_events",
    tag = "control",
    summary = "Change an app's event subscription; keys left out stay as they are",
    params(("app_id" = String, Path, description = "The app (cli_…)")),
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub(crate) async fn put_settings(State(state): State<Arc<AppState>>, PathParam(app_id): PathParam, RawBody(body): RawBody) -> ApiResult {
    let patch: SettingsPatch = json_body(&body)?;
    let (app_id, current) = app_settings(&state, &app_id).await?;
    let dir = state.directory();
    let scopes = &dir.app(&app_id).expect("settings exist only for apps").scopes;
    let next = current.apply(&patch, scopes).map_err(|e| control_error(ControlErr::BadRequest, e))?;
    if let (Some(url), true) = (next.webhook_url(), patch.event_url.as_deref().is_some_and(|u| !u.is_empty())) {
        verify_url(&state, url, &next).await.map_err(|why| control_error(ControlErr::BadRequest, format!("event_url refused: {why}")))?;
    }
    // The callback URL is verified the same way (Feishu's "回调配置" sends the same challenge).
    if let Some(url) = patch.callback_url.as_deref().filter(|u| !u.is_empty()) {
        verify_url(&state, url, &next).await.map_err(|why| control_error(ControlErr::BadRequest, format!("callback_url refused: {why}")))?;
    }
    state.deliveries.set_settings(&*state.store, &app_id, next.clone()).await?;
    Ok(ok(&next))
}

/// Sends the `url_verification` challenge as Feishu's console does; `Err` says why it failed.
pub async fn verify_url(state: &AppState, url: &str, settings: &EventSettings) -> Result<(), String> {
    let challenge = wire::new_event_id();
    let sealed = wire::seal(&wire::challenge(&challenge, &settings.verification_token), &settings.encrypt_key, state.clock.now_secs());
    let outcome = send::post(url, &sealed.headers, sealed.body, CHALLENGE_TIMEOUT).await;
    let Some(status) = outcome.status else { return Err(outcome.body) };
    if status != 200 {
        return Err(format!("the challenge was answered with HTTP {status}: {}", outcome.body));
    }
    let echoed: Option<String> = serde_json::from_str::<serde_json::Value>(&outcome.body)
        .ok()
        .and_then(|v| v.get("challenge").and_then(|c| c.as_str()).map(str::to_string));
    if echoed.as_deref() != Some(challenge.as_str()) {
        return Err(format!("the answer does not echo the challenge: {}", outcome.body));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
struct DeliveriesFilter {
    app_id: Option<String>,
    event_id: Option<String>,
    #[serde(rename = "type")]
    type_name: Option<String>,
    chat_id: Option<String>,
    limit: Option<usize>,
}

/// Every webhook attempt, newest last.
#[utoipa::path(
    get,
    path = "/_larkstack/deliveries",
    operation_id = "list_deliveries",
    tag = "control",
    summary = "Webhook delivery attempts (event_id, type, app, URL, HTTP status, latency, response, next retry)",
    params(
        ("app_id" = Option<String>, Query, description = "Attempts to this app"),
        ("event_id" = Option<String>, Query, description = "Attempts of this event"),
        ("type" = Option<String>, Query, description = "Attempts of this event type"),
        ("chat_id" = Option<String>, Query, description = "Attempts of this chat's events"),
        ("limit" = Option<u64>, Query, description = "The last this many (default 1000)"),
    ),
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub(crate) async fn list(State(state): State<Arc<AppState>>, uri: axum::http::Uri) -> ApiResult {
    let f: DeliveriesFilter = query(&uri)?;
    let some = |o: Option<String>| o.filter(|s| !s.is_empty());
    let filter = AttemptFilter {
        app_id: some(f.app_id),
        event_id: some(f.event_id),
        type_name: some(f.type_name),
        chat_id: some(f.chat_id),
        // At most what the store keeps.
        limit: f.limit.unwrap_or(1000).clamp(1, AttemptBounds::DEFAULT.entries as usize),
    };
    let items = state.store.delivery_attempts(filter).await?;
    let queue = state.deliveries.queue(&*state.store).await?;
    Ok(ok(&json!({ "items": items, "queue_depth": queue.rows, "fanned_out_seq": queue.cursor })))
}

/// Sends an event again now, with the same `event_id`.
#[utoipa::path(
    post,
    path = "/_larkstack/events/{event_id}/redeliver",
    operation_id = "redeliver_event",
    tag = "control",
    summary = "Deliver an event again (same event_id)",
    params(("event_id" = String, Path, description = "The delivery's event_id (32 hex)")),
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub(crate) async fn redeliver(State(state): State<Arc<AppState>>, PathParam(event_id): PathParam) -> ApiResult {
    if !state.deliveries.redeliver(&*state.store, &event_id, state.clock.now_ms()).await? {
        return Err(control_error(ControlErr::NotFound, format!("no delivery with event_id {event_id}")));
    }
    Ok(ok(&json!({ "event_id": event_id })))
}

/// A delivery fault rule for one app: `app_id` and the fields of `DeliveryFault`. Spelled out
/// rather than flattened: serde refuses unknown fields only without `flatten`, and the OpenAPI
/// document would otherwise join two closed objects that no body satisfies.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveryFaultSpec {
    app_id: String,
    /// The next this many attempts fail without reaching the receiver (retried as usual).
    #[serde(default)]
    fail_next: u32,
    /// Every attempt waits this long before it is sent (at most 60000).
    #[serde(default)]
    delay_ms: u64,
    /// The next this many deliveries are sent twice, as Feishu may (bots must de-duplicate).
    #[serde(default)]
    deliver_twice: u32,
}

fn faults_json(state: &AppState) -> serde_json::Value {
    let items: Vec<_> = state
        .deliveries
        .faults()
        .into_iter()
        .map(|(app_id, f)| json!({"app_id": app_id, "fail_next": f.fail_next, "delay_ms": f.delay_ms, "deliver_twice": f.deliver_twice}))
        .collect();
    json!({ "items": items })
}

/// The delivery faults, one rule per app.
#[utoipa::path(
    get,
    path = "/_larkstack/faults/deliveries",
    operation_id = "list_delivery_faults",
    tag = "control",
    summary = "Webhook delivery faults by app",
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub(crate) async fn list_faults(State(state): State<Arc<AppState>>) -> ApiResult {
    Ok(ok(&faults_json(&state)))
}

/// Sets an app's delivery faults: fail the next N attempts, delay each, deliver the next N twice.
#[utoipa::path(
    post,
    path = "/_larkstack/faults/deliveries",
    operation_id = "set_delivery_fault",
    tag = "control",
    summary = "Set an app's webhook delivery faults (fail_next, delay_ms, deliver_twice; all 0 removes)",
    request_body(content = DeliveryFaultSpec, content_type = "application/json"),
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub(crate) async fn set_fault(State(state): State<Arc<AppState>>, RawBody(body): RawBody) -> ApiResult {
    let spec: DeliveryFaultSpec = json_body(&body)?;
    let (app_id, _) = app_settings(&state, &spec.app_id).await?;
    if spec.delay_ms > 60_000 {
        return Err(control_error(ControlErr::BadRequest, "delay_ms is at most 60000"));
    }
    let fault = DeliveryFault { fail_next: spec.fail_next, delay_ms: spec.delay_ms, deliver_twice: spec.deliver_twice };
    state.deliveries.set_fault(&app_id, fault);
    Ok(ok(&faults_json(&state)))
}

/// Removes every delivery fault.
#[utoipa::path(
    delete,
    path = "/_larkstack/faults/deliveries",
    operation_id = "clear_delivery_faults",
    tag = "control",
    summary = "Remove every webhook delivery fault",
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub(crate) async fn clear_faults(State(state): State<Arc<AppState>>) -> ApiResult {
    state.deliveries.clear_faults();
    Ok(ok(&faults_json(&state)))
}
