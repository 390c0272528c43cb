use larkstack::domain::chat::Owner;
use larkstack::domain::directory::Directory;
use larkstack::domain::ids::ChatId;
use serde_json::{json, Value};

use crate::support::*;

/// Every field of the seed's response body, with its JSON type.
const RESPONSE_FIELDS: &[(&str, &str)] = &[
    ("chat_id", "string"),
    ("avatar", "string"),
    ("name", "string"),
    ("description", "string"),
    ("i18n_names", "object"),
    ("urgent_setting", "string"),
    ("video_conference_setting", "string"),
    ("add_member_permission", "string"),
    ("share_card_permission", "string"),
    ("at_all_permission", "string"),
    ("edit_permission", "string"),
    ("group_message_type", "string"),
    ("chat_mode", "string"),
    ("chat_type", "string"),
    ("chat_tag", "string"),
    ("external", "bool"),
    ("tenant_key", "string"),
    ("join_message_visibility", "string"),
    ("leave_message_visibility", "string"),
    ("membership_approval", "string"),
    ("moderation_permission", "string"),
    ("restricted_mode_setting", "object"),
    ("hide_member_count_setting", "string"),
];

fn has_type(v: &Value, t: &str) -> bool {
    match t {
        "string" => v.is_string(),
        "bool" => v.is_boolean(),
        "object" => v.is_object(),
        _ => false,
    }
}

#[tokio::test]
async fn full_request_round_trips_into_the_seed_response() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let alice = app.open_id("demo-bot", "alice");
    let bob = app.open_id("demo-bot", "bob");
    let body = json!({
        "avatar": "default-avatar_44ae0ca3-e140-494b-956f-78091e348435",
        "name": "测试群名称",
        "description": "测试群描述",
        "i18n_names": {"zh_cn": "群聊", "en_us": "group chat", "ja_jp": "グループチャット"},
        "owner_id": alice,
        "user_id_list": [alice, bob, bob],
        "bot_id_list": [app.app_id("helper-bot"), DEMO_APP_ID],
        "group_message_type": "thread",
        "chat_mode": "group",
        "chat_type": "public",
        "join_message_visibility": "only_owner",
        "leave_message_visibility": "not_anyone",
        "membership_approval": "approval_required",
        "restricted_mode_setting": {"status": true, "screenshot_has_permission_setting": "not_anyone",
            "download_has_permission_setting": "all_members", "message_has_permission_setting": "not_anyone"},
        "urgent_setting": "only_owner",
        "video_conference_setting": "only_owner",
        "edit_permission": "only_owner",
        "hide_member_count_setting": "only_owner",
        "labels": ["vip"]
    });
    let r = app.create(&t, "?user_id_type=open_id&set_bot_manager=true&uuid=u-1", body).await;
    assert_eq!((r.status.as_u16(), r.code()), (200, 0), "{}", r.body);
    assert_eq!(r.body["msg"], "success");
    let d = &r.body["data"];
    for (field, ty) in RESPONSE_FIELDS {
        assert!(has_type(&d[field], ty), "{field} should be a {ty}: {d}");
    }
    assert!(d["chat_id"].as_str().unwrap().starts_with("oc_"));
    assert!(d["avatar"].as_str().unwrap().starts_with("https://"));
    assert_eq!(d["name"], "测试群名称");
    assert_eq!(d["i18n_names"]["ja_jp"], "グループチャット");
    assert_eq!(d["owner_id"], alice.as_str());
    assert_eq!(d["owner_id_type"], "open_id");
    assert_eq!(d["group_message_type"], "thread");
    assert_eq!(d["chat_type"], "public");
    assert_eq!(d["chat_tag"], "inner");
    assert_eq!(d["external"], false);
    assert_eq!(d["tenant_key"], "736588c9260f175e");
    assert_eq!(d["join_message_visibility"], "only_owner");
    assert_eq!(d["leave_message_visibility"], "not_anyone");
    assert_eq!(d["membership_approval"], "approval_required");
    assert_eq!(d["restricted_mode_setting"]["status"], true);
    assert_eq!(d["restricted_mode_setting"]["screenshot_has_permission_setting"], "not_anyone");
    assert_eq!(d["urgent_setting"], "only_owner");
    assert_eq!(d["edit_permission"], "only_owner");
    assert_eq!(d["hide_member_count_setting"], "only_owner");
    assert_eq!(d["labels"], json!(["vip"]));
    assert_eq!(d["add_member_permission"], "all_members");
    assert_eq!(d["share_card_permission"], "allowed");

    // What was stored: owner and members (deduplicated), the creating bot and the invited one.
    let chat = app.state.store.get_chat(&ChatId(r.chat_id())).await.unwrap().unwrap();
    let uid = |k: &str| app.dir.users().iter().find(|u| u.key == k).unwrap().uid.clone();
    assert_eq!(chat.users, vec![uid("alice"), uid("bob")]);
    assert_eq!(chat.bots.iter().map(|b| b.0.clone()).collect::<Vec<_>>(), vec![DEMO_APP_ID.to_string(), app.app_id("helper-bot")]);
    assert_eq!(chat.owner, Owner::User(uid("alice")));
    assert_eq!(chat.bot_managers.len(), 1, "set_bot_manager makes the creating bot a manager");
}

