//! Message operations (issue #14 part B): reply (chain and threads), get, edit, card update,
//! recall, forward and read receipts, with each documented error.

use axum::http::Method;
use serde_json::{json, Value};

use crate::support::*;

const SEND: &str = "/open-apis/im/v1/messages?receive_id_type=chat_id";
const DAY_MS: i64 = 24 * 3600 * 1000;

fn text(s: &str) -> String {
    json!({"text": s}).to_string()
}

/// A shared card (`config.update_multi`) with one line of `s`.
fn card(s: &str, shared: bool) -> String {
    json!({"config": {"update_multi": shared}, "elements": [{"tag": "div", "text": {"tag": "plain_text", "content": s}}]}).to_string()
}

/// A control call with the admin token; the reply's `data`, after checking `code` 0.
pub async fn control_ok(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Value {
    let token = app.state.admin_token.clone();
    let r = app.call(method, path, &token, body).await;
    assert_eq!(r.code(), 0, "{path}: {}", r.body);
    r.body["data"].clone()
}

/// Sends `content` of `msg_type` to `chat` as the token's bot: the message id.
pub async fn send(app: &TestApp, token: &str, chat: &str, msg_type: &str, content: &str) -> String {
    let body = json!({"receive_id": chat, "msg_type": msg_type, "content": content});
    let r = app.call(Method::POST, SEND, token, Some(body)).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    r.body["data"]["message_id"].as_str().unwrap().to_string()
}

/// `user` posts `s` into `chat` through the control API: the message id.
pub async fn post_as(app: &TestApp, chat: &str, user: &str, s: &str) -> String {
    let d = control_ok(app, Method::POST, &format!("/_larkstack/chats/{chat}/messages"), Some(json!({"user": user, "text": s}))).await;
    d["message_id"].as_str().unwrap().to_string()
}

/// The stored events of `type_name`, oldest first.
pub async fn events_of(app: &TestApp, type_name: &str) -> Vec<Value> {
    let d = control_ok(app, Method::GET, &format!("/_larkstack/events?type={type_name}"), None).await;
    d["items"].as_array().unwrap().clone()
}

fn url(id: &str, rest: &str) -> String {
    format!("/open-apis/im/v1/messages/{id}{rest}")
}

async fn get(app: &TestApp, token: &str, id: &str) -> Reply {
    app.call(Method::GET, &url(id, ""), token, None).await
}

/// A chat of demo-bot (its owner) with alice and bob.
async fn group(app: &TestApp, token: &str) -> String {
    app.new_chat(token, json!({"user_id_list": [app.open_id("demo-bot", "alice"), app.open_id("demo-bot", "bob")]})).await
}

#[tokio::test]
async fn replies_chain_to_their_root_and_threads_belong_to_it() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let chat = group(&app, &t).await;
    let root = post_as(&app, &chat, "alice", "question").await;

    let r = app.call(Method::POST, &url(&root, "/reply"), &t, Some(json!({"msg_type": "text", "content": text("answer")}))).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let first = &r.body["data"];
    assert_eq!((first["root_id"].as_str(), first["parent_id"].as_str()), (Some(root.as_str()), Some(root.as_str())));
    assert_eq!(first["chat_id"], chat.as_str());
    assert_eq!(first["sender"]["sender_type"], "app");
    assert!(first.get("thread_id").is_none(), "not in a thread: {first}");
    let first_id = first["message_id"].as_str().unwrap().to_string();

    // A thread reply to the reply: the thread is the root's, created now.
    let body = json!({"msg_type": "text", "content": text("in thread"), "reply_in_thread": true, "uuid": "r-1"});
    let r = app.call(Method::POST, &url(&first_id, "/reply"), &t, Some(body.clone())).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let threaded = r.body["data"].clone();
    let thread = threaded["thread_id"].as_str().unwrap().to_string();
    assert!(thread.starts_with("omt_"), "{threaded}");
    assert_eq!((threaded["root_id"].as_str(), threaded["parent_id"].as_str()), (Some(root.as_str()), Some(first_id.as_str())));
    let again = app.call(Method::POST, &url(&first_id, "/reply"), &t, Some(body)).await;
    assert_eq!(again.body["data"]["message_id"], threaded["message_id"], "uuid dedup answers the first reply");
    // A plain reply to a thread message stays in the thread.
    let tid = threaded["message_id"].as_str().unwrap();
    let r = app.call(Method::POST, &url(tid, "/reply"), &t, Some(json!({"msg_type": "text", "content": text("still")}))).await;
    assert_eq!(r.body["data"]["thread_id"], thread.as_str());

    // The root now shows the thread; the history lists the chain.
    assert_eq!(get(&app, &t, &root).await.body["data"]["items"][0]["thread_id"], thread.as_str());
    let list = app.call(Method::GET, &format!("/open-apis/im/v1/messages?container_id_type=chat&container_id={chat}"), &t, None).await;
    let items = list.body["data"]["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 4, "root, reply, thread reply (once), plain thread reply: {}", list.body);
    assert_eq!(items[1]["parent_id"], root.as_str());
    assert_eq!(items[2]["thread_id"], thread.as_str());
    assert_eq!(items[3]["parent_id"], tid);

    // Replies are messages: receive_v1 carries the chain.
    let sent = events_of(&app, "im.message.receive_v1").await;
    let last = sent.last().unwrap();
    assert_eq!((last["root_id"].as_str(), last["parent_id"].as_str(), last["thread_id"].as_str()), (Some(root.as_str()), Some(tid), Some(thread.as_str())));
}

#[tokio::test]
async fn reply_errors() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let chat = group(&app, &t).await;
    let m = send(&app, &t, &chat, "text", &text("hi")).await;
    let ok_body = json!({"msg_type": "text", "content": text("re")});
    assert_eq!(app.call(Method::POST, &url("om_nope", "/reply"), &t, Some(ok_body.clone())).await.code(), 230001);
    assert_eq!(app.call(Method::POST, &url(&m, "/reply"), &t, Some(json!({"msg_type": "text"}))).await.code(), 230001);
    assert_eq!(app.call(Method::POST, &url(&m, "/reply"), &t, Some(json!({"msg_type": "text", "content": "{}"}))).await.code(), 230001);
    let long = json!({"msg_type": "text", "content": text(&"x".repeat(151 * 1024))});
    assert_eq!(app.call(Method::POST, &url(&m, "/reply"), &t, Some(long)).await.code(), 230025);
    let uuid = json!({"msg_type": "text", "content": text("re"), "uuid": "u".repeat(51)});
    assert_eq!(app.call(Method::POST, &url(&m, "/reply"), &t, Some(uuid)).await.code(), 230001);
    // A chat the bot is not in.
    let helper = app.token("helper-bot").await;
    let other = app.new_chat(&helper, json!({"user_id_list": [app.open_id("helper-bot", "alice")]})).await;
    let theirs = post_as(&app, &other, "alice", "elsewhere").await;
    assert_eq!(app.call(Method::POST, &url(&theirs, "/reply"), &t, Some(ok_body.clone())).await.code(), 230002);
    // A recalled message.
    assert_eq!(app.call(Method::DELETE, &url(&m, ""), &t, None).await.code(), 0);
    assert_eq!(app.call(Method::POST, &url(&m, "/reply"), &t, Some(ok_body)).await.code(), 230011);
}

