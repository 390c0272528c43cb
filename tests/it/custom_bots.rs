//! A group's custom bots: added through the control API, posting through
//! `POST /open-apis/bot/v2/hook/{token}` with Feishu's signature, keyword and IP rules, their
//! messages in the chat's history, stored durably and carried by export/import.

use axum::http::{Method, StatusCode};
use larkstack::domain::directory::Directory;
use larkstack::state::StateConfig;
use larkstack::store::EventQuery;
use serde_json::{json, Value};

use crate::support::*;

/// Feishu's custom bot signature of timestamp 1599360473 with secret "secret", computed outside
/// larkstack: base64(HMAC-SHA256(key = "1599360473\nsecret", message = "")).
const SIGNED_AT_SECS: i64 = 1_599_360_473;
const SIGN_OF_SECRET: &str = "q4jswNiMy51J5JuQV566yJat0/lQ/c+22kINzUgKsGU=";

impl TestApp {
    /// A control-API call with the admin token.
    async fn control_call(&self, method: Method, uri: &str, body: Option<Value>) -> Reply {
        let auth = format!("Bearer {}", self.state.admin_token);
        let bytes = body.map(|b| b.to_string().into_bytes());
        self.request(method, uri, &[("authorization", auth.as_str())], bytes.as_deref()).await
    }

    /// Adds a custom bot to `chat`; its (bot_id, token).
    async fn add_custom_bot(&self, chat: &str, spec: Value) -> (String, String) {
        let r = self.control_call(Method::POST, &format!("/_larkstack/chats/{chat}/custom_bots"), Some(spec)).await;
        assert_eq!(r.code(), 0, "{}", r.body);
        (r.body["data"]["bot_id"].as_str().unwrap().to_string(), r.body["data"]["token"].as_str().unwrap().to_string())
    }

    /// Posts to a hook without credentials; every reply is HTTP 200.
    async fn hook(&self, token: &str, body: &[u8]) -> Reply {
        let r = self
            .request(Method::POST, &format!("/open-apis/bot/v2/hook/{token}"), &[("content-type", "application/json")], Some(body))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r
    }

    /// Posts a quarter second after the previous post: never more than the 5 a second a bot
    /// (and a chat) may post.
    async fn hook_json(&self, token: &str, body: Value) -> Reply {
        self.state.clock.advance_ms(250);
        self.hook(token, body.to_string().as_bytes()).await
    }
}

fn text(t: &str) -> Value {
    json!({"msg_type": "text", "content": {"text": t}})
}

/// A group chat of demo-bot with alice and bob.
async fn group(app: &TestApp) -> (String, String) {
    let token = app.token("demo-bot").await;
    let body = json!({"name": "Ops", "owner_id": app.open_id("demo-bot", "alice"), "user_id_list": [app.open_id("demo-bot", "bob")]});
    (app.new_chat(&token, body).await, token)
}

/// An image the token's app uploads with `image_type`: its key.
async fn uploaded_image(app: &TestApp, token: &str, image_type: &str) -> String {
    use crate::media::{multipart, png, BOUNDARY};
    let body = multipart(&[("image_type", None, image_type.as_bytes()), ("image", Some("x.png"), &png(8, 8, b"hook"))]);
    let (auth, content_type) = (format!("Bearer {token}"), format!("multipart/form-data; boundary={BOUNDARY}"));
    let headers = [("authorization", auth.as_str()), ("content-type", content_type.as_str())];
    let r = app.request(Method::POST, "/open-apis/im/v1/images", &headers, Some(&body)).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    r.body["data"]["image_key"].as_str().unwrap().to_string()
}

