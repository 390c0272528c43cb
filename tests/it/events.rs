//! Domain events: every change commits its events with it (the outbox), listed by
//! `GET /_larkstack/events`; none for a dedup hit or a refused change; reset and the state's
//! export/import round trip include them.

use axum::http::Method;
use larkstack::domain::directory::Directory;
use larkstack::state::{StateConfig, DEFAULT_OUTBOX_BYTES};
use serde_json::{json, Value};

use crate::support::*;

impl TestApp {
    /// `GET /_larkstack/events{query}`: the reply's `data`.
    async fn events(&self, query: &str) -> Value {
        let r = self.admin(Method::GET, &format!("/_larkstack/events{query}"), None).await;
        assert_eq!(r.code(), 0, "{}", r.body);
        r.body["data"].clone()
    }

    async fn event_items(&self, query: &str) -> Vec<Value> {
        self.events(query).await["items"].as_array().unwrap().clone()
    }

    async fn admin(&self, method: Method, uri: &str, body: Option<Value>) -> Reply {
        let token = self.state.admin_token.clone();
        self.call(method, uri, &token, body).await
    }

    fn uid(&self, user_key: &str) -> String {
        self.dir.users().iter().find(|u| u.key == user_key).unwrap().uid.0.clone()
    }
}

fn types(items: &[Value]) -> Vec<String> {
    items.iter().map(|e| e["type"].as_str().unwrap().to_string()).collect()
}

fn seqs(items: &[Value]) -> Vec<i64> {
    items.iter().map(|e| e["seq"].as_i64().unwrap()).collect()
}

