//! Domain events: what a change did, who did it, and when. Pure: a change of a chat yields its
//! events from the chat before and after it (`chat_changes`), a new chat and a new message from
//! what is stored (`chat_created`, `message_sent`). The store commits them with the change, in
//! the same transaction, into an append-only outbox (`GET /_larkstack/events`).
//!
//! Ids stay internal (uids, app ids): translating them into a recipient app's id space is the
//! delivery's job. `type` is Feishu's event type where Feishu has one, else a `larkstack.` name.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::chat::{Chat, ChatStatus, I18nNames, Owner};
use super::ids::{AppId, ChatId, MessageId, PackedUids, Uid};
use super::message::{Message, Sender, RecallType};
use super::reaction::Reaction;
use crate::error::FeishuError;

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Actor {
    /// A user, from the Feishu client.
    User(Uid),
    /// An app, through the Open Platform API (with its tenant token).
    App(AppId),
    /// The control API acting as a user (`/_larkstack/chats/{chat_id}/messages|join|leave`).
    ControlAsUser(Uid),
    /// A group's custom bot, through its webhook (`POST /open-apis/bot/v2/hook/{token}`).
    CustomBot(AppId),
}

impl Actor {
    /// The user behind the actor, if a user acted.
    pub fn uid(&self) -> Option<&Uid> {
        match self {
            Actor::User(u) | Actor::ControlAsUser(u) => Some(u),
            Actor::App(_) | Actor::CustomBot(_) => None,
        }
    }
}

/// Why users or bots left a chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Departure {
    /// Someone else removed them.
    Removed,
    /// They left by themselves.
    Left,
}

/// A mention in a message's content, in order of appearance: `key` is the `@_user_N` placeholder
/// Feishu shows receivers, `id` the id as the sender wrote it (`all` for @all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mention {
    pub key: String,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The user the id names, when larkstack knows them (internal id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<Uid>,
}

/// What happened; serialised with its `type` name and the details the Feishu payload needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum EventBody {
    /// `users` are the members at creation, packed (the outbox keeps them in a column of their
    /// own: `store::codec::EventRow`); in JSON, the list of uids.
    #[serde(rename = "larkstack.chat.created_v1")]
    ChatCreated {
        name: String,
        chat_mode: String,
        chat_type: String,
        owner: Owner,
        #[serde(default)]
        users: PackedUids,
        bots: Vec<AppId>,
        external: bool,
    },
    /// Only the changed keys appear in `before_change` / `after_change` (keys of Feishu's
    /// `ChatChange`; `owner_id` is the owner as `{kind, id}`).
    #[serde(rename = "im.chat.updated_v1")]
    ChatUpdated { before_change: Map<String, Value>, after_change: Map<String, Value> },
    #[serde(rename = "im.chat.disbanded_v1")]
    ChatDisbanded { name: String, i18n_names: I18nNames },
    #[serde(rename = "im.chat.member.user.added_v1")]
    UsersAdded { users: Vec<Uid>, name: String, i18n_names: I18nNames },
    #[serde(rename = "im.chat.member.user.deleted_v1")]
    UsersDeleted { users: Vec<Uid>, reason: Departure, name: String, i18n_names: I18nNames },
    /// Pending invitations withdrawn before the users joined (`users_withdrawn`); the actor is
    /// who withdrew them. A rejected invitation has no event.
    #[serde(rename = "im.chat.member.user.withdrawn_v1")]
    UsersWithdrawn { users: Vec<Uid>, name: String, i18n_names: I18nNames },
    #[serde(rename = "im.chat.member.bot.added_v1")]
    BotsAdded { bots: Vec<AppId>, name: String, i18n_names: I18nNames },
    #[serde(rename = "im.chat.member.bot.deleted_v1")]
    BotsDeleted { bots: Vec<AppId>, reason: Departure, name: String, i18n_names: I18nNames },
    #[serde(rename = "larkstack.chat.managers.added_v1")]
    ManagersAdded { users: Vec<Uid>, bots: Vec<AppId> },
    #[serde(rename = "larkstack.chat.managers.removed_v1")]
    ManagersRemoved { users: Vec<Uid>, bots: Vec<AppId> },
    /// A user opened the bot's p2p chat (the control API's `…/p2p/{app_id}/enter`).
    #[serde(rename = "im.chat.access_event.bot_p2p_chat_entered_v1")]
    BotP2pChatEntered { last_message_id: Option<MessageId>, last_message_create_time_ms: Option<i64> },
    /// A message sent; a reply names its root and parent, a thread reply its thread too.
    #[serde(rename = "im.message.receive_v1")]
    MessageSent {
        message_id: MessageId,
        chat_type: String,
        sender: Sender,
        msg_type: String,
        content: String,
        mentions: Vec<Mention>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        root_id: Option<MessageId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent_id: Option<MessageId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread_id: Option<String>,
    },
    #[serde(rename = "im.message.recalled_v1")]
    MessageRecalled { message_id: MessageId, recall_type: RecallType },
    #[serde(rename = "im.message.reaction.created_v1")]
    ReactionCreated { message_id: MessageId, reaction_id: String, emoji_type: String, operator: Sender },
    #[serde(rename = "im.message.reaction.deleted_v1")]
    ReactionDeleted { message_id: MessageId, reaction_id: String, emoji_type: String, operator: Sender },
    /// A user read messages of the chat; each with the bot that sent it (only bots' messages
    /// are recorded: read receipts are theirs to ask for).
    #[serde(rename = "im.message.message_read_v1")]
    MessagesRead { reader: Uid, messages: Vec<ReadMessage> },
}

