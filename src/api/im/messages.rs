//! Messages: send to a chat or a user, list a chat's history (spec §4).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use serde::{Deserialize, Serialize};

use super::{decode_cursor, encode_cursor, page_size, user_ref, ImCall};
use crate::api::extract::{parse_json, QueryParams, RawBody};
use crate::domain::chat::{new_p2p_chat, Chat};
use crate::domain::chat_ops::{chat_dissolved, standing};
use crate::domain::directory::{App, Directory, Tenant, User, UserIdType};
use crate::domain::events::{chat_created, message_sent, parse_mentions, resolve_mentions, Actor};
use crate::domain::ids::{new_message_id, ChatId};
use crate::domain::message::{
    bot_not_in_chat, chat_rate_limited, invalid, user_unavailable, validate_content, Message, Sender, MESSAGE_DEDUP_WINDOW_MS,
};
use crate::envelope::{ok, ApiError, ApiResult};
use crate::error::FeishuError;
use crate::ratelimit::Family;
use crate::state::AppState;
use crate::store::{MessageContainer, MessageDedupKey, MessageOrder, MessageQuery, NewMessage};

pub(super) const SEND_SCOPES: &[&str] = &["im:message", "im:message:send_as_bot", "im:message:send"];
pub(super) const READ_SCOPES: &[&str] = &["im:message", "im:message:readonly", "im:message.group_msg"];
/// "Read all messages in associated group chats": group history needs it on top of a read scope.
const GROUP_HISTORY_SCOPE: &str = "im:message.group_msg";
pub(super) const MAX_UUID_CHARS: usize = 50;

/// A message to send; `content` is a JSON string whose shape depends on `msg_type`.
#[derive(Deserialize, utoipa::ToSchema)]
struct SendBody {
    receive_id: Option<String>,
    msg_type: Option<String>,
    content: Option<String>,
    uuid: Option<String>,
}

#[derive(Serialize)]
struct SenderView {
    id: String,
    id_type: &'static str,
    sender_type: &'static str,
    tenant_key: String,
}

#[derive(Serialize)]
struct BodyView<'a> {
    content: &'a str,
}

/// A message as the API shows it (`create_time`/`update_time` are strings of milliseconds); a
/// reply names its root and parent, a thread message its thread. A recalled message is
/// `deleted`, its content gone.
#[derive(Serialize)]
pub(super) struct MessageView<'a> {
    message_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    root_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thread_id: Option<&'a str>,
    msg_type: &'a str,
    create_time: String,
    update_time: String,
    deleted: bool,
    updated: bool,
    chat_id: &'a str,
    sender: SenderView,
    body: BodyView<'a>,
    mentions: [(); 0],
}

/// `m` as `app` sees it, a user sender's id of `id_type`.
pub(super) fn message_view<'a>(dir: &Directory, app: &App, m: &'a Message, id_type: UserIdType) -> MessageView<'a> {
    let sender = match &m.sender {
        Sender::App(app_id) | Sender::CustomBot(app_id) => SenderView {
            id: app_id.0.clone(),
            id_type: "app_id",
            sender_type: "app",
            tenant_key: m.sender_tenant.0.clone(),
        },
        Sender::User(uid) => SenderView {
            id: user_ref(dir, app, uid, id_type).unwrap_or_default(),
            id_type: id_type.as_str(),
            sender_type: "user",
            tenant_key: m.sender_tenant.0.clone(),
        },
    };
    MessageView {
        message_id: m.message_id.as_str(),
        root_id: m.state.root_id.as_ref().map(|i| i.as_str()),
        parent_id: m.state.parent_id.as_ref().map(|i| i.as_str()),
        thread_id: m.state.thread_id.as_deref(),
        msg_type: &m.msg_type,
        create_time: m.created_at_ms.to_string(),
        update_time: m.update_time_ms().to_string(),
        deleted: m.is_recalled(),
        updated: m.state.updated_at_ms.is_some(),
        chat_id: m.chat_id.as_str(),
        sender,
        body: BodyView { content: m.shown_content() },
        mentions: [],
    }
}

/// The user a p2p send names, as the app may reach them: an active user of the token's tenant
/// within the app's availability there. Another tenant's user is outside the availability of the
/// app's installation in this tenant (230013); so a p2p chat is always its user's tenant's, and
/// one store app's installations never share one.
fn p2p_user<'d>(dir: &'d Directory, app: &App, tenant: &Tenant, id_type: &str, raw: &str) -> Result<&'d User, FeishuError> {
    let user = match id_type {
        "email" => dir.user_by_email(&tenant.tenant_key, raw),
        other => UserIdType::parse(other).and_then(|t| dir.resolve_user(app, &tenant.tenant_key, t, raw)),
    };
    let user = user.ok_or_else(|| invalid("receive_id", "no such user for this app"))?;
    if !user.is_active() || user.tenant_key != tenant.tenant_key || !app.can_see(user) {
        return Err(user_unavailable());
    }
    Ok(user)
}

