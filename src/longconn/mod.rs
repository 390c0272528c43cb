//! Feishu's long connection (spec events.md §2): the SDKs' `lark.ws.Client` / `WSClient` ask
//! `POST /callback/ws/endpoint` for a URL, open a WebSocket there and receive their app's events
//! as `pbbp2` frames, acking each one. This module is the node's connection hub: one-time tickets
//! for the URL, the live connections per app (at most 50 each, cluster-wide through Redis when
//! nodes share one), the per-connection loop (ping → pong with the ClientConfig, acks), and
//! `deliver`, which the delivery engine calls for an event of a long-connection app: it picks one
//! connection of the app (Feishu's cluster mode, no broadcast), sends the event as `type=event`
//! frames (fragmented at 512 KiB) and waits up to 3 s for the ack. With Redis, the hub also
//! reaches the connections other nodes hold (`deliver_anywhere`, `close_anywhere`,
//! `close_app_anywhere`, `list_all`): Redis records which node holds each connection, and the
//! hub asks that node over its channel (`cluster::Redis::ask`, answered by `serve_peers`).
//!
//! Bounds: connections per app (`MAX_CONNECTIONS_PER_APP`) and per node (`MAX_CONNECTIONS`);
//! frames queued per connection (`OUTBOUND_FRAMES`, each at most a 512 KiB fragment, so 16 MiB);
//! a client's frame (`MAX_INBOUND_BYTES`); used tickets remembered (`MAX_USED_TICKETS`, until they
//! expire); acks awaited (one per delivery in flight, which the engine bounds per app).

pub mod frame;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use parking_lot::Mutex;
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot, Notify};

use crate::clock::Clock;
use crate::cluster::{Asked, PeerHandler, Redis};
use crate::domain::directory::{AppKind, Directory};
use crate::domain::ids::AppId;
use crate::envelope::InfraError;
use frame::{Ack, EventMessage, Frame, METHOD_CONTROL, METHOD_DATA};

/// Feishu's platform rule: at most 50 connections per app (spec §2.9).
pub const MAX_CONNECTIONS_PER_APP: usize = 50;
/// Connections one node holds, all apps together.
pub const MAX_CONNECTIONS: usize = 10_000;
/// An event is acked within this, else the attempt failed (spec §2.7).
pub const ACK_TIMEOUT: Duration = Duration::from_secs(3);
/// Encoded frames queued per connection before `deliver` waits (each ≤ one 512 KiB fragment).
pub const OUTBOUND_FRAMES: usize = 32;
/// The largest WebSocket message a client may send (acks and pings are small; a card callback's
/// answer rides in an ack).
pub const MAX_INBOUND_BYTES: usize = 1 << 20;
/// A discovery URL's ticket is good for one connection within this (larkstack clock).
pub const TICKET_TTL_MS: i64 = 300_000;
/// Used tickets remembered (until they expire) so none opens a second connection.
pub const MAX_USED_TICKETS: usize = 100_000;
/// How long a node's claim on a connection slot lives in Redis without a refresh (real time: it
/// is about the node being alive, not about larkstack's clock, which tests freeze and move).
const SLOT_LEASE: Duration = Duration::from_secs(30);
const SLOT_REFRESH: Duration = Duration::from_secs(10);
/// How long a node waits for another to list or close its connections.
const PEER_TIMEOUT: Duration = Duration::from_secs(1);
/// Of the ack's 3 s, what a node asking another to deliver keeps for the answer's way back.
const PEER_MARGIN: Duration = Duration::from_millis(100);

/// What the discovery reply and every pong carry (spec §2.1, §2.5): always all four keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ClientConfig {
    /// Reconnect attempts after a drop; −1 forever.
    pub reconnect_count: i64,
    /// Seconds between reconnect attempts.
    pub reconnect_interval: u64,
    /// Upper bound (s) of the random wait before the first reconnect.
    pub reconnect_nonce: u64,
    /// Seconds between the client's pings.
    pub ping_interval: u64,
}

/// larkstack's values (docs/parity.md): Feishu's ping interval and endless retries, but a quick
/// reconnect (Feishu: 120 s apart, up to 30 s jitter), since a test harness closes connections on
/// purpose and waits for the client to come back.
pub const CLIENT_CONFIG: ClientConfig = ClientConfig { reconnect_count: -1, reconnect_interval: 2, reconnect_nonce: 1, ping_interval: 120 };

