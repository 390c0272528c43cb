//! members add/remove/list, is_in_chat, me_join, managers, and concurrent member changes.

use std::sync::Arc;

use axum::http::Method;
use larkstack::domain::directory::Directory;
use larkstack::domain::ids::ChatId;
use larkstack::state::StateConfig;
use serde_json::{json, Value};

use crate::support::*;

fn members_url(id: &str, query: &str) -> String {
    format!("/open-apis/im/v1/chats/{id}/members{query}")
}

#[tokio::test]
async fn add_reports_by_succeed_type() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let o = |u: &str| app.open_id("demo-bot", u);
    let id = app.new_chat(&t, json!({})).await;
    let r = app.call(Method::POST, &members_url(&id, ""), &t, Some(json!({"id_list": [o("alice"), o("dave")]}))).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    assert_eq!(r.body["data"]["invalid_id_list"], json!([o("dave")]), "0: resigned users are skipped and reported");
    assert_eq!(r.body["data"]["not_existed_id_list"], json!([]));
    assert_eq!(r.body["data"]["pending_approval_id_list"], json!([]));
    let r = app.call(Method::POST, &members_url(&id, ""), &t, Some(json!({"id_list": [o("bob"), "ou_nobody"]}))).await;
    assert_eq!(r.code(), 232043, "0: unknown IDs fail the call");
    let r = app.call(Method::POST, &members_url(&id, "?succeed_type=1"), &t, Some(json!({"id_list": [o("bob"), "ou_nobody", o("dave")]}))).await;
    assert_eq!(r.code(), 0);
    assert_eq!(r.body["data"]["not_existed_id_list"], json!(["ou_nobody"]));
    assert_eq!(r.body["data"]["invalid_id_list"], json!([o("dave")]));
    let r = app.call(Method::POST, &members_url(&id, "?succeed_type=2"), &t, Some(json!({"id_list": [o("carol"), o("dave")]}))).await;
    assert_eq!(r.code(), 232043, "2: any unusable ID fails the call");
    assert_eq!(app.call(Method::POST, &members_url(&id, ""), &t, Some(json!({"id_list": [o("dave")]}))).await.code(), 232027);
    let chat = app.state.store.get_chat(&ChatId(id.clone())).await.unwrap().unwrap();
    assert_eq!(chat.users.len(), 2, "alice and bob only; carol was in a failed call");
    // Bots by app_id; shape rules.
    let r = app.call(Method::POST, &members_url(&id, "?member_id_type=app_id"), &t, Some(json!({"id_list": [app.app_id("helper-bot")]}))).await;
    assert_eq!(r.code(), 0);
    assert_eq!(app.call(Method::POST, &members_url(&id, "?member_id_type=app_id"), &t, Some(json!({"id_list": ["a","b","c","d","e","f"]}))).await.code(), 232001);
    assert_eq!(app.call(Method::POST, &members_url(&id, ""), &t, Some(json!({"id_list": []}))).await.code(), 232001);
    assert_eq!(app.call(Method::POST, &members_url(&id, "?succeed_type=7"), &t, Some(json!({"id_list": [o("erin")]}))).await.code(), 232001);
    // Invisible users are unusable for narrow-app; a bot outside the chat can not add.
    let narrow = app.token("narrow-app").await;
    let r = app.call(Method::POST, &members_url(&id, ""), &narrow, Some(json!({"id_list": [app.open_id("narrow-app", "alice")]}))).await;
    assert_eq!(r.code(), 99991672, "narrow-app lacks member scopes");
    let helper = app.token("helper-bot").await;
    let other = app.new_chat(&t, json!({})).await;
    assert_eq!(app.call(Method::POST, &members_url(&other, ""), &helper, Some(json!({"id_list": [app.open_id("helper-bot", "erin")]}))).await.code(), 232011);
}

#[tokio::test]
async fn approval_and_add_permission() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let helper = app.token("helper-bot").await;
    let id = app.new_chat(&t, json!({"membership_approval": "approval_required", "bot_id_list": [app.app_id("helper-bot")]})).await;
    let erin = app.open_id("helper-bot", "erin");
    let r = app.call(Method::POST, &members_url(&id, ""), &helper, Some(json!({"id_list": [erin]}))).await;
    assert_eq!(r.body["data"]["pending_approval_id_list"], json!([erin]), "a non-manager's invitation waits for approval");
    assert!(app.state.store.get_chat(&ChatId(id.clone())).await.unwrap().unwrap().users.is_empty());
    let r = app.call(Method::PUT, &format!("/open-apis/im/v1/chats/{id}"), &t, Some(json!({"add_member_permission": "only_owner", "membership_approval": "no_approval_required"}))).await;
    assert_eq!(r.code(), 0);
    assert_eq!(app.call(Method::POST, &members_url(&id, ""), &helper, Some(json!({"id_list": [erin]}))).await.code(), 232017);
}