/// A message read, with the bot that sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadMessage {
    pub message_id: MessageId,
    pub sender: AppId,
}

/// Every event type name, for the control API's `type` filter and the docs.
pub const EVENT_TYPES: &[&str] = &[
    "larkstack.chat.created_v1",
    "im.chat.updated_v1",
    "im.chat.disbanded_v1",
    "im.chat.member.user.added_v1",
    "im.chat.member.user.deleted_v1",
    "im.chat.member.user.withdrawn_v1",
    "im.chat.member.bot.added_v1",
    "im.chat.member.bot.deleted_v1",
    "larkstack.chat.managers.added_v1",
    "larkstack.chat.managers.removed_v1",
    "im.message.receive_v1",
    "im.chat.access_event.bot_p2p_chat_entered_v1",
    "im.message.recalled_v1",
    "im.message.reaction.created_v1",
    "im.message.reaction.deleted_v1",
    "im.message.message_read_v1",
];

/// One domain event, as the outbox stores it (without its `seq`, which the store assigns).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainEvent {
    pub chat_id: ChatId,
    pub actor: Actor,
    pub at_ms: i64,
    #[serde(flatten)]
    pub body: EventBody,
}

impl DomainEvent {
    /// The event's `type` name.
    pub fn type_name(&self) -> &'static str {
        match &self.body {
            EventBody::ChatCreated { .. } => EVENT_TYPES[0],
            EventBody::ChatUpdated { .. } => EVENT_TYPES[1],
            EventBody::ChatDisbanded { .. } => EVENT_TYPES[2],
            EventBody::UsersAdded { .. } => EVENT_TYPES[3],
            EventBody::UsersDeleted { .. } => EVENT_TYPES[4],
            EventBody::UsersWithdrawn { .. } => EVENT_TYPES[5],
            EventBody::BotsAdded { .. } => EVENT_TYPES[6],
            EventBody::BotsDeleted { .. } => EVENT_TYPES[7],
            EventBody::ManagersAdded { .. } => EVENT_TYPES[8],
            EventBody::ManagersRemoved { .. } => EVENT_TYPES[9],
            EventBody::MessageSent { .. } => EVENT_TYPES[10],
            EventBody::BotP2pChatEntered { .. } => EVENT_TYPES[11],
            EventBody::MessageRecalled { .. } => EVENT_TYPES[12],
            EventBody::ReactionCreated { .. } => EVENT_TYPES[13],
            EventBody::ReactionDeleted { .. } => EVENT_TYPES[14],
            EventBody::MessagesRead { .. } => EVENT_TYPES[15],
        }
    }
}

/// An event as stored: its place in the store's gap-free order and the event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub seq: i64,
    #[serde(flatten)]
    pub event: DomainEvent,
}

