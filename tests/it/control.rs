//! The control API (/_larkstack/): admin token, directory, reset/fixture/export/import, journal,
//! faults, clock, acting as users; /healthz.

use std::time::Instant;

use axum::http::Method;
use larkstack::domain::directory::Directory;
use larkstack::state::StateConfig;
use serde_json::{json, Value};

use crate::support::*;

impl TestApp {
    /// A control call with the admin token.
    async fn control(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let token = self.state.admin_token.clone();
        let r = self.call(method, path, &token, body).await;
        assert!(r.body.get("code").is_some(), "envelope: {}", r.body);
        r
    }

    async fn control_ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let r = self.control(method, path, body).await;
        assert_eq!(r.code(), 0, "{path}: {}", r.body);
        r.body["data"].clone()
    }
}

#[tokio::test]
async fn only_the_admin_token_opens_the_control_api_and_never_open_apis() {
    let app = TestApp::demo().await;
    let r = app.request(Method::GET, "/_larkstack/directory", &[], None).await;
    assert_eq!((r.status.as_u16(), r.code()), (401, 401));
    let t = app.token("demo-bot").await;
    let r = app.call(Method::GET, "/_larkstack/directory", &t, None).await;
    assert_eq!(r.status.as_u16(), 401, "app tokens do not open the control API");
    let admin = app.state.admin_token.clone();
    let r = app.create(&admin, "", json!({})).await;
    assert_eq!(r.code(), 99991663, "the admin token is no app token");
    let r = app.request(Method::GET, "/_larkstack/clock", &[("x-larkstack-admin-token", admin.as_str())], None).await;
    assert_eq!(r.code(), 0);
    let h = app.request(Method::GET, "/healthz", &[], None).await;
    assert_eq!((h.status.as_u16(), h.body["data"]["status"].as_str()), (200, Some("ok")));
}

#[tokio::test]
async fn directory_lists_credentials_ids_per_app_and_kunlun_ids() {
    let app = TestApp::demo().await;
    let d = app.control_ok(Method::GET, "/_larkstack/directory", None).await;
    let demo = d["apps"].as_array().unwrap().iter().find(|a| a["key"] == "demo-bot").unwrap();
    assert_eq!(demo["app_id"], "cli_a1b2c3d4e5f60718");
    assert_eq!(demo["app_secret"], "larkstackDemoSecret0000000000001");
    let alice = d["users"].as_array().unwrap().iter().find(|u| u["key"] == "alice").unwrap();
    assert_eq!(alice["open_ids"]["demo-bot"], app.open_id("demo-bot", "alice"));
    assert_ne!(alice["open_ids"]["demo-bot"], alice["open_ids"]["helper-bot"]);
    assert_eq!(alice["kunlun_id"], "1783981209205701");
    assert!(d["tasks"].as_array().unwrap().iter().any(|t| t["task_id"] == "1790000000000201"));
}

/// A state with one of everything: chats, members, messages (with uuid), a create uuid, a p2p
/// chat, a task-linked chat and tokens.
async fn populate(app: &TestApp) -> (String, String) {
    let t = app.token("demo-bot").await;
    let o = |u: &str| app.open_id("demo-bot", u);
    let chat = app.new_chat(&t, json!({"name": "导出", "owner_id": o("alice"), "user_id_list": [o("bob")]})).await;
    let r = app.create(&t, "?uuid=u-1", json!({"name": "dedup"})).await;
    assert_eq!(r.code(), 0);
    for (to, id_type) in [(chat.as_str(), "chat_id"), (o("carol").as_str(), "open_id")] {
        let body = json!({"receive_id": to, "msg_type": "text", "content": "{\"text\":\"hi\"}", "uuid": format!("m-{id_type}")});
        let r = app.call(Method::POST, &format!("/open-apis/im/v1/messages?receive_id_type={id_type}"), &t, Some(body)).await;
        assert_eq!(r.code(), 0, "{}", r.body);
    }
    let r = app
        .post_json(
            "/open-apis/apaas/v1/user_tasks/1790000000000201/chat_group",
            Some(&t),
            &json!({"operator_user_id": "1783981209205701"}),
        )
        .await;
    assert_eq!(r.code(), 0);
    (t, chat)
}