#[tokio::test]
async fn one_event_per_kind_with_its_actor() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let bot = app.app_id("demo-bot");
    let helper = app.app_id("helper-bot");
    let o = |u: &str| app.open_id("demo-bot", u);
    let app_actor = json!({"kind": "app", "id": bot});
    let uid = |u: &str| app.uid(u);

    // Created.
    let id = app.new_chat(&t, json!({"name": "ev", "owner_id": o("alice"), "user_id_list": [o("bob")]})).await;
    let e = app.event_items("").await;
    assert_eq!(types(&e), ["larkstack.chat.created_v1"]);
    assert_eq!((e[0]["seq"].as_i64(), &e[0]["chat_id"], &e[0]["actor"]), (Some(1), &json!(id), &app_actor));
    assert!(e[0]["at_ms"].as_i64().unwrap() > 0);
    assert_eq!(e[0]["users"], json!([uid("alice"), uid("bob")]));
    assert_eq!(e[0]["owner"], json!({"kind": "user", "id": uid("alice")}));

    // Updated: changed keys only, owner transfer included.
    let r = app.call(Method::PUT, &format!("/open-apis/im/v1/chats/{id}"), &t, Some(json!({"name": "ev2", "owner_id": o("bob")}))).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let e = app.event_items("?after=1").await;
    assert_eq!(types(&e), ["im.chat.updated_v1"]);
    assert_eq!(e[0]["before_change"], json!({"name": "ev", "owner_id": {"kind": "user", "id": uid("alice")}}));
    assert_eq!(e[0]["after_change"], json!({"name": "ev2", "owner_id": {"kind": "user", "id": uid("bob")}}));
    assert_eq!(e[0]["actor"], app_actor);

    // Users added, removed; bots added, removed; managers added, removed.
    let members = format!("/open-apis/im/v1/chats/{id}/members");
    assert_eq!(app.call(Method::POST, &members, &t, Some(json!({"id_list": [o("carol"), o("erin")]}))).await.code(), 0);
    assert_eq!(app.call(Method::DELETE, &members, &t, Some(json!({"id_list": [o("erin")]}))).await.code(), 0);
    let bots = format!("{members}?member_id_type=app_id");
    assert_eq!(app.call(Method::POST, &bots, &t, Some(json!({"id_list": [helper]}))).await.code(), 0);
    assert_eq!(app.call(Method::DELETE, &bots, &t, Some(json!({"id_list": [helper]}))).await.code(), 0);
    let managers = format!("/open-apis/im/v1/chats/{id}/managers");
    let r = app.call(Method::POST, &format!("{managers}/add_managers"), &t, Some(json!({"manager_ids": [o("carol")]}))).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    assert_eq!(app.call(Method::POST, &format!("{managers}/delete_managers"), &t, Some(json!({"manager_ids": [o("carol")]}))).await.code(), 0);
    let e = app.event_items("?after=2").await;
    assert_eq!(
        types(&e),
        [
            "im.chat.member.user.added_v1",
            "im.chat.member.user.deleted_v1",
            "im.chat.member.bot.added_v1",
            "im.chat.member.bot.deleted_v1",
            "larkstack.chat.managers.added_v1",
            "larkstack.chat.managers.removed_v1",
        ]
    );
    assert!(e.iter().all(|x| x["actor"] == app_actor && x["chat_id"] == json!(id)));
    assert_eq!(e[0]["users"], json!([uid("carol"), uid("erin")]));
    assert_eq!((&e[1]["users"], &e[1]["reason"]), (&json!([uid("erin")]), &json!("removed")));
    assert_eq!(e[2]["bots"], json!([helper]));
    assert_eq!((&e[3]["bots"], &e[3]["reason"]), (&json!([helper]), &json!("removed")));
    assert_eq!(e[4]["users"], json!([uid("carol")]));
    assert_eq!(e[5]["users"], json!([uid("carol")]));

    // A group message with a mention; a p2p message (its chat's creation first).
    let text = format!(r#"<at user_id="{}">Carol</at> hi"#, o("carol"));
    let content = json!({"text": text}).to_string();
    let r = app
        .call(Method::POST, "/open-apis/im/v1/messages?receive_id_type=chat_id", &t, Some(json!({"receive_id": id, "msg_type": "text", "content": content})))
        .await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let message_id = r.body["data"]["message_id"].clone();
    let r = app
        .call(Method::POST, "/open-apis/im/v1/messages?receive_id_type=open_id", &t, Some(json!({"receive_id": o("erin"), "msg_type": "text", "content": "{\"text\":\"psst\"}"})))
        .await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let p2p = r.body["data"]["chat_id"].as_str().unwrap().to_string();
    let e = app.event_items("?after=8").await;
    assert_eq!(types(&e), ["im.message.receive_v1", "larkstack.chat.created_v1", "im.message.receive_v1"]);
    assert_eq!(e[0]["message_id"], message_id);
    assert_eq!((&e[0]["chat_type"], &e[0]["msg_type"], &e[0]["content"]), (&json!("group"), &json!("text"), &json!(content)));
    assert_eq!(e[0]["sender"], json!({"kind": "app", "id": bot}));
    assert_eq!(e[0]["mentions"], json!([{"key": "@_user_1", "id": o("carol"), "name": "Carol", "uid": uid("carol")}]));
    assert_eq!((&e[1]["chat_id"], &e[2]["chat_id"], &e[2]["chat_type"]), (&json!(p2p), &json!(p2p), &json!("p2p")));
    assert_eq!(e[2]["mentions"], json!([]));

    // The control API acting as users.
    let control = format!("/_larkstack/chats/{id}");
    assert_eq!(app.admin(Method::POST, &format!("{control}/join"), Some(json!({"user": "erin"}))).await.code(), 0);
    let r = app.admin(Method::POST, &format!("{control}/messages"), Some(json!({"user": "erin", "text": "<at user_id=\"carol\"></at> yo"}))).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    assert_eq!(app.admin(Method::POST, &format!("{control}/leave"), Some(json!({"user": "erin"}))).await.code(), 0);
    let e = app.event_items("?after=11").await;
    assert_eq!(types(&e), ["im.chat.member.user.added_v1", "im.message.receive_v1", "im.chat.member.user.deleted_v1"]);
    let erin = json!({"kind": "control_as_user", "id": uid("erin")});
    assert!(e.iter().all(|x| x["actor"] == erin), "{e:?}");
    assert_eq!(e[1]["sender"], json!({"kind": "user", "id": uid("erin")}));
    assert_eq!(e[1]["mentions"], json!([{"key": "@_user_1", "id": "carol", "uid": uid("carol")}]));
    assert_eq!((&e[2]["users"], &e[2]["reason"]), (&json!([uid("erin")]), &json!("left")));

    // Disbanded: one event.
    assert_eq!(app.call(Method::DELETE, &format!("/open-apis/im/v1/chats/{id}"), &t, None).await.code(), 0);
    let e = app.event_items("?after=14").await;
    assert_eq!(types(&e), ["im.chat.disbanded_v1"]);
    assert_eq!(e[0]["name"], "ev2");

    // The order is gap-free; filters and paging.
    let all = app.event_items("?limit=1000").await;
    assert_eq!(seqs(&all), (1..=15).collect::<Vec<i64>>());
    let page = app.events("?limit=2&after=3").await;
    assert_eq!((seqs(page["items"].as_array().unwrap()), &page["has_more"]), (vec![4, 5], &json!(true)));
    assert_eq!(app.events("?after=14").await["has_more"], json!(false));
    assert_eq!(seqs(&app.event_items(&format!("?chat_id={p2p}")).await), [10, 11]);
    let p2p_messages = app.event_items(&format!("?chat_id={p2p}&type=im.message.receive_v1")).await;
    assert_eq!(seqs(&p2p_messages), [11]);
    assert_eq!(seqs(&app.event_items("?type=im.chat.member.user.deleted_v1").await), [4, 14]);
}