#[tokio::test]
async fn get_a_message() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let chat = group(&app, &t).await;
    let m = post_as(&app, &chat, "alice", "hello").await;
    let r = get(&app, &t, &m).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let item = &r.body["data"]["items"][0];
    assert_eq!(r.body["data"]["items"].as_array().unwrap().len(), 1);
    assert_eq!(item["message_id"], m.as_str());
    assert_eq!(item["body"]["content"], text("hello"));
    assert_eq!(item["sender"], json!({"id": app.open_id("demo-bot", "alice"), "id_type": "open_id", "sender_type": "user", "tenant_key": "736588c9260f175e"}));
    assert_eq!((item["deleted"].as_bool(), item["updated"].as_bool()), (Some(false), Some(false)));
    let r = app.call(Method::GET, &url(&m, "?user_id_type=user_id"), &t, None).await;
    assert_eq!(r.body["data"]["items"][0]["sender"]["id_type"], "user_id");
    assert_eq!(app.call(Method::GET, &url(&m, "?user_id_type=nope"), &t, None).await.code(), 230001);
    assert_eq!(get(&app, &t, "om_nope").await.code(), 230001);
    let helper = app.token("helper-bot").await;
    assert_eq!(get(&app, &helper, &m).await.code(), 99991672, "helper-bot holds no message scope");
}

