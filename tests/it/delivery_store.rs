//! The delivery tables through the `Store` trait, on the backend under test: the fan-out cursor
//! check, claims (commit order per chat, leases, app filter, per-app bound), lease takeover, the
//! outcome of an attempt and the bounds on kept attempts.

use larkstack::domain::ids::AppId;
use larkstack::store::{
    AttemptBounds, AttemptFilter, AttemptRecord, DeliveryClaim, DeliveryNext, FanOut, FinishedAttempt, NewDelivery, Store,
};
use serde_json::json;

use crate::support::*;

fn row(app: &str, chat: &str, seq: i64) -> NewDelivery {
    NewDelivery {
        event_id: format!("{app}-{seq:028}"),
        app_id: AppId(app.into()),
        seq,
        chat_id: chat.into(),
        event_type: "im.message.receive_v1".into(),
        payload: json!({"schema": "2.0", "seq": seq}).to_string(),
        committed_ms: 1_000 + seq,
    }
}

fn claim(owner: &str, apps: &[&str], now_ms: i64, wall_ms: i64) -> DeliveryClaim {
    DeliveryClaim {
        owner: owner.into(),
        now_ms,
        wall_ms,
        lease_until_ms: wall_ms + 10_000,
        apps: apps.iter().map(|a| AppId(a.to_string())).collect(),
        per_app: 16,
        limit: 100,
        run: 1,
        chat_id: None,
    }
}

fn attempt(r: &NewDelivery, response: &str, delivered: bool) -> AttemptRecord {
    AttemptRecord {
        event_id: r.event_id.clone(),
        seq: r.seq,
        event_type: r.event_type.clone(),
        app_id: r.app_id.clone(),
        chat_id: r.chat_id.clone(),
        url: "http://127.0.0.1:1/hook".into(),
        attempt: 1,
        at_ms: 5_000,
        status: Some(if delivered { 200 } else { 500 }),
        delivered,
        latency_ms: 3,
        response: response.into(),
        next_retry_ms: None,
        payload: r.payload.clone(),
        committed_ms: r.committed_ms,
    }
}

async fn finish(store: &dyn Store, owner: &str, r: &NewDelivery, next: DeliveryNext) {
    let finished = FinishedAttempt {
        owner: owner.into(),
        attempt: attempt(r, "ok", next == DeliveryNext::Done),
        next,
        keep: AttemptBounds::DEFAULT,
    };
    store.finish_delivery(finished, None).await.unwrap();
}

fn ids(claimed: &[larkstack::store::Delivery]) -> Vec<i64> {
    claimed.iter().map(|d| d.new.seq).collect()
}

#[tokio::test]
async fn a_fan_out_stores_its_range_once_and_a_stale_one_changes_nothing() {
    let data = tempfile::tempdir().unwrap();
    let store = open_store(data.path()).await;
    assert_eq!(store.fan_out(0, 2, vec![row("cli_a", "oc_1", 1), row("cli_a", "oc_1", 2)], None).await.unwrap().0, FanOut::Done);
    // A second node that read the same range: refused, told where the cursor is, nothing stored.
    assert_eq!(store.fan_out(0, 2, vec![row("cli_a", "oc_9", 1)], None).await.unwrap().0, FanOut::Moved(2));
    let q = store.delivery_queue().await.unwrap();
    assert_eq!((q.rows, q.cursor), (2, 2));
    assert_eq!(q.bytes, (row("cli_a", "oc_1", 1).payload.len() + row("cli_a", "oc_1", 2).payload.len()) as i64);
    // The cursor survives reopening the store (a restart).
    drop(store);
    let store = open_store(data.path()).await;
    assert_eq!(store.delivery_queue().await.unwrap().cursor, 2);
    assert_eq!(store.fan_out(2, 3, vec![], None).await.unwrap().0, FanOut::Done);
    assert_eq!(store.delivery_queue().await.unwrap().cursor, 3);
}