#[tokio::test]
async fn apaas_chat_group_events() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let kunlun = |u: &str| app.dir.users().iter().find(|x| x.key == u).unwrap().kunlun_id.0.clone();
    let url = "/open-apis/apaas/v1/user_tasks/1790000000000201/chat_group";
    let r = app.post_json(url, Some(&t), &json!({"operator_user_id": kunlun("alice"), "invite_user_ids": [kunlun("bob")]})).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let r = app.post_json(url, Some(&t), &json!({"operator_user_id": kunlun("alice"), "invite_user_ids": [kunlun("erin")]})).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let e = app.event_items("").await;
    assert_eq!(types(&e), ["larkstack.chat.created_v1", "im.chat.member.user.added_v1"]);
    assert!(e.iter().all(|x| x["actor"] == json!({"kind": "app", "id": app.app_id("demo-bot")})));
    assert_eq!(e[1]["users"], json!([app.uid("erin")]));
}

#[tokio::test]
async fn no_event_for_a_dedup_hit_or_a_refused_change() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let o = |u: &str| app.open_id("demo-bot", u);
    let id = app.create(&t, "?uuid=once", json!({"name": "d"})).await.chat_id();
    assert_eq!(app.create(&t, "?uuid=once", json!({"name": "d"})).await.chat_id(), id, "a dedup hit");
    let send = json!({"receive_id": id, "msg_type": "text", "content": "{\"text\":\"x\"}", "uuid": "m1"});
    let first = app.call(Method::POST, "/open-apis/im/v1/messages?receive_id_type=chat_id", &t, Some(send.clone())).await;
    let again = app.call(Method::POST, "/open-apis/im/v1/messages?receive_id_type=chat_id", &t, Some(send)).await;
    assert_eq!(first.body["data"]["message_id"], again.body["data"]["message_id"], "a dedup hit");
    // Refused changes: a resigned user with succeed_type=2, a non-member leaving, a non-owner's update.
    let members = format!("/open-apis/im/v1/chats/{id}/members?succeed_type=2");
    assert_eq!(app.call(Method::POST, &members, &t, Some(json!({"id_list": [o("alice"), o("dave")]}))).await.code(), 232043);
    assert_eq!(app.admin(Method::POST, &format!("/_larkstack/chats/{id}/leave"), Some(json!({"user": "bob"}))).await.code(), 400);
    let helper = app.token("helper-bot").await;
    let r = app.call(Method::PUT, &format!("/open-apis/im/v1/chats/{id}"), &helper, Some(json!({"name": "z"}))).await;
    assert_ne!(r.code(), 0);
    // A change that changes nothing is no event either.
    assert_eq!(app.call(Method::PUT, &format!("/open-apis/im/v1/chats/{id}"), &t, Some(json!({"name": "d"}))).await.code(), 0);
    let e = app.event_items("").await;
    assert_eq!(types(&e), ["larkstack.chat.created_v1", "im.message.receive_v1"]);
    // The refused changes left no gap: the next event is seq 3.
    assert_eq!(app.call(Method::PUT, &format!("/open-apis/im/v1/chats/{id}"), &t, Some(json!({"name": "e"}))).await.code(), 0);
    assert_eq!(seqs(&app.event_items("").await), [1, 2, 3]);
}