/// Why an upgrade is refused (the handler turns it into the handshake headers).
#[derive(Debug)]
pub enum Refusal {
    /// The ticket is missing, forged, expired or used.
    BadTicket(&'static str),
    /// The app has no long connection (a store app, or gone from the directory).
    NotSelfBuilt,
    /// 50 connections already (cluster-wide with Redis).
    AppFull,
    /// This node holds `MAX_CONNECTIONS`.
    NodeFull,
    Infra(InfraError),
}

/// One live connection, as `GET /_larkstack/connections` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConnInfo {
    /// The connection's `device_id` (the "conn_id" in the SDKs' logs).
    pub conn_id: String,
    #[schema(value_type = String)]
    pub app_id: AppId,
    /// The node holding it.
    pub node: String,
    pub connected_at_ms: i64,
    /// The client's address.
    pub remote: String,
    /// Events it acked with code 200.
    pub delivered: u64,
    /// When its last ping came (larkstack clock), if one did.
    pub last_ping_ms: Option<i64>,
}

struct Conn {
    id: String,
    app_id: AppId,
    service_id: i32,
    connected_at_ms: i64,
    remote: String,
    delivered: AtomicU64,
    last_ping_ms: AtomicI64,
    out: mpsc::Sender<Vec<u8>>,
    close: Notify,
}

/// What became of one `deliver`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Outcome {
    /// The app has no connection on this node (or it closed before the event went out): the
    /// event waits (not a failed attempt).
    NoConnection,
    /// Sent on `conn_id`; acked with `ack` (code 200: delivered), or not acked in time (`None`).
    Sent { conn_id: String, ack: Option<Ack>, latency_ms: u64, why: Option<String> },
}

impl Outcome {
    pub fn delivered(&self) -> bool {
        matches!(self, Outcome::Sent { ack: Some(Ack { code: Some(200), .. }), .. })
    }
}

/// What one node asks another about the connections it holds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum PeerAsk {
    /// `deliver` there, waiting at most `within_ms` for the ack.
    Deliver { app_id: AppId, payload: Value, within_ms: u64 },
    Close { conn_id: String },
    CloseApp { app_id: AppId },
    List,
}

/// What became of `close_anywhere`.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    /// Closed by the node named (this one, or the holder that answered).
    On(String),
    /// No live node holds it.
    NotFound,
    /// The node holding it did not answer in time.
    NoAnswer(String),
}

fn no_ack_within() -> String {
    format!("no ack within {} ms", ACK_TIMEOUT.as_millis())
}

/// The node's long connections.
pub struct Hub {
    /// This node's name in listings.
    pub node: String,
    clock: Arc<Clock>,
    redis: Option<Arc<Redis>>,
    conns: Mutex<HashMap<String, Arc<Conn>>>,
    /// Acks awaited, by the event message's `message_id`.
    waiting: Mutex<HashMap<String, oneshot::Sender<Ack>>>,
    /// Used tickets and when they expire.
    used_tickets: Mutex<HashMap<String, i64>>,
    next_seq_id: AtomicU64,
    /// Called when a connection opens (the delivery engine: events waiting for it go now).
    on_connect: Mutex<Option<Arc<dyn Fn() + Send + Sync>>>,
    /// Whether `serve_peers` started.
    serving_peers: AtomicBool,
}

/// A connection slot, held from the handshake until the connection ends (dropping it frees it).
pub struct Slot {
    hub: Arc<Hub>,
    conn: Arc<Conn>,
    out: Option<mpsc::Receiver<Vec<u8>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.hub.conns.lock().remove(&self.conn.id);
        if let Some(redis) = self.hub.redis.clone() {
            let (app, id) = (self.conn.app_id.0.clone(), self.conn.id.clone());
            tokio::spawn(async move { redis.ws_release(&app, &id).await });
        }
    }
}

/// The query of a discovery URL, as the upgrade reads it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct UrlQuery {
    pub aid: Option<String>,
    pub device_id: Option<String>,
    pub service_id: Option<String>,
    pub ticket: Option<String>,
}