#[tokio::test]
async fn list_excludes_bots_and_pages_through_removals() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let o = |u: &str| app.open_id("demo-bot", u);
    let users = [o("alice"), o("bob"), o("carol"), o("erin")];
    let id = app.new_chat(&t, json!({"user_id_list": users, "bot_id_list": [app.app_id("helper-bot")]})).await;
    let first = app.call(Method::GET, &members_url(&id, "?page_size=2"), &t, None).await;
    let d = &first.body["data"];
    assert_eq!(d["member_total"], 4);
    assert_eq!(d["has_more"], true);
    assert_eq!(d["items"][0], json!({"member_id_type": "open_id", "member_id": users[0], "name": "Alice 王", "tenant_key": "736588c9260f175e"}));
    // bob (already shown) leaves between pages: carol and erin still come next.
    let r = app.call(Method::DELETE, &members_url(&id, ""), &t, Some(json!({"id_list": [users[1], "ou_stranger"]}))).await;
    assert_eq!(r.body["data"]["invalid_id_list"], json!(["ou_stranger"]));
    let token = d["page_token"].as_str().unwrap();
    let second = app.call(Method::GET, &members_url(&id, &format!("?page_size=2&page_token={token}")), &t, None).await;
    let ids: Vec<Value> = second.body["data"]["items"].as_array().unwrap().iter().map(|i| i["member_id"].clone()).collect();
    assert_eq!(ids, vec![json!(users[2]), json!(users[3])]);
    assert_eq!(second.body["data"]["has_more"], false);
    let by_user_id = app.call(Method::GET, &members_url(&id, "?member_id_type=user_id"), &t, None).await;
    assert_eq!(by_user_id.body["data"]["items"][0]["member_id_type"], "user_id");
}

#[tokio::test]
async fn remove_rules_and_leaving() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let helper = app.token("helper-bot").await;
    let alice = app.open_id("demo-bot", "alice");
    let id = app.new_chat(&t, json!({"owner_id": alice, "user_id_list": [app.open_id("demo-bot", "bob")], "bot_id_list": [app.app_id("helper-bot")]})).await;
    // The owner can not be removed; a non-manager bot can not remove others but can leave.
    let r = app.call(Method::DELETE, &members_url(&id, ""), &t, Some(json!({"id_list": [alice]}))).await;
    assert_eq!(r.body["data"]["invalid_id_list"], json!([alice]));
    let r = app.call(Method::DELETE, &members_url(&id, ""), &helper, Some(json!({"id_list": [app.open_id("helper-bot", "bob")]}))).await;
    assert_eq!(r.body["data"]["invalid_id_list"].as_array().unwrap().len(), 1);
    let is_in = |tok: String| {
        let app = &app;
        let id = id.clone();
        async move { app.call(Method::GET, &format!("/open-apis/im/v1/chats/{id}/members/is_in_chat"), &tok, None).await.body["data"]["is_in_chat"].clone() }
    };
    assert_eq!(is_in(helper.clone()).await, json!(true));
    let r = app.call(Method::DELETE, &members_url(&id, "?member_id_type=app_id"), &helper, Some(json!({"id_list": [app.app_id("helper-bot")]}))).await;
    assert_eq!(r.body["data"]["invalid_id_list"], json!([]));
    assert_eq!(is_in(helper).await, json!(false));
}

#[tokio::test]
async fn me_join_public_only() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let helper = app.token("helper-bot").await;
    let public = app.new_chat(&t, json!({"chat_type": "public", "name": "大家"})).await;
    let private = app.new_chat(&t, json!({})).await;
    let gated = app.new_chat(&t, json!({"chat_type": "public", "name": "审批群", "membership_approval": "approval_required"})).await;
    let join = |id: &str| format!("/open-apis/im/v1/chats/{id}/members/me_join");
    assert_eq!(app.call(Method::PATCH, &join(&public), &helper, None).await.code(), 0);
    assert!(app.state.store.get_chat(&ChatId(public.clone())).await.unwrap().unwrap().bots.len() == 2);
    assert_eq!(app.call(Method::PATCH, &join(&private), &helper, None).await.code(), 232008);
    assert_eq!(app.call(Method::PATCH, &join(&gated), &helper, None).await.code(), 232075);
    let globex = app.token("globex-bot").await;
    assert_eq!(app.call(Method::PATCH, &join(&public), &globex, None).await.code(), 232010);
}

