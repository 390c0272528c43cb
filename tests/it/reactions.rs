//! Message reactions (issue #14 part B): add, list, remove, users' reactions through the
//! control API, their events, and each documented 2310xx error.

use axum::http::Method;
use serde_json::json;

use crate::message_ops::{control_ok, events_of, post_as, send};
use crate::support::*;

fn reactions(id: &str) -> String {
    format!("/open-apis/im/v1/messages/{id}/reactions")
}

fn emoji(e: &str) -> serde_json::Value {
    json!({"reaction_type": {"emoji_type": e}})
}

#[tokio::test]
async fn add_list_and_remove_reactions() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let chat = app.new_chat(&t, json!({"user_id_list": [app.open_id("demo-bot", "alice")]})).await;
    let m = post_as(&app, &chat, "alice", "ship it?").await;

    let r = app.call(Method::POST, &reactions(&m), &t, Some(emoji("THUMBSUP"))).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let d = r.body["data"].clone();
    let id = d["reaction_id"].as_str().unwrap().to_string();
    assert_eq!(d["operator"], json!({"operator_id": app.app_id("demo-bot"), "operator_type": "app"}));
    assert_eq!(d["reaction_type"], json!({"emoji_type": "THUMBSUP"}));
    assert!(d["action_time"].as_str().unwrap().parse::<i64>().is_ok());
    let again = app.call(Method::POST, &reactions(&m), &t, Some(emoji("THUMBSUP"))).await;
    assert_eq!(again.body["data"]["reaction_id"], id.as_str(), "the same emoji again answers the first");
    assert_eq!(app.call(Method::POST, &reactions(&m), &t, Some(emoji("Typing"))).await.code(), 0);
    // A user's reaction, through the control API.
    let u = control_ok(&app, Method::POST, &format!("/_larkstack/messages/{m}/reactions"), Some(json!({"user": "alice", "emoji_type": "THUMBSUP"}))).await;
    let users = u["reaction_id"].as_str().unwrap().to_string();

    let all = app.call(Method::GET, &reactions(&m), &t, None).await;
    assert_eq!(all.code(), 0, "{}", all.body);
    let items = all.body["data"]["items"].as_array().unwrap().clone();
    assert_eq!(items.iter().map(|i| i["reaction_type"]["emoji_type"].as_str().unwrap()).collect::<Vec<_>>(), ["THUMBSUP", "Typing", "THUMBSUP"]);
    assert_eq!(items[2]["operator"], json!({"operator_id": app.open_id("demo-bot", "alice"), "operator_type": "user"}));
    let thumbs = app.call(Method::GET, &format!("{}?reaction_type=THUMBSUP&page_size=1", reactions(&m)), &t, None).await;
    let page = &thumbs.body["data"];
    assert_eq!((page["items"][0]["reaction_id"].as_str(), page["has_more"].as_bool()), (Some(id.as_str()), Some(true)));
    let next = format!("{}?reaction_type=THUMBSUP&page_size=1&page_token={}&user_id_type=user_id", reactions(&m), page["page_token"].as_str().unwrap());
    let r = app.call(Method::GET, &next, &t, None).await;
    assert_eq!((r.body["data"]["items"][0]["reaction_id"].as_str(), r.body["data"]["has_more"].as_bool()), (Some(users.as_str()), Some(false)));
    let alice_user_id = &app.dir.users().iter().find(|u| u.key == "alice").unwrap().user_id.0;
    assert_eq!(r.body["data"]["items"][0]["operator"]["operator_id"], alice_user_id.as_str(), "user_id_type=user_id: {}", r.body);

    let r = app.call(Method::DELETE, &format!("{}/{id}", reactions(&m)), &t, None).await;
    assert_eq!((r.code(), r.body["data"]["reaction_id"].as_str()), (0, Some(id.as_str())), "{}", r.body);
    let left = app.call(Method::GET, &reactions(&m), &t, None).await;
    assert_eq!(left.body["data"]["items"].as_array().unwrap().len(), 2);

    let created = events_of(&app, "im.message.reaction.created_v1").await;
    assert_eq!(created.len(), 3, "the repeat recorded nothing");
    assert_eq!(created[2]["operator"], json!({"kind": "user", "id": app.dir.users().iter().find(|u| u.key == "alice").unwrap().uid}));
    let deleted = events_of(&app, "im.message.reaction.deleted_v1").await;
    assert_eq!((deleted.len(), deleted[0]["reaction_id"].as_str()), (1, Some(id.as_str())));
}

