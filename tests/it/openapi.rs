//! The OpenAPI document at /openapi.json (complete against the router, well-formed) and the
//! /coverage page built from it.

use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::Value;
use tower::ServiceExt;

use crate::support::*;

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options", "trace"];

/// Status, content type and body of a GET without a token.
pub(crate) async fn get_raw(app: &TestApp, uri: &str) -> (u16, String, String) {
    let req = Request::builder().method(Method::GET).uri(uri).body(Body::empty()).unwrap();
    let resp = app.router.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (status, ct, String::from_utf8(bytes.to_vec()).unwrap())
}

pub async fn document(app: &TestApp) -> Value {
    let (status, ct, body) = get_raw(app, "/openapi.json").await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("application/json"), "{ct}");
    serde_json::from_str(&body).expect("/openapi.json is JSON")
}

pub fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if let Some(op) = item.get(*m) {
                ops.push((m.to_string(), path.clone(), op));
            }
        }
    }
    ops
}

/// The operations of the one registration (`server::routes`), which builds the router too.
fn registered(app: &TestApp) -> Vec<(String, String)> {
    let doc = serde_json::to_value(larkstack::server::routes(app.state.clone()).into_openapi()).unwrap();
    operations(&doc).into_iter().map(|(m, p, _)| (m, p)).collect()
}

#[tokio::test]
async fn the_document_lists_exactly_the_routes_the_router_serves() {
    let app = TestApp::demo().await;
    let doc = document(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "larkstack");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(doc["info"]["description"].as_str().unwrap().contains("Feishu"));
    let mut documented: Vec<(String, String)> = operations(&doc).into_iter().map(|(m, p, _)| (m, p)).collect();
    let mut routes = registered(&app);
    documented.sort();
    routes.sort();
    assert_eq!(documented, routes, "/openapi.json is the registration's document");
    // The families are all there, and the token endpoints answer with a trailing slash too.
    for (method, path) in [
        ("post", "/open-apis/auth/v3/tenant_access_token/internal/"),
        ("post", "/open-apis/auth/v3/app_access_token/internal/"),
        ("get", "/open-apis/im/v1/chats/{chat_id}/members"),
        ("post", "/open-apis/apaas/v1/user_tasks/{task_id}/chat_group"),
        ("delete", "/_larkstack/faults/{id}"),
        ("get", "/healthz"),
        ("get", "/metrics"),
    ] {
        assert!(routes.contains(&(method.to_string(), path.to_string())), "{method} {path} is registered");
    }
    // Every registered operation really is routed (no 404/405 from the fallbacks).
    for (method, path) in &routes {
        let uri = path.replace("{chat_id}", "oc_nonexistent").replace("{task_id}", "1").replace("{id}", "1");
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let req = Request::builder().method(m).uri(&uri).body(Body::empty()).unwrap();
        let status = app.router.clone().oneshot(req).await.unwrap().status().as_u16();
        assert!(status != 404 && status != 405, "{method} {uri}: {status}");
    }
}

/// The router is the registration: outside it, only `/openapi.json`, `/coverage` (which publish
/// the document) and the console's static files are routed by hand.
#[test]
fn no_route_is_added_outside_the_registration() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![src.clone()];
    let mut by_hand = Vec::new();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path.strip_prefix(&src).unwrap().to_string_lossy().to_string();
            if !rel.ends_with(".rs") || rel == "openapi.rs" || rel == "control/console.rs" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                if [".route(", ".route_service(", ".nest(", ".nest_service("].iter().any(|c| line.contains(c)) {
                    by_hand.push(format!("src/{rel}:{}: {}", n + 1, line.trim()));
                }
            }
        }
    }
    assert!(by_hand.is_empty(), "routes added by hand, not through `routes!`:\n{}", by_hand.join("\n"));
}

/// The operations whose success is the bytes of an image or file, not an envelope.
const DOWNLOADS: &[&str] = &[
    "/open-apis/im/v1/images/{image_key}",
    "/open-apis/im/v1/files/{file_key}",
    "/open-apis/im/v1/messages/{message_id}/resources/{file_key}",
];

