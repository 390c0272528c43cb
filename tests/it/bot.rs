//! The bot's own identity: `GET /open-apis/bot/v3/info` (top-level `bot`, no `data`) and
//! `GET /open-apis/application/v6/applications/{app_id}`.

use axum::http::{Method, StatusCode};
use serde_json::Value;

use crate::support::*;

#[tokio::test]
async fn bot_info_puts_the_bot_at_the_top_level_with_its_own_open_id() {
    let app = TestApp::demo().await;
    let token = app.token("demo-bot").await;
    let r = app.call(Method::GET, "/open-apis/bot/v3/info", &token, None).await;
    assert_eq!((r.status, r.code()), (StatusCode::OK, 0), "{}", r.body);
    assert_eq!(r.body["msg"], "ok");
    assert!(r.body.get("data").is_none(), "no data envelope: {}", r.body);
    let bot = &r.body["bot"];
    assert_eq!(bot["app_name"], "Demo Bot");
    assert_eq!(bot["activate_status"], 2);
    assert_eq!(bot["ip_white_list"], Value::Array(vec![]));
    assert!(bot["avatar_url"].as_str().unwrap().starts_with("https://"));
    let demo = app.dir.apps().iter().find(|a| a.key == "demo-bot").unwrap();
    let own = app.dir.bot_open_id(demo, &demo.app_id).0;
    assert_eq!(bot["open_id"], own.as_str());
    assert!(own.starts_with("ou_"));
    // Another app's token learns its own identity, in its own id space.
    let helper = app.token("helper-bot").await;
    let r = app.call(Method::GET, "/open-apis/bot/v3/info", &helper, None).await;
    assert_eq!(r.body["bot"]["app_name"], "Helper Bot");
    assert_ne!(r.body["bot"]["open_id"], own.as_str());
}

#[tokio::test]
async fn bot_info_refuses_missing_and_bad_tokens_and_disabled_apps() {
    let app = TestApp::demo().await;
    let r = app.request(Method::GET, "/open-apis/bot/v3/info", &[], None).await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, 99991661));
    assert!(r.body["error"]["log_id"].is_string());
    let r = app.call(Method::GET, "/open-apis/bot/v3/info", "t-nonsense", None).await;
    assert_eq!(r.code(), 99991663);
    let disabled = app.token("disabled-app").await;
    let r = app.call(Method::GET, "/open-apis/bot/v3/info", &disabled, None).await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, 99991662), "{}", r.body);
}

#[tokio::test]
async fn application_info_is_the_callers_own_and_needs_lang() {
    let app = TestApp::demo().await;
    let token = app.token("demo-bot").await;
    let me = app.app_id("demo-bot");
    let r = app.call(Method::GET, &format!("/open-apis/application/v6/applications/{me}?lang=zh_cn"), &token, None).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let a = &r.body["data"]["app"];
    assert_eq!(a["app_id"], me.as_str());
    assert_eq!(a["app_name"], "Demo Bot");
    assert_eq!((a["status"].as_i64(), a["scene_type"].as_i64()), (Some(1), Some(0)));
    assert_eq!(a["i18n"][0]["i18n_key"], "zh_cn");
    assert_eq!(a["primary_language"], "zh_cn");
    assert!(a["scopes"].as_array().unwrap().iter().any(|s| s["scope"] == "im:chat"));
    let r = app.call(Method::GET, &format!("/open-apis/application/v6/applications/{me}?lang=en_us"), &token, None).await;
    assert_eq!(r.body["data"]["app"]["i18n"][0]["i18n_key"], "en_us");
    // lang is required, and one of Feishu's three.
    for query in ["", "?lang=fr_fr"] {
        let r = app.call(Method::GET, &format!("/open-apis/application/v6/applications/{me}{query}"), &token, None).await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, 99992402), "{query}: {}", r.body);
        assert_eq!(r.body["error"]["field_violations"][0]["field"], "lang");
    }
    // Another app's information needs a scope larkstack's apps never hold.
    let other = app.app_id("helper-bot");
    let r = app.call(Method::GET, &format!("/open-apis/application/v6/applications/{other}?lang=zh_cn"), &token, None).await;
    assert_eq!(r.code(), 99991672, "{}", r.body);
    assert_eq!(r.body["error"]["permission_violations"][0]["subject"], "application:application:readonly");
    // A store app is scene_type 1.
    let store = app.token("store-app").await;
    let id = app.app_id("store-app");
    let r = app.call(Method::GET, &format!("/open-apis/application/v6/applications/{id}?lang=zh_cn"), &store, None).await;
    assert_eq!(r.body["data"]["app"]["scene_type"], 1, "{}", r.body);
}
