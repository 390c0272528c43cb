//! The error catalogue and infrastructure failures: a failing Redis answers HTTP 500 with code 1,
//! never a business code such as 230020 or 99991400.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use larkstack::cluster::Redis;
use larkstack::domain::directory::Directory;
use larkstack::error::{ChatErr, GatewayErr, MessageErr, ServerErr};
use larkstack::state::StateConfig;
use serde_json::json;

use crate::support::*;

const SEND: &str = "/open-apis/im/v1/messages?receive_id_type=chat_id";

fn redis_url() -> String {
    test_redis().unwrap_or_else(|| "redis://127.0.0.1:6379".into())
}

/// Breaks a rate-limit budget in Redis: a string where the sorted set belongs makes every
/// script touching it fail (WRONGTYPE), as a broken Redis would.
async fn break_budget(schema: &str, budget: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SET").arg(format!("larkstack:{schema}:rl:{{{budget}}}")).arg("not a sorted set").query_async(&mut conn).await.unwrap();
    conn
}

async fn mend_budget(conn: &mut redis::aio::MultiplexedConnection, schema: &str, budget: &str) {
    let _: () = redis::cmd("DEL").arg(format!("larkstack:{schema}:rl:{{{budget}}}")).query_async(conn).await.unwrap();
}

fn assert_internal(r: &Reply) {
    let internal = ServerErr::Internal.entry();
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.body);
    assert_eq!(r.code(), internal.code, "{}", r.body);
    assert_eq!(r.body["msg"], internal.msg, "the cause is logged, not sent");
    assert!(r.body["error"]["log_id"].is_string(), "{}", r.body);
}

/// Send message: a Redis failure in the per-chat budget (and in the app's budget) is an internal
/// error, not 230020 (or 99991400); the budgets work again once Redis does.
#[tokio::test]
async fn redis_failures_in_rate_budgets_are_internal_errors() {
    let data = tempfile::tempdir().unwrap();
    let schema = schema_for(data.path());
    let redis = Arc::new(Redis::connect(&redis_url(), &schema).await.unwrap());
    let config = StateConfig { redis: Some(redis), ..StateConfig::default() };
    let app = TestApp::on(data, Directory::demo(), config, Arc::new(Default::default())).await;
    let t = app.token("demo-bot").await;
    let chat = app.new_chat(&t, json!({})).await;
    let text = json!({"receive_id": chat, "msg_type": "text", "content": json!({"text": "hi"}).to_string()});
    assert_eq!(app.call(Method::POST, SEND, &t, Some(text.clone())).await.code(), 0);

    let per_chat = format!("ChatMessages:{chat}");
    let mut conn = break_budget(&schema, &per_chat).await;
    let r = app.call(Method::POST, SEND, &t, Some(text.clone())).await;
    assert_ne!(r.code(), MessageErr::ChatRateLimited.code());
    assert_internal(&r);
    mend_budget(&mut conn, &schema, &per_chat).await;
    assert_eq!(app.call(Method::POST, SEND, &t, Some(text.clone())).await.code(), 0);

    let per_app = format!("SendMessage:{}|736588c9260f175e", app.app_id("demo-bot"));
    let mut conn = break_budget(&schema, &per_app).await;
    let r = app.call(Method::POST, SEND, &t, Some(text.clone())).await;
    assert_ne!(r.code(), GatewayErr::RateLimited.code());
    assert!(r.headers.get("x-ogw-ratelimit-limit").is_none());
    assert_internal(&r);
    mend_budget(&mut conn, &schema, &per_app).await;
    assert_eq!(app.call(Method::POST, SEND, &t, Some(text)).await.code(), 0);

    // A spent budget is still the business code.
    app.state.clock.freeze();
    let chat = app.new_chat(&t, json!({})).await;
    let text = json!({"receive_id": chat, "msg_type": "text", "content": json!({"text": "hi"}).to_string()});
    let codes: Vec<i64> = {
        let mut codes = Vec::new();
        for _ in 0..6 {
            codes.push(app.call(Method::POST, SEND, &t, Some(text.clone())).await.code());
        }
        codes
    };
    assert_eq!(codes, [0, 0, 0, 0, 0, MessageErr::ChatRateLimited.code()]);
}

/// Replies carry their catalogue entry's code, message and HTTP status.
#[tokio::test]
async fn replies_match_their_catalogue_entries() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let r = app.call(Method::GET, "/open-apis/im/v1/chats/oc_00000000000000000000000000000000", &t, None).await;
    let e = ChatErr::InvalidChatId.entry();
    assert_eq!((r.status.as_u16(), r.code(), r.body["msg"].as_str().unwrap()), (e.http_status, e.code, e.msg));
    let r = app.call(Method::GET, "/open-apis/im/v1/chats", "t-nonsense", None).await;
    let e = GatewayErr::InvalidToken.entry();
    assert_eq!((r.status.as_u16(), r.code(), r.body["msg"].as_str().unwrap()), (e.http_status, e.code, e.msg));
}