#[tokio::test]
async fn edit_text_and_post_within_the_limits() {
    let app = TestApp::demo().await;
    app.state.clock.freeze();
    let t = app.token("demo-bot").await;
    let chat = group(&app, &t).await;
    let m = send(&app, &t, &chat, "text", &text("draft")).await;
    app.state.clock.advance_ms(1000);
    let r = app.call(Method::PUT, &url(&m, ""), &t, Some(json!({"msg_type": "text", "content": text("final")}))).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let d = &r.body["data"];
    assert_eq!((d["updated"].as_bool(), d["body"]["content"].as_str()), (Some(true), Some(text("final").as_str())));
    assert_ne!(d["update_time"], d["create_time"]);
    let post = json!({"zh_cn": {"title": "t", "content": [[{"tag": "text", "text": "p"}]]}}).to_string();
    assert_eq!(app.call(Method::PUT, &url(&m, ""), &t, Some(json!({"msg_type": "post", "content": post}))).await.code(), 0);
    assert_eq!(get(&app, &t, &m).await.body["data"]["items"][0]["msg_type"], "post");

    // Parameters.
    let put = |id: &str, body: Value| {
        let (app, t, id) = (&app, t.clone(), id.to_string());
        async move { app.call(Method::PUT, &url(&id, ""), &t, Some(body)).await.code() }
    };
    assert_eq!(put(&m, json!({"msg_type": "image", "content": json!({"image_key": "k"}).to_string()})).await, 230001);
    assert_eq!(put(&m, json!({"msg_type": "text"})).await, 230001);
    assert_eq!(put("om_nope", json!({"msg_type": "text", "content": text("x")})).await, 230001);
    // Another sender's message.
    let alices = post_as(&app, &chat, "alice", "mine").await;
    assert_eq!(put(&alices, json!({"msg_type": "text", "content": text("x")})).await, 230071);
    // A card is not edited this way.
    let c = send(&app, &t, &chat, "interactive", &card("c", true)).await;
    assert_eq!(put(&c, json!({"msg_type": "text", "content": text("x")})).await, 230001);
    // 20 edits in all.
    for i in 2..20 {
        assert_eq!(put(&m, json!({"msg_type": "text", "content": text(&i.to_string())})).await, 0, "edit {i}");
    }
    assert_eq!(put(&m, json!({"msg_type": "text", "content": text("21st")})).await, 230072);
    // Within 24 h of sending.
    let late = send(&app, &t, &chat, "text", &text("late")).await;
    app.state.clock.advance_ms(DAY_MS + 1);
    let t = app.token("demo-bot").await;
    assert_eq!(app.call(Method::PUT, &url(&late, ""), &t, Some(json!({"msg_type": "text", "content": text("x")}))).await.code(), 230075);
    // Recalled.
    let gone = send(&app, &t, &chat, "text", &text("gone")).await;
    assert_eq!(app.call(Method::DELETE, &url(&gone, ""), &t, None).await.code(), 0);
    assert_eq!(app.call(Method::PUT, &url(&gone, ""), &t, Some(json!({"msg_type": "text", "content": text("x")}))).await.code(), 230011);
}

