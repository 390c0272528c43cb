//! Prometheus metrics at `GET /metrics` (OpenMetrics text): requests by endpoint, method and
//! Feishu code, request latency, store commit latency, and chats/members/messages.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::envelope::{FeishuCode, ApiError};
use crate::error::{ControlErr, ServerErr};
use crate::state::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// The route template (`/open-apis/im/v1/chats/{chat_id}`), or `unmatched`.
    endpoint: String,
    method: String,
    code: i64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
}

/// Request latency buckets: 100 µs to ~3 s.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<EndpointLabels, Histogram>,
    chats: Gauge,
    members: Gauge,
    messages: Gauge,
}

impl Metrics {
    /// `commit_seconds`: the store's commit latency, when the backend measures it.
    pub fn new(commit_seconds: Option<Histogram>) -> Self {
        let mut registry = Registry::with_prefix("larkstack");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("requests", "Requests by endpoint, method and Feishu code", requests.clone());
        let latency = Family::<EndpointLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register("request_duration_seconds", "Time to answer, by endpoint", latency.clone());
        if let Some(h) = commit_seconds {
            registry.register("store_commit_duration_seconds", "Time to commit one group of writes durably", h);
        }
        let (chats, members, messages) = (Gauge::default(), Gauge::default(), Gauge::default());
        registry.register("chats", "Chats stored (all tenants, disbanded included)", chats.clone());
        registry.register("members", "User memberships over all chats", members.clone());
        registry.register("messages", "Messages stored", messages.clone());
        Metrics { registry, requests, latency, chats, members, messages }
    }

    pub fn observe(&self, endpoint: &str, method: &str, code: i64, seconds: f64) {
        let labels = RequestLabels { endpoint: endpoint.to_string(), method: method.to_string(), code };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&EndpointLabels { endpoint: labels.endpoint }).observe(seconds);
    }
}

/// Counts and times every routed request (a route layer, so the route template is known).
pub async fn track(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    // MatchedPath is a shared string: cloning it allocates nothing.
    let endpoint = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let resp = next.run(req).await;
    let code = resp.extensions().get::<FeishuCode>().map_or(-1, |c| c.0);
    let endpoint = endpoint.as_ref().map_or("unmatched", MatchedPath::as_str);
    state.metrics.observe(endpoint, method.as_str(), code, started.elapsed().as_secs_f64());
    resp
}

/// `GET /metrics`.
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
pub async fn render(State(state): State<Arc<AppState>>) -> Response {
    match state.store.stats().await {
        Ok(stats) => {
            state.metrics.chats.set(stats.chats as i64);
            state.metrics.members.set(stats.members as i64);
            state.metrics.messages.set(stats.messages as i64);
        }
        Err(e) => return ApiError::Feishu(ControlErr::Unavailable.with_msg(format!("store unavailable: {e}"))).into_response(),
    }
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &state.metrics.registry).is_err() {
        return ApiError::Feishu(ServerErr::Internal.with_msg("metrics encoding failed")).into_response();
    }
    ([(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response()
}
