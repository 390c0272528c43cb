//! Tenant isolation and API fidelity (issue 11 items 1, 13–16): a store app's token for one
//! tenant never reaches another tenant's chats; chat search folds every script and matches
//! `i18n_names`; the member endpoints' cross-tenant and p2p codes; the p2p GET view; group
//! history needs `im:message.group_msg`.

use axum::http::Method;
use larkstack::domain::directory::{Directory, DEMO_FIXTURE};
use larkstack::domain::ids::ChatId;
use larkstack::state::StateConfig;
use larkstack::store::{MessageContainer, MessageOrder, MessageQuery, ReactionQuery};
use serde_json::{json, Value};

use crate::openapi::{document, operations};
use crate::support::*;

/// The demo directory with the store app (installed in acme and globex) given every scope the
/// chat, message and contact endpoints ask for, owner rights and external chats: whatever a foreign
/// tenant's token is refused, it is refused for the tenant, not for a missing scope.
fn store_app_fixture() -> Directory {
    let store_scopes = r#"scopes = ["im:chat", "contact:user.employee_id:readonly"]"#;
    assert_eq!(DEMO_FIXTURE.matches(store_scopes).count(), 1, "the demo store app's scopes line");
    let text = DEMO_FIXTURE.replace(
        store_scopes,
        r#"scopes = ["im:chat", "im:message", "im:message.group_msg", "im:chat:operate_as_owner",
          "contact:user.employee_id:readonly", "contact:contact.base:readonly", "contact:user.base:readonly",
          "contact:user.email:readonly", "contact:user.phone:readonly", "contact:user.id:readonly"]
external_chats = true"#,
    );
    Directory::from_toml(&text).unwrap()
}

fn tenant_key(app: &TestApp, key: &str) -> String {
    app.dir.tenants().iter().find(|t| t.key == key).unwrap().tenant_key.0.clone()
}

/// The store app's tenant token for the tenant `key`.
async fn store_token(app: &TestApp, key: &str) -> String {
    let r = app
        .post_json(
            "/open-apis/auth/v3/app_access_token/internal",
            None,
            &json!({"app_id": app.app_id("store-app"), "app_secret": app.secret("store-app")}),
        )
        .await;
    let r = app
        .post_json(
            "/open-apis/auth/v3/tenant_access_token",
            None,
            &json!({"app_access_token": r.body["app_access_token"], "tenant_key": tenant_key(app, key)}),
        )
        .await;
    assert_eq!(r.code(), 0, "{}", r.body);
    r.body["tenant_access_token"].as_str().unwrap().to_string()
}

async fn send_text(app: &TestApp, token: &str, chat: &str, text: &str) -> Reply {
    let content = json!({"text": text}).to_string();
    let body = json!({"receive_id": chat, "msg_type": "text", "content": content});
    app.call(Method::POST, "/open-apis/im/v1/messages?receive_id_type=chat_id", token, Some(body)).await
}

/// The chat and its whole history as stored: each message in full, then its reactions.
async fn stored(app: &TestApp, chat: &str) -> (larkstack::domain::chat::Chat, Vec<String>) {
    let id = ChatId(chat.to_string());
    let c = app.state.store.get_chat(&id).await.unwrap().unwrap();
    let q = MessageQuery { container: MessageContainer::Chat(id), start_ms: None, end_ms: None, order: MessageOrder::Asc, after: None, limit: 10_000 };
    let mut history = Vec::new();
    for (_, m) in app.state.store.list_messages(q).await.unwrap() {
        history.push(serde_json::to_string(&m).unwrap());
        let q = ReactionQuery { message_id: m.message_id.clone(), emoji_type: None, after_seq: 0, limit: 10_000 };
        for (_, r) in app.state.store.list_reactions(q).await.unwrap() {
            history.push(serde_json::to_string(&r).unwrap());
        }
    }
    (c, history)
}

/// Names of parameters and body fields that carry a chat.
const CHAT_FIELDS: &[&str] = &["chat_id", "receive_id", "container_id"];