#[tokio::test]
async fn the_query_is_checked_and_needs_the_admin_token() {
    let app = TestApp::demo().await;
    for bad in ["?limit=0", "?limit=1001", "?limit=x", "?after=x", "?type=im.nope"] {
        let r = app.admin(Method::GET, &format!("/_larkstack/events{bad}"), None).await;
        assert_eq!((r.status.as_u16(), r.code()), (400, 400), "{bad}: {}", r.body);
    }
    let t = app.token("demo-bot").await;
    let r = app.call(Method::GET, "/_larkstack/events", &t, None).await;
    assert_eq!(r.status.as_u16(), 401);
    let outbox = json!({"first_seq": 0, "last_seq": 0, "bytes": 0, "max_bytes": DEFAULT_OUTBOX_BYTES});
    assert_eq!(app.events("?limit=1000").await, json!({"items": [], "has_more": false, "outbox": outbox}));
    app.new_chat(&t, json!({})).await;
    let none = app.events("?chat_id=oc_%00x").await;
    assert_eq!((&none["items"], &none["has_more"]), (&json!([]), &json!(false)), "a NUL matches nothing");
    assert_eq!((&none["outbox"]["first_seq"], &none["outbox"]["last_seq"]), (&json!(1), &json!(1)));
}

#[tokio::test]
async fn reset_clears_events_and_the_state_round_trip_keeps_them() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let id = app.new_chat(&t, json!({"name": "a"})).await;
    assert_eq!(app.call(Method::PUT, &format!("/open-apis/im/v1/chats/{id}"), &t, Some(json!({"name": "b"}))).await.code(), 0);
    let before = app.event_items("").await;
    assert_eq!(before.len(), 2);

    let state = app.export_state().await;
    let records = records_of(&state, "event");
    assert_eq!(records, before, "the export carries every event as it is listed");

    assert_eq!(app.admin(Method::POST, "/_larkstack/reset", None).await.code(), 0);
    assert!(app.event_items("").await.is_empty(), "reset forgets events");
    app.new_chat(&t, json!({"name": "c"})).await;
    assert_eq!(seqs(&app.event_items("").await), [1], "and seqs start over");

    let r = app.import_state(&ndjson(&state)).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    assert_eq!(app.event_items("").await, before, "the import restores them");
    assert_eq!(app.call(Method::PUT, &format!("/open-apis/im/v1/chats/{id}"), &t, Some(json!({"name": "d"}))).await.code(), 0);
    assert_eq!(seqs(&app.event_items("").await), [1, 2, 3], "new events follow the imported ones");
}

