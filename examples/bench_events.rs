//! Event-latency tools for `scripts/bench.sh events` and `scripts/bench.sh longconn` (issues 13
//! and 15), in Rust so that the load generator and the receivers stay light next to the server on
//! a small machine (the Python helpers they replace competed with it and distorted the tail).
//! Every subcommand runs on one thread.
//!
//! ```text
//! bench_events sink PORT ENCRYPT_KEY [--idle-exit SECS]
//!     A webhook receiver on 127.0.0.1:PORT: answers url_verification, decrypts deliveries
//!     (AES-256-CBC, key = SHA-256 of ENCRYPT_KEY, IV first; "" = plain bodies), answers 200 and
//!     records now − header.create_time per event. On SIGTERM/SIGINT (or after SECS without an
//!     event) prints `events received: N  commit->sink p50 X ms  p99 Y ms  max Z ms`.
//! bench_events post PORT ADMIN_TOKEN RATE SECONDS CHATS USER
//!     Users' messages through the control API (`POST /_larkstack/chats/{chat}/messages` as the
//!     fixture user USER) at RATE/s for SECONDS, message i to chat i mod len(CHATS) (CHATS:
//!     comma-separated, or @FILE with one per line or comma-separated). Message i is due at
//!     start + i/RATE whatever became of the earlier ones (an absolute schedule: no
//!     coordinated-omission drift), over keep-alive connections; prints posted/errors and how far
//!     behind its schedule the poster fell.
//! bench_events ws BASE_URL APPS_FILE [--idle-exit SECS]
//!     One long connection per app of APPS_FILE (lines `app_id app_secret [user_open_id]`),
//!     opened as the SDKs do: `POST BASE_URL/callback/ws/endpoint` with AppID/AppSecret, then the
//!     WebSocket of its URL; a ping at once and every ClientConfig.PingInterval; `type=event` data
//!     frames reassembled by message_id/sum/seq and each logical message acked with the frame
//!     that completed it plus `biz_rt` and `{"code": 200}` (the Python SDK's ack); records
//!     now − header.create_time at ack time. A dropped connection is opened again (discovery
//!     first). Prints `connected: N of M` once every client is up, then on SIGTERM/SIGINT (or
//!     after SECS without an event) `events received: N  commit->ack p50 X ms  p99 Y ms  max Z ms`
//!     with duplicates and reconnects.
//! bench_events chats BASE_URL APPS_FILE NAME
//!     Set-up for `longconn`: per app, a tenant token and one group chat NAME-i created by the
//!     bot with the user of its line; prints the chat ids, comma-separated, in the file's order.
//! ```

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use futures_util::{SinkExt, StreamExt};
use larkstack::longconn::frame::{Frame, Header, METHOD_CONTROL, METHOD_DATA};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::Message;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Wall-clock now in ms (fractional): what header.create_time (ms since the epoch) is compared to.
fn now_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs_f64() * 1000.0
}

/// Per-event latencies in ms.
#[derive(Debug, Default, Clone)]
struct Latencies(Vec<f64>);

impl Latencies {
    /// The `p` quantile, nearest rank below (as the Python sink computed it: `v[int(p·n)]`).
    fn quantile(&self, p: f64) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v.get(((p * v.len() as f64) as usize).min(v.len().saturating_sub(1))).copied().unwrap_or(0.0)
    }

    fn max(&self) -> f64 {
        self.0.iter().copied().fold(0.0, f64::max)
    }

    /// `events received: N  <what> p50 X ms  p99 Y ms  max Z ms`.
    fn summary(&self, what: &str) -> String {
        if self.0.is_empty() {
            return "events received: 0".into();
        }
        format!(
            "events received: {}  {what} p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
            self.0.len(),
            self.quantile(0.5),
            self.quantile(0.99),
            self.max()
        )
    }
}

/// The part of a schema-2.0 envelope the tools read.
#[derive(Deserialize)]
struct Envelope {
    header: EnvelopeHeader,
}

#[derive(Deserialize)]
struct EnvelopeHeader {
    #[serde(default)]
    event_id: String,
    create_time: String,
}

