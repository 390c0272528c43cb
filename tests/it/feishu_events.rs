//! Feishu event payloads (`domain::feishu_events`): the control API's "a user opens the bot's
//! p2p chat", and the golden payload files `tests/sdk/test_event_payloads.py` feeds to the
//! official Python SDK (regenerate them with `LARKSTACK_BLESS=1`).

use std::path::PathBuf;

use axum::http::Method;
use serde_json::{json, Value};

use larkstack::domain::chat::{Chat, ChatSettings, ChatStatus, Owner};
use larkstack::domain::directory::Directory;
use larkstack::domain::events::{
    chat_changes, message_recalled, message_sent, messages_read, parse_mentions, reaction_changed, resolve_mentions, Actor,
    DomainEvent, EventBody, StoredEvent,
};
use larkstack::domain::feishu_events::{app_events, AppEvent, ChatFacts};
use larkstack::domain::ids::{AppId, ChatId, MessageId, TenantKey};
use larkstack::domain::message::{Message, RecallType, Sender};
use larkstack::domain::reaction::Reaction;
use larkstack::state::StateConfig;

use crate::support::*;

impl TestApp {
    async fn as_admin(&self, method: Method, uri: &str, body: Option<Value>) -> Reply {
        let token = self.state.admin_token.clone();
        self.call(method, uri, &token, body).await
    }
}

const ENTERED: &str = "im.chat.access_event.bot_p2p_chat_entered_v1";

/// The demo directory, with demo-bot holding the access-event scope.
fn demo_with_access_scope() -> Directory {
    let text = larkstack::domain::directory::DEMO_FIXTURE.replacen(
        "scopes = [\"im:chat\", \"im:chat:create\",",
        "scopes = [\"im:chat.access_event.bot_p2p_chat:read\", \"im:chat\", \"im:chat:create\",",
        1,
    );
    assert_ne!(text, larkstack::domain::directory::DEMO_FIXTURE);
    Directory::from_toml(&text).unwrap()
}

#[tokio::test]
async fn entering_a_bots_p2p_chat_creates_it_and_records_the_event() {
    let app = TestApp::with(demo_with_access_scope(), StateConfig::default()).await;
    let bot = app.app_id("demo-bot");
    let r = app.as_admin(Method::POST, &format!("/_larkstack/users/alice/p2p/{bot}/enter"), None).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    assert_eq!(r.body["data"]["created"], true);
    let chat_id = r.body["data"]["chat_id"].as_str().unwrap().to_string();
    let events = app.state.store.events(larkstack::store::EventQuery { limit: 100, ..Default::default() }).await.unwrap();
    let types: Vec<&str> = events.iter().map(|e| e.event.type_name()).collect();
    assert_eq!(types, ["larkstack.chat.created_v1", ENTERED]);

    // The bot writes; the same p2p chat is used, and entering again names that message.
    let t = app.token("demo-bot").await;
    let body = json!({"receive_id": app.open_id("demo-bot", "alice"), "msg_type": "text", "content": "{\"text\":\"hi\"}"});
    let m = app.call(Method::POST, "/open-apis/im/v1/messages?receive_id_type=open_id", &t, Some(body)).await;
    assert_eq!(m.code(), 0, "{}", m.body);
    assert_eq!(m.body["data"]["chat_id"], json!(chat_id));
    let r = app.as_admin(Method::POST, &format!("/_larkstack/users/alice/p2p/{bot}/enter"), None).await;
    assert_eq!((r.code(), &r.body["data"]["created"], r.body["data"]["chat_id"].as_str()), (0, &json!(false), Some(chat_id.as_str())));
    let events = app.state.store.events(larkstack::store::EventQuery { limit: 100, ..Default::default() }).await.unwrap();
    let last = events.last().unwrap();
    assert_eq!(last.event.type_name(), ENTERED);
    assert_eq!(last.event.actor, Actor::ControlAsUser(app.dir.users().iter().find(|u| u.key == "alice").unwrap().uid.clone()));

    // The payload the bot receives: the user in its id space, the last message, ms strings.
    let chat = app.state.store.get_chat(&ChatId(chat_id.clone())).await.unwrap().unwrap();
    let out = app_events(last, &ChatFacts::of(&chat), &app.dir);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].app_id.0.as_str(), out[0].event_type), (bot.as_str(), ENTERED));
    let e = &out[0].event;
    assert_eq!(e["chat_id"], json!(chat_id));
    assert_eq!(e["operator_id"]["open_id"], json!(app.open_id("demo-bot", "alice")));
    assert_eq!(e["last_message_id"], m.body["data"]["message_id"]);
    assert_eq!(e["last_message_create_time"], json!(m.body["data"]["create_time"].as_str().unwrap()));
}

