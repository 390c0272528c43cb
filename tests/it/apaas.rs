//! aPaaS: start a group chat from a user task (seed: apaas-user-task-chat-group.md) and the task query.

use axum::http::Method;
use larkstack::domain::ids::ChatId;
use serde_json::{json, Value};

use crate::support::*;

const LEAVE_TASK: &str = "1790000000000201"; // alice started it; bob is asked to act; carol is cc'd
const GLOBEX_TASK: &str = "1790000000000204";

fn chat_group_url(task: &str) -> String {
    format!("/open-apis/apaas/v1/user_tasks/{task}/chat_group")
}

impl TestApp {
    fn kunlun(&self, user_key: &str) -> String {
        self.dir.users().iter().find(|u| u.key == user_key).unwrap().kunlun_id.0.clone()
    }

    async fn chat_group(&self, token: &str, task: &str, body: Value) -> Reply {
        self.post_json(&chat_group_url(task), Some(token), &body).await
    }

    /// Member open_ids (as demo-bot sees them) of a chat, read through the IM API.
    async fn member_open_ids(&self, token: &str, chat_id: &str) -> Vec<String> {
        let r = self.call(Method::GET, &format!("/open-apis/im/v1/chats/{chat_id}/members"), token, None).await;
        assert_eq!(r.code(), 0, "{}", r.body);
        let mut ids: Vec<String> =
            r.body["data"]["items"].as_array().unwrap().iter().map(|m| m["member_id"].as_str().unwrap().to_string()).collect();
        ids.sort();
        ids
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The single field violation of a 2320001 answer.
fn violation(r: &Reply) -> (String, Option<String>) {
    assert_eq!((r.status.as_u16(), r.code()), (400, 2320001), "{}", r.body);
    assert_eq!(r.body["msg"], "param is invalid");
    assert!(r.body["error"]["log_id"].as_str().is_some_and(|l| !l.is_empty()));
    let v = &r.body["error"]["field_violations"][0];
    (v["field"].as_str().unwrap().to_string(), v["value"].as_str().map(str::to_string))
}

#[tokio::test]
async fn new_chat_owned_by_the_operator_with_invitees_and_the_bot() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let o = |u: &str| app.open_id("demo-bot", u);
    let r = app
        .chat_group(&t, LEAVE_TASK, json!({"operator_user_id": app.kunlun("alice"), "invite_user_ids": [app.kunlun("bob"), app.kunlun("carol")]}))
        .await;
    assert_eq!((r.status.as_u16(), r.code()), (200, 0), "{}", r.body);
    assert_eq!(r.body["msg"], "success");
    let chat_id = r.chat_id();
    assert!(chat_id.starts_with("oc_"));

    let got = app.call(Method::GET, &format!("/open-apis/im/v1/chats/{chat_id}"), &t, None).await;
    assert_eq!(got.code(), 0, "{}", got.body);
    assert_eq!(got.body["data"]["name"], "请假申请：Alice 王 3 天", "named after the task's label");
    assert_eq!(got.body["data"]["owner_id"], o("alice"));
    assert_eq!(got.body["data"]["bot_count"], "1", "the calling app's bot is in it");
    assert_eq!(app.member_open_ids(&t, &chat_id).await, sorted(vec![o("alice"), o("bob"), o("carol")]));

    let links = app.state.store.task_chats(LEAVE_TASK).await.unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!((links[0].chat_id.0.as_str(), links[0].started_here), (chat_id.as_str(), true));
}

#[tokio::test]
async fn chat_name_and_repeat_calls_reuse_the_tasks_chat() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let o = |u: &str| app.open_id("demo-bot", u);
    let first = app
        .chat_group(&t, LEAVE_TASK, json!({"operator_user_id": app.kunlun("bob"), "chat_name": "请假沟通", "invite_user_ids": [app.kunlun("alice")]}))
        .await;
    assert_eq!(first.code(), 0, "{}", first.body);
    let chat_id = first.chat_id();
    let got = app.call(Method::GET, &format!("/open-apis/im/v1/chats/{chat_id}"), &t, None).await;
    assert_eq!(got.body["data"]["name"], "请假沟通");
    assert_eq!(got.body["data"]["owner_id"], o("bob"));

