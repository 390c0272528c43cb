//! A group's custom bots, added, listed and removed as a chat member would in the Feishu client
//! (chats are made at run time, so custom bots are too). Each comes with its webhook URL.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::json;

use super::{control_error, json_body};
use crate::api::extract::{PathPair, PathParam, RawBody};
use crate::domain::chat::Chat;
use crate::domain::custom_bots::{CustomBot, CustomBotSpec, MAX_CUSTOM_BOTS_PER_CHAT};
use crate::domain::ids::{new_custom_bot_id, new_hook_token, AppId, ChatId};
use crate::envelope::{ok, ApiError, ApiResult};
use crate::error::ControlErr;
use crate::state::AppState;

/// The path of a custom bot's webhook.
pub fn hook_path(token: &str) -> String {
    format!("/open-apis/bot/v2/hook/{token}")
}

/// The bot as the control API and the console show it: the webhook URL on the host the caller
/// reached larkstack by.
pub(crate) fn view(bot: &CustomBot, headers: &HeaderMap) -> serde_json::Value {
    let host = headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    json!({
        "bot_id": bot.bot_id,
        "chat_id": bot.chat_id,
        "name": bot.name,
        "description": bot.description,
        "token": bot.token,
        "webhook_path": hook_path(&bot.token),
        "webhook_url": format!("http://{host}{}", hook_path(&bot.token)),
        "secret": bot.secret,
        "keywords": bot.keywords,
        "ip_allowlist": bot.ip_allowlist,
        "created_at_ms": bot.created_at_ms,
    })
}

/// The group chat custom bots may join: it exists (404), is a group (p2p chats have none) and
/// is not disbanded.
async fn group_chat(state: &AppState, chat_id: &str) -> Result<Chat, ApiError> {
    let chat = state.store.get_chat(&ChatId(chat_id.to_string())).await?;
    let chat = chat.ok_or_else(|| control_error(ControlErr::NotFound, format!("no chat {chat_id}")))?;
    if !chat.is_group() {
        return Err(control_error(ControlErr::BadRequest, "custom bots join group chats only"));
    }
    if chat.is_dissolved() {
        return Err(control_error(ControlErr::BadRequest, "the chat has been disbanded"));
    }
    Ok(chat)
}

/// Adds a custom bot to a group chat: `{name, description?, secret?, keywords?, ip_allowlist?}`
/// (at most 15 bots a chat, 10 keywords, 10 IP rules). Answers the bot with its token and
/// webhook URL.
#[utoipa::path(
    post,
    path = "/_larkstack/chats/{chat_id}/custom_bots",
    operation_id = "control_add_custom_bot",
    tag = "control",
    summary = "Add a custom bot (webhook) to a group chat",
    params(("chat_id" = String, Path, description = "The chat (oc_…)")),
    request_body(content = CustomBotSpec, content_type = "application/json"),
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn add(State(state): State<Arc<AppState>>, headers: HeaderMap, PathParam(chat_id): PathParam, RawBody(body): RawBody) -> ApiResult {
    let spec: CustomBotSpec = json_body(&body)?;
    spec.validate().map_err(|why| control_error(ControlErr::BadRequest, why))?;
    let chat = group_chat(&state, &chat_id).await?;
    let bot = CustomBot {
        bot_id: new_custom_bot_id(),
        token: new_hook_token(),
        chat_id: chat.chat_id.clone(),
        tenant_key: chat.tenant_key.clone(),
        name: spec.name,
        description: spec.description.unwrap_or_default(),
        secret: spec.secret,
        keywords: spec.keywords,
        ip_allowlist: spec.ip_allowlist,
        created_at_ms: state.clock.now_ms(),
    };
    if !state.store.add_custom_bot(bot.clone(), MAX_CUSTOM_BOTS_PER_CHAT).await? {
        return Err(control_error(ControlErr::BadRequest, format!("the chat has {MAX_CUSTOM_BOTS_PER_CHAT} custom bots already")));
    }
    Ok(ok(&view(&bot, &headers)))
}

/// A chat's custom bots, oldest first, with their webhook URLs.
#[utoipa::path(
    get,
    path = "/_larkstack/chats/{chat_id}/custom_bots",
    operation_id = "control_list_custom_bots",
    tag = "control",
    summary = "A chat's custom bots and their webhook URLs",
    params(("chat_id" = String, Path, description = "The chat (oc_…)")),
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap, PathParam(chat_id): PathParam) -> ApiResult {
    let id = ChatId(chat_id.clone());
    if state.store.get_chat(&id).await?.is_none() {
        return Err(control_error(ControlErr::NotFound, format!("no chat {chat_id}")));
    }
    let bots = state.store.custom_bots(&id).await?;
    Ok(ok(&json!({ "items": bots.iter().map(|b| view(b, &headers)).collect::<Vec<_>>() })))
}

/// Removes a custom bot: its webhook answers 19001 from then on.
#[utoipa::path(
    delete,
    path = "/_larkstack/chats/{chat_id}/custom_bots/{bot_id}",
    operation_id = "control_remove_custom_bot",
    tag = "control",
    summary = "Remove a custom bot from its chat",
    params(
        ("chat_id" = String, Path, description = "The chat (oc_…)"),
        ("bot_id" = String, Path, description = "The custom bot (cli_…)"),
    ),
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn remove(State(state): State<Arc<AppState>>, PathPair(chat_id, bot_id): PathPair) -> ApiResult {
    if !state.store.remove_custom_bot(&ChatId(chat_id.clone()), &AppId(bot_id.clone())).await? {
        return Err(control_error(ControlErr::NotFound, format!("chat {chat_id} has no custom bot {bot_id}")));
    }
    Ok(ok(&json!({})))
}