/// Codes that refuse a caller for the chat not being its tenant's (or, for aPaaS, store apps not
/// holding its scope): the walk accepts no other refusal, so a request the test fills badly
/// (a parameter error) fails it instead of passing for the wrong reason.
const TENANT_REFUSALS: &[i64] = &[232010, 232011, 230002, 231002, 231008, 234004, 99991672, 200830];

/// An acme user as the store app names them: open_id, email, mobile.
struct AcmeUser<'a> {
    open_id: &'a str,
    email: &'a str,
    mobile: &'a str,
}

/// A value for a query parameter or body field named `name`, or `None` to leave it out. Fields
/// that name users to look up name an acme user (`acme`), so that a globex token must not find them.
fn value_for(name: &str, chat: &str, chat_name: &str, user: &str, acme: &AcmeUser) -> Option<Value> {
    Some(match name {
        "user_ids" => json!(acme.open_id),
        "emails" => json!([acme.email]),
        "mobiles" => json!([acme.mobile]),
        "lang" => json!("zh_cn"),
        n if CHAT_FIELDS.contains(&n) => json!(chat),
        "receive_id_type" => json!("chat_id"),
        "container_id_type" => json!("chat"),
        "type" => json!("image"),
        "msg_type" => json!("text"),
        "content" => json!(json!({"text": "from another tenant"}).to_string()),
        "query" => json!(chat_name),
        "name" | "description" => json!("renamed by another tenant"),
        "id_list" | "manager_ids" | "invite_user_ids" => json!([user]),
        "operator_user_id" => json!("1783981209205701"),
        _ => return None,
    })
}