#[tokio::test]
async fn every_operation_documents_its_replies_security_and_tag() {
    let app = TestApp::demo().await;
    let doc = document(&app).await;
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["tenant_access_token"]["scheme"], "bearer");
    assert_eq!(schemes["admin_token"]["scheme"], "bearer");
    let tags: Vec<&str> = doc["tags"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    let mut ids = std::collections::HashSet::new();
    for (method, path, op) in operations(&doc) {
        let what = format!("{method} {path}");
        assert!(ids.insert(op["operationId"].as_str().unwrap().to_string()), "{what}: operationId not unique");
        assert!(op["summary"].as_str().is_some_and(|s| !s.is_empty()), "{what}: summary");
        let tag = op["tags"][0].as_str().unwrap();
        assert!(tags.contains(&tag), "{what}: tag {tag}");
        let replies = &op["responses"];
        let ok = &replies["200"]["content"];
        if path == "/metrics" {
            assert!(ok["application/openmetrics-text"].is_object(), "{what}: {ok}");
        } else if (method.as_str(), path.as_str()) == ("get", "/_larkstack/state") {
            // The state streams as NDJSON, and only that is documented (schemathesis checks it).
            assert_eq!(ok.as_object().unwrap().keys().collect::<Vec<_>>(), ["application/x-ndjson"], "{what}: {ok}");
        } else if DOWNLOADS.contains(&path.as_str()) {
            // Downloads answer the bytes (errors stay envelopes, below).
            assert_eq!(ok.as_object().unwrap().keys().collect::<Vec<_>>(), ["application/octet-stream"], "{what}: {ok}");
        } else {
            assert!(ok["application/json"]["schema"].is_object(), "{what}: 200 JSON");
        }
        assert_eq!(
            replies["default"]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorEnvelope",
            "{what}: default error envelope"
        );
        let security = op["security"].as_array().map(|s| s[0].as_object().unwrap().keys().next().unwrap().clone());
        // A custom bot's webhook URL is its own credential.
        let hook = path.starts_with("/open-apis/bot/v2/hook/");
        let expected = if path.starts_with("/_larkstack/") {
            Some("admin_token")
        } else if path.starts_with("/open-apis/") && !path.starts_with("/open-apis/auth/") && !hook {
            Some("tenant_access_token")
        } else {
            None
        };
        assert_eq!(security.as_deref(), expected, "{what}: security");
        if path.starts_with("/open-apis/auth/") {
            assert_eq!(tag, "auth");
            let schema = ok["application/json"]["schema"]["$ref"].as_str().unwrap();
            let top_level = ["TenantTokenReply", "AppTokenReply", "TicketResendReply"];
            assert!(top_level.iter().any(|s| schema.ends_with(&format!("/{s}"))), "{what}: token replies are top-level");
        } else if path == "/open-apis/bot/v3/info" || hook {
            // Feishu's other top-level replies: `bot` beside `code`; the hook's `{code, data, msg}`.
            let schema = ok["application/json"]["schema"]["$ref"].as_str().unwrap();
            assert!(schema.ends_with("BotInfoReply") || schema.ends_with("HookReply"), "{what}: {schema}");
        } else if ok["application/json"].is_object() {
            assert_eq!(ok["application/json"]["schema"]["$ref"], "#/components/schemas/Envelope", "{what}");
        }
    }
    let envelope = &doc["components"]["schemas"]["ErrorEnvelope"];
    assert_eq!(envelope["properties"]["error"]["$ref"], "#/components/schemas/ErrorDetail");
    let detail = &doc["components"]["schemas"]["ErrorDetail"]["properties"];
    for field in ["log_id", "field_violations", "permission_violations"] {
        assert!(detail[field].is_object(), "ErrorDetail.{field}");
    }
}

