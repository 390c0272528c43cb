//! Control endpoints that look inside (chats, tasks) and that act as a person would in the
//! Feishu client: post into a chat, join it, leave it, add a bot to it.

use std::sync::Arc;

use axum::extract::State;
use serde::Deserialize;
use serde_json::json;

use super::{control_error, json_body};
use crate::api::extract::{PathPair, PathParam, RawBody};
use crate::domain::chat::{new_p2p_chat, Chat, ChatStatus, Owner};
use crate::domain::directory::{Directory, User};
use crate::domain::events::{
    chat_created, message_sent, messages_read, parse_mentions, resolve_mentions, tracked, Actor, DomainEvent, EventBody,
};
use crate::domain::ids::{new_message_id, AppId, ChatId, MessageId, Uid};
use crate::domain::message::{validate_content, Message, Sender, READ_USERS_WINDOW_MS};
use crate::domain::reaction::emoji_type;
use crate::envelope::{ok, ApiError, ApiResult};
use crate::error::ControlErr;
use crate::state::AppState;
use crate::store::{NewMessage, ReadMark};

const MAX_PAGE: usize = 500;

#[derive(Deserialize)]
pub struct Page {
    after: Option<i64>,
    limit: Option<usize>,
}

pub(super) fn person(dir: &Directory, uid: &Uid) -> serde_json::Value {
    match dir.user(uid) {
        Some(u) => json!({"key": u.key, "name": u.name, "tenant_key": u.tenant_key, "kunlun_id": u.kunlun_id}),
        None => json!({"key": null, "uid": uid}),
    }
}

pub(super) fn bot(dir: &Directory, app_id: &crate::domain::ids::AppId) -> serde_json::Value {
    json!({"app_id": app_id, "name": dir.app(app_id).map(|a| a.name.as_str())})
}

fn summary(dir: &Directory, seq: i64, chat: &Chat) -> serde_json::Value {
    json!({
        "seq": seq,
        "chat_id": chat.chat_id,
        "name": chat.settings.name,
        "tenant_key": chat.tenant_key,
        "chat_mode": chat.settings.chat_mode,
        "chat_type": chat.settings.chat_type,
        "external": chat.external,
        "status": chat.status,
        "created_at_ms": chat.created_at_ms,
        "last_active_at_ms": chat.last_active_at_ms,
        "user_count": chat.users.len(),
        "bot_count": chat.bots.len(),
        "owner": match &chat.owner {
            Owner::User(uid) => json!({"user": person(dir, uid)}),
            Owner::Bot(app) => json!({"bot": bot(dir, app)}),
        },
        "creator": bot(dir, &chat.creator_app),
    })
}

/// Every chat of every tenant, oldest first, `limit` (≤ 500, default 100) after `after`.
#[utoipa::path(
    get,
    path = "/_larkstack/chats",
    operation_id = "control_list_chats",
    tag = "control",
    summary = "Every chat of every tenant, oldest first",
    params(
        ("after" = Option<i64>, Query, description = "Chats after this seq"),
        ("limit" = Option<u64>, Query, description = "At most 500, default 100"),
    ),
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn list_chats(State(state): State<Arc<AppState>>, uri: axum::http::Uri) -> ApiResult {
    let page: Page = super::query(&uri)?;
    let limit = page.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let chats = state.store.all_chats(page.after.unwrap_or(0), limit).await?;
    let dir = state.directory();
    let next = chats.last().map(|(seq, _)| *seq).filter(|_| chats.len() == limit);
    let items: Vec<_> = chats.iter().map(|(seq, c)| summary(&dir, *seq, c)).collect();
    Ok(ok(&json!({ "items": items, "next_after": next, "stats": state.store.stats().await? })))
}

pub(super) async fn chat_or_404(state: &AppState, chat_id: &str) -> Result<Chat, ApiError> {
    state.store.get_chat(&ChatId(chat_id.to_string())).await?.ok_or_else(|| control_error(ControlErr::NotFound, format!("no chat {chat_id}")))
}