#[tokio::test]
async fn export_reset_import_round_trips_losslessly() {
    let app = TestApp::demo().await;
    let (t, chat) = populate(&app).await;
    let exported = app.export_state().await;
    assert_eq!(exported[0]["larkstack_state"], 2, "the header line comes first");
    assert_eq!(records_of(&exported, "chat").len(), 4, "two created, one p2p, one from the task");
    assert_eq!(records_of(&exported, "message").len(), 2);
    assert_eq!(records_of(&exported, "task_chat").len(), 1);
    assert_eq!(records_of(&exported, "chat_dedup").len(), 1);
    assert_eq!(exported.last().unwrap()["end"]["records"], exported.len() - 2, "the end line counts the records");

    app.control_ok(Method::POST, "/_larkstack/reset", None).await;
    let gone = app.call(Method::GET, &format!("/open-apis/im/v1/chats/{chat}"), &t, None).await;
    assert_eq!(gone.code(), 232006, "reset forgets chats; the token still works");
    let empty = app.export_state().await;
    assert_eq!(records_of(&empty, "chat"), Vec::<Value>::new());

    let r = app.import_state(&ndjson(&exported)).await;
    assert_eq!((r.code(), r.body["data"]["records"].as_u64()), (0, Some(exported.len() as u64 - 2)), "{}", r.body);
    let again = app.export_state().await;
    assert_eq!(again, exported, "export → reset → import → export gives the same state");
    let back = app.call(Method::GET, &format!("/open-apis/im/v1/chats/{chat}"), &t, None).await;
    assert_eq!((back.code(), back.body["data"]["name"].as_str()), (0, Some("导出")));
    // The imported dedup key still answers the first chat.
    let dup = app.create(&t, "?uuid=u-1", json!({"name": "dedup"})).await;
    assert_eq!(dup.chat_id(), records_of(&exported, "chat_dedup")[0]["chat_id"].as_str().unwrap());

    // What is not a whole state is refused, and nothing changes: not a header, a bad record
    // midway, a state cut off before its end line, an end line that miscounts.
    let header = ndjson(&exported[..1]);
    let cut_off = ndjson(&exported[..exported.len() - 1]);
    let mut miscounted = exported.clone();
    miscounted.last_mut().unwrap()["end"]["records"] = json!(1);
    for (what, body) in [
        ("not a state", b"{\"store\": 1}".to_vec()),
        ("a bad record", bad_record_body(&exported)),
        ("cut off", cut_off),
        ("miscounted", ndjson(&miscounted)),
        ("only a header", header),
    ] {
        let r = app.import_state(&body).await;
        assert_eq!((r.status.as_u16(), r.code()), (400, 400), "{what}: {}", r.body);
    }
    let r = app.import_state(&bad_record_body(&exported)).await;
    assert!(r.body["msg"].as_str().unwrap().contains("line 4"), "the error names the line: {}", r.body);
    assert_eq!(app.export_state().await, exported, "a refused import changes nothing");
}

/// The state with a line that is no record in place of line 4.
fn bad_record_body(exported: &[Value]) -> Vec<u8> {
    let mut body = ndjson(&exported[..3]);
    body.extend_from_slice(b"{\"chat\": 1}\n");
    body.extend_from_slice(&ndjson(&exported[3..]));
    body
}

#[tokio::test]
async fn a_fixture_loaded_at_run_time_replaces_the_directory() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    app.new_chat(&t, json!({})).await;
    let toml = "[[tenants]]\nkey='t'\n[[apps]]\nkey='solo'\ntenant='t'\napp_id='cli_solo'\napp_secret='s3cret'\nscopes=['im:chat']\n[[users]]\nkey='zed'\ntenant='t'\nname='Zed 周'\n";
    let r = app.request(Method::PUT, "/_larkstack/fixture", &[("authorization", &format!("Bearer {}", app.state.admin_token))], Some(toml.as_bytes())).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    assert_eq!(r.body["data"]["users"][0]["name"], "Zed 周");
    let token = app
        .post_json("/open-apis/auth/v3/tenant_access_token/internal", None, &json!({"app_id": "cli_solo", "app_secret": "s3cret"}))
        .await;
    assert_eq!(token.code(), 0);
    let old = app.post_json("/open-apis/auth/v3/tenant_access_token/internal", None, &json!({"app_id": app.app_id("demo-bot"), "app_secret": app.secret("demo-bot")})).await;
    assert_eq!(old.code(), 10003, "demo-bot is gone");
    assert_eq!(records_of(&app.export_state().await, "chat"), Vec::<Value>::new());
    assert_eq!(app.control_ok(Method::GET, "/_larkstack/fixture", None).await["fixture"], toml);
    let bad = app.request(Method::PUT, "/_larkstack/fixture", &[("authorization", &format!("Bearer {}", app.state.admin_token))], Some(b"[[apps]]\nkey=1")).await;
    assert_eq!((bad.status.as_u16(), bad.code()), (400, 400));
}

