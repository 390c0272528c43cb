//! Long connections, seen and closed from the server side: `GET /_larkstack/connections`,
//! `DELETE /_larkstack/connections/{conn_id}`, `DELETE /_larkstack/connections?app_id=`. A close
//! is how a harness tests a bot's resilience: the SDKs reconnect (discovery, then a new socket)
//! and the events meanwhile wait for them. With `--redis` each call covers every node: Redis
//! records which node holds a connection, and this node asks that one (`longconn::Hub::*_anywhere`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use serde::Deserialize;
use serde_json::json;

use super::{control_error, query};
use crate::api::extract::PathParam;
use crate::domain::ids::AppId;
use crate::envelope::{ok, ApiResult};
use crate::error::ControlErr;
use crate::longconn::Closed;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
struct AppFilter {
    app_id: Option<String>,
}

/// The live connections of every node (with `--redis`; else this node's), with per-app counts.
/// No side effects: other nodes are asked for their lists (`unanswered`: those that did not
/// answer within 1 s).
#[utoipa::path(
    get,
    path = "/_larkstack/connections",
    operation_id = "list_connections",
    tag = "control",
    summary = "Live long connections (id, app, node, connected_at, remote, delivered, last ping) and counts per app",
    params(("app_id" = Option<String>, Query, description = "Only this app's")),
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub(crate) async fn list(State(state): State<Arc<AppState>>, uri: axum::http::Uri) -> ApiResult {
    let f: AppFilter = query(&uri)?;
    let app = f.app_id.filter(|s| !s.is_empty());
    let (items, unanswered) = state.longconn.list_all().await?;
    let items: Vec<_> = items.into_iter().filter(|c| app.as_ref().is_none_or(|a| c.app_id.0 == *a)).collect();
    let counts: BTreeMap<String, usize> = state
        .longconn
        .counts()
        .await?
        .into_iter()
        .filter(|(a, _)| app.as_ref().is_none_or(|x| a.0 == *x))
        .map(|(a, n)| (a.0, n))
        .collect();
    Ok(ok(&json!({
        "items": items,
        "counts": counts,
        "node": state.longconn.node,
        "cluster_wide_counts": state.shared.is_some(),
        "cluster_wide_items": state.shared.is_some(),
        "unanswered": unanswered,
        "limit_per_app": crate::longconn::MAX_CONNECTIONS_PER_APP,
    })))
}

/// Closes one connection (WebSocket close 1000), whichever node holds it; its client reconnects.
/// Side effects: the holder (this node, or the one Redis names, asked over Redis) closes it.
#[utoipa::path(
    delete,
    path = "/_larkstack/connections/{conn_id}",
    operation_id = "close_connection",
    tag = "control",
    summary = "Close a long connection from the server side (the SDK reconnects)",
    params(("conn_id" = String, Path, description = "The connection's device_id")),
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub(crate) async fn close(State(state): State<Arc<AppState>>, PathParam(conn_id): PathParam) -> ApiResult {
    match state.longconn.close_anywhere(&conn_id).await? {
        Closed::On(node) => Ok(ok(&json!({ "closed": [conn_id], "node": node }))),
        Closed::NotFound => Err(control_error(ControlErr::NotFound, format!("no node holds a connection {conn_id}"))),
        Closed::NoAnswer(node) => {
            Err(control_error(ControlErr::Unavailable, format!("node {node}, which holds {conn_id}, did not answer within 1 s")))
        }
    }
}

/// Closes every connection of an app, on every node (with `--redis`; else on this node).
/// Side effects: each node holding one (asked over Redis) closes its connections of the app.
#[utoipa::path(
    delete,
    path = "/_larkstack/connections",
    operation_id = "close_app_connections",
    tag = "control",
    summary = "Close every long connection of an app (the SDKs reconnect)",
    params(("app_id" = String, Query, description = "The app (cli_…)")),
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub(crate) async fn close_app(State(state): State<Arc<AppState>>, uri: axum::http::Uri) -> ApiResult {
    let f: AppFilter = query(&uri)?;
    let Some(app_id) = f.app_id.filter(|s| !s.is_empty()) else {
        return Err(control_error(ControlErr::BadRequest, "app_id is required"));
    };
    let (per_node, unanswered) = state.longconn.close_app_anywhere(&AppId(app_id.clone())).await?;
    let closed: usize = per_node.iter().map(|(_, n)| n).sum();
    let nodes: BTreeMap<String, usize> = per_node.into_iter().filter(|(_, n)| *n > 0).collect();
    Ok(ok(&json!({ "app_id": app_id, "closed": closed, "nodes": nodes, "unanswered": unanswered })))
}
