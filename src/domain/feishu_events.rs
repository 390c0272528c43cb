//! Feishu event payloads (events spec §3): one stored domain event becomes the `event` object
//! each recipient app receives, with every id in that app's id space. Pure: the delivery wraps
//! each in the schema-2.0 envelope and applies the app's subscriptions.
//!
//! Recipients are the bots in the chat as stored now (for a disbanded chat: the bots that were in
//! it; for a removed bot: that bot only), filtered by the scopes §3.2/§3.3 name. Ids: `open_id`
//! per app, `union_id` per developer, `user_id` only with `contact:user.employee_id:readonly` and
//! only for users of the recipient's tenant. GUESSES are listed in docs/parity.md.

use serde_json::{json, Map, Value};

use crate::domain::chat::{Chat, I18nNames, Owner};
use crate::domain::directory::{App, Directory, User};
use crate::domain::events::{Actor, EventBody, Mention, StoredEvent};
use crate::domain::ids::{AppId, ChatId, TenantKey, Uid};
use crate::domain::message::Sender;

/// One Feishu event for one app: the delivery wraps `event` in the schema-2.0 envelope
/// (`header{event_id, event_type, create_time, token, app_id, tenant_key}`).
#[derive(Debug, Clone, PartialEq)]
pub struct AppEvent {
    pub app_id: AppId,
    pub event_type: &'static str,
    pub tenant_key: TenantKey,
    /// The `event` object, ids already in `app_id`'s id space.
    pub event: serde_json::Value,
}

/// Scopes, any one of which lets a bot receive chat member events.
const MEMBER_SCOPES: &[&str] = &["im:chat.members:read", "im:chat:readonly", "im:chat"];
/// Scopes for `bot.added` / `bot.deleted`.
const BOT_ACCESS_SCOPES: &[&str] = &["im:chat.members:bot_access", "im:chat:readonly", "im:chat"];
/// Scopes for `chat.updated` / `chat.disbanded`.
const CHAT_SCOPES: &[&str] = &["im:chat:read", "im:chat:readonly", "im:chat"];
const P2P_ENTERED_SCOPES: &[&str] = &["im:chat.access_event.bot_p2p_chat:read"];
const P2P_MSG_SCOPES: &[&str] = &["im:message.p2p_msg:readonly", "im:message"];
const GROUP_AT_SCOPES: &[&str] = &["im:message.group_at_msg:readonly", "im:message.group_msg"];
const GROUP_ALL_SCOPE: &str = "im:message.group_msg";
const INCLUDE_BOT_SCOPE: &str = "im:message.group_at_msg.include_bot:readonly";
const EMPLOYEE_ID_SCOPE: &str = "contact:user.employee_id:readonly";
/// Recall and read receipts: reading messages (GUESS for recall, docs/parity.md).
const MESSAGE_READ_SCOPES: &[&str] = &["im:message:readonly", "im:message"];
const REACTION_SCOPES: &[&str] = &["im:message.reactions:read", "im:message:readonly", "im:message"];

/// Whether a domain event can cause any Feishu event (`app_events` returns none for the others,
/// whatever the chat): lets the delivery skip reading their chats.
pub fn causes_feishu_events(e: &crate::domain::events::DomainEvent) -> bool {
    !matches!(e.body, EventBody::ChatCreated { .. } | EventBody::ManagersAdded { .. } | EventBody::ManagersRemoved { .. })
}

/// What `app_events` needs of a chat: who is in it is only its bots (users come from the events).
/// Small, so the delivery's fan-out can keep one per chat it has seen.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatFacts {
    pub chat_id: ChatId,
    pub tenant_key: TenantKey,
    pub external: bool,
    pub group: bool,
    pub bots: Vec<AppId>,
}

impl ChatFacts {
    pub fn of(chat: &Chat) -> Self {
        ChatFacts {
            chat_id: chat.chat_id.clone(),
            tenant_key: chat.tenant_key.clone(),
            external: chat.external,
            group: chat.is_group(),
            bots: chat.bots.clone(),
        }
    }

    fn has_bot(&self, app: &AppId) -> bool {
        self.bots.contains(app)
    }

    /// Roughly the bytes it holds (for bounds on what keeps many of them).
    pub fn weight(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.chat_id.0.len()
            + self.tenant_key.0.len()
            + self.bots.iter().map(|b| std::mem::size_of::<AppId>() + b.0.len()).sum::<usize>()
    }
}

/// Whether a domain event may change what `ChatFacts` hold of its chat (anything but a message,
/// a recall, a reaction or a read may: a chat created, members, settings, disbanding).
pub fn may_change_chat(e: &crate::domain::events::DomainEvent) -> bool {
    !matches!(
        e.body,
        EventBody::MessageSent { .. }
            | EventBody::MessageRecalled { .. }
            | EventBody::ReactionCreated { .. }
            | EventBody::ReactionDeleted { .. }
            | EventBody::MessagesRead { .. }
    )
}

