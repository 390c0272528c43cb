//! Interactive-card callbacks: a user's click (`POST /_larkstack/messages/{id}/card_action`)
//! becomes `card.action.trigger` for the app that sent the card — to its `callback_url` (signed,
//! encrypted) or over its long connection — whose answer's `card` replaces the card and whose
//! `toast` comes back; and the delayed update (`POST /open-apis/interactive/v1/card/update`) with
//! the callback's `c-` token: two uses within 30 minutes of larkstack clock, the app's own only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Method;
use base64::Engine;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::longconn::{served, Client};
use crate::message_ops::{control_ok, send};
use crate::support::*;
use crate::webhooks::{check_signature, plain, read_request, Received};

const CARD_UPDATE: &str = "/open-apis/interactive/v1/card/update";

fn card(s: &str) -> String {
    json!({"config": {"wide_screen_mode": true}, "elements": [{"tag": "div", "text": {"tag": "plain_text", "content": s}}]}).to_string()
}

/// A callback receiver: answers `url_verification`, and every card callback with `answer`
/// after `delay`; keeps what it got.
#[derive(Clone)]
struct CardReceiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl CardReceiver {
    async fn start(key: &str, answer: Value, delay: Duration) -> CardReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = CardReceiver { url: format!("http://{}/card", listener.local_addr().unwrap()), got: Arc::default() };
        let (me, key) = (r.clone(), key.to_string());
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else { return };
                let (me, key, answer) = (me.clone(), key.clone(), answer.clone());
                tokio::spawn(async move {
                    let Some(req) = read_request(&mut sock).await else { return };
                    let v = plain(&key, &req.body);
                    let body = if v["type"] == "url_verification" {
                        json!({"challenge": v["challenge"]}).to_string()
                    } else {
                        me.got.lock().push(req);
                        tokio::time::sleep(delay).await;
                        answer.to_string()
                    };
                    let reply = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                    let _ = sock.write_all(reply.as_bytes()).await;
                });
            }
        });
        r
    }
}

/// A group of demo-bot with alice and bob, and a card demo-bot sent to it.
async fn card_in_group(app: &TestApp) -> (String, String) {
    let t = app.token("demo-bot").await;
    let (a, b) = (app.open_id("demo-bot", "alice"), app.open_id("demo-bot", "bob"));
    let chat = app.new_chat(&t, json!({"name": "cards", "owner_id": a, "user_id_list": [b]})).await;
    let message = send(app, &t, &chat, "interactive", &card("pick one")).await;
    (chat, message)
}

async fn settings(app: &TestApp, app_key: &str) -> Value {
    control_ok(app, Method::GET, &format!("/_larkstack/apps/{}/events", app.app_id(app_key)), None).await
}

async fn set_callback_url(app: &TestApp, app_key: &str, url: &str) {
    let path = format!("/_larkstack/apps/{}/events", app.app_id(app_key));
    let d = control_ok(app, Method::PUT, &path, Some(json!({"callback_url": url}))).await;
    assert_eq!(d["callback_url"], url);
}

async fn click(app: &TestApp, message: &str, body: Value) -> Reply {
    let token = app.state.admin_token.clone();
    app.call(Method::POST, &format!("/_larkstack/messages/{message}/card_action"), &token, Some(body)).await
}

async fn content_of(app: &TestApp, message: &str) -> Value {
    let t = app.token("demo-bot").await;
    let r = app.call(Method::GET, &format!("/open-apis/im/v1/messages/{message}"), &t, None).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    serde_json::from_str(r.body["data"]["items"][0]["body"]["content"].as_str().unwrap()).unwrap()
}

async fn listed_content(app: &TestApp, chat: &str, message: &str) -> Value {
    let t = app.token("demo-bot").await;
    let r = app.call(Method::GET, &format!("/open-apis/im/v1/messages?container_id_type=chat&container_id={chat}"), &t, None).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let item = r.body["data"]["items"].as_array().unwrap().iter().find(|m| m["message_id"] == message).unwrap().clone();
    serde_json::from_str(item["body"]["content"].as_str().unwrap()).unwrap()
}

