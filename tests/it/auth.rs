use std::sync::Arc;

use axum::http::Method;
use larkstack::clock::Clock;
use larkstack::domain::directory::Directory;
use larkstack::state::StateConfig;
use serde_json::json;

use crate::support::*;

const TENANT_TOKEN: &str = "/open-apis/auth/v3/tenant_access_token/internal";

#[tokio::test]
async fn token_is_top_level_with_integer_expire_and_reused() {
    let app = TestApp::demo().await;
    let r = app.post_json(TENANT_TOKEN, None, &json!({"app_id": DEMO_APP_ID, "app_secret": DEMO_SECRET})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["code"], 0);
    assert_eq!(r.body["msg"], "ok");
    let t1 = r.body["tenant_access_token"].as_str().unwrap().to_string();
    assert!(t1.starts_with("t-") && t1.len() == 42, "{t1}");
    let expire = r.body["expire"].as_i64().unwrap();
    assert!((7190..=7200).contains(&expire), "{expire}");
    assert!(r.body.get("data").is_none(), "token fields are top level");
    let t2 = app.token("demo-bot").await;
    assert_eq!(t1, t2, "same token while more than 30 minutes remain");
}

#[tokio::test]
async fn python_sdk_sends_no_content_type() {
    let app = TestApp::demo().await;
    let body = json!({"app_id": DEMO_APP_ID, "app_secret": DEMO_SECRET}).to_string();
    let r = app.request(Method::POST, TENANT_TOKEN, &[], Some(body.as_bytes())).await;
    assert_eq!(r.code(), 0);
    // Trailing slash works too, as on the real gateway.
    let r = app.request(Method::POST, &format!("{TENANT_TOKEN}/"), &[], Some(body.as_bytes())).await;
    assert_eq!(r.code(), 0);
}

#[tokio::test]
async fn bad_credentials_answer_http_200_with_a_code() {
    let app = TestApp::demo().await;
    let r = app.post_json(TENANT_TOKEN, None, &json!({"app_id": DEMO_APP_ID, "app_secret": "wrong"})).await;
    assert_eq!((r.status.as_u16(), r.code()), (200, 10014));
    let r = app.post_json(TENANT_TOKEN, None, &json!({"app_id": "cli_nope", "app_secret": "x"})).await;
    assert_eq!((r.status.as_u16(), r.code()), (200, 10003));
    let r = app.request(Method::POST, TENANT_TOKEN, &[], Some(b"not json")).await;
    assert_eq!((r.status.as_u16(), r.code()), (200, 10003));
    assert!(r.body["msg"].is_string());
}

#[tokio::test]
async fn new_token_when_under_30_minutes_and_old_one_stays_valid() {
    let app = TestApp::demo().await;
    app.state.clock.freeze();
    let old = app.token("demo-bot").await;
    app.state.clock.advance_ms(91 * 60 * 1000); // 29 minutes left
    let r = app.post_json(TENANT_TOKEN, None, &json!({"app_id": DEMO_APP_ID, "app_secret": DEMO_SECRET})).await;
    let new = r.body["tenant_access_token"].as_str().unwrap().to_string();
    assert_ne!(old, new);
    assert_eq!(r.body["expire"], 7200);
    // Both work.
    for t in [&old, &new] {
        assert_eq!(app.create(t, "", json!({})).await.code(), 0);
    }
    // Reissue is not repeated while the new one has time.
    assert_eq!(app.token("demo-bot").await, new);
    // The old token expires at its own time.
    app.state.clock.advance_ms(30 * 60 * 1000);
    assert_eq!(app.create(&old, "", json!({})).await.code(), 99991663);
    assert_eq!(app.create(&new, "", json!({})).await.code(), 0);
}

#[tokio::test]
async fn bearer_checks() {
    let app = TestApp::demo().await;
    let r = app.post_json("/open-apis/im/v1/chats", None, &json!({})).await;
    assert_eq!((r.status.as_u16(), r.code()), (400, 99991661));
    assert!(r.body["error"]["log_id"].is_string());
    let r = app
        .request(Method::POST, "/open-apis/im/v1/chats", &[("authorization", "Basic abc")], Some(b"{}"))
        .await;
    assert_eq!(r.code(), 99991661);
    let r = app.create("t-unknown", "", json!({})).await;
    assert_eq!((r.status.as_u16(), r.code()), (400, 99991663));
    // An app token is not a tenant token.
    let r = app
        .post_json("/open-apis/auth/v3/app_access_token/internal", None, &json!({"app_id": DEMO_APP_ID, "app_secret": DEMO_SECRET}))
        .await;
    let app_token = r.body["app_access_token"].as_str().unwrap().to_string();
    assert_eq!(app.create(&app_token, "", json!({})).await.code(), 99991663);
}