#[tokio::test]
async fn a_fan_out_with_a_claim_leases_its_new_rows_in_the_same_commit() {
    let data = tempfile::tempdir().unwrap();
    let store = open_store(data.path()).await;
    let (now, wall) = (10_000, 1_000_000);
    let mut c = claim("n1", &["cli_a"], now, wall);
    c.run = 8;
    let rows = vec![row("cli_a", "oc_1", 1), row("cli_a", "oc_1", 2), row("cli_a", "oc_2", 3), row("cli_b", "oc_1", 4)];
    let (done, claimed) = store.fan_out(0, 4, rows, Some(c.clone())).await.unwrap();
    // The claiming node's apps only, each chat's rows as one run in commit order.
    assert_eq!((done, ids(&claimed)), (FanOut::Done, vec![1, 2, 3]));
    // They are leased: another node gets nothing of cli_a's while the lease runs.
    assert!(store.claim_deliveries(claim("n2", &["cli_a"], now, wall + 1)).await.unwrap().is_empty());
    // A chat whose run is out waits for it: seq 5 is stored but not claimed with it.
    let (done, claimed) = store.fan_out(4, 5, vec![row("cli_a", "oc_1", 5)], Some(c.clone())).await.unwrap();
    assert_eq!((done, ids(&claimed)), (FanOut::Done, vec![]));
    // A stale fan-out claims nothing either.
    let (done, claimed) = store.fan_out(0, 5, vec![row("cli_a", "oc_9", 9)], Some(c)).await.unwrap();
    assert_eq!((done, claimed.len()), (FanOut::Moved(5), 0));
    assert_eq!(store.delivery_queue().await.unwrap().rows, 5);
}

#[tokio::test]
async fn finishing_a_delivery_with_a_claim_of_its_chat_leases_the_chats_next_run_only() {
    let data = tempfile::tempdir().unwrap();
    let store = open_store(data.path()).await;
    let (now, wall) = (10_000, 1_000_000);
    let rows = vec![row("cli_a", "oc_1", 1), row("cli_a", "oc_1", 2), row("cli_a", "oc_1", 3), row("cli_a", "oc_2", 4)];
    store.fan_out(0, 4, rows.clone(), None).await.unwrap();
    assert_eq!(ids(&store.claim_deliveries(claim("n1", &["cli_a"], now, wall)).await.unwrap()), [1, 4]);
    // While seq 1 is leased, oc_1 is held: going on with it before 1 is finished finds nothing.
    let mut next = claim("n1", &["cli_a"], now, wall);
    next.chat_id = Some("oc_1".into());
    next.run = 8;
    // The app is at its bound (oc_2 leased): going on with a chat keeps the chat's slot.
    next.per_app = 1;
    assert!(store.claim_deliveries(next.clone()).await.unwrap().is_empty());
    // Finishing seq 1 and claiming oc_1 in one transaction: the rest of oc_1 (its slot passes
    // from the finished run to the next), not oc_2's rows.
    let finished = FinishedAttempt {
        owner: "n1".into(),
        attempt: attempt(&rows[0], "ok", true),
        next: DeliveryNext::Done,
        keep: AttemptBounds::DEFAULT,
    };
    assert_eq!(ids(&store.finish_delivery(finished, Some(next)).await.unwrap()), [2, 3]);
    assert_eq!(store.delivery_queue().await.unwrap().rows, 3);
    // They are leased to n1: nobody else claims them.
    assert!(store.claim_deliveries(claim("n2", &["cli_a"], now, wall + 1)).await.unwrap().is_empty());
}

