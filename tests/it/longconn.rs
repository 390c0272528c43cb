//! The long connection (spec events.md §2), over a real socket: discovery, the WebSocket
//! upgrade and its refusals, ping/pong, event frames, fragmentation, acks, redelivery, the
//! 50-connection limit and closes from the control API. The client here speaks `pbbp2` with
//! tokio-tungstenite, as the SDKs do.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::Method;
use futures_util::{SinkExt, StreamExt};
use larkstack::longconn::frame::{Frame, Header};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::support::*;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Serves the app's router on a real port (WebSocket upgrades need one); the base URL.
pub(crate) async fn served(app: &TestApp) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let options = larkstack::server::ServeOptions::new(app.state.clock.clone());
    tokio::spawn(larkstack::server::serve(listener, app.router.clone(), options));
    base
}

async fn discover(base: &str, app_id: &str, secret: &str) -> (u16, Value) {
    // As the Python SDK sends it: PascalCase, with spaces.
    let body = format!("{{\"AppID\": \"{app_id}\", \"AppSecret\": \"{secret}\"}}");
    let r = reqwest::Client::new()
        .post(format!("{base}/callback/ws/endpoint"))
        .header("content-type", "application/json")
        .header("locale", "zh")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

fn query_of(url: &str) -> Vec<(String, String)> {
    let q = url.split_once('?').unwrap().1;
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

/// A refused upgrade: the HTTP status, the handshake headers and the body.
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) status: u16,
    pub(crate) headers: HashMap<String, String>,
    pub(crate) body: Value,
}

pub(crate) struct Client {
    ws: Socket,
    pub(crate) conn_id: String,
    service: i32,
}

async fn try_connect(url: &str) -> Result<Socket, Refused> {
    match tokio_tungstenite::connect_async(url).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(resp)) => {
            let headers = resp.headers().iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap().to_string())).collect();
            let body = resp.body().as_ref().map(|b| serde_json::from_slice(b).unwrap()).unwrap_or(Value::Null);
            Err(Refused { status: resp.status().as_u16(), headers, body })
        }
        Err(e) => panic!("connect: {e}"),
    }
}

impl Client {
    /// Discovery, then the socket, as an SDK does.
    pub(crate) async fn open(base: &str, app_id: &str, secret: &str) -> Result<Client, Refused> {
        let (_, d) = discover(base, app_id, secret).await;
        assert_eq!(d["code"], 0, "{d}");
        let url = d["data"]["URL"].as_str().unwrap().to_string();
        let q: HashMap<_, _> = query_of(&url).into_iter().collect();
        let ws = try_connect(&url).await?;
        Ok(Client { ws, conn_id: q["device_id"].clone(), service: q["service_id"].parse().unwrap() })
    }

    async fn send(&mut self, f: &Frame) {
        self.ws.send(Message::Binary(f.encode().into())).await.unwrap();
    }

