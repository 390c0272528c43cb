//! The benchmark's baseline: the same HTTP stack as larkstack (axum + hyper, title-case headers),
//! but each route only parses the JSON body (if any) and returns a fixed answer. The ratio
//! larkstack/baseline is what the bench reports.

use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;

const FIXED: &str = r#"{"code":0,"msg":"success","data":{"chat_id":"oc_a0553eda9014c201e6969b478895c230"}}"#;
const FIXED_CHAT: &str = r#"{"code":0,"msg":"success","data":{"name":"bench","chat_status":"normal","user_count":"3","bot_count":"1"}}"#;
const FIXED_MEMBERS: &str = r#"{"code":0,"msg":"success","data":{"invalid_id_list":[],"not_existed_id_list":[],"pending_approval_id_list":[]}}"#;

async fn create(body: Bytes) -> impl IntoResponse {
    let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    std::hint::black_box(parsed);
    ([(header::CONTENT_TYPE, "application/json; charset=utf-8")], FIXED)
}

async fn get_chat() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json; charset=utf-8")], FIXED_CHAT)
}

async fn add_members(body: Bytes) -> impl IntoResponse {
    let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    std::hint::black_box(parsed);
    ([(header::CONTENT_TYPE, "application/json; charset=utf-8")], FIXED_MEMBERS)
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let listen = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18900".into());
    let listener = tokio::net::TcpListener::bind(&listen).await.expect("bind");
    println!("baseline listening on http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/open-apis/im/v1/chats", post(create))
        .route("/open-apis/im/v1/chats/{chat_id}", get(get_chat))
        .route("/open-apis/im/v1/chats/{chat_id}/members", post(add_members));
    let options = larkstack::server::ServeOptions::new(std::sync::Arc::new(larkstack::clock::Clock::default()));
    larkstack::server::serve(listener, app, options).await.expect("serve");
}