#[tokio::test]
async fn journal_records_filters_clears_and_is_bounded() {
    let app = TestApp::with(Directory::demo(), StateConfig { journal_size: 4, ..StateConfig::default() }).await;
    let t = app.token("demo-bot").await;
    let ok = app.create(&t, "", json!({"name": "记录"})).await;
    let bad = app.create(&t, "", json!({"chat_mode": "topic"})).await;
    assert_eq!(bad.code(), 232001);
    let j = app.control_ok(Method::GET, "/_larkstack/journal", None).await;
    let items = j["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "token + two creates");
    let newest = &items[0];
    assert_eq!(newest["method"], "POST");
    assert_eq!(newest["path"], "/open-apis/im/v1/chats");
    assert_eq!((newest["status"].as_u64(), newest["code"].as_i64()), (Some(400), Some(232001)));
    assert_eq!(newest["app_id"], app.app_id("demo-bot"));
    assert_eq!(newest["request_body"], json!({"chat_mode": "topic"}));
    assert_eq!(newest["log_id"], bad.headers["x-tt-logid"].to_str().unwrap());
    assert_eq!(items[1]["response_body"]["data"]["chat_id"], ok.chat_id());
    assert_eq!(items[2]["app_id"], app.app_id("demo-bot"), "token calls name the app from their body");

    let failed = app.control_ok(Method::GET, "/_larkstack/journal?code=232001", None).await;
    assert_eq!(failed["items"].as_array().unwrap().len(), 1);
    let tokens = app.control_ok(Method::GET, "/_larkstack/journal?path=auth", None).await;
    assert_eq!(tokens["items"].as_array().unwrap().len(), 1);
    let other = app.control_ok(Method::GET, "/_larkstack/journal?app_id=cli_other", None).await;
    assert_eq!(other["items"], json!([]));
    for _ in 0..5 {
        app.create(&t, "", json!({})).await;
    }
    assert_eq!(app.control_ok(Method::GET, "/_larkstack/journal", None).await["items"].as_array().unwrap().len(), 4, "bounded");
    app.control_ok(Method::DELETE, "/_larkstack/journal", None).await;
    assert_eq!(app.control_ok(Method::GET, "/_larkstack/journal", None).await["items"], json!([]));
    assert!(app.control_ok(Method::GET, "/_larkstack/journal", None).await["items"].as_array().unwrap().is_empty(), "control calls are not journaled");
}

#[tokio::test]
async fn faults_by_endpoint_app_count_and_probability() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let other = app.token("helper-bot").await;
    let rule = app
        .control_ok(
            Method::POST,
            "/_larkstack/faults",
            Some(json!({"method": "POST", "path": "/open-apis/im/v1/chats", "app_id": app.app_id("demo-bot"), "preset": "chat_throttled", "count": 1})),
        )
        .await;
    assert_eq!(rule["remaining"], 1);
    assert_eq!(app.create(&other, "", json!({})).await.code(), 0, "another app is not affected");
    let hit = app.create(&t, "", json!({})).await;
    assert_eq!((hit.status.as_u16(), hit.code()), (400, 232019));
    assert!(hit.body["error"]["log_id"].is_string());
    assert_eq!(app.create(&t, "", json!({})).await.code(), 0, "count ran out");
    let listed = app.control_ok(Method::GET, "/_larkstack/faults", None).await;
    assert_eq!((listed["items"][0]["hits"].as_u64(), listed["items"][0]["remaining"].as_u64()), (Some(1), Some(0)));

    // 99991400 comes with its headers; 503 and token_invalid as presets; glob paths.
    app.control_ok(Method::POST, "/_larkstack/faults", Some(json!({"path": "/open-apis/im/v1/chats/*", "preset": "rate_limited", "count": 1}))).await;
    let chat = app.new_chat(&t, json!({})).await;
    let r = app.call(Method::GET, &format!("/open-apis/im/v1/chats/{chat}"), &t, None).await;
    assert_eq!(r.code(), 99991400);
    assert_eq!(r.headers["x-ogw-ratelimit-limit"], "50");
    app.control_ok(Method::POST, "/_larkstack/faults", Some(json!({"preset": "unavailable", "count": 1}))).await;
    let r = app.call(Method::GET, &format!("/open-apis/im/v1/chats/{chat}"), &t, None).await;
    assert_eq!((r.status.as_u16(), r.code()), (503, 1));
    app.control_ok(Method::POST, "/_larkstack/faults", Some(json!({"preset": "token_invalid", "count": 1}))).await;
    assert_eq!(app.call(Method::GET, &format!("/open-apis/im/v1/chats/{chat}"), &t, None).await.code(), 99991663);

    // A custom error, a probability of 0 (never) and a delay.
    let never = app.control_ok(Method::POST, "/_larkstack/faults", Some(json!({"effect": {"kind": "error", "http_status": 500, "code": 1, "msg": "x"}, "probability": 0.0}))).await;
    assert_eq!(app.call(Method::GET, &format!("/open-apis/im/v1/chats/{chat}"), &t, None).await.code(), 0);
    app.control_ok(Method::DELETE, &format!("/_larkstack/faults/{}", never["id"]), None).await;
    app.control_ok(Method::POST, "/_larkstack/faults", Some(json!({"effect": {"kind": "delay", "ms": 300}, "count": 1}))).await;
    let started = Instant::now();
    assert_eq!(app.call(Method::GET, &format!("/open-apis/im/v1/chats/{chat}"), &t, None).await.code(), 0);
    assert!(started.elapsed().as_millis() >= 300, "answered late, but answered");

    let bad = app.control(Method::POST, "/_larkstack/faults", Some(json!({"preset": "nonsense"}))).await;
    assert_eq!(bad.status.as_u16(), 400);
    app.control_ok(Method::DELETE, "/_larkstack/faults", None).await;
    assert_eq!(app.control_ok(Method::GET, "/_larkstack/faults", None).await["items"], json!([]));
    assert_eq!(app.control(Method::DELETE, "/_larkstack/faults/999", None).await.status.as_u16(), 404);
}