/// The Feishu events one stored domain event causes, one per recipient app, in a stable order.
/// `chat` is the chat as stored now. Subscriptions (`event_types`) are NOT applied here.
pub fn app_events(event: &StoredEvent, chat: &ChatFacts, dir: &Directory) -> Vec<AppEvent> {
    let e = &event.event;
    let event_type = e.type_name();
    let in_chat = || chat.bots.clone();
    let (recipients, scopes): (Vec<AppId>, &[&str]) = match &e.body {
        // A chat being created, managers: no Feishu event (docs/parity.md).
        EventBody::ChatCreated { .. } | EventBody::ManagersAdded { .. } | EventBody::ManagersRemoved { .. } => return Vec::new(),
        EventBody::UsersAdded { .. } | EventBody::UsersDeleted { .. } | EventBody::UsersWithdrawn { .. } => (in_chat(), MEMBER_SCOPES),
        // Only when a user added the bots (doc wording), to the bots added.
        EventBody::BotsAdded { bots, .. } => {
            if e.actor.uid().is_none() {
                return Vec::new();
            }
            (bots.iter().filter(|b| chat.has_bot(b)).cloned().collect(), BOT_ACCESS_SCOPES)
        }
        EventBody::BotsDeleted { bots, .. } => (bots.clone(), BOT_ACCESS_SCOPES),
        EventBody::ChatUpdated { .. } => (in_chat(), CHAT_SCOPES),
        // A disbanded chat keeps its bots (only users are cleared), so they are the ones that were in it.
        EventBody::ChatDisbanded { .. } => (in_chat(), CHAT_SCOPES),
        EventBody::BotP2pChatEntered { .. } => (in_chat(), P2P_ENTERED_SCOPES),
        EventBody::MessageSent { .. } => (in_chat(), &[]),
        EventBody::MessageRecalled { .. } => (in_chat(), MESSAGE_READ_SCOPES),
        EventBody::ReactionCreated { .. } | EventBody::ReactionDeleted { .. } => (in_chat(), REACTION_SCOPES),
        // Only p2p messages' senders hear of reads (spec §3.2: group messages never fire it).
        EventBody::MessagesRead { messages, .. } => {
            if chat.group {
                return Vec::new();
            }
            let mut senders: Vec<AppId> = Vec::new();
            for m in messages {
                if !senders.contains(&m.sender) {
                    senders.push(m.sender.clone());
                }
            }
            (senders, MESSAGE_READ_SCOPES)
        }
    };
    let mut out = Vec::new();
    for app_id in recipients {
        let Some(app) = dir.app(&app_id) else { continue };
        if !app.bot {
            continue;
        }
        if !scopes.is_empty() && !app.has_any_scope(scopes) {
            continue;
        }
        let view = View { dir, app, tenant: recipient_tenant(app, &chat.tenant_key) };
        let body = match &e.body {
            EventBody::MessageSent { .. } => match view.message(event, chat) {
                Some(v) => v,
                None => continue,
            },
            EventBody::MessageRecalled { .. }
            | EventBody::ReactionCreated { .. }
            | EventBody::ReactionDeleted { .. }
            | EventBody::MessagesRead { .. } => view.message_event(event, chat),
            _ => view.chat_event(event, chat),
        };
        out.push(AppEvent { app_id: app.app_id.clone(), event_type, tenant_key: view.tenant.clone(), event: body });
    }
    out
}

/// The tenant the recipient sees the chat in: the chat's tenant when the app is installed there,
/// else (a bot of another tenant in an external chat) the app's own tenant.
pub fn recipient_tenant(app: &App, chat_tenant: &TenantKey) -> TenantKey {
    if app.enabled_in(chat_tenant) {
        return chat_tenant.clone();
    }
    app.home_tenant.clone().unwrap_or_else(|| chat_tenant.clone())
}

/// One recipient's view of ids.
struct View<'a> {
    dir: &'a Directory,
    app: &'a App,
    tenant: TenantKey,
}

