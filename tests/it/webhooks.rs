//! Webhook delivery of Feishu events: a raw-TCP receiver (so header case is visible) checks the
//! `X-Lark-*` signature and decrypts the body with its own crypto, independent of larkstack's.

use std::sync::Arc;
use std::time::Duration;

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, KeyIvInit};
use axum::http::Method;
use base64::Engine;
use parking_lot::Mutex;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// One request as the receiver read it.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    /// Header lines exactly as sent (name case kept).
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// How the receiver answers.
#[derive(Clone, Copy)]
pub(crate) enum Answer {
    /// Echo challenges, 200 `{"msg":"success"}` to events.
    Good,
    /// 200 `{}` to everything (never echoes a challenge).
    NoEcho,
}

#[derive(Clone)]
pub(crate) struct Receiver {
    pub(crate) url: String,
    pub(crate) got: Arc<Mutex<Vec<Received>>>,
    /// Events (not challenges) still to fail with HTTP 500.
    pub(crate) fail_next: Arc<Mutex<u32>>,
    /// While set, events are read and kept but never answered (a receiver stuck mid-delivery).
    pub(crate) hold: Arc<std::sync::atomic::AtomicBool>,
    /// TCP connections accepted (the receiver keeps each alive for further requests).
    pub(crate) connections: Arc<std::sync::atomic::AtomicUsize>,
}

fn decrypt(key: &str, b64: &str) -> Vec<u8> {
    let blob = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    let k: [u8; 32] = Sha256::digest(key.as_bytes()).into();
    let iv: [u8; 16] = blob[..16].try_into().unwrap();
    cbc::Decryptor::<aes::Aes256>::new(&k.into(), &iv.into()).decrypt_padded_vec_mut::<Pkcs7>(&blob[16..]).unwrap()
}

/// The JSON a receiver with `key` sees: decrypted when encrypted.
pub(crate) fn plain(key: &str, body: &[u8]) -> Value {
    let v: Value = serde_json::from_slice(body).unwrap();
    match v.get("encrypt").and_then(Value::as_str) {
        Some(e) => serde_json::from_slice(&decrypt(key, e)).unwrap(),
        None => v,
    }
}

pub(crate) fn check_signature(key: &str, r: &Received) {
    let ts = r.header("X-Lark-Request-Timestamp").expect("title-cased X-Lark-Request-Timestamp");
    let nonce = r.header("X-Lark-Request-Nonce").expect("title-cased X-Lark-Request-Nonce");
    let sig = r.header("X-Lark-Signature").expect("title-cased X-Lark-Signature");
    let mut h = Sha256::new();
    h.update(ts.as_bytes());
    h.update(nonce.as_bytes());
    h.update(key.as_bytes());
    h.update(&r.body);
    assert_eq!(sig, hex::encode(h.finalize()));
    assert!(ts.len() == 10 && ts.chars().all(|c| c.is_ascii_digit()), "{ts}");
}

pub(crate) async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.to_string(), v.trim().to_string())))
        .collect();
    let len: usize = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-length")).map(|(_, v)| v.parse().unwrap()).unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Received { headers, body })
}