/// One chat with its settings, members, pending invitations, managers, custom bots, the tasks it
/// is linked to and its latest 100 messages.
#[utoipa::path(
    get,
    path = "/_larkstack/chats/{chat_id}",
    operation_id = "control_chat_detail",
    tag = "control",
    summary = "One chat with members, managers, tasks and latest messages",
    params(("chat_id" = String, Path, description = "The chat (oc_…)")),
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn chat_detail(State(state): State<Arc<AppState>>, headers: axum::http::HeaderMap, PathParam(chat_id): PathParam) -> ApiResult {
    let chat = chat_or_404(&state, &chat_id).await?;
    let dir = state.directory();
    let custom_bots = state.store.custom_bots(&chat.chat_id).await?;
    let messages = state
        .store
        .list_messages(crate::store::MessageQuery::latest(chat.chat_id.clone(), 100))
        .await?;
    let messages: Vec<_> = messages
        .into_iter()
        .rev()
        .map(|(_, m)| {
            let sender = match &m.sender {
                Sender::App(app) => json!({"bot": bot(&dir, app)}),
                Sender::User(uid) => json!({"user": person(&dir, uid)}),
                Sender::CustomBot(id) => {
                    let name = custom_bots.iter().find(|b| &b.bot_id == id).map(|b| b.name.as_str());
                    json!({"custom_bot": {"bot_id": id, "name": name}})
                }
            };
            json!({"message_id": m.message_id, "msg_type": m.msg_type, "content": m.content, "sender": sender, "created_at_ms": m.created_at_ms})
        })
        .collect();
    let links = state.store.task_links().await?;
    let tasks: Vec<_> = links
        .iter()
        .filter(|l| l.link.chat_id == chat.chat_id)
        .map(|l| json!({"task_id": l.task_id, "key": dir.apaas().task(&l.task_id).map(|t| t.key.as_str())}))
        .collect();
    // Pending invitations are stored with the settings but are not one: they have their own key.
    let mut settings = serde_json::to_value(&chat.settings).unwrap_or_default();
    if let Some(s) = settings.as_object_mut() {
        s.remove("pending_invitations");
    }
    Ok(ok(&json!({
        "chat": summary(&dir, 0, &chat),
        "settings": settings,
        "pending_invitations": super::invitations::view(&dir, &chat),
        "members": chat.users.iter().map(|u| person(&dir, u)).collect::<Vec<_>>(),
        "bots": chat.bots.iter().map(|b| bot(&dir, b)).collect::<Vec<_>>(),
        "user_managers": chat.user_managers.iter().map(|u| person(&dir, u)).collect::<Vec<_>>(),
        "bot_managers": chat.bot_managers.iter().map(|b| bot(&dir, b)).collect::<Vec<_>>(),
        "tasks": tasks,
        "messages": messages,
        "custom_bots": custom_bots.iter().map(|b| super::custom_bots::view(b, &headers)).collect::<Vec<_>>(),
    })))
}

/// aPaaS tasks with the chats linked to them.
#[utoipa::path(
    get,
    path = "/_larkstack/tasks",
    tag = "control",
    summary = "aPaaS tasks with their linked chats",
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn tasks(State(state): State<Arc<AppState>>) -> ApiResult {
    let dir = state.directory();
    let links = state.store.task_links().await?;
    let mut items = Vec::new();
    for task in &dir.apaas().tasks {
        let w = dir.apaas().workflow_of(task);
        let chats: Vec<_> = links.iter().filter(|l| l.task_id == task.task_id).map(|l| &l.link).collect();
        items.push(json!({
            "key": task.key,
            "task_id": task.task_id,
            "status": task.status,
            "tenant_key": w.tenant_key,
            "workflow_instance": {"id": w.id, "label": w.label, "status": w.status, "api_id": w.api_id},
            "initiator": person(&dir, &w.initiator),
            "assignees": task.assignees.iter().map(|u| person(&dir, u)).collect::<Vec<_>>(),
            "cc": task.cc.iter().map(|u| person(&dir, u)).collect::<Vec<_>>(),
            "start_time_ms": task.start_time_ms,
            "chats": chats,
        }));
    }
    Ok(ok(&json!({ "items": items })))
}

