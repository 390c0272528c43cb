//! Pending invitations: add-members into a chat that needs approval, by an app without owner or
//! manager rights, stores the users as pending (not members); the control API lists them and acts
//! as users on them: approve (the user joins: `im.chat.member.user.added_v1`), reject (dropped, no
//! event), withdraw (`im.chat.member.user.withdrawn_v1`). Joining another way ends the wait,
//! disbanding drops them, and the state's export/import keeps them.

use axum::http::Method;
use larkstack::domain::ids::ChatId;
use serde_json::{json, Value};

use crate::message_ops::events_of;
use crate::support::*;
use crate::webhooks::{Answer, Receiver};

impl TestApp {
    fn uid_of(&self, user_key: &str) -> String {
        self.dir.users().iter().find(|u| u.key == user_key).unwrap().uid.0.clone()
    }
}

/// A chat of demo-bot owned by alice, with bob and helper-bot, that needs approval: helper-bot
/// (no owner or manager rights) only invites.
async fn gated(app: &TestApp) -> String {
    let t = app.token("demo-bot").await;
    let o = |u: &str| app.open_id("demo-bot", u);
    app.new_chat(
        &t,
        json!({"name": "gated", "owner_id": o("alice"), "user_id_list": [o("bob")], "bot_id_list": [app.app_id("helper-bot")],
               "membership_approval": "approval_required"}),
    )
    .await
}

/// helper-bot adds `users` (fixture keys): the reply's `data`.
async fn helper_adds(app: &TestApp, chat: &str, users: &[&str]) -> Value {
    let helper = app.token("helper-bot").await;
    let ids: Vec<String> = users.iter().map(|u| app.open_id("helper-bot", u)).collect();
    let r = app.call(Method::POST, &format!("/open-apis/im/v1/chats/{chat}/members"), &helper, Some(json!({"id_list": ids}))).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    r.body["data"].clone()
}

async fn pending_keys(app: &TestApp, chat: &str) -> Vec<String> {
    let r = app.admin_call(Method::GET, &format!("/_larkstack/chats/{chat}/invitations"), None).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    r.body["data"]["items"].as_array().unwrap().iter().map(|i| i["user"]["key"].as_str().unwrap().to_string()).collect()
}

async fn act(app: &TestApp, chat: &str, invitee: &str, action: &str, user: &str) -> Reply {
    app.admin_call(Method::POST, &format!("/_larkstack/chats/{chat}/invitations/{invitee}/{action}"), Some(json!({"user": user}))).await
}

async fn stored_pending(app: &TestApp, chat: &str) -> usize {
    app.state.store.get_chat(&ChatId(chat.to_string())).await.unwrap().unwrap().settings.pending_invitations.len()
}