/// Sends a message as the calling bot.
///
/// Side effects, in order:
/// 1. one unit of the app's send budget, then one of the target chat's (5/s, 230020);
/// 2. for a user target: the bot↔user p2p chat is created if it does not exist;
/// 3. one durable write of the message (a live `uuid` answers the first message instead).
#[utoipa::path(
    post,
    path = "/open-apis/im/v1/messages",
    operation_id = "send_message",
    tag = "im",
    summary = "Send a message",
    params(
        ("receive_id_type" = inline(super::ReceiveIdType), Query, description = "What `receive_id` names"),
    ),
    request_body(content = SendBody, content_type = "application/json"),
    security(("tenant_access_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn send(State(state): State<Arc<AppState>>, headers: HeaderMap, uri: Uri, RawBody(body): RawBody) -> ApiResult {
    let call = ImCall::begin(&state, &headers, Family::SendMessage, SEND_SCOPES).await?;
    let (app, tenant) = call.caller()?;
    let q = QueryParams::parse(uri.query());
    let receive_id_type = match q.enum_of::<super::ReceiveIdType>("receive_id_type") {
        Ok(Some(t)) => t.as_str().to_string(),
        _ => return Err(ApiError::Feishu(invalid("receive_id_type", "open_id, union_id, user_id, email or chat_id is required"))),
    };
    let body: SendBody = parse_json(&body, |field, why| invalid(field, why))?;
    let receive_id = body.receive_id.filter(|r| !r.is_empty()).ok_or_else(|| invalid("receive_id", "required"))?;
    let msg_type = body.msg_type.filter(|m| !m.is_empty()).ok_or_else(|| invalid("msg_type", "required"))?;
    let content = body.content.filter(|c| !c.is_empty()).ok_or_else(|| invalid("content", "required"))?;
    if body.uuid.as_ref().is_some_and(|u| u.chars().count() > MAX_UUID_CHARS) {
        return Err(ApiError::Feishu(invalid("uuid", "at most 50 characters")));
    }
    validate_content(&msg_type, &content)?;
    if msg_type == "system" && receive_id_type == "chat_id" {
        return Err(ApiError::Feishu(invalid("msg_type", "system messages go to p2p chats only")));
    }
    let sender = crate::domain::media::Sender::App(&app.app_id, &tenant.tenant_key);
    super::media::check_message_resources(&state, &msg_type, &content, sender).await?;

    let now = state.clock.now_ms();
    let chat = target_chat(&state, &call.dir, app, tenant, &receive_id_type, &receive_id, now).await?;
    let message = Message {
        message_id: new_message_id(now),
        chat_id: chat.chat_id.clone(),
        msg_type,
        content,
        sender: Sender::App(app.app_id.clone()),
        sender_tenant: tenant.tenant_key.clone(),
        created_at_ms: now,
        state: Default::default(),
    };
    let dedup = body.uuid.filter(|u| !u.is_empty()).map(|uuid| MessageDedupKey { app_id: app.app_id.clone(), uuid });
    // Mention ids are in the sender's id space: open_id, union_id or user_id.
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

/// The chat a message sent to (`receive_id_type`, `receive_id`) goes to, after the calling bot's
/// checks; a user's p2p chat with the bot is created when there is none. Spends one unit of the
/// chat's message budget (5/s, 230020).
pub(super) async fn target_chat(
    state: &AppState,
    dir: &Directory,
    app: &App,
    tenant: &Tenant,
    receive_id_type: &str,
    receive_id: &str,
    now: i64,
) -> Result<Chat, ApiError> {
    let chat = if receive_id_type == "chat_id" {
        state.store.get_chat(&ChatId(receive_id.to_string())).await?.ok_or_else(|| ApiError::Feishu(invalid("receive_id", "no such chat")))?
    } else {
        let user = p2p_user(dir, app, tenant, receive_id_type, receive_id)?;
        let new = new_p2p_chat(app, tenant, user, now);
        let created = vec![chat_created(&new, Actor::App(app.app_id.clone()), now)];
        state.store.p2p_chat(&app.app_id, &user.uid, new, created).await?
    };
    message_chat(dir, app, tenant, &chat)?;
    state.limits.check_chat_messages(&chat.chat_id).await?.map_err(|_| ApiError::Feishu(chat_rate_limited()))?;
    Ok(chat)
}

/// A chat that messages go to or are read from: the calling bot must be in it — as the token's
/// tenant's bot, so another tenant's token of the same store app is not (230002) — and it must
/// not be disbanded (232009).
pub(super) fn message_chat(dir: &Directory, app: &App, tenant: &Tenant, chat: &Chat) -> Result<(), FeishuError> {
    let standing = standing(dir, app, tenant, chat);
    if !standing.same_tenant() {
        return Err(bot_not_in_chat());
    }
    if chat.is_dissolved() {
        return Err(chat_dissolved());
    }
    if !standing.is_member() {
        return Err(bot_not_in_chat());
    }
    Ok(())
}

fn seconds(field: &str, v: Option<&str>) -> Result<Option<i64>, FeishuError> {
    match v {
        None | Some("") => Ok(None),
        // Seconds whose milliseconds do not fit in an i64 are no time at all (not a panic).
        Some(s) => s
            .parse::<i64>()
            .ok()
            .and_then(|secs| secs.checked_mul(1000))
            .map(Some)
            .ok_or_else(|| invalid(field, "seconds since the epoch")),
    }
}

/// Lists a chat's messages (the bot must be in the chat), oldest or newest first, by time range;
/// or a thread's (`container_id_type=thread`, `omt_…`): its root, then its replies, with the rules
/// of its chat. A thread takes no time range (Feishu's rule; 230001 here), an unknown one is 230001.
#[utoipa::path(
    get,
    path = "/open-apis/im/v1/messages",
    operation_id = "list_messages",
    tag = "im",
    summary = "List a chat's messages",
    params(
        ("container_id_type" = inline(super::ContainerIdType), Query, description = "chat or thread"),
        ("container_id" = String, Query, description = "The chat (oc_…) or the thread (omt_…)"),
        ("start_time" = Option<i64>, Query, description = "Seconds since the epoch, inclusive; chats only"),
        ("end_time" = Option<i64>, Query, description = "Seconds since the epoch, inclusive; chats only"),
        ("sort_type" = inline(Option<super::MessageSortType>), Query, description = "Default ByCreateTimeAsc"),
        ("page_size" = Option<i64>, Query, minimum = 1, maximum = 50, description = "Default 20"),
        ("page_token" = Option<String>, Query, description = "From the previous page"),
    ),
    security(("tenant_access_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap, uri: Uri) -> ApiResult {
    let call = ImCall::begin(&state, &headers, Family::ListMessages, READ_SCOPES).await?;
    let (app, tenant) = call.caller()?;
    let q = QueryParams::parse(uri.query());
    let container_type = match q.enum_of::<super::ContainerIdType>("container_id_type") {
        Ok(Some(t)) => t,
        _ => return Err(ApiError::Feishu(invalid("container_id_type", "chat or thread is required"))),
    };
    let container_id = q.get("container_id").filter(|c| !c.is_empty()).ok_or_else(|| ApiError::Feishu(invalid("container_id", "required")))?;
    let order = match q.enum_of::<super::MessageSortType>("sort_type") {
        Ok(None | Some(super::MessageSortType::ByCreateTimeAsc)) => MessageOrder::Asc,
        Ok(Some(super::MessageSortType::ByCreateTimeDesc)) => MessageOrder::Desc,
        Err(_) => return Err(ApiError::Feishu(invalid("sort_type", "ByCreateTimeAsc or ByCreateTimeDesc"))),
    };
    let size = page_size(q.get("page_size"), 20, 50, |f, w| invalid(f, w))?;
    let after = decode_cursor(q.get("page_token"), |f, w| invalid(f, w))?;
    let start_ms = seconds("start_time", q.get("start_time"))?;
    // end_time is inclusive to the second.
    let end_ms = seconds("end_time", q.get("end_time"))?.map(|ms| ms.saturating_add(999));
    let (container, chat_id) = match container_type {
        super::ContainerIdType::Chat => (MessageContainer::Chat(ChatId(container_id.to_string())), ChatId(container_id.to_string())),
        super::ContainerIdType::Thread => {
            for (field, given) in [("start_time", start_ms), ("end_time", end_ms)] {
                if given.is_some() {
                    return Err(ApiError::Feishu(invalid(field, "a thread is listed without a time range")));
                }
            }
            let thread = MessageContainer::Thread(container_id.to_string());
            // The thread's chat is its root's (the first message filed under it).
            let first = MessageQuery { container: thread.clone(), start_ms: None, end_ms: None, order: MessageOrder::Asc, after: None, limit: 1 };
            let root = state.store.list_messages(first).await?.into_iter().next();
            let chat_id = root.map(|(_, m)| m.chat_id).ok_or_else(|| ApiError::Feishu(invalid("container_id", "no such thread")))?;
            (thread, chat_id)
        }
    };
    let chat = state.store.get_chat(&chat_id).await?.ok_or_else(|| ApiError::Feishu(invalid("container_id", "no such chat")))?;
    message_chat(&call.dir, app, tenant, &chat)?;
    if chat.is_group() && !app.has_scope(GROUP_HISTORY_SCOPE) {
        return Err(ApiError::Feishu(FeishuError::scope_missing(&[GROUP_HISTORY_SCOPE])));
    }
    let mut rows = state
        .store
        .list_messages(MessageQuery { container, start_ms, end_ms, order, after, limit: size + 1 })
        .await?;
    let has_more = rows.len() > size;
    rows.truncate(size);
    let page_token = has_more.then(|| rows.last().map(|(c, _)| encode_cursor(*c))).flatten();
    let items: Vec<MessageView> = rows.iter().map(|(_, m)| message_view(&call.dir, app, m, UserIdType::OpenId)).collect();
    Ok(ok(&serde_json::json!({ "items": items, "page_token": page_token, "has_more": has_more })))
}