    /// The next pbbp2 frame, or `None` when none comes within `wait` (or the socket closed).
    async fn next_within(&mut self, wait: Duration) -> Option<Frame> {
        loop {
            match tokio::time::timeout(wait, self.ws.next()).await {
                Ok(Some(Ok(Message::Binary(b)))) => return Some(Frame::decode_bytes(&b).expect("a pbbp2 frame")),
                Ok(Some(Ok(Message::Text(t)))) => panic!("a text frame: {t}"),
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => return None,
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    async fn next(&mut self) -> Frame {
        self.next_within(Duration::from_secs(20)).await.expect("a frame within 20 s")
    }

    /// The next event: its frames reassembled in `seq` order; the last fragment received.
    pub(crate) async fn event(&mut self) -> (Value, Frame, usize) {
        let first = self.next().await;
        let sum: usize = first.header("sum").unwrap().parse().unwrap();
        let mut parts = vec![first];
        while parts.len() < sum {
            parts.push(self.next().await);
        }
        let last = parts.last().unwrap().clone();
        parts.sort_by_key(|f| f.header("seq").unwrap().parse::<usize>().unwrap());
        let bytes: Vec<u8> = parts.iter().flat_map(|f| f.payload.clone().unwrap()).collect();
        (serde_json::from_slice(&bytes).unwrap(), last, sum)
    }

    /// Acks `frame` as the SDKs do: the frame back, plus `biz_rt`, with `payload`.
    pub(crate) async fn ack(&mut self, frame: &Frame, payload: &str, biz_rt: Option<&str>) {
        let mut f = frame.clone();
        if let Some(b) = biz_rt {
            f.headers.push(Header { key: "biz_rt".into(), value: b.into() });
        }
        f.payload = Some(payload.as_bytes().to_vec());
        self.send(&f).await;
    }

    /// The code of the close frame the server sends within `wait` (frames before it are skipped).
    pub(crate) async fn close_code_within(&mut self, wait: Duration) -> u16 {
        loop {
            match tokio::time::timeout(wait, self.ws.next()).await.expect("a close frame in time") {
                Some(Ok(Message::Close(f))) => return f.map_or(1005, |f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    /// Whether a frame comes within `wait`.
    pub(crate) async fn gets_a_frame_within(&mut self, wait: Duration) -> bool {
        self.next_within(wait).await.is_some()
    }

    async fn ping(&mut self) {
        let ping = Frame { service: self.service, headers: vec![Header { key: "type".into(), value: "ping".into() }], ..Default::default() };
        self.send(&ping).await;
    }
}

impl TestApp {
    /// A control-API call with the admin token.
    async fn lc_control(&self, method: Method, uri: &str, body: Option<Value>) -> Reply {
        let token = self.state.admin_token.clone();
        self.call(method, uri, &token, body).await
    }

    async fn long_connection(&self, app_key: &str) {
        let r = self.lc_control(Method::PUT, &format!("/_larkstack/apps/{}/events", self.app_id(app_key)), Some(json!({"event_mode": "long_connection"}))).await;
        assert_eq!(r.code(), 0, "{}", r.body);
    }

    async fn chat_with_alice(&self) -> String {
        let t = self.token("demo-bot").await;
        let (a, b) = (self.open_id("demo-bot", "alice"), self.open_id("demo-bot", "bob"));
        self.new_chat(&t, json!({"name": "ws", "owner_id": a, "user_id_list": [b]})).await
    }

    async fn user_says(&self, chat: &str, text: &str) {
        let r = self.lc_control(Method::POST, &format!("/_larkstack/chats/{chat}/messages"), Some(json!({"user": "alice", "text": text}))).await;
        assert_eq!(r.code(), 0, "{}", r.body);
    }

    async fn connections(&self) -> Value {
        let r = self.lc_control(Method::GET, "/_larkstack/connections", None).await;
        assert_eq!(r.code(), 0, "{}", r.body);
        r.body["data"].clone()
    }

    /// Waits until `GET /_larkstack/deliveries?event_id=` lists `n` attempts.
    async fn attempts(&self, event_id: &str, n: usize) -> Vec<Value> {
        for _ in 0..1000 {
            let d = self.lc_control(Method::GET, &format!("/_larkstack/deliveries?event_id={event_id}"), None).await;
            let items = d.body["data"]["items"].as_array().unwrap().clone();
            if items.len() >= n {
                return items;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{n} attempts of {event_id} were not listed");
    }
}

fn header_keys(f: &Frame) -> Vec<&str> {
    f.headers.iter().map(|h| h.key.as_str()).collect()
}

#[tokio::test]
async fn discovery_returns_a_ws_url_with_a_one_time_ticket_and_the_full_client_config() {
    let app = TestApp::demo().await;
    let base = served(&app).await;
    let (status, d) = discover(&base, &app.app_id("demo-bot"), &app.secret("demo-bot")).await;
    assert_eq!((status, d["code"].as_i64()), (200, Some(0)), "{d}");
    let url = d["data"]["URL"].as_str().unwrap();
    let port = base.rsplit(':').next().unwrap();
    assert!(url.starts_with(&format!("ws://127.0.0.1:{port}/ws/v2?")), "{url}");
    let q = query_of(url);
    let keys: Vec<&str> = q.iter().map(|(k, _)| k.as_str()).collect();
    assert_ne!(keys[0], "device_id");
    assert_ne!(keys[0], "service_id");
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_else(|| panic!("{k} in {url}"));
    assert!(get("device_id").len() == 19 && get("device_id").chars().all(|c| c.is_ascii_digit()));
    get("service_id").parse::<i32>().unwrap();
    assert!(!get("ticket").is_empty());
    let cc = &d["data"]["ClientConfig"];
    for k in ["ReconnectCount", "ReconnectInterval", "ReconnectNonce", "PingInterval"] {
        assert!(cc[k].is_i64(), "{k} in {cc}");
    }
    // Each discovery gives a new connection id.
    let (_, again) = discover(&base, &app.app_id("demo-bot"), &app.secret("demo-bot")).await;
    assert_ne!(again["data"]["URL"], d["data"]["URL"]);

    // Errors: HTTP 200, a code the SDKs stop on, `data` with an empty URL and the full config.
    for (app_id, secret) in [
        (app.app_id("demo-bot"), "wrong".to_string()),
        ("cli_0000000000000000".to_string(), "x".to_string()),
        (app.app_id("store-app"), app.secret("store-app")),
        (String::new(), String::new()),
    ] {
        let (status, e) = discover(&base, &app_id, &secret).await;
        assert_eq!(status, 200);
        assert_eq!(e["code"], 1000040346, "{e}");
        assert_eq!(e["data"]["URL"], "");
        assert_eq!(&e["data"]["ClientConfig"], cc);
        assert!(e["error"]["log_id"].is_string(), "{e}");
    }
    // No Content-Type (the Go SDK) and the Host the client used.
    let body = json!({"AppID": app.app_id("demo-bot"), "AppSecret": app.secret("demo-bot")}).to_string();
    let r = app.request(Method::POST, "/callback/ws/endpoint", &[("host", "bots.example.test:8443")], Some(body.as_bytes())).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    assert!(r.body["data"]["URL"].as_str().unwrap().starts_with("ws://bots.example.test:8443/ws/v2?fpid="), "{}", r.body);
}

#[tokio::test]
async fn bad_tickets_are_refused_with_the_handshake_headers() {
    let app = TestApp::demo().await;
    let base = served(&app).await;
    let (_, d) = discover(&base, &app.app_id("demo-bot"), &app.secret("demo-bot")).await;
    let url = d["data"]["URL"].as_str().unwrap().to_string();
    let forged = url.replace("ticket=", "ticket=1");
    let r = try_connect(&forged).await.unwrap_err();
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.headers["handshake-status"], "514");
    assert_eq!(r.headers["handshake-autherrcode"], "1000040351");
    assert!(!r.headers["handshake-msg"].is_empty());
    assert_eq!(r.body["code"], 1000040351);
    // The real ticket opens one connection, once.
    let ws = try_connect(&url).await.unwrap();
    let r = try_connect(&url).await.unwrap_err();
    assert!(r.body["msg"].as_str().unwrap().contains("used"), "{r:?}");
    drop(ws);
    // Without the query, and without an upgrade at all.
    let bare = format!("{}/ws/v2", base.replace("http://", "ws://"));
    assert_eq!(try_connect(&bare).await.unwrap_err().headers["handshake-status"], "514");
    let plain = reqwest::get(format!("{base}/ws/v2")).await.unwrap();
    assert_eq!(plain.status(), 400);
    assert_eq!(plain.json::<Value>().await.unwrap()["code"], 400);
}

#[tokio::test]
async fn a_ping_is_answered_by_a_pong_carrying_the_client_config() {
    let app = TestApp::demo().await;
    let base = served(&app).await;
    let mut c = Client::open(&base, &app.app_id("demo-bot"), &app.secret("demo-bot")).await.unwrap();
    // The ping as the SDKs send it: all zeros but the service, no payload.
    c.ping().await;
    let raw = loop {
        match c.ws.next().await.unwrap().unwrap() {
            Message::Binary(b) => break b,
            _ => continue,
        }
    };
    // SeqID, LogID, service and method are on the wire even when zero (proto2 required).
    assert_eq!(&raw[..4], &[0x08, 0, 0x10, 0]);
    let pong = Frame::decode_bytes(&raw).unwrap();
    assert_eq!((pong.method, pong.service, pong.header("type")), (0, c.service, Some("pong")));
    let cc: Value = serde_json::from_slice(pong.payload.as_ref().unwrap()).unwrap();
    assert_eq!(cc.as_object().unwrap().len(), 4, "{cc}");
    assert!(cc["PingInterval"].as_i64().unwrap() > 0);
    let listed = app.connections().await;
    assert_eq!(listed["items"][0]["conn_id"], c.conn_id.as_str());
    assert!(listed["items"][0]["last_ping_ms"].is_i64(), "{listed}");
    assert!(listed["items"][0]["remote"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(listed["counts"][app.app_id("demo-bot")], 1);
}

#[tokio::test]
async fn events_wait_for_a_connection_then_arrive_as_event_frames_and_an_ack_delivers_them() {
    let app = TestApp::demo().await;
    let base = served(&app).await;
    app.long_connection("demo-bot").await;
    let chat = app.chat_with_alice().await;
    // Committed while no client is connected: it waits.
    app.user_says(&chat, "before you came").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let d = app.lc_control(Method::GET, "/_larkstack/deliveries", None).await;
    assert!(d.body["data"]["items"].as_array().unwrap().is_empty(), "{}", d.body);
    assert!(d.body["data"]["queue_depth"].as_u64().unwrap() >= 1, "{}", d.body);

    let mut c = Client::open(&base, &app.app_id("demo-bot"), &app.secret("demo-bot")).await.unwrap();
    let (event, frame, sum) = c.event().await;
    assert_eq!(sum, 1);
    assert_eq!((frame.method, frame.service), (1, c.service));
    assert_eq!(header_keys(&frame)[..5], ["type", "message_id", "sum", "seq", "trace_id"]);
    assert_eq!((frame.header("type"), frame.header("sum"), frame.header("seq")), (Some("event"), Some("1"), Some("0")));
    assert!(!frame.header("message_id").unwrap().is_empty() && !frame.header("trace_id").unwrap().is_empty());
    assert_eq!(event["schema"], "2.0");
    assert_eq!(event["header"]["event_type"], "im.message.receive_v1");
    assert_eq!(event["event"]["message"]["content"], json!({"text": "before you came"}).to_string());
    let event_id = event["header"]["event_id"].as_str().unwrap().to_string();
    // The Node SDK's ack: compact, negative biz_rt.
    c.ack(&frame, r#"{"code":200}"#, Some("-1")).await;
    let items = app.attempts(&event_id, 1).await;
    assert_eq!(items[0]["delivered"], true, "{items:?}");
    assert_eq!(items[0]["url"], format!("longconn:{}", c.conn_id));
    let listed = app.connections().await;
    assert_eq!(listed["items"][0]["delivered"], 1, "{listed}");

    // The next one comes right away.
    app.user_says(&chat, "now").await;
    let (event, frame, _) = c.event().await;
    assert_eq!(event["event"]["message"]["content"], json!({"text": "now"}).to_string());
    c.ack(&frame, r#"{"code": 200}"#, Some("2")).await;
    app.attempts(event["header"]["event_id"].as_str().unwrap(), 1).await;
}

#[tokio::test]
async fn a_payload_over_512_kib_arrives_in_fragments_and_one_ack_delivers_it() {
    let app = TestApp::demo().await;
    let base = served(&app).await;
    let mut c = Client::open(&base, &app.app_id("demo-bot"), &app.secret("demo-bot")).await.unwrap();
    let big = json!({"schema": "2.0", "header": {"event_type": "test.big"}, "event": {"text": "x".repeat(1_200_000)}});
    let hub = app.state.longconn.clone();
    let app_id = larkstack::domain::ids::AppId(app.app_id("demo-bot"));
    let value = big.clone();
    let sent = tokio::spawn(async move { hub.deliver(&app_id, &value.to_string()).await });
    let (got, last, sum) = c.event().await;
    assert_eq!(sum, 3);
    assert_eq!(got, big);
    // One ack for the whole message, on the fragment that completed it (Python's style).
    c.ack(&last, r#"{"code": 200}"#, Some("5")).await;
    let outcome = sent.await.unwrap();
    assert!(outcome.delivered(), "{outcome:?}");
}

#[tokio::test]
async fn acks_are_read_leniently_and_a_500_or_silence_is_a_failure() {
    let app = TestApp::demo().await;
    let base = served(&app).await;
    let mut c = Client::open(&base, &app.app_id("demo-bot"), &app.secret("demo-bot")).await.unwrap();
    let app_id = larkstack::domain::ids::AppId(app.app_id("demo-bot"));
    let b64 = "eyJ0b2FzdCI6e319"; // {"toast":{}}
    for (payload, biz_rt, delivered) in [
        (r#"{"code": 200}"#.to_string(), Some("3"), true),
        (r#"{"code":200,"headers":null,"data":null}"#.to_string(), Some("0"), true),
        (format!(r#"{{"code":200,"data":"{b64}"}}"#), Some("-4"), true),
        (r#"{"code": 500}"#.to_string(), None, false),
    ] {
        let hub = app.state.longconn.clone();
        let id = app_id.clone();
        let sent = tokio::spawn(async move { hub.deliver(&id, r#"{"schema":"2.0"}"#).await });
        let (_, frame, _) = c.event().await;
        c.ack(&frame, &payload, biz_rt).await;
        let outcome = sent.await.unwrap();
        assert_eq!(outcome.delivered(), delivered, "{payload}: {outcome:?}");
    }
    // No ack within 3 s.
    let started = std::time::Instant::now();
    let hub = app.state.longconn.clone();
    let sent = tokio::spawn(async move { hub.deliver(&app_id, r#"{"schema":"2.0"}"#).await });
    c.event().await;
    let outcome = sent.await.unwrap();
    assert!(!outcome.delivered());
    assert!(started.elapsed() >= Duration::from_millis(2900), "{:?}", started.elapsed());
}

#[tokio::test]
async fn an_unacked_event_is_retried_on_the_clock_with_the_same_event_id() {
    let app = TestApp::demo().await;
    let base = served(&app).await;
    app.long_connection("demo-bot").await;
    let r = app.lc_control(Method::POST, "/_larkstack/clock", Some(json!({"freeze": true}))).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let mut c = Client::open(&base, &app.app_id("demo-bot"), &app.secret("demo-bot")).await.unwrap();
    let chat = app.chat_with_alice().await;
    app.user_says(&chat, "ack me later").await;
    let (first, _, _) = c.event().await;
    let event_id = first["header"]["event_id"].as_str().unwrap().to_string();
    // Not acked: after 3 s the attempt failed, its retry 15 s later on larkstack's clock.
    let items = app.attempts(&event_id, 1).await;
    assert_eq!(items[0]["delivered"], false);
    assert!(items[0]["response"].as_str().unwrap().contains("no ack"), "{items:?}");
    assert_eq!(items[0]["next_retry_ms"].as_i64().unwrap() - items[0]["at_ms"].as_i64().unwrap(), 15_000);
    assert!(c.next_within(Duration::from_millis(300)).await.is_none());
    let r = app.lc_control(Method::POST, "/_larkstack/clock", Some(json!({"advance": "15s"}))).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let (again, frame, _) = c.event().await;
    assert_eq!(again["header"]["event_id"], event_id.as_str());
    assert_ne!(frame.header("message_id"), None);
    c.ack(&frame, r#"{"code":200}"#, Some("1")).await;
    let items = app.attempts(&event_id, 2).await;
    assert_eq!(items[1]["delivered"], true, "{items:?}");
}

#[tokio::test]
async fn delivery_faults_apply_to_the_long_connection() {
    let app = TestApp::demo().await;
    let base = served(&app).await;
    app.long_connection("demo-bot").await;
    assert_eq!(app.lc_control(Method::POST, "/_larkstack/clock", Some(json!({"freeze": true}))).await.code(), 0);
    let bot = app.app_id("demo-bot");
    let r = app.lc_control(Method::POST, "/_larkstack/faults/deliveries", Some(json!({"app_id": bot, "fail_next": 1, "deliver_twice": 1}))).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let mut c = Client::open(&base, &bot, &app.secret("demo-bot")).await.unwrap();
    let chat = app.chat_with_alice().await;
    app.user_says(&chat, "faulty").await;
    // The first attempt fails without reaching the client…
    assert!(c.next_within(Duration::from_millis(500)).await.is_none());
    let d = app.lc_control(Method::GET, "/_larkstack/deliveries", None).await;
    let failed = d.body["data"]["items"][0].clone();
    assert!(failed["response"].as_str().unwrap().contains("fault"), "{failed}");
    // …the retry comes twice, with one event_id.
    assert_eq!(app.lc_control(Method::POST, "/_larkstack/clock", Some(json!({"advance": "15s"}))).await.code(), 0);
    let (one, f1, _) = c.event().await;
    c.ack(&f1, r#"{"code":200}"#, None).await;
    let (two, f2, _) = c.event().await;
    c.ack(&f2, r#"{"code":200}"#, None).await;
    assert_eq!(one["header"]["event_id"], failed["event_id"]);
    assert_eq!(two["header"]["event_id"], failed["event_id"]);
    assert_ne!(f1.header("message_id"), f2.header("message_id"));
}

#[tokio::test]
async fn each_event_goes_to_one_connection_of_the_app() {
    let app = TestApp::demo().await;
    let base = served(&app).await;
    app.long_connection("demo-bot").await;
    let (id, secret) = (app.app_id("demo-bot"), app.secret("demo-bot"));
    let mut a = Client::open(&base, &id, &secret).await.unwrap();
    let mut b = Client::open(&base, &id, &secret).await.unwrap();
    let chat = app.chat_with_alice().await;
    for i in 0..4 {
        app.user_says(&chat, &format!("m{i}")).await;
    }
    let mut got = Vec::new();
    while got.len() < 4 {
        tokio::select! {
            Some(f) = a.next_within(Duration::from_secs(20)) => { a.ack(&f, r#"{"code":200}"#, None).await; got.push(f); }
            Some(f) = b.next_within(Duration::from_secs(20)) => { b.ack(&f, r#"{"code":200}"#, None).await; got.push(f); }
        }
    }
    // Nothing more arrives on either: no broadcast.
    assert!(a.next_within(Duration::from_millis(300)).await.is_none());
    assert!(b.next_within(Duration::from_millis(300)).await.is_none());
    let texts: Vec<String> = got
        .iter()
        .map(|f| serde_json::from_slice::<Value>(f.payload.as_ref().unwrap()).unwrap()["event"]["message"]["content"].as_str().unwrap().to_string())
        .collect();
    let mut sorted = texts.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 4, "{texts:?}");
}

#[tokio::test]
async fn the_51st_connection_of_an_app_is_refused_with_514_and_1000040350() {
    let app = TestApp::demo().await;
    let base = served(&app).await;
    let (id, secret) = (app.app_id("demo-bot"), app.secret("demo-bot"));
    let mut open = Vec::new();
    for _ in 0..50 {
        open.push(Client::open(&base, &id, &secret).await.unwrap());
    }
    let r = Client::open(&base, &id, &secret).await.err().expect("the 51st is refused");
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.headers["handshake-status"], "514");
    assert_eq!(r.headers["handshake-autherrcode"], "1000040350");
    assert!(!r.headers["handshake-msg"].is_empty());
    assert_eq!(r.body["code"], 1000040350);
    // Another app is not affected.
    Client::open(&base, &app.app_id("helper-bot"), &app.secret("helper-bot")).await.unwrap();
    assert_eq!(app.connections().await["counts"][&id], 50);
    // A closed one frees its slot.
    let gone = open.pop().unwrap();
    let r = app.lc_control(Method::DELETE, &format!("/_larkstack/connections/{}", gone.conn_id), None).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let mut reopened = None;
    for _ in 0..100 {
        if let Ok(c) = Client::open(&base, &id, &secret).await {
            reopened = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reopened.is_some());
}

#[tokio::test]
async fn a_server_side_close_ends_the_socket_and_events_wait_for_the_reconnect() {
    let app = TestApp::demo().await;
    let base = served(&app).await;
    app.long_connection("demo-bot").await;
    let (id, secret) = (app.app_id("demo-bot"), app.secret("demo-bot"));
    let mut c = Client::open(&base, &id, &secret).await.unwrap();
    let r = app.lc_control(Method::DELETE, &format!("/_larkstack/connections/{}", c.conn_id), None).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    // The client sees a close frame.
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(10), c.ws.next()).await.unwrap() {
            Some(Ok(Message::Close(f))) => break f,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(closed.map(|f| u16::from(f.code)), Some(1000));
    for _ in 0..100 {
        if app.connections().await["items"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.connections().await["items"], json!([]));
    assert_eq!(app.lc_control(Method::DELETE, &format!("/_larkstack/connections/{}", c.conn_id), None).await.code(), 404);
    // Meanwhile an event waits; the reconnected client gets it.
    let chat = app.chat_with_alice().await;
    app.user_says(&chat, "while you were away").await;
    let mut again = Client::open(&base, &id, &secret).await.unwrap();
    let (event, frame, _) = again.event().await;
    assert_eq!(event["event"]["message"]["content"], json!({"text": "while you were away"}).to_string());
    again.ack(&frame, r#"{"code":200}"#, None).await;
    // Closing by app closes them all.
    let _third = Client::open(&base, &id, &secret).await.unwrap();
    let r = app.lc_control(Method::DELETE, &format!("/_larkstack/connections?app_id={id}"), None).await;
    assert_eq!(r.body["data"]["closed"], 2, "{}", r.body);
    assert_eq!(app.lc_control(Method::DELETE, "/_larkstack/connections", None).await.code(), 400);
}
