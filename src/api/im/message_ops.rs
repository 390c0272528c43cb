//! What a bot does with a message once it exists (spec §5): reply to it, read it, edit it,
//! update its card, recall it, forward it, and ask who read it.
//!
//! Every handler first finds the message and checks that the calling bot is in its chat as the
//! token's tenant's bot (`reach`), then reads its parameters: a token of another tenant learns
//! nothing about the message, whatever else its request says.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use serde::Deserialize;

use super::messages::{message_chat, message_view, target_chat, MAX_UUID_CHARS, READ_SCOPES, SEND_SCOPES};
use super::{decode_cursor, encode_cursor, page_size, user_ref, ImCall};
use crate::api::extract::{parse_json, PathParam, QueryParams, RawBody};
use crate::domain::chat::{Chat, Owner};
use crate::domain::directory::{App, Directory, Tenant, UserIdType};
use crate::domain::events::{message_recalled, message_sent, parse_mentions, resolve_mentions, Actor};
use crate::domain::ids::{new_message_id, new_thread_id, MessageId};
use crate::domain::message::{
    edit, invalid, may_recall, patch_card, recalled, validate_content, Message, MessageState, Sender,
    MESSAGE_DEDUP_WINDOW_MS, READ_USERS_WINDOW_MS,
};
use crate::envelope::{ok, ApiError, ApiResult};
use crate::error::{FeishuError, MessageErr};
use crate::ratelimit::Family;
use crate::state::AppState;
use crate::store::{Cursor, MessageChange, MessageDedupKey, NewMessage, ReadQuery};

const UPDATE_SCOPES: &[&str] = &["im:message", "im:message:send_as_bot", "im:message:update"];
const RECALL_SCOPES: &[&str] = &["im:message", "im:message:recall", "im:message:send_as_bot"];
const READ_USERS_SCOPES: &[&str] = &["im:message", "im:message:readonly", "im:message:basic"];

/// The message a path names and its chat, when the calling bot is in that chat as the token's
/// tenant's bot: no such message is 230001 (`invalid message_id`), another tenant's chat or one
/// without the bot 230002, a disbanded chat 232009. Recalled messages are returned: each
/// operation decides (most answer 230011).
pub(super) async fn reach(
    state: &AppState,
    dir: &Directory,
    app: &App,
    tenant: &Tenant,
    message_id: &str,
) -> Result<(Message, Chat), ApiError> {
    let missing = || ApiError::Feishu(invalid("message_id", "invalid message_id"));
    let message = state.store.get_message(&MessageId(message_id.to_string())).await?.ok_or_else(missing)?;
    let chat = state.store.get_chat(&message.chat_id).await?.ok_or_else(missing)?;
    message_chat(dir, app, tenant, &chat)?;
    Ok((message, chat))
}

/// `reach`, refusing a recalled message (230011).
async fn reach_live(state: &AppState, dir: &Directory, app: &App, tenant: &Tenant, message_id: &str) -> Result<(Message, Chat), ApiError> {
    let (message, chat) = reach(state, dir, app, tenant, message_id).await?;
    if message.is_recalled() {
        return Err(ApiError::Feishu(recalled()));
    }
    Ok((message, chat))
}

/// Runs an atomic change on the message; a message gone meanwhile is 230001.
async fn change_message(state: &AppState, id: &MessageId, change: MessageChange) -> Result<Message, ApiError> {
    let outcome = state.store.update_message(id, change).await?;
    Ok(outcome.ok_or_else(|| ApiError::Feishu(invalid("message_id", "invalid message_id")))??)
}

/// `user_id_type` of the message reads: open_id by default (230001 otherwise).
fn message_user_id_type(q: &QueryParams) -> Result<UserIdType, FeishuError> {
    match q.get("user_id_type") {
        None | Some("") => Ok(UserIdType::OpenId),
        Some(v) => UserIdType::parse(v).ok_or_else(|| invalid("user_id_type", "open_id, union_id or user_id")),
    }
}

fn required(field: &str, v: Option<String>) -> Result<String, FeishuError> {
    v.filter(|s| !s.is_empty()).ok_or_else(|| invalid(field, "required"))
}

fn dedup_key(app: &App, uuid: Option<String>) -> Result<Option<MessageDedupKey>, FeishuError> {
    if uuid.as_ref().is_some_and(|u| u.chars().count() > MAX_UUID_CHARS) {
        return Err(invalid("uuid", "at most 50 characters"));
    }
    Ok(uuid.filter(|u| !u.is_empty()).map(|uuid| MessageDedupKey { app_id: app.app_id.clone(), uuid }))
}

