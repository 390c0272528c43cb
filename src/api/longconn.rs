//! Feishu's long connection, outside `/open-apis` (spec events.md §2): the discovery call the
//! SDKs' WebSocket clients make first, and the WebSocket upgrade of the URL it returns. The
//! connection itself is `crate::longconn`'s.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::RawBody;
use crate::domain::directory::AppKind;
use crate::domain::ids::AppId;
use crate::envelope::{error_body, top_level, ApiError};
use crate::error::{FeishuError, LongConnErr, TransportErr};
use crate::longconn::{Refusal, UrlQuery, CLIENT_CONFIG, MAX_INBOUND_BYTES};
use crate::state::AppState;

/// The discovery body: PascalCase, as every SDK sends it (Go without a Content-Type).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct EndpointRequest {
    #[serde(rename = "AppID", default)]
    app_id: Option<String>,
    #[serde(rename = "AppSecret", default)]
    app_secret: Option<String>,
}

/// `data` of a discovery reply, present on errors too (with an empty URL): the Node SDK
/// destructures it and would retry forever on a TypeError.
fn endpoint_data(url: &str) -> Value {
    json!({"URL": url, "ClientConfig": CLIENT_CONFIG})
}

/// HTTP 200 with the code, `msg`, `error.log_id` and the full `data`.
fn endpoint_failure(err: FeishuError) -> Response {
    let mut body = error_body(&err);
    body["data"] = endpoint_data("");
    top_level(&body)
}

/// The WebSocket URL for an app: `ws://` on larkstack's own host as the client reached it (the
/// `Host` header, which the transport already checked against `--public-host`), `wss://` behind a
/// proxy that says `X-Forwarded-Proto: https`.
/// Side effects: none (the ticket is checked by signature, so any node accepts it).
#[utoipa::path(
    post,
    path = "/callback/ws/endpoint",
    operation_id = "ws_endpoint",
    tag = "events",
    summary = "Long-connection discovery: the WebSocket URL and the ClientConfig",
    request_body(content = EndpointRequest, content_type = "application/json"),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn endpoint(State(state): State<Arc<AppState>>, headers: HeaderMap, RawBody(body): RawBody) -> Response {
    let req: EndpointRequest = serde_json::from_slice(if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &body }).unwrap_or_default();
    let (Some(app_id), Some(secret)) = (req.app_id.filter(|s| !s.is_empty()), req.app_secret.filter(|s| !s.is_empty())) else {
        return endpoint_failure(LongConnErr::AppInvalid.with_msg("AppID and AppSecret are required"));
    };
    let dir = state.directory();
    let app_id = AppId(app_id);
    let Some(app) = dir.app(&app_id) else {
        return endpoint_failure(LongConnErr::AppInvalid.err());
    };
    if !crate::secrets::secret_eq(&secret, &app.app_secret) {
        return endpoint_failure(LongConnErr::AppInvalid.with_msg("app secret invalid"));
    }
    if app.kind != AppKind::SelfBuilt {
        return endpoint_failure(LongConnErr::AppInvalid.with_msg("only self-built apps may use the long connection"));
    }
    let host = headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    let https = headers.get("x-forwarded-proto").and_then(|h| h.to_str().ok()).is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let url = state.longconn.url(if https { "wss" } else { "ws" }, host, &app_id, &app.app_secret);
    top_level(&json!({"code": 0, "msg": "ok", "data": endpoint_data(&url)}))
}

/// A refused upgrade: the HTTP status and envelope of the catalogue entry, plus the
/// `Handshake-Status`, `Handshake-Msg` and `Handshake-Autherrcode` headers the SDKs read (a
/// 514 with autherrcode 1000040350 stops the Python and Go clients; others are retried).
fn handshake_refusal(err: FeishuError, handshake_status: u16) -> Response {
    let code = err.code;
    let msg = err.msg.to_string();
    let mut resp = ApiError::Feishu(err).into_response();
    let h = resp.headers_mut();
    h.insert("handshake-status", HeaderValue::from(handshake_status));
    h.insert("handshake-autherrcode", HeaderValue::from(code));
    if let Ok(v) = HeaderValue::from_str(&msg.replace(|c: char| !c.is_ascii() || c.is_ascii_control(), " ")) {
        h.insert("handshake-msg", v);
    }
    resp
}

/// The WebSocket of a discovery URL: binary `pbbp2` frames only; the app's events as
/// `type=event` data frames, pongs with the ClientConfig.
/// Side effects: takes one of the app's 50 connection slots (in Redis too, with `--redis`) until
/// the socket closes; events waiting for the app are then delivered over it.
#[utoipa::path(
    get,
    path = "/ws/v2",
    operation_id = "ws_connect",
    tag = "events",
    summary = "Long-connection WebSocket (the URL discovery returns; upgrade only)",
    params(
        ("fpid" = Option<String>, Query, description = "Ignored (Feishu's URLs start with it)"),
        ("aid" = String, Query, description = "The app (cli_…)"),
        ("device_id" = String, Query, description = "The connection id"),
        ("service_id" = String, Query, description = "int32, echoed in every frame"),
        ("ticket" = String, Query, description = "One-time ticket from discovery"),
    ),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn connect(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    extensions: Extensions,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match upgrade {
        Ok(ws) => ws,
        Err(e) => {
            let err = TransportErr::MalformedRequest.with_msg(format!("this is the long-connection WebSocket; {}", e.body_text()));
            return ApiError::Feishu(err).into_response();
        }
    };
    let q: UrlQuery = match axum::extract::Query::<UrlQuery>::try_from_uri(&uri) {
        Ok(axum::extract::Query(q)) => q,
        Err(_) => UrlQuery { aid: None, device_id: None, service_id: None, ticket: None },
    };
    let refused = |r: Refusal| match r {
        Refusal::AppFull => handshake_refusal(LongConnErr::ConnLimit.err(), 514),
        Refusal::NodeFull => handshake_refusal(LongConnErr::ConnLimit.with_msg("this larkstack node holds its maximum of connections"), 514),
        Refusal::BadTicket(why) => handshake_refusal(LongConnErr::TicketInvalid.with_msg(why), 514),
        Refusal::NotSelfBuilt => handshake_refusal(LongConnErr::AppInvalid.with_msg("only self-built apps may use the long connection"), 403),
        Refusal::Infra(e) => ApiError::Internal(e).into_response(),
    };
    let dir = state.directory();
    let (app_id, conn_id, service_id) = match state.longconn.check_ticket(&dir, &q) {
        Ok(t) => t,
        Err(r) => return refused(r),
    };
    let remote = extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.to_string()).unwrap_or_default();
    let slot = match state.longconn.reserve(&app_id, &conn_id, service_id, remote).await {
        Ok(slot) => slot,
        Err(r) => return refused(r),
    };
    let hub = state.longconn.clone();
    ws.max_message_size(MAX_INBOUND_BYTES).on_upgrade(move |socket| hub.serve(socket, slot))
}