fn percent(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

fn query_string(pairs: &[(String, Value)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", percent(&v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// Every `/open-apis` operation of the served OpenAPI document (so a new endpoint is walked
/// without touching this test), called with the store app's globex token against an acme chat
/// the same app is in, with owner rights: each operation that takes a chat — `{chat_id}` in the
/// path, or a chat-carrying query parameter or body field — is refused for the tenant and
/// changes nothing; every other operation never shows the chat.
#[tokio::test]
async fn another_tenants_token_reaches_no_chat_of_this_tenant() {
    let app = TestApp::with(store_app_fixture(), StateConfig::default()).await;
    let acme = store_token(&app, "acme").await;
    let globex = store_token(&app, "globex").await;
    let chat_name = "Acme merger plans";
    let body = json!({
        "name": chat_name, "chat_type": "public",
        "owner_id": app.open_id("store-app", "alice"), "user_id_list": [app.open_id("store-app", "bob")],
    });
    let chat = app.new_chat(&acme, body).await;
    let sent = send_text(&app, &acme, &chat, "confidential").await;
    assert_eq!(sent.code(), 0);
    // A message of the chat and a reaction on it, for the operations that name them.
    let message = sent.body["data"]["message_id"].as_str().unwrap().to_string();
    let r = app
        .call(Method::POST, &format!("/open-apis/im/v1/messages/{message}/reactions"), &acme, Some(json!({"reaction_type": {"emoji_type": "OK"}})))
        .await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let reaction = r.body["data"]["reaction_id"].as_str().unwrap().to_string();
    // A card of the chat that alice clicked: the click's `c-` token names the card.
    let card = json!({"elements": [{"tag": "hr"}]}).to_string();
    let r = app
        .call(Method::POST, "/open-apis/im/v1/messages?receive_id_type=chat_id", &acme, Some(json!({"receive_id": chat, "msg_type": "interactive", "content": card})))
        .await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let card_message = r.body["data"]["message_id"].as_str().unwrap().to_string();
    let admin = app.state.admin_token.clone();
    let r = app.call(Method::POST, &format!("/_larkstack/messages/{card_message}/card_action"), &admin, Some(json!({"user": "alice"}))).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let card_token = r.body["data"]["token"].as_str().unwrap().to_string();
    let before = stored(&app, &chat).await;
    // The home tenant's token reads it in full.
    let r = app.call(Method::GET, &format!("/open-apis/im/v1/chats/{chat}"), &acme, None).await;
    assert_eq!((r.code(), r.body["data"]["name"].as_str()), (0, Some(chat_name)), "{}", r.body);

    let doc = document(&app).await;
    let globex_user = app.open_id("store-app", "hank");
    let alice_open = app.open_id("store-app", "alice");
    let acme_user = AcmeUser { open_id: &alice_open, email: "alice@acme.example", mobile: "+8613800000001" };
    // The home tenant's token finds her.
    let r = app.call(Method::GET, &format!("/open-apis/contact/v3/users/{alice_open}"), &acme, None).await;
    assert_eq!((r.code(), r.body["data"]["user"]["name"].as_str()), (0, Some("Alice 王")), "{}", r.body);
    let r = app.call(Method::POST, "/open-apis/contact/v3/users/batch_get_id", &acme, Some(json!({"emails": [acme_user.email]}))).await;
    assert_eq!(r.body["data"]["user_list"][0]["user_id"], alice_open.as_str(), "{}", r.body);
    let mut walked = Vec::new();
    for (method, path, op) in operations(&doc) {
        if !path.starts_with("/open-apis/") {
            continue;
        }
        // A message (and its reactions) is its chat's.
        let mut takes_chat = path.contains("{chat_id}") || path.contains("{message_id}");
        let mut query = Vec::new();
        for p in op["parameters"].as_array().into_iter().flatten() {
            let name = p["name"].as_str().unwrap();
            if p["in"] == "query" {
                takes_chat |= CHAT_FIELDS.contains(&name);
                if let Some(v) = value_for(name, &chat, chat_name, &globex_user, &acme_user) {
                    query.push((name.to_string(), v));
                }
            }
        }
        let body = op["requestBody"]["content"]["application/json"]["schema"]["$ref"].as_str().map(|r| {
            let schema = &doc["components"]["schemas"][r.rsplit('/').next().unwrap()];
            let mut body = serde_json::Map::new();
            for name in schema["properties"].as_object().into_iter().flat_map(|p| p.keys()) {
                takes_chat |= CHAT_FIELDS.contains(&name.as_str());
                // A card token names a card, so its chat.
                if name == "token" {
                    takes_chat = true;
                    body.insert(name.clone(), json!(card_token));
                    body.insert("card".into(), json!({"elements": [{"tag": "div", "text": {"tag": "plain_text", "content": "x"}}]}));
                }
                if let Some(v) = value_for(name, &chat, chat_name, &globex_user, &acme_user) {
                    body.insert(name.clone(), v);
                }
            }
            Value::Object(body)
        });
        let uri = path
            .replace("{chat_id}", &chat)
            .replace("{message_id}", &message)
            .replace("{reaction_id}", &reaction)
            .replace("{task_id}", "1790000000000201")
            .replace("{user_id}", &alice_open)
            .replace("{app_id}", &app.app_id("store-app"))
            + &query_string(&query);
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let r = app.call(m, &uri, &globex, body).await;
        let what = format!("{} {uri}", method.to_uppercase());
        if takes_chat {
            assert!(TENANT_REFUSALS.contains(&r.code()), "{what} with another tenant's token: {}", r.body);
            walked.push(format!("{method} {path}"));
        } else {
            assert!(!r.body.to_string().contains(&chat), "{what} shows another tenant's chat: {}", r.body);
        }
        // No operation finds an acme user for the globex token: users/get answers 41050, the
        // batch reads leave the user out.
        assert!(!r.body.to_string().contains(&alice_open) && !r.body.to_string().contains("Alice"), "{what} shows an acme user: {}", r.body);
        if path.contains("{user_id}") {
            assert_eq!(r.code(), 41050, "{what}: {}", r.body);
            walked.push(format!("{method} {path}"));
        } else if path.starts_with("/open-apis/contact/v3/users/batch") {
            // Answered (not refused for a parameter), without the user.
            assert_eq!(r.code(), 0, "{what}: {}", r.body);
            walked.push(format!("{method} {path}"));
        }
        assert_eq!(stored(&app, &chat).await, before, "{what} changed another tenant's chat");
    }
    for expected in [
        "get /open-apis/im/v1/chats/{chat_id}",
        "put /open-apis/im/v1/chats/{chat_id}",
        "delete /open-apis/im/v1/chats/{chat_id}",
        "post /open-apis/im/v1/chats/{chat_id}/members",
        "delete /open-apis/im/v1/chats/{chat_id}/members",
        "get /open-apis/im/v1/chats/{chat_id}/members",
        "get /open-apis/im/v1/chats/{chat_id}/members/is_in_chat",
        "patch /open-apis/im/v1/chats/{chat_id}/members/me_join",
        "post /open-apis/im/v1/chats/{chat_id}/managers/add_managers",
        "post /open-apis/im/v1/chats/{chat_id}/managers/delete_managers",
        "post /open-apis/im/v1/messages",
        "get /open-apis/im/v1/messages",
        "post /open-apis/im/v1/messages/{message_id}/reply",
        "get /open-apis/im/v1/messages/{message_id}",
        "put /open-apis/im/v1/messages/{message_id}",
        "patch /open-apis/im/v1/messages/{message_id}",
        "delete /open-apis/im/v1/messages/{message_id}",
        "post /open-apis/im/v1/messages/{message_id}/forward",
        "get /open-apis/im/v1/messages/{message_id}/read_users",
        "post /open-apis/im/v1/messages/{message_id}/reactions",
        "get /open-apis/im/v1/messages/{message_id}/reactions",
        "delete /open-apis/im/v1/messages/{message_id}/reactions/{reaction_id}",
        "post /open-apis/apaas/v1/user_tasks/{task_id}/chat_group",
        "get /open-apis/im/v1/messages/{message_id}/resources/{file_key}",
        "get /open-apis/contact/v3/users/{user_id}",
        "get /open-apis/contact/v3/users/batch",
        "post /open-apis/contact/v3/users/batch_get_id",
        "post /open-apis/interactive/v1/card/update",
    ] {
        assert!(walked.iter().any(|w| w == expected), "{expected} was not walked: {walked:?}");
    }
}

/// An external chat of acme with a globex user: globex's token of the same store app sees it
/// from outside (as a bot outside the chat does) and may do nothing in it.
#[tokio::test]
async fn a_tenant_with_users_in_an_external_chat_sees_it_from_outside() {
    let app = TestApp::with(store_app_fixture(), StateConfig::default()).await;
    let acme = store_token(&app, "acme").await;
    let globex = store_token(&app, "globex").await;
    let o = |u: &str| app.open_id("store-app", u);
    let chat = app.new_chat(&acme, json!({"name": "Acme × Globex", "owner_id": o("alice"), "user_id_list": [o("gina")]})).await;
    assert_eq!(send_text(&app, &acme, &chat, "hello gina").await.code(), 0);
    // A thread in the chat: listing it is reading the chat.
    let hello = app.call(Method::GET, &format!("/open-apis/im/v1/messages?container_id_type=chat&container_id={chat}"), &acme, None).await;
    let hello = hello.body["data"]["items"][0]["message_id"].as_str().unwrap().to_string();
    let body = json!({"msg_type": "text", "content": "{\"text\":\"threaded\"}", "reply_in_thread": true});
    let r = app.call(Method::POST, &format!("/open-apis/im/v1/messages/{hello}/reply"), &acme, Some(body)).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let thread = format!("/open-apis/im/v1/messages?container_id_type=thread&container_id={}", r.body["data"]["thread_id"].as_str().unwrap());
    let before = stored(&app, &chat).await;
    assert!(before.0.external);

    let r = app.call(Method::GET, &format!("/open-apis/im/v1/chats/{chat}"), &globex, None).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let mut keys: Vec<&String> = r.body["data"].as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["avatar", "bot_count", "chat_status", "name", "user_count"], "the outsider view only");
    let r = app.call(Method::GET, &format!("/open-apis/im/v1/chats/{chat}/members/is_in_chat"), &globex, None).await;
    assert_eq!((r.code(), &r.body["data"]["is_in_chat"]), (0, &json!(false)), "{}", r.body);
    assert_eq!(send_text(&app, &globex, &chat, "from globex").await.code(), 230002);
    let list = format!("/open-apis/im/v1/messages?container_id_type=chat&container_id={chat}");
    assert_eq!(app.call(Method::GET, &list, &globex, None).await.code(), 230002);
    assert_eq!(app.call(Method::GET, &thread, &globex, None).await.code(), 230002);
    let r = app.call(Method::PUT, &format!("/open-apis/im/v1/chats/{chat}"), &globex, Some(json!({"name": "x"}))).await;
    assert_eq!(r.code(), 232011);
    assert_eq!(app.call(Method::GET, &format!("/open-apis/im/v1/chats/{chat}/members"), &globex, None).await.code(), 232011);
    assert_eq!(app.call(Method::DELETE, &format!("/open-apis/im/v1/chats/{chat}"), &globex, None).await.code(), 232011);
    assert_eq!(stored(&app, &chat).await, before);
    // The home tenant's token still works.
    assert_eq!(app.call(Method::GET, &list, &acme, None).await.code(), 0);
    assert_eq!(app.call(Method::GET, &thread, &acme, None).await.body["data"]["items"].as_array().map(Vec::len), Some(2));
}

async fn search(app: &TestApp, token: &str, query: &str) -> Vec<String> {
    let r = app.call(Method::GET, &format!("/open-apis/im/v1/chats/search?query={}", percent(query)), token, None).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    r.body["data"]["items"].as_array().unwrap().iter().map(|i| i["chat_id"].as_str().unwrap().to_string()).collect()
}

/// Search folds non-ASCII capitals on every backend and matches the internationalized names.
#[tokio::test]
async fn search_folds_every_script_and_matches_i18n_names() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let doctors = app.new_chat(&t, json!({"name": "Ärzte Runde"})).await;
    let omega = app.new_chat(&t, json!({"name": "Ωmega Team"})).await;
    let i18n = app.new_chat(&t, json!({"name": "季度复盘", "i18n_names": {"en_us": "Quarterly Review", "ja_jp": "四半期レビュー"}})).await;
    assert_eq!(search(&app, &t, "ärzte").await, [doctors.clone()]);
    assert_eq!(search(&app, &t, "ÄRZTE").await, [doctors.clone()]);
    assert_eq!(search(&app, &t, "ωMEGA").await, [omega.clone()]);
    assert_eq!(search(&app, &t, "quarterly review").await, [i18n.clone()]);
    assert_eq!(search(&app, &t, "レビュー").await, [i18n.clone()]);
    assert_eq!(search(&app, &t, "季度").await, [i18n.clone()]);
    // An update re-indexes.
    let r = app.call(Method::PUT, &format!("/open-apis/im/v1/chats/{omega}"), &t, Some(json!({"i18n_names": {"en_us": "Ökonomie"}}))).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    assert_eq!(search(&app, &t, "ökonomie").await, [omega.clone()]);
}

/// The tables of the deliveries migration (after the search column's).
/// Chats stored before the search column existed are found after the upgrade: the migration
/// that adds it backfills every row.
#[tokio::test]
async fn chats_stored_before_the_search_column_are_found_after_the_upgrade() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let old = app.new_chat(&t, json!({"name": "Ärzte alt", "i18n_names": {"en_us": "Legacy Board"}})).await;
    // Close the store (the state and the router hold it) but keep the data dir.
    let TestApp { data, state, router, .. } = app;
    drop((state, router));
    // Take the schema back to before the migration, as an older larkstack left it.
    match test_database() {
        None => {
            let conn = rusqlite::Connection::open(data.path().join("larkstack.db")).unwrap();
            conn.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
            // Later migrations' tables (0005: events and after) did not exist then either.
            for table in TABLES_AFTER_OUTBOX_COMPACTION.iter().chain(&["events"]) {
                conn.execute_batch(&format!("DROP TABLE {table};")).unwrap();
            }
            conn.execute_batch("ALTER TABLE chats DROP COLUMN search_text; PRAGMA user_version = 3;").unwrap();
        }
        Some(url) => {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            let schema = schema_for(data.path());
            let later = drop_tables_after_outbox_compaction();
            client
                .batch_execute(&format!(
                    "SET search_path = {schema}; DROP TABLE events, event_seq; {later} ALTER TABLE chats DROP COLUMN search_text;
                     DELETE FROM larkstack_migrations WHERE version >= 2;"
                ))
                .await
                .unwrap();
        }
    }
    let app = TestApp::on(data, Directory::demo(), StateConfig::default(), Default::default()).await;
    assert_eq!(search(&app, &t, "ärzte").await, [old.clone()]);
    assert_eq!(search(&app, &t, "legacy").await, [old.clone()]);
}