#[tokio::test]
async fn a_pending_add_is_listed_not_a_member_and_withdrawn_with_an_event_to_the_bots() {
    let app = TestApp::demo().await;
    let rx = Receiver::start("", Answer::Good).await;
    assert_eq!(app.subscribe("demo-bot", json!({"event_url": rx.url, "encrypt_key": ""})).await.code(), 0);
    let chat = gated(&app).await;
    let d = helper_adds(&app, &chat, &["erin", "carol"]).await;
    assert_eq!(d["pending_approval_id_list"], json!([app.open_id("helper-bot", "erin"), app.open_id("helper-bot", "carol")]));
    // Asked again: still one invitation each, the first.
    let first = app.admin_call(Method::GET, &format!("/_larkstack/chats/{chat}/invitations"), None).await.body["data"]["items"].clone();
    let r = app.admin_call(Method::POST, "/_larkstack/clock", Some(json!({"advance_ms": 5000}))).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    helper_adds(&app, &chat, &["erin"]).await;
    let items = app.admin_call(Method::GET, &format!("/_larkstack/chats/{chat}/invitations"), None).await.body["data"]["items"].clone();
    assert_eq!(items, first, "not duplicated, not renewed");
    assert_eq!(items[0]["user"]["key"], "erin");
    assert_eq!(items[0]["inviter"]["bot"]["app_id"], app.app_id("helper-bot"));
    assert!(items[0]["at_ms"].as_i64().unwrap() > 0);

    // Not members: get-chat, the member list and the control detail count alice and bob only.
    let t = app.token("demo-bot").await;
    let got = app.call(Method::GET, &format!("/open-apis/im/v1/chats/{chat}"), &t, None).await;
    assert_eq!(got.body["data"]["user_count"], "2", "{}", got.body);
    let members = app.call(Method::GET, &format!("/open-apis/im/v1/chats/{chat}/members"), &t, None).await;
    let ids: Vec<&str> = members.body["data"]["items"].as_array().unwrap().iter().map(|m| m["member_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [app.open_id("demo-bot", "alice"), app.open_id("demo-bot", "bob")]);
    assert_eq!(members.body["data"]["member_total"], 2);
    let detail = app.admin_call(Method::GET, &format!("/_larkstack/chats/{chat}"), None).await;
    assert_eq!(detail.body["data"]["members"].as_array().unwrap().len(), 2);
    assert_eq!(detail.body["data"]["pending_invitations"].as_array().unwrap().len(), 2);
    assert!(detail.body["data"]["settings"].get("pending_invitations").is_none(), "{}", detail.body);
    let r = app.admin_call(Method::POST, &format!("/_larkstack/chats/{chat}/messages"), Some(json!({"user": "erin", "text": "hi"}))).await;
    assert_eq!(r.code(), 400, "a pending user can not post: {}", r.body);

    // bob neither invited erin nor owns or manages the chat; gina is not in it.
    let r = act(&app, &chat, "erin", "withdraw", "bob").await;
    assert_eq!((r.status.as_u16(), r.code()), (400, 400), "{}", r.body);
    assert_eq!(act(&app, &chat, "erin", "withdraw", "gina").await.code(), 400);
    let r = act(&app, &chat, "erin", "forget", "alice").await;
    assert_eq!((r.status.as_u16(), r.code()), (400, 400), "no such decision: {}", r.body);
    assert!(events_of(&app, "im.chat.member.user.withdrawn_v1").await.is_empty(), "a refusal records nothing");

    // The owner withdraws it.
    let r = act(&app, &chat, "erin", "withdraw", "alice").await;
    assert_eq!(r.code(), 0, "{}", r.body);
    assert_eq!(pending_keys(&app, &chat).await, ["carol"]);
    let ev = events_of(&app, "im.chat.member.user.withdrawn_v1").await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["chat_id"], chat);
    assert_eq!(ev[0]["actor"], json!({"kind": "control_as_user", "id": app.uid_of("alice")}));
    assert_eq!(ev[0]["users"], json!([app.uid_of("erin")]));
    assert_eq!(ev[0]["name"], "gated");
    let r = act(&app, &chat, "erin", "withdraw", "alice").await;
    assert_eq!((r.status.as_u16(), r.code()), (404, 404), "nothing pending any more: {}", r.body);

    // The bot in the chat hears it, with the user's name and the operator.
    let got = rx.wait_events("", 1).await;
    let (_, w) = got.iter().find(|(_, v)| v["header"]["event_type"] == "im.chat.member.user.withdrawn_v1").expect("withdrawn_v1");
    let e = &w["event"];
    assert_eq!(e["chat_id"], chat);
    assert_eq!(e["operator_id"]["open_id"], app.open_id("demo-bot", "alice"));
    assert_eq!(e["users"][0]["user_id"]["open_id"], app.open_id("demo-bot", "erin"));
    assert_eq!(e["users"][0]["name"], "Erin 陈");
    assert_eq!(e["name"], "gated");
    assert!(got.iter().all(|(_, v)| v["header"]["event_type"] != "im.chat.member.user.added_v1"), "nobody joined: {got:?}");
}

#[tokio::test]
async fn approve_makes_a_member_with_the_added_event_and_reject_drops_silently() {
    let app = TestApp::demo().await;
    let chat = gated(&app).await;
    helper_adds(&app, &chat, &["erin", "carol"]).await;
    let added_before = events_of(&app, "im.chat.member.user.added_v1").await.len();

    // Only the owner and managers decide.
    let r = act(&app, &chat, "erin", "approve", "bob").await;
    assert_eq!((r.status.as_u16(), r.code()), (400, 400), "{}", r.body);
    assert_eq!(act(&app, &chat, "carol", "reject", "bob").await.code(), 400);
    assert_eq!(pending_keys(&app, &chat).await, ["erin", "carol"]);

    let r = act(&app, &chat, "erin", "approve", "alice").await;
    assert_eq!(r.code(), 0, "{}", r.body);
    assert_eq!(r.body["data"]["user_count"], 3);
    let stored = app.state.store.get_chat(&ChatId(chat.clone())).await.unwrap().unwrap();
    assert!(stored.users.iter().any(|u| u.0 == app.uid_of("erin")));
    let added = events_of(&app, "im.chat.member.user.added_v1").await;
    assert_eq!(added.len(), added_before + 1);
    let last = added.last().unwrap();
    assert_eq!(last["users"], json!([app.uid_of("erin")]));
    assert_eq!(last["actor"], json!({"kind": "control_as_user", "id": app.uid_of("alice")}));
    let t = app.token("demo-bot").await;
    let got = app.call(Method::GET, &format!("/open-apis/im/v1/chats/{chat}"), &t, None).await;
    assert_eq!(got.body["data"]["user_count"], "3");

    // A manager may decide too: bob, made one, rejects carol. No event at all.
    let uri = format!("/open-apis/im/v1/chats/{chat}/managers/add_managers");
    let r = app.call(Method::POST, &uri, &t, Some(json!({"manager_ids": [app.open_id("demo-bot", "bob")]}))).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let seq_before = app.admin_call(Method::GET, "/_larkstack/events?limit=1000", None).await.body["data"]["items"].as_array().unwrap().len();
    let r = act(&app, &chat, "carol", "reject", "bob").await;
    assert_eq!(r.code(), 0, "{}", r.body);
    assert!(pending_keys(&app, &chat).await.is_empty());
    let after = app.admin_call(Method::GET, "/_larkstack/events?limit=1000", None).await.body["data"]["items"].as_array().unwrap().len();
    assert_eq!(after, seq_before, "a rejection records no event");
    assert!(!app.state.store.get_chat(&ChatId(chat.clone())).await.unwrap().unwrap().users.iter().any(|u| u.0 == app.uid_of("carol")));
    assert_eq!(act(&app, &chat, "carol", "approve", "alice").await.code(), 404, "rejected is gone");
}

#[tokio::test]
async fn a_member_invites_and_withdraws_their_own_invitation() {
    let app = TestApp::demo().await;
    let chat = gated(&app).await;
    let uri = format!("/_larkstack/chats/{chat}/invitations");
    let invite = |user: &str, invitee: &str| app.admin_call(Method::POST, &uri, Some(json!({"user": user, "invitee": invitee})));
    let r = invite("bob", "carol").await;
    assert_eq!((r.code(), &r.body["data"]["outcome"]), (0, &json!("pending")), "{}", r.body);
    assert_eq!(invite("bob", "carol").await.body["data"]["outcome"], "pending");
    let items = app.admin_call(Method::GET, &format!("/_larkstack/chats/{chat}/invitations"), None).await.body["data"]["items"].clone();
    assert_eq!(items.as_array().unwrap().len(), 1);
    assert_eq!(items[0]["inviter"]["user"]["key"], "bob");
    assert_eq!(invite("erin", "carol").await.code(), 400, "erin is not in the chat");
    assert_eq!(invite("bob", "dave").await.code(), 400, "dave has resigned");
    assert_eq!(invite("bob", "gina").await.code(), 400, "another tenant's user, an internal chat");

    // The inviter withdraws: withdrawn_v1 with bob as the actor.
    let r = act(&app, &chat, "carol", "withdraw", "bob").await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let ev = events_of(&app, "im.chat.member.user.withdrawn_v1").await;
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["actor"], json!({"kind": "control_as_user", "id": app.uid_of("bob")}));
    assert_eq!(ev[0]["users"], json!([app.uid_of("carol")]));

    // The owner's invitation needs no approval.
    let r = invite("alice", "carol").await;
    assert_eq!(r.body["data"]["outcome"], "joined", "{}", r.body);
    assert_eq!(r.body["data"]["user_count"], 3);
    assert_eq!(invite("bob", "carol").await.body["data"]["outcome"], "already_member");
    assert!(pending_keys(&app, &chat).await.is_empty());
}

