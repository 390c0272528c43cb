//! get, update, disband, list, search.

use axum::http::Method;
use larkstack::domain::ids::ChatId;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn get_shows_members_everything_and_others_little() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let alice = app.open_id("demo-bot", "alice");
    let id = app
        .new_chat(&t, json!({"name": "看板", "owner_id": alice, "user_id_list": [app.open_id("demo-bot", "bob")], "bot_id_list": [app.app_id("narrow-app")]}))
        .await;
    let r = app.call(Method::GET, &format!("/open-apis/im/v1/chats/{id}"), &t, None).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let d = &r.body["data"];
    assert!(d.get("chat_id").is_none());
    assert_eq!(d["user_count"], "2");
    assert_eq!(d["bot_count"], "2");
    assert_eq!(d["chat_status"], "normal");
    assert_eq!(d["owner_id"], alice.as_str());
    assert_eq!(d["user_manager_id_list"], json!([]));
    assert_eq!(d["bot_manager_id_list"], json!([]));
    assert_eq!(d["name"], "看板");
    assert_eq!(d["edit_permission"], "all_members");
    // helper-bot is not in the chat: name, avatar, counts and status only.
    let helper = app.token("helper-bot").await;
    let r = app.call(Method::GET, &format!("/open-apis/im/v1/chats/{id}"), &helper, None).await;
    assert_eq!(r.code(), 0);
    let keys: Vec<&String> = r.body["data"].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 5, "{keys:?}");
    // Another tenant's bot: 232010. Unknown chat: 232006.
    let globex = app.token("globex-bot").await;
    assert_eq!(app.call(Method::GET, &format!("/open-apis/im/v1/chats/{id}"), &globex, None).await.code(), 232010);
    let r = app.call(Method::GET, "/open-apis/im/v1/chats/oc_nope", &t, None).await;
    assert_eq!((r.status.as_u16(), r.code()), (400, 232006));
}

#[tokio::test]
async fn hidden_member_counts_show_only_to_owner_side() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let id = app.new_chat(&t, json!({"hide_member_count_setting": "only_owner", "bot_id_list": [app.app_id("helper-bot")]})).await;
    let owner_view = app.call(Method::GET, &format!("/open-apis/im/v1/chats/{id}"), &t, None).await;
    assert_eq!(owner_view.body["data"]["bot_count"], "2");
    let helper = app.token("helper-bot").await;
    let member_view = app.call(Method::GET, &format!("/open-apis/im/v1/chats/{id}"), &helper, None).await;
    assert!(member_view.body["data"].get("bot_count").is_none());
}

#[tokio::test]
async fn update_is_partial_and_guarded() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let (alice, bob) = (app.open_id("demo-bot", "alice"), app.open_id("demo-bot", "bob"));
    let id = app
        .new_chat(&t, json!({"name": "原名", "description": "d", "owner_id": alice, "user_id_list": [bob], "bot_id_list": [app.app_id("helper-bot")]}))
        .await;
    let url = format!("/open-apis/im/v1/chats/{id}");
    let r = app.call(Method::PUT, &url, &t, Some(json!({"name": "新名", "add_member_permission": "only_owner"}))).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    assert_eq!(r.body["data"], json!({}));
    let d = app.call(Method::GET, &url, &t, None).await.body["data"].clone();
    assert_eq!(d["name"], "新名");
    assert_eq!(d["description"], "d", "omitted = unchanged");
    assert_eq!(d["share_card_permission"], "not_allowed", "paired with add_member_permission");
    assert_eq!(
        app.call(Method::PUT, &url, &t, Some(json!({"add_member_permission": "only_owner", "share_card_permission": "allowed"}))).await.code(),
        232001
    );

    // A member bot without owner rights: basics only (232016), nothing when edit_permission=only_owner (232002).
    let helper = app.token("helper-bot").await;
    assert_eq!(app.call(Method::PUT, &url, &helper, Some(json!({"name": "helper 改"}))).await.code(), 0);
    assert_eq!(app.call(Method::PUT, &url, &helper, Some(json!({"chat_type": "public"}))).await.code(), 232016);
    assert_eq!(app.call(Method::PUT, &url, &t, Some(json!({"edit_permission": "only_owner"}))).await.code(), 0);
    assert_eq!(app.call(Method::PUT, &url, &helper, Some(json!({"name": "again"}))).await.code(), 232002);

    // Owner transfer: the new owner must be a member of the same tenant.
    assert_eq!(app.call(Method::PUT, &url, &t, Some(json!({"owner_id": app.open_id("demo-bot", "carol")}))).await.code(), 232012);
    assert_eq!(app.call(Method::PUT, &url, &t, Some(json!({"owner_id": app.open_id("demo-bot", "hank")}))).await.code(), 232031);
    assert_eq!(app.call(Method::PUT, &url, &t, Some(json!({"owner_id": bob}))).await.code(), 0);
    assert_eq!(app.call(Method::GET, &url, &t, None).await.body["data"]["owner_id"], bob.as_str());

    // Create-chat validations that apply.
    assert_eq!(app.call(Method::PUT, &url, &t, Some(json!({"name": "违禁词"}))).await.code(), 232023);
    assert_eq!(app.call(Method::PUT, &url, &t, Some(json!({"chat_type": "public", "name": "x"}))).await.code(), 232020);
    assert_eq!(app.call(Method::PUT, &url, &t, Some(json!({"membership_approval": "maybe"}))).await.code(), 232001);
    let globex = app.token("globex-bot").await;
    let g = app.new_chat(&globex, json!({})).await;
    assert_eq!(app.call(Method::PUT, &format!("/open-apis/im/v1/chats/{g}"), &globex, Some(json!({"chat_type": "public", "name": "公开"}))).await.code(), 232091);
}