#[tokio::test]
async fn patch_updates_shared_cards_only() {
    let app = TestApp::demo().await;
    app.state.clock.freeze();
    let t = app.token("demo-bot").await;
    let chat = group(&app, &t).await;
    let c = send(&app, &t, &chat, "interactive", &card("working…", true)).await;
    let patch = |id: &str, content: String| {
        let (app, t, id) = (&app, t.clone(), id.to_string());
        async move { app.call(Method::PATCH, &url(&id, ""), &t, Some(json!({"content": content}))).await }
    };
    let r = patch(&c, card("done", true)).await;
    assert_eq!((r.code(), &r.body["data"]), (0, &json!({})), "{}", r.body);
    let item = get(&app, &t, &c).await.body["data"]["items"][0].clone();
    assert_eq!((item["body"]["content"].as_str(), item["updated"].as_bool()), (Some(card("done", true).as_str()), Some(true)));
    // A card that is not shared, before or after.
    assert_eq!(patch(&c, card("private", false)).await.code(), 230001);
    let private = send(&app, &t, &chat, "interactive", &card("p", false)).await;
    assert_eq!(patch(&private, card("p2", true)).await.code(), 230001);
    // Not a card message; not a card; too long; missing content.
    let m = send(&app, &t, &chat, "text", &text("t")).await;
    assert_eq!(patch(&m, card("x", true)).await.code(), 230001);
    assert_eq!(patch(&c, text("no card")).await.code(), 230099);
    assert_eq!(patch(&c, card(&"x".repeat(31 * 1024), true)).await.code(), 230025);
    assert_eq!(app.call(Method::PATCH, &url(&c, ""), &t, Some(json!({}))).await.code(), 230001);
    // 14 days.
    app.state.clock.advance_ms(14 * DAY_MS + 1);
    let t = app.token("demo-bot").await;
    let r = app.call(Method::PATCH, &url(&c, ""), &t, Some(json!({"content": card("late", true)}))).await;
    assert_eq!(r.code(), 230031);
    // Recalled (by the owner, a year at most).
    assert_eq!(app.call(Method::DELETE, &url(&c, ""), &t, None).await.code(), 230009, "own message, older than 24 h");
    let fresh = send(&app, &t, &chat, "interactive", &card("f", true)).await;
    assert_eq!(app.call(Method::DELETE, &url(&fresh, ""), &t, None).await.code(), 0);
    let r = app.call(Method::PATCH, &url(&fresh, ""), &t, Some(json!({"content": card("x", true)}))).await;
    assert_eq!(r.code(), 230011);
}

#[tokio::test]
async fn recall_own_and_as_owner_or_manager() {
    let app = TestApp::demo().await;
    app.state.clock.freeze();
    let t = app.token("demo-bot").await;
    let chat = group(&app, &t).await;
    let mine = send(&app, &t, &chat, "text", &text("oops")).await;
    let r = app.call(Method::DELETE, &url(&mine, ""), &t, None).await;
    assert_eq!((r.code(), &r.body["data"]), (0, &json!({})), "{}", r.body);
    let list = app.call(Method::GET, &format!("/open-apis/im/v1/messages?container_id_type=chat&container_id={chat}"), &t, None).await;
    let item = &list.body["data"]["items"][0];
    assert_eq!(item["deleted"], true);
    assert!(!item["body"]["content"].as_str().unwrap().contains("oops"), "the content is gone: {item}");
    assert_eq!(get(&app, &t, &mine).await.code(), 230011);
    assert_eq!(app.call(Method::DELETE, &url(&mine, ""), &t, None).await.code(), 230011);
    let recalled = events_of(&app, "im.message.recalled_v1").await;
    assert_eq!(recalled.len(), 1);
    assert_eq!((recalled[0]["message_id"].as_str(), recalled[0]["recall_type"].as_str()), (Some(mine.as_str()), Some("message_owner")));

    // A user's message: the bot owns the chat.
    let alices = post_as(&app, &chat, "alice", "spam").await;
    assert_eq!(app.call(Method::DELETE, &url(&alices, ""), &t, None).await.code(), 0);
    assert_eq!(events_of(&app, "im.message.recalled_v1").await[1]["recall_type"], "group_owner");
    // In a chat another bot created and alice owns, demo-bot is a plain member: 230026.
    let helper = app.token("helper-bot").await;
    let body = json!({"owner_id": app.open_id("helper-bot", "alice"), "bot_id_list": [app.app_id("demo-bot")]});
    let theirs = app.new_chat(&helper, body).await;
    let hers = post_as(&app, &theirs, "alice", "hers").await;
    assert_eq!(app.call(Method::DELETE, &url(&hers, ""), &t, None).await.code(), 230026);
    assert_eq!(app.call(Method::DELETE, &url("om_nope", ""), &t, None).await.code(), 230001);
    // Own messages within 24 h; others' (as owner) within a year.
    let old_mine = send(&app, &t, &chat, "text", &text("old")).await;
    let old_hers = post_as(&app, &chat, "alice", "old").await;
    app.state.clock.advance_ms(DAY_MS + 1);
    let t = app.token("demo-bot").await;
    assert_eq!(app.call(Method::DELETE, &url(&old_mine, ""), &t, None).await.code(), 230009);
    assert_eq!(app.call(Method::DELETE, &url(&old_hers, ""), &t, None).await.code(), 0);
    let older = post_as(&app, &chat, "alice", "older").await;
    app.state.clock.advance_ms(366 * DAY_MS);
    let t = app.token("demo-bot").await;
    assert_eq!(app.call(Method::DELETE, &url(&older, ""), &t, None).await.code(), 230009);
}