/// A change to one chat: it edits the chat and returns what it did. `Err` leaves the chat as it
/// was and records nothing.
pub type Change = Box<dyn FnOnce(&mut Chat) -> Result<Vec<DomainEvent>, FeishuError> + Send>;

/// A change whose events are what it did to the chat (`chat_changes` of before and after).
pub fn tracked(actor: Actor, at_ms: i64, f: impl FnOnce(&mut Chat) -> Result<(), FeishuError> + Send + 'static) -> Change {
    Box::new(move |chat: &mut Chat| {
        let before = chat.clone();
        f(chat)?;
        Ok(chat_changes(&before, chat, &actor, at_ms))
    })
}

/// The event of a chat being created.
pub fn chat_created(chat: &Chat, actor: Actor, at_ms: i64) -> DomainEvent {
    DomainEvent {
        chat_id: chat.chat_id.clone(),
        actor,
        at_ms,
        body: EventBody::ChatCreated {
            name: chat.settings.name.clone(),
            chat_mode: chat.settings.chat_mode.to_string(),
            chat_type: chat.settings.chat_type.to_string(),
            owner: chat.owner.clone(),
            // Every member of a storable chat has a derived uid (`ChatRow::encode` refuses the
            // chat otherwise, and this event is committed only with it).
            users: PackedUids::pack(&chat.users).unwrap_or_default(),
            bots: chat.bots.clone(),
            external: chat.external,
        },
    }
}

/// The event of `users`' pending invitations to `chat` being withdrawn by `actor` at `at_ms`.
pub fn users_withdrawn(chat: &Chat, users: Vec<Uid>, actor: Actor, at_ms: i64) -> DomainEvent {
    let (name, i18n_names) = (chat.settings.name.clone(), chat.settings.i18n_names.clone());
    DomainEvent { chat_id: chat.chat_id.clone(), actor, at_ms, body: EventBody::UsersWithdrawn { users, name, i18n_names } }
}

fn owner_value(owner: &Owner) -> Value {
    serde_json::to_value(owner).unwrap_or(Value::Null)
}

/// The keys of Feishu's `ChatChange` (events spec §3.2) as this chat has them.
fn change_view(chat: &Chat) -> Vec<(&'static str, Value)> {
    let s = &chat.settings;
    vec![
        ("avatar", json!(s.avatar)),
        ("name", json!(s.name)),
        ("description", json!(s.description)),
        ("i18n_names", json!(s.i18n_names)),
        ("add_member_permission", json!(s.add_member_permission)),
        ("share_card_permission", json!(s.share_card_permission)),
        ("at_all_permission", json!(s.at_all_permission)),
        ("edit_permission", json!(s.edit_permission)),
        ("membership_approval", json!(s.membership_approval)),
        ("join_message_visibility", json!(s.join_message_visibility)),
        ("leave_message_visibility", json!(s.leave_message_visibility)),
        ("moderation_permission", json!(s.moderation_permission)),
        ("owner_id", owner_value(&chat.owner)),
        ("labels", json!(s.labels)),
        ("restricted_mode_setting", json!(s.restricted_mode_setting)),
        ("group_message_type", json!(s.group_message_type)),
    ]
}

/// What `after` has that `before` has not, in `after`'s order. A set: chats hold up to 5000 users.
fn added<T: Eq + std::hash::Hash + Clone>(before: &[T], after: &[T]) -> Vec<T> {
    if before == after {
        return Vec::new();
    }
    let before: std::collections::HashSet<&T> = before.iter().collect();
    after.iter().filter(|x| !before.contains(x)).cloned().collect()
}