/// A message from a user: `{user, text}` or `{user, msg_type, content}`.
#[derive(Deserialize, utoipa::ToSchema)]
struct ActAs {
    /// The fixture key of the user.
    user: String,
    text: Option<String>,
    msg_type: Option<String>,
    /// A JSON string, as in the message API.
    content: Option<String>,
}

pub(super) fn user_by_key<'d>(dir: &'d Directory, key: &str) -> Result<&'d User, ApiError> {
    dir.users().iter().find(|u| u.key == key).ok_or_else(|| control_error(ControlErr::BadRequest, format!("no user with key {key:?}")))
}

pub(super) fn usable(chat: &Chat) -> Result<(), ApiError> {
    if chat.status == ChatStatus::Dissolved {
        return Err(control_error(ControlErr::BadRequest, "the chat has been disbanded"));
    }
    Ok(())
}

/// Posts a message as a user, as from the Feishu client. Body: `{user, text}` or `{user, msg_type, content}`.
#[utoipa::path(
    post,
    path = "/_larkstack/chats/{chat_id}/messages",
    tag = "control",
    summary = "Post a message as a user",
    params(("chat_id" = String, Path, description = "The chat (oc_…)")),
    request_body(content = ActAs, content_type = "application/json"),
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn post_as_user(State(state): State<Arc<AppState>>, PathParam(chat_id): PathParam, RawBody(body): RawBody) -> ApiResult {
    let act: ActAs = json_body(&body)?;
    let dir = state.directory();
    let user = user_by_key(&dir, &act.user)?;
    let chat = chat_or_404(&state, &chat_id).await?;
    usable(&chat)?;
    if !chat.has_user(&user.uid) {
        return Err(control_error(ControlErr::BadRequest, format!("{} is not in the chat", user.key)));
    }
    let (msg_type, content) = match (act.text, act.msg_type, act.content) {
        (Some(text), None, None) => ("text".to_string(), json!({ "text": text }).to_string()),
        (None, Some(t), Some(c)) => (t, c),
        _ => return Err(control_error(ControlErr::BadRequest, "give `text`, or `msg_type` and `content`")),
    };
    validate_content(&msg_type, &content).map_err(|e| control_error(ControlErr::BadRequest, format!("{}: {:?}", e.msg, e.field_violations)))?;
    // A user sends what was uploaded in their tenant (by any app: see docs/parity.md).
    let sender = crate::domain::media::Sender::User(&user.tenant_key);
    crate::api::im::media::check_message_resources(&state, &msg_type, &content, sender).await.map_err(|e| match e {
        ApiError::Feishu(e) => control_error(ControlErr::BadRequest, format!("{}: {:?}", e.msg, e.field_violations)),
        other => other,
    })?;
    let now = state.clock.now_ms();
    let message = Message {
        message_id: new_message_id(now),
        chat_id: chat.chat_id.clone(),
        msg_type,
        content,
        sender: Sender::User(user.uid.clone()),
        sender_tenant: user.tenant_key.clone(),
        created_at_ms: now,
        state: Default::default(),
    };
    // Mentions name users by their fixture key (the control API's way of naming users).
    let mentions = resolve_mentions(parse_mentions(&message.msg_type, &message.content), |id| {
        dir.users().iter().find(|u| u.key == id).map(|u| u.uid.clone())
    });
    let events = vec![message_sent(&message, &chat, Actor::ControlAsUser(user.uid.clone()), mentions)];
    let stored = state.store.create_message(NewMessage { message, dedup: None, dedup_window_start_ms: 0, events }).await?;
    Ok(ok(&json!({ "message_id": stored.message_id, "chat_id": stored.chat_id })))
}

/// A user, by fixture key.
#[derive(Deserialize, utoipa::ToSchema)]
struct Someone {
    user: String,
}

