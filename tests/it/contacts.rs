//! Contacts: `GET /open-apis/contact/v3/users/{user_id}`, `GET …/users/batch`,
//! `POST …/users/batch_get_id`: field sets by contact scope, the app's range, other tenants.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::*;

fn user_url(id: &str, query: &str) -> String {
    format!("/open-apis/contact/v3/users/{id}{query}")
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[tokio::test]
async fn get_user_shows_the_fields_the_scopes_allow() {
    let app = TestApp::demo().await;
    let token = app.token("demo-bot").await;
    let alice = app.open_id("demo-bot", "alice");
    let r = app.call(Method::GET, &user_url(&alice, ""), &token, None).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let u = &r.body["data"]["user"];
    assert_eq!(u["open_id"], alice.as_str());
    assert_eq!(u["name"], "Alice 王");
    assert_eq!(u["en_name"], "Alice Wang");
    assert_eq!(u["email"], "alice@acme.example");
    assert_eq!(u["mobile"], "+8613800000001");
    let user_id = app.dir.users().iter().find(|u| u.key == "alice").unwrap().user_id.0.clone();
    assert_eq!(u["user_id"], user_id.as_str());
    assert_eq!(u["status"]["is_activated"], true);
    assert!(u["union_id"].as_str().unwrap().starts_with("on_"));
    assert!(u["avatar"]["avatar_72"].is_string());
    // The same user by union_id and by user_id.
    let union = u["union_id"].as_str().unwrap().to_string();
    let r = app.call(Method::GET, &user_url(&union, "?user_id_type=union_id"), &token, None).await;
    assert_eq!(r.body["data"]["user"]["open_id"], alice.as_str(), "{}", r.body);
    let r = app.call(Method::GET, &user_url(&user_id, "?user_id_type=user_id&department_id_type=open_department_id"), &token, None).await;
    assert_eq!(r.body["data"]["user"]["open_id"], alice.as_str(), "{}", r.body);
    // A resigned user is still found, with its status saying so.
    let dave = app.open_id("demo-bot", "dave");
    let r = app.call(Method::GET, &user_url(&dave, ""), &token, None).await;
    assert_eq!(r.body["data"]["user"]["status"]["is_resigned"], true, "{}", r.body);

    // An app that may call but holds no field scope sees the ids only.
    let helper = app.token("helper-bot").await;
    let r = app.call(Method::GET, &user_url(&app.open_id("helper-bot", "alice"), ""), &helper, None).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    assert_eq!(keys(&r.body["data"]["user"]), ["open_id", "union_id"]);
    // narrow-app has the base scope but not email, phone or user_id.
    let narrow = app.token("narrow-app").await;
    let r = app.call(Method::GET, &user_url(&app.open_id("narrow-app", "bob"), ""), &narrow, None).await;
    let u = &r.body["data"]["user"];
    assert_eq!(u["name"], "Bob 李", "{}", r.body);
    assert!(u.get("email").is_none() && u.get("mobile").is_none() && u.get("user_id").is_none(), "{u}");
}

#[tokio::test]
async fn get_user_refusals() {
    let app = TestApp::demo().await;
    let token = app.token("demo-bot").await;
    let alice = app.open_id("demo-bot", "alice");
    // No contact scope at all.
    let other = app.token("globex-bot").await;
    let r = app.call(Method::GET, &user_url(&app.open_id("globex-bot", "gina"), ""), &other, None).await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, 99991672), "{}", r.body);
    // Outside the app's range.
    let narrow = app.token("narrow-app").await;
    let r = app.call(Method::GET, &user_url(&app.open_id("narrow-app", "carol"), ""), &narrow, None).await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, 41050), "{}", r.body);
    assert_eq!(r.body["msg"], "no user authority error");
    // Another tenant's user, an id of another app, and no such user.
    for id in [app.open_id("demo-bot", "gina"), app.open_id("helper-bot", "alice"), "ou_nobody".to_string()] {
        let r = app.call(Method::GET, &user_url(&id, ""), &token, None).await;
        assert_eq!(r.code(), 41050, "{id}: {}", r.body);
    }
    // Parameters outside their rules.
    for query in ["?user_id_type=email", "?department_id_type=dept"] {
        let r = app.call(Method::GET, &user_url(&alice, query), &token, None).await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, 99992402), "{query}: {}", r.body);
    }
    // user_id needs the employee-id scope.
    let bob_id = app.dir.users().iter().find(|u| u.key == "bob").unwrap().user_id.0.clone();
    let r = app.call(Method::GET, &user_url(&bob_id, "?user_id_type=user_id"), &narrow, None).await;
    assert_eq!(r.code(), 99991672, "{}", r.body);
}

