use std::collections::HashSet;
use std::sync::Arc;

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn same_uuid_and_owner_answers_the_original_chat() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let alice = app.open_id("demo-bot", "alice");
    let first = app.create(&t, "?uuid=req-1", json!({"name": "一", "owner_id": alice})).await;
    let again = app.create(&t, "?uuid=req-1", json!({"name": "一", "owner_id": alice})).await;
    assert_eq!(again.code(), 0);
    assert_eq!(first.chat_id(), again.chat_id());
    assert_eq!(again.body["data"]["owner_id"], alice.as_str());
    // Different owner (here: the bot) with the same uuid is a different request.
    let bot_owned = app.create(&t, "?uuid=req-1", json!({"name": "一"})).await;
    assert_ne!(bot_owned.chat_id(), first.chat_id());
    // No uuid: no dedup.
    let a = app.create(&t, "", json!({})).await;
    let b = app.create(&t, "", json!({})).await;
    assert_ne!(a.chat_id(), b.chat_id());
    assert_eq!(app.state.store.count_chats().await.unwrap(), 4);
}

#[tokio::test]
async fn the_window_is_ten_hours_on_the_larkstack_clock() {
    let app = TestApp::demo().await;
    app.state.clock.freeze();
    let t = app.token("demo-bot").await;
    let first = app.create(&t, "?uuid=w", json!({})).await.chat_id();
    app.state.clock.advance_ms(10 * 3600 * 1000 - 1);
    // The token expired meanwhile; get a fresh one.
    let t = app.token("demo-bot").await;
    assert_eq!(app.create(&t, "?uuid=w", json!({})).await.chat_id(), first);
    app.state.clock.advance_ms(1);
    let second = app.create(&t, "?uuid=w", json!({})).await.chat_id();
    assert_ne!(second, first, "the window reopened");
    assert_eq!(app.create(&t, "?uuid=w", json!({})).await.chat_id(), second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_identical_requests_at_once_make_exactly_one_chat() {
    let app = Arc::new(TestApp::demo().await);
    let t = app.token("demo-bot").await;
    let alice = app.open_id("demo-bot", "alice");
    let barrier = Arc::new(tokio::sync::Barrier::new(32));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (app, t, alice, barrier) = (app.clone(), t.clone(), alice.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            app.create(&t, "?uuid=storm", json!({"owner_id": alice, "user_id_list": [alice]})).await
        }));
    }
    let mut chat_ids = HashSet::new();
    let mut busy = 0;
    for task in tasks {
        let r = task.await.unwrap();
        match r.code() {
            0 => {
                chat_ids.insert(r.chat_id());
            }
            232068 => busy += 1,
            other => panic!("unexpected code {other}: {}", r.body),
        }
    }
    assert_eq!(chat_ids.len(), 1, "every success names the same chat");
    assert_eq!(app.state.store.count_chats().await.unwrap(), 1, "exactly one chat exists ({busy} answered 232068)");
}