fn random_digits(n: usize) -> String {
    let mut rng = rand::rng();
    let first = rng.random_range(1..=9u8);
    std::iter::once(char::from(b'0' + first)).chain((1..n).map(|_| char::from(b'0' + rng.random_range(0..=9u8)))).collect()
}

fn ticket_mac(app_id: &str, secret: &str, device_id: &str, service_id: i32, expires_ms: i64, nonce: &str) -> String {
    let text = format!("larkstack-ws-ticket|{app_id}|{secret}|{device_id}|{service_id}|{expires_ms}|{nonce}");
    hex::encode(&Sha256::digest(text.as_bytes())[..16])
}

impl Hub {
    pub fn new(clock: Arc<Clock>, redis: Option<Arc<Redis>>) -> Self {
        Hub {
            // With Redis, the name the other nodes know this one by.
            node: redis.as_ref().map_or_else(|| crate::secrets::random_hex()[..12].to_string(), |r| r.node().to_string()),
            clock,
            redis,
            conns: Mutex::default(),
            waiting: Mutex::default(),
            used_tickets: Mutex::default(),
            next_seq_id: AtomicU64::new(1),
            on_connect: Mutex::default(),
            serving_peers: AtomicBool::new(false),
        }
    }

    /// Sets what runs whenever a connection opens.
    pub fn on_connect(&self, f: Arc<dyn Fn() + Send + Sync>) {
        *self.on_connect.lock() = Some(f);
    }

    /// The WebSocket URL for `app_id` (which must hold `secret`): `device_id` and an int32
    /// `service_id`, never first in the query (the Node SDK's `qs` spoils the first key), and a
    /// one-time ticket that any node of the cluster can check against the app's secret.
    pub fn url(&self, scheme: &str, host: &str, app_id: &AppId, secret: &str) -> String {
        let device_id = random_digits(19);
        let service_id: i32 = rand::rng().random_range(1..=i32::MAX);
        let expires_ms = self.clock.now_ms() + TICKET_TTL_MS;
        let nonce = crate::secrets::random_hex();
        let mac = ticket_mac(&app_id.0, secret, &device_id, service_id, expires_ms, &nonce);
        format!(
            "{scheme}://{host}/ws/v2?fpid=493&aid={app}&device_id={device_id}&service_id={service_id}&ticket={expires_ms}.{nonce}.{mac}",
            app = app_id.0
        )
    }

    /// Checks a URL's ticket (and uses it up): the app, its `device_id` and `service_id`.
    pub fn check_ticket(&self, dir: &Directory, q: &UrlQuery) -> Result<(AppId, String, i32), Refusal> {
        let (Some(aid), Some(device_id), Some(service), Some(ticket)) = (&q.aid, &q.device_id, &q.service_id, &q.ticket) else {
            return Err(Refusal::BadTicket("the URL lacks aid, device_id, service_id or ticket: ask /callback/ws/endpoint for one"));
        };
        let service_id: i32 = service.parse().map_err(|_| Refusal::BadTicket("service_id is not an int32"))?;
        let app_id = AppId(aid.clone());
        let app = dir.app(&app_id).ok_or(Refusal::NotSelfBuilt)?;
        if app.kind != AppKind::SelfBuilt {
            return Err(Refusal::NotSelfBuilt);
        }
        let mut parts = ticket.splitn(3, '.');
        let (Some(exp), Some(nonce), Some(mac)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(Refusal::BadTicket("the ticket is not one larkstack issued"));
        };
        let expires_ms: i64 = exp.parse().map_err(|_| Refusal::BadTicket("the ticket is not one larkstack issued"))?;
        let want = ticket_mac(&app_id.0, &app.app_secret, device_id, service_id, expires_ms, nonce);
        if !crate::secrets::secret_eq(mac, &want) {
            return Err(Refusal::BadTicket("the ticket is not one larkstack issued for this app"));
        }
        let now = self.clock.now_ms();
        if expires_ms < now {
            return Err(Refusal::BadTicket("the ticket expired: ask /callback/ws/endpoint for a new URL"));
        }
        let mut used = self.used_tickets.lock();
        if used.len() >= MAX_USED_TICKETS {
            used.retain(|_, exp| *exp >= now);
        }
        if used.len() >= MAX_USED_TICKETS || used.insert(ticket.clone(), expires_ms).is_some() {
            return Err(Refusal::BadTicket("the ticket was used already: every connection asks /callback/ws/endpoint first"));
        }
        Ok((app_id, device_id.clone(), service_id))
    }