/// What a change did to a chat, in a fixed order: disbanded (then nothing else), users added,
/// users deleted, bots added, bots deleted, managers added, managers removed, chat updated.
/// Members who leave also lose their manager rights; that is part of leaving, not an event.
pub fn chat_changes(before: &Chat, after: &Chat, actor: &Actor, at_ms: i64) -> Vec<DomainEvent> {
    let event = |body| DomainEvent { chat_id: after.chat_id.clone(), actor: actor.clone(), at_ms, body };
    let (name, i18n) = (after.settings.name.clone(), after.settings.i18n_names.clone());
    if before.status != ChatStatus::Dissolved && after.status == ChatStatus::Dissolved {
        return vec![event(EventBody::ChatDisbanded { name, i18n_names: i18n })];
    }
    let mut events = Vec::new();
    let users_in = added(&before.users, &after.users);
    if !users_in.is_empty() {
        events.push(event(EventBody::UsersAdded { users: users_in, name: name.clone(), i18n_names: i18n.clone() }));
    }
    let users_out = added(&after.users, &before.users);
    if !users_out.is_empty() {
        let left = actor.uid().is_some_and(|u| users_out == [u.clone()]);
        let reason = if left { Departure::Left } else { Departure::Removed };
        events.push(event(EventBody::UsersDeleted { users: users_out.clone(), reason, name: name.clone(), i18n_names: i18n.clone() }));
    }
    let bots_in = added(&before.bots, &after.bots);
    if !bots_in.is_empty() {
        events.push(event(EventBody::BotsAdded { bots: bots_in, name: name.clone(), i18n_names: i18n.clone() }));
    }
    let bots_out = added(&after.bots, &before.bots);
    if !bots_out.is_empty() {
        let left = matches!(actor, Actor::App(a) if bots_out == [a.clone()]);
        let reason = if left { Departure::Left } else { Departure::Removed };
        events.push(event(EventBody::BotsDeleted { bots: bots_out.clone(), reason, name: name.clone(), i18n_names: i18n.clone() }));
    }
    let (users, bots) = (added(&before.user_managers, &after.user_managers), added(&before.bot_managers, &after.bot_managers));
    if !users.is_empty() || !bots.is_empty() {
        events.push(event(EventBody::ManagersAdded { users, bots }));
    }
    let users: Vec<Uid> = added(&after.user_managers, &before.user_managers).into_iter().filter(|u| !users_out.contains(u)).collect();
    let bots: Vec<AppId> = added(&after.bot_managers, &before.bot_managers).into_iter().filter(|b| !bots_out.contains(b)).collect();
    if !users.is_empty() || !bots.is_empty() {
        events.push(event(EventBody::ManagersRemoved { users, bots }));
    }
    let (mut before_change, mut after_change) = (Map::new(), Map::new());
    for ((key, old), (_, new)) in change_view(before).into_iter().zip(change_view(after)) {
        if old != new {
            before_change.insert(key.to_string(), old);
            after_change.insert(key.to_string(), new);
        }
    }
    if !after_change.is_empty() {
        events.push(event(EventBody::ChatUpdated { before_change, after_change }));
    }
    events
}

/// The `@` mentions in a text or post message's content, numbered `@_user_1`, `@_user_2`, … in
/// order of appearance. Text writes them `<at user_id="ou_…">Name</at>` (also `id=` or
/// `open_id=`, quoted or not); post writes `{"tag": "at", "user_id": "…", "user_name": "…"}`.
pub fn parse_mentions(msg_type: &str, content: &str) -> Vec<Mention> {
    let Ok(value) = serde_json::from_str::<Value>(content) else {
        return Vec::new();
    };
    let mut found: Vec<(String, Option<String>)> = Vec::new();
    match msg_type {
        "text" => {
            if let Some(text) = value.get("text").and_then(Value::as_str) {
                found = text_mentions(text);
            }
        }
        "post" => {
            let body = value.get("post").unwrap_or(&value);
            if let Some(langs) = body.as_object() {
                for lang in langs.values() {
                    for row in lang.get("content").and_then(Value::as_array).into_iter().flatten() {
                        for el in row.as_array().into_iter().flatten() {
                            if el.get("tag").and_then(Value::as_str) == Some("at") {
                                if let Some(id) = el.get("user_id").and_then(Value::as_str) {
                                    let name = el.get("user_name").and_then(Value::as_str).map(str::to_string);
                                    found.push((id.to_string(), name));
                                }
                            }
                        }
                    }
                }
            }
        }
        _ => {}
    }
    found
        .into_iter()
        .enumerate()
        .map(|(i, (id, name))| Mention { key: format!("@_user_{}", i + 1), id, name, uid: None })
        .collect()
}