/// Resolves when the process is asked to stop (SIGTERM, SIGINT) or, with `idle`, when no event
/// came for that long (`last_event` holds the latest arrival; the start counts as one).
async fn stopped(idle: Option<Duration>, last_event: Arc<Mutex<Instant>>) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    let idle_out = async {
        match idle {
            None => std::future::pending::<()>().await,
            Some(idle) => loop {
                let last = *last_event.lock().unwrap();
                if last.elapsed() >= idle {
                    return;
                }
                tokio::time::sleep(idle.saturating_sub(last.elapsed()) + Duration::from_millis(5)).await;
            },
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        () = idle_out => {}
    }
}

// ---------------------------------------------------------------------------------------------
// sink

/// What the webhook sink saw.
struct SinkState {
    encrypt_key: String,
    latencies: Mutex<Latencies>,
    challenges: AtomicUsize,
    undecodable: AtomicUsize,
    last_event: Arc<Mutex<Instant>>,
}

const SUCCESS: &str = r#"{"msg":"success"}"#;

/// One delivery: the challenge echoed, or the event's latency recorded; 200 either way, 400 for
/// what is neither.
async fn sink_delivery(state: Arc<SinkState>, body: Bytes) -> (axum::http::StatusCode, [(&'static str, &'static str); 1], String) {
    let at = now_ms();
    let json_ct = [("content-type", "application/json; charset=utf-8")];
    let Some(v) = larkstack::delivery::wire::open(&state.encrypt_key, &body) else {
        state.undecodable.fetch_add(1, Ordering::Relaxed);
        return (axum::http::StatusCode::BAD_REQUEST, json_ct, r#"{"msg":"undecodable"}"#.into());
    };
    if v.get("type").and_then(Value::as_str) == Some("url_verification") {
        state.challenges.fetch_add(1, Ordering::Relaxed);
        return (axum::http::StatusCode::OK, json_ct, json!({"challenge": v.get("challenge")}).to_string());
    }
    match v.pointer("/header/create_time").and_then(Value::as_str).and_then(|t| t.parse::<f64>().ok()) {
        Some(created) => {
            state.latencies.lock().unwrap().0.push(at - created);
            *state.last_event.lock().unwrap() = Instant::now();
            (axum::http::StatusCode::OK, json_ct, SUCCESS.into())
        }
        None => {
            state.undecodable.fetch_add(1, Ordering::Relaxed);
            (axum::http::StatusCode::BAD_REQUEST, json_ct, r#"{"msg":"no header.create_time"}"#.into())
        }
    }
}

/// Serves the sink on `listener` until `stop` resolves (`last_event` is set at every event);
/// the latencies recorded and how many deliveries were neither a challenge nor an event.
async fn run_sink(
    listener: tokio::net::TcpListener,
    encrypt_key: &str,
    last_event: Arc<Mutex<Instant>>,
    stop: impl std::future::Future<Output = ()>,
) -> (Latencies, usize) {
    let state = Arc::new(SinkState {
        encrypt_key: encrypt_key.to_string(),
        latencies: Mutex::default(),
        challenges: AtomicUsize::new(0),
        undecodable: AtomicUsize::new(0),
        last_event,
    });
    let handler_state = state.clone();
    let app = axum::Router::new().fallback(axum::routing::post(move |body: Bytes| sink_delivery(handler_state.clone(), body)));
    tokio::select! {
        r = axum::serve(listener, app) => { r.expect("serve the sink"); }
        () = stop => {}
    }
    let lat = state.latencies.lock().unwrap().clone();
    (lat, state.undecodable.load(Ordering::Relaxed))
}

// ---------------------------------------------------------------------------------------------
// post

#[derive(Debug, Default)]
struct PostReport {
    posted: u64,
    errors: u64,
    took: Duration,
    /// How far behind its due time the latest-sent message went out.
    max_lag_ms: f64,
    /// Request latencies (sent → answered).
    latencies: Latencies,
}

/// Messages in flight at most: beyond it the schedule slips (and `max_lag_ms` shows it).
const POST_IN_FLIGHT: usize = 256;

async fn run_post(base: &str, admin_token: &str, rate: f64, seconds: f64, chats: &[String], user: &str) -> PostReport {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(POST_IN_FLIGHT)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client");
    let total = (rate * seconds).round() as u64;
    let gate = Arc::new(Semaphore::new(POST_IN_FLIGHT));
    let errors = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Latencies::default()));
    let auth = format!("Bearer {admin_token}");
    let start = tokio::time::Instant::now();
    let mut max_lag = Duration::ZERO;
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due).await;
        let permit = gate.clone().acquire_owned().await.expect("semaphore open");
        max_lag = max_lag.max(tokio::time::Instant::now().saturating_duration_since(due));
        let chat = &chats[(i % chats.len() as u64) as usize];
        let req = client
            .post(format!("{base}/_larkstack/chats/{chat}/messages"))
            .header("authorization", &auth)
            .header("content-type", "application/json")
            .body(json!({"user": user, "text": format!("m{i}")}).to_string());
        let (errors, latencies) = (errors.clone(), latencies.clone());
        tokio::spawn(async move {
            let sent = Instant::now();
            let ok = match req.send().await {
                Ok(r) if r.status().is_success() => {
                    r.json::<Value>().await.ok().and_then(|b| b.get("code").and_then(Value::as_i64)) == Some(0)
                }
                _ => false,
            };
            if !ok {
                errors.fetch_add(1, Ordering::Relaxed);
            }
            latencies.lock().unwrap().0.push(sent.elapsed().as_secs_f64() * 1000.0);
            drop(permit);
        });
    }
    let _ = gate.acquire_many(POST_IN_FLIGHT as u32).await.expect("semaphore open");
    let latencies = latencies.lock().unwrap().clone();
    PostReport {
        posted: total,
        errors: errors.load(Ordering::Relaxed),
        took: start.elapsed(),
        max_lag_ms: max_lag.as_secs_f64() * 1000.0,
        latencies,
    }
}