/// A click answered `{}`: the token of the callback.
async fn token_of_a_click(app: &TestApp, message: &str) -> String {
    let key = settings(app, "demo-bot").await["encrypt_key"].as_str().unwrap().to_string();
    let receiver = CardReceiver::start(&key, json!({}), Duration::ZERO).await;
    set_callback_url(app, "demo-bot", &receiver.url).await;
    let r = click(app, message, json!({"user": "alice", "action": {"value": {"k": "v"}}})).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    assert_eq!(r.body["data"]["error"], Value::Null, "{}", r.body);
    assert_eq!(r.body["data"]["card_updated"], false);
    r.body["data"]["token"].as_str().unwrap().to_string()
}

async fn delayed_update(app: &TestApp, app_key: &str, token: &str, text: &str) -> Reply {
    let t = app.token(app_key).await;
    let mut card: Value = serde_json::from_str(&card(text)).unwrap();
    card["open_ids"] = json!([app.open_id(app_key, "alice")]);
    app.call(Method::POST, CARD_UPDATE, &t, Some(json!({"token": token, "card": card}))).await
}

#[tokio::test]
async fn a_click_goes_to_the_callback_url_signed_and_encrypted_and_its_card_and_toast_apply() {
    let app = TestApp::demo().await;
    let (chat, message) = card_in_group(&app).await;
    let key = settings(&app, "demo-bot").await["encrypt_key"].as_str().unwrap().to_string();
    assert!(!key.is_empty());
    let answer = json!({
        "toast": {"type": "success", "content": "saved", "i18n": {"zh_cn": "已保存", "en_us": "saved"}},
        "card": {"type": "raw", "data": {"elements": [{"tag": "div", "text": {"tag": "plain_text", "content": "done"}}]}},
    });
    let receiver = CardReceiver::start(&key, answer.clone(), Duration::ZERO).await;
    set_callback_url(&app, "demo-bot", &receiver.url).await;

    let action = json!({"value": {"choice": "a"}, "tag": "button", "name": "pick"});
    let r = click(&app, &message, json!({"user": "alice", "action": action})).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let d = &r.body["data"];
    assert_eq!(d["toast"], answer["toast"]);
    assert_eq!(d["card_updated"], true, "{d}");
    assert_eq!(d["error"], Value::Null);
    assert_eq!(d["callback"]["route"], "webhook");
    assert_eq!(d["callback"]["status"], 200);
    let token = d["token"].as_str().unwrap();
    assert!(token.starts_with("c-"), "{token}");

    // What the app received: signed, encrypted, in its id space.
    let got = receiver.got.lock().clone();
    assert_eq!(got.len(), 1);
    check_signature(&key, &got[0]);
    assert!(serde_json::from_slice::<Value>(&got[0].body).unwrap().get("encrypt").is_some(), "encrypted");
    let v = plain(&key, &got[0].body);
    assert_eq!(v["schema"], "2.0");
    let h = &v["header"];
    assert_eq!(h["event_type"], "card.action.trigger");
    assert_eq!(h["app_id"], app.app_id("demo-bot"));
    assert_eq!(h["token"], settings(&app, "demo-bot").await["verification_token"]);
    let create_time = h["create_time"].as_str().unwrap();
    assert_eq!(create_time.len(), 16, "microseconds: {create_time}");
    let ms = create_time.parse::<i64>().unwrap() / 1000;
    assert!((app.state.clock.now_ms() - ms).abs() < 10_000, "{create_time}");
    let e = &v["event"];
    assert_eq!(e["operator"]["open_id"], app.open_id("demo-bot", "alice"));
    assert!(e["operator"]["union_id"].as_str().unwrap().starts_with("on_"), "{e}");
    assert!(e["operator"]["user_id"].is_string(), "demo-bot has the employee-id scope: {e}");
    assert_eq!(e["operator"]["tenant_key"], h["tenant_key"]);
    assert_eq!(e["token"], token);
    assert_eq!(e["action"]["value"], json!({"choice": "a"}));
    assert_eq!(e["action"]["name"], "pick");
    assert_eq!(e["host"], "im_message");
    assert_eq!(e["context"]["open_message_id"], message);
    assert_eq!(e["context"]["open_chat_id"], chat);

    // The card changed, for every reader.
    let done = answer["card"]["data"].clone();
    assert_eq!(content_of(&app, &message).await, done);
    assert_eq!(listed_content(&app, &chat, &message).await, done);
}