    // Without invitees, and again with one more: the same chat, which gains erin.
    let again = app.chat_group(&t, LEAVE_TASK, json!({"operator_user_id": app.kunlun("bob")})).await;
    assert_eq!(again.chat_id(), chat_id);
    let more = app.chat_group(&t, LEAVE_TASK, json!({"operator_user_id": app.kunlun("bob"), "invite_user_ids": [app.kunlun("erin"), app.kunlun("alice")]})).await;
    assert_eq!(more.chat_id(), chat_id, "{}", more.body);
    assert_eq!(app.member_open_ids(&t, &chat_id).await, sorted(vec![o("alice"), o("bob"), o("erin")]));

    // Once that chat is disbanded, the next call starts a new one.
    assert_eq!(app.call(Method::DELETE, &format!("/open-apis/im/v1/chats/{chat_id}"), &t, None).await.code(), 0);
    let fresh = app.chat_group(&t, LEAVE_TASK, json!({"operator_user_id": app.kunlun("bob")})).await;
    assert_eq!(fresh.code(), 0, "{}", fresh.body);
    assert_ne!(fresh.chat_id(), chat_id);
    let links = app.state.store.task_chats(LEAVE_TASK).await.unwrap();
    assert_eq!(links.iter().filter(|l| l.started_here).count(), 2);
}

#[tokio::test]
async fn concurrent_first_calls_start_one_chat() {
    let app = std::sync::Arc::new(TestApp::demo().await);
    let t = app.token("demo-bot").await;
    let calls = (0..8).map(|_| {
        let (app, t) = (app.clone(), t.clone());
        tokio::spawn(async move {
            app.chat_group(&t, LEAVE_TASK, json!({"operator_user_id": app.kunlun("alice")})).await.chat_id()
        })
    });
    let ids: std::collections::HashSet<String> = futures_join(calls).await;
    assert_eq!(ids.len(), 1, "{ids:?}");
}