/// CHATS as given: comma-separated, or `@FILE` (lines or commas).
fn chat_list(arg: &str) -> Vec<String> {
    let text = match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}")),
        None => arg.to_string(),
    };
    text.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

// ---------------------------------------------------------------------------------------------
// ws

/// One line of APPS_FILE.
#[derive(Debug, Clone)]
struct AppLine {
    app_id: String,
    app_secret: String,
    user_open_id: Option<String>,
}

fn read_apps(path: &str) -> Vec<AppLine> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some(AppLine { app_id: w.next()?.to_string(), app_secret: w.next()?.to_string(), user_open_id: w.next().map(str::to_string) })
        })
        .collect()
}

/// What all clients saw.
struct WsState {
    latencies: Mutex<Latencies>,
    event_ids: Mutex<HashSet<String>>,
    duplicates: AtomicU64,
    connected: AtomicUsize,
    /// Connections opened again after a drop.
    reconnects: AtomicU64,
    /// Events that came without a readable header.create_time (acked all the same).
    undecodable: AtomicU64,
    last_event: Arc<Mutex<Instant>>,
}

/// The fragments of one logical message received so far (by `seq`), and when the first came.
type Partial = (Instant, Vec<Option<Vec<u8>>>);

/// Fragments of logical messages being reassembled, by `message_id` (spec events.md §2.6).
#[derive(Default)]
struct Reassembly {
    parts: HashMap<String, Partial>,
}

/// How long a partial message is kept (the Python and Go SDKs' 5 s).
const FRAGMENT_TTL: Duration = Duration::from_secs(5);

impl Reassembly {
    /// Takes one data frame; the whole payload once its last fragment is in (any order).
    fn add(&mut self, frame: &Frame) -> Option<Vec<u8>> {
        let sum: usize = frame.header("sum")?.parse().ok()?;
        let seq: usize = frame.header("seq")?.parse().ok()?;
        let payload = frame.payload.clone().unwrap_or_default();
        if sum <= 1 {
            return Some(payload);
        }
        if seq >= sum {
            return None;
        }
        let id = frame.header("message_id")?.to_string();
        self.parts.retain(|_, (since, _)| since.elapsed() < FRAGMENT_TTL);
        let entry = self.parts.entry(id.clone()).or_insert_with(|| (Instant::now(), vec![None; sum]));
        if entry.1.len() != sum {
            return None;
        }
        entry.1[seq] = Some(payload);
        if entry.1.iter().all(Option::is_some) {
            let (_, parts) = self.parts.remove(&id)?;
            return Some(parts.into_iter().flatten().flatten().collect());
        }
        None
    }
}