#[tokio::test]
async fn managers_owner_only_and_capped() {
    let fixture = big_fixture(12).replace("scopes = [\"im:chat\"]", "scopes = [\"im:chat\"]\n\n[[apps]]\nkey = \"other\"\ntenant = \"t\"\nscopes = [\"im:chat\"]");
    let app = TestApp::with(Directory::from_toml(&fixture).unwrap(), StateConfig::default()).await;
    let t = app.token("bot").await;
    let o = |i: usize| app.open_id("bot", &format!("user{i}"));
    let users: Vec<String> = (0..12).map(o).collect();
    let id = app.new_chat(&t, json!({"user_id_list": users, "bot_id_list": [app.app_id("other")]})).await;
    let url = |op: &str| format!("/open-apis/im/v1/chats/{id}/managers/{op}");
    let r = app.call(Method::POST, &url("add_managers"), &t, Some(json!({"manager_ids": users[..10]}))).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    assert_eq!(r.body["data"]["chat_managers"].as_array().unwrap().len(), 10);
    assert_eq!(r.body["data"]["chat_bot_managers"], json!([]));
    assert_eq!(app.call(Method::POST, &url("add_managers"), &t, Some(json!({"manager_ids": [users[10]]}))).await.code(), 232040);
    assert_eq!(app.call(Method::POST, &url("add_managers"), &t, Some(json!({"manager_ids": ["ou_stranger"]}))).await.code(), 232027);
    let r = app.call(Method::POST, &url("delete_managers"), &t, Some(json!({"manager_ids": [users[0]]}))).await;
    assert_eq!(r.body["data"]["chat_managers"].as_array().unwrap().len(), 9);
    let r = app.call(Method::POST, &format!("{}?member_id_type=app_id", url("add_managers")), &t, Some(json!({"manager_ids": [app.app_id("other")]}))).await;
    assert_eq!(r.body["data"]["chat_bot_managers"], json!([app.app_id("other")]));
    let other = app.token("other").await;
    assert_eq!(app.call(Method::POST, &url("add_managers"), &other, Some(json!({"manager_ids": [users[0]]}))).await.code(), 232038);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_adds_lose_nothing_and_never_pass_a_cap() {
    // 20 bot apps and 40 users in one tenant.
    let mut fixture = big_fixture(40);
    for i in 0..20 {
        fixture.push_str(&format!("\n[[apps]]\nkey = \"b{i}\"\ntenant = \"t\"\nscopes = [\"im:chat\"]\n"));
    }
    let app = Arc::new(TestApp::with(Directory::from_toml(&fixture).unwrap(), StateConfig { rate_limits: false, ..StateConfig::default() }).await);
    let t = app.token("bot").await;
    let id = app.new_chat(&t, json!({})).await;

    // 40 racing single-user adds: all 40 end up in the chat.
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let (app, t, id) = (app.clone(), t.clone(), id.clone());
            tokio::spawn(async move {
                let user = app.open_id("bot", &format!("user{i}"));
                app.call(Method::POST, &members_url(&id, ""), &t, Some(json!({"id_list": [user]}))).await.code()
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 0);
    }
    assert_eq!(app.state.store.get_chat(&ChatId(id.clone())).await.unwrap().unwrap().users.len(), 40);

    // 19 racing bot adds onto a chat holding 1 bot: exactly 14 fit under the 15-bot cap.
    let tasks: Vec<_> = (0..19)
        .map(|i| {
            let (app, t, id) = (app.clone(), t.clone(), id.clone());
            tokio::spawn(async move {
                let bot = app.app_id(&format!("b{i}"));
                app.call(Method::POST, &members_url(&id, "?member_id_type=app_id"), &t, Some(json!({"id_list": [bot]}))).await.code()
            })
        })
        .collect();
    let mut codes = Vec::new();
    for task in tasks {
        codes.push(task.await.unwrap());
    }
    assert_eq!(codes.iter().filter(|c| **c == 0).count(), 14, "{codes:?}");
    assert!(codes.iter().all(|c| *c == 0 || *c == 232013));
    assert_eq!(app.state.store.get_chat(&ChatId(id)).await.unwrap().unwrap().bots.len(), 15);
}