#[tokio::test]
async fn parameters_and_bodies_are_the_handlers_own() {
    let app = TestApp::demo().await;
    let doc = document(&app).await;
    let op = |method: &str, path: &str| doc["paths"][path][method].clone();
    let params = |op: &Value| -> Vec<(String, String)> {
        op["parameters"]
            .as_array()
            .map(|ps| ps.iter().map(|p| (p["name"].as_str().unwrap().into(), p["in"].as_str().unwrap().into())).collect())
            .unwrap_or_default()
    };
    let has = |op: &Value, names: &[&str], location: &str| {
        let ps = params(op);
        for n in names {
            assert!(ps.contains(&(n.to_string(), location.to_string())), "{n} in {location}: {ps:?}");
        }
    };
    let create = op("post", "/open-apis/im/v1/chats");
    has(&create, &["user_id_type", "set_bot_manager", "uuid"], "query");
    assert_eq!(create["requestBody"]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/CreateChatBody");
    let body = &doc["components"]["schemas"]["CreateChatBody"]["properties"];
    for field in ["user_id_list", "bot_id_list", "owner_id", "name", "i18n_names", "restricted_mode_setting", "toolkit_ids"] {
        assert!(body[field].is_object(), "CreateChatBody.{field}");
    }
    has(&op("get", "/open-apis/im/v1/chats"), &["user_id_type", "sort_type", "page_size", "page_token"], "query");
    has(&op("get", "/open-apis/im/v1/chats/search"), &["query", "page_size", "page_token"], "query");
    has(&op("put", "/open-apis/im/v1/chats/{chat_id}"), &["chat_id"], "path");
    has(&op("post", "/open-apis/im/v1/chats/{chat_id}/members"), &["member_id_type", "succeed_type"], "query");
    has(&op("get", "/open-apis/im/v1/chats/{chat_id}/members"), &["member_id_type", "page_size", "page_token"], "query");
    has(&op("post", "/open-apis/im/v1/messages"), &["receive_id_type"], "query");
    has(
        &op("get", "/open-apis/im/v1/messages"),
        &["container_id_type", "container_id", "start_time", "end_time", "sort_type", "page_size", "page_token"],
        "query",
    );
    has(&op("post", "/open-apis/apaas/v1/user_tasks/{task_id}/chat_group"), &["task_id"], "path");
    has(&op("get", "/_larkstack/journal"), &["app_id", "path", "method", "code", "after", "limit"], "query");
    has(&op("delete", "/_larkstack/faults/{id}"), &["id"], "path");
    let schema_of = |method: &str, path: &str| op(method, path)["requestBody"]["content"]["application/json"]["schema"]["$ref"].clone();
    assert_eq!(schema_of("put", "/open-apis/im/v1/chats/{chat_id}"), "#/components/schemas/UpdateChatBody");
    assert_eq!(schema_of("post", "/open-apis/apaas/v1/user_tasks/{task_id}/chat_group"), "#/components/schemas/ChatGroupBody");
    assert_eq!(schema_of("post", "/open-apis/apaas/v1/user_task/query"), "#/components/schemas/TaskQueryBody");
    assert_eq!(schema_of("post", "/_larkstack/faults"), "#/components/schemas/FaultSpec");
    // serde renames are honoured: the task query's `kind` travels as `type`.
    assert!(doc["components"]["schemas"]["TaskQueryBody"]["properties"]["type"].is_object());
}

#[tokio::test]
async fn the_coverage_page_lists_the_implemented_feishu_endpoints() {
    let app = TestApp::demo().await;
    let (status, ct, html) = get_raw(&app, "/coverage").await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/html"), "{ct}");
    assert!(html.contains("/open-apis/im/v1/chats"), "{html}");
    assert!(html.contains("/open-apis/apaas/v1/user_tasks/{task_id}/chat_group"));
    assert!(html.contains("Create a group chat"));
    assert!(html.contains("<h2>im</h2>") && html.contains("<h2>auth</h2>") && html.contains("<h2>apaas</h2>"));
    assert!(!html.contains("/_larkstack/"), "the control API is not a Feishu endpoint");
}

/// Every string under an `enum` of `schema`, however the schema nests it (`Option` adds a null).
fn enum_values(schema: &Value, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "enum" {
                    out.extend(v.as_array().unwrap().iter().filter_map(|s| s.as_str().map(str::to_string)));
                } else {
                    enum_values(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| enum_values(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn query_enums_document_exactly_what_is_parsed() {
    use larkstack::domain::chat_ops::MemberIdType;
    use larkstack::domain::directory::UserIdType;
    let app = TestApp::demo().await;
    let doc = document(&app).await;
    type Accepts = fn(&str) -> bool;
    let cases: [(&str, Accepts, &[&str]); 2] = [
        ("user_id_type", |v| UserIdType::parse(v).is_some(), &["open_id", "union_id", "user_id"]),
        ("member_id_type", |v| MemberIdType::parse(Some(v)).is_ok(), &["open_id", "union_id", "user_id", "app_id"]),
    ];
    for (name, accepts, expected) in cases {
        let mut seen = 0;
        for (method, path, op) in operations(&doc) {
            for param in op["parameters"].as_array().into_iter().flatten().filter(|p| p["name"] == name) {
                let mut values = Vec::new();
                enum_values(&param["schema"], &mut values);
                assert!(!values.is_empty(), "{method} {path}: {name} is an enum");
                // (Listing members takes user types only: it documents those.)
                assert!(values.iter().all(|v| expected.contains(&v.as_str()) && accepts(v)), "{method} {path}: {name}: {values:?}");
                seen += usize::from(values.len() == expected.len());
            }
        }
        assert!(seen > 0, "{name} is documented with all its values somewhere");
        assert!(!accepts("bogus") && !accepts("Open_Id"), "{name} accepts only its names");
    }
}

/// Every `$ref` string under `value`.
fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn every_schema_reference_resolves() {
    let app = TestApp::demo().await;
    let doc = document(&app).await;
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 50, "{}", all.len());
    for r in all {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{r}"));
        assert!(doc["components"]["schemas"][name].is_object(), "{r} is not in components");
    }
}

/// The field names of the reply's field violations.
fn violated_fields(r: &Reply) -> Vec<String> {
    r.body["error"]["field_violations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["field"].as_str().map(str::to_string))
        .collect()
}

/// The document's query enums and the handlers agree: every documented value passes the
/// parameter check, and a value outside the enum is refused naming the parameter.
#[tokio::test]
async fn every_documented_query_enum_value_is_accepted_and_no_other() {
    let app = TestApp::demo().await;
    let doc = document(&app).await;
    let token = app.token("demo-bot").await;
    let chat_id = app.new_chat(&token, serde_json::json!({})).await;
    // A message of the bot, for the operations on one message.
    let content = serde_json::json!({"text": "enum check"}).to_string();
    let body = serde_json::json!({"receive_id": chat_id, "msg_type": "text", "content": content});
    let sent = app.call(Method::POST, "/open-apis/im/v1/messages?receive_id_type=chat_id", &token, Some(body)).await;
    let message_id = sent.body["data"]["message_id"].as_str().unwrap().to_string();
    let mut checked = 0;
    for (method, path, op) in operations(&doc) {
        if !path.starts_with("/open-apis/im/") {
            continue;
        }
        for param in op["parameters"].as_array().into_iter().flatten().filter(|p| p["in"] == "query") {
            let name = param["name"].as_str().unwrap();
            let mut values = Vec::new();
            enum_values(&param["schema"], &mut values);
            if values.is_empty() {
                continue;
            }
            // The operation's other required parameters, valid; then this one.
            let uri = |v: &str| {
                let mut query = vec![format!("{name}={v}")];
                for other in op["parameters"].as_array().unwrap().iter().filter(|p| p["in"] == "query" && p["required"] == true) {
                    let other_name = other["name"].as_str().unwrap();
                    let mut valid = Vec::new();
                    enum_values(&other["schema"], &mut valid);
                    let value = if other_name == "container_id" { chat_id.clone() } else { valid.first().cloned().unwrap_or_default() };
                    if other_name != name {
                        query.push(format!("{other_name}={value}"));
                    }
                }
                format!("{}?{}", path.replace("{chat_id}", &chat_id).replace("{message_id}", &message_id), query.join("&"))
            };
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            for v in &values {
                let r = app.call(m.clone(), &uri(v), &token, Some(serde_json::json!({}))).await;
                assert!(!violated_fields(&r).iter().any(|f| f == name), "{method} {path}: {name}={v} refused: {}", r.body);
            }
            let r = app.call(m.clone(), &uri("bogus"), &token, Some(serde_json::json!({}))).await;
            assert!(violated_fields(&r).iter().any(|f| f == name), "{method} {path}: {name}=bogus passed: {}", r.body);
            checked += 1;
        }
    }
    assert!(checked >= 10, "{checked} enum parameters checked");
}