#[tokio::test]
async fn entering_a_p2p_chat_is_refused_for_unknown_or_unusable_bots() {
    let app = TestApp::demo().await;
    let bot = app.app_id("demo-bot");
    let r = app.as_admin(Method::POST, &format!("/_larkstack/users/nobody/p2p/{bot}/enter"), None).await;
    assert_eq!(r.code(), 400, "{}", r.body);
    let r = app.as_admin(Method::POST, "/_larkstack/users/alice/p2p/cli_nope/enter", None).await;
    assert_eq!(r.code(), 404, "{}", r.body);
    for key in ["no-bot-app", "disabled-app", "globex-bot"] {
        let r = app.as_admin(Method::POST, &format!("/_larkstack/users/alice/p2p/{}/enter", app.app_id(key)), None).await;
        assert_eq!(r.code(), 400, "{key}: {}", r.body);
    }
    assert!(app.state.store.events(larkstack::store::EventQuery { limit: 100, ..Default::default() }).await.unwrap().is_empty(), "a refusal records nothing");
}

// ---- golden payloads for the Python SDK ----

const TOKEN: &str = "larkstackVerificationToken000001";

const FIXTURE: &str = r#"
[[tenants]]
key = "acme"
tenant_key = "2ca1d211f64f6438"
[[tenants]]
key = "globex"
tenant_key = "3cb2e322a75a7549"
[[developers]]
key = "dev"
[[apps]]
key = "bot"
name = "Event Bot"
tenant = "acme"
developer = "dev"
app_id = "cli_9f5343c580712544"
bot = true
scopes = ["im:chat", "im:message.group_msg", "im:message.p2p_msg:readonly", "contact:user.employee_id:readonly",
          "im:chat.access_event.bot_p2p_chat:read", "im:message.group_at_msg.include_bot:readonly",
          "im:message:readonly", "im:message.reactions:read"]
[[apps]]
key = "other"
name = "Other Bot"
tenant = "acme"
developer = "dev"
app_id = "cli_a000000000000001"
bot = true
scopes = ["im:chat"]
[[users]]
key = "alice"
tenant = "acme"
name = "Alice"
user_id = "alice01"
[[users]]
key = "gina"
tenant = "globex"
name = "Gina"
user_id = "gina01"
"#;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/event_payloads")
}

fn envelope(seq: i64, at_ms: i64, e: &AppEvent) -> Value {
    json!({
        "schema": "2.0",
        "header": {
            "event_id": format!("{:016x}{:016x}", seq as u64, at_ms as u64),
            "event_type": e.event_type,
            "create_time": at_ms.to_string(),
            "token": TOKEN,
            "app_id": e.app_id.0,
            "tenant_key": e.tenant_key.0,
        },
        "event": e.event,
    })
}

