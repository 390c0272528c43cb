//! `POST /open-apis/bot/v2/hook/{token}`: a group's custom bot posts into its chat. The webhook
//! URL is the credential (no access token); the bot's security settings stack (domain rules in
//! `domain::custom_bots`). Every reply is HTTP 200 with `{code, data: {}, msg}`; success also
//! carries the `StatusCode`/`StatusMessage` pair old clients read.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use serde_json::{json, Value};

use super::extract::{PathParam, RawBody};
use crate::domain::chat::Chat;
use crate::domain::custom_bots::{has_keyword, hook_message, ip_allowed, signature_ok, CustomBot, MAX_HOOK_BODY_BYTES};
use crate::domain::events::{message_sent, parse_mentions, Actor};
use crate::domain::ids::new_message_id;
use crate::domain::message::{Message, Sender};
use crate::envelope::{error_body, top_level, ApiResult};
use crate::error::CustomBotErr;
use crate::state::AppState;
use crate::store::NewMessage;
use crate::transport::PeerAddr;

/// A refusal in the hook's shape: HTTP 200, `{code, data: {}, msg, error: {log_id, …}}`.
fn refused(err: CustomBotErr) -> Response {
    let mut body = error_body(&err.err());
    body["data"] = json!({});
    top_level(&body)
}

/// The timestamp of a signed post: a string of seconds, or a number (some clients send one).
fn text_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Posts a message into the custom bot's chat.
///
/// Checks, in order: the token names a bot of a live chat (19001), the caller's address passes
/// the IP allowlist (19022), the body is JSON of at most 20 KB (9499), the signature with its
/// one-hour window (19021), the bot's 100/min and 5/s budget and the chat's shared 5/s (11232),
/// the message fields (9499), the keywords (19024), the images it names: message images an app
/// of the chat's tenant uploaded (9499).
///
/// Side effects, in order: one unit of the bot's budget, then one of the chat's; one durable
/// write of the message with its `im.message.receive_v1` domain event.
#[utoipa::path(
    post,
    path = "/open-apis/bot/v2/hook/{token}",
    operation_id = "custom_bot_hook",
    tag = "bot",
    summary = "Post as a group's custom bot",
    params(("token" = String, Path, description = "The custom bot's webhook token")),
    request_body(content = Object, content_type = "application/json",
        description = "`{msg_type, content}` (`card` for interactive), plus `timestamp` and `sign` when the bot has a secret"),
    responses(
        (status = 200, description = "`code` 0, else 9499, 19001, 19021, 19022, 19024 or 11232", body = crate::openapi::HookReply),
        crate::openapi::ErrorResponse,
    ),
)]
pub async fn hook(
    State(state): State<Arc<AppState>>,
    peer: Option<Extension<PeerAddr>>,
    PathParam(token): PathParam,
    RawBody(body): RawBody,
) -> ApiResult {
    let Some((bot, chat)) = live_bot(&state, &token).await? else {
        return Ok(refused(CustomBotErr::TokenInvalid));
    };
    // In-process requests (tests) come from no socket: they count as the loopback address.
    let ip = peer.map(|Extension(PeerAddr(a))| a.ip()).unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    if !ip_allowed(&bot.ip_allowlist, ip) {
        return Ok(refused(CustomBotErr::IpNotAllowed));
    }
    let Some(post) = (body.len() <= MAX_HOOK_BODY_BYTES).then(|| serde_json::from_slice::<Value>(&body).ok()).flatten() else {
        return Ok(refused(CustomBotErr::BadRequest));
    };
    let now = state.clock.now_ms();
    if let Some(secret) = &bot.secret {
        let (timestamp, sign) = (text_of(post.get("timestamp")), text_of(post.get("sign")));
        if !signature_ok(timestamp.as_deref(), sign.as_deref(), secret, now) {
            return Ok(refused(CustomBotErr::SignMismatch));
        }
    }
    if state.limits.check_custom_bot(&bot.bot_id).await?.is_err() || state.limits.check_chat_messages(&bot.chat_id).await?.is_err() {
        return Ok(refused(CustomBotErr::RateLimited));
    }
    let Ok((msg_type, content)) = hook_message(&post, &bot.chat_id) else {
        return Ok(refused(CustomBotErr::BadRequest));
    };
    let shown: Value = serde_json::from_str(&content).unwrap_or(Value::Null);
    if !has_keyword(&shown, &bot.keywords) {
        return Ok(refused(CustomBotErr::KeywordsNotFound));
    }
    // A custom bot can not upload: its image (or a post's) names a message image an app of the
    // chat's tenant uploaded. Anything else is a malformed post (9499; docs/parity.md).
    let tenant_upload = crate::domain::media::Sender::User(&bot.tenant_key);
    match crate::api::im::media::check_message_resources(&state, &msg_type, &content, tenant_upload).await {
        Ok(()) => {}
        Err(crate::envelope::ApiError::Feishu(_)) => return Ok(refused(CustomBotErr::BadRequest)),
        Err(infra) => return Err(infra),
    }
    let message = Message {
        message_id: new_message_id(now),
        chat_id: chat.chat_id.clone(),
        msg_type,
        content,
        sender: Sender::CustomBot(bot.bot_id.clone()),
        sender_tenant: bot.tenant_key.clone(),
        created_at_ms: now,
        state: Default::default(),
    };
    // Mention ids stay as written: a custom bot has no id space of its own to resolve them in.
    let mentions = parse_mentions(&message.msg_type, &message.content);
    let events = vec![message_sent(&message, &chat, Actor::CustomBot(bot.bot_id.clone()), mentions)];
    state.store.create_message(NewMessage { message, dedup: None, dedup_window_start_ms: 0, events }).await?;
    Ok(top_level(&json!({"StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {}, "msg": "success"})))
}

/// The custom bot with this token and its chat, unless the chat is gone or disbanded.
async fn live_bot(state: &AppState, token: &str) -> Result<Option<(CustomBot, Chat)>, crate::envelope::ApiError> {
    let Some(bot) = state.store.custom_bot(token).await? else { return Ok(None) };
    let chat = state.store.get_chat(&bot.chat_id).await?;
    Ok(chat.filter(|c| !c.is_dissolved()).map(|c| (bot, c)))
}