#[tokio::test]
async fn forward_to_a_chat_or_a_user() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let from = group(&app, &t).await;
    let to = group(&app, &t).await;
    let m = post_as(&app, &from, "alice", "worth sharing").await;
    let fwd = format!("{}?receive_id_type=chat_id&uuid=f-1", url(&m, "/forward"));
    let r = app.call(Method::POST, &fwd, &t, Some(json!({"receive_id": to}))).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let d = &r.body["data"];
    assert_eq!((d["chat_id"].as_str(), d["msg_type"].as_str()), (Some(to.as_str()), Some("text")));
    assert_eq!(d["body"]["content"], text("worth sharing"));
    assert_eq!(d["sender"]["id"], app.app_id("demo-bot"));
    assert_ne!(d["message_id"], m.as_str());
    let again = app.call(Method::POST, &fwd, &t, Some(json!({"receive_id": to}))).await;
    assert_eq!(again.body["data"]["message_id"], d["message_id"], "uuid dedup");
    // To a user: the p2p chat.
    let to_user = format!("{}?receive_id_type=open_id", url(&m, "/forward"));
    let r = app.call(Method::POST, &to_user, &t, Some(json!({"receive_id": app.open_id("demo-bot", "bob")}))).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    assert_ne!(r.body["data"]["chat_id"], to.as_str());
    // Errors.
    assert_eq!(app.call(Method::POST, &url(&m, "/forward"), &t, Some(json!({"receive_id": to}))).await.code(), 230001);
    assert_eq!(app.call(Method::POST, &fwd, &t, Some(json!({}))).await.code(), 230001);
    let helper = app.token("helper-bot").await;
    let elsewhere = app.new_chat(&helper, json!({})).await;
    assert_eq!(app.call(Method::POST, &fwd, &t, Some(json!({"receive_id": elsewhere}))).await.code(), 230002);
    assert_eq!(app.call(Method::DELETE, &url(&m, ""), &t, None).await.code(), 0);
    assert_eq!(app.call(Method::POST, &fwd, &t, Some(json!({"receive_id": to}))).await.code(), 230011);
}