/// A user joins the chat (someone shared it with them). Users of other tenants only join external chats.
#[utoipa::path(
    post,
    path = "/_larkstack/chats/{chat_id}/join",
    tag = "control",
    summary = "A user joins the chat",
    params(("chat_id" = String, Path, description = "The chat (oc_…)")),
    request_body(content = Someone, content_type = "application/json"),
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn join_as_user(State(state): State<Arc<AppState>>, PathParam(chat_id): PathParam, RawBody(body): RawBody) -> ApiResult {
    let who: Someone = json_body(&body)?;
    let dir = state.directory();
    let user = user_by_key(&dir, &who.user)?;
    if !user.is_active() {
        return Err(control_error(ControlErr::BadRequest, format!("{} has resigned", user.key)));
    }
    let (uid, tenant, now) = (user.uid.clone(), user.tenant_key.clone(), state.clock.now_ms());
    change(&state, &chat_id, &uid.clone(), move |chat| {
        if chat.status == ChatStatus::Dissolved {
            return Err("the chat has been disbanded".into());
        }
        if chat.tenant_key != tenant && !chat.external {
            return Err("users of another tenant only join external chats".into());
        }
        if chat.users.len() >= crate::domain::chat_ops::MAX_USERS_PER_CHAT {
            return Err("the chat is full".into());
        }
        if !chat.has_user(&uid) {
            chat.add_users([uid], now);
        }
        Ok(())
    })
    .await
}

/// A user and the bot they add.
#[derive(Deserialize, utoipa::ToSchema)]
struct SomeoneAddsABot {
    user: String,
    /// The bot's app (cli_…).
    app_id: String,
}

/// A member adds a bot to the group chat, as from the chat's settings in the client (Feishu then
/// sends the bot `im.chat.member.bot.added_v1`).
#[utoipa::path(
    post,
    path = "/_larkstack/chats/{chat_id}/bots",
    tag = "control",
    summary = "A user adds a bot to the chat",
    params(("chat_id" = String, Path, description = "The chat (oc_…)")),
    request_body(content = SomeoneAddsABot, content_type = "application/json"),
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn add_bot_as_user(State(state): State<Arc<AppState>>, PathParam(chat_id): PathParam, RawBody(body): RawBody) -> ApiResult {
    let req: SomeoneAddsABot = json_body(&body)?;
    let dir = state.directory();
    let user = user_by_key(&dir, &req.user)?;
    if !user.is_active() {
        return Err(control_error(ControlErr::BadRequest, format!("{} has resigned", user.key)));
    }
    let bot = dir.app(&AppId(req.app_id.clone())).cloned().ok_or_else(|| control_error(ControlErr::NotFound, format!("no app {}", req.app_id)))?;
    let uid = user.uid.clone();
    change(&state, &chat_id, &uid.clone(), move |chat| crate::domain::chat_ops::apply_user_adds_bot(chat, &uid, &bot).map_err(String::from)).await
}

/// A user leaves the chat. The owner has to hand the chat over first, as in the client.
#[utoipa::path(
    post,
    path = "/_larkstack/chats/{chat_id}/leave",
    tag = "control",
    summary = "A user leaves the chat",
    params(("chat_id" = String, Path, description = "The chat (oc_…)")),
    request_body(content = Someone, content_type = "application/json"),
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn leave_as_user(State(state): State<Arc<AppState>>, PathParam(chat_id): PathParam, RawBody(body): RawBody) -> ApiResult {
    let who: Someone = json_body(&body)?;
    let dir = state.directory();
    let uid = user_by_key(&dir, &who.user)?.uid.clone();
    change(&state, &chat_id, &uid.clone(), move |chat| {
        if chat.status == ChatStatus::Dissolved {
            return Err("the chat has been disbanded".into());
        }
        if !chat.has_user(&uid) {
            return Err("the user is not in the chat".into());
        }
        if chat.owner == Owner::User(uid.clone()) {
            return Err("the owner can not leave; transfer the chat first".into());
        }
        chat.remove_user(&uid);
        Ok(())
    })
    .await
}