/// With a tiny `--outbox-bytes`, the fan-out's prune keeps the newest events that fit (and no
/// fewer), round after round of writes: a listing from the start begins at the oldest kept one,
/// and the seqs go on.
#[tokio::test]
async fn the_outbox_keeps_the_newest_events_within_outbox_bytes() {
    const MAX: u64 = 4096;
    let app = TestApp::with(Directory::demo(), StateConfig { outbox_bytes: MAX, rate_limits: false, ..StateConfig::default() }).await;
    let t = app.token("demo-bot").await;
    let o = |u: &str| app.open_id("demo-bot", u);
    let members = json!([o("bob"), o("carol"), o("erin")]);
    let mut created = 0;
    for round in 0..4 {
        for _ in 0..10 {
            created += 1;
            app.new_chat(&t, json!({"name": format!("bounded {created:02}"), "owner_id": o("alice"), "user_id_list": members})).await;
        }
        // The prune follows the fan-out (at most every 250 ms): wait for it to catch up.
        let mut outbox = Value::Null;
        for _ in 0..200 {
            outbox = app.events("?limit=1").await["outbox"].clone();
            if outbox["bytes"].as_u64().unwrap() <= MAX {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let (first, last, bytes) = (outbox["first_seq"].as_i64().unwrap(), outbox["last_seq"].as_i64().unwrap(), outbox["bytes"].as_u64().unwrap());
        assert!(bytes <= MAX, "round {round}: {outbox}");
        assert_eq!((last, &outbox["max_bytes"]), (created, &json!(MAX)));
        let kept = app.event_items("?limit=1000").await;
        assert_eq!(seqs(&kept), (first..=created).collect::<Vec<i64>>(), "a listing from 0 starts at the oldest kept event");
        // 10 events fit (~340 bytes each), 20 do not. No more went than needed: the one before
        // the oldest kept (as big as they) would not have fit.
        assert_eq!(first > 1, round > 0, "round {round}: {outbox}");
        let one = bytes / kept.len() as u64;
        assert!(first == 1 || bytes + one + 8 > MAX, "round {round}: {outbox}, {} events", kept.len());
    }
    // The seqs go on after the pruned ones.
    app.new_chat(&t, json!({"name": "after"})).await;
    assert_eq!(app.events("?limit=1").await["outbox"]["last_seq"], json!(41));
}

/// `Store::prune_events` never deletes past the floor (events the fan-out has not passed), nor
/// the newest event, whose seq the next one follows (SQLite numbers by max(seq) + 1).
#[tokio::test]
async fn a_prune_spares_events_past_the_floor_and_the_newest() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    for i in 0..6 {
        app.new_chat(&t, json!({"name": format!("p{i}")})).await;
    }
    let store = &app.state.store;
    assert_eq!(store.prune_events(1, 3).await.unwrap(), 3, "1 byte allowed: all up to the floor go");
    assert_eq!(seqs(&app.event_items("").await), [4, 5, 6]);
    let stats = store.outbox_stats().await.unwrap();
    assert_eq!((stats.first_seq, stats.last_seq), (4, 6));
    let all_three = stats.bytes;
    assert_eq!(store.prune_events(all_three, 6).await.unwrap(), 0, "they fit");
    assert_eq!(store.prune_events(all_three - 1, 6).await.unwrap(), 1, "one byte less: the oldest goes");
    assert_eq!(store.prune_events(1, 100).await.unwrap(), 1, "all but the newest");
    assert_eq!(seqs(&app.event_items("").await), [6]);
    assert_eq!(store.prune_events(1, 100).await.unwrap(), 0);
    app.new_chat(&t, json!({"name": "next"})).await;
    assert_eq!(seqs(&app.event_items("").await), [6, 7], "no seq is used twice");
}

/// Events an older larkstack stored (the whole event as JSON in `body`, an index on chat_id)
/// read the same after the upgrade, which rewrites them into the compact layout.
#[tokio::test]
async fn events_stored_in_the_layout_before_read_the_same_after_the_upgrade() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let o = |u: &str| app.open_id("demo-bot", u);
    let id = app.new_chat(&t, json!({"name": "old", "owner_id": o("alice"), "user_id_list": [o("bob")]})).await;
    assert_eq!(app.call(Method::PUT, &format!("/open-apis/im/v1/chats/{id}"), &t, Some(json!({"name": "older"}))).await.code(), 0);
    let before = app.event_items("").await;
    assert_eq!(types(&before), ["larkstack.chat.created_v1", "im.chat.updated_v1"]);
    // The rows as the layout before held them: the listed event without its seq.
    let legacy: Vec<(i64, String, String, i64, String)> = before
        .iter()
        .map(|e| {
            let mut body = e.clone();
            body.as_object_mut().unwrap().remove("seq");
            (e["seq"].as_i64().unwrap(), e["type"].as_str().unwrap().into(), id.clone(), e["at_ms"].as_i64().unwrap(), body.to_string())
        })
        .collect();
    let TestApp { data, state, router, .. } = app;
    drop((state, router));
    match test_database() {
        None => {
            let conn = rusqlite::Connection::open(data.path().join("larkstack.db")).unwrap();
            conn.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
            // SQLite drops one table per statement.
            for table in TABLES_AFTER_OUTBOX_COMPACTION.iter().chain(&["events"]) {
                conn.execute_batch(&format!("DROP TABLE {table};")).unwrap();
            }
            conn.execute_batch(include_str!("../../src/store/migrations/sqlite/0005_events.sql")).unwrap();
            for (seq, type_name, chat_id, at_ms, body) in &legacy {
                conn.execute("INSERT INTO events (seq, type, chat_id, at_ms, body) VALUES (?1, ?2, ?3, ?4, ?5)", rusqlite::params![seq, type_name, chat_id, at_ms, body])
                    .unwrap();
            }
            conn.execute_batch("PRAGMA user_version = 5;").unwrap();
        }
        Some(url) => {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            let schema = schema_for(data.path());
            let later = drop_tables_after_outbox_compaction();
            client.batch_execute(&format!("SET search_path = {schema}; DROP TABLE events, event_seq; {later}")).await.unwrap();
            client.batch_execute(include_str!("../../src/store/migrations/postgres/0003_events.sql")).await.unwrap();
            for (seq, type_name, chat_id, at_ms, body) in &legacy {
                let sql = "INSERT INTO events (seq, type, chat_id, at_ms, body) VALUES ($1, $2, $3, $4, $5)";
                client.execute(sql, &[seq, type_name, chat_id, at_ms, body]).await.unwrap();
            }
            client.batch_execute("UPDATE event_seq SET last = 2; DELETE FROM larkstack_migrations WHERE version >= 4;").await.unwrap();
        }
    }
    let app = TestApp::on(data, Directory::demo(), StateConfig::default(), Default::default()).await;
    assert_eq!(app.event_items("").await, before);
    assert_eq!(seqs(&app.event_items(&format!("?chat_id={id}&type=im.chat.updated_v1")).await), [2]);
    let outbox = app.events("").await["outbox"].clone();
    assert!(outbox["bytes"].as_u64().unwrap() > 0, "{outbox}");
    assert_eq!(app.call(Method::PUT, &format!("/open-apis/im/v1/chats/{id}"), &t, Some(json!({"name": "new"}))).await.code(), 0);
    let after = app.event_items("").await;
    assert_eq!(seqs(&after), [1, 2, 3]);
    // The new event's bytes follow the rewritten ones'.
    let grown = app.events("").await["outbox"]["bytes"].as_u64().unwrap();
    assert!(grown > outbox["bytes"].as_u64().unwrap());
    assert_eq!(app.state.store.prune_events(1, 3).await.unwrap(), 2);
    assert_eq!(app.event_items("").await, after[2..]);
}