#[tokio::test]
async fn claims_keep_commit_order_per_chat_and_take_over_ended_leases() {
    let data = tempfile::tempdir().unwrap();
    let store = open_store(data.path()).await;
    let rows = vec![row("cli_a", "oc_1", 1), row("cli_a", "oc_1", 2), row("cli_a", "oc_2", 3), row("cli_b", "oc_1", 4)];
    store.fan_out(0, 4, rows.clone(), None).await.unwrap();
    let (now, wall) = (10_000, 1_000_000);
    // One per (app, chat), the earliest; cli_b is not this node's to deliver.
    let first = store.claim_deliveries(claim("n1", &["cli_a"], now, wall)).await.unwrap();
    assert_eq!(ids(&first), [1, 3]);
    // Leased rows hold their chats: nothing more for anyone while the leases run.
    assert!(store.claim_deliveries(claim("n2", &["cli_a"], now, wall + 1)).await.unwrap().is_empty());
    // Seq 1 waits for a retry far ahead: it no longer holds seq 2 back.
    finish(&*store, "n1", &rows[0], DeliveryNext::Retry { failed: 1, due_ms: now + 15_000 }).await;
    assert_eq!(ids(&store.claim_deliveries(claim("n1", &["cli_a"], now, wall + 2)).await.unwrap()), [2]);
    // n1 dies holding seq 2 and 3; once the leases end, n2 takes them over with the same ids.
    assert!(store.claim_deliveries(claim("n2", &["cli_a"], now, wall + 9_999)).await.unwrap().is_empty());
    let taken = store.claim_deliveries(claim("n2", &["cli_a"], now, wall + 10_002)).await.unwrap();
    assert_eq!(ids(&taken), [2, 3]);
    assert_eq!(taken[0].new.event_id, rows[1].event_id);
    // The dead node's late outcome does not touch rows it no longer holds.
    finish(&*store, "n1", &rows[1], DeliveryNext::Done).await;
    assert_eq!(store.delivery_queue().await.unwrap().rows, 4);
    finish(&*store, "n2", &rows[1], DeliveryNext::Done).await;
    finish(&*store, "n2", &rows[2], DeliveryNext::Done).await;
    assert_eq!(store.delivery_queue().await.unwrap().rows, 2);
    // The retry fires when the larkstack clock reaches it.
    assert!(store.claim_deliveries(claim("n2", &["cli_a"], now + 14_999, wall + 10_003)).await.unwrap().is_empty());
    let retry = store.claim_deliveries(claim("n2", &["cli_a"], now + 15_000, wall + 10_004)).await.unwrap();
    assert_eq!((ids(&retry), retry[0].failed), (vec![1], 1));
    // A node restarted on its data dir takes its own leases back at once.
    assert_eq!(store.release_leases("n2").await.unwrap(), 1);
    assert_eq!(ids(&store.claim_deliveries(claim("n2", &["cli_a", "cli_b"], now + 15_000, wall + 10_005)).await.unwrap()), [1, 4]);
}

#[tokio::test]
async fn claims_bound_the_leases_of_each_app() {
    let data = tempfile::tempdir().unwrap();
    let store = open_store(data.path()).await;
    let rows: Vec<_> = (1..=5).map(|i| row("cli_a", &format!("oc_{i}"), i)).collect();
    store.fan_out(0, 5, rows, None).await.unwrap();
    let mut c = claim("n1", &["cli_a"], 1, 1_000);
    c.per_app = 2;
    assert_eq!(ids(&store.claim_deliveries(c.clone()).await.unwrap()), [1, 2]);
    // Live leases count whoever holds them.
    c.owner = "n2".into();
    assert!(store.claim_deliveries(c.clone()).await.unwrap().is_empty());
    c.per_app = 3;
    assert_eq!(ids(&store.claim_deliveries(c).await.unwrap()), [3]);
}

#[tokio::test]
async fn attempts_are_kept_within_their_bounds_and_redelivery_requeues_from_them() {
    let data = tempfile::tempdir().unwrap();
    let store = open_store(data.path()).await;
    let rows: Vec<_> = (1..=8).map(|i| row("cli_a", &format!("oc_{i}"), i)).collect();
    store.fan_out(0, 8, rows.clone(), None).await.unwrap();
    store.claim_deliveries(claim("n1", &["cli_a"], 1, 1_000)).await.unwrap();
    let bounds = AttemptBounds { entries: 5, bytes: 1 << 20 };
    for r in &rows[..6] {
        let finished = FinishedAttempt { owner: "n1".into(), attempt: attempt(r, "ok", true), next: DeliveryNext::Done, keep: bounds };
        store.finish_delivery(finished, None).await.unwrap();
    }
    let kept = store.delivery_attempts(AttemptFilter { limit: 100, ..Default::default() }).await.unwrap();
    assert_eq!(kept.iter().map(|a| a.seq).collect::<Vec<_>>(), [2, 3, 4, 5, 6], "the oldest went first");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&kept[0].payload).unwrap(), json!({"schema": "2.0", "seq": 2}));
    // Bytes: two big responses leave room for one.
    let big = "x".repeat(600 << 10);
    for r in &rows[6..8] {
        let finished = FinishedAttempt { owner: "n1".into(), attempt: attempt(r, &big, true), next: DeliveryNext::Done, keep: bounds };
        store.finish_delivery(finished, None).await.unwrap();
    }
    let kept = store.delivery_attempts(AttemptFilter { limit: 100, ..Default::default() }).await.unwrap();
    assert_eq!(kept.iter().map(|a| a.seq).collect::<Vec<_>>(), [8]);
    assert_eq!(store.delivery_queue().await.unwrap().rows, 0, "delivered rows leave the queue");
    // Filters and the last-N limit.
    let one = store.delivery_attempts(AttemptFilter { event_id: Some(rows[7].event_id.clone()), limit: 10, ..Default::default() });
    assert_eq!(one.await.unwrap().len(), 1);
    let none = store.delivery_attempts(AttemptFilter { app_id: Some("cli_other".into()), limit: 10, ..Default::default() });
    assert!(none.await.unwrap().is_empty());
    // A delivered event is sent again from its kept attempt, due now, same id; unknown ids are not.
    assert!(store.redeliver(&rows[7].event_id, 50).await.unwrap());
    let again = store.claim_deliveries(claim("n2", &["cli_a"], 50, 2_000)).await.unwrap();
    assert_eq!((again[0].new.event_id.as_str(), again[0].new.payload.as_str()), (rows[7].event_id.as_str(), rows[7].payload.as_str()));
    // Redelivered while in flight: the attempt under way no longer removes it; it goes once more.
    assert!(store.redeliver(&rows[7].event_id, 60).await.unwrap());
    finish(&*store, "n2", &rows[7], DeliveryNext::Done).await;
    assert_eq!(ids(&store.claim_deliveries(claim("n3", &["cli_a"], 60, 2_001)).await.unwrap()), [8]);
    assert!(!store.redeliver(&rows[0].event_id, 50).await.unwrap(), "its attempt was pruned");
    assert!(!store.redeliver("nope", 50).await.unwrap());
}