    /// Takes a connection slot for `app_id`, or says why not.
    pub async fn reserve(self: &Arc<Self>, app_id: &AppId, conn_id: &str, service_id: i32, remote: String) -> Result<Slot, Refusal> {
        {
            let conns = self.conns.lock();
            if conns.len() >= MAX_CONNECTIONS {
                return Err(Refusal::NodeFull);
            }
            if conns.values().filter(|c| c.app_id == *app_id).count() >= MAX_CONNECTIONS_PER_APP {
                return Err(Refusal::AppFull);
            }
        }
        if let Some(redis) = &self.redis {
            let taken = redis.ws_claim(&app_id.0, conn_id, MAX_CONNECTIONS_PER_APP, SLOT_LEASE).await.map_err(Refusal::Infra)?;
            if !taken {
                return Err(Refusal::AppFull);
            }
        }
        let (tx, rx) = mpsc::channel(OUTBOUND_FRAMES);
        let conn = Arc::new(Conn {
            id: conn_id.to_string(),
            app_id: app_id.clone(),
            service_id,
            connected_at_ms: self.clock.now_ms(),
            remote,
            delivered: AtomicU64::new(0),
            last_ping_ms: AtomicI64::new(i64::MIN),
            out: tx,
            close: Notify::new(),
        });
        let slot = Slot { hub: self.clone(), conn: conn.clone(), out: Some(rx) };
        let mut conns = self.conns.lock();
        // Re-checked under the lock: two handshakes of one app may have raced past the first look.
        if conns.values().filter(|c| c.app_id == *app_id).count() >= MAX_CONNECTIONS_PER_APP || conns.len() >= MAX_CONNECTIONS {
            drop(conns);
            return Err(Refusal::AppFull);
        }
        conns.insert(conn.id.clone(), conn);
        Ok(slot)
    }

    /// Serves one upgraded connection until it closes (either side), then frees its slot.
    pub async fn serve(self: Arc<Self>, mut socket: WebSocket, mut slot: Slot) {
        let conn = slot.conn.clone();
        let mut out = slot.out.take().expect("a slot is served once");
        if let Some(f) = self.on_connect.lock().clone() {
            f();
        }
        let mut refresh = tokio::time::interval_at(tokio::time::Instant::now() + SLOT_REFRESH, SLOT_REFRESH);
        loop {
            tokio::select! {
                _ = conn.close.notified() => {
                    let frame = CloseFrame { code: 1000, reason: "closed by larkstack (control API)".into() };
                    let _ = socket.send(Message::Close(Some(frame))).await;
                    break;
                }
                Some(bytes) = out.recv() => {
                    if socket.send(Message::Binary(bytes.into())).await.is_err() {
                        break;
                    }
                }
                msg = socket.recv() => match msg {
                    Some(Ok(Message::Binary(bytes))) => {
                        if let Some(reply) = self.on_frame(&conn, &bytes) {
                            if socket.send(Message::Binary(reply.into())).await.is_err() {
                                break;
                            }
                        }
                    }
                    // Text frames are not the protocol; WebSocket pings are answered by the library.
                    Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                },
                _ = refresh.tick() => {
                    if let Some(redis) = &self.redis {
                        if let Err(e) = redis.ws_claim(&conn.app_id.0, &conn.id, usize::MAX, SLOT_LEASE).await {
                            tracing::warn!(error = %e, "refreshing a long-connection slot in Redis failed");
                        }
                    }
                }
            }
        }
        drop(slot);
    }