/// The ack of an event frame, as the Python SDK sends it: the frame back with `biz_rt`, its
/// payload the response `{"code": 200}`.
fn ack_of(frame: &Frame, biz_rt_ms: u64) -> Frame {
    let mut ack = frame.clone();
    ack.headers.push(Header { key: "biz_rt".into(), value: biz_rt_ms.to_string() });
    ack.payload = Some(br#"{"code": 200}"#.to_vec());
    ack
}

fn ping(service: i32) -> Frame {
    Frame { service, method: METHOD_CONTROL, headers: vec![Header { key: "type".into(), value: "ping".into() }], ..Default::default() }
}

/// Discovery as the Python SDK does it: the URL and the ping interval.
async fn discover(http: &reqwest::Client, base: &str, app: &AppLine) -> Result<(String, Duration), String> {
    let body = format!("{{\"AppID\": \"{}\", \"AppSecret\": \"{}\"}}", app.app_id, app.app_secret);
    let r = http
        .post(format!("{base}/callback/ws/endpoint"))
        .header("content-type", "application/json")
        .header("locale", "zh")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("discovery: {e}"))?;
    let v: Value = r.json().await.map_err(|e| format!("discovery reply: {e}"))?;
    if v.get("code").and_then(Value::as_i64) != Some(0) {
        return Err(format!("discovery refused: {v}"));
    }
    let url = v.pointer("/data/URL").and_then(Value::as_str).ok_or("discovery: no data.URL")?.to_string();
    let ping_s = v.pointer("/data/ClientConfig/PingInterval").and_then(Value::as_u64).unwrap_or(120).max(1);
    Ok((url, Duration::from_secs(ping_s)))
}

/// One event message complete: latency recorded (at ack time), the ack sent.
fn on_event(state: &WsState, payload: &[u8]) {
    match serde_json::from_slice::<Envelope>(payload).ok().and_then(|e| Some((e.header.create_time.parse::<f64>().ok()?, e.header.event_id))) {
        Some((created, event_id)) => {
            state.latencies.lock().unwrap().0.push(now_ms() - created);
            if !state.event_ids.lock().unwrap().insert(event_id) {
                state.duplicates.fetch_add(1, Ordering::Relaxed);
            }
        }
        None => {
            state.undecodable.fetch_add(1, Ordering::Relaxed);
        }
    }
    *state.last_event.lock().unwrap() = Instant::now();
}

/// One client: connects, serves its socket until it drops, connects again, until `stop`.
async fn ws_client(base: String, app: AppLine, state: Arc<WsState>, http: reqwest::Client, mut stop: watch::Receiver<bool>) {
    let mut first = true;
    while !*stop.borrow() {
        if !first {
            state.reconnects.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        first = false;
        let (url, ping_every) = match discover(&http, &base, &app).await {
            Ok(d) => d,
            Err(e) => {
                eprintln!("{}: {e}", app.app_id);
                continue;
            }
        };
        let service: i32 = url
            .split_once('?')
            .and_then(|(_, q)| q.split('&').find_map(|kv| kv.strip_prefix("service_id=")))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut ws = match tokio_tungstenite::connect_async(url.as_str()).await {
            Ok((ws, _)) => ws,
            Err(e) => {
                eprintln!("{}: connect: {e}", app.app_id);
                continue;
            }
        };
        state.connected.fetch_add(1, Ordering::Relaxed);
        let mut pings = tokio::time::interval(ping_every);
        let mut fragments = Reassembly::default();
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = pings.tick() => {
                    if ws.send(Message::Binary(ping(service).encode().into())).await.is_err() {
                        break;
                    }
                }
                msg = ws.next() => match msg {
                    Some(Ok(Message::Binary(bytes))) => {
                        let Ok(frame) = Frame::decode_bytes(&bytes) else { continue };
                        if frame.method != METHOD_DATA || frame.header("type") != Some("event") {
                            continue; // pongs (the ClientConfig again), anything else
                        }
                        let started = Instant::now();
                        if let Some(payload) = fragments.add(&frame) {
                            on_event(&state, &payload);
                            let ack = ack_of(&frame, started.elapsed().as_millis() as u64);
                            if ws.send(Message::Binary(ack.encode().into())).await.is_err() {
                                break;
                            }
                        }
                    }
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
            }
        }
        state.connected.fetch_sub(1, Ordering::Relaxed);
        let _ = ws.close(None).await;
    }
}