impl Receiver {
    /// A receiver that decrypts with `key` (to answer challenges).
    pub(crate) async fn start(key: &str, answer: Answer) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/webhook", listener.local_addr().unwrap());
        let r = Receiver { url, got: Arc::default(), fail_next: Arc::default(), hold: Arc::default(), connections: Arc::default() };
        let (me, key) = (r.clone(), key.to_string());
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else { return };
                me.connections.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (me, key) = (me.clone(), key.clone());
                tokio::spawn(async move {
                    while let Some(req) = read_request(&mut sock).await {
                        let v = plain(&key, &req.body);
                        me.got.lock().push(req);
                        if v["schema"] == "2.0" && me.hold.load(std::sync::atomic::Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                        }
                        let (status, body) = match (answer, v.get("type").and_then(Value::as_str)) {
                            (Answer::NoEcho, _) => (200, "{}".to_string()),
                            (Answer::Good, Some("url_verification")) => (200, json!({"challenge": v["challenge"]}).to_string()),
                            (Answer::Good, _) => {
                                let mut f = me.fail_next.lock();
                                if *f > 0 {
                                    *f -= 1;
                                    (500, r#"{"msg":"down"}"#.to_string())
                                } else {
                                    (200, r#"{"msg":"success"}"#.to_string())
                                }
                            }
                        };
                        let reply = format!("HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                        if sock.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        r
    }

    pub(crate) fn events(&self, key: &str) -> Vec<(Received, Value)> {
        self.got.lock().iter().map(|r| (r.clone(), plain(key, &r.body))).filter(|(_, v)| v["schema"] == "2.0").collect()
    }

    fn challenges(&self, key: &str) -> Vec<Value> {
        self.got.lock().iter().map(|r| plain(key, &r.body)).filter(|v| v["type"] == "url_verification").collect()
    }

    /// Waits (real time, generously) until `n` events arrived.
    pub(crate) async fn wait_events(&self, key: &str, n: usize) -> Vec<(Received, Value)> {
        for _ in 0..1000 {
            let e = self.events(key);
            if e.len() >= n {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{n} events did not arrive: {:?}", self.events(key));
    }
}

impl TestApp {
    pub(crate) async fn admin_call(&self, method: Method, uri: &str, body: Option<Value>) -> Reply {
        let token = self.state.admin_token.clone();
        self.call(method, uri, &token, body).await
    }

    pub(crate) async fn subscribe(&self, app_key: &str, body: Value) -> Reply {
        self.admin_call(Method::PUT, &format!("/_larkstack/apps/{}/events", self.app_id(app_key)), Some(body)).await
    }

    /// A group chat made by demo-bot with alice and bob.
    async fn group(&self) -> String {
        let t = self.token("demo-bot").await;
        let (a, b) = (self.open_id("demo-bot", "alice"), self.open_id("demo-bot", "bob"));
        self.new_chat(&t, json!({"name": "hooks", "owner_id": a, "user_id_list": [b]})).await
    }

    /// Stops larkstack's clock, so a retry fires only when a test moves it.
    async fn freeze_clock(&self) {
        let r = self.admin_call(Method::POST, "/_larkstack/clock", Some(json!({"freeze": true}))).await;
        assert_eq!(r.code(), 0, "{}", r.body);
    }

    /// Waits until the engine has fanned out every event committed so far.
    async fn fanned_out(&self) {
        let events = self.admin_call(Method::GET, "/_larkstack/events?limit=1000", None).await;
        let last = events.body["data"]["items"].as_array().unwrap().last().unwrap()["seq"].as_i64().unwrap();
        for _ in 0..1000 {
            let d = self.admin_call(Method::GET, "/_larkstack/deliveries", None).await;
            if d.body["data"]["fanned_out_seq"].as_i64().unwrap() >= last {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the fan-out did not reach seq {last}");
    }

    async fn say(&self, chat_id: &str, user: &str, text: &str) {
        let r = self.admin_call(Method::POST, &format!("/_larkstack/chats/{chat_id}/messages"), Some(json!({"user": user, "text": text}))).await;
        assert_eq!(r.code(), 0, "{}", r.body);
    }
}

#[tokio::test]
async fn a_users_message_reaches_the_bot_encrypted_signed_and_decodable() {
    let app = TestApp::demo().await;
    let key = "k1-encrypt-key";
    let rx = Receiver::start(key, Answer::Good).await;
    let r = app.subscribe("demo-bot", json!({"event_url": rx.url, "encrypt_key": key, "verification_token": "vt-1"})).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    assert_eq!(r.body["data"]["encrypt_key"], key);
    assert_eq!(r.body["data"]["verification_token"], "vt-1");
    assert_eq!(r.body["data"]["event_mode"], "webhook");
    assert!(r.body["data"]["event_types"].as_array().unwrap().contains(&json!("im.message.receive_v1")));
    // The challenge came encrypted, with the token.
    let ch = rx.challenges(key);
    assert_eq!(ch.len(), 1);
    assert_eq!(ch[0]["token"], "vt-1");
    assert!(serde_json::from_slice::<Value>(&rx.got.lock()[0].body).unwrap().get("encrypt").is_some());

    let chat = app.group().await;
    app.say(&chat, "alice", "hello bot").await;
    let got = rx.wait_events(key, 1).await;
    let (req, v) = &got[0];
    check_signature(key, req);
    assert!(!String::from_utf8_lossy(&req.body).contains(": "), "compact JSON");
    let h = &v["header"];
    assert_eq!(h["event_type"], "im.message.receive_v1");
    assert_eq!(h["token"], "vt-1");
    assert_eq!(h["app_id"], app.app_id("demo-bot"));
    let event_id = h["event_id"].as_str().unwrap();
    assert!(event_id.len() == 32 && event_id.chars().all(|c| c.is_ascii_hexdigit()), "{event_id}");
    assert!(h["create_time"].as_str().unwrap().len() >= 13);
    assert_eq!(v["event"]["message"]["chat_id"], chat);
    assert_eq!(v["event"]["message"]["content"], json!({"text": "hello bot"}).to_string());
    assert_eq!(v["event"]["sender"]["sender_id"]["open_id"], app.open_id("demo-bot", "alice"));
    assert_eq!(v["event"]["sender"]["sender_type"], "user");

    // The attempt is listed (once recorded: the receiver may see it first).
    let mut d = app.admin_call(Method::GET, &format!("/_larkstack/deliveries?event_id={event_id}"), None).await;
    for _ in 0..500 {
        if !d.body["data"]["items"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        d = app.admin_call(Method::GET, &format!("/_larkstack/deliveries?event_id={event_id}"), None).await;
    }
    let items = d.body["data"]["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", d.body);
    assert_eq!((items[0]["status"].as_i64(), items[0]["delivered"].as_bool()), (Some(200), Some(true)));
    assert_eq!(items[0]["url"], rx.url);
    assert_eq!(items[0]["response"], r#"{"msg":"success"}"#);
    assert_eq!(items[0]["next_retry_ms"], Value::Null);

    // The GET shows the same settings.
    let g = app.admin_call(Method::GET, &format!("/_larkstack/apps/{}/events", app.app_id("demo-bot")), None).await;
    assert_eq!(g.body["data"], r.body["data"]);
}

#[tokio::test]
async fn without_an_encrypt_key_the_body_is_the_plain_envelope() {
    let app = TestApp::demo().await;
    let rx = Receiver::start("", Answer::Good).await;
    let r = app.subscribe("demo-bot", json!({"event_url": rx.url, "encrypt_key": ""})).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    assert_eq!(rx.challenges("").len(), 1);
    let chat = app.group().await;
    app.say(&chat, "bob", "plain").await;
    let got = rx.wait_events("", 1).await;
    let raw: Value = serde_json::from_slice(&got[0].0.body).unwrap();
    assert_eq!(raw["schema"], "2.0");
    assert_eq!(raw["event"]["message"]["content"], json!({"text": "plain"}).to_string());
    check_signature("", &got[0].0);
}

#[tokio::test]
async fn a_url_that_does_not_echo_the_challenge_is_refused() {
    let app = TestApp::demo().await;
    let rx = Receiver::start("", Answer::NoEcho).await;
    let r = app.subscribe("demo-bot", json!({"event_url": rx.url, "encrypt_key": ""})).await;
    assert_ne!(r.code(), 0);
    assert!(r.body["msg"].as_str().unwrap().contains("challenge"), "{}", r.body);
    // Nothing changed.
    let g = app.admin_call(Method::GET, &format!("/_larkstack/apps/{}/events", app.app_id("demo-bot")), None).await;
    assert_eq!(g.body["data"]["event_url"], Value::Null);
    // A dead URL is refused too.
    let r = app.subscribe("demo-bot", json!({"event_url": "http://127.0.0.1:1/x"})).await;
    assert_ne!(r.code(), 0, "{}", r.body);
    // A type whose scope the app lacks is refused, naming the scope.
    let r = app.subscribe("helper-bot", json!({"event_types": ["im.message.receive_v1"]})).await;
    assert!(r.body["msg"].as_str().unwrap().contains("im:message.p2p_msg:readonly"), "{}", r.body);
}

#[tokio::test]
async fn a_failing_receiver_is_retried_on_the_advanced_clock_with_the_same_event_id() {
    let app = TestApp::demo().await;
    let key = "retry-key";
    let rx = Receiver::start(key, Answer::Good).await;
    assert_eq!(app.subscribe("demo-bot", json!({"event_url": rx.url, "encrypt_key": key})).await.code(), 0);
    app.freeze_clock().await;
    *rx.fail_next.lock() = 1;
    let chat = app.group().await;
    app.say(&chat, "alice", "try again").await;
    let first = rx.wait_events(key, 1).await;
    let event_id = first[0].1["header"]["event_id"].as_str().unwrap().to_string();
    // The failed attempt is listed with its retry 15 s later.
    let mut listed = Value::Null;
    for _ in 0..500 {
        let d = app.admin_call(Method::GET, &format!("/_larkstack/deliveries?event_id={event_id}"), None).await;
        if !d.body["data"]["items"].as_array().unwrap().is_empty() {
            listed = d.body["data"]["items"][0].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(listed["status"], 500, "{listed}");
    assert_eq!(listed["delivered"], false);
    assert_eq!(listed["next_retry_ms"].as_i64().unwrap() - listed["at_ms"].as_i64().unwrap(), 15_000);
    // Not before the clock says so: a later message still goes through meanwhile.
    app.say(&chat, "alice", "meanwhile").await;
    let got = rx.wait_events(key, 2).await;
    assert_eq!(got[1].1["event"]["message"]["content"], json!({"text": "meanwhile"}).to_string());
    assert_eq!(rx.events(key).len(), 2);
    let r = app.admin_call(Method::POST, "/_larkstack/clock", Some(json!({"advance": "15s"}))).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let got = rx.wait_events(key, 3).await;
    assert_eq!(got[2].1["header"]["event_id"], event_id.as_str());
    assert_eq!(got[2].1["event"]["message"]["content"], json!({"text": "try again"}).to_string());

    // Redelivery sends it once more, same id.
    let r = app.admin_call(Method::POST, &format!("/_larkstack/events/{event_id}/redeliver"), None).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let got = rx.wait_events(key, 4).await;
    assert_eq!(got[3].1["header"]["event_id"], event_id.as_str());
    let r = app.admin_call(Method::POST, "/_larkstack/events/00000000000000000000000000000000/redeliver", None).await;
    assert_ne!(r.code(), 0);
}

#[tokio::test]
async fn unsubscribed_types_and_long_connection_apps_get_no_webhook() {
    let app = TestApp::demo().await;
    let rx = Receiver::start("", Answer::Good).await;
    let r = app.subscribe("demo-bot", json!({"event_url": rx.url, "encrypt_key": "", "event_types": ["im.chat.updated_v1"]})).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let chat = app.group().await;
    app.say(&chat, "alice", "not for you").await;
    app.fanned_out().await;
    // Switch to receive_v1: the next message arrives, the earlier one never does.
    assert_eq!(app.subscribe("demo-bot", json!({"event_types": ["im.message.receive_v1"]})).await.code(), 0);
    app.say(&chat, "alice", "for you").await;
    let got = rx.wait_events("", 1).await;
    assert_eq!(got[0].1["event"]["message"]["content"], json!({"text": "for you"}).to_string());
    assert_eq!(got.len(), 1);
}

fn demo_with(helper_keys: &str) -> Result<larkstack::domain::directory::Directory, String> {
    let text = larkstack::domain::directory::DEMO_FIXTURE.replace("key = \"helper-bot\"", &format!("key = \"helper-bot\"\n{helper_keys}"));
    larkstack::domain::directory::Directory::from_toml(&text).map_err(|e| e.to_string())
}

#[tokio::test]
async fn fixture_keys_set_the_subscription_and_the_directory_shows_it() {
    let dir = demo_with("event_url = \"http://127.0.0.1:9/hook\"\nencrypt_key = \"\"\nverification_token = \"vt\"\nevent_types = [\"im.chat.disbanded_v1\"]\nevent_mode = \"long_connection\"\ncallback_url = \"http://127.0.0.1:9/card\"").unwrap();
    let app = TestApp::with(dir, larkstack::state::StateConfig::default()).await;
    let r = app.admin_call(Method::GET, &format!("/_larkstack/apps/{}/events", app.app_id("helper-bot")), None).await;
    assert_eq!(
        r.body["data"],
        json!({"event_url": "http://127.0.0.1:9/hook", "encrypt_key": "", "verification_token": "vt",
               "event_types": ["im.chat.disbanded_v1"], "event_mode": "long_connection", "callback_url": "http://127.0.0.1:9/card"})
    );
    let d = app.admin_call(Method::GET, "/_larkstack/directory", None).await;
    let helper = d.body["data"]["apps"].as_array().unwrap().iter().find(|a| a["key"] == "helper-bot").unwrap().clone();
    assert_eq!(helper["events"], r.body["data"]);
    // Defaults: derived secrets (stable), every type the scopes allow, webhook, no URL.
    let demo = app.admin_call(Method::GET, &format!("/_larkstack/apps/{}/events", app.app_id("demo-bot")), None).await;
    let again = TestApp::demo().await;
    let demo2 = again.admin_call(Method::GET, &format!("/_larkstack/apps/{}/events", again.app_id("demo-bot")), None).await;
    assert_eq!(demo.body["data"], demo2.body["data"]);
    assert_eq!(demo.body["data"]["event_url"], Value::Null);
    assert_eq!(demo.body["data"]["event_mode"], "webhook");
    assert_eq!(demo.body["data"]["encrypt_key"].as_str().unwrap().len(), 32);
    assert!(demo.body["data"]["event_types"].as_array().unwrap().contains(&json!("im.chat.member.user.added_v1")));
    assert!(!demo.body["data"]["event_types"].as_array().unwrap().contains(&json!("im.chat.access_event.bot_p2p_chat_entered_v1")));
    assert!(demo.body["data"]["event_types"].as_array().unwrap().contains(&json!("im.chat.updated_v1")));
    // A type whose scope the app lacks is refused at load, naming the scope.
    let err = demo_with("event_types = [\"im.message.receive_v1\"]").unwrap_err();
    assert!(err.contains("im:message.p2p_msg:readonly") && err.contains("helper-bot"), "{err}");
    // A long-connection app gets no webhook even with a URL.
    let rx = Receiver::start("", Answer::Good).await;
    assert_eq!(app.subscribe("demo-bot", json!({"event_url": rx.url, "encrypt_key": "", "event_mode": "long_connection"})).await.code(), 0);
    assert!(rx.challenges("").is_empty());
    let chat = app.group().await;
    app.say(&chat, "alice", "over ws").await;
    app.fanned_out().await;
    assert!(rx.events("").is_empty());
}

/// The demo directory, demo-bot subscribed (plain, every type) to a receiver that answers 200.
async fn demo_bot_hooked() -> (TestApp, Receiver) {
    let app = TestApp::demo().await;
    let rx = Receiver::start("", Answer::Good).await;
    assert_eq!(app.subscribe("demo-bot", json!({"event_url": rx.url, "encrypt_key": ""})).await.code(), 0);
    (app, rx)
}

#[tokio::test]
async fn metrics_count_deliveries_by_type_and_outcome() {
    let (app, rx) = demo_bot_hooked().await;
    app.freeze_clock().await;
    *rx.fail_next.lock() = 1;
    let chat = app.group().await;
    app.say(&chat, "alice", "m1").await;
    app.say(&chat, "alice", "m2").await;
    rx.wait_events("", 2).await;
    let mut text = String::new();
    for _ in 0..500 {
        let (_, _, body) = app.raw(Method::GET, "/metrics", &[("authorization", &format!("Bearer {}", app.state.admin_token))], None).await;
        text = String::from_utf8(body).unwrap();
        if text.contains(r#"larkstack_event_deliveries_total{event_type="im.message.receive_v1",outcome="delivered"} 1"#) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(text.contains(r#"larkstack_event_deliveries_total{event_type="im.message.receive_v1",outcome="retry"} 1"#), "{text}");
    assert!(text.contains(r#"larkstack_event_deliveries_total{event_type="im.message.receive_v1",outcome="delivered"} 1"#), "{text}");
    assert!(text.contains("larkstack_event_delivery_latency_seconds_count 1"), "{text}");
    assert!(text.contains("larkstack_event_delivery_queue 1"), "{text}");
    // Each stage of both attempts (the failed one included), each delivery fanned out once.
    for stage in ["fanned_out", "sent", "acked", "recorded"] {
        let count = format!("larkstack_event_delivery_stage_seconds_count{{stage=\"{stage}\"}} 2");
        assert!(text.contains(&count), "{count} in {text}");
    }
}

/// The fan-out keeps what it knows of a chat from one batch to the next (its bots, so that a
/// message costs no read of its chat): a bot that leaves stops hearing the chat's messages and
/// hears them again once a user adds it back.
#[tokio::test]
async fn a_bot_that_leaves_and_comes_back_hears_only_what_is_said_while_it_is_in() {
    let (app, rx) = demo_bot_hooked().await;
    let chat = app.group().await;
    let demo = app.app_id("demo-bot");
    app.say(&chat, "alice", "in 1").await;
    app.fanned_out().await;
    let token = app.token("demo-bot").await;
    let uri = format!("/open-apis/im/v1/chats/{chat}/members?member_id_type=app_id");
    assert_eq!(app.call(Method::DELETE, &uri, &token, Some(json!({"id_list": [demo]}))).await.code(), 0);
    app.fanned_out().await;
    app.say(&chat, "alice", "out").await;
    app.fanned_out().await;
    let r = app.admin_call(Method::POST, &format!("/_larkstack/chats/{chat}/bots"), Some(json!({"user": "alice", "app_id": demo}))).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    app.fanned_out().await;
    app.say(&chat, "alice", "in 2").await;
    app.fanned_out().await;
    let got = rx.wait_events("", 4).await;
    let types: Vec<&str> = got.iter().map(|(_, v)| v["header"]["event_type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["im.message.receive_v1", "im.chat.member.bot.deleted_v1", "im.chat.member.bot.added_v1", "im.message.receive_v1"]
    );
    assert_eq!(receive_v1_texts(&rx), ["in 1", "in 2"]);
}

#[tokio::test]
async fn delivery_faults_fail_the_next_attempts_and_deliver_twice() {
    let (app, rx) = demo_bot_hooked().await;
    app.freeze_clock().await;
    let bot = app.app_id("demo-bot");
    let r = app.admin_call(Method::POST, "/_larkstack/faults/deliveries", Some(json!({"app_id": bot, "fail_next": 1, "deliver_twice": 1}))).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    assert_eq!(r.body["data"]["items"], json!([{"app_id": bot, "fail_next": 1, "delay_ms": 0, "deliver_twice": 1}]));
    let chat = app.group().await;
    app.say(&chat, "alice", "faulty").await;
    // The first attempt fails without reaching the receiver; the retry is sent twice.
    let mut items = Vec::new();
    for _ in 0..500 {
        let d = app.admin_call(Method::GET, "/_larkstack/deliveries", None).await;
        items = d.body["data"]["items"].as_array().unwrap().clone();
        if !items.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(items[0]["status"], Value::Null, "{items:?}");
    assert!(items[0]["response"].as_str().unwrap().contains("fault"));
    assert!(rx.events("").is_empty());
    assert_eq!(app.admin_call(Method::POST, "/_larkstack/clock", Some(json!({"advance": "15s"}))).await.code(), 0);
    let got = rx.wait_events("", 2).await;
    assert_eq!(got[0].1["header"]["event_id"], got[1].1["header"]["event_id"]);
    assert_eq!(got[0].1["header"]["event_id"], items[0]["event_id"]);
    // Cleared.
    let r = app.admin_call(Method::DELETE, "/_larkstack/faults/deliveries", None).await;
    assert_eq!(r.body["data"]["items"], json!([]));
}

#[tokio::test]
async fn after_a_reset_the_new_outbox_is_delivered_from_its_start() {
    let (app, rx) = demo_bot_hooked().await;
    let chat = app.group().await;
    app.say(&chat, "alice", "before").await;
    rx.wait_events("", 1).await;
    assert_eq!(app.admin_call(Method::POST, "/_larkstack/reset", None).await.code(), 0);
    // Seqs start over at 1: the engine must not skip them.
    let chat = app.group().await;
    app.say(&chat, "alice", "after").await;
    let got = rx.wait_events("", 2).await;
    assert_eq!(got[1].1["event"]["message"]["content"], json!({"text": "after"}).to_string());
}

#[tokio::test]
async fn a_chats_events_reach_the_app_in_commit_order() {
    let (app, rx) = demo_bot_hooked().await;
    let (a, b) = (app.group().await, app.group().await);
    for i in 0..20 {
        app.say(&a, "alice", &format!("a{i}")).await;
        app.say(&b, "bob", &format!("b{i}")).await;
    }
    let got = rx.wait_events("", 40).await;
    let texts = |chat: &str| -> Vec<String> {
        got.iter()
            .filter(|(_, v)| v["event"]["message"]["chat_id"] == chat)
            .map(|(_, v)| serde_json::from_str::<Value>(v["event"]["message"]["content"].as_str().unwrap()).unwrap()["text"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(texts(&a), (0..20).map(|i| format!("a{i}")).collect::<Vec<_>>());
    assert_eq!(texts(&b), (0..20).map(|i| format!("b{i}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn deliveries_to_one_receiver_reuse_a_kept_alive_connection() {
    let (app, rx) = demo_bot_hooked().await;
    let chat = app.group().await;
    for i in 0..10 {
        app.say(&chat, "alice", &format!("m{i}")).await;
    }
    rx.wait_events("", 10).await;
    // The challenge and ten events: one connection (two if the pool let the first one idle out).
    let connections = rx.connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!(connections <= 2, "{connections} connections for 11 requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_acknowledged_before_a_kill_9_are_delivered_after_the_restart() {
    let rx = Receiver::start("", Answer::Good).await;
    // Every attempt fails until the restart: the deliveries are pending when the node dies.
    *rx.fail_next.lock() = u32::MAX;
    let data = tempfile::tempdir().unwrap();
    let text = larkstack::domain::directory::DEMO_FIXTURE
        .replace("key = \"demo-bot\"", &format!("key = \"demo-bot\"\nevent_url = \"{}\"\nencrypt_key = \"\"", rx.url));
    let fixture = write_fixture(data.path(), &text);
    let db = data.path().join("db");
    let server = Server::spawn(&db, Some(&fixture), &["--rate-limits", "off"]);
    let client = reqwest::Client::new();
    let token: Value = client
        .post(server.url("/open-apis/auth/v3/tenant_access_token/internal"))
        .json(&json!({"app_id": DEMO_APP_ID, "app_secret": DEMO_SECRET}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["tenant_access_token"].as_str().unwrap().to_string();
    let chat: Value = client
        .post(server.url("/open-apis/im/v1/chats?user_id_type=user_id"))
        .bearer_auth(&token)
        .json(&json!({"name": "durable events"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let chat_id = chat["data"]["chat_id"].as_str().unwrap().to_string();
    let admin = std::fs::read_to_string(db.join("admin-token")).unwrap().trim().to_string();
    let control = |path: String, body: Value| {
        let (client, admin) = (client.clone(), admin.clone());
        async move { client.post(path).bearer_auth(admin).json(&body).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    assert_eq!(control(server.url(&format!("/_larkstack/chats/{chat_id}/join")), json!({"user": "alice"})).await["code"], 0);
    for i in 0..20 {
        let r = control(server.url(&format!("/_larkstack/chats/{chat_id}/messages")), json!({"user": "alice", "text": format!("d{i}")})).await;
        assert_eq!(r["code"], 0, "{r}");
    }
    // At least one attempt failed: the node is mid-delivery.
    for _ in 0..1000 {
        if !rx.got.lock().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill9();
    let ids_before: std::collections::HashSet<String> =
        rx.events("").iter().map(|(_, v)| v["header"]["event_id"].as_str().unwrap().to_string()).collect();
    // Only what arrives from here on counts (the failed attempts above were refused).
    rx.got.lock().clear();
    *rx.fail_next.lock() = 0;
    let server = Server::spawn(&db, Some(&fixture), &["--rate-limits", "off"]);
    // Attempts that failed before the kill keep their retry schedule across the restart: move the
    // clock past their first retry.
    let r = client.post(server.url("/_larkstack/clock")).bearer_auth(&admin).json(&json!({"advance": "15s"})).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["code"], 0);
    let mut texts: Vec<String> = Vec::new();
    for _ in 0..1500 {
        texts = rx
            .events("")
            .iter()
            .filter(|(_, v)| v["header"]["event_type"] == "im.message.receive_v1")
            .map(|(_, v)| serde_json::from_str::<Value>(v["event"]["message"]["content"].as_str().unwrap()).unwrap()["text"].as_str().unwrap().to_string())
            .collect();
        if (0..20).all(|i| texts.contains(&format!("d{i}"))) {
            // A redelivered event keeps its event_id across the restart (receivers de-duplicate).
            let after: std::collections::HashSet<String> =
                rx.events("").iter().map(|(_, v)| v["header"]["event_id"].as_str().unwrap().to_string()).collect();
            assert!(!ids_before.is_empty());
            if ids_before.is_subset(&after) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after: std::collections::HashSet<String> =
        rx.events("").iter().map(|(_, v)| v["header"]["event_id"].as_str().unwrap().to_string()).collect();
    panic!("not every acknowledged message was delivered after the restart, or a failed one not again with its event_id: {texts:?}; {ids_before:?} vs {after:?}");
}

/// The text of a `receive_v1` event's message.
pub(crate) fn message_text(v: &Value) -> String {
    serde_json::from_str::<Value>(v["event"]["message"]["content"].as_str().unwrap()).unwrap()["text"].as_str().unwrap().to_string()
}

/// How many times each event_id reached the receiver.
pub(crate) fn counts_by_event_id(events: &[(Received, Value)]) -> std::collections::HashMap<String, usize> {
    let mut counts = std::collections::HashMap::new();
    for (_, v) in events {
        *counts.entry(v["header"]["event_id"].as_str().unwrap().to_string()).or_insert(0) += 1;
    }
    counts
}

/// A spawned node and what a test calls it with.
struct Node {
    server: Server,
    client: reqwest::Client,
    admin: String,
}

impl Node {
    fn spawn(db: &std::path::Path, fixture: &std::path::Path) -> Node {
        let server = Server::spawn(db, Some(fixture), &["--rate-limits", "off"]);
        let admin = std::fs::read_to_string(db.join("admin-token")).unwrap().trim().to_string();
        Node { server, client: reqwest::Client::new(), admin }
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.client.request(method, self.server.url(path)).bearer_auth(&self.admin);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.unwrap().json().await.unwrap()
    }

    /// A chat made by demo-bot that alice has joined.
    async fn chat_with_alice(&self) -> String {
        let token: Value = self
            .client
            .post(self.server.url("/open-apis/auth/v3/tenant_access_token/internal"))
            .json(&json!({"app_id": DEMO_APP_ID, "app_secret": DEMO_SECRET}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let chat: Value = self
            .client
            .post(self.server.url("/open-apis/im/v1/chats"))
            .bearer_auth(token["tenant_access_token"].as_str().unwrap())
            .json(&json!({"name": "restarts"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let chat_id = chat["data"]["chat_id"].as_str().unwrap().to_string();
        let joined = self.admin(reqwest::Method::POST, &format!("/_larkstack/chats/{chat_id}/join"), Some(json!({"user": "alice"}))).await;
        assert_eq!(joined["code"], 0, "{joined}");
        chat_id
    }

    async fn say(&self, chat_id: &str, text: &str) {
        let r = self.admin(reqwest::Method::POST, &format!("/_larkstack/chats/{chat_id}/messages"), Some(json!({"user": "alice", "text": text}))).await;
        assert_eq!(r["code"], 0, "{r}");
    }

    /// Waits until every event is fanned out and every delivery finished.
    async fn settled(&self) {
        for _ in 0..1000 {
            let events = self.admin(reqwest::Method::GET, "/_larkstack/events?limit=1000", None).await;
            let last = events["data"]["items"].as_array().unwrap().last().map(|e| e["seq"].as_i64().unwrap()).unwrap_or(0);
            let d = self.admin(reqwest::Method::GET, "/_larkstack/deliveries?limit=1", None).await;
            if d["data"]["fanned_out_seq"].as_i64() == Some(last) && d["data"]["queue_depth"] == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("deliveries did not settle");
    }
}

fn receive_v1_texts(rx: &Receiver) -> Vec<String> {
    rx.events("").iter().filter(|(_, v)| v["header"]["event_type"] == "im.message.receive_v1").map(|(_, v)| message_text(v)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resends_nothing_delivered_and_keeps_run_time_settings() {
    let rx = Receiver::start("", Answer::Good).await;
    let data = tempfile::tempdir().unwrap();
    let fixture = write_fixture(data.path(), larkstack::domain::directory::DEMO_FIXTURE);
    let db = data.path().join("db");
    let node = Node::spawn(&db, &fixture);
    let chat = node.chat_with_alice().await;
    // The request URL is set at run time, not in the fixture.
    let put = node
        .admin(reqwest::Method::PUT, &format!("/_larkstack/apps/{DEMO_APP_ID}/events"), Some(json!({"event_url": rx.url, "encrypt_key": ""})))
        .await;
    assert_eq!(put["code"], 0, "{put}");
    for i in 0..5 {
        node.say(&chat, &format!("r{i}")).await;
    }
    node.settled().await;
    assert_eq!(receive_v1_texts(&rx), ["r0", "r1", "r2", "r3", "r4"]);
    node.server.kill9();

    let node = Node::spawn(&db, &fixture);
    let got = node.admin(reqwest::Method::GET, &format!("/_larkstack/apps/{DEMO_APP_ID}/events"), None).await;
    assert_eq!(got["data"], put["data"], "the PUT survived the restart");
    node.say(&chat, "after").await;
    rx.wait_events("", 6).await;
    node.settled().await;
    // Give a wrongly re-fanned outbox time to show.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receive_v1_texts(&rx), ["r0", "r1", "r2", "r3", "r4", "after"]);
    let counts = counts_by_event_id(&rx.events(""));
    assert!(counts.values().all(|&n| n == 1), "an event was delivered twice: {counts:?}");
    // Attempts from before the restart are still listed.
    let listed = node.admin(reqwest::Method::GET, "/_larkstack/deliveries?type=im.message.receive_v1", None).await;
    assert_eq!(listed["data"]["items"].as_array().unwrap().len(), 6, "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_mid_delivery_loses_nothing_and_the_restart_sends_the_same_event_id() {
    let rx = Receiver::start("", Answer::Good).await;
    rx.hold.store(true, std::sync::atomic::Ordering::SeqCst);
    let data = tempfile::tempdir().unwrap();
    let text = larkstack::domain::directory::DEMO_FIXTURE
        .replace("key = \"demo-bot\"", &format!("key = \"demo-bot\"\nevent_url = \"{}\"\nencrypt_key = \"\"", rx.url));
    let fixture = write_fixture(data.path(), &text);
    let db = data.path().join("db");
    let node = Node::spawn(&db, &fixture);
    let chat = node.chat_with_alice().await;
    node.say(&chat, "held").await;
    // The receiver holds the first request: the node dies in the middle of it.
    let held = rx.wait_events("", 1).await[0].1["header"]["event_id"].as_str().unwrap().to_string();
    node.server.kill9();
    rx.hold.store(false, std::sync::atomic::Ordering::SeqCst);
    rx.got.lock().clear();

    // Restarted on its data dir, the node takes its lease back at once (no 10 s wait).
    let started = std::time::Instant::now();
    let _node = Node::spawn(&db, &fixture);
    let mut texts = Vec::new();
    for _ in 0..1000 {
        texts = receive_v1_texts(&rx);
        if texts.contains(&"held".to_string()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(texts, ["held"]);
    assert!(started.elapsed() < larkstack::delivery::LEASE, "took {:?}", started.elapsed());
    assert!(counts_by_event_id(&rx.events("")).contains_key(&held), "the held event came again with its event_id");
}