    /// Handles a client frame; `Some` is the reply to send (a pong).
    fn on_frame(&self, conn: &Conn, bytes: &[u8]) -> Option<Vec<u8>> {
        let frame = match Frame::decode_bytes(bytes) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(conn = %conn.id, error = %e, "undecodable frame from a long-connection client");
                return None;
            }
        };
        match (frame.method, frame.header("type")) {
            (METHOD_CONTROL, Some("ping")) => {
                conn.last_ping_ms.store(self.clock.now_ms(), Ordering::Relaxed);
                Some(frame::pong(frame.service, &json!(CLIENT_CONFIG)).encode())
            }
            (METHOD_DATA, _) => {
                // The ack of an event: one per logical message, matched by message_id (a
                // fragmented event is acked once, on whichever fragment completed it).
                let message_id = frame.header("message_id")?;
                let waiter = self.waiting.lock().remove(message_id);
                if let Some(tx) = waiter {
                    let _ = tx.send(frame::read_ack(&frame));
                }
                None
            }
            _ => None,
        }
    }

    /// Sends one event to one connection of the app (picked at random) and waits for its ack.
    pub async fn deliver(&self, app_id: &AppId, payload: &str) -> Outcome {
        self.deliver_within(app_id, payload, ACK_TIMEOUT).await
    }

    /// `deliver`, waiting at most `within` for the ack (a timeout still reads as the 3 s one).
    async fn deliver_within(&self, app_id: &AppId, payload: &str, within: Duration) -> Outcome {
        let conn = {
            let conns = self.conns.lock();
            let mine: Vec<&Arc<Conn>> = conns.values().filter(|c| c.app_id == *app_id).collect();
            if mine.is_empty() {
                return Outcome::NoConnection;
            }
            mine[rand::rng().random_range(0..mine.len())].clone()
        };
        let start = Instant::now();
        let message_id = crate::secrets::random_hex();
        let trace_id = crate::secrets::random_hex();
        let bytes = payload.as_bytes();
        let fragments = bytes.len().div_ceil(frame::FRAGMENT_BYTES).max(1) as u64;
        let message = EventMessage {
            message_id: &message_id,
            trace_id: &trace_id,
            service: conn.service_id,
            timestamp_ms: self.clock.now_ms(),
            first_seq_id: self.next_seq_id.fetch_add(fragments, Ordering::Relaxed),
            log_id: self.next_seq_id.load(Ordering::Relaxed),
        };
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().insert(message_id.clone(), tx);
        let exchange = async {
            for f in frame::event_frames(&message, bytes) {
                conn.out.send(f.encode()).await.map_err(|_| None)?;
            }
            rx.await.map_err(|_| Some("the connection closed before the ack".to_string()))
        };
        let result = tokio::time::timeout(within, exchange).await;
        self.waiting.lock().remove(&message_id);
        if let Ok(Err(None)) = result {
            // The connection closed before the event went out: not an attempt, it waits.
            return Outcome::NoConnection;
        }
        let latency_ms = start.elapsed().as_millis() as u64;
        let (ack, why) = match result {
            Ok(Ok(ack)) => (Some(ack), None),
            Ok(Err(why)) => (None, why),
            Err(_) => (None, Some(no_ack_within())),
        };
        let outcome = Outcome::Sent { conn_id: conn.id.clone(), ack, latency_ms, why };
        if outcome.delivered() {
            conn.delivered.fetch_add(1, Ordering::Relaxed);
        }
        outcome
    }

    /// Apps with at least one connection on this node.
    pub fn apps_with_connections(&self) -> HashSet<AppId> {
        self.conns.lock().values().map(|c| c.app_id.clone()).collect()
    }

    pub fn has_connection(&self, app_id: &AppId) -> bool {
        self.conns.lock().values().any(|c| c.app_id == *app_id)
    }

    /// This node's connections, oldest first.
    pub fn list(&self) -> Vec<ConnInfo> {
        let mut v: Vec<ConnInfo> = self
            .conns
            .lock()
            .values()
            .map(|c| {
                let ping = c.last_ping_ms.load(Ordering::Relaxed);
                ConnInfo {
                    conn_id: c.id.clone(),
                    app_id: c.app_id.clone(),
                    node: self.node.clone(),
                    connected_at_ms: c.connected_at_ms,
                    remote: c.remote.clone(),
                    delivered: c.delivered.load(Ordering::Relaxed),
                    last_ping_ms: (ping != i64::MIN).then_some(ping),
                }
            })
            .collect();
        v.sort_by(|a, b| (a.connected_at_ms, &a.conn_id).cmp(&(b.connected_at_ms, &b.conn_id)));
        v
    }

    /// Connections per app across the cluster (Redis), or on this node without Redis.
    pub async fn counts(&self) -> Result<HashMap<AppId, usize>, InfraError> {
        let mut counts: HashMap<AppId, usize> = HashMap::new();
        match &self.redis {
            Some(redis) => {
                for (app, n) in redis.ws_counts().await? {
                    counts.insert(AppId(app), n);
                }
            }
            None => {
                for c in self.conns.lock().values() {
                    *counts.entry(c.app_id.clone()).or_default() += 1;
                }
            }
        }
        Ok(counts)
    }

    /// Closes a connection from the server side; `false` if this node has no such connection.
    pub fn close(&self, conn_id: &str) -> bool {
        self.conns.lock().get(conn_id).map(|c| c.close.notify_one()).is_some()
    }

    /// Closes every connection of the app on this node; how many.
    pub fn close_app(&self, app_id: &AppId) -> usize {
        let conns = self.conns.lock();
        let mine: Vec<_> = conns.values().filter(|c| c.app_id == *app_id).collect();
        mine.iter().for_each(|c| c.close.notify_one());
        mine.len()
    }

    /// Lets the other nodes reach this node's connections (with Redis; once): they ask it to
    /// deliver a card callback, close, or list, on its channel.
    pub fn serve_peers(self: &Arc<Self>) {
        let Some(redis) = self.redis.clone() else { return };
        if self.serving_peers.swap(true, Ordering::SeqCst) {
            return;
        }
        let hub = Arc::downgrade(self);
        let handler: PeerHandler = Arc::new(move |body| {
            let hub = hub.clone();
            Box::pin(async move {
                match hub.upgrade() {
                    Some(hub) => hub.answer_peer(body).await,
                    None => Value::Null,
                }
            })
        });
        tokio::spawn(async move {
            if let Err(e) = redis.serve_peers(handler).await {
                tracing::error!(error = %e, "subscribing to this node's channel failed; other nodes cannot reach its long connections");
            }
        });
    }

    async fn answer_peer(&self, body: Value) -> Value {
        match serde_json::from_value::<PeerAsk>(body) {
            Ok(PeerAsk::Deliver { app_id, payload, within_ms }) => {
                json!(self.deliver_within(&app_id, &payload.to_string(), Duration::from_millis(within_ms)).await)
            }
            Ok(PeerAsk::Close { conn_id }) => json!(self.close(&conn_id)),
            Ok(PeerAsk::CloseApp { app_id }) => json!(self.close_app(&app_id)),
            Ok(PeerAsk::List) => json!(self.list()),
            Err(_) => Value::Null,
        }
    }

    /// The nodes other than this one that hold a connection (of `app_id`, or of any app).
    async fn other_nodes(&self, redis: &Redis, app_id: Option<&AppId>) -> Result<BTreeSet<String>, InfraError> {
        let held = redis.ws_holders(app_id.map(|a| a.0.as_str())).await?;
        Ok(held.into_iter().map(|h| h.node).filter(|n| *n != self.node).collect())
    }

    /// Asks each of `nodes` at once; their answers (`None`: gone or silent).
    async fn ask_each(redis: &Arc<Redis>, nodes: BTreeSet<String>, ask: PeerAsk) -> Result<Vec<(String, Option<Value>)>, InfraError> {
        let body = json!(ask);
        let mut asks = tokio::task::JoinSet::new();
        for node in nodes {
            let (redis, body) = (redis.clone(), body.clone());
            asks.spawn(async move {
                let asked = redis.ask(&node, body, PEER_TIMEOUT).await;
                (node, asked)
            });
        }
        let mut out = Vec::new();
        while let Some(joined) = asks.join_next().await {
            let (node, asked) = joined.expect("an ask does not panic");
            out.push((node, match asked? {
                Asked::Answer(v) => Some(v),
                Asked::NoNode | Asked::NoAnswer => None,
            }));
        }
        Ok(out)
    }

    /// `deliver` on a node holding one of the app's connections: this one if it does, else (with
    /// Redis) another, asked on its channel, within the same 3 s. A node that is gone, or whose
    /// connection closed meanwhile, is as no connection; one that does not answer, as no ack.
    pub async fn deliver_anywhere(&self, app_id: &AppId, payload: &Value) -> Result<Outcome, InfraError> {
        let start = Instant::now();
        let here = self.deliver(app_id, &payload.to_string()).await;
        let (Outcome::NoConnection, Some(redis)) = (&here, &self.redis) else {
            return Ok(here);
        };
        let mut held: Vec<_> = redis.ws_holders(Some(&app_id.0)).await?.into_iter().filter(|h| h.node != self.node).collect();
        held.shuffle(&mut rand::rng());
        let mut asked = HashSet::new();
        for h in held {
            if !asked.insert(h.node.clone()) {
                continue;
            }
            let left = ACK_TIMEOUT.saturating_sub(start.elapsed());
            let within_ms = left.saturating_sub(PEER_MARGIN).as_millis() as u64;
            let ask = PeerAsk::Deliver { app_id: app_id.clone(), payload: payload.clone(), within_ms };
            match redis.ask(&h.node, json!(ask), left).await? {
                Asked::Answer(v) => match serde_json::from_value::<Outcome>(v) {
                    Ok(Outcome::NoConnection) | Err(_) => continue,
                    Ok(sent) => return Ok(sent),
                },
                Asked::NoNode => continue,
                Asked::NoAnswer => {
                    let latency_ms = start.elapsed().as_millis() as u64;
                    return Ok(Outcome::Sent { conn_id: h.conn_id, ack: None, latency_ms, why: Some(no_ack_within()) });
                }
            }
        }
        Ok(Outcome::NoConnection)
    }

    /// Closes a connection whichever node holds it (with Redis; else on this node).
    pub async fn close_anywhere(&self, conn_id: &str) -> Result<Closed, InfraError> {
        if self.close(conn_id) {
            return Ok(Closed::On(self.node.clone()));
        }
        let Some(redis) = &self.redis else { return Ok(Closed::NotFound) };
        let held = redis.ws_holders(None).await?;
        let Some(h) = held.into_iter().find(|h| h.conn_id == conn_id && h.node != self.node) else {
            return Ok(Closed::NotFound);
        };
        Ok(match redis.ask(&h.node, json!(PeerAsk::Close { conn_id: conn_id.to_string() }), PEER_TIMEOUT).await? {
            Asked::Answer(Value::Bool(true)) => Closed::On(h.node),
            Asked::Answer(_) | Asked::NoNode => Closed::NotFound,
            Asked::NoAnswer => Closed::NoAnswer(h.node),
        })
    }

    /// Closes every connection of the app on every node (with Redis; else on this node): how many
    /// per node that answered, and the nodes that did not.
    pub async fn close_app_anywhere(&self, app_id: &AppId) -> Result<(Vec<(String, usize)>, Vec<String>), InfraError> {
        let mut closed = vec![(self.node.clone(), self.close_app(app_id))];
        let mut silent = Vec::new();
        if let Some(redis) = &self.redis {
            let nodes = self.other_nodes(redis, Some(app_id)).await?;
            for (node, answer) in Self::ask_each(redis, nodes, PeerAsk::CloseApp { app_id: app_id.clone() }).await? {
                match answer.and_then(|v| v.as_u64()) {
                    Some(n) => closed.push((node, n as usize)),
                    None => silent.push(node),
                }
            }
        }
        Ok((closed, silent))
    }

    /// Every node's connections (with Redis; else this node's), oldest first, and the nodes
    /// that did not answer.
    pub async fn list_all(&self) -> Result<(Vec<ConnInfo>, Vec<String>), InfraError> {
        let mut items = self.list();
        let mut silent = Vec::new();
        if let Some(redis) = &self.redis {
            let nodes = self.other_nodes(redis, None).await?;
            for (node, answer) in Self::ask_each(redis, nodes, PeerAsk::List).await? {
                match answer.and_then(|v| serde_json::from_value::<Vec<ConnInfo>>(v).ok()) {
                    Some(theirs) => items.extend(theirs),
                    None => silent.push(node),
                }
            }
        }
        items.sort_by(|a, b| (a.connected_at_ms, &a.conn_id).cmp(&(b.connected_at_ms, &b.conn_id)));
        Ok((items, silent))
    }
}