#[tokio::test]
async fn a_click_goes_over_the_long_connection_and_the_ack_carries_the_answer() {
    let app = TestApp::demo().await;
    let base = served(&app).await;
    let (_, message) = card_in_group(&app).await;
    assert_eq!(settings(&app, "demo-bot").await["callback_url"], Value::Null);
    let mut client = Client::open(&base, &app.app_id("demo-bot"), &app.secret("demo-bot")).await.unwrap();
    let answer = json!({"toast": {"type": "info", "content": "ok"}, "card": {"type": "raw", "data": {"elements": [{"tag": "hr"}]}}});
    let data = base64::engine::general_purpose::STANDARD.encode(answer.to_string());
    let (r, event) = tokio::join!(click(&app, &message, json!({"user": "bob", "action": {"value": {"n": 1}}})), async {
        let (v, frame, _) = client.event().await;
        assert_eq!(frame.header("type"), Some("event"));
        client.ack(&frame, &json!({"code": 200, "data": data}).to_string(), Some("2")).await;
        v
    });
    assert_eq!(r.code(), 0, "{}", r.body);
    assert_eq!(event["header"]["event_type"], "card.action.trigger");
    assert_eq!(event["event"]["operator"]["open_id"], app.open_id("demo-bot", "bob"));
    assert_eq!(event["event"]["token"], r.body["data"]["token"]);
    let d = &r.body["data"];
    assert_eq!(d["callback"]["route"], "long_connection");
    assert_eq!(d["callback"]["status"], 200);
    assert_eq!(d["toast"], answer["toast"]);
    assert_eq!(d["card_updated"], true, "{d}");
    assert_eq!(content_of(&app, &message).await, answer["card"]["data"]);
}

#[tokio::test]
async fn no_answer_within_3_s_is_code_0_with_an_error_and_the_card_stays() {
    let app = TestApp::demo().await;
    let (_, message) = card_in_group(&app).await;
    let before = content_of(&app, &message).await;

    // No callback URL and no connection: said at once.
    let r = click(&app, &message, json!({"user": "alice"})).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    assert!(r.body["data"]["error"].as_str().unwrap().contains("no long connection"), "{}", r.body);

    let key = settings(&app, "demo-bot").await["encrypt_key"].as_str().unwrap().to_string();
    let slow = CardReceiver::start(&key, json!({"card": {"type": "raw", "data": {"elements": []}}}), Duration::from_secs(5)).await;
    set_callback_url(&app, "demo-bot", &slow.url).await;
    let start = Instant::now();
    let r = click(&app, &message, json!({"user": "alice"})).await;
    let took = start.elapsed();
    assert_eq!(r.code(), 0, "{}", r.body);
    let d = &r.body["data"];
    assert!(d["error"].as_str().unwrap().contains("no answer within 3000 ms"), "{d}");
    assert_eq!(d["callback"]["status"], Value::Null);
    assert_eq!(d["card_updated"], false);
    assert_eq!(d["toast"], Value::Null);
    assert!(took >= Duration::from_millis(2900) && took < Duration::from_secs(5), "{took:?}");
    assert_eq!(content_of(&app, &message).await, before);

    // An answer that is no JSON changes nothing either.
    let junk = CardReceiver::start(&key, json!("not json {"), Duration::ZERO).await;
    set_callback_url(&app, "demo-bot", &junk.url).await;
    let r = click(&app, &message, json!({"user": "alice"})).await;
    assert!(r.body["data"]["error"].as_str().unwrap().contains("answer"), "{}", r.body);
    assert_eq!(content_of(&app, &message).await, before);
}