/// One payload per Feishu event type, for the recipient `cli_9f…`.
fn golden_payloads() -> Vec<(String, Value)> {
    let d = Directory::from_toml(FIXTURE).unwrap();
    let uid = |k: &str| d.users().iter().find(|u| u.key == k).unwrap().uid.clone();
    let (me, other) = (AppId("cli_9f5343c580712544".into()), AppId("cli_a000000000000001".into()));
    let chat = Chat {
        chat_id: ChatId("oc_a0553eda9014c201e6969b478895c230".into()),
        tenant_key: TenantKey("2ca1d211f64f6438".into()),
        creator_app: other.clone(),
        owner: Owner::User(uid("alice")),
        external: true,
        status: ChatStatus::Normal,
        created_at_ms: 1_700_000_000_000,
        settings: serde_json::from_value::<ChatSettings>(json!({"name": "Launch", "i18n_names": {"en_us": "Launch"}})).unwrap(),
        users: vec![uid("alice")],
        user_join_keys: vec![1_700_000_000_000_000],
        bots: vec![me.clone(), other.clone()],
        user_managers: vec![],
        bot_managers: vec![],
        last_active_at_ms: 1_700_000_000_000,
    };
    let at = 1_700_000_000_123;
    let mut out: Vec<(String, Value)> = Vec::new();
    let mut seq = 0;
    let mut emit = |name: &str, event: DomainEvent, chat: &Chat| {
        seq += 1;
        let stored = StoredEvent { seq, event };
        for e in app_events(&stored, &ChatFacts::of(chat), &d).into_iter().filter(|e| e.app_id == me) {
            out.push((name.to_string(), envelope(seq, stored.event.at_ms, &e)));
        }
    };
    // Messages: a user's text with mentions, in a group and in p2p.
    let text = Message {
        message_id: MessageId("om_dc13264520392913993dd051dba21dcf".into()),
        chat_id: chat.chat_id.clone(),
        msg_type: "text".into(),
        content: json!({"text": "<at user_id=\"bot\">Event Bot</at> hello <at user_id=\"gina\">Gina</at>"}).to_string(),
        sender: Sender::User(uid("alice")),
        sender_tenant: chat.tenant_key.clone(),
        created_at_ms: at,
        state: Default::default(),
    };
    let mentions = resolve_mentions(parse_mentions("text", &text.content), |id| d.users().iter().find(|u| u.key == id).map(|u| u.uid.clone()));
    emit("message_receive_group", message_sent(&text, &chat, Actor::ControlAsUser(uid("alice")), mentions), &chat);
    let mut p2p = chat.clone();
    p2p.chat_id = ChatId("oc_b0553eda9014c201e6969b478895c231".into());
    p2p.settings.chat_mode = "p2p".into();
    p2p.external = false;
    p2p.bots = vec![me.clone()];
    p2p.owner = Owner::Bot(me.clone());
    let hi = Message { chat_id: p2p.chat_id.clone(), content: json!({"text": "hi"}).to_string(), ..text.clone() };
    emit("message_receive_p2p", message_sent(&hi, &p2p, Actor::ControlAsUser(uid("alice")), vec![]), &p2p);
    // Another bot's message that @s the recipient (include-bot scope).
    let from_bot = Message {
        sender: Sender::App(other.clone()),
        content: json!({"text": "<at user_id=\"cli_9f5343c580712544\">Event Bot</at> ping"}).to_string(),
        ..text.clone()
    };
    let mentions = parse_mentions("text", &from_bot.content);
    emit("message_receive_from_bot", message_sent(&from_bot, &chat, Actor::App(other.clone()), mentions), &chat);
    // Members: gina joins (a user acted), then the other bot removes her.
    let mut joined = chat.clone();
    joined.add_users([uid("gina")], at);
    for e in chat_changes(&chat, &joined, &Actor::ControlAsUser(uid("gina")), at) {
        emit("user_added", e, &joined);
    }
    for e in chat_changes(&joined, &chat, &Actor::App(other.clone()), at) {
        emit("user_deleted", e, &chat);
    }
    let withdrawn = DomainEvent {
        chat_id: chat.chat_id.clone(),
        actor: Actor::ControlAsUser(uid("alice")),
        at_ms: at,
        body: EventBody::UsersWithdrawn { users: vec![uid("gina")], name: "Launch".into(), i18n_names: chat.settings.i18n_names.clone() },
    };
    emit("user_withdrawn", withdrawn, &chat);
    // The bot: added by alice, removed by the other bot.
    let mut without = chat.clone();
    without.bots = vec![other.clone()];
    for e in chat_changes(&without, &chat, &Actor::ControlAsUser(uid("alice")), at) {
        emit("bot_added", e, &chat);
    }
    for e in chat_changes(&chat, &without, &Actor::App(other.clone()), at) {
        emit("bot_deleted", e, &without);
    }
    // Updated by alice: the name, and the owner handed to gina.
    let mut renamed = joined.clone();
    renamed.settings.name = "Launch 2".into();
    renamed.owner = Owner::User(uid("gina"));
    for e in chat_changes(&joined, &renamed, &Actor::ControlAsUser(uid("alice")), at) {
        emit("chat_updated", e, &renamed);
    }
    // Disbanded by the other bot.
    let mut gone = chat.clone();
    gone.status = ChatStatus::Dissolved;
    gone.users.clear();
    for e in chat_changes(&chat, &gone, &Actor::App(other.clone()), at) {
        emit("chat_disbanded", e, &gone);
    }
    let entered = DomainEvent {
        chat_id: p2p.chat_id.clone(),
        actor: Actor::ControlAsUser(uid("alice")),
        at_ms: at,
        body: EventBody::BotP2pChatEntered { last_message_id: Some(hi.message_id.clone()), last_message_create_time_ms: Some(at - 100) },
    };
    emit("p2p_chat_entered", entered, &p2p);
    // Message operations: alice's message recalled by the owner bot; reactions by alice and by
    // the other bot; alice reads the bot's p2p message.
    emit("message_recalled", message_recalled(&text, RecallType::GroupOwner, Actor::App(other.clone()), at), &chat);
    let reaction = |operator: Sender| Reaction {
        reaction_id: "ZC0000000000000000000000000000000000000000000000000001".into(),
        message_id: text.message_id.clone(),
        chat_id: chat.chat_id.clone(),
        emoji_type: "THUMBSUP".into(),
        operator,
        created_at_ms: at,
    };
    emit("reaction_created", reaction_changed(&reaction(Sender::User(uid("alice"))), true, at), &chat);
    emit("reaction_deleted", reaction_changed(&reaction(Sender::App(other.clone())), false, at), &chat);
    let mine = Message { sender: Sender::App(me.clone()), ..hi.clone() };
    emit("message_read", messages_read(&p2p.chat_id, &uid("alice"), &[mine], at).unwrap(), &p2p);
    out
}

#[test]
fn sdk_payloads_match_the_golden_files() {
    let payloads = golden_payloads();
    let names: Vec<&str> = payloads.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_receive_group",
            "message_receive_p2p",
            "message_receive_from_bot",
            "user_added",
            "user_deleted",
            "user_withdrawn",
            "bot_added",
            "bot_deleted",
            "chat_updated",
            "chat_disbanded",
            "p2p_chat_entered",
            "message_recalled",
            "reaction_created",
            "reaction_deleted",
            "message_read"
        ]
    );
    let dir = golden_dir();
    let bless = std::env::var_os("LARKSTACK_BLESS").is_some();
    if bless {
        std::fs::create_dir_all(&dir).unwrap();
    }
    for (name, payload) in payloads {
        // Compact JSON, as the delivery sends it.
        let text = format!("{}\n", serde_json::to_string(&payload).unwrap());
        let path = dir.join(format!("{name}.json"));
        if bless {
            std::fs::write(&path, &text).unwrap();
        }
        let stored = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(stored, text, "{} is stale: rerun with LARKSTACK_BLESS=1", path.display());
    }
}