#[tokio::test]
async fn reaction_errors() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let chat = app.new_chat(&t, json!({"user_id_list": [app.open_id("demo-bot", "alice")]})).await;
    let m = send(&app, &t, &chat, "text", &json!({"text": "hi"}).to_string()).await;
    let other = send(&app, &t, &chat, "text", &json!({"text": "other"}).to_string()).await;
    // 231001: unknown, wrong case or missing emoji type.
    for body in [emoji("smile"), emoji("NOPE"), json!({}), json!({"reaction_type": {}})] {
        assert_eq!(app.call(Method::POST, &reactions(&m), &t, Some(body.clone())).await.code(), 231001, "{body}");
    }
    assert_eq!(app.call(Method::GET, &format!("{}?reaction_type=nope", reactions(&m)), &t, None).await.code(), 231001);
    // 231003: no such message.
    assert_eq!(app.call(Method::POST, &reactions("om_nope"), &t, Some(emoji("SMILE"))).await.code(), 231003);
    assert_eq!(app.call(Method::GET, &reactions("om_nope"), &t, None).await.code(), 231003);
    // 231002 / 231008: a chat the bot is not in.
    let helper = app.token("helper-bot").await;
    let elsewhere = app.new_chat(&helper, json!({"user_id_list": [app.open_id("helper-bot", "alice")]})).await;
    let theirs = post_as(&app, &elsewhere, "alice", "x").await;
    assert_eq!(app.call(Method::POST, &reactions(&theirs), &t, Some(emoji("SMILE"))).await.code(), 231002);
    assert_eq!(app.call(Method::GET, &reactions(&theirs), &t, None).await.code(), 231008);
    // 231012 / 231014: paging and id type.
    assert_eq!(app.call(Method::GET, &format!("{}?page_token=zz", reactions(&m)), &t, None).await.code(), 231012);
    assert_eq!(app.call(Method::GET, &format!("{}?user_id_type=nope", reactions(&m)), &t, None).await.code(), 231014);
    // Delete: 231011 unknown, 231010 of another message, 231007 another operator's.
    let mine = app.call(Method::POST, &reactions(&m), &t, Some(emoji("SMILE"))).await.body["data"]["reaction_id"].as_str().unwrap().to_string();
    assert_eq!(app.call(Method::DELETE, &format!("{}/nope", reactions(&m)), &t, None).await.code(), 231011);
    assert_eq!(app.call(Method::DELETE, &format!("{}/{mine}", reactions(&other)), &t, None).await.code(), 231010);
    let hers = control_ok(&app, Method::POST, &format!("/_larkstack/messages/{m}/reactions"), Some(json!({"user": "alice", "emoji_type": "OK"}))).await;
    let hers = hers["reaction_id"].as_str().unwrap();
    assert_eq!(app.call(Method::DELETE, &format!("{}/{hers}", reactions(&m)), &t, None).await.code(), 231007);
    // A recalled message is no message to react to.
    assert_eq!(app.call(Method::DELETE, &format!("/open-apis/im/v1/messages/{m}"), &t, None).await.code(), 0);
    assert_eq!(app.call(Method::POST, &reactions(&m), &t, Some(emoji("SMILE"))).await.code(), 231003);
    assert_eq!(app.call(Method::DELETE, &format!("{}/{mine}", reactions(&m)), &t, None).await.code(), 231003);
    // The control API refuses unknown emoji and non-members.
    let admin = app.state.admin_token.clone();
    let path = format!("/_larkstack/messages/{other}/reactions");
    assert_eq!(app.call(Method::POST, &path, &admin, Some(json!({"user": "alice", "emoji_type": "nope"}))).await.code(), 400);
    assert_eq!(app.call(Method::POST, &path, &admin, Some(json!({"user": "gina", "emoji_type": "OK"}))).await.code(), 400);
}