/// Another tenant's user into an internal chat: 232028, the members page's code (create-chat
/// keeps its seed's rules: an external member makes the chat external).
#[tokio::test]
async fn another_tenants_user_into_an_internal_chat_is_232028() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let o = |u: &str| app.open_id("demo-bot", u);
    let chat = app.new_chat(&t, json!({"owner_id": o("alice")})).await;
    let url = format!("/open-apis/im/v1/chats/{chat}/members");
    for succeed_type in ["", "?succeed_type=2"] {
        let r = app.call(Method::POST, &format!("{url}{succeed_type}"), &t, Some(json!({"id_list": [o("bob"), o("gina")]}))).await;
        assert_eq!(r.code(), 232028, "{}", r.body);
        assert_eq!(r.body["error"]["field_violations"][0]["value"], json!(o("gina")));
    }
    let r = app.call(Method::POST, &format!("{url}?succeed_type=1"), &t, Some(json!({"id_list": [o("bob"), o("gina")]}))).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    assert_eq!(r.body["data"]["invalid_id_list"], json!([o("gina")]));
    let stored = app.state.store.get_chat(&ChatId(chat.clone())).await.unwrap().unwrap();
    assert_eq!(stored.users.len(), 2, "alice and bob; gina never");
    // Create-chat with the same user still makes an external chat (seed page).
    let r = app.create(&t, "", json!({"owner_id": o("alice"), "user_id_list": [o("gina")]})).await;
    assert_eq!((r.code(), &r.body["data"]["external"]), (0, &json!(true)), "{}", r.body);
}