#[tokio::test]
async fn run_time_event_settings_are_stored_and_cleared() {
    let data = tempfile::tempdir().unwrap();
    let store = open_store(data.path()).await;
    let dir = larkstack::domain::directory::Directory::demo();
    let app = dir.apps()[0].app_id.clone();
    let mut s = dir.apps()[0].events.clone();
    s.event_url = Some("http://127.0.0.1:9/x".into());
    store.set_event_settings(&app, &s).await.unwrap();
    drop(store);
    let store = open_store(data.path()).await;
    assert_eq!(store.event_settings().await.unwrap(), vec![(app.clone(), s)]);
    // A reset keeps them (they are not the outbox's); a new fixture clears them.
    store.clear().await.unwrap();
    assert_eq!(store.event_settings().await.unwrap().len(), 1);
    store.clear_event_settings().await.unwrap();
    assert!(store.event_settings().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_claim_takes_a_run_of_one_chats_due_deliveries_in_commit_order() {
    let data = tempfile::tempdir().unwrap();
    let store = open_store(data.path()).await;
    let rows = vec![row("cli_a", "oc_1", 1), row("cli_a", "oc_2", 2), row("cli_a", "oc_1", 3), row("cli_a", "oc_1", 4), row("cli_a", "oc_1", 5)];
    store.fan_out(0, 5, rows.clone(), None).await.unwrap();
    let mut c = claim("n1", &["cli_a"], 10, 1_000);
    c.run = 3;
    // oc_1's first three, then oc_2's one; oc_1's fifth waits for the run to end.
    assert_eq!(ids(&store.claim_deliveries(c.clone()).await.unwrap()), [1, 3, 4, 2]);
    c.owner = "n2".into();
    assert!(store.claim_deliveries(c.clone()).await.unwrap().is_empty());
    // What the run did not attempt goes back and is claimable again, after the rest of its chat.
    store.release_deliveries("n1", vec![rows[3].event_id.clone()]).await.unwrap();
    for r in [&rows[0], &rows[2]] {
        finish(&*store, "n1", r, DeliveryNext::Done).await;
    }
    assert_eq!(ids(&store.claim_deliveries(c).await.unwrap()), [4, 5]);
}

/// A reset (`clear`) runs while the delivery engine reads the queue, the outbox and the settings
/// of every node (on PostgreSQL a TRUNCATE of every state table, which would deadlock with a
/// statement that reads two of them in the other order; the deadlock's victim was a failed
/// reset).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reset_while_the_engine_reads_never_fails() {
    let data = tempfile::tempdir().unwrap();
    let store = open_store(data.path()).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..3 {
        let (store, stop) = (store.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                store.delivery_queue().await.unwrap();
                store.outbox_stats().await.unwrap();
                store.deliveries_due(0, 0).await.unwrap();
                store.prune_events(1 << 20, 0).await.unwrap();
            }
        }));
    }
    for i in 0..40 {
        if let Err(e) = store.clear().await {
            panic!("reset {i} failed: {e}");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
}