/// The outcome of a `ws` run.
struct WsReport {
    latencies: Latencies,
    duplicates: u64,
    reconnects: u64,
    undecodable: u64,
}

/// Opens one client per app; `ready` gets the number connected once all are (or after 60 s);
/// runs until `stop` resolves (`last_event` is set when all are ready and at every event).
async fn run_ws(
    base: &str,
    apps: &[AppLine],
    last_event: Arc<Mutex<Instant>>,
    ready: impl FnOnce(usize),
    stop: impl std::future::Future<Output = ()>,
) -> WsReport {
    let state = Arc::new(WsState {
        latencies: Mutex::default(),
        event_ids: Mutex::default(),
        duplicates: AtomicU64::new(0),
        connected: AtomicUsize::new(0),
        reconnects: AtomicU64::new(0),
        undecodable: AtomicU64::new(0),
        last_event,
    });
    let http = reqwest::Client::builder().tcp_nodelay(true).build().expect("HTTP client");
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut clients = Vec::new();
    for app in apps {
        clients.push(tokio::spawn(ws_client(base.to_string(), app.clone(), state.clone(), http.clone(), stop_rx.clone())));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while state.connected.load(Ordering::Relaxed) < apps.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ready(state.connected.load(Ordering::Relaxed));
    *state.last_event.lock().unwrap() = Instant::now();
    stop.await;
    let _ = stop_tx.send(true);
    for c in clients {
        let _ = tokio::time::timeout(Duration::from_secs(2), c).await;
    }
    let latencies = state.latencies.lock().unwrap().clone();
    WsReport {
        latencies,
        duplicates: state.duplicates.load(Ordering::Relaxed),
        reconnects: state.reconnects.load(Ordering::Relaxed),
        undecodable: state.undecodable.load(Ordering::Relaxed),
    }
}

// ---------------------------------------------------------------------------------------------
// chats

/// Per app (8 at a time): a tenant token, then a chat of the bot with the app's user.
async fn create_chats(base: &str, apps: &[AppLine], name: &str) -> Result<Vec<String>, String> {
    let http = reqwest::Client::new();
    let gate = Arc::new(Semaphore::new(8));
    let mut tasks = Vec::new();
    for (i, app) in apps.iter().enumerate() {
        let (http, base, app, gate) = (http.clone(), base.to_string(), app.clone(), gate.clone());
        let name = format!("{name}-{i}");
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
            let user = app.user_open_id.clone().ok_or(format!("{}: no user open_id in the apps file", app.app_id))?;
            let t: Value = http
                .post(format!("{base}/open-apis/auth/v3/tenant_access_token/internal"))
                .json(&json!({"app_id": app.app_id, "app_secret": app.app_secret}))
                .send()
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            let token = t.get("tenant_access_token").and_then(Value::as_str).ok_or(format!("{}: token: {t}", app.app_id))?;
            let c: Value = http
                .post(format!("{base}/open-apis/im/v1/chats"))
                .bearer_auth(token)
                .json(&json!({"name": name, "user_id_list": [user]}))
                .send()
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            c.pointer("/data/chat_id").and_then(Value::as_str).map(str::to_string).ok_or(format!("{}: create chat: {c}", app.app_id))
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.map_err(|e| e.to_string())??);
    }
    Ok(ids)
}

// ---------------------------------------------------------------------------------------------