/// A p2p chat: GET leaves out what the page marks "not returned for p2p"; the member endpoints
/// answer 232090.
#[tokio::test]
async fn p2p_chats_hide_group_settings_and_refuse_member_changes() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let body = json!({"receive_id": app.open_id("demo-bot", "alice"), "msg_type": "text", "content": "{\"text\":\"hi\"}"});
    let r = app.call(Method::POST, "/open-apis/im/v1/messages?receive_id_type=open_id", &t, Some(body)).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let p2p = r.body["data"]["chat_id"].as_str().unwrap().to_string();
    let r = app.call(Method::GET, &format!("/open-apis/im/v1/chats/{p2p}"), &t, None).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let data = r.body["data"].as_object().unwrap();
    assert_eq!(data["chat_mode"], "p2p");
    for absent in [
        "add_member_permission",
        "share_card_permission",
        "at_all_permission",
        "chat_type",
        "join_message_visibility",
        "leave_message_visibility",
        "membership_approval",
        "owner_id",
    ] {
        assert!(!data.contains_key(absent), "{absent} in a p2p chat's view: {data:?}");
    }
    let group = app.new_chat(&t, json!({})).await;
    let r = app.call(Method::GET, &format!("/open-apis/im/v1/chats/{group}"), &t, None).await;
    for present in ["add_member_permission", "share_card_permission", "at_all_permission", "chat_type", "membership_approval"] {
        assert!(r.body["data"].get(present).is_some(), "{present} in a group chat's view");
    }
    let members = format!("/open-apis/im/v1/chats/{p2p}/members");
    let ids = json!({"id_list": [app.open_id("demo-bot", "bob")]});
    assert_eq!(app.call(Method::POST, &members, &t, Some(ids.clone())).await.code(), 232090);
    assert_eq!(app.call(Method::DELETE, &members, &t, Some(ids)).await.code(), 232090);
}