/// A reply: `content` is a JSON string whose shape depends on `msg_type`.
#[derive(Deserialize, utoipa::ToSchema)]
struct ReplyBody {
    content: Option<String>,
    msg_type: Option<String>,
    /// Reply in the message's thread (created on the first thread reply). Default false.
    reply_in_thread: Option<bool>,
    /// Dedup key, at most 50 characters, live for an hour.
    uuid: Option<String>,
}

/// Replies to a message as the calling bot: the reply is a message of the same chat whose
/// `root_id` is the chain's first message and `parent_id` the message replied to; in a thread
/// (`reply_in_thread`, or a parent already in one) it carries the thread's `omt_…` id. Image,
/// file and post replies name keys the bot uploaded, as sent messages do (230001, 230017, 230055).
///
/// Side effects, in order:
/// 1. one unit of the app's reply budget, then one of the chat's (5/s, 230020);
/// 2. for the first thread reply: the root message gets its thread id (a change of its own);
/// 3. one durable write of the reply with its `im.message.receive_v1` (a live `uuid` answers the
///    first reply instead, and writes nothing).
#[utoipa::path(
    post,
    path = "/open-apis/im/v1/messages/{message_id}/reply",
    operation_id = "reply_message",
    tag = "im",
    summary = "Reply to a message",
    params(("message_id" = String, Path, description = "The message replied to (om_…)")),
    request_body(content = ReplyBody, content_type = "application/json"),
    security(("tenant_access_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn reply(State(state): State<Arc<AppState>>, headers: HeaderMap, PathParam(message_id): PathParam, RawBody(body): RawBody) -> ApiResult {
    let call = ImCall::begin(&state, &headers, Family::ReplyMessage, SEND_SCOPES).await?;
    let (app, tenant) = call.caller()?;
    let (parent, chat) = reach_live(&state, &call.dir, app, tenant, &message_id).await?;
    let body: ReplyBody = parse_json(&body, invalid)?;
    let msg_type = required("msg_type", body.msg_type)?;
    let content = required("content", body.content)?;
    let dedup = dedup_key(app, body.uuid)?;
    validate_content(&msg_type, &content)?;
    if msg_type == "system" {
        return Err(ApiError::Feishu(invalid("msg_type", "system messages can not be replies")));
    }
    // A reply is a message sent: the keys it names must be the bot's own uploads, as for send.
    let sender = crate::domain::media::Sender::App(&app.app_id, &tenant.tenant_key);
    super::media::check_message_resources(&state, &msg_type, &content, sender).await?;
    state.limits.check_chat_messages(&chat.chat_id).await?.map_err(|_| ApiError::Feishu(crate::domain::message::chat_rate_limited()))?;
    let now = state.clock.now_ms();
    let root_id = parent.state.root_id.clone().unwrap_or_else(|| parent.message_id.clone());
    let thread_id = match (&parent.state.thread_id, body.reply_in_thread.unwrap_or(false)) {
        (Some(thread), _) => Some(thread.clone()),
        (None, true) => {
            // The thread is the root's: the first thread reply gives it its id (a concurrent
            // first reply may have given it one already; that one stays).
            let fresh = new_thread_id(now);
            let root = change_message(
                &state,
                &root_id,
                Box::new(move |m: &mut Message| {
                    m.state.thread_id.get_or_insert(fresh);
                    Ok(Vec::new())
                }),
            )
            .await?;
            root.state.thread_id
        }
        (None, false) => None,
    };
    let message = Message {
        message_id: new_message_id(now),
        chat_id: chat.chat_id.clone(),
        msg_type,
        content,
        sender: Sender::App(app.app_id.clone()),
        sender_tenant: tenant.tenant_key.clone(),
        created_at_ms: now,
        state: MessageState { root_id: Some(root_id), parent_id: Some(parent.message_id.clone()), thread_id, ..Default::default() },
    };
    let mentions = resolve_mentions(parse_mentions(&message.msg_type, &message.content), |id| {
        [UserIdType::OpenId, UserIdType::UnionId, UserIdType::UserId]
            .into_iter()
            .find_map(|t| call.dir.resolve_user(app, &tenant.tenant_key, t, id))
            .map(|u| u.uid.clone())
    });
    let events = vec![message_sent(&message, &chat, Actor::App(app.app_id.clone()), mentions)];
    let stored = state
        .store
        .create_message(NewMessage { message, dedup, dedup_window_start_ms: now - MESSAGE_DEDUP_WINDOW_MS, events })
        .await?;
    Ok(ok(&message_view(&call.dir, app, &stored, UserIdType::OpenId)))
}

/// Reads one message of a chat the bot is in: `data.items` holds it. A recalled message is 230011.
#[utoipa::path(
    get,
    path = "/open-apis/im/v1/messages/{message_id}",
    operation_id = "get_message",
    tag = "im",
    summary = "Get a message",
    params(
        ("message_id" = String, Path, description = "The message (om_…)"),
        ("user_id_type" = inline(Option<crate::domain::directory::UserIdType>), Query, description = "Ids of user senders; default open_id"),
    ),
    security(("tenant_access_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn get(State(state): State<Arc<AppState>>, headers: HeaderMap, uri: Uri, PathParam(message_id): PathParam) -> ApiResult {
    let call = ImCall::begin(&state, &headers, Family::GetMessage, READ_SCOPES).await?;
    let (app, tenant) = call.caller()?;
    let (message, _) = reach_live(&state, &call.dir, app, tenant, &message_id).await?;
    let id_type = message_user_id_type(&QueryParams::parse(uri.query()))?;
    Ok(ok(&serde_json::json!({ "items": [message_view(&call.dir, app, &message, id_type)] })))
}

/// New content for a text or post message.
#[derive(Deserialize, utoipa::ToSchema)]
struct EditBody {
    /// text or post.
    msg_type: Option<String>,
    content: Option<String>,
}

/// Edits a text or post message the calling bot sent: at most 20 edits (230072), within 24 h
/// of sending (230075); another sender's message is 230071, a recalled one 230011; a post's
/// images must be the bot's own uploads, as for send (230001, 230017, 230055). The message
/// shows `updated: true` from then on.
///
/// Side effects: one unit of the app's edit budget; one durable change of the message.
#[utoipa::path(
    put,
    path = "/open-apis/im/v1/messages/{message_id}",
    operation_id = "edit_message",
    tag = "im",
    summary = "Edit a text or post message",
    params(("message_id" = String, Path, description = "The message (om_…)")),
    request_body(content = EditBody, content_type = "application/json"),
    security(("tenant_access_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn update(State(state): State<Arc<AppState>>, headers: HeaderMap, PathParam(message_id): PathParam, RawBody(body): RawBody) -> ApiResult {
    let call = ImCall::begin(&state, &headers, Family::EditMessage, UPDATE_SCOPES).await?;
    let (app, tenant) = call.caller()?;
    let (message, _) = reach(&state, &call.dir, app, tenant, &message_id).await?;
    let body: EditBody = parse_json(&body, invalid)?;
    let msg_type = required("msg_type", body.msg_type)?;
    if !matches!(msg_type.as_str(), "text" | "post") {
        return Err(ApiError::Feishu(invalid("msg_type", "text or post")));
    }
    let content = required("content", body.content)?;
    validate_content(&msg_type, &content)?;
    // An edited post's images must be the bot's own uploads, as for send.
    let sender = crate::domain::media::Sender::App(&app.app_id, &tenant.tenant_key);
    super::media::check_message_resources(&state, &msg_type, &content, sender).await?;
    let (app_id, now) = (app.app_id.clone(), state.clock.now_ms());
    let edited = change_message(
        &state,
        &message.message_id,
        Box::new(move |m: &mut Message| edit(m, &app_id, &msg_type, content, now).map(|()| Vec::new())),
    )
    .await?;
    Ok(ok(&message_view(&call.dir, app, &edited, UserIdType::OpenId)))
}

/// A card's new content.
#[derive(Deserialize, utoipa::ToSchema)]
struct PatchBody {
    /// The card JSON as a string, at most 30 KB; it must declare `config.update_multi: true`.
    content: Option<String>,
}

/// Updates a shared card (`config.update_multi: true`, before and after) the calling bot sent,
/// within 14 days of sending (230031); a recalled one is 230011, a card over 30 KB 230025, a
/// content that is no card 230099. Answers `{}`.
///
/// Side effects: one unit of the app's update budget; one durable change of the message
/// (`Store::update_message`).
#[utoipa::path(
    patch,
    path = "/open-apis/im/v1/messages/{message_id}",
    operation_id = "patch_message_card",
    tag = "im",
    summary = "Update a card the app sent",
    params(("message_id" = String, Path, description = "The card message (om_…)")),
    request_body(content = PatchBody, content_type = "application/json"),
    security(("tenant_access_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn patch(State(state): State<Arc<AppState>>, headers: HeaderMap, PathParam(message_id): PathParam, RawBody(body): RawBody) -> ApiResult {
    let call = ImCall::begin(&state, &headers, Family::PatchMessage, UPDATE_SCOPES).await?;
    let (app, tenant) = call.caller()?;
    let (message, _) = reach(&state, &call.dir, app, tenant, &message_id).await?;
    let body: PatchBody = parse_json(&body, invalid)?;
    let content = required("content", body.content)?;
    let (app_id, now) = (app.app_id.clone(), state.clock.now_ms());
    change_message(&state, &message.message_id, Box::new(move |m: &mut Message| patch_card(m, &app_id, content, now).map(|()| Vec::new())))
        .await?;
    Ok(ok(&serde_json::json!({})))
}

/// Recalls a message: the bot's own within 24 h of sending (230009 after); another's only when
/// the bot owns, manages or created the chat (230026 otherwise), within a year. A recalled
/// message answers 230011 to reads, edits and replies, and lists as `deleted: true`.
///
/// Side effects: one unit of the app's recall budget; one durable change of the message with
/// its `im.message.recalled_v1`.
#[utoipa::path(
    delete,
    path = "/open-apis/im/v1/messages/{message_id}",
    operation_id = "recall_message",
    tag = "im",
    summary = "Recall a message",
    params(("message_id" = String, Path, description = "The message (om_…)")),
    security(("tenant_access_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn delete(State(state): State<Arc<AppState>>, headers: HeaderMap, PathParam(message_id): PathParam) -> ApiResult {
    let call = ImCall::begin(&state, &headers, Family::RecallMessage, RECALL_SCOPES).await?;
    let (app, tenant) = call.caller()?;
    let (message, chat) = reach(&state, &call.dir, app, tenant, &message_id).await?;
    let app_id = app.app_id.clone();
    let is_owner = chat.owner == Owner::Bot(app_id.clone());
    let is_manager = chat.bot_managers.contains(&app_id) || chat.creator_app == app_id;
    let now = state.clock.now_ms();
    change_message(
        &state,
        &message.message_id,
        Box::new(move |m: &mut Message| {
            let recall_type = may_recall(m, &app_id, is_owner, is_manager, now)?;
            m.state.recalled_at_ms = Some(now);
            Ok(vec![message_recalled(m, recall_type, Actor::App(app_id), now)])
        }),
    )
    .await?;
    Ok(ok(&serde_json::json!({})))
}

/// Where to forward to.
#[derive(Deserialize, utoipa::ToSchema)]
struct ForwardBody {
    receive_id: Option<String>,
}

/// Forwards a message (not recalled) of a chat the bot is in to a chat or a user, as a new
/// message of the bot with the same type and content.
///
/// Side effects, in order: one unit of the app's forward budget, then one of the target chat's
/// (5/s, 230020); for a user target the p2p chat is created if needed; one durable write of the
/// new message with its `im.message.receive_v1` (a live `uuid` answers the first one instead).
#[utoipa::path(
    post,
    path = "/open-apis/im/v1/messages/{message_id}/forward",
    operation_id = "forward_message",
    tag = "im",
    summary = "Forward a message",
    params(
        ("message_id" = String, Path, description = "The message (om_…)"),
        ("receive_id_type" = inline(super::ReceiveIdType), Query, description = "What `receive_id` names"),
        ("uuid" = Option<String>, Query, description = "Dedup key, at most 50 characters, live for an hour"),
    ),
    request_body(content = ForwardBody, content_type = "application/json"),
    security(("tenant_access_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn forward(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    PathParam(message_id): PathParam,
    RawBody(body): RawBody,
) -> ApiResult {
    let call = ImCall::begin(&state, &headers, Family::ForwardMessage, SEND_SCOPES).await?;
    let (app, tenant) = call.caller()?;
    let (source, _) = reach_live(&state, &call.dir, app, tenant, &message_id).await?;
    let q = QueryParams::parse(uri.query());
    let receive_id_type = match q.enum_of::<super::ReceiveIdType>("receive_id_type") {
        Ok(Some(t)) => t.as_str(),
        _ => return Err(ApiError::Feishu(invalid("receive_id_type", "open_id, union_id, user_id, email or chat_id is required"))),
    };
    let body: ForwardBody = parse_json(&body, invalid)?;
    let receive_id = required("receive_id", body.receive_id)?;
    let dedup = dedup_key(app, q.get("uuid").map(str::to_string))?;
    let now = state.clock.now_ms();
    let chat = target_chat(&state, &call.dir, app, tenant, receive_id_type, &receive_id, now).await?;
    let message = Message {
        message_id: new_message_id(now),
        chat_id: chat.chat_id.clone(),
        msg_type: source.msg_type.clone(),
        content: source.content.clone(),
        sender: Sender::App(app.app_id.clone()),
        sender_tenant: tenant.tenant_key.clone(),
        created_at_ms: now,
        state: MessageState::default(),
    };
    // A forwarded message mentions nobody anew: its mentions were the original sender's.
    let events = vec![message_sent(&message, &chat, Actor::App(app.app_id.clone()), Vec::new())];
    let stored = state
        .store
        .create_message(NewMessage { message, dedup, dedup_window_start_ms: now - MESSAGE_DEDUP_WINDOW_MS, events })
        .await?;
    Ok(ok(&message_view(&call.dir, app, &stored, UserIdType::OpenId)))
}

/// Who read a message the calling bot sent (230012 for another sender's), within 7 days of
/// sending (230033): users, in the order they read it, with the time they did. Reads come from
/// users reading the chat (the control API's `POST /_larkstack/chats/{chat_id}/read`).
#[utoipa::path(
    get,
    path = "/open-apis/im/v1/messages/{message_id}/read_users",
    operation_id = "message_read_users",
    tag = "im",
    summary = "Users who read a message",
    params(
        ("message_id" = String, Path, description = "The message (om_…)"),
        ("user_id_type" = inline(crate::domain::directory::UserIdType), Query, description = "Ids of the readers"),
        ("page_size" = Option<i64>, Query, minimum = 1, maximum = 100, description = "Default 20"),
        ("page_token" = Option<String>, Query, description = "From the previous page"),
    ),
    security(("tenant_access_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn read_users(State(state): State<Arc<AppState>>, headers: HeaderMap, uri: Uri, PathParam(message_id): PathParam) -> ApiResult {
    let call = ImCall::begin(&state, &headers, Family::ReadUsers, READ_USERS_SCOPES).await?;
    let (app, tenant) = call.caller()?;
    let (message, _) = reach_live(&state, &call.dir, app, tenant, &message_id).await?;
    if !message.sent_by_app(&app.app_id) {
        return Err(ApiError::Feishu(MessageErr::NotMessageSender.err()));
    }
    if state.clock.now_ms() - message.created_at_ms > READ_USERS_WINDOW_MS {
        return Err(ApiError::Feishu(MessageErr::ReadStatusExpired.err()));
    }
    let q = QueryParams::parse(uri.query());
    let id_type = match q.get("user_id_type") {
        Some(v) => UserIdType::parse(v).ok_or_else(|| invalid("user_id_type", "open_id, union_id or user_id"))?,
        None => return Err(ApiError::Feishu(invalid("user_id_type", "required"))),
    };
    let size = page_size(q.get("page_size"), 20, 100, |f, w| invalid(f, w))?;
    let after = decode_cursor(q.get("page_token"), |f, w| invalid(f, w))?;
    let mut rows = state
        .store
        .read_receipts(ReadQuery { message_id: message.message_id.clone(), after_seq: after.map_or(0, |c| c.seq), limit: size + 1 })
        .await?;
    let has_more = rows.len() > size;
    rows.truncate(size);
    let page_token = has_more.then(|| rows.last().map(|(seq, _)| encode_cursor(Cursor { key: 0, seq: *seq }))).flatten();
    let items: Vec<serde_json::Value> = rows
        .iter()
        .map(|(_, r)| {
            serde_json::json!({
                "user_id_type": id_type.as_str(),
                "user_id": user_ref(&call.dir, app, &r.uid, id_type).unwrap_or_default(),
                "timestamp": r.read_at_ms.to_string(),
                "tenant_key": call.dir.user(&r.uid).map(|u| u.tenant_key.0.as_str()).unwrap_or_default(),
            })
        })
        .collect();
    Ok(ok(&serde_json::json!({ "items": items, "page_token": page_token, "has_more": has_more })))
}