#[tokio::test]
async fn joining_another_way_ends_the_wait_and_disbanding_drops_invitations() {
    let app = TestApp::demo().await;
    let chat = gated(&app).await;
    helper_adds(&app, &chat, &["erin", "carol"]).await;
    let r = app.admin_call(Method::POST, &format!("/_larkstack/chats/{chat}/join"), Some(json!({"user": "erin"}))).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    assert_eq!(pending_keys(&app, &chat).await, ["carol"]);
    // demo-bot has owner rights: its add is no invitation, and it ends carol's.
    let t = app.token("demo-bot").await;
    let r = app.call(Method::POST, &format!("/open-apis/im/v1/chats/{chat}/members"), &t, Some(json!({"id_list": [app.open_id("demo-bot", "carol")]}))).await;
    assert_eq!(r.body["data"]["pending_approval_id_list"], json!([]), "{}", r.body);
    assert!(pending_keys(&app, &chat).await.is_empty());

    let other = gated(&app).await;
    helper_adds(&app, &other, &["erin"]).await;
    assert_eq!(stored_pending(&app, &other).await, 1);
    let r = app.call(Method::DELETE, &format!("/open-apis/im/v1/chats/{other}"), &t, None).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    assert_eq!(stored_pending(&app, &other).await, 0, "a disbanded chat keeps no invitations");
    assert!(events_of(&app, "im.chat.member.user.withdrawn_v1").await.is_empty());
    assert_eq!(act(&app, &other, "erin", "withdraw", "alice").await.code(), 400, "disbanded");
}

#[tokio::test]
async fn export_and_import_keep_pending_invitations() {
    let app = TestApp::demo().await;
    let chat = gated(&app).await;
    helper_adds(&app, &chat, &["erin"]).await;
    let before = app.admin_call(Method::GET, &format!("/_larkstack/chats/{chat}/invitations"), None).await.body["data"].clone();
    let lines = app.export_state().await;
    let chats = records_of(&lines, "chat");
    let rec = chats.iter().find(|c| c["chat_id"] == chat.as_str()).unwrap();
    assert_eq!(rec["settings"]["pending_invitations"][0]["uid"], app.uid_of("erin"), "{rec}");
    assert_eq!(app.admin_call(Method::POST, "/_larkstack/reset", None).await.code(), 0);
    assert_eq!(app.admin_call(Method::GET, &format!("/_larkstack/chats/{chat}/invitations"), None).await.code(), 404);
    let r = app.import_state(&ndjson(&lines)).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let after = app.admin_call(Method::GET, &format!("/_larkstack/chats/{chat}/invitations"), None).await.body["data"].clone();
    assert_eq!(after, before);
    // And it is still an invitation: the owner approves it.
    assert_eq!(act(&app, &chat, "erin", "approve", "alice").await.code(), 0);
}