#[tokio::test]
async fn a_drop_fault_closes_the_connection() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::spawn(data.path(), None, &["--admin-token", "adm"]);
    let client = reqwest::Client::new();
    let add = client
        .post(server.url("/_larkstack/faults"))
        .bearer_auth("adm")
        .json(&json!({"path": "/open-apis/auth/**", "preset": "drop", "count": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(add.status().as_u16(), 200);
    let creds = json!({"app_id": "cli_a1b2c3d4e5f60718", "app_secret": "larkstackDemoSecret0000000000001"});
    let url = server.url("/open-apis/auth/v3/tenant_access_token/internal");
    let dropped = client.post(&url).json(&creds).send().await;
    assert!(dropped.is_err(), "no answer: {dropped:?}");
    let next: Value = client.post(&url).json(&creds).send().await.unwrap().json().await.unwrap();
    assert_eq!(next["code"], 0);
}

#[tokio::test]
async fn clock_expires_tokens_and_reopens_the_uuid_window() {
    let app = TestApp::demo().await;
    let c = app.control_ok(Method::POST, "/_larkstack/clock", Some(json!({"freeze": true}))).await;
    assert_eq!(c["frozen"], true);
    let start = c["now_ms"].as_i64().unwrap();
    let t = app.token("demo-bot").await;
    let first = app.create(&t, "?uuid=same", json!({})).await.chat_id();
    let c = app.control_ok(Method::POST, "/_larkstack/clock", Some(json!({"advance": "1h"}))).await;
    assert_eq!(c["now_ms"].as_i64().unwrap(), start + 3_600_000);
    assert_eq!(app.create(&t, "?uuid=same", json!({})).await.chat_id(), first, "inside the 10-hour window");
    app.control_ok(Method::POST, "/_larkstack/clock", Some(json!({"advance_ms": 3_600_000}))).await;
    assert_eq!(app.create(&t, "?uuid=same", json!({})).await.code(), 99991663, "2 h later the token has expired");
    let t = app.token("demo-bot").await;
    app.control_ok(Method::POST, "/_larkstack/clock", Some(json!({"advance": "8h1s"}))).await;
    let t2 = app.token("demo-bot").await;
    let reopened = app.create(&t2, "?uuid=same", json!({})).await;
    assert_eq!(reopened.code(), 0);
    assert_ne!(reopened.chat_id(), first, "after 10 h the uuid makes a new chat");
    assert_eq!(app.create(&t, "?uuid=x", json!({})).await.code(), 99991663);
    let c = app.control_ok(Method::POST, "/_larkstack/clock", Some(json!({"set_ms": 1_900_000_000_000i64}))).await;
    assert_eq!(c["now_ms"], 1_900_000_000_000i64);
    let c = app.control_ok(Method::POST, "/_larkstack/clock", Some(json!({"freeze": false}))).await;
    assert_eq!(c["frozen"], false);
    assert!(app.control_ok(Method::GET, "/_larkstack/clock", None).await["now_ms"].as_i64().unwrap() >= 1_900_000_000_000);
    let bad = app.control(Method::POST, "/_larkstack/clock", Some(json!({"advance": "soon"}))).await;
    assert_eq!(bad.status.as_u16(), 400);
}

#[tokio::test]
async fn act_as_users_post_join_and_leave() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let o = |u: &str| app.open_id("demo-bot", u);
    let chat = app.new_chat(&t, json!({"owner_id": o("alice")})).await;
    let posted = app.control_ok(Method::POST, &format!("/_larkstack/chats/{chat}/messages"), Some(json!({"user": "alice", "text": "大家好"}))).await;
    let list = app.call(Method::GET, &format!("/open-apis/im/v1/messages?container_id_type=chat&container_id={chat}"), &t, None).await;
    let item = &list.body["data"]["items"][0];
    assert_eq!(item["message_id"], posted["message_id"]);
    assert_eq!(item["sender"]["sender_type"], "user");
    assert_eq!(item["sender"]["id"], o("alice"));
    assert_eq!(item["body"]["content"], "{\"text\":\"大家好\"}");

    let r = app.control(Method::POST, &format!("/_larkstack/chats/{chat}/messages"), Some(json!({"user": "bob", "text": "hi"}))).await;
    assert_eq!(r.status.as_u16(), 400, "bob is not in the chat");
    app.control_ok(Method::POST, &format!("/_larkstack/chats/{chat}/join"), Some(json!({"user": "bob"}))).await;
    let inside = app.call(Method::GET, &format!("/open-apis/im/v1/chats/{chat}/members"), &t, None).await;
    assert_eq!(inside.body["data"]["member_total"], 2);
    assert_eq!(app.control(Method::POST, &format!("/_larkstack/chats/{chat}/join"), Some(json!({"user": "gina"}))).await.status.as_u16(), 400);
    assert_eq!(app.control(Method::POST, &format!("/_larkstack/chats/{chat}/leave"), Some(json!({"user": "alice"}))).await.status.as_u16(), 400, "owner");
    app.control_ok(Method::POST, &format!("/_larkstack/chats/{chat}/leave"), Some(json!({"user": "bob"}))).await;
    let detail = app.control_ok(Method::GET, &format!("/_larkstack/chats/{chat}"), None).await;
    assert_eq!(detail["members"].as_array().unwrap().len(), 1);
    assert_eq!(detail["messages"][0]["sender"]["user"]["key"], "alice");
    assert_eq!(app.control(Method::GET, "/_larkstack/chats/oc_nope", None).await.status.as_u16(), 404);
    let listed = app.control_ok(Method::GET, "/_larkstack/chats", None).await;
    assert_eq!(listed["items"][0]["chat_id"], chat);
    assert_eq!(listed["stats"]["messages"], 1);
}

#[tokio::test]
async fn metrics_count_requests_by_endpoint_and_code() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::spawn(data.path(), None, &[]);
    let client = reqwest::Client::new();
    let creds = json!({"app_id": "cli_a1b2c3d4e5f60718", "app_secret": "larkstackDemoSecret0000000000001"});
    let token: Value = client.post(server.url("/open-apis/auth/v3/tenant_access_token/internal")).json(&creds).send().await.unwrap().json().await.unwrap();
    let t = token["tenant_access_token"].as_str().unwrap();
    for body in [json!({"name": "指标"}), json!({"chat_mode": "topic"})] {
        client.post(server.url("/open-apis/im/v1/chats")).bearer_auth(t).json(&body).send().await.unwrap();
    }
    client.get(server.url("/open-apis/nothing/here")).send().await.unwrap();
    let resp = client.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = resp.text().await.unwrap();
    for line in [
        r#"larkstack_requests_total{endpoint="/open-apis/im/v1/chats",method="POST",code="0"} 1"#,
        r#"larkstack_requests_total{endpoint="/open-apis/im/v1/chats",method="POST",code="232001"} 1"#,
        r#"larkstack_requests_total{endpoint="/open-apis/auth/v3/tenant_access_token/internal",method="POST",code="0"} 1"#,
        r#"larkstack_requests_total{endpoint="unmatched",method="GET",code="404"} 1"#,
        r#"larkstack_request_duration_seconds_count{endpoint="/open-apis/im/v1/chats"} 2"#,
        "larkstack_chats 1",
        "larkstack_members 0",
        "larkstack_messages 0",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    let commits = text.lines().find(|l| l.starts_with("larkstack_store_commit_duration_seconds_count")).unwrap();
    assert!(commits.rsplit(' ').next().unwrap().parse::<u64>().unwrap() >= 2, "{commits}");
}