#[tokio::test]
async fn public_names_are_unique_per_tenant() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    app.new_chat(&t, json!({"chat_type": "public", "name": "全员群"})).await;
    let other = app.new_chat(&t, json!({"name": "私有"})).await;
    let url = format!("/open-apis/im/v1/chats/{other}");
    assert_eq!(app.call(Method::PUT, &url, &t, Some(json!({"chat_type": "public", "name": "全员群"}))).await.code(), 232026);
    assert_eq!(app.call(Method::PUT, &url, &t, Some(json!({"chat_type": "public", "name": "全员群2"}))).await.code(), 0);
}

#[tokio::test]
async fn disband_keeps_the_data_and_closes_the_chat() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let helper = app.token("helper-bot").await;
    let bob = app.open_id("demo-bot", "bob");
    let id = app.new_chat(&t, json!({"user_id_list": [bob], "bot_id_list": [app.app_id("helper-bot")]})).await;
    let url = format!("/open-apis/im/v1/chats/{id}");
    assert_eq!(app.call(Method::DELETE, &url, &helper, Some(json!({}))).await.code(), 232017, "not the owner");
    let r = app.call(Method::DELETE, &url, &t, None).await;
    assert_eq!((r.code(), r.body["data"].clone()), (0, json!({})));
    assert_eq!(app.call(Method::GET, &url, &t, None).await.body["data"]["chat_status"], "dissolved");
    assert_eq!(app.call(Method::DELETE, &url, &t, None).await.code(), 232009);
    assert_eq!(app.call(Method::PUT, &url, &t, Some(json!({"name": "x"}))).await.code(), 232009);
    let members = format!("{url}/members");
    assert_eq!(app.call(Method::POST, &members, &t, Some(json!({"id_list": [app.open_id("demo-bot", "carol")]}))).await.code(), 232009);
    let stored = app.state.store.get_chat(&ChatId(id.clone())).await.unwrap().unwrap();
    assert_eq!(stored.users.len(), 1, "members are kept");
    let list = app.call(Method::GET, "/open-apis/im/v1/chats", &t, None).await;
    assert!(list.body["data"]["items"].as_array().unwrap().iter().all(|c| c["chat_id"] != id.as_str()));
}

#[tokio::test]
async fn creator_with_operate_as_owner_may_disband_a_user_owned_chat() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await; // holds im:chat:operate_as_owner
    let id = app.new_chat(&t, json!({"owner_id": app.open_id("demo-bot", "alice")})).await;
    assert_eq!(app.call(Method::DELETE, &format!("/open-apis/im/v1/chats/{id}"), &t, None).await.code(), 0);
    let helper = app.token("helper-bot").await; // lacks it
    let id = app.new_chat(&helper, json!({"owner_id": app.open_id("helper-bot", "alice")})).await;
    assert_eq!(app.call(Method::DELETE, &format!("/open-apis/im/v1/chats/{id}"), &helper, None).await.code(), 232017);
}