async fn futures_join(handles: impl Iterator<Item = tokio::task::JoinHandle<String>>) -> std::collections::HashSet<String> {
    let mut out = std::collections::HashSet::new();
    for h in handles {
        out.insert(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn existing_chat_gains_the_invitees() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let o = |u: &str| app.open_id("demo-bot", u);
    let chat_id = app.new_chat(&t, json!({"owner_id": o("alice"), "user_id_list": [o("bob")]})).await;
    let r = app
        .chat_group(
            &t,
            LEAVE_TASK,
            json!({"operator_user_id": app.kunlun("alice"), "chat_id": chat_id, "chat_name": "ignored", "invite_user_ids": [app.kunlun("bob"), app.kunlun("carol")]}),
        )
        .await;
    assert_eq!(r.code(), 0, "{}", r.body);
    assert_eq!(r.chat_id(), chat_id);
    assert_eq!(app.member_open_ids(&t, &chat_id).await, sorted(vec![o("alice"), o("bob"), o("carol")]), "bob not twice");
    let got = app.call(Method::GET, &format!("/open-apis/im/v1/chats/{chat_id}"), &t, None).await;
    assert_eq!(got.body["data"]["name"], "(无主题)", "chat_name only names new chats");
    let links = app.state.store.task_chats(LEAVE_TASK).await.unwrap();
    assert_eq!((links[0].chat_id.0.as_str(), links[0].started_here), (chat_id.as_str(), false));

    // The operator must be in the chat, and an owner/manager where only they may add people.
    let r = app.chat_group(&t, LEAVE_TASK, json!({"operator_user_id": app.kunlun("carol"), "chat_id": chat_id, "invite_user_ids": [app.kunlun("erin")]})).await;
    assert_eq!(r.code(), 0, "carol is a member now and anyone may add: {}", r.body);
    let other = app.new_chat(&t, json!({"owner_id": o("bob")})).await;
    let r = app.chat_group(&t, LEAVE_TASK, json!({"operator_user_id": app.kunlun("alice"), "chat_id": other, "invite_user_ids": [app.kunlun("erin")]})).await;
    assert_eq!(violation(&r), ("chat_id".into(), Some(other.clone())));
    let only_owner = app.new_chat(&t, json!({"owner_id": o("bob"), "user_id_list": [o("alice")]})).await;
    let put = app.call(Method::PUT, &format!("/open-apis/im/v1/chats/{only_owner}"), &t, Some(json!({"add_member_permission": "only_owner"}))).await;
    assert_eq!(put.code(), 0, "{}", put.body);
    let r = app.chat_group(&t, LEAVE_TASK, json!({"operator_user_id": app.kunlun("alice"), "chat_id": only_owner, "invite_user_ids": [app.kunlun("erin")]})).await;
    assert_eq!(violation(&r).0, "chat_id");
    let r = app.chat_group(&t, LEAVE_TASK, json!({"operator_user_id": app.kunlun("bob"), "chat_id": only_owner, "invite_user_ids": [app.kunlun("erin")]})).await;
    assert_eq!(r.code(), 0, "the owner may: {}", r.body);
}

#[tokio::test]
async fn every_invalid_input_is_2320001_naming_the_field() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let k = |u: &str| app.kunlun(u);
    let op = k("alice");
    let cases: Vec<(&str, Value, &str)> = vec![
        (LEAVE_TASK, json!({}), "operator_user_id"),
        (LEAVE_TASK, json!({"operator_user_id": ""}), "operator_user_id"),
        (LEAVE_TASK, json!({"operator_user_id": "1000000000000001"}), "operator_user_id"),
        (LEAVE_TASK, json!({"operator_user_id": k("dave")}), "operator_user_id"), // resigned
        (LEAVE_TASK, json!({"operator_user_id": k("erin")}), "operator_user_id"), // not on the task
        (LEAVE_TASK, json!({"operator_user_id": k("gina")}), "operator_user_id"), // another tenant's Kunlun ID
        ("1790000000009999", json!({"operator_user_id": op}), "task_id"),
        (GLOBEX_TASK, json!({"operator_user_id": op}), "task_id"),
        ("not-a-task", json!({"operator_user_id": op}), "task_id"),
        (LEAVE_TASK, json!({"operator_user_id": op, "invite_user_ids": []}), "invite_user_ids"),
        (LEAVE_TASK, json!({"operator_user_id": op, "invite_user_ids": vec![k("bob"); 21]}), "invite_user_ids"),
        (LEAVE_TASK, json!({"operator_user_id": op, "invite_user_ids": ["1000000000000001"]}), "invite_user_ids"),
        (LEAVE_TASK, json!({"operator_user_id": op, "invite_user_ids": [k("dave")]}), "invite_user_ids"),
        (LEAVE_TASK, json!({"operator_user_id": op, "invite_user_ids": [k("hank")]}), "invite_user_ids"),
        (LEAVE_TASK, json!({"operator_user_id": op, "invite_user_ids": "1234"}), "invite_user_ids"),
        (LEAVE_TASK, json!({"operator_user_id": op, "chat_id": "oc_00000000000000000000000000000000"}), "chat_id"),
        (LEAVE_TASK, json!({"operator_user_id": op, "chat_name": "含有违禁词的群"}), "chat_name"), // tenant review
    ];
    for (task, body, field) in cases {
        let r = app.chat_group(&t, task, body.clone()).await;
        assert_eq!(violation(&r).0, field, "{task} {body}");
    }
    // 20 invitees is the top of the range.
    let many: Vec<String> = ["bob", "carol", "erin"].iter().map(|u| k(u)).cycle().take(20).collect();
    assert_eq!(app.chat_group(&t, LEAVE_TASK, json!({"operator_user_id": op, "invite_user_ids": many})).await.code(), 0);

    // Malformed JSON is the same error, naming the body.
    let r = app
        .request(
            Method::POST,
            &chat_group_url(LEAVE_TASK),
            &[("authorization", &format!("Bearer {t}")), ("content-type", "application/json")],
            Some(b"not json"),
        )
        .await;
    assert_eq!(violation(&r).0, "body");

    // A disbanded chat and another tenant's chat.
    let o = |u: &str| app.open_id("demo-bot", u);
    let gone = app.new_chat(&t, json!({"owner_id": o("alice")})).await;
    assert_eq!(app.call(Method::DELETE, &format!("/open-apis/im/v1/chats/{gone}"), &t, None).await.code(), 0);
    let r = app.chat_group(&t, LEAVE_TASK, json!({"operator_user_id": op, "chat_id": gone})).await;
    assert_eq!(violation(&r), ("chat_id".into(), Some(gone)));
    let globex = app.token("globex-bot").await;
    let foreign = app.new_chat(&globex, json!({})).await;
    let r = app.chat_group(&t, LEAVE_TASK, json!({"operator_user_id": op, "chat_id": foreign})).await;
    assert_eq!(violation(&r).0, "chat_id");

    // Several bad fields are all named, and nothing was stored by any refusal.
    let r = app.chat_group(&t, GLOBEX_TASK, json!({"invite_user_ids": ["1"]})).await;
    let fields: Vec<&str> = r.body["error"]["field_violations"].as_array().unwrap().iter().map(|v| v["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["task_id", "operator_user_id", "invite_user_ids"]);
    let links = app.state.store.task_chats(LEAVE_TASK).await.unwrap();
    assert_eq!(links.len(), 1, "only the 20-invitee call linked a chat");
    assert!(app.state.store.get_chat(&ChatId(foreign)).await.unwrap().unwrap().users.is_empty());
}

#[tokio::test]
async fn only_self_built_apps_with_the_scope_and_a_token() {
    let app = TestApp::demo().await;
    let body = json!({"operator_user_id": app.kunlun("alice")});
    let r = app.post_json(&chat_group_url(LEAVE_TASK), None, &body).await;
    assert_eq!((r.status.as_u16(), r.code()), (400, 99991661));
    let r = app.post_json(&chat_group_url(LEAVE_TASK), Some("t-g1040bogus"), &body).await;
    assert_eq!(r.code(), 99991663);
    for app_key in ["helper-bot", "store-app"] {
        let t = app.token(app_key).await;
        let r = app.chat_group(&t, LEAVE_TASK, body.clone()).await;
        assert_eq!(r.code(), 99991672, "{app_key}");
        assert_eq!(r.body["error"]["permission_violations"][0]["subject"], "app_engine:approval:write");
        let q = app.post_json("/open-apis/apaas/v1/user_task/query", Some(&t), &json!({"kunlun_user_id": app.kunlun("alice")})).await;
        assert_eq!(q.code(), 99991672, "{app_key}");
    }
}

#[tokio::test]
async fn a_hundred_per_minute_per_app() {
    let app = TestApp::demo().await;
    app.state.clock.freeze();
    app.state.clock.set_ms(1_800_000_000_000 - 1_800_000_000_000 % 60_000);
    let t = app.token("demo-bot").await;
    // Refused calls count too: the budget is taken before the body is read.
    for i in 0..100 {
        let r = app.chat_group(&t, "1", json!({})).await;
        assert_eq!(r.code(), 2320001, "call {i}");
    }
    let r = app.chat_group(&t, LEAVE_TASK, json!({"operator_user_id": app.kunlun("alice")})).await;
    assert_eq!((r.status.as_u16(), r.code()), (400, 99991400));
    assert_eq!(r.headers["x-ogw-ratelimit-limit"], "100");
    // The query has its own budget; the next minute restores this one.
    let q = app.post_json("/open-apis/apaas/v1/user_task/query", Some(&t), &json!({"kunlun_user_id": app.kunlun("alice")})).await;
    assert_eq!(q.code(), 0);
    app.state.clock.advance_ms(60_000);
    let r = app.chat_group(&t, LEAVE_TASK, json!({"operator_user_id": app.kunlun("alice")})).await;
    assert_eq!(r.code(), 0, "{}", r.body);
}

#[tokio::test]
async fn query_answers_the_documented_shapes() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    let url = "/open-apis/apaas/v1/user_task/query";
    let r = app.post_json(url, Some(&t), &json!({"kunlun_user_id": app.kunlun("alice"), "limit": "2"})).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let data = &r.body["data"];
    assert_eq!(data["count"], "3", "alice started one task, is asked on another and one archived; globex's is not hers");
    let tasks = data["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    assert_eq!(tasks[0]["task_id"], "1790000000000202", "newest first");
    assert_eq!(tasks[0]["task_start_time"], "1795100000000");
    assert_eq!(tasks[0]["workflow_instance"]["id"], "1790000000000102");
    assert_eq!(tasks[0]["workflow_instance"]["status"], "in_process");
    assert_eq!(tasks[0]["workflow_instance"]["label"], json!([{"language_code": "2052", "text": "采购申请：笔记本电脑 2 台"}, {"language_code": "1033", "text": "Purchase: 2 laptops"}]));
    assert_eq!(tasks[0]["initiator"], json!({"user_id": app.kunlun("bob"), "name": "Bob 李"}));
    assert_eq!(tasks[0]["summarys"][0]["file_key"], json!({"language_code": "2052", "text": "金额"}));
    let page2 = app.post_json(url, Some(&t), &json!({"kunlun_user_id": app.kunlun("alice"), "limit": "2", "offset": "2"})).await;
    assert_eq!(page2.body["data"]["tasks"][0]["task_id"], "1790000000000203");

    let only = |body: Value| {
        let app = &app;
        let t = t.clone();
        async move {
            let r = app.post_json(url, Some(&t), &body).await;
            assert_eq!(r.code(), 0, "{}", r.body);
            r.body["data"]["tasks"].as_array().unwrap().iter().map(|t| t["task_id"].as_str().unwrap().to_string()).collect::<Vec<_>>()
        }
    };
    let alice = app.kunlun("alice");
    assert_eq!(only(json!({"kunlun_user_id": alice, "source": "fromMe"})).await, ["1790000000000201"]);
    assert_eq!(only(json!({"kunlun_user_id": alice, "source": "assignMe", "type": "pending"})).await, ["1790000000000202"]);
    assert_eq!(only(json!({"kunlun_user_id": alice, "type": "archived"})).await, ["1790000000000203"]);
    assert_eq!(only(json!({"kunlun_user_id": app.kunlun("carol"), "source": "CCMe"})).await, ["1790000000000201"]);
    assert_eq!(only(json!({"kunlun_user_id": alice, "api_ids": ["package_acme__c__expense"]})).await, ["1790000000000203"]);
    assert_eq!(
        only(json!({"kunlun_user_id": alice, "start_time": "1794500000000", "end_time": "1795050000000"})).await,
        ["1790000000000201"]
    );
    assert!(only(json!({"kunlun_user_id": app.kunlun("erin")})).await.is_empty());

    for (body, field) in [
        (json!({}), "kunlun_user_id"),
        (json!({"kunlun_user_id": app.kunlun("gina")}), "kunlun_user_id"),
        (json!({"kunlun_user_id": alice, "type": "done"}), "type"),
        (json!({"kunlun_user_id": alice, "source": "all"}), "source"),
        (json!({"kunlun_user_id": alice, "limit": "0"}), "limit"),
        (json!({"kunlun_user_id": alice, "limit": "51"}), "limit"),
        (json!({"kunlun_user_id": alice, "offset": "-1"}), "offset"),
        (json!({"kunlun_user_id": alice, "start_time": "yesterday"}), "start_time"),
        (json!({"kunlun_user_id": alice, "api_ids": []}), "api_ids"),
        (json!({"kunlun_user_id": alice, "limit": 5}), "limit"),
    ] {
        let r = app.post_json(url, Some(&t), &body).await;
        assert_eq!(violation(&r).0, field, "{body}");
    }
}

#[tokio::test]
async fn users_outside_the_apps_availability_are_invalid() {
    let fixture = r#"
[[tenants]]
key = "t"
[[apps]]
key = "narrow"
tenant = "t"
scopes = ["app_engine:approval:write"]
availability = ["ann", "ben"]
[[users]]
key = "ann"
tenant = "t"
[[users]]
key = "ben"
tenant = "t"
[[users]]
key = "cat"
tenant = "t"
[[workflows]]
key = "w"
tenant = "t"
initiator = "ann"
[[tasks]]
key = "task"
workflow = "w"
assignees = ["ben", "cat"]
start_time_ms = 1
"#;
    let dir = larkstack::domain::directory::Directory::from_toml(fixture).unwrap();
    let task = dir.apaas().tasks[0].task_id.clone();
    let app = TestApp::with(dir, larkstack::state::StateConfig::default()).await;
    let t = app.token("narrow").await;
    let r = app.chat_group(&t, &task, json!({"operator_user_id": app.kunlun("ann"), "invite_user_ids": [app.kunlun("cat")]})).await;
    assert_eq!(violation(&r), ("invite_user_ids".into(), Some(app.kunlun("cat"))));
    let r = app.chat_group(&t, &task, json!({"operator_user_id": app.kunlun("cat")})).await;
    assert_eq!(violation(&r).0, "operator_user_id");
    let r = app.chat_group(&t, &task, json!({"operator_user_id": app.kunlun("ann"), "invite_user_ids": [app.kunlun("ben")]})).await;
    assert_eq!(r.code(), 0, "{}", r.body);
}