impl View<'_> {
    fn user(&self, user: &User) -> Value {
        let mut id = json!({
            "union_id": self.dir.union_id(&self.app.developer, user).0,
            "open_id": self.dir.open_id(self.app, user).0,
        });
        if self.app.has_scope(EMPLOYEE_ID_SCOPE) && user.tenant_key == self.tenant {
            id["user_id"] = json!(user.user_id.0);
        }
        id
    }

    fn uid(&self, uid: &Uid) -> Value {
        match self.dir.user(uid) {
            Some(u) => self.user(u),
            None => json!({"union_id": "", "open_id": ""}),
        }
    }

    fn bot(&self, bot: &AppId) -> Value {
        json!({
            "union_id": self.dir.bot_union_id(&self.app.developer, bot).0,
            "open_id": self.dir.bot_open_id(self.app, bot).0,
            "user_id": null,
        })
    }

    fn bot_tenant(&self, bot: &AppId, chat: &ChatFacts) -> TenantKey {
        self.dir.app(bot).map(|a| recipient_tenant(a, &chat.tenant_key)).unwrap_or_else(|| chat.tenant_key.clone())
    }

    fn user_tenant(&self, uid: &Uid, chat: &ChatFacts) -> TenantKey {
        self.dir.user(uid).map(|u| u.tenant_key.clone()).unwrap_or_else(|| chat.tenant_key.clone())
    }

    /// `operator_id` and `operator_tenant_key` of whoever acted.
    fn operator(&self, actor: &Actor, chat: &ChatFacts) -> (Value, TenantKey) {
        match actor {
            Actor::User(u) | Actor::ControlAsUser(u) => (self.uid(u), self.user_tenant(u, chat)),
            Actor::App(a) | Actor::CustomBot(a) => (self.bot(a), self.bot_tenant(a, chat)),
        }
    }

    fn chat_event(&self, stored: &StoredEvent, chat: &ChatFacts) -> Value {
        let e = &stored.event;
        let (operator_id, operator_tenant) = self.operator(&e.actor, chat);
        let mut v = json!({
            "chat_id": chat.chat_id.0,
            "operator_id": operator_id,
            "external": chat.external,
            "operator_tenant_key": operator_tenant.0,
        });
        let names = |v: &mut Value, name: &str, i18n: &I18nNames| {
            v["name"] = json!(name);
            v["i18n_names"] = json!(i18n);
        };
        match &e.body {
            EventBody::UsersAdded { users, name, i18n_names }
            | EventBody::UsersDeleted { users, name, i18n_names, .. }
            | EventBody::UsersWithdrawn { users, name, i18n_names } => {
                let list: Vec<Value> = users
                    .iter()
                    .map(|u| {
                        let user = self.dir.user(u);
                        json!({
                            "name": user.map(|u| u.name.as_str()).unwrap_or(""),
                            "tenant_key": self.user_tenant(u, chat).0,
                            "user_id": self.uid(u),
                        })
                    })
                    .collect();
                v["users"] = json!(list);
                names(&mut v, name, i18n_names);
            }
            EventBody::BotsAdded { name, i18n_names, .. }
            | EventBody::BotsDeleted { name, i18n_names, .. }
            | EventBody::ChatDisbanded { name, i18n_names } => {
                names(&mut v, name, i18n_names);
            }
            EventBody::ChatUpdated { before_change, after_change } => {
                v["before_change"] = Value::Object(self.change(before_change));
                v["after_change"] = Value::Object(self.change(after_change));
                // larkstack keeps no moderator list: it never changes.
                v["moderator_list"] = json!({"added_member_list": [], "removed_member_list": []});
            }
            EventBody::BotP2pChatEntered { last_message_id, last_message_create_time_ms } => {
                let op = v["operator_id"].take();
                v = json!({
                    "chat_id": chat.chat_id.0,
                    "operator_id": op,
                    "last_message_id": last_message_id.as_ref().map(|m| m.0.as_str()).unwrap_or(""),
                    "last_message_create_time": last_message_create_time_ms.map(|t| t.to_string()).unwrap_or_default(),
                });
            }
            _ => {}
        }
        v
    }

    /// A `ChatChange` with `owner_id` as a UserId in this app's space.
    fn change(&self, change: &Map<String, Value>) -> Map<String, Value> {
        let mut out = change.clone();
        if let Some(owner) = change.get("owner_id") {
            let id = match serde_json::from_value::<Owner>(owner.clone()) {
                Ok(Owner::User(u)) => self.uid(&u),
                Ok(Owner::Bot(a)) => self.bot(&a),
                Err(_) => Value::Null,
            };
            out.insert("owner_id".into(), id);
        }
        out
    }

    /// `im.message.receive_v1` for this recipient, or None when it does not receive the message.
    fn message(&self, stored: &StoredEvent, chat: &ChatFacts) -> Option<Value> {
        let EventBody::MessageSent { message_id, chat_type, sender, msg_type, content, mentions, root_id, parent_id, thread_id } =
            &stored.event.body
        else {
            return None;
        };
        let me = &self.app.app_id;
        let mentions_me = mentions.iter().any(|m| self.mentioned_bot(m, sender).as_ref() == Some(me));
        match sender {
            // Never a bot's own message; other bots' only when they @ it, with the include-bot scope.
            Sender::App(a) if a == me => return None,
            // A custom bot is another bot: "sender_type: only messages sent by users" (docs/parity.md).
            Sender::App(_) | Sender::CustomBot(_) => {
                if !(mentions_me && self.app.has_scope(INCLUDE_BOT_SCOPE) && chat_type != "p2p") {
                    return None;
                }
            }
            Sender::User(_) => {
                let ok = if chat_type == "p2p" {
                    self.app.has_any_scope(P2P_MSG_SCOPES)
                } else {
                    self.app.has_scope(GROUP_ALL_SCOPE) || (mentions_me && self.app.has_any_scope(GROUP_AT_SCOPES))
                };
                if !ok {
                    return None;
                }
            }
        }
        let (sender_id, sender_type, sender_tenant) = match sender {
            Sender::User(u) => (self.uid(u), "user", self.user_tenant(u, chat)),
            Sender::App(a) | Sender::CustomBot(a) => (self.bot(a), "app", self.bot_tenant(a, chat)),
        };
        let at = stored.event.at_ms.to_string();
        let shown: Vec<Value> = mentions
            .iter()
            .filter(|m| m.id != "all")
            .map(|m| {
                let (id, kind, name, tenant) = if let Some(bot) = self.mentioned_bot(m, sender) {
                    let name = self.dir.app(&bot).map(|a| a.name.clone());
                    (self.bot(&bot), "bot", name, self.bot_tenant(&bot, chat))
                } else if let Some(u) = &m.uid {
                    (self.uid(u), "user", self.dir.user(u).map(|u| u.name.clone()), self.user_tenant(u, chat))
                } else {
                    (json!({"union_id": "", "open_id": ""}), "user", None, chat.tenant_key.clone())
                };
                json!({
                    "key": m.key,
                    "id": id,
                    "mentioned_type": kind,
                    "name": m.name.clone().or(name).unwrap_or_default(),
                    "tenant_key": tenant.0,
                })
            })
            .collect();
        let mut message = json!({
            "message_id": message_id.0,
            "root_id": root_id.as_ref().map(|m| m.0.as_str()).unwrap_or(""),
            "parent_id": parent_id.as_ref().map(|m| m.0.as_str()).unwrap_or(""),
            "create_time": at,
            "update_time": at,
            "chat_id": chat.chat_id.0,
            "thread_id": thread_id.as_deref().unwrap_or(""),
            "chat_type": chat_type,
            "message_type": msg_type,
            "content": shown_content(msg_type, content, mentions),
            "user_agent": "",
        });
        if !shown.is_empty() {
            message["mentions"] = json!(shown);
        }
        Some(json!({
            "sender": {"sender_id": sender_id, "sender_type": sender_type, "tenant_key": sender_tenant.0},
            "message": message,
        }))
    }

    /// A recall, a reaction or a read receipt, for this recipient (§3.2).
    fn message_event(&self, stored: &StoredEvent, chat: &ChatFacts) -> Value {
        let at = stored.event.at_ms.to_string();
        match &stored.event.body {
            EventBody::MessageRecalled { message_id, recall_type } => json!({
                "message_id": message_id.0,
                "chat_id": chat.chat_id.0,
                "recall_time": at,
                "recall_type": recall_type,
            }),
            EventBody::ReactionCreated { message_id, emoji_type, operator, .. }
            | EventBody::ReactionDeleted { message_id, emoji_type, operator, .. } => {
                let mut v = json!({
                    "message_id": message_id.0,
                    "reaction_type": {"emoji_type": emoji_type},
                    "action_time": at,
                });
                match operator {
                    Sender::User(u) => {
                        v["operator_type"] = json!("user");
                        v["user_id"] = self.uid(u);
                    }
                    Sender::App(a) | Sender::CustomBot(a) => {
                        v["operator_type"] = json!("app");
                        v["app_id"] = json!(a.0);
                    }
                }
                v
            }
            EventBody::MessagesRead { reader, messages } => {
                let mine: Vec<&str> =
                    messages.iter().filter(|m| m.sender == self.app.app_id).map(|m| m.message_id.0.as_str()).collect();
                json!({
                    "reader": {"reader_id": self.uid(reader), "read_time": at, "tenant_key": self.user_tenant(reader, chat).0},
                    "message_id_list": mine,
                })
            }
            _ => Value::Null,
        }
    }

    /// The bot a mention names: by app id or fixture key (the control API's way), or by the
    /// bot's open_id as the sending app sees it (mention ids are in the sender's id space).
    fn mentioned_bot(&self, m: &Mention, sender: &Sender) -> Option<AppId> {
        if m.uid.is_some() {
            return None;
        }
        let sender_app = match sender {
            Sender::App(a) => self.dir.app(a),
            Sender::User(_) | Sender::CustomBot(_) => None,
        };
        self.dir
            .apps()
            .iter()
            .find(|a| {
                a.bot
                    && (a.app_id.0 == m.id
                        || a.key == m.id
                        || sender_app.is_some_and(|s| self.dir.bot_open_id(s, &a.app_id).0 == m.id))
            })
            .map(|a| a.app_id.clone())
    }
}