#[tokio::test]
async fn list_pages_stay_correct_while_chats_are_created() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(app.new_chat(&t, json!({"name": format!("c{i}")})).await);
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let r = app.call(Method::GET, &format!("/open-apis/im/v1/chats?page_size=2&page_token={token}"), &t, None).await;
        assert_eq!(r.code(), 0, "{}", r.body);
        let d = &r.body["data"];
        seen.extend(d["items"].as_array().unwrap().iter().map(|c| c["chat_id"].as_str().unwrap().to_string()));
        // A chat created mid-way shows up at the end, nothing is skipped or repeated.
        if seen.len() == 2 {
            created.push(app.new_chat(&t, json!({"name": "late"})).await);
        }
        if !d["has_more"].as_bool().unwrap() {
            break;
        }
        token = d["page_token"].as_str().unwrap().to_string();
    }
    assert_eq!(seen, created);
    for bad in ["page_size=0", "page_size=101", "sort_type=Random", "page_token=zz"] {
        assert_eq!(app.call(Method::GET, &format!("/open-apis/im/v1/chats?{bad}"), &t, None).await.code(), 232001, "{bad}");
    }
    // Another bot sees none of them.
    let helper = app.token("helper-bot").await;
    assert_eq!(app.call(Method::GET, "/open-apis/im/v1/chats", &helper, None).await.body["data"]["items"], json!([]));
}

#[tokio::test]
async fn list_by_activity_puts_the_latest_message_first() {
    let app = TestApp::demo().await;
    app.state.clock.freeze();
    let t = app.token("demo-bot").await;
    let a = app.new_chat(&t, json!({"name": "a"})).await;
    app.state.clock.advance_ms(1000);
    let b = app.new_chat(&t, json!({"name": "b"})).await;
    app.state.clock.advance_ms(1000);
    let r = app
        .call(Method::POST, "/open-apis/im/v1/messages?receive_id_type=chat_id", &t, Some(json!({"receive_id": a, "msg_type": "text", "content": "{\"text\":\"hi\"}"})))
        .await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let r = app.call(Method::GET, "/open-apis/im/v1/chats?sort_type=ByActiveTimeDesc&page_size=1", &t, None).await;
    assert_eq!(r.body["data"]["items"][0]["chat_id"], a.as_str());
    let next = r.body["data"]["page_token"].as_str().unwrap().to_string();
    let r = app.call(Method::GET, &format!("/open-apis/im/v1/chats?sort_type=ByActiveTimeDesc&page_size=1&page_token={next}"), &t, None).await;
    assert_eq!(r.body["data"]["items"][0]["chat_id"], b.as_str());
    assert_eq!(r.body["data"]["has_more"], false);
}

#[tokio::test]
async fn search_finds_own_and_public_chats_by_name() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let helper = app.token("helper-bot").await;
    let mine = app.new_chat(&t, json!({"name": "项目 Alpha 讨论"})).await;
    let public = app.new_chat(&helper, json!({"name": "Alpha 公开群", "chat_type": "public"})).await;
    app.new_chat(&helper, json!({"name": "Alpha 私密"})).await; // private and not mine: invisible
    let r = app.call(Method::GET, "/open-apis/im/v1/chats/search?query=alpha", &t, None).await;
    let ids: Vec<&str> = r.body["data"]["items"].as_array().unwrap().iter().map(|c| c["chat_id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![mine.as_str(), public.as_str()]);
    let r = app.call(Method::GET, "/open-apis/im/v1/chats/search?query=%E8%AE%A8%E8%AE%BA", &t, None).await; // 讨论
    assert_eq!(r.body["data"]["items"].as_array().unwrap().len(), 1);
    for q in ["", &"x".repeat(65)] {
        let r = app.call(Method::GET, &format!("/open-apis/im/v1/chats/search?query={q}"), &t, None).await;
        assert_eq!((r.code(), r.body["data"]["items"].clone()), (0, json!([])));
    }
}

#[tokio::test]
async fn each_endpoint_has_its_own_rate_budget() {
    let app = TestApp::demo().await;
    app.state.clock.freeze();
    let t = app.token("demo-bot").await;
    let id = app.new_chat(&t, json!({})).await;
    for _ in 0..50 {
        assert_eq!(app.call(Method::GET, &format!("/open-apis/im/v1/chats/{id}"), &t, None).await.code(), 0);
    }
    let r = app.call(Method::GET, &format!("/open-apis/im/v1/chats/{id}"), &t, None).await;
    assert_eq!((r.code(), r.headers["x-ogw-ratelimit-limit"].to_str().unwrap()), (99991400, "50"));
    assert_eq!(app.call(Method::GET, "/open-apis/im/v1/chats", &t, None).await.code(), 0, "list has its own budget");
}
