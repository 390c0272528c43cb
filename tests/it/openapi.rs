//! The OpenAPI document at /openapi.json (complete against the router, well-formed) and the
//! /coverage page built from it.

use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::Value;
use tower::ServiceExt;

use crate::support::*;

/// Every (method, path) the router in src/server.rs and src/control/mod.rs serves, in OpenAPI
/// path syntax. A route added there without an annotation fails this test.
const ROUTES: &[(&str, &str)] = &[
    ("post", "/open-apis/auth/v3/tenant_access_token/internal"),
    ("post", "/open-apis/auth/v3/tenant_access_token/internal/"),
    ("post", "/open-apis/auth/v3/app_access_token/internal"),
    ("post", "/open-apis/auth/v3/app_access_token/internal/"),
    ("post", "/open-apis/auth/v3/tenant_access_token"),
    ("post", "/open-apis/im/v1/chats"),
    ("get", "/open-apis/im/v1/chats"),
    ("get", "/open-apis/im/v1/chats/search"),
    ("get", "/open-apis/im/v1/chats/{chat_id}"),
    ("put", "/open-apis/im/v1/chats/{chat_id}"),
    ("delete", "/open-apis/im/v1/chats/{chat_id}"),
    ("post", "/open-apis/im/v1/chats/{chat_id}/members"),
    ("delete", "/open-apis/im/v1/chats/{chat_id}/members"),
    ("get", "/open-apis/im/v1/chats/{chat_id}/members"),
    ("get", "/open-apis/im/v1/chats/{chat_id}/members/is_in_chat"),
    ("patch", "/open-apis/im/v1/chats/{chat_id}/members/me_join"),
    ("post", "/open-apis/im/v1/chats/{chat_id}/managers/add_managers"),
    ("post", "/open-apis/im/v1/chats/{chat_id}/managers/delete_managers"),
    ("post", "/open-apis/im/v1/messages"),
    ("get", "/open-apis/im/v1/messages"),
    ("post", "/open-apis/apaas/v1/user_tasks/{task_id}/chat_group"),
    ("post", "/open-apis/apaas/v1/user_task/query"),
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/_larkstack/directory"),
    ("post", "/_larkstack/reset"),
    ("get", "/_larkstack/fixture"),
    ("put", "/_larkstack/fixture"),
    ("get", "/_larkstack/state"),
    ("put", "/_larkstack/state"),
    ("get", "/_larkstack/journal"),
    ("delete", "/_larkstack/journal"),
    ("get", "/_larkstack/events"),
    ("get", "/_larkstack/faults"),
    ("post", "/_larkstack/faults"),
    ("delete", "/_larkstack/faults"),
    ("get", "/_larkstack/faults/presets"),
    ("delete", "/_larkstack/faults/{id}"),
    ("get", "/_larkstack/clock"),
    ("post", "/_larkstack/clock"),
    ("get", "/_larkstack/chats"),
    ("get", "/_larkstack/chats/{chat_id}"),
    ("post", "/_larkstack/chats/{chat_id}/messages"),
    ("post", "/_larkstack/chats/{chat_id}/join"),
    ("post", "/_larkstack/chats/{chat_id}/leave"),
    ("get", "/_larkstack/tasks"),
];

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

#[tokio::test]
async fn the_document_lists_exactly_the_routes_the_router_serves() {
    let app = TestApp::demo().await;
    let doc = document(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "larkstack");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(doc["info"]["description"].as_str().unwrap().contains("Feishu"));
    let documented: Vec<(String, String)> = operations(&doc).into_iter().map(|(m, p, _)| (m, p)).collect();
    for (method, path) in ROUTES {
        assert!(
            documented.contains(&(method.to_string(), path.to_string())),
            "{} {path} is served but not in /openapi.json",
            method.to_uppercase()
        );
    }
    for (method, path) in &documented {
        assert!(
            ROUTES.contains(&(method.as_str(), path.as_str())),
            "{} {path} is documented but not in this test's route list",
            method.to_uppercase()
        );
    }
    // Every documented operation really is routed (no 404/405 from the fallbacks).
    for (method, path) in ROUTES {
        let uri = path.replace("{chat_id}", "oc_nonexistent").replace("{task_id}", "1").replace("{id}", "1");
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let req = Request::builder().method(m).uri(&uri).body(Body::empty()).unwrap();
        let status = app.router.clone().oneshot(req).await.unwrap().status().as_u16();
        assert!(status != 404 && status != 405, "{method} {uri}: {status}");
    }
}

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
        } else {
            assert!(ok["application/json"]["schema"].is_object(), "{what}: 200 JSON");
        }
        assert_eq!(
            replies["default"]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorEnvelope",
            "{what}: default error envelope"
        );
        let security = op["security"].as_array().map(|s| s[0].as_object().unwrap().keys().next().unwrap().clone());
        let expected = if path.starts_with("/_larkstack/") {
            Some("admin_token")
        } else if path.starts_with("/open-apis/") && !path.starts_with("/open-apis/auth/") {
            Some("tenant_access_token")
        } else {
            None
        };
        assert_eq!(security.as_deref(), expected, "{what}: security");
        if path.starts_with("/open-apis/auth/") {
            assert_eq!(tag, "auth");
            let schema = ok["application/json"]["schema"]["$ref"].as_str().unwrap();
            assert!(schema.ends_with("TokenReply"), "{what}: token replies are top-level");
        } else if path != "/metrics" {
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
