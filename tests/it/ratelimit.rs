use larkstack::domain::directory::Directory;
use larkstack::state::StateConfig;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn fifty_per_second_then_99991400_with_headers() {
    let app = TestApp::demo().await;
    app.state.clock.freeze();
    let t = app.token("demo-bot").await;
    for i in 0..50 {
        assert_eq!(app.create(&t, "", json!({})).await.code(), 0, "request {i}");
    }
    let r = app.create(&t, "", json!({})).await;
    assert_eq!((r.status.as_u16(), r.code()), (400, 99991400));
    assert_eq!(r.headers["x-ogw-ratelimit-limit"], "50");
    assert_eq!(r.headers["x-ogw-ratelimit-reset"], "1");
    // Another app is not affected.
    let other = app.token("helper-bot").await;
    assert_eq!(app.create(&other, "", json!({})).await.code(), 0);
    // The burst stays in the window for a whole second: no call in between (GCRA let one in
    // every 20 ms).
    app.state.clock.advance_ms(20);
    let r = app.create(&t, "", json!({})).await;
    assert_eq!(r.code(), 99991400);
    assert_eq!(r.headers["x-ogw-ratelimit-reset"], "1");
    app.state.clock.advance_ms(979);
    assert_eq!(app.create(&t, "", json!({})).await.code(), 99991400);
    app.state.clock.advance_ms(1);
    assert_eq!(app.create(&t, "", json!({})).await.code(), 0);
}

#[tokio::test]
async fn a_thousand_in_any_sixty_seconds_across_a_minute_boundary() {
    let app = TestApp::demo().await;
    app.state.clock.freeze();
    let minute = 1_800_000_000_000; // the start of a minute
    app.state.clock.set_ms(minute + 35_000);
    let t = app.token("demo-bot").await;
    let mut ok = 0;
    // 50 per simulated second for 25 seconds, the clock minute turning after 25 of them: the
    // budget runs out at 1000 all the same (a window per clock minute let 2000 through in 44 s).
    for _ in 0..25 {
        for _ in 0..50 {
            let r = app.create(&t, "", json!({})).await;
            if r.code() == 0 {
                ok += 1;
            } else {
                assert_eq!((r.status.as_u16(), r.code()), (400, 99991400));
                assert_eq!(r.headers["x-ogw-ratelimit-limit"], "1000");
            }
        }
        app.state.clock.advance_ms(1000);
    }
    assert_eq!(ok, 1000, "creates passed in 25 s");
    // At +60 s a slot frees when the first second's 50 leave the window, at +95 s.
    let r = app.create(&t, "", json!({})).await;
    assert_eq!(r.code(), 99991400);
    assert_eq!(r.headers["x-ogw-ratelimit-limit"], "1000");
    assert_eq!(r.headers["x-ogw-ratelimit-reset"], "35");
    app.state.clock.advance_ms(34_999);
    let r = app.create(&t, "", json!({})).await;
    assert_eq!(r.code(), 99991400);
    assert_eq!(r.headers["x-ogw-ratelimit-reset"], "1");
    app.state.clock.advance_ms(1);
    assert_eq!(app.create(&t, "", json!({})).await.code(), 0);
}

#[tokio::test]
async fn per_app_override_and_off_switch() {
    let fixture = "[[tenants]]\nkey='t'\n[[apps]]\nkey='a'\ntenant='t'\nscopes=['im:chat']\nrate_limit={per_second=2, per_minute=100}\n";
    let app = TestApp::with(Directory::from_toml(fixture).unwrap(), StateConfig::default()).await;
    app.state.clock.freeze();
    let t = app.token("a").await;
    assert_eq!(app.create(&t, "", json!({})).await.code(), 0);
    assert_eq!(app.create(&t, "", json!({})).await.code(), 0);
    let r = app.create(&t, "", json!({})).await;
    assert_eq!(r.code(), 99991400);
    assert_eq!(r.headers["x-ogw-ratelimit-limit"], "2");

    let off = TestApp::with(Directory::from_toml(fixture).unwrap(), StateConfig { rate_limits: false, ..StateConfig::default() }).await;
    off.state.clock.freeze();
    let t = off.token("a").await;
    for _ in 0..20 {
        assert_eq!(off.create(&t, "", json!({})).await.code(), 0);
    }
}

/// Issue 14's bot endpoints: each has Feishu's default budget (50 a second) of its own, checked
/// before anything else the call says (the ids here name nothing), so exhausting one leaves the
/// next untouched (uploads, downloads and message resources included: each is its own API).
#[tokio::test]
async fn each_bot_endpoint_has_its_own_fifty_per_second() {
    use axum::http::Method;
    let app = TestApp::demo().await;
    app.state.clock.freeze();
    let t = app.token("demo-bot").await;
    let app_id = app.app_id("demo-bot");
    let endpoints = [
        (Method::GET, "/open-apis/bot/v3/info".to_string()),
        (Method::GET, format!("/open-apis/application/v6/applications/{app_id}")),
        (Method::POST, "/open-apis/im/v1/messages/om_x/reply".to_string()),
        (Method::GET, "/open-apis/im/v1/messages/om_x".to_string()),
        (Method::PUT, "/open-apis/im/v1/messages/om_x".to_string()),
        (Method::PATCH, "/open-apis/im/v1/messages/om_x".to_string()),
        (Method::DELETE, "/open-apis/im/v1/messages/om_x".to_string()),
        (Method::POST, "/open-apis/im/v1/messages/om_x/forward?receive_id_type=chat_id".to_string()),
        (Method::GET, "/open-apis/im/v1/messages/om_x/read_users?user_id_type=open_id".to_string()),
        (Method::POST, "/open-apis/im/v1/messages/om_x/reactions".to_string()),
        (Method::GET, "/open-apis/im/v1/messages/om_x/reactions".to_string()),
        (Method::DELETE, "/open-apis/im/v1/messages/om_x/reactions/r_x".to_string()),
        (Method::POST, "/open-apis/im/v1/images".to_string()),
        (Method::POST, "/open-apis/im/v1/files".to_string()),
        (Method::GET, "/open-apis/im/v1/images/img_v3_x".to_string()),
        (Method::GET, "/open-apis/im/v1/files/file_v3_x".to_string()),
        (Method::GET, "/open-apis/im/v1/messages/om_x/resources/img_v3_x?type=image".to_string()),
        (Method::GET, "/open-apis/contact/v3/users/ou_x".to_string()),
        (Method::GET, "/open-apis/contact/v3/users/batch?user_ids=ou_x".to_string()),
        (Method::POST, "/open-apis/contact/v3/users/batch_get_id".to_string()),
    ];
    for (method, path) in endpoints {
        for i in 0..50 {
            let r = app.call(method.clone(), &path, &t, Some(json!({}))).await;
            assert_ne!(r.code(), 99991400, "{method} {path}: call {i} is within the budget: {}", r.body);
        }
        let r = app.call(method.clone(), &path, &t, Some(json!({}))).await;
        assert_eq!((r.status.as_u16(), r.code()), (400, 99991400), "{method} {path}: the 51st call");
    }
}
