//! A user clicks an interactive card in the Feishu client: `POST
//! /_larkstack/messages/{message_id}/card_action`.

use std::sync::Arc;

use axum::extract::State;
use serde::Deserialize;
use serde_json::{json, Value};

use super::actors::{chat_or_404, live_message_or_404, usable, user_by_key};
use super::{control_error, json_body};
use crate::api::extract::{PathParam, RawBody};
use crate::delivery::callback;
use crate::domain::cards::{action_object, card_action_event, new_card_token, read_answer, replace_card, CARD_TOKEN_TTL_MS, MAX_CARD_TOKENS};
use crate::domain::feishu_events::recipient_tenant;
use crate::domain::message::{Message, Sender};
use crate::envelope::{ok, ApiResult};
use crate::error::ControlErr;
use crate::state::AppState;
use crate::store::CardToken;

/// A user's interaction with a card: `{user, action}`.
#[derive(Deserialize, utoipa::ToSchema)]
struct CardAction {
    /// The fixture key of the user who clicks.
    user: String,
    /// What the app receives as `event.action`: `value` (an object), `tag` (default `button`),
    /// `form_value`, `option`, `options`, `input_value`, `name`, `checked`, `timezone`.
    #[schema(value_type = Object)]
    action: Option<Value>,
}

/// A user interacts with a card an app sent: larkstack issues a `c-` token (30 min, 2 uses of
/// `POST /open-apis/interactive/v1/card/update`), sends `card.action.trigger` to the app that sent
/// the card — to its `callback_url`, else over one of its long connections, on whichever node
/// holds it (with `--redis`, this node asks the holder over Redis) — and waits up to 3 s for the
/// answer. The answer's `card` replaces the card's content (for everyone); its `toast` comes back
/// as `data.toast`.
///
/// `data`: `message_id`, `token`, `toast` (or null), `card_updated`, `callback` (`route`,
/// `target`, `status`, `latency_ms`, `error`) and `error`: why nothing was applied (no answer in
/// 3 s, a failed handler, an answer that is no JSON or whose card was refused), else null. A failed
/// callback is still `code` 0: the click happened (as in Feishu, where the user sees an error).
///
/// Side effects, in order: one durable token; the callback; when the answer has a card, one
/// durable change of the message (`Store::update_message`; no Feishu event, as in Feishu).
#[utoipa::path(
    post,
    path = "/_larkstack/messages/{message_id}/card_action",
    tag = "control",
    summary = "A user interacts with a card (card.action.trigger)",
    params(("message_id" = String, Path, description = "The card message (om_…)")),
    request_body(content = CardAction, content_type = "application/json"),
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn card_action(State(state): State<Arc<AppState>>, PathParam(message_id): PathParam, RawBody(body): RawBody) -> ApiResult {
    let act: CardAction = json_body(&body)?;
    let bad = |why: String| control_error(ControlErr::BadRequest, why);
    let action = action_object(&act.action.unwrap_or_else(|| json!({}))).map_err(bad)?;
    let dir = state.directory();
    let user = user_by_key(&dir, &act.user)?;
    let message = live_message_or_404(&state, &message_id).await?;
    let Sender::App(app_id) = &message.sender else {
        return Err(bad("the message was not sent by an app".into()));
    };
    if message.msg_type != "interactive" {
        return Err(bad(format!("the message is {}, not an interactive card", message.msg_type)));
    }
    let app = dir.app(app_id).ok_or_else(|| bad(format!("the app {app_id} that sent the card is gone")))?;
    let chat = chat_or_404(&state, &message.chat_id.0).await?;
    usable(&chat)?;
    if !chat.has_user(&user.uid) {
        return Err(bad(format!("{} is not in the chat", user.key)));
    }
    let settings = state
        .deliveries
        .current_settings(&*state.store, &dir, app_id)
        .await?
        .ok_or_else(|| bad(format!("the app {app_id} has no settings")))?;
    let now = state.clock.now_ms();
    let tenant = recipient_tenant(app, &chat.tenant_key);
    let token = CardToken {
        token: new_card_token(),
        app_id: app_id.clone(),
        tenant_key: tenant.clone(),
        message_id: message.message_id.clone(),
        issued_at_ms: now,
        expires_at_ms: now + CARD_TOKEN_TTL_MS,
    };
    state.store.issue_card_token(token.clone(), MAX_CARD_TOKENS).await?;
    let event = card_action_event(&dir, app, &tenant.0, user, &message, &token.token, &action);
    let payload = callback::envelope(app_id, &tenant.0, &settings.verification_token, now, event);
    let reply = callback::send_callback(&state.longconn, app_id, &settings, &payload, state.clock.now_secs()).await?;

    let (mut toast, mut card_updated, mut error) = (Value::Null, false, reply.error.clone());
    if let Some(body) = &reply.body {
        match read_answer(body) {
            Err(why) => error = Some(format!("the app's answer: {why}")),
            Ok(answer) => {
                toast = answer.toast.unwrap_or(Value::Null);
                if let Some(content) = answer.card {
                    let (app_id, at) = (app_id.clone(), state.clock.now_ms());
                    let change: crate::store::MessageChange =
                        Box::new(move |m: &mut Message| replace_card(m, &app_id, content, at).map(|()| Vec::new()));
                    match state.store.update_message(&message.message_id, change).await? {
                        Some(Ok(_)) => card_updated = true,
                        Some(Err(e)) => error = Some(format!("the answer's card was refused: {} ({})", e.msg, e.code)),
                        None => error = Some("the message is gone".into()),
                    }
                }
            }
        }
    }
    Ok(ok(&json!({
        "message_id": message.message_id,
        "token": token.token,
        "toast": toast,
        "card_updated": card_updated,
        "callback": reply,
        "error": error,
    })))
}