/// Runs an atomic change acting as user `uid`; a refusal (a plain message) is a 400.
async fn change(
    state: &AppState,
    chat_id: &str,
    uid: &Uid,
    f: impl FnOnce(&mut Chat) -> Result<(), String> + Send + 'static,
) -> ApiResult {
    let actor = Actor::ControlAsUser(uid.clone());
    let change = tracked(actor, state.clock.now_ms(), move |chat: &mut Chat| f(chat).map_err(|why| ControlErr::BadRequest.with_msg(why)));
    match state.store.modify_chat(&ChatId(chat_id.to_string()), change).await? {
        None => Err(control_error(ControlErr::NotFound, format!("no chat {chat_id}"))),
        Some(Ok(chat)) => Ok(ok(&json!({ "chat_id": chat.chat_id, "user_count": chat.users.len() }))),
        Some(Err(e)) => Err(ApiError::Feishu(e)),
    }
}

/// A user opens the bot's p2p chat in the Feishu client: the chat is created if there is none yet
/// (owned by the bot, as when the bot writes first), and `im.chat.access_event.bot_p2p_chat_entered_v1`
/// is recorded with the chat's latest message.
#[utoipa::path(
    post,
    path = "/_larkstack/users/{user}/p2p/{app_id}/enter",
    tag = "control",
    summary = "A user opens a bot's p2p chat",
    params(
        ("user" = String, Path, description = "The user's fixture key"),
        ("app_id" = String, Path, description = "The bot's app (cli_…)"),
    ),
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn enter_p2p(State(state): State<Arc<AppState>>, PathPair(user_key, app_id): PathPair) -> ApiResult {
    let dir = state.directory();
    let user = user_by_key(&dir, &user_key)?;
    let app = dir.app(&AppId(app_id.clone())).ok_or_else(|| control_error(ControlErr::NotFound, format!("no app {app_id}")))?;
    if !user.is_active() {
        return Err(control_error(ControlErr::BadRequest, format!("{} has resigned", user.key)));
    }
    if !app.bot || !app.enabled_in(&user.tenant_key) || !app.can_see(user) {
        return Err(control_error(ControlErr::BadRequest, format!("{} has no bot {} can open", app_id, user.key)));
    }
    let tenant = dir.tenant(&user.tenant_key).ok_or_else(|| control_error(ControlErr::Failed, "the user's tenant is missing"))?;
    let actor = Actor::ControlAsUser(user.uid.clone());
    let now = state.clock.now_ms();
    let new = new_p2p_chat(app, tenant, user, now);
    let entered = |chat_id: &ChatId, last: Option<&Message>| DomainEvent {
        chat_id: chat_id.clone(),
        actor: actor.clone(),
        at_ms: now,
        body: EventBody::BotP2pChatEntered {
            last_message_id: last.map(|m| m.message_id.clone()),
            last_message_create_time_ms: last.map(|m| m.created_at_ms),
        },
    };
    // A new chat is created with both events in one transaction; an existing one gets the
    // entered event through an empty change, committed on its own.
    let events = vec![chat_created(&new, actor.clone(), now), entered(&new.chat_id, None)];
    let new_id = new.chat_id.clone();
    let chat = state.store.p2p_chat(&app.app_id, &user.uid, new, events).await?;
    let created = chat.chat_id == new_id;
    if !created {
        let last = state
            .store
            .list_messages(crate::store::MessageQuery::latest(chat.chat_id.clone(), 1))
            .await?
            .pop()
            .map(|(_, m)| m);
        let event = entered(&chat.chat_id, last.as_ref());
        let change: crate::store::ChatChange = Box::new(move |_: &mut Chat| Ok(vec![event]));
        match state.store.modify_chat(&chat.chat_id, change).await? {
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(ApiError::Feishu(e)),
            None => return Err(control_error(ControlErr::NotFound, format!("no chat {}", chat.chat_id.0))),
        }
    }
    Ok(ok(&json!({ "chat_id": chat.chat_id, "created": created })))
}

/// The newest messages one read action marks at most (docs/parity.md, "Message operations").
const MAX_READ_PER_ACTION: usize = 500;