fn usage() -> ! {
    eprintln!(
        "usage: bench_events sink PORT ENCRYPT_KEY [--idle-exit SECS]\n       \
         bench_events post PORT ADMIN_TOKEN RATE SECONDS CHATS USER\n       \
         bench_events ws BASE_URL APPS_FILE [--idle-exit SECS]\n       \
         bench_events chats BASE_URL APPS_FILE NAME"
    );
    std::process::exit(2)
}

/// The positional arguments and `--idle-exit SECS`, if given.
fn split_args(args: Vec<String>) -> (Vec<String>, Option<Duration>) {
    let mut pos = Vec::new();
    let mut idle = None;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        if a == "--idle-exit" {
            let secs: f64 = it.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| usage());
            idle = Some(Duration::from_secs_f64(secs));
        } else {
            pos.push(a);
        }
    }
    (pos, idle)
}

fn main() {
    let (args, idle) = split_args(std::env::args().skip(1).collect());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let arg = |i: usize| args.get(i).cloned().unwrap_or_else(|| usage());
    match args.first().map(String::as_str) {
        Some("sink") => rt.block_on(async {
            let port: u16 = arg(1).parse().unwrap_or_else(|_| usage());
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind the sink");
            let last_event = Arc::new(Mutex::new(Instant::now()));
            let (lat, undecodable) = run_sink(listener, &arg(2), last_event.clone(), stopped(idle, last_event)).await;
            println!("{}", lat.summary("commit->sink"));
            if undecodable > 0 {
                println!("undecodable deliveries: {undecodable}");
            }
        }),
        Some("post") => rt.block_on(async {
            let port: u16 = arg(1).parse().unwrap_or_else(|_| usage());
            let rate: f64 = arg(3).parse().unwrap_or_else(|_| usage());
            let seconds: f64 = arg(4).parse().unwrap_or_else(|_| usage());
            let chats = chat_list(&arg(5));
            if chats.is_empty() || rate <= 0.0 {
                usage();
            }
            let r = run_post(&format!("http://127.0.0.1:{port}"), &arg(2), rate, seconds, &chats, &arg(6)).await;
            let secs = r.took.as_secs_f64();
            println!(
                "messages posted: {} in {secs:.1} s ({:.0}/s), errors: {}; at most {:.1} ms behind schedule; post p50 {:.1} ms  p99 {:.1} ms",
                r.posted,
                r.posted as f64 / secs,
                r.errors,
                r.max_lag_ms,
                r.latencies.quantile(0.5),
                r.latencies.quantile(0.99)
            );
        }),
        Some("ws") => rt.block_on(async {
            let apps = read_apps(&arg(2));
            let n = apps.len();
            let last_event = Arc::new(Mutex::new(Instant::now()));
            let ready = |c| {
                println!("connected: {c} of {n}");
                use std::io::Write as _;
                let _ = std::io::stdout().flush();
            };
            let r = run_ws(arg(1).trim_end_matches('/'), &apps, last_event.clone(), ready, stopped(idle, last_event)).await;
            println!(
                "{}  (duplicates {}, reconnects {}, undecodable {})",
                r.latencies.summary("commit->ack"),
                r.duplicates,
                r.reconnects,
                r.undecodable
            );
        }),
        Some("chats") => rt.block_on(async {
            match create_chats(arg(1).trim_end_matches('/'), &read_apps(&arg(2)), &arg(3)).await {
                Ok(ids) => println!("{}", ids.join(",")),
                Err(e) => {
                    eprintln!("bench_events chats: {e}");
                    std::process::exit(1);
                }
            }
        }),
        _ => usage(),
    }
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
}

#[cfg(test)]
mod tests {
    //! `cargo test --example bench_events`: the tools against a real larkstack served in-process
    //! (SQLite in a temp dir), so the numbers the bench prints come from real deliveries.

    use super::*;
    use larkstack::longconn::frame::{event_frames, read_ack, EventMessage, FRAGMENT_BYTES};