fn text_mentions(text: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("<at ") {
        let after = &rest[start + 4..];
        let Some(close) = after.find('>') else { break };
        let attrs = &after[..close];
        let inner = &after[close + 1..];
        let (name, next) = match inner.find("</at>") {
            Some(end) => (Some(inner[..end].trim().to_string()).filter(|n| !n.is_empty()), &inner[end + 5..]),
            None => (None, inner),
        };
        if let Some(id) = attr(attrs, "user_id").or_else(|| attr(attrs, "open_id")).or_else(|| attr(attrs, "id")) {
            out.push((id, name));
        }
        rest = next;
    }
    out
}

/// `key="v"`, `key='v'` or `key=v` among a tag's attributes.
fn attr(attrs: &str, key: &str) -> Option<String> {
    let mut search = attrs;
    loop {
        let at = search.find(key)?;
        let boundary = at == 0 || search[..at].ends_with(char::is_whitespace);
        let after = &search[at + key.len()..];
        if boundary && after.trim_start().starts_with('=') {
            let value = after.trim_start()[1..].trim_start();
            let v = match value.chars().next()? {
                q @ ('"' | '\'') => value[1..].split(q).next()?.to_string(),
                _ => value.split(char::is_whitespace).next()?.to_string(),
            };
            return Some(v);
        }
        search = after;
    }
}

/// Fills each mention's `uid` with the user `lookup` finds for its id.
pub fn resolve_mentions(mentions: Vec<Mention>, lookup: impl Fn(&str) -> Option<Uid>) -> Vec<Mention> {
    mentions.into_iter().map(|m| Mention { uid: lookup(&m.id), ..m }).collect()
}

/// The event of a message being sent into `chat` (a dedup hit sends nothing: no event).
pub fn message_sent(message: &Message, chat: &Chat, actor: Actor, mentions: Vec<Mention>) -> DomainEvent {
    let chat_type = if chat.is_group() { "group" } else { "p2p" };
    DomainEvent {
        chat_id: message.chat_id.clone(),
        actor,
        at_ms: message.created_at_ms,
        body: EventBody::MessageSent {
            message_id: message.message_id.clone(),
            chat_type: chat_type.to_string(),
            sender: message.sender.clone(),
            msg_type: message.msg_type.clone(),
            content: message.content.clone(),
            mentions,
            root_id: message.state.root_id.clone(),
            parent_id: message.state.parent_id.clone(),
            thread_id: message.state.thread_id.clone(),
        },
    }
}

/// The event of `message` being recalled by `actor` at `at_ms`.
pub fn message_recalled(message: &Message, recall_type: RecallType, actor: Actor, at_ms: i64) -> DomainEvent {
    DomainEvent {
        chat_id: message.chat_id.clone(),
        actor,
        at_ms,
        body: EventBody::MessageRecalled { message_id: message.message_id.clone(), recall_type },
    }
}

/// The event of a reaction being added (`created`) or removed, by its operator.
pub fn reaction_changed(reaction: &Reaction, created: bool, at_ms: i64) -> DomainEvent {
    let actor = match &reaction.operator {
        Sender::App(a) => Actor::App(a.clone()),
        Sender::CustomBot(a) => Actor::CustomBot(a.clone()),
        Sender::User(u) => Actor::ControlAsUser(u.clone()),
    };
    let (message_id, reaction_id, emoji_type, operator) =
        (reaction.message_id.clone(), reaction.reaction_id.clone(), reaction.emoji_type.clone(), reaction.operator.clone());
    let body = if created {
        EventBody::ReactionCreated { message_id, reaction_id, emoji_type, operator }
    } else {
        EventBody::ReactionDeleted { message_id, reaction_id, emoji_type, operator }
    };
    DomainEvent { chat_id: reaction.chat_id.clone(), actor, at_ms, body }
}