#[tokio::test]
async fn read_receipts_come_from_users_reading_the_chat() {
    let app = TestApp::demo().await;
    app.state.clock.freeze();
    let t = app.token("demo-bot").await;
    let chat = group(&app, &t).await;
    let m = send(&app, &t, &chat, "text", &text("please read")).await;
    let alices = post_as(&app, &chat, "alice", "from alice").await;
    let reads = format!("{}?user_id_type=open_id", url(&m, "/read_users"));
    let r = app.call(Method::GET, &reads, &t, None).await;
    assert_eq!((r.code(), r.body["data"]["items"].as_array().map(Vec::len)), (0, Some(0)), "{}", r.body);

    app.state.clock.advance_ms(5000);
    let read_at = app.state.clock.now_ms();
    let d = control_ok(&app, Method::POST, &format!("/_larkstack/chats/{chat}/read"), Some(json!({"user": "alice"}))).await;
    assert_eq!(d["read_message_ids"], json!([m]), "only bots' messages get receipts");
    app.state.clock.advance_ms(1000);
    let again = control_ok(&app, Method::POST, &format!("/_larkstack/chats/{chat}/read"), Some(json!({"user": "alice"}))).await;
    assert_eq!(again["read_message_ids"], json!([]), "read once");
    control_ok(&app, Method::POST, &format!("/_larkstack/chats/{chat}/read"), Some(json!({"user": "bob"}))).await;

    let r = app.call(Method::GET, &format!("{reads}&page_size=1"), &t, None).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let d = &r.body["data"];
    assert_eq!(
        d["items"][0],
        json!({"user_id_type": "open_id", "user_id": app.open_id("demo-bot", "alice"), "timestamp": read_at.to_string(), "tenant_key": "736588c9260f175e"})
    );
    assert_eq!(d["has_more"], true);
    let next = format!("{reads}&page_size=1&page_token={}", d["page_token"].as_str().unwrap());
    let r = app.call(Method::GET, &next, &t, None).await;
    assert_eq!(r.body["data"]["items"][0]["user_id"], app.open_id("demo-bot", "bob"));
    assert_eq!(r.body["data"]["has_more"], false);
    let events = events_of(&app, "im.message.message_read_v1").await;
    assert_eq!(events.len(), 2, "alice's and bob's first reads");
    assert_eq!(events[0]["messages"][0]["message_id"], m.as_str());

    // Errors.
    assert_eq!(app.call(Method::GET, &url(&m, "/read_users"), &t, None).await.code(), 230001, "user_id_type is required");
    assert_eq!(app.call(Method::GET, &format!("{}?user_id_type=open_id", url(&alices, "/read_users")), &t, None).await.code(), 230012);
    assert_eq!(app.call(Method::GET, &format!("{reads}&page_token=zz"), &t, None).await.code(), 230001);
    app.state.clock.advance_ms(7 * DAY_MS);
    let t = app.token("demo-bot").await;
    assert_eq!(app.call(Method::GET, &reads, &t, None).await.code(), 230033);
    let token = app.state.admin_token.clone();
    let r = app.call(Method::POST, &format!("/_larkstack/chats/{chat}/read"), &token, Some(json!({"user": "gina"}))).await;
    assert_eq!(r.code(), 400, "gina is not in the chat: {}", r.body);
}

#[tokio::test]
async fn reactions_and_read_receipts_survive_export_and_import() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let chat = group(&app, &t).await;
    let m = send(&app, &t, &chat, "text", &text("keep me")).await;
    let r = app.call(Method::POST, &url(&m, "/reactions"), &t, Some(json!({"reaction_type": {"emoji_type": "DONE"}}))).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let reply = app.call(Method::POST, &url(&m, "/reply"), &t, Some(json!({"msg_type": "text", "content": text("re"), "reply_in_thread": true}))).await;
    assert_eq!(reply.code(), 0, "{}", reply.body);
    control_ok(&app, Method::POST, &format!("/_larkstack/chats/{chat}/read"), Some(json!({"user": "alice"}))).await;
    let exported = app.export_state().await;
    assert_eq!(records_of(&exported, "reaction").len(), 1);
    assert_eq!(records_of(&exported, "message_read").len(), 2, "alice read the message and the reply");

    control_ok(&app, Method::POST, "/_larkstack/reset", None).await;
    assert_eq!(records_of(&app.export_state().await, "reaction"), Vec::<Value>::new(), "reset forgets reactions");
    let r = app.import_state(&ndjson(&exported)).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    assert_eq!(app.export_state().await, exported, "export → reset → import → export gives the same state");
    let listed = app.call(Method::GET, &url(&m, "/reactions"), &t, None).await;
    assert_eq!(listed.body["data"]["items"][0]["reaction_type"]["emoji_type"], "DONE");
    let readers = app.call(Method::GET, &format!("{}?user_id_type=open_id", url(&m, "/read_users")), &t, None).await;
    assert_eq!(readers.body["data"]["items"][0]["user_id"], app.open_id("demo-bot", "alice"));
    assert!(get(&app, &t, &m).await.body["data"]["items"][0]["thread_id"].as_str().unwrap().starts_with("omt_"), "the thread id is in the body");
}