    #[test]
    fn fragments_reassemble_in_any_order_and_the_ack_is_the_python_sdks() {
        let payload: Vec<u8> = (0..FRAGMENT_BYTES * 2 + 77).map(|i| b'a' + (i % 26) as u8).collect();
        let m = EventMessage { message_id: "m1", trace_id: "t1", service: 5, timestamp_ms: 1, first_seq_id: 10, log_id: 3 };
        let frames = event_frames(&m, &payload);
        assert_eq!(frames.len(), 3);
        let mut r = Reassembly::default();
        assert_eq!(r.add(&frames[2]), None);
        assert_eq!(r.add(&frames[0]), None);
        assert_eq!(r.add(&frames[1]).as_deref(), Some(&payload[..]));
        assert!(r.parts.is_empty());
        // A single-frame message needs no bookkeeping.
        assert_eq!(r.add(&event_frames(&m, b"{}")[0]).as_deref(), Some(&b"{}"[..]));

        let ack = Frame::decode_bytes(&ack_of(&frames[1], 4).encode()).unwrap();
        assert_eq!((ack.seq_id, ack.log_id, ack.service, ack.method), (11, 3, 5, METHOD_DATA));
        let keys: Vec<&str> = ack.headers.iter().map(|h| h.key.as_str()).collect();
        assert_eq!(keys, ["type", "message_id", "sum", "seq", "trace_id", "timestamp", "biz_rt"]);
        assert_eq!(ack.payload.as_deref(), Some(&br#"{"code": 200}"#[..]));
        let read = read_ack(&ack);
        assert_eq!((read.code, read.biz_rt_ms), (Some(200), Some(4)));
        let p = Frame::decode_bytes(&ping(5).encode()).unwrap();
        assert_eq!((p.method, p.service, p.header("type")), (METHOD_CONTROL, 5, Some("ping")));
    }

    #[test]
    fn quantiles_are_nearest_rank_and_the_summary_has_the_bench_format() {
        let l = Latencies((1..=100).rev().map(f64::from).collect());
        assert_eq!((l.quantile(0.5), l.quantile(0.99), l.max()), (51.0, 100.0, 100.0));
        assert_eq!(l.summary("commit->sink"), "events received: 100  commit->sink p50 51.0 ms  p99 100.0 ms  max 100.0 ms");
        assert_eq!(Latencies::default().summary("x"), "events received: 0");
        assert_eq!(chat_list("oc_a,oc_b ,\noc_c"), ["oc_a", "oc_b", "oc_c"]);
    }

    /// A larkstack on a free port with one webhook app (encrypted, to `sink`) and two
    /// long-connection apps, every one a bot with all group messages; user `u0`.
    async fn larkstack(sink: u16) -> (String, String, Vec<AppLine>, Arc<larkstack::state::AppState>, tempfile::TempDir) {
        let mut fixture = String::from("[[tenants]]\nkey = \"t\"\n\n[[users]]\nkey = \"u0\"\ntenant = \"t\"\n");
        let scopes = r#"scopes = ["im:chat", "im:message.group_msg"]"#;
        fixture += &format!(
            "\n[[apps]]\nkey = \"hook\"\ntenant = \"t\"\n{scopes}\nevent_types = [\"im.message.receive_v1\"]\n\
             encrypt_key = \"bench key\"\nevent_url = \"http://127.0.0.1:{sink}/hook\"\n"
        );
        for i in 0..2 {
            fixture += &format!(
                "\n[[apps]]\nkey = \"lc{i}\"\ntenant = \"t\"\n{scopes}\nevent_types = [\"im.message.receive_v1\"]\nevent_mode = \"long_connection\"\n"
            );
        }
        let dir = larkstack::domain::directory::Directory::from_toml(&fixture).unwrap();
        let d = larkstack::control::directory_json(&dir);
        let apps = d["apps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| AppLine {
                app_id: a["app_id"].as_str().unwrap().into(),
                app_secret: a["app_secret"].as_str().unwrap().into(),
                user_open_id: d["users"][0]["open_ids"][a["key"].as_str().unwrap()].as_str().map(str::to_string),
            })
            .collect();
        let data = tempfile::tempdir().unwrap();
        let store = Arc::new(larkstack::store::sqlite::SqliteStore::open(data.path()).unwrap());
        let clock = Arc::new(larkstack::clock::Clock::default());
        let config = larkstack::state::StateConfig { rate_limits: false, ..Default::default() };
        let admin = config.admin_token.clone();
        let state = larkstack::state::AppState::new(store, dir, clock.clone(), config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let options = larkstack::server::ServeOptions::new(clock);
        tokio::spawn(larkstack::server::serve(listener, larkstack::app(state.clone()), options));
        (base, admin, apps, state, data)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sink_ws_and_poster_count_every_message_larkstack_delivers() {
        let sink_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink_port = sink_listener.local_addr().unwrap().port();
        let (sink_stop_tx, sink_stop) = tokio::sync::oneshot::channel::<()>();
        let sink_last = Arc::new(Mutex::new(Instant::now()));
        let sink_last_run = sink_last.clone();
        let sink = tokio::spawn(async move {
            run_sink(sink_listener, "bench key", sink_last_run, async {
                let _ = sink_stop.await;
            })
            .await
        });
        let (base, admin, apps, state, _data) = larkstack(sink_port).await;
        let chats = create_chats(&base, &apps, "bench").await.unwrap();
        assert_eq!(chats.len(), 3);
        assert!(chats.iter().all(|c| c.starts_with("oc_")), "{chats:?}");

        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (ws_stop_tx, ws_stop) = tokio::sync::oneshot::channel::<()>();
        let (ws_base, ws_apps) = (base.clone(), apps[1..].to_vec());
        let ws_last = Arc::new(Mutex::new(Instant::now()));
        let ws_last_run = ws_last.clone();
        let ws = tokio::spawn(async move {
            let ready = move |n| {
                let _ = ready_tx.send(n);
            };
            run_ws(&ws_base, &ws_apps, ws_last_run, ready, async {
                let _ = ws_stop.await;
            })
            .await
        });
        assert_eq!(ready_rx.await.unwrap(), 2, "both long-connection clients connected");

        // 90 messages at 150/s: chat i mod 3, so 30 to the webhook app's chat, 60 to the others.
        let posted = run_post(&base, &admin, 150.0, 0.6, &chats, "u0").await;
        assert_eq!((posted.posted, posted.errors), (90, 0));
        assert!(posted.took >= Duration::from_millis(590), "paced over 0.6 s: {:?}", posted.took);
        assert_eq!(posted.latencies.0.len(), 90);

        // An event bigger than one fragment, pushed by the hub itself, is reassembled and acked.
        let big = json!({"schema": "2.0", "header": {"event_id": "big", "create_time": format!("{}", now_ms() as i64)},
                         "event": {"text": "x".repeat(FRAGMENT_BYTES + 1000)}});
        let outcome = state.longconn.deliver(&larkstack::domain::ids::AppId(apps[1].app_id.clone()), &big.to_string()).await;
        assert!(outcome.delivered(), "{outcome:?}");

        // Quiet for a second on both receivers: everything arrived (a retry would come 15 s
        // later, and would show as a duplicate or a missing event below).
        let quiet = |l: &Arc<Mutex<Instant>>| l.lock().unwrap().elapsed() > Duration::from_secs(1);
        for _ in 0..200 {
            if quiet(&sink_last) && quiet(&ws_last) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = (sink_stop_tx.send(()), ws_stop_tx.send(()));
        let (sink_lat, undecodable) = sink.await.unwrap();
        let ws = ws.await.unwrap();
        assert_eq!((sink_lat.0.len(), undecodable), (30, 0), "the webhook app's 30 events, decrypted");
        assert_eq!(ws.latencies.0.len(), 61, "60 events and the big one over the long connections");
        assert_eq!((ws.duplicates, ws.reconnects, ws.undecodable), (0, 0, 0));
        for l in sink_lat.0.iter().chain(&ws.latencies.0) {
            assert!((0.0..3000.0).contains(l), "commit→receiver {l} ms");
        }
        // larkstack took the sink's answers and the acks: 90 attempts, each delivered, none queued.
        let d: Value = reqwest::Client::new()
            .get(format!("{base}/_larkstack/deliveries"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let items = d["data"]["items"].as_array().unwrap();
        assert_eq!(items.len(), 90, "{d}");
        assert!(items.iter().all(|a| a["delivered"] == true), "{d}");
        assert_eq!(d["data"]["queue_depth"], 0, "{d}");
    }
}