#[tokio::test]
async fn missing_scope_lists_permission_violations() {
    let app = TestApp::demo().await;
    let t = app.token("helper-bot").await; // has im:chat only
    let r = app.create(&t, "?user_id_type=user_id", json!({})).await;
    assert_eq!((r.status.as_u16(), r.code()), (400, 99991672));
    assert_eq!(r.body["error"]["permission_violations"][0]["subject"], "contact:user.employee_id:readonly");
    let app2 = TestApp::with(
        Directory::from_toml("[[tenants]]\nkey='t'\n[[apps]]\nkey='a'\ntenant='t'\nscopes=['im:message']\n").unwrap(),
        StateConfig::default(),
    ).await;
    let t = app2.token("a").await;
    let r = app2.create(&t, "", json!({})).await;
    assert_eq!(r.code(), 99991672);
    let subjects: Vec<_> = r.body["error"]["permission_violations"].as_array().unwrap().iter().map(|v| v["subject"].clone()).collect();
    assert_eq!(subjects, vec![json!("im:chat"), json!("im:chat:create")]);
}

#[tokio::test]
async fn tokens_survive_a_restart() {
    let first = TestApp::demo().await;
    let token = first.token("demo-bot").await;
    let TestApp { data, state, .. } = first;
    drop(state);
    let second = TestApp::on(data, Directory::demo(), StateConfig::default(), Arc::new(Clock::default())).await;
    assert_eq!(second.create(&token, "", json!({})).await.code(), 0);
    assert_eq!(second.token("demo-bot").await, token, "the stored token is reused");
}

#[tokio::test]
async fn store_apps_get_tenant_tokens_per_installed_tenant() {
    let app = TestApp::demo().await;
    let store_app = app.app_id("store-app");
    let secret = app.secret("store-app");
    // The self-built endpoint refuses a store app.
    let r = app.post_json(TENANT_TOKEN, None, &json!({"app_id": store_app, "app_secret": secret})).await;
    assert_eq!(r.code(), 10003);
    let r = app
        .post_json("/open-apis/auth/v3/app_access_token/internal", None, &json!({"app_id": store_app, "app_secret": secret}))
        .await;
    let app_token = r.body["app_access_token"].as_str().unwrap().to_string();
    let globex = app.dir.tenants().iter().find(|t| t.key == "globex").unwrap().tenant_key.0.clone();
    let r = app
        .post_json("/open-apis/auth/v3/tenant_access_token", None, &json!({"app_access_token": app_token, "tenant_key": globex}))
        .await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let t = r.body["tenant_access_token"].as_str().unwrap();
    let chat = app.create(t, "", json!({})).await;
    assert_eq!(chat.code(), 0);
    assert_eq!(chat.body["data"]["tenant_key"], globex.as_str());
    let r = app
        .post_json("/open-apis/auth/v3/tenant_access_token", None, &json!({"app_access_token": app_token, "tenant_key": "nope"}))
        .await;
    assert_eq!(r.code(), 10003);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_token_requests_get_one_token() {
    // Rotation is one atomic store operation (an advisory lock on PostgreSQL), so concurrent
    // callers — on any number of nodes — never end up with several live tokens.
    let app = Arc::new(TestApp::demo().await);
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (app, barrier) = (app.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                app.token("demo-bot").await
            })
        })
        .collect();
    let mut tokens = std::collections::HashSet::new();
    for t in tasks {
        tokens.insert(t.await.unwrap());
    }
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    let mut exported = app.state.store.export();
    let mut stored = 0;
    while let Some(record) = exported.recv().await {
        stored += matches!(record.unwrap(), larkstack::store::StateRecord::Token(_)) as usize;
    }
    assert_eq!(stored, 1);
}