#[tokio::test]
async fn clicks_are_refused_on_what_is_no_app_card_or_by_someone_outside_the_chat() {
    let app = TestApp::demo().await;
    let (chat, message) = card_in_group(&app).await;
    let t = app.token("demo-bot").await;
    let text = send(&app, &t, &chat, "text", r#"{"text":"hi"}"#).await;
    let r = click(&app, &text, json!({"user": "alice"})).await;
    assert_eq!((r.status.as_u16(), r.code()), (400, 400), "{}", r.body);
    let r = click(&app, &message, json!({"user": "carol"})).await;
    assert_eq!(r.code(), 400, "{}", r.body);
    let r = click(&app, &message, json!({"user": "alice", "action": {"value": "a string"}})).await;
    assert_eq!(r.code(), 400, "{}", r.body);
    // A callback URL must answer the challenge, like a request URL.
    let path = format!("/_larkstack/apps/{}/events", app.app_id("demo-bot"));
    let r = app.call(Method::PUT, &path, &app.state.admin_token.clone(), Some(json!({"callback_url": "http://127.0.0.1:9/card"}))).await;
    assert_eq!(r.code(), 400, "{}", r.body);
    assert!(r.body["msg"].as_str().unwrap().contains("callback_url refused"), "{}", r.body);
    let r = click(&app, "om_nope", json!({"user": "alice"})).await;
    assert_eq!(r.code(), 404, "{}", r.body);
    let r = app.call(Method::POST, &format!("/_larkstack/messages/{message}/card_action"), &t, Some(json!({"user": "alice"}))).await;
    assert_eq!(r.code(), 401, "a tenant token does not open the control API: {}", r.body);
}

#[tokio::test]
async fn a_token_updates_the_card_twice_then_is_refused() {
    let app = TestApp::demo().await;
    let (chat, message) = card_in_group(&app).await;
    let token = token_of_a_click(&app, &message).await;
    for text in ["first", "second"] {
        let r = delayed_update(&app, "demo-bot", &token, text).await;
        assert_eq!(r.code(), 0, "{}", r.body);
        let want: Value = serde_json::from_str(&card(text)).unwrap();
        assert_eq!(content_of(&app, &message).await, want, "open_ids is not kept in the card");
        assert_eq!(listed_content(&app, &chat, &message).await, want);
    }
    let r = delayed_update(&app, "demo-bot", &token, "third").await;
    assert_eq!((r.status.as_u16(), r.code()), (400, 200832), "{}", r.body);
    assert_eq!(content_of(&app, &message).await, serde_json::from_str::<Value>(&card("second")).unwrap());

    // A card that is no card does not spend a use of a fresh token.
    let fresh = token_of_a_click(&app, &message).await;
    let t = app.token("demo-bot").await;
    let r = app.call(Method::POST, CARD_UPDATE, &t, Some(json!({"token": fresh, "card": {"nothing": 1}}))).await;
    assert_eq!(r.code(), 230099, "{}", r.body);
    for text in ["a", "b"] {
        assert_eq!(delayed_update(&app, "demo-bot", &fresh, text).await.code(), 0);
    }
    let r = app.call(Method::POST, CARD_UPDATE, &t, Some(json!({"card": {"elements": []}}))).await;
    assert_eq!(r.code(), 200830, "no token: {}", r.body);
}

#[tokio::test]
async fn a_token_expires_after_30_minutes_of_larkstack_clock() {
    let app = TestApp::demo().await;
    let (_, message) = card_in_group(&app).await;
    let early = token_of_a_click(&app, &message).await;
    control_ok(&app, Method::POST, "/_larkstack/clock", Some(json!({"advance": "29m"}))).await;
    assert_eq!(delayed_update(&app, "demo-bot", &early, "in time").await.code(), 0);
    let late = token_of_a_click(&app, &message).await;
    control_ok(&app, Method::POST, "/_larkstack/clock", Some(json!({"advance": "2m"}))).await;
    let r = delayed_update(&app, "demo-bot", &early, "too late").await;
    assert_eq!((r.status.as_u16(), r.code()), (400, 200831), "{}", r.body);
    assert_eq!(delayed_update(&app, "demo-bot", &late, "still in time").await.code(), 0);
    assert_eq!(content_of(&app, &message).await, serde_json::from_str::<Value>(&card("still in time")).unwrap());
}

#[tokio::test]
async fn another_apps_token_and_unknown_tokens_are_refused_alike() {
    let app = TestApp::demo().await;
    let (_, message) = card_in_group(&app).await;
    let token = token_of_a_click(&app, &message).await;
    let r = delayed_update(&app, "helper-bot", &token, "hijack").await;
    assert_eq!((r.status.as_u16(), r.code()), (400, 200830), "{}", r.body);
    let r = delayed_update(&app, "demo-bot", "c-0123456789abcdef0123456789abcdef", "x").await;
    assert_eq!(r.code(), 200830, "{}", r.body);
    assert_eq!(content_of(&app, &message).await, serde_json::from_str::<Value>(&card("pick one")).unwrap());
    // The refused attempt spent nothing: the owner still has both uses.
    for text in ["1", "2"] {
        assert_eq!(delayed_update(&app, "demo-bot", &token, text).await.code(), 0);
    }
}

#[tokio::test]
async fn the_token_table_is_bounded_dropping_expired_then_oldest_tokens() {
    use larkstack::domain::ids::{AppId, MessageId};
    use larkstack::store::{CardToken, CardTokenUse};
    let app = TestApp::demo().await;
    let (_, message) = card_in_group(&app).await;
    let app_id = AppId(app.app_id("demo-bot"));
    let tenant = app.state.directory().app(&app_id).unwrap().home_tenant.clone().unwrap();
    let token = |n: i64, issued: i64, expires: i64| CardToken {
        token: format!("c-test{n}"),
        app_id: app_id.clone(),
        tenant_key: tenant.clone(),
        message_id: MessageId(message.clone()),
        issued_at_ms: issued,
        expires_at_ms: expires,
    };
    let state = |n: i64, now: i64| {
        let (store, app_id, tenant) = (app.state.store.clone(), app_id.clone(), tenant.clone());
        async move {
            let change: larkstack::store::MessageChange = Box::new(|_m| Err(larkstack::domain::message::invalid("card", "probe only")));
            match store.update_card_by_token(&format!("c-test{n}"), &app_id, &tenant, now, 2, change).await.unwrap() {
                CardTokenUse::Unknown => "unknown",
                CardTokenUse::Expired => "expired",
                CardTokenUse::UsedUp => "used up",
                CardTokenUse::Applied(_) => "valid",
            }
        }
    };
    // Token 0 expires at 1 500; issuing token 1 at 1 000 keeps it, token 2 at 2 000 drops it.
    app.state.store.issue_card_token(token(0, 0, 1_500), 3).await.unwrap();
    app.state.store.issue_card_token(token(1, 1_000, 100_000), 3).await.unwrap();
    assert_eq!(state(0, 1_600).await, "expired");
    app.state.store.issue_card_token(token(2, 2_000, 100_000), 3).await.unwrap();
    assert_eq!(state(0, 2_000).await, "unknown");
    // At most 3 live tokens: the 4th and 5th drop the oldest.
    for n in 3..6 {
        app.state.store.issue_card_token(token(n, 1_000 * n, 100_000), 3).await.unwrap();
    }
    let states: Vec<&str> = futures_util::future::join_all((1..6).map(|n| state(n, 5_000))).await;
    assert_eq!(states, ["unknown", "unknown", "valid", "valid", "valid"]);
}
