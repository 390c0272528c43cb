//! What the schemathesis run (tests/fuzz/run.sh) found, each pinned down: replies that were not
//! JSON, and inputs that made a handler panic (HTTP 500, code 1).

use axum::http::Method;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn control_query_strings_that_do_not_parse_get_an_envelope() {
    let app = TestApp::demo().await;
    let admin = app.state.admin_token.clone();
    // Was axum's plain-text "Failed to deserialize query string" (found as `limit=null`).
    for uri in ["/_larkstack/journal?limit=null&limit=null", "/_larkstack/journal?code=abc", "/_larkstack/chats?limit=x", "/_larkstack/chats?after=1.5"] {
        let r = app.call(Method::GET, uri, &admin, None).await;
        assert_eq!((r.status.as_u16(), r.code()), (400, 400), "{uri}: {}", r.body);
        assert!(r.body["msg"].as_str().unwrap().contains("query"), "{}", r.body);
    }
    let r = app.call(Method::GET, "/_larkstack/journal?limit=2", &admin, None).await;
    assert_eq!(r.code(), 0);
}

#[tokio::test]
async fn path_parameters_that_are_not_utf8_get_an_envelope() {
    let app = TestApp::demo().await;
    let token = app.token("demo-bot").await;
    let admin = app.state.admin_token.clone();
    // Was axum's plain-text "Invalid URL: Invalid UTF-8 in `chat_id`".
    for (method, uri, auth) in [
        (Method::GET, "/open-apis/im/v1/chats/%FF", &token),
        (Method::PUT, "/open-apis/im/v1/chats/%C3%28", &token),
        (Method::GET, "/open-apis/im/v1/chats/%FF/members", &token),
        (Method::PATCH, "/open-apis/im/v1/chats/%FF/members/me_join", &token),
        (Method::POST, "/open-apis/apaas/v1/user_tasks/%FF/chat_group", &token),
        (Method::GET, "/_larkstack/chats/%FF", &admin),
        (Method::DELETE, "/_larkstack/faults/%FF", &admin),
    ] {
        let r = app.call(method.clone(), uri, auth, Some(json!({}))).await;
        assert_eq!((r.status.as_u16(), r.code()), (400, 400), "{method} {uri}: {}", r.body);
        assert!(r.body["error"]["log_id"].is_string());
    }
}

#[tokio::test]
async fn message_history_time_bounds_beyond_i64_milliseconds_are_invalid_not_a_panic() {
    let app = TestApp::demo().await;
    let token = app.token("demo-bot").await;
    let chat = app.new_chat(&token, json!({"name": "history"})).await;
    let list = |extra: &str| format!("/open-apis/im/v1/messages?container_id_type=chat&container_id={chat}&{extra}");
    // Seconds × 1000 overflowed i64 (a panic in debug builds).
    for extra in ["start_time=9223372036854775807", "end_time=9223372036854775807", "start_time=-9223372036854775808"] {
        let r = app.call(Method::GET, &list(extra), &token, None).await;
        assert_eq!((r.status.as_u16(), r.code()), (400, 230001), "{extra}: {}", r.body);
        assert_eq!(r.body["error"]["field_violations"][0]["field"], extra.split('=').next().unwrap());
    }
    // The last second that fits: its inclusive end (+999 ms) overflowed too; now it saturates.
    let r = app.call(Method::GET, &list("end_time=9223372036854775"), &token, None).await;
    assert_eq!(r.code(), 0, "{}", r.body);
}