/// Group history needs `im:message.group_msg` on top of the read scope; p2p history does not.
#[tokio::test]
async fn group_history_needs_the_group_message_scope() {
    let fixture = DEMO_FIXTURE.replace(r#""im:message", "im:message.group_msg","#, r#""im:message","#);
    assert_ne!(fixture, DEMO_FIXTURE, "the demo bot holds im:message.group_msg");
    let app = TestApp::with(Directory::from_toml(&fixture).unwrap(), StateConfig::default()).await;
    let t = app.token("demo-bot").await;
    let group = app.new_chat(&t, json!({})).await;
    assert_eq!(send_text(&app, &t, &group, "hi").await.code(), 0);
    let list = |chat: &str| format!("/open-apis/im/v1/messages?container_id_type=chat&container_id={chat}");
    let r = app.call(Method::GET, &list(&group), &t, None).await;
    assert_eq!((r.status.as_u16(), r.code()), (400, 99991672), "{}", r.body);
    let violations = r.body["error"]["permission_violations"].to_string();
    assert!(violations.contains("im:message.group_msg"), "{violations}");
    // p2p history: the read scope is enough.
    let body = json!({"receive_id": app.open_id("demo-bot", "alice"), "msg_type": "text", "content": "{\"text\":\"hi\"}"});
    let r = app.call(Method::POST, "/open-apis/im/v1/messages?receive_id_type=open_id", &t, Some(body)).await;
    let p2p = r.body["data"]["chat_id"].as_str().unwrap().to_string();
    let r = app.call(Method::GET, &list(&p2p), &t, None).await;
    assert_eq!((r.code(), r.body["data"]["items"].as_array().map(Vec::len)), (0, Some(1)), "{}", r.body);
    // With the scope (the demo fixture), group history is readable.
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let group = app.new_chat(&t, json!({})).await;
    assert_eq!(send_text(&app, &t, &group, "hi").await.code(), 0);
    assert_eq!(app.call(Method::GET, &list(&group), &t, None).await.code(), 0);
}

/// A store app's token for one tenant can not write to a user of another tenant, so it never
/// reaches the p2p chat the app's other installation has with that user.
#[tokio::test]
async fn another_tenants_token_can_not_message_this_tenants_users() {
    let app = TestApp::with(store_app_fixture(), StateConfig::default()).await;
    let acme = store_token(&app, "acme").await;
    let globex = store_token(&app, "globex").await;
    let to_alice = |text: &str| {
        let content = json!({"text": text}).to_string();
        json!({"receive_id": app.open_id("store-app", "alice"), "msg_type": "text", "content": content})
    };
    let url = "/open-apis/im/v1/messages?receive_id_type=open_id";
    let r = app.call(Method::POST, url, &acme, Some(to_alice("hi alice"))).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let p2p = r.body["data"]["chat_id"].as_str().unwrap().to_string();
    let before = stored(&app, &p2p).await;
    let r = app.call(Method::POST, url, &globex, Some(to_alice("from globex"))).await;
    assert_eq!(r.code(), 230013, "{}", r.body);
    assert_eq!(stored(&app, &p2p).await, before);
    let list = format!("/open-apis/im/v1/messages?container_id_type=chat&container_id={p2p}");
    assert_eq!(app.call(Method::GET, &list, &globex, None).await.code(), 230002);
    assert_eq!(app.call(Method::GET, &format!("/open-apis/im/v1/chats/{p2p}"), &globex, None).await.code(), 232010);
    // The globex installation reaches globex's users.
    let body = json!({"receive_id": app.open_id("store-app", "hank"), "msg_type": "text", "content": "{\"text\":\"hi\"}"});
    let r = app.call(Method::POST, url, &globex, Some(body)).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    assert_ne!(r.body["data"]["chat_id"].as_str(), Some(p2p.as_str()));
}