#[tokio::test]
async fn batch_lists_readable_users_in_order_and_bounds_the_ids() {
    let app = TestApp::demo().await;
    let token = app.token("demo-bot").await;
    let o = |u: &str| app.open_id("demo-bot", u);
    let query = format!("?user_ids={}&user_ids={}&user_ids={}&user_ids=ou_nobody", o("bob"), o("gina"), o("alice"));
    let r = app.call(Method::GET, &format!("/open-apis/contact/v3/users/batch{query}"), &token, None).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let names: Vec<&str> = r.body["data"]["items"].as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Bob 李", "Alice 王"], "another tenant's and unknown users are left out");
    let r = app.call(Method::GET, "/open-apis/contact/v3/users/batch", &token, None).await;
    assert_eq!(r.code(), 99992402, "no user_ids: {}", r.body);
    let many: String = (0..51).map(|i| format!("user_ids=ou_{i}&")).collect();
    let r = app.call(Method::GET, &format!("/open-apis/contact/v3/users/batch?{many}"), &token, None).await;
    assert_eq!(r.code(), 99992402, "51 ids: {}", r.body);
}

#[tokio::test]
async fn batch_get_id_finds_users_by_email_and_mobile() {
    let app = TestApp::demo().await;
    let token = app.token("demo-bot").await;
    let body = json!({
        "emails": ["alice@acme.example", "nobody@acme.example", "gina@globex.example", "DAVE@acme.example"],
        "mobiles": ["13800000002", "+8613800000001", "+10000000000"],
    });
    let r = app.call(Method::POST, "/open-apis/contact/v3/users/batch_get_id", &token, Some(body.clone())).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let list = r.body["data"]["user_list"].as_array().unwrap();
    assert_eq!(list.len(), 7);
    assert_eq!(list[0], json!({"email": "alice@acme.example", "user_id": app.open_id("demo-bot", "alice"), "status": list[0]["status"]}));
    assert_eq!(list[0]["status"]["is_resigned"], false);
    assert_eq!(list[1], json!({"email": "nobody@acme.example"}), "unknown: no user_id");
    assert_eq!(list[2], json!({"email": "gina@globex.example"}), "another tenant's user is not found");
    assert_eq!(list[3], json!({"email": "DAVE@acme.example"}), "resigned users need include_resigned");
    assert_eq!(list[4]["mobile"], "13800000002");
    assert_eq!(list[4]["user_id"], app.open_id("demo-bot", "bob").as_str(), "a number without +86 is a mainland one");
    assert_eq!(list[5]["user_id"], app.open_id("demo-bot", "alice").as_str());
    assert!(list[6].get("user_id").is_none());
    // Resigned users too, and ids of another type.
    let body = json!({"emails": ["dave@acme.example"], "include_resigned": true});
    let r = app.call(Method::POST, "/open-apis/contact/v3/users/batch_get_id?user_id_type=union_id", &token, Some(body)).await;
    let dave = &r.body["data"]["user_list"][0];
    assert!(dave["user_id"].as_str().unwrap().starts_with("on_"), "{}", r.body);
    assert_eq!(dave["status"]["is_resigned"], true);
    // Users outside the app's range are not found.
    let narrow = app.token("narrow-app").await;
    let body = json!({"emails": ["alice@acme.example"], "mobiles": ["+8613800000001"]});
    let r = app.call(Method::POST, "/open-apis/contact/v3/users/batch_get_id", &narrow, Some(body)).await;
    assert!(r.body["data"]["user_list"][0]["user_id"].is_string(), "{}", r.body);
    let r = app.call(Method::POST, "/open-apis/contact/v3/users/batch_get_id", &narrow, Some(json!({"emails": ["carol@acme.example"]}))).await;
    assert!(r.body["data"]["user_list"][0].get("user_id").is_none(), "{}", r.body);
}

#[tokio::test]
async fn batch_get_id_refusals() {
    let app = TestApp::demo().await;
    let token = app.token("demo-bot").await;
    let url = "/open-apis/contact/v3/users/batch_get_id";
    for body in [json!({}), json!({"emails": []}), json!({"emails": "alice@acme.example"})] {
        let r = app.call(Method::POST, url, &token, Some(body.clone())).await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, 99992402), "{body}: {}", r.body);
    }
    let many: Vec<String> = (0..51).map(|i| format!("u{i}@acme.example")).collect();
    let r = app.call(Method::POST, url, &token, Some(json!({"emails": many}))).await;
    assert_eq!(r.code(), 99992402, "{}", r.body);
    // The lookup scope is needed (helper-bot reads contacts but may not look ids up).
    let helper = app.token("helper-bot").await;
    let r = app.call(Method::POST, url, &helper, Some(json!({"emails": ["alice@acme.example"]}))).await;
    assert_eq!(r.code(), 99991672, "{}", r.body);
}
