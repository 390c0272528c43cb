use std::io::{Read, Write};

use axum::http::Method;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn every_failure_is_a_json_envelope() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let auth = format!("Bearer {t}");

    let r = app.request(Method::GET, "/nowhere", &[], None).await;
    assert_eq!(r.status, 404);
    assert!(r.code() != 0);
    let r = app.request(Method::GET, "/open-apis/im/v1/chats/oc_x/moderation", &[("content-type", "application/json")], Some(b"{}")).await;
    assert_eq!(r.status, 404);
    assert!(r.body["msg"].as_str().unwrap().contains("not implemented by larkstack"));
    assert_eq!(r.headers["content-type"], "application/json; charset=utf-8");

    let r = app.request(Method::PATCH, "/open-apis/auth/v3/tenant_access_token/internal", &[], None).await;
    assert_eq!(r.status, 405);
    assert!(r.body["error"]["log_id"].is_string());

    let r = app.request(Method::POST, "/open-apis/im/v1/chats", &[("authorization", &auth)], Some(b"{\"name\": ")).await;
    assert_eq!((r.status.as_u16(), r.code()), (400, 232001));

    let r = app.request(Method::POST, "/open-apis/im/v1/chats", &[("authorization", &auth)], Some(b"[1,2]")).await;
    assert_eq!(r.code(), 232001);

    let r = app.request(Method::POST, "/open-apis/im/v1/chats", &[("authorization", &auth)], Some(br#"{"external": "yes"}"#)).await;
    assert_eq!(r.code(), 232001);
    assert_eq!(r.body["error"]["field_violations"][0]["field"], "external");

    let huge = vec![b' '; 3 * 1024 * 1024];
    let r = app.request(Method::POST, "/open-apis/im/v1/chats", &[("authorization", &auth)], Some(&huge)).await;
    assert_eq!(r.status, 413);
    assert!(r.code() != 0);
}

#[tokio::test]
async fn lenient_bodies() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let auth = format!("Bearer {t}");
    // No body, no Content-Type; a text/plain Content-Type; nulls for absent fields; unknown fields.
    let r = app.request(Method::POST, "/open-apis/im/v1/chats", &[("authorization", &auth)], None).await;
    assert_eq!(r.code(), 0);
    let r = app
        .request(Method::POST, "/open-apis/im/v1/chats", &[("authorization", &auth), ("content-type", "text/plain")], Some(br#"{"name": null, "future_field": 1}"#))
        .await;
    assert_eq!(r.code(), 0);
    assert_eq!(r.body["data"]["name"], "(无主题)");
}

#[tokio::test]
async fn real_server_sends_title_case_headers_and_integer_codes() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::spawn(data.path(), None, &[]);
    let addr = server.base.trim_start_matches("http://").to_string();
    let body = json!({"app_id": DEMO_APP_ID, "app_secret": DEMO_SECRET}).to_string();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        stream,
        "POST /open-apis/auth/v3/tenant_access_token/internal HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.contains("\r\nX-Tt-Logid: "), "title-case log id header: {raw}");
    assert!(raw.contains("\r\nContent-Type: application/json; charset=utf-8"), "{raw}");
    let json: serde_json::Value = serde_json::from_str(raw.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert!(json["code"].is_i64());
    assert!(json["expire"].is_i64());
}
