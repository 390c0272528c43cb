//! Prometheus metrics at `GET /metrics` (OpenMetrics text): requests by endpoint, method and
//! Feishu code, request latency, store commit latency, and chats/members/messages.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::envelope::FeishuCode;
use crate::store::StoreStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// The route template (`/open-apis/im/v1/chats/{chat_id}`), or `unmatched`.
    endpoint: String,
    method: String,
    code: i64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    event_type: String,
    /// `delivered`, `retry` (failed, another attempt due) or `given_up`.
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    /// `fanned_out`: commit → its delivery row committed; `sent`: commit → the attempt starts;
    /// `acked`: the attempt (request to 2xx, frame to ack); `recorded`: the outcome's commit.
    stage: String,
}

/// Where an event's delivery spends its time, stage by stage (`event_delivery_stage_seconds`).
#[derive(Clone, Copy, Debug)]
pub enum DeliveryStage {
    FannedOut,
    Sent,
    Acked,
    Recorded,
}

impl DeliveryStage {
    const ALL: [DeliveryStage; 4] = [DeliveryStage::FannedOut, DeliveryStage::Sent, DeliveryStage::Acked, DeliveryStage::Recorded];

    fn label(self) -> &'static str {
        match self {
            DeliveryStage::FannedOut => "fanned_out",
            DeliveryStage::Sent => "sent",
            DeliveryStage::Acked => "acked",
            DeliveryStage::Recorded => "recorded",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
}

pub use crate::store::latency_histogram;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<EndpointLabels, Histogram>,
    chats: Gauge,
    members: Gauge,
    messages: Gauge,
    deliveries: Family<DeliveryLabels, Counter>,
    delivery_latency: Histogram,
    /// One histogram per `DeliveryStage`, in its order.
    delivery_stages: [Histogram; 4],
    delivery_queue: Gauge,
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
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register("event_deliveries", "Webhook delivery attempts by event type and outcome", deliveries.clone());
        let delivery_latency = latency_histogram();
        registry.register("event_delivery_latency_seconds", "Time from an event's commit to its receiver's 2xx", delivery_latency.clone());
        let stages = Family::<StageLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "event_delivery_stage_seconds",
            "Delivery stages: commit to fan-out commit (fanned_out), commit to the attempt's start (sent), the attempt (acked), recording its outcome (recorded)",
            stages.clone(),
        );
        let delivery_stages = DeliveryStage::ALL.map(|s| stages.get_or_create(&StageLabels { stage: s.label().into() }).clone());
        let delivery_queue = Gauge::default();
        registry.register("event_delivery_queue", "Deliveries not yet delivered or given up (all nodes on the store)", delivery_queue.clone());
        Metrics { registry, requests, latency, chats, members, messages, deliveries, delivery_latency, delivery_stages, delivery_queue }
    }

    pub fn observe(&self, endpoint: &str, method: &str, code: i64, seconds: f64) {
        let labels = RequestLabels { endpoint: endpoint.to_string(), method: method.to_string(), code };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&EndpointLabels { endpoint: labels.endpoint }).observe(seconds);
    }

    /// One webhook attempt: `last` when no retry follows; `since_commit_ms` counts when delivered.
    pub fn delivery(&self, event_type: &str, delivered: bool, last: bool, since_commit_ms: i64) {
        let outcome = match (delivered, last) {
            (true, _) => "delivered",
            (false, false) => "retry",
            (false, true) => "given_up",
        };
        self.deliveries.get_or_create(&DeliveryLabels { event_type: event_type.to_string(), outcome: outcome.into() }).inc();
        if delivered {
            self.delivery_latency.observe(since_commit_ms.max(0) as f64 / 1000.0);
        }
    }

    pub fn delivery_stage(&self, stage: DeliveryStage, ms: i64) {
        self.delivery_stages[stage as usize].observe(ms.max(0) as f64 / 1000.0);
    }

    pub fn set_delivery_queue(&self, depth: usize) {
        self.delivery_queue.set(depth as i64);
    }

    /// The OpenMetrics text, with the store's sizes as of `stats`.
    pub fn encode(&self, stats: StoreStats) -> Result<String, std::fmt::Error> {
        self.chats.set(stats.chats as i64);
        self.members.set(stats.members as i64);
        self.messages.set(stats.messages as i64);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Counts and times every routed request (a route layer, so the route template is known).
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    // MatchedPath is a shared string: cloning it allocates nothing.
    let endpoint = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let resp = next.run(req).await;
    let code = resp.extensions().get::<FeishuCode>().map_or(-1, |c| c.0);
    let endpoint = endpoint.as_ref().map_or("unmatched", MatchedPath::as_str);
    metrics.observe(endpoint, method.as_str(), code, started.elapsed().as_secs_f64());
    resp
}