async fn history(app: &TestApp, token: &str, chat: &str) -> Vec<Value> {
    let r = app.call(Method::GET, &format!("/open-apis/im/v1/messages?container_id_type=chat&container_id={chat}"), token, None).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    r.body["data"]["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_custom_bot_post_appears_in_the_chat_as_sent_by_the_bot() {
    let app = TestApp::demo().await;
    let (chat, token) = group(&app).await;
    let r = app.control_call(Method::POST, &format!("/_larkstack/chats/{chat}/custom_bots"), Some(json!({"name": "CI"}))).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let bot = &r.body["data"];
    let (bot_id, hook) = (bot["bot_id"].as_str().unwrap().to_string(), bot["token"].as_str().unwrap().to_string());
    assert!(bot_id.starts_with("cli_") && bot_id.len() == 20, "{bot_id}");
    assert_eq!(hook.len(), 36, "a UUID: {hook}");
    assert_eq!(bot["webhook_path"], format!("/open-apis/bot/v2/hook/{hook}"));
    assert!(bot["webhook_url"].as_str().unwrap().ends_with(&format!("/open-apis/bot/v2/hook/{hook}")));

    let r = app.hook_json(&hook, text("build 42 passed")).await;
    assert_eq!(r.body, json!({"StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {}, "msg": "success"}));
    let post = json!({"msg_type": "post", "content": {"post": {"zh_cn": {"title": "Release", "content": [[{"tag": "text", "text": "v1"}]]}}}});
    assert_eq!(app.hook_json(&hook, post).await.code(), 0);
    let card = json!({"msg_type": "interactive", "card": {"elements": [{"tag": "div", "text": {"tag": "lark_md", "content": "**ok**"}}]}});
    assert_eq!(app.hook_json(&hook, card).await.code(), 0);
    let share = json!({"msg_type": "share_chat", "content": {"share_chat_id": chat}});
    assert_eq!(app.hook_json(&hook, share).await.code(), 0);
    let image = json!({"msg_type": "image", "content": {"image_key": uploaded_image(&app, &token, "message").await}});
    assert_eq!(app.hook_json(&hook, image).await.code(), 0);

    let items = history(&app, &token, &chat).await;
    let types: Vec<&str> = items.iter().map(|m| m["msg_type"].as_str().unwrap()).collect();
    assert_eq!(types, ["text", "post", "interactive", "share_chat", "image"]);
    let first = &items[0];
    assert_eq!(first["sender"], json!({"id": bot_id, "id_type": "app_id", "sender_type": "app", "tenant_key": app.dir.tenants()[0].tenant_key.0}));
    assert_eq!(first["body"]["content"], json!({"text": "build 42 passed"}).to_string());
    assert_eq!(serde_json::from_str::<Value>(items[3]["body"]["content"].as_str().unwrap()).unwrap(), json!({"chat_id": chat}));

    // Each post is recorded with its receive event, made by the custom bot.
    let q = EventQuery { chat_id: Some(larkstack::domain::ids::ChatId(chat.clone())), type_name: Some("im.message.receive_v1".into()), limit: 100, ..Default::default() };
    let events = app.state.store.events(q).await.unwrap();
    assert_eq!(events.len(), 5);
    let e = serde_json::to_value(&events[0].event).unwrap();
    assert_eq!(e["actor"], json!({"kind": "custom_bot", "id": bot_id}));
    assert_eq!(e["sender"], json!({"kind": "custom_bot", "id": bot_id}));

    // The console's view of the chat lists it with its URL.
    let r = app.control_call(Method::GET, &format!("/_larkstack/chats/{chat}/custom_bots"), None).await;
    let listed = r.body["data"]["items"].as_array().unwrap();
    assert_eq!((listed.len(), listed[0]["name"].as_str()), (1, Some("CI")));
    let r = app.control_call(Method::GET, &format!("/_larkstack/chats/{chat}"), None).await;
    assert_eq!(r.body["data"]["messages"][0]["sender"]["custom_bot"], json!({"bot_id": bot_id, "name": "CI"}));
    assert_eq!(r.body["data"]["custom_bots"][0]["webhook_path"], format!("/open-apis/bot/v2/hook/{hook}"));

    // A reset forgets custom bots with the chats.
    assert_eq!(app.control_call(Method::POST, "/_larkstack/reset", None).await.code(), 0);
    assert_eq!(app.hook_json(&hook, text("after the reset")).await.code(), 19001);
}

#[tokio::test]
async fn signatures_are_checked_with_the_hour_window() {
    let app = TestApp::demo().await;
    let (chat, _) = group(&app).await;
    let (_, hook) = app.add_custom_bot(&chat, json!({"name": "Signed", "secret": "secret"})).await;
    app.state.clock.freeze();
    app.state.clock.set_ms(SIGNED_AT_SECS * 1000 + 1800 * 1000);
    let signed = |ts: Value, sign: &str| json!({"timestamp": ts, "sign": sign, "msg_type": "text", "content": {"text": "hi"}});
    assert_eq!(app.hook_json(&hook, signed(json!(SIGNED_AT_SECS.to_string()), SIGN_OF_SECRET)).await.code(), 0);
    assert_eq!(app.hook_json(&hook, signed(json!(SIGNED_AT_SECS), SIGN_OF_SECRET)).await.code(), 0, "a number timestamp");
    let r = app.hook_json(&hook, signed(json!(SIGNED_AT_SECS.to_string()), "AAAA")).await;
    assert_eq!(r.code(), 19021);
    assert_eq!(r.body["msg"], "sign match fail or timestamp is not within one hour from current time");
    assert_eq!(r.body["data"], json!({}));
    assert!(r.body["error"]["log_id"].is_string());
    // Another timestamp with the same sign, and no signature at all.
    assert_eq!(app.hook_json(&hook, signed(json!((SIGNED_AT_SECS + 1).to_string()), SIGN_OF_SECRET)).await.code(), 19021);
    assert_eq!(app.hook_json(&hook, text("unsigned")).await.code(), 19021);
    // The same valid signature an hour and a second later is stale.
    app.state.clock.set_ms((SIGNED_AT_SECS + 3601) * 1000);
    assert_eq!(app.hook_json(&hook, signed(json!(SIGNED_AT_SECS.to_string()), SIGN_OF_SECRET)).await.code(), 19021);
    app.state.clock.set_ms((SIGNED_AT_SECS - 3601) * 1000);
    assert_eq!(app.hook_json(&hook, signed(json!(SIGNED_AT_SECS.to_string()), SIGN_OF_SECRET)).await.code(), 19021, "from the future");
}

#[tokio::test]
async fn keywords_and_ip_allowlists_refuse_with_feishus_codes() {
    let app = TestApp::demo().await;
    let (chat, token) = group(&app).await;
    let (_, hook) = app.add_custom_bot(&chat, json!({"name": "Alerts", "keywords": ["deploy", "告警"]})).await;
    let r = app.hook_json(&hook, text("nothing to see")).await;
    assert_eq!((r.code(), r.body["msg"].as_str()), (19024, Some("Key Words Not Found")));
    assert_eq!(app.hook_json(&hook, text("磁盘告警")).await.code(), 0);
    let link_only = json!({"msg_type": "post", "content": {"post": {"zh_cn": {"title": "x", "content": [[{"tag": "a", "text": "here", "href": "https://deploy.example"}]]}}}});
    assert_eq!(app.hook_json(&hook, link_only).await.code(), 19024, "href is not text");
    let titled = json!({"msg_type": "post", "content": {"post": {"zh_cn": {"title": "deploy", "content": [[{"tag": "text", "text": "x"}]]}}}});
    assert_eq!(app.hook_json(&hook, titled).await.code(), 0);

    // In-process requests come from 127.0.0.1.
    let (_, fenced) = app.add_custom_bot(&chat, json!({"name": "Fenced", "ip_allowlist": ["10.0.0.0/8", "192.168.1.*"]})).await;
    let r = app.hook_json(&fenced, text("hi")).await;
    assert_eq!((r.code(), r.body["msg"].as_str()), (19022, Some("Ip Not Allowed")));
    let (_, local) = app.add_custom_bot(&chat, json!({"name": "Local", "ip_allowlist": ["127.0.0.*"]})).await;
    assert_eq!(app.hook_json(&local, text("hi")).await.code(), 0);
    // Only the accepted posts are in the chat.
    assert_eq!(history(&app, &token, &chat).await.len(), 3);
}

#[tokio::test]
async fn bad_bodies_unknown_tokens_and_the_rate_limit() {
    let app = TestApp::demo().await;
    let (chat, token) = group(&app).await;
    let (bot_id, hook) = app.add_custom_bot(&chat, json!({"name": "CI"})).await;
    for body in [
        b"not json".to_vec(),
        json!({"content": {"text": "no msg_type"}}).to_string().into_bytes(),
        json!({"msg_type": "text", "content": "{\"text\":\"a string\"}"}).to_string().into_bytes(),
        json!({"msg_type": "interactive", "content": {"elements": []}}).to_string().into_bytes(),
        json!({"msg_type": "share_chat", "content": {"share_chat_id": "oc_other"}}).to_string().into_bytes(),
        json!({"msg_type": "file", "content": {"file_key": "f"}}).to_string().into_bytes(),
        text(&"x".repeat(21 * 1024)).to_string().into_bytes(),
    ] {
        let r = app.hook(&hook, &body).await;
        assert_eq!((r.code(), r.body["msg"].as_str()), (9499, Some("Bad Request")), "{}", String::from_utf8_lossy(&body[..body.len().min(80)]));
    }
    let r = app.hook_json("00000000-0000-4000-8000-000000000000", text("hi")).await;
    assert_eq!((r.code(), r.body["msg"].as_str()), (19001, Some("param invalid: incoming webhook access token invalid")));

    // 5 posts a second per bot: the sixth in the same instant is refused.
    app.state.clock.freeze();
    app.state.clock.advance_ms(1001);
    let burst = |t: &str| text(t).to_string().into_bytes();
    for i in 0..5 {
        assert_eq!(app.hook(&hook, &burst(&format!("burst {i}"))).await.code(), 0, "post {i}");
    }
    let r = app.hook(&hook, &burst("one too many")).await;
    assert_eq!((r.code(), r.body["msg"].as_str()), (11232, Some("frequency limited")));
    app.state.clock.advance_ms(1001);
    assert_eq!(app.hook(&hook, &burst("next second")).await.code(), 0);
    assert_eq!(history(&app, &token, &chat).await.len(), 6);

    // A removed bot's hook, and the hook of a disbanded chat, are invalid tokens.
    let r = app.control_call(Method::DELETE, &format!("/_larkstack/chats/{chat}/custom_bots/{bot_id}"), None).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    assert_eq!(app.hook_json(&hook, text("gone")).await.code(), 19001);
    let r = app.control_call(Method::DELETE, &format!("/_larkstack/chats/{chat}/custom_bots/{bot_id}"), None).await;
    assert_eq!(r.code(), 404);
    let (_, other) = app.add_custom_bot(&chat, json!({"name": "Other"})).await;
    app.state.clock.advance_ms(1001);
    assert_eq!(app.call(Method::DELETE, &format!("/open-apis/im/v1/chats/{chat}"), &token, None).await.code(), 0);
    assert_eq!(app.hook_json(&other, text("after the disband")).await.code(), 19001);
}

#[tokio::test]
async fn the_control_api_validates_and_bounds_custom_bots() {
    let app = TestApp::demo().await;
    let (chat, token) = group(&app).await;
    let url = format!("/_larkstack/chats/{chat}/custom_bots");
    for spec in [
        json!({}),
        json!({"name": ""}),
        json!({"name": "x", "keywords": vec!["k"; 11]}),
        json!({"name": "x", "ip_allowlist": ["not an ip"]}),
        json!({"name": "x", "unknown": 1}),
    ] {
        let r = app.control_call(Method::POST, &url, Some(spec.clone())).await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, 400), "{spec}: {}", r.body);
    }
    let r = app.control_call(Method::POST, "/_larkstack/chats/oc_nope/custom_bots", Some(json!({"name": "x"}))).await;
    assert_eq!(r.code(), 404);
    // p2p chats have no custom bots.
    let content = json!({"text": "hi"}).to_string();
    let r = app.call(Method::POST, "/open-apis/im/v1/messages?receive_id_type=open_id", &token,
        Some(json!({"receive_id": app.open_id("demo-bot", "alice"), "msg_type": "text", "content": content}))).await;
    let p2p = r.body["data"]["chat_id"].as_str().unwrap().to_string();
    assert_eq!(app.control_call(Method::POST, &format!("/_larkstack/chats/{p2p}/custom_bots"), Some(json!({"name": "x"}))).await.code(), 400);
    // At most 15 a chat.
    for i in 0..15 {
        app.add_custom_bot(&chat, json!({"name": format!("bot {i}")})).await;
    }
    let r = app.control_call(Method::POST, &url, Some(json!({"name": "sixteenth"}))).await;
    assert_eq!(r.code(), 400, "{}", r.body);
    assert_eq!(app.control_call(Method::GET, &url, None).await.body["data"]["items"].as_array().unwrap().len(), 15);
    // Without the admin token, nothing.
    let r = app.request(Method::GET, &url, &[], None).await;
    assert_eq!(r.code(), 401);
}

#[tokio::test]
async fn custom_bots_survive_export_and_import() {
    let app = TestApp::demo().await;
    let (chat, _) = group(&app).await;
    let (bot_id, hook) = app.add_custom_bot(&chat, json!({"name": "Kept", "secret": "s3cret", "keywords": ["k"]})).await;
    let state = app.export_state().await;
    let bots = records_of(&state, "custom_bot");
    assert_eq!(bots.len(), 1);
    assert_eq!((bots[0]["bot_id"].as_str(), bots[0]["secret"].as_str()), (Some(bot_id.as_str()), Some("s3cret")));

    let other = TestApp::with(Directory::demo(), StateConfig::default()).await;
    assert_eq!(other.hook_json(&hook, text("k")).await.code(), 19001, "not there before the import");
    let r = other.import_state(&ndjson(&state)).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    // Imported with its secret: an unsigned post is refused for the signature, not the token.
    assert_eq!(other.hook_json(&hook, text("k")).await.code(), 19021);
    let listed = other.control_call(Method::GET, &format!("/_larkstack/chats/{chat}/custom_bots"), None).await;
    assert_eq!(listed.body["data"]["items"][0]["bot_id"], bot_id.as_str());
}

/// A custom bot can not upload: the image it posts (alone or in a post) must be a message image
/// an app of the chat's tenant uploaded; a made-up key or an avatar is a bad request (9499), and
/// nothing is stored.
#[tokio::test]
async fn a_custom_bot_image_names_an_image_uploaded_in_the_tenant() {
    let app = TestApp::demo().await;
    let (chat, token) = group(&app).await;
    let (_, hook) = app.add_custom_bot(&chat, json!({"name": "Charts"})).await;
    let image = |key: &str| json!({"msg_type": "image", "content": {"image_key": key}});
    let post = |key: &str| json!({"msg_type": "post", "content": {"post": {"zh_cn": {"title": "t", "content": [[{"tag": "img", "image_key": key}]]}}}});
    for refused in [image("img_v2_made_up"), post("img_v2_made_up"), image(&uploaded_image(&app, &token, "avatar").await)] {
        let r = app.hook_json(&hook, refused.clone()).await;
        assert_eq!((r.code(), r.body["msg"].as_str()), (9499, Some("Bad Request")), "{refused}: {}", r.body);
    }
    assert_eq!(history(&app, &token, &chat).await.len(), 0, "refused posts are not stored");
    let key = uploaded_image(&app, &token, "message").await;
    assert_eq!(app.hook_json(&hook, image(&key)).await.code(), 0);
    assert_eq!(app.hook_json(&hook, post(&key)).await.code(), 0);
    let items = history(&app, &token, &chat).await;
    assert_eq!(items.iter().map(|m| m["msg_type"].as_str().unwrap()).collect::<Vec<_>>(), ["image", "post"]);
    // The image comes back as the message's resource.
    let (status, _, bytes) = app
        .raw(Method::GET, &format!("/open-apis/im/v1/messages/{}/resources/{key}?type=image", items[0]["message_id"].as_str().unwrap()), &[("authorization", &format!("Bearer {token}"))], None)
        .await;
    assert_eq!((status, bytes), (StatusCode::OK, crate::media::png(8, 8, b"hook")));
}
