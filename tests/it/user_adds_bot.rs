//! A user adds a bot to a group chat through the control API (as from the Feishu client): the bot
//! hears `im.chat.member.bot.added_v1`; when it leaves through the API, `bot.deleted_v1`.

use axum::http::Method;
use serde_json::{json, Value};

use crate::support::*;
use crate::webhooks::{Answer, Receiver};

#[tokio::test]
async fn a_bot_added_by_a_user_hears_it_and_hears_its_own_leaving() {
    let app = TestApp::demo().await;
    let rx = Receiver::start("", Answer::Good).await;
    assert_eq!(app.subscribe("demo-bot", json!({"event_url": rx.url, "encrypt_key": ""})).await.code(), 0);
    let helper = app.token("helper-bot").await;
    let o = |u: &str| app.open_id("helper-bot", u);
    let chat = app.new_chat(&helper, json!({"name": "bot room", "owner_id": o("alice"), "user_id_list": [o("bob")]})).await;
    let demo = app.app_id("demo-bot");
    let uri = format!("/_larkstack/chats/{chat}/bots");
    let add = |user: &str, app_id: &str| app.admin_call(Method::POST, &uri, Some(json!({"user": user, "app_id": app_id})));

    let r = add("carol", &demo).await;
    assert_eq!((r.status.as_u16(), r.code()), (400, 400), "not a member: {}", r.body);
    let r = add("alice", &app.app_id("no-bot-app")).await;
    assert_eq!(r.code(), 400, "no bot: {}", r.body);
    let r = add("alice", "cli_0000000000000000").await;
    assert_eq!(r.code(), 404, "{}", r.body);
    let r = add("bob", &demo).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let detail = app.admin_call(Method::GET, &format!("/_larkstack/chats/{chat}"), None).await;
    assert!(detail.body["data"]["bots"].as_array().unwrap().iter().any(|b| b["app_id"] == demo.as_str()), "{}", detail.body);
    assert_eq!(add("alice", &demo).await.code(), 0, "already in: no change");

    let got = rx.wait_events("", 1).await;
    let added: Vec<&Value> = got.iter().map(|(_, v)| v).filter(|v| v["header"]["event_type"] == "im.chat.member.bot.added_v1").collect();
    assert_eq!(added.len(), 1, "one event for the one change: {got:?}");
    let e = &added[0]["event"];
    assert_eq!(e["chat_id"], chat);
    assert_eq!(e["operator_id"]["open_id"], app.open_id("demo-bot", "bob"));
    assert_eq!(e["name"], "bot room");
    assert_eq!(e["external"], false);

    // demo-bot leaves through the API: it hears it.
    let demo_token = app.token("demo-bot").await;
    let uri = format!("/open-apis/im/v1/chats/{chat}/members?member_id_type=app_id");
    let r = app.call(Method::DELETE, &uri, &demo_token, Some(json!({"id_list": [demo]}))).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let got = rx.wait_events("", 2).await;
    let (_, deleted) = got.iter().find(|(_, v)| v["header"]["event_type"] == "im.chat.member.bot.deleted_v1").expect("bot.deleted_v1");
    assert_eq!(deleted["event"]["chat_id"], chat);

    // p2p chats take no bots.
    let p2p = app.admin_call(Method::POST, &format!("/_larkstack/users/alice/p2p/{}/enter", app.app_id("helper-bot")), None).await;
    assert_eq!(p2p.code(), 0, "{}", p2p.body);
    let uri = format!("/_larkstack/chats/{}/bots", p2p.body["data"]["chat_id"].as_str().unwrap());
    let r = app.admin_call(Method::POST, &uri, Some(json!({"user": "alice", "app_id": demo}))).await;
    assert_eq!(r.code(), 400, "{}", r.body);
}