#[tokio::test]
async fn bot_owned_private_chat_defaults() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let r = app.create(&t, "?set_bot_manager=True", json!({})).await;
    assert_eq!(r.code(), 0);
    let d = &r.body["data"];
    assert_eq!(d["name"], "(无主题)");
    assert_eq!(d["chat_type"], "private");
    assert_eq!(d["chat_mode"], "group");
    assert_eq!(d["group_message_type"], "chat");
    assert_eq!(d["description"], "");
    assert!(d.get("owner_id").is_none() && d.get("owner_id_type").is_none(), "bot owner is not returned: {d}");
    assert_eq!(d["restricted_mode_setting"]["status"], false);
    for field in ["urgent_setting", "video_conference_setting", "edit_permission", "hide_member_count_setting", "join_message_visibility"] {
        assert_eq!(d[field], "all_members", "{field}");
    }
    let chat = app.state.store.get_chat(&ChatId(r.chat_id())).await.unwrap().unwrap();
    assert!(chat.users.is_empty());
    assert!(chat.bot_managers.is_empty(), "set_bot_manager only applies to a user owner");
    assert!(matches!(chat.owner, Owner::Bot(_)));
}

#[tokio::test]
async fn user_id_types_resolve_and_echo() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let alice = app.dir.users().iter().find(|u| u.key == "alice").unwrap().clone();
    let r = app.create(&t, "?user_id_type=user_id", json!({"owner_id": alice.user_id.0})).await;
    assert_eq!(r.body["data"]["owner_id"], alice.user_id.0.as_str());
    assert_eq!(r.body["data"]["owner_id_type"], "user_id");
    let union = app.dir.union_id("acme-dev", &alice).0;
    let r = app.create(&t, "?user_id_type=union_id", json!({"owner_id": union})).await;
    assert_eq!(r.body["data"]["owner_id"], union.as_str());
    // Another app's open_id does not resolve for this app.
    let foreign = app.open_id("helper-bot", "alice");
    assert_eq!(app.create(&t, "", json!({"owner_id": foreign})).await.code(), 232030);
    let r = app.create(&t, "?user_id_type=email", json!({})).await;
    assert_eq!(r.code(), 232001);
    assert_eq!(r.body["error"]["field_violations"][0]["field"], "user_id_type");
}