/// `GET /open-apis/im/v1/messages` of a thread.
fn thread_list(thread: &str, query: &str) -> String {
    format!("/open-apis/im/v1/messages?container_id_type=thread&container_id={thread}{query}")
}

fn ids(r: &Reply) -> Vec<String> {
    r.body["data"]["items"].as_array().unwrap_or_else(|| panic!("{}", r.body)).iter().map(|m| m["message_id"].as_str().unwrap().to_string()).collect()
}

/// Replies `s` to `to` (in a thread when `in_thread`): the reply's data.
async fn replied(app: &TestApp, token: &str, to: &str, s: &str, in_thread: bool) -> Value {
    let body = json!({"msg_type": "text", "content": text(s), "reply_in_thread": in_thread});
    let r = app.call(Method::POST, &url(to, "/reply"), token, Some(body)).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    r.body["data"].clone()
}

#[tokio::test]
async fn a_thread_lists_its_root_then_its_replies() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    // Alice owns the chat, so the bot can leave it at the end.
    let alice = app.open_id("demo-bot", "alice");
    let chat = app.new_chat(&t, json!({"owner_id": alice, "user_id_list": [alice]})).await;
    app.state.clock.freeze();
    let root = post_as(&app, &chat, "alice", "question").await;
    let plain = replied(&app, &t, &root, "not in the thread", false).await;
    let first = replied(&app, &t, &root, "in the thread", true).await;
    let thread = first["thread_id"].as_str().unwrap().to_string();
    let first = first["message_id"].as_str().unwrap().to_string();
    let second = replied(&app, &t, &first, "a reply to a thread message stays in it", false).await;
    assert_eq!(second["thread_id"], thread.as_str());
    let second = second["message_id"].as_str().unwrap().to_string();
    // Another thread of the same chat, and a message after: neither belongs to this one.
    app.state.clock.advance_ms(1000); // past the chat's 5 messages a second
    let other_root = send(&app, &t, &chat, "text", &text("another topic")).await;
    let other = replied(&app, &t, &other_root, "elsewhere", true).await;
    assert_ne!(other["thread_id"], thread.as_str());
    send(&app, &t, &chat, "text", &text("after")).await;

    let r = app.call(Method::GET, &thread_list(&thread, ""), &t, None).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    assert_eq!(ids(&r), [root.as_str(), first.as_str(), second.as_str()], "root, then replies; not {}", plain["message_id"]);
    assert_eq!(r.body["data"]["has_more"], false);
    assert!(r.body["data"]["items"].as_array().unwrap().iter().all(|m| m["thread_id"] == thread.as_str() && m["chat_id"] == chat.as_str()));
    let desc = app.call(Method::GET, &thread_list(&thread, "&sort_type=ByCreateTimeDesc"), &t, None).await;
    assert_eq!(ids(&desc), [second.as_str(), first.as_str(), root.as_str()]);

    // Pages of one.
    let mut walked = Vec::new();
    let mut token = String::new();
    loop {
        let r = app.call(Method::GET, &thread_list(&thread, &format!("&page_size=1&page_token={token}")), &t, None).await;
        assert_eq!(r.code(), 0, "{}", r.body);
        walked.extend(ids(&r));
        if r.body["data"]["has_more"] == false {
            break;
        }
        token = r.body["data"]["page_token"].as_str().unwrap().to_string();
    }
    assert_eq!(walked, [root.as_str(), first.as_str(), second.as_str()]);

    // A recalled thread reply is listed as deleted.
    assert_eq!(app.call(Method::DELETE, &url(&second, ""), &t, None).await.code(), 0);
    let r = app.call(Method::GET, &thread_list(&thread, ""), &t, None).await;
    assert_eq!(r.body["data"]["items"][2]["deleted"], true, "{}", r.body);

    // Errors: no time range for a thread, an unknown thread, a bot outside the chat.
    for query in ["&start_time=0", "&end_time=4102444800"] {
        let r = app.call(Method::GET, &thread_list(&thread, query), &t, None).await;
        assert_eq!(r.code(), 230001, "{query}: {}", r.body);
    }
    let r = app.call(Method::GET, &thread_list("omt_000000000000unknown", ""), &t, None).await;
    assert_eq!((r.code(), r.body["error"]["field_violations"][0]["field"].as_str()), (230001, Some("container_id")), "{}", r.body);
    let r = app.call(Method::GET, "/open-apis/im/v1/messages?container_id_type=topic&container_id=x", &t, None).await;
    assert_eq!(r.code(), 230001, "{}", r.body);
    let helper = app.token("helper-bot").await;
    assert_eq!(app.call(Method::GET, &thread_list(&thread, ""), &helper, None).await.code(), 99991672, "no read scope");

    // The thread index is derived from the messages: an import rebuilds it.
    let exported = app.export_state().await;
    control_ok(&app, Method::POST, "/_larkstack/reset", None).await;
    assert_eq!(app.call(Method::GET, &thread_list(&thread, ""), &t, None).await.code(), 230001, "reset forgets the thread");
    let r = app.import_state(&ndjson(&exported)).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let r = app.call(Method::GET, &thread_list(&thread, ""), &t, None).await;
    assert_eq!(ids(&r), [root.as_str(), first.as_str(), second.as_str()], "{}", r.body);

    // Once the bot left the chat, its threads are closed to it.
    let leave = format!("/open-apis/im/v1/chats/{chat}/members?member_id_type=app_id");
    let r = app.call(Method::DELETE, &leave, &t, Some(json!({"id_list": [app.app_id("demo-bot")]}))).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    assert_eq!(app.call(Method::GET, &thread_list(&thread, ""), &t, None).await.code(), 230002);
}