/// The event of `reader` reading `messages` (bots' messages) of a chat at `at_ms`; none when
/// nothing was newly read.
pub fn messages_read(chat_id: &ChatId, reader: &Uid, messages: &[Message], at_ms: i64) -> Option<DomainEvent> {
    let read: Vec<ReadMessage> = messages
        .iter()
        .filter_map(|m| match &m.sender {
            Sender::App(a) => Some(ReadMessage { message_id: m.message_id.clone(), sender: a.clone() }),
            Sender::User(_) | Sender::CustomBot(_) => None,
        })
        .collect();
    (!read.is_empty()).then(|| DomainEvent {
        chat_id: chat_id.clone(),
        actor: Actor::ControlAsUser(reader.clone()),
        at_ms,
        body: EventBody::MessagesRead { reader: reader.clone(), messages: read },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::chat::{ChatSettings, RestrictedModeSetting};
    use crate::domain::ids::TenantKey;

    fn chat() -> Chat {
        Chat {
            chat_id: ChatId("oc_1".into()),
            tenant_key: TenantKey("t".into()),
            creator_app: AppId("cli_a".into()),
            owner: Owner::User(Uid("u1".into())),
            external: false,
            status: ChatStatus::Normal,
            created_at_ms: 1,
            settings: serde_json::from_value::<ChatSettings>(json!({"name": "n"})).unwrap(),
            users: vec![Uid("u1".into()), Uid("u2".into())],
            user_join_keys: vec![1000, 1001],
            bots: vec![AppId("cli_a".into())],
            user_managers: vec![],
            bot_managers: vec![],
            last_active_at_ms: 1,
        }
    }

    fn types(events: &[DomainEvent]) -> Vec<&'static str> {
        events.iter().map(DomainEvent::type_name).collect()
    }

    const APP: fn() -> Actor = || Actor::App(AppId("cli_a".into()));

    #[test]
    fn no_change_no_event() {
        let c = chat();
        assert!(chat_changes(&c, &c, &APP(), 5).is_empty());
    }

    #[test]
    fn users_added_removed_and_left() {
        let before = chat();
        let mut after = before.clone();
        after.add_users([Uid("u3".into())], 5);
        let ev = chat_changes(&before, &after, &APP(), 5);
        assert_eq!(types(&ev), ["im.chat.member.user.added_v1"]);
        assert_eq!(ev[0].actor, APP());
        assert!(matches!(&ev[0].body, EventBody::UsersAdded { users, .. } if users == &[Uid("u3".into())]));

        let mut after = before.clone();
        after.remove_user(&Uid("u2".into()));
        let ev = chat_changes(&before, &after, &APP(), 5);
        assert!(matches!(&ev[0].body, EventBody::UsersDeleted { reason: Departure::Removed, .. }));
        let ev = chat_changes(&before, &after, &Actor::ControlAsUser(Uid("u2".into())), 5);
        assert!(matches!(&ev[0].body, EventBody::UsersDeleted { reason: Departure::Left, users, .. } if users == &[Uid("u2".into())]));
        assert_eq!(ev[0].actor, Actor::ControlAsUser(Uid("u2".into())));
    }

    #[test]
    fn bots_added_and_left() {
        let before = chat();
        let mut after = before.clone();
        after.bots.push(AppId("cli_b".into()));
        assert_eq!(types(&chat_changes(&before, &after, &APP(), 5)), ["im.chat.member.bot.added_v1"]);
        let mut after = before.clone();
        after.bots.clear();
        let ev = chat_changes(&before, &after, &APP(), 5);
        assert!(matches!(&ev[0].body, EventBody::BotsDeleted { reason: Departure::Left, .. }));
        let ev = chat_changes(&before, &after, &Actor::App(AppId("cli_b".into())), 5);
        assert!(matches!(&ev[0].body, EventBody::BotsDeleted { reason: Departure::Removed, .. }));
    }

    #[test]
    fn managers_added_and_removed() {
        let before = chat();
        let mut after = before.clone();
        after.user_managers.push(Uid("u2".into()));
        after.bot_managers.push(AppId("cli_a".into()));
        let ev = chat_changes(&before, &after, &APP(), 5);
        assert_eq!(types(&ev), ["larkstack.chat.managers.added_v1"]);
        let ev = chat_changes(&after, &before, &APP(), 5);
        assert_eq!(types(&ev), ["larkstack.chat.managers.removed_v1"]);
        // A manager who is removed loses the rights as part of leaving: one event.
        let mut gone = after.clone();
        gone.remove_user(&Uid("u2".into()));
        gone.bot_managers.clear();
        let mut from = after.clone();
        from.bot_managers.clear();
        assert_eq!(types(&chat_changes(&from, &gone, &APP(), 5)), ["im.chat.member.user.deleted_v1"]);
    }

    #[test]
    fn updated_lists_changed_keys_only_with_owner_transfer() {
        let before = chat();
        let mut after = before.clone();
        after.settings.name = "m".into();
        after.owner = Owner::User(Uid("u2".into()));
        after.settings.restricted_mode_setting = RestrictedModeSetting { status: true, ..Default::default() };
        after.settings.chat_tags = vec!["x".into()]; // not a key of Feishu's ChatChange
        let ev = chat_changes(&before, &after, &APP(), 5);
        assert_eq!(types(&ev), ["im.chat.updated_v1"]);
        let EventBody::ChatUpdated { before_change, after_change } = &ev[0].body else { panic!() };
        let keys: Vec<&String> = after_change.keys().collect();
        assert_eq!(keys, ["name", "owner_id", "restricted_mode_setting"]);
        assert_eq!(before_change["name"], "n");
        assert_eq!(after_change["owner_id"], json!({"kind": "user", "id": "u2"}));
        assert_eq!(before_change["owner_id"], json!({"kind": "user", "id": "u1"}));
    }

    #[test]
    fn disbanded_is_the_only_event() {
        let before = chat();
        let mut after = before.clone();
        after.status = ChatStatus::Dissolved;
        after.users.clear();
        assert_eq!(types(&chat_changes(&before, &after, &APP(), 5)), ["im.chat.disbanded_v1"]);
    }

    #[test]
    fn a_refused_change_has_no_events() {
        let change = tracked(APP(), 5, |chat| {
            chat.settings.name = "x".into();
            Err(crate::error::ChatErr::InvalidParam.err())
        });
        let mut c = chat();
        assert!(change(&mut c).is_err());
    }

    #[test]
    fn created_and_message_events() {
        let c = chat();
        let ev = chat_created(&c, APP(), 1);
        assert_eq!(ev.type_name(), "larkstack.chat.created_v1");
        let m = Message {
            message_id: MessageId("om_1".into()),
            chat_id: c.chat_id.clone(),
            msg_type: "text".into(),
            content: r#"{"text":"<at user_id=\"ou_1\">Tom</at> hi <at user_id=\"all\"></at>"}"#.into(),
            sender: Sender::App(AppId("cli_a".into())),
            sender_tenant: TenantKey("t".into()),
            created_at_ms: 9,
            state: Default::default(),
        };
        let mentions = parse_mentions(&m.msg_type, &m.content);
        let ev = message_sent(&m, &c, Actor::App(AppId("cli_a".into())), mentions);
        let EventBody::MessageSent { chat_type, mentions, .. } = &ev.body else { panic!() };
        assert_eq!(chat_type, "group");
        assert_eq!(mentions.len(), 2);
        assert_eq!((mentions[0].key.as_str(), mentions[0].id.as_str(), mentions[0].name.as_deref()), ("@_user_1", "ou_1", Some("Tom")));
        assert_eq!((mentions[1].key.as_str(), mentions[1].id.as_str()), ("@_user_2", "all"));
        // Round trip through the stored form.
        let stored = StoredEvent { seq: 3, event: ev.clone() };
        let v = serde_json::to_value(&stored).unwrap();
        assert_eq!(v["type"], "im.message.receive_v1");
        assert_eq!(v["seq"], 3);
        assert_eq!(serde_json::from_value::<StoredEvent>(v).unwrap(), stored);
    }

    #[test]
    fn post_mentions() {
        let content = r#"{"zh_cn":{"title":"t","content":[[{"tag":"at","user_id":"ou_9","user_name":"Sophia"},{"tag":"text","text":" hi"}]]}}"#;
        let m = parse_mentions("post", content);
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].key.as_str(), m[0].id.as_str(), m[0].name.as_deref()), ("@_user_1", "ou_9", Some("Sophia")));
        assert!(parse_mentions("image", r#"{"image_key":"k"}"#).is_empty());
    }
}