#[tokio::test]
async fn external_chat_with_a_friend_of_the_owner() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let r = app
        .create(&t, "", json!({"owner_id": app.open_id("demo-bot", "alice"), "user_id_list": [app.open_id("demo-bot", "gina")]}))
        .await;
    assert_eq!(r.code(), 0, "{}", r.body);
    assert_eq!(r.body["data"]["external"], true);
    assert!(r.body["data"].get("chat_tag").is_none());
}

struct Case {
    what: &'static str,
    app: &'static str,
    query: &'static str,
    body: Value,
    code: i64,
}

/// Every code in the seed's error table that larkstack can produce (232019 cannot: docs/parity.md).
#[tokio::test]
async fn every_seed_error_code_is_reachable() {
    let app = TestApp::demo().await;
    let o = |a: &str, u: &str| app.open_id(a, u);
    let many: Vec<String> = (0..51).map(|i| format!("ou_{i}")).collect();
    let cases = vec![
        Case { what: "too many users", app: "demo-bot", query: "", body: json!({"user_id_list": many}), code: 232001 },
        Case { what: "too many bots", app: "demo-bot", query: "", body: json!({"bot_id_list": ["a","b","c","d","e","f"]}), code: 232001 },
        Case { what: "uuid > 50", app: "demo-bot", query: "?uuid=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", body: json!({}), code: 232001 },
        Case { what: "bad enum", app: "demo-bot", query: "", body: json!({"chat_type": "secret"}), code: 232001 },
        Case { what: "bad bool", app: "demo-bot", query: "?set_bot_manager=maybe", body: json!({}), code: 232001 },
        Case { what: "wrong type", app: "demo-bot", query: "", body: json!({"user_id_list": "ou_x"}), code: 232001 },
        Case { what: "restricted on, all allowed", app: "demo-bot", query: "", body: json!({"restricted_mode_setting": {"status": true}}), code: 232001 },
        Case { what: "store app with user_id", app: "store-app", query: "?user_id_type=user_id", body: json!({}), code: 232001 },
        Case { what: "public name too short", app: "demo-bot", query: "", body: json!({"chat_type": "public", "name": "仅"}), code: 232020 },
        Case { what: "unknown bot", app: "demo-bot", query: "", body: json!({"bot_id_list": ["cli_0000000000000000"]}), code: 232021 },
        Case { what: "bot without bot ability", app: "demo-bot", query: "", body: json!({"bot_id_list": [app.app_id("no-bot-app")]}), code: 232021 },
        Case { what: "resigned member", app: "demo-bot", query: "", body: json!({"user_id_list": [o("demo-bot", "dave")]}), code: 232022 },
        Case { what: "resigned owner", app: "demo-bot", query: "", body: json!({"owner_id": o("demo-bot", "dave")}), code: 232022 },
        Case { what: "blocked word in name", app: "demo-bot", query: "", body: json!({"name": "含违禁词"}), code: 232023 },
        Case { what: "blocked word in description", app: "demo-bot", query: "", body: json!({"description": "a forbidden-word b"}), code: 232023 },
        Case { what: "blocked word in i18n name", app: "demo-bot", query: "", body: json!({"i18n_names": {"en_us": "forbidden-word"}}), code: 232023 },
        Case { what: "no bot ability", app: "no-bot-app", query: "", body: json!({}), code: 232025 },
        Case { what: "unknown owner", app: "demo-bot", query: "", body: json!({"owner_id": "ou_doesnotexist"}), code: 232030 },
        Case { what: "owner of another tenant", app: "demo-bot", query: "", body: json!({"owner_id": o("demo-bot", "hank")}), code: 232032 },
        Case { what: "external without capability", app: "helper-bot", query: "", body: json!({"user_id_list": [o("helper-bot", "gina")]}), code: 232033 },
        Case { what: "app disabled in tenant", app: "disabled-app", query: "", body: json!({}), code: 232034 },
        Case { what: "labels without scope", app: "helper-bot", query: "", body: json!({"labels": ["x"]}), code: 232037 },
        Case { what: "public without name", app: "demo-bot", query: "", body: json!({"chat_type": "public", "name": " "}), code: 232042 },
        Case { what: "unknown member", app: "demo-bot", query: "", body: json!({"user_id_list": ["ou_doesnotexist"]}), code: 232043 },
        Case { what: "member invisible to app", app: "narrow-app", query: "", body: json!({"user_id_list": [o("narrow-app", "carol")]}), code: 232043 },
        Case { what: "external not owner's friend", app: "demo-bot", query: "", body: json!({"owner_id": o("demo-bot", "bob"), "user_id_list": [o("demo-bot", "gina")]}), code: 232043 },
        Case { what: "bot not installed here", app: "demo-bot", query: "", body: json!({"bot_id_list": [app.app_id("globex-bot")]}), code: 232043 },
        Case { what: "restricted mode not entitled", app: "globex-bot", query: "", body: json!({"restricted_mode_setting": {"status": true, "message_has_permission_setting": "not_anyone"}}), code: 232057 },
        Case { what: "public external", app: "demo-bot", query: "", body: json!({"chat_type": "public", "name": "外部群", "owner_id": o("demo-bot", "alice"), "user_id_list": [o("demo-bot", "gina")]}), code: 232069 },
        Case { what: "hide count not entitled", app: "globex-bot", query: "", body: json!({"hide_member_count_setting": "only_owner"}), code: 232078 },
        Case { what: "hide count on external", app: "demo-bot", query: "", body: json!({"hide_member_count_setting": "only_owner", "owner_id": o("demo-bot", "alice"), "user_id_list": [o("demo-bot", "gina")]}), code: 232079 },
        Case { what: "public not allowed", app: "globex-bot", query: "", body: json!({"chat_type": "public", "name": "公开群"}), code: 232091 },
        Case { what: "ocic tag without scope", app: "demo-bot", query: "", body: json!({"chat_tags": ["ocic"]}), code: 232095 },
    ];
    for case in cases {
        let t = app.token(case.app).await;
        let r = app.create(&t, case.query, case.body).await;
        assert_eq!((r.status.as_u16(), r.code()), (400, case.code), "{}: {}", case.what, r.body);
        assert!(r.body["msg"].as_str().is_some_and(|m| !m.is_empty()), "{}", case.what);
        assert_eq!(r.body["error"]["log_id"], r.headers["x-tt-logid"].to_str().unwrap(), "{}", case.what);
    }
    assert_eq!(app.state.store.count_chats().await.unwrap(), 0, "no failed request stored a chat");
}

