//! kill -9 while creates are in flight: every acknowledged chat is on disk with all its members,
//! and with its event: the outbox holds exactly one created event per stored chat, gap-free.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use larkstack::domain::events::EventBody;
use larkstack::domain::ids::ChatId;
use larkstack::store::EventQuery;
use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_chats_survive_sigkill() {
    let data = tempfile::tempdir().unwrap();
    let fixture = write_fixture(data.path(), &big_fixture(60));
    let server = Server::spawn(&data.path().join("db"), Some(&fixture), &["--rate-limits", "off"]);
    let client = reqwest::Client::new();
    let token_reply: serde_json::Value = client
        .post(server.url("/open-apis/auth/v3/tenant_access_token/internal"))
        .json(&json!({"app_id": DEMO_APP_ID, "app_secret": DEMO_SECRET}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token_reply["tenant_access_token"].as_str().unwrap().to_string();
    let directory: serde_json::Value = serde_json::from_slice(
        &std::process::Command::new(env!("CARGO_BIN_EXE_larkstack")).args(["directory", "--fixture"]).arg(&fixture).output().unwrap().stdout,
    )
    .unwrap();
    let members: Vec<String> =
        directory["users"].as_array().unwrap().iter().take(50).map(|u| u["open_ids"]["bot"].as_str().unwrap().to_string()).collect();

    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..16 {
        let (client, url, token, members, acked, stop) =
            (client.clone(), server.url("/open-apis/im/v1/chats"), token.clone(), members.clone(), acked.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let sent = client.post(&url).bearer_auth(&token).json(&json!({"name": "durable", "user_id_list": members})).send().await;
                let Ok(resp) = sent else { break };
                let Ok(body) = resp.json::<serde_json::Value>().await else { break };
                if body["code"] == 0 {
                    acked.lock().unwrap().push(body["data"]["chat_id"].as_str().unwrap().to_string());
                }
            }
        }));
    }
    // Let load build up, then pull the plug mid-flight.
    while acked.lock().unwrap().len() < 200 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 200);

    // Restart on the same data dir: the server comes back and every acknowledged chat is there.
    let restarted = Server::spawn(&data.path().join("db"), None, &[]);
    drop(restarted);
    let store = open_store(&data.path().join("db")).await;
    for id in &acked {
        let chat = store.get_chat(&ChatId(id.clone())).await.unwrap().unwrap_or_else(|| panic!("acknowledged chat {id} lost"));
        assert_eq!(chat.users.len(), 50, "{id} has all its members");
        assert_eq!(chat.bots.len(), 1);
    }
    // Events are committed with their change: one created event per stored chat (acknowledged or
    // not), none without its chat, and their seqs have no gap.
    let mut events = Vec::new();
    loop {
        let after = events.last().map(|e: &larkstack::domain::events::StoredEvent| e.seq).unwrap_or(0);
        let page = store.events(EventQuery { after, limit: 1000, ..Default::default() }).await.unwrap();
        if page.is_empty() {
            break;
        }
        events.extend(page);
    }
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=events.len() as i64).collect::<Vec<_>>(), "gap-free");
    assert!(events.iter().all(|e| matches!(e.event.body, EventBody::ChatCreated { .. })));
    let created: std::collections::HashSet<String> = events.iter().map(|e| e.event.chat_id.0.clone()).collect();
    assert_eq!(created.len(), events.len(), "one event per chat");
    assert_eq!(events.len() as u64, store.count_chats().await.unwrap(), "no chat without its event, no event without its chat");
    for id in &acked {
        assert!(created.contains(id), "acknowledged chat {id} lost its event");
    }
}
