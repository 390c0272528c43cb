//! Sending and listing messages.

use axum::http::Method;
use serde_json::json;

use crate::support::*;

const SEND: &str = "/open-apis/im/v1/messages?receive_id_type=chat_id";

fn text(chat: &str, s: &str) -> serde_json::Value {
    json!({"receive_id": chat, "msg_type": "text", "content": json!({"text": s}).to_string()})
}

#[tokio::test]
async fn send_to_a_chat_and_dedup_by_uuid() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let id = app.new_chat(&t, json!({})).await;
    let mut body = text(&id, "你好");
    body["uuid"] = json!("m-1");
    let r = app.call(Method::POST, SEND, &t, Some(body.clone())).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let d = &r.body["data"];
    assert!(d["message_id"].as_str().unwrap().starts_with("om_"));
    assert_eq!(d["chat_id"], id.as_str());
    assert_eq!(d["msg_type"], "text");
    assert_eq!(d["body"]["content"], json!({"text": "你好"}).to_string());
    assert_eq!(d["sender"], json!({"id": DEMO_APP_ID, "id_type": "app_id", "sender_type": "app", "tenant_key": "736588c9260f175e"}));
    assert!(d["create_time"].as_str().unwrap().parse::<i64>().is_ok(), "create_time is a string of ms");
    let again = app.call(Method::POST, SEND, &t, Some(body)).await;
    assert_eq!(again.body["data"]["message_id"], d["message_id"]);
    let list = app.call(Method::GET, &format!("/open-apis/im/v1/messages?container_id_type=chat&container_id={id}"), &t, None).await;
    assert_eq!(list.body["data"]["items"].as_array().unwrap().len(), 1, "the repeat stored nothing");
}

#[tokio::test]
async fn send_errors() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let id = app.new_chat(&t, json!({})).await;
    let helper_chat = app.new_chat(&app.token("helper-bot").await, json!({})).await;
    assert_eq!(app.call(Method::POST, SEND, &t, Some(text(&helper_chat, "x"))).await.code(), 230002);
    assert_eq!(app.call(Method::POST, SEND, &t, Some(json!({"receive_id": id, "msg_type": "text", "content": "{}"}))).await.code(), 230001);
    assert_eq!(app.call(Method::POST, SEND, &t, Some(json!({"receive_id": id, "msg_type": "text"}))).await.code(), 230001);
    assert_eq!(app.call(Method::POST, "/open-apis/im/v1/messages", &t, Some(text(&id, "x"))).await.code(), 230001);
    assert_eq!(app.call(Method::POST, SEND, &t, Some(text("oc_nope", "x"))).await.code(), 230001);
    let helper = app.token("helper-bot").await;
    assert_eq!(app.call(Method::POST, SEND, &helper, Some(text(&helper_chat, "x"))).await.code(), 99991672, "helper-bot has no message scope");
}

#[tokio::test]
async fn five_per_second_per_chat() {
    let app = TestApp::demo().await;
    app.state.clock.freeze();
    let t = app.token("demo-bot").await;
    let id = app.new_chat(&t, json!({})).await;
    for i in 0..5 {
        assert_eq!(app.call(Method::POST, SEND, &t, Some(text(&id, &i.to_string()))).await.code(), 0);
    }
    assert_eq!(app.call(Method::POST, SEND, &t, Some(text(&id, "6"))).await.code(), 230020);
    let other = app.new_chat(&t, json!({})).await;
    assert_eq!(app.call(Method::POST, SEND, &t, Some(text(&other, "x"))).await.code(), 0, "another chat is not affected");
    app.state.clock.advance_ms(1000);
    assert_eq!(app.call(Method::POST, SEND, &t, Some(text(&id, "7"))).await.code(), 0);
}

#[tokio::test]
async fn p2p_to_users_by_any_id() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let alice = app.open_id("demo-bot", "alice");
    let send = |id_type: &str, id: &str| {
        let body = json!({"receive_id": id, "msg_type": "text", "content": "{\"text\":\"hi\"}"});
        let url = format!("/open-apis/im/v1/messages?receive_id_type={id_type}");
        let (app, t) = (&app, t.clone());
        async move { app.call(Method::POST, &url, &t, Some(body)).await }
    };
    let first = send("open_id", &alice).await;
    assert_eq!(first.code(), 0, "{}", first.body);
    let by_mail = send("email", "alice@acme.example").await;
    assert_eq!(by_mail.body["data"]["chat_id"], first.body["data"]["chat_id"], "one p2p chat per bot and user");
    assert_eq!(send("open_id", "ou_nobody").await.code(), 230001);
    assert_eq!(send("open_id", &app.open_id("demo-bot", "dave")).await.code(), 230013);
    // p2p chats are not listed as group chats.
    let list = app.call(Method::GET, "/open-apis/im/v1/chats", &t, None).await;
    assert_eq!(list.body["data"]["items"], json!([]));
}

#[tokio::test]
async fn history_by_time_order_and_pages() {
    let app = TestApp::demo().await;
    app.state.clock.freeze();
    app.state.clock.set_ms(1_800_000_000_000);
    let t = app.token("demo-bot").await;
    let id = app.new_chat(&t, json!({})).await;
    for i in 0..5 {
        assert_eq!(app.call(Method::POST, SEND, &t, Some(text(&id, &format!("m{i}")))).await.code(), 0);
        app.state.clock.advance_ms(1000);
    }
    let list = |q: String| {
        let (app, t, id) = (&app, t.clone(), id.clone());
        async move { app.call(Method::GET, &format!("/open-apis/im/v1/messages?container_id_type=chat&container_id={id}{q}"), &t, None).await }
    };
    let texts = |r: &Reply| -> Vec<String> {
        r.body["data"]["items"].as_array().unwrap().iter().map(|m| m["body"]["content"].as_str().unwrap().to_string()).collect()
    };
    let desc = list("&sort_type=ByCreateTimeDesc&page_size=2".into()).await;
    assert_eq!(texts(&desc), vec![r#"{"text":"m4"}"#, r#"{"text":"m3"}"#]);
    let token = desc.body["data"]["page_token"].as_str().unwrap().to_string();
    let next = list(format!("&sort_type=ByCreateTimeDesc&page_size=2&page_token={token}")).await;
    assert_eq!(texts(&next), vec![r#"{"text":"m2"}"#, r#"{"text":"m1"}"#]);
    let ranged = list("&start_time=1800000001&end_time=1800000002".into()).await;
    assert_eq!(texts(&ranged), vec![r#"{"text":"m1"}"#, r#"{"text":"m2"}"#]);
    assert_eq!(list("&page_size=51".into()).await.code(), 230001);
    let helper = app.token("helper-bot").await;
    let _ = helper;
}
