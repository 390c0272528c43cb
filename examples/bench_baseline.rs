//! The benchmark's baseline: the same HTTP stack as larkstack (axum + hyper, title-case headers),
//! but the create-chat route only parses the JSON body and returns a fixed answer. The ratio
//! larkstack/baseline is what the bench reports.

use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;

const FIXED: &str = r#"{"code":0,"msg":"success","data":{"chat_id":"oc_a0553eda9014c201e6969b478895c230"}}"#;

async fn create(body: Bytes) -> impl IntoResponse {
    let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    std::hint::black_box(parsed);
    ([(header::CONTENT_TYPE, "application/json; charset=utf-8")], FIXED)
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let listen = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18900".into());
    let listener = tokio::net::TcpListener::bind(&listen).await.expect("bind");
    println!("baseline listening on http://{}", listener.local_addr().unwrap());
    let app = Router::new().route("/open-apis/im/v1/chats", post(create));
    larkstack::server::serve(listener, app).await.expect("serve");
}