#[tokio::test]
async fn the_clock_goes_back_while_running_and_refuses_times_it_cannot_hold() {
    let app = TestApp::demo().await;
    let admin = app.state.admin_token.clone();
    let clock = |body: serde_json::Value| {
        let admin = admin.clone();
        let app = &app;
        async move { app.call(Method::POST, "/_larkstack/clock", &admin, Some(body)).await }
    };
    let before = app.state.clock.now_ms();
    // A negative advance while the clock runs panicked (`then_some(i64::MIN + by)`).
    let r = clock(json!({"advance_ms": -3_600_000})).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    assert!(r.body["data"]["now_ms"].as_i64().unwrap() < before - 3_000_000);
    assert_eq!(clock(json!({"advance": "-1h"})).await.code(), 0);
    // The case schemathesis found.
    let r = clock(json!({"set_ms": 310485, "advance_ms": -720})).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let now = app.state.clock.now_ms();
    assert!((309_765..309_765 + 60_000).contains(&now), "{now}");

    for body in [
        json!({"set_ms": i64::MAX}),
        json!({"set_ms": -1}),
        json!({"advance_ms": i64::MAX}),
        json!({"advance_ms": i64::MAX, "advance": "1ms"}),
        json!({"set_ms": 0, "advance_ms": -1}),
        json!({"freeze": true, "set_ms": 13_569_465_600_000_i64}),
    ] {
        let r = clock(body.clone()).await;
        assert_eq!((r.status.as_u16(), r.code()), (400, 400), "{body}: {}", r.body);
    }
    assert!(!app.state.clock.is_frozen(), "a refused change changes nothing");
    assert!(app.state.clock.now_ms() - now < 60_000);
    let r = clock(json!({"set_ms": 13_569_465_599_999_i64, "freeze": true})).await;
    assert_eq!(r.body["data"]["now_ms"], 13_569_465_599_999_i64, "{}", r.body);
    // Everything still answers at the clock's last millisecond, rate limits included.
    let t = app.token("demo-bot").await;
    assert_eq!(app.create(&t, "", json!({"name": "late"})).await.code(), 0);
}

#[tokio::test]
async fn nul_characters_are_stored_or_not_found_never_a_500() {
    // Found on PostgreSQL, whose text cannot hold U+0000 ("invalid byte sequence … 0x00").
    let app = TestApp::demo().await;
    let token = app.token("demo-bot").await;
    let alice = app.open_id("demo-bot", "alice");
    let created = app.create(&token, "?uuid=a%00b", json!({"name": "nul\u{0}name", "owner_id": alice})).await;
    assert_eq!(created.code(), 0, "{}", created.body);
    let chat_id = created.chat_id();
    let again = app.create(&token, "?uuid=a%00b", json!({"name": "nul\u{0}name", "owner_id": alice})).await;
    assert_eq!(again.chat_id(), chat_id, "the uuid still deduplicates");
    let read = app.call(Method::GET, &format!("/open-apis/im/v1/chats/{chat_id}"), &token, None).await;
    assert_eq!(read.body["data"]["name"], "nul\u{0}name", "the name comes back as sent");
    for (method, uri) in [
        (Method::GET, "/open-apis/im/v1/chats/oc_%00".to_string()),
        (Method::PUT, "/open-apis/im/v1/chats/oc_%00".to_string()),
        (Method::GET, "/open-apis/im/v1/chats/search?query=nul%00".to_string()),
        (Method::GET, "/open-apis/im/v1/messages?container_id_type=chat&container_id=oc_%00".to_string()),
        (Method::GET, "/open-apis/im/v1/messages/om_%00".to_string()),
        (Method::PUT, format!("/open-apis/im/v1/chats/{chat_id}")),
    ] {
        let r = app.call(method.clone(), &uri, &token, Some(json!({"name": "x\u{0}y"}))).await;
        assert_ne!(r.status.as_u16(), 500, "{method} {uri}: {}", r.body);
    }
    let sent = app
        .post_json(
            "/open-apis/im/v1/messages?receive_id_type=chat_id",
            Some(&token),
            &json!({"receive_id": chat_id, "msg_type": "text", "content": "{\"text\":\"a\\u0000b\"}", "uuid": "m\u{0}1"}),
        )
        .await;
    assert_eq!(sent.code(), 0, "{}", sent.body);
}