/// The content receivers see: each `<at …>…</at>` (text) or `at` element's `user_id` (post)
/// replaced by its `@_user_N` key (`@_all` for @all), in order of appearance.
fn shown_content(msg_type: &str, content: &str, mentions: &[Mention]) -> String {
    let key = |i: usize| mentions.get(i).map(|m| if m.id == "all" { "@_all".to_string() } else { m.key.clone() });
    let Ok(mut value) = serde_json::from_str::<Value>(content) else {
        return content.to_string();
    };
    let mut n = 0;
    match msg_type {
        "text" => {
            let Some(text) = value.get("text").and_then(Value::as_str) else { return content.to_string() };
            let mut out = String::new();
            let mut rest = text;
            while let Some(start) = rest.find("<at ") {
                let after = &rest[start + 4..];
                let Some(close) = after.find('>') else { break };
                let inner = &after[close + 1..];
                let Some(end) = inner.find("</at>") else { break };
                out.push_str(&rest[..start]);
                out.push_str(&key(n).unwrap_or_default());
                n += 1;
                rest = &inner[end + 5..];
            }
            out.push_str(rest);
            value["text"] = json!(out);
        }
        "post" => {
            let body = if value.get("post").is_some() { &mut value["post"] } else { &mut value };
            if let Some(langs) = body.as_object_mut() {
                for lang in langs.values_mut() {
                    for row in lang.get_mut("content").and_then(Value::as_array_mut).into_iter().flatten() {
                        for el in row.as_array_mut().into_iter().flatten() {
                            if el.get("tag").and_then(Value::as_str) == Some("at") && el.get("user_id").is_some() {
                                el["user_id"] = json!(key(n).unwrap_or_default());
                                n += 1;
                            }
                        }
                    }
                }
            }
        }
        _ => return content.to_string(),
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::chat::{ChatSettings, ChatStatus};
    use crate::domain::events::{chat_changes, message_sent, parse_mentions, resolve_mentions, DomainEvent};
    use crate::domain::ids::{ChatId, MessageId};
    use crate::domain::message::Message;

    const FIXTURE: &str = r#"
[[tenants]]
key = "acme"
tenant_key = "t_acme"
[[tenants]]
key = "globex"
tenant_key = "t_globex"
[[developers]]
key = "dev"
[[apps]]
key = "all"
tenant = "acme"
developer = "dev"
app_id = "cli_all"
name = "All Bot"
bot = true
scopes = ["im:chat", "im:message.group_msg", "im:message.p2p_msg:readonly", "contact:user.employee_id:readonly", "im:chat.access_event.bot_p2p_chat:read"]
[[apps]]
key = "at"
tenant = "acme"
developer = "dev"
app_id = "cli_at"
name = "At Bot"
bot = true
scopes = ["im:chat:readonly", "im:message.group_at_msg:readonly", "im:message.group_at_msg.include_bot:readonly"]
[[apps]]
key = "bare"
tenant = "acme"
developer = "dev"
app_id = "cli_bare"
name = "Bare Bot"
bot = true
scopes = ["im:chat:create"]
[[users]]
key = "alice"
tenant = "acme"
name = "Alice"
user_id = "alice_uid"
[[users]]
key = "bob"
tenant = "globex"
name = "Bob"
user_id = "bob_uid"
"#;

    fn dir() -> Directory {
        Directory::from_toml(FIXTURE).unwrap()
    }

    fn uid(d: &Directory, key: &str) -> Uid {
        d.users().iter().find(|u| u.key == key).unwrap().uid.clone()
    }

    fn app(id: &str) -> AppId {
        AppId(id.into())
    }

    fn group(d: &Directory) -> Chat {
        Chat {
            chat_id: ChatId("oc_1".into()),
            tenant_key: TenantKey("t_acme".into()),
            creator_app: app("cli_all"),
            owner: Owner::User(uid(d, "alice")),
            external: true,
            status: ChatStatus::Normal,
            created_at_ms: 1,
            settings: serde_json::from_value::<ChatSettings>(json!({"name": "G"})).unwrap(),
            users: vec![uid(d, "alice"), uid(d, "bob")],
            user_join_keys: vec![1000, 1001],
            bots: vec![app("cli_all"), app("cli_at"), app("cli_bare")],
            user_managers: vec![],
            bot_managers: vec![],
            last_active_at_ms: 1,
        }
    }

    fn stored(e: DomainEvent) -> StoredEvent {
        StoredEvent { seq: 1, event: e }
    }

    fn to(events: &[AppEvent]) -> Vec<&str> {
        events.iter().map(|e| e.app_id.0.as_str()).collect()
    }

    fn sent(d: &Directory, chat: &Chat, sender: Sender, text: &str) -> Vec<AppEvent> {
        let m = Message {
            message_id: MessageId("om_1".into()),
            chat_id: chat.chat_id.clone(),
            msg_type: "text".into(),
            content: json!({ "text": text }).to_string(),
            sender: sender.clone(),
            sender_tenant: TenantKey("t_acme".into()),
            created_at_ms: 1700000000123,
            state: Default::default(),
        };
        let mentions = resolve_mentions(parse_mentions("text", &m.content), |id| d.users().iter().find(|u| u.key == id).map(|u| u.uid.clone()));
        let actor = match sender {
            Sender::User(u) => Actor::ControlAsUser(u),
            Sender::App(a) => Actor::App(a),
            Sender::CustomBot(a) => Actor::CustomBot(a),
        };
        app_events(&stored(message_sent(&m, chat, actor, mentions)), &ChatFacts::of(chat), d)
    }

    #[test]
    fn group_messages_by_scope_and_mention() {
        let d = dir();
        let c = group(&d);
        let alice = Sender::User(uid(&d, "alice"));
        // group_msg gets everything; the at-scope only when mentioned; no scope: nothing.
        assert_eq!(to(&sent(&d, &c, alice.clone(), "hi")), ["cli_all"]);
        let ev = sent(&d, &c, alice.clone(), r#"<at user_id="at">At</at> hi <at user_id="bob">Bob</at>"#);
        assert_eq!(to(&ev), ["cli_all", "cli_at"]);
        let at = &ev[1];
        assert_eq!(at.event_type, "im.message.receive_v1");
        assert_eq!(at.tenant_key.0, "t_acme");
        let msg = &at.event["message"];
        assert_eq!(msg["create_time"], "1700000000123");
        assert_eq!(msg["chat_type"], "group");
        assert_eq!(msg["content"], json!({"text": "@_user_1 hi @_user_2"}).to_string());
        let mentions = msg["mentions"].as_array().unwrap();
        assert_eq!(mentions[0]["key"], "@_user_1");
        assert_eq!(mentions[0]["mentioned_type"], "bot");
        assert_eq!(mentions[0]["id"]["open_id"], d.bot_open_id(d.app(&app("cli_at")).unwrap(), &app("cli_at")).0);
        assert_eq!(mentions[1]["mentioned_type"], "user");
        assert_eq!(mentions[1]["name"], "Bob");
        assert_eq!(mentions[1]["tenant_key"], "t_globex");
        let bob = d.users().iter().find(|u| u.key == "bob").unwrap();
        assert_eq!(mentions[1]["id"]["open_id"], d.open_id(d.app(&app("cli_at")).unwrap(), bob).0);
        // The at-app lacks the employee-id scope: no user_id.
        assert!(mentions[1]["id"].get("user_id").is_none());
        let sender = &at.event["sender"];
        assert_eq!(sender["sender_type"], "user");
        assert_eq!(sender["tenant_key"], "t_acme");
        let alice_u = d.users().iter().find(|u| u.key == "alice").unwrap();
        assert_eq!(sender["sender_id"]["open_id"], d.open_id(d.app(&app("cli_at")).unwrap(), alice_u).0);
        // The all-app has the employee-id scope: user_id of its tenant's users only.
        assert_eq!(ev[0].event["sender"]["sender_id"]["user_id"], "alice_uid");
        assert!(ev[0].event["message"]["mentions"][1]["id"].get("user_id").is_none(), "bob is of another tenant");
        // open_ids differ per app, union_ids agree within a developer.
        assert_ne!(ev[0].event["sender"]["sender_id"]["open_id"], sender["sender_id"]["open_id"]);
        assert_eq!(ev[0].event["sender"]["sender_id"]["union_id"], sender["sender_id"]["union_id"]);
    }

    #[test]
    fn bots_messages_never_to_themselves_and_to_others_only_when_they_at_them() {
        let d = dir();
        let c = group(&d);
        // A bot's own message does not come back to it (the others lack include_bot).
        assert!(sent(&d, &c, Sender::App(app("cli_all")), "hi").is_empty());
        // Not even when it @s itself and holds the include-bot scope.
        assert!(sent(&d, &c, Sender::App(app("cli_at")), r#"<at user_id="cli_at">me</at>"#).is_empty());
        // Another bot @-ing the at-bot (which has include_bot) reaches it; the all-bot lacks include_bot.
        let ev = sent(&d, &c, Sender::App(app("cli_bare")), r#"<at user_id="cli_at">x</at> and <at user_id="cli_all">y</at>"#);
        assert_eq!(to(&ev), ["cli_at"]);
        assert_eq!(ev[0].event["sender"]["sender_type"], "app");
        assert_eq!(ev[0].event["sender"]["sender_id"]["user_id"], Value::Null);
        assert_eq!(ev[0].event["sender"]["sender_id"]["open_id"], d.bot_open_id(d.app(&app("cli_at")).unwrap(), &app("cli_bare")).0);
        // A bot names another bot by that bot's open_id in its own (the sender's) id space.
        let as_bare = d.bot_open_id(d.app(&app("cli_bare")).unwrap(), &app("cli_at")).0;
        let ev = sent(&d, &c, Sender::App(app("cli_bare")), &format!(r#"<at user_id="{as_bare}">x</at>"#));
        assert_eq!(to(&ev), ["cli_at"]);
        assert_eq!(ev[0].event["message"]["mentions"][0]["id"]["open_id"], d.bot_open_id(d.app(&app("cli_at")).unwrap(), &app("cli_at")).0);
        let as_at = d.bot_open_id(d.app(&app("cli_at")).unwrap(), &app("cli_at")).0;
        assert!(sent(&d, &c, Sender::App(app("cli_bare")), &format!(r#"<at user_id="{as_at}">x</at>"#)).is_empty(), "not the sender's id");
    }

    #[test]
    fn custom_bots_are_other_bots() {
        let d = dir();
        let c = group(&d);
        let hook = app("cli_0123456789abcdef");
        // Even the bot with every group message hears no plain custom-bot post.
        assert!(sent(&d, &c, Sender::CustomBot(hook.clone()), "deploy done").is_empty());
        let ev = sent(&d, &c, Sender::CustomBot(hook.clone()), r#"<at user_id="cli_at">x</at> deploy done"#);
        assert_eq!(to(&ev), ["cli_at"], "an @ reaches a bot with the include-bot scope");
        assert_eq!(ev[0].event["sender"]["sender_type"], "app");
        assert_eq!(ev[0].event["sender"]["sender_id"]["open_id"], d.bot_open_id(d.app(&app("cli_at")).unwrap(), &hook).0);
    }

    #[test]
    fn p2p_messages_to_the_p2p_bot_with_the_p2p_scope() {
        let d = dir();
        let mut c = group(&d);
        c.settings.chat_mode = "p2p".into();
        c.users = vec![uid(&d, "alice")];
        c.bots = vec![app("cli_all")];
        let ev = sent(&d, &c, Sender::User(uid(&d, "alice")), "hello");
        assert_eq!(to(&ev), ["cli_all"]);
        assert_eq!(ev[0].event["message"]["chat_type"], "p2p");
        c.bots = vec![app("cli_at")];
        assert!(sent(&d, &c, Sender::User(uid(&d, "alice")), "hello").is_empty(), "no p2p scope");
    }

    #[test]
    fn post_mentions_become_keys_and_at_all_is_not_listed() {
        let content = r#"{"zh_cn":{"title":"t","content":[[{"tag":"at","user_id":"alice","user_name":"A"},{"tag":"at","user_id":"all"}]]}}"#;
        let m = parse_mentions("post", content);
        let shown: Value = serde_json::from_str(&shown_content("post", content, &m)).unwrap();
        assert_eq!(shown["zh_cn"]["content"][0][0]["user_id"], "@_user_1");
        assert_eq!(shown["zh_cn"]["content"][0][1]["user_id"], "@_all");
    }

    fn change(d: &Directory, before: &Chat, after: &Chat, actor: Actor) -> Vec<Vec<AppEvent>> {
        chat_changes(before, after, &actor, 1700000000000).into_iter().map(|e| app_events(&stored(e), &ChatFacts::of(after), d)).collect()
    }

    #[test]
    fn users_added_and_deleted_to_bots_with_a_member_scope_with_names() {
        let d = dir();
        let before = group(&d);
        let mut after = before.clone();
        after.remove_user(&uid(&d, "bob"));
        let ev = change(&d, &before, &after, Actor::App(app("cli_all")));
        let ev = &ev[0];
        assert_eq!(to(ev), ["cli_all", "cli_at"], "the bare bot lacks a member scope");
        let e = &ev[1];
        assert_eq!(e.event_type, "im.chat.member.user.deleted_v1");
        assert_eq!(e.event["users"][0]["name"], "Bob");
        assert_eq!(e.event["users"][0]["tenant_key"], "t_globex");
        assert_eq!(e.event["chat_id"], "oc_1");
        assert_eq!(e.event["external"], true);
        assert_eq!(e.event["name"], "G");
        // An app acted: operator_id is the acting bot's ids in the recipient's space.
        assert_eq!(e.event["operator_id"]["open_id"], d.bot_open_id(d.app(&app("cli_at")).unwrap(), &app("cli_all")).0);
        assert_eq!(e.event["operator_tenant_key"], "t_acme");
        let back = change(&d, &after, &before, Actor::ControlAsUser(uid(&d, "bob")));
        assert_eq!(back[0][0].event_type, "im.chat.member.user.added_v1");
        let bob = d.users().iter().find(|u| u.key == "bob").unwrap();
        assert_eq!(back[0][0].event["operator_id"]["open_id"], d.open_id(d.app(&app("cli_all")).unwrap(), bob).0);
        assert_eq!(back[0][0].event["operator_tenant_key"], "t_globex");
        // Withdrawn goes the same way.
        let w = DomainEvent {
            chat_id: before.chat_id.clone(),
            actor: Actor::ControlAsUser(uid(&d, "alice")),
            at_ms: 5,
            body: EventBody::UsersWithdrawn { users: vec![uid(&d, "bob")], name: "G".into(), i18n_names: I18nNames::default() },
        };
        let ev = app_events(&stored(w), &ChatFacts::of(&before), &d);
        assert_eq!(to(&ev), ["cli_all", "cli_at"]);
        assert_eq!(ev[0].event_type, "im.chat.member.user.withdrawn_v1");
    }

    #[test]
    fn bot_added_only_by_a_user_and_only_to_it_deleted_only_to_the_removed_bot() {
        let d = dir();
        let mut before = group(&d);
        before.bots = vec![app("cli_bare")];
        let mut after = before.clone();
        after.bots.push(app("cli_all"));
        assert!(change(&d, &before, &after, Actor::App(app("cli_bare")))[0].is_empty(), "added by an app");
        let ev = change(&d, &before, &after, Actor::ControlAsUser(uid(&d, "alice")));
        assert_eq!(to(&ev[0]), ["cli_all"]);
        assert_eq!(ev[0][0].event_type, "im.chat.member.bot.added_v1");
        assert_eq!(ev[0][0].event["name"], "G");
        let ev = change(&d, &after, &before, Actor::App(app("cli_bare")));
        assert_eq!(to(&ev[0]), ["cli_all"]);
        assert_eq!(ev[0][0].event_type, "im.chat.member.bot.deleted_v1");
    }

    #[test]
    fn updated_lists_changed_keys_with_owner_in_the_recipients_space() {
        let d = dir();
        let before = group(&d);
        let mut after = before.clone();
        after.settings.name = "H".into();
        after.owner = Owner::User(uid(&d, "bob"));
        let ev = change(&d, &before, &after, Actor::ControlAsUser(uid(&d, "alice")));
        let ev = &ev[0];
        assert_eq!(to(ev), ["cli_all", "cli_at"]);
        let e = &ev[0].event;
        assert_eq!(ev[0].event_type, "im.chat.updated_v1");
        let keys: Vec<&String> = e["after_change"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["name", "owner_id"]);
        assert_eq!(e["before_change"]["name"], "G");
        let bob = d.users().iter().find(|u| u.key == "bob").unwrap();
        assert_eq!(e["after_change"]["owner_id"]["open_id"], d.open_id(d.app(&app("cli_all")).unwrap(), bob).0);
        assert_eq!(e["moderator_list"], json!({"added_member_list": [], "removed_member_list": []}));
    }

    #[test]
    fn disbanded_to_the_bots_that_were_in_it() {
        let d = dir();
        let before = group(&d);
        let mut after = before.clone();
        after.status = ChatStatus::Dissolved;
        after.users.clear();
        let ev = change(&d, &before, &after, Actor::App(app("cli_all")));
        assert_eq!(to(&ev[0]), ["cli_all", "cli_at"]);
        assert_eq!(ev[0][0].event_type, "im.chat.disbanded_v1");
        assert_eq!(ev[0][0].event["name"], "G");
    }

    #[test]
    fn created_and_managers_send_nothing() {
        let d = dir();
        let c = group(&d);
        let e = crate::domain::events::chat_created(&c, Actor::App(app("cli_all")), 1);
        assert!(app_events(&stored(e), &ChatFacts::of(&c), &d).is_empty());
        let mut after = c.clone();
        after.user_managers.push(uid(&d, "alice"));
        assert!(change(&d, &c, &after, Actor::App(app("cli_all")))[0].is_empty());
    }

    #[test]
    fn p2p_entered_to_the_p2p_bot_with_its_scope() {
        let d = dir();
        let mut c = group(&d);
        c.settings.chat_mode = "p2p".into();
        c.users = vec![uid(&d, "alice")];
        c.bots = vec![app("cli_all")];
        let e = DomainEvent {
            chat_id: c.chat_id.clone(),
            actor: Actor::ControlAsUser(uid(&d, "alice")),
            at_ms: 7,
            body: EventBody::BotP2pChatEntered { last_message_id: Some(MessageId("om_9".into())), last_message_create_time_ms: Some(1700000000456) },
        };
        let ev = app_events(&stored(e.clone()), &ChatFacts::of(&c), &d);
        assert_eq!(to(&ev), ["cli_all"]);
        assert_eq!(ev[0].event_type, "im.chat.access_event.bot_p2p_chat_entered_v1");
        assert_eq!(ev[0].event["last_message_id"], "om_9");
        assert_eq!(ev[0].event["last_message_create_time"], "1700000000456");
        assert_eq!(ev[0].event["operator_id"]["user_id"], "alice_uid");
        c.bots = vec![app("cli_at")];
        assert!(app_events(&stored(e), &ChatFacts::of(&c), &d).is_empty(), "no access-event scope");
    }

    #[test]
    fn a_bot_of_another_tenant_sees_its_own_tenant() {
        let d = Directory::from_toml(&format!(
            "{FIXTURE}\n[[apps]]\nkey='g'\ntenant='globex'\ndeveloper='dev'\napp_id='cli_g'\nbot=true\nscopes=['im:chat']\n"
        ))
        .unwrap();
        let before = group(&d);
        let mut after = before.clone();
        after.bots.push(app("cli_g"));
        after.settings.name = "H".into();
        let ev = change(&d, &before, &after, Actor::App(app("cli_all")));
        let upd = ev.iter().flatten().find(|e| e.app_id.0 == "cli_g" && e.event_type == "im.chat.updated_v1").unwrap();
        assert_eq!(upd.tenant_key.0, "t_globex");
        let all = ev.iter().flatten().find(|e| e.app_id.0 == "cli_all" && e.event_type == "im.chat.updated_v1").unwrap();
        assert_eq!(all.tenant_key.0, "t_acme");
    }
}