#[tokio::test]
async fn app_removed_after_its_token_was_issued_is_232004() {
    let app = TestApp::demo().await;
    let t = app.token("helper-bot").await;
    let without_helper = larkstack::domain::directory::DEMO_FIXTURE.replace("key = \"helper-bot\"", "key = \"renamed\"");
    app.state.replace_directory(Directory::from_toml(&without_helper).unwrap());
    let r = app.create(&t, "", json!({})).await;
    assert_eq!((r.status.as_u16(), r.code()), (400, 232004));
}

#[tokio::test]
async fn duplicate_while_the_first_is_in_flight_is_232068() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let key = larkstack::store::DedupKey {
        tenant_key: larkstack::domain::ids::TenantKey("736588c9260f175e".into()),
        app_id: larkstack::domain::ids::AppId(DEMO_APP_ID.into()),
        uuid: "busy".into(),
        owner: String::new(),
    };
    let held = larkstack::state::InFlight::claim(&app.state, key).await.unwrap().unwrap();
    let r = app.create(&t, "?uuid=busy", json!({})).await;
    assert_eq!((r.status.as_u16(), r.code()), (400, 232068));
    held.release().await;
    assert_eq!(app.create(&t, "?uuid=busy", json!({})).await.code(), 0);
    assert_eq!(app.state.store.count_chats().await.unwrap(), 1);
}