/// Every message operation and reaction endpoint checks its scopes before anything else: a bot
/// holding none of them (helper-bot) is refused with 99991672 naming the endpoint's scopes.
#[tokio::test]
async fn every_message_operation_checks_its_scopes() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let helper = app.token("helper-bot").await;
    let chat = group(&app, &t).await;
    let m = send(&app, &t, &chat, "text", &text("scoped")).await;
    let reaction = format!("/open-apis/im/v1/messages/{m}/reactions/r_x");
    let cases = [
        (Method::POST, url(&m, "/reply"), "im:message:send_as_bot"),
        (Method::GET, url(&m, ""), "im:message:readonly"),
        (Method::PUT, url(&m, ""), "im:message:update"),
        (Method::PATCH, url(&m, ""), "im:message:update"),
        (Method::DELETE, url(&m, ""), "im:message:recall"),
        (Method::POST, url(&m, "/forward?receive_id_type=chat_id"), "im:message:send_as_bot"),
        (Method::GET, url(&m, "/read_users?user_id_type=open_id"), "im:message:basic"),
        (Method::POST, url(&m, "/reactions"), "im:message.reactions:write_only"),
        (Method::GET, url(&m, "/reactions"), "im:message.reactions:read"),
        (Method::DELETE, reaction, "im:message.reactions:write_only"),
        (Method::GET, format!("/open-apis/im/v1/messages/{m}/resources/img_x?type=image"), "im:message:readonly"),
        (Method::GET, format!("/open-apis/im/v1/messages?container_id_type=chat&container_id={chat}"), "im:message:readonly"),
    ];
    for (method, path, scope) in cases {
        let body = Some(json!({"msg_type": "text", "content": text("x"), "receive_id": chat}));
        let r = app.call(method.clone(), &path, &helper, body).await;
        assert_eq!((r.status.as_u16(), r.code()), (400, 99991672), "{method} {path}: {}", r.body);
        assert!(r.body.to_string().contains(scope), "{method} {path} names {scope}: {}", r.body);
    }
    // Nothing changed for the bot that may.
    assert_eq!(get(&app, &t, &m).await.body["data"]["items"][0]["body"]["content"], text("scoped"));
}