/// A user reads the chat in the Feishu client: every bot's message of the last 7 days (the
/// newest 500, not recalled) the user has not read yet gets a read receipt at the larkstack
/// clock, with one `im.message.message_read_v1` (delivered for p2p chats only).
#[utoipa::path(
    post,
    path = "/_larkstack/chats/{chat_id}/read",
    tag = "control",
    summary = "A user reads the chat",
    params(("chat_id" = String, Path, description = "The chat (oc_…)")),
    request_body(content = Someone, content_type = "application/json"),
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn read_as_user(State(state): State<Arc<AppState>>, PathParam(chat_id): PathParam, RawBody(body): RawBody) -> ApiResult {
    let who: Someone = json_body(&body)?;
    let dir = state.directory();
    let user = user_by_key(&dir, &who.user)?;
    let chat = chat_or_404(&state, &chat_id).await?;
    usable(&chat)?;
    if !chat.has_user(&user.uid) {
        return Err(control_error(ControlErr::BadRequest, format!("{} is not in the chat", user.key)));
    }
    let now = state.clock.now_ms();
    let (chat_id, uid) = (chat.chat_id.clone(), user.uid.clone());
    let events: crate::store::ReadEvents = Box::new(move |read| messages_read(&chat_id, &uid, read, now).into_iter().collect());
    let mark = ReadMark {
        chat_id: chat.chat_id.clone(),
        uid: user.uid.clone(),
        at_ms: now,
        since_ms: now - READ_USERS_WINDOW_MS,
        limit: MAX_READ_PER_ACTION,
        events,
    };
    let read = state.store.mark_read(mark).await?;
    Ok(ok(&json!({ "chat_id": chat.chat_id, "read_message_ids": read.iter().map(|m| &m.message_id).collect::<Vec<_>>() })))
}

/// A user's reaction: `{user, emoji_type}`.
#[derive(Deserialize, utoipa::ToSchema)]
struct React {
    /// The fixture key of the user.
    user: String,
    /// One of Feishu's emoji types (`SMILE`, `THUMBSUP`, …).
    emoji_type: String,
}

/// The message, unless it is unknown or recalled: 404 in the control API's envelope.
pub(super) async fn live_message_or_404(state: &AppState, message_id: &str) -> Result<Message, ApiError> {
    state
        .store
        .get_message(&MessageId(message_id.to_string()))
        .await?
        .filter(|m| !m.is_recalled())
        .ok_or_else(|| control_error(ControlErr::NotFound, format!("no message {message_id}")))
}

/// A user reacts to a message in the Feishu client: the bots in the chat receive
/// `im.message.reaction.created_v1`. The same emoji from the same user again answers the first.
#[utoipa::path(
    post,
    path = "/_larkstack/messages/{message_id}/reactions",
    tag = "control",
    summary = "A user reacts to a message",
    params(("message_id" = String, Path, description = "The message (om_…)")),
    request_body(content = React, content_type = "application/json"),
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn react_as_user(State(state): State<Arc<AppState>>, PathParam(message_id): PathParam, RawBody(body): RawBody) -> ApiResult {
    let act: React = json_body(&body)?;
    let dir = state.directory();
    let user = user_by_key(&dir, &act.user)?;
    let message = live_message_or_404(&state, &message_id).await?;
    let chat = chat_or_404(&state, &message.chat_id.0).await?;
    usable(&chat)?;
    if !chat.has_user(&user.uid) {
        return Err(control_error(ControlErr::BadRequest, format!("{} is not in the chat", user.key)));
    }
    let emoji = emoji_type(Some(&act.emoji_type)).map_err(|_| control_error(ControlErr::BadRequest, format!("unknown emoji_type {:?}", act.emoji_type)))?;
    let reaction = crate::api::im::reactions::add(&state, &message, Sender::User(user.uid.clone()), emoji.to_string()).await?;
    Ok(ok(&json!({ "reaction_id": reaction.reaction_id, "message_id": reaction.message_id, "emoji_type": reaction.emoji_type })))
}
