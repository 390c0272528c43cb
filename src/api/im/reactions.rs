//! Message reactions (spec §5): a bot adds an emoji to a message of a chat it is in, lists a
//! message's reactions, and removes its own. Errors are the reaction family's 2310xx.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use serde::Deserialize;
use serde_json::{json, Value};

use super::message_ops::reach;
use super::{decode_cursor, encode_cursor, page_size, user_ref, ImCall};
use crate::api::extract::{parse_json, PathPair, PathParam, QueryParams, RawBody};
use crate::domain::directory::{App, Directory, UserIdType};
use crate::domain::events::reaction_changed;
use crate::domain::ids::new_reaction_id;
use crate::domain::message::{Message, Sender};
use crate::domain::reaction::{emoji_type, Reaction};
use crate::envelope::{ok, ApiError, ApiResult};
use crate::error::{FeishuError, ReactionErr};
use crate::ratelimit::Family;
use crate::state::AppState;
use crate::store::{Cursor, ReactionQuery};

const WRITE_SCOPES: &[&str] = &["im:message", "im:message.reactions:write_only"];
const READ_SCOPES: &[&str] = &["im:message", "im:message:readonly", "im:message.reactions:read"];

/// A reaction as the API shows it; a user operator's id is of `id_type`, a bot's its app id.
pub fn reaction_view(dir: &Directory, app: &App, r: &Reaction, id_type: UserIdType) -> Value {
    let (operator_id, operator_type) = match &r.operator {
        Sender::App(a) | Sender::CustomBot(a) => (a.0.clone(), "app"),
        Sender::User(u) => (user_ref(dir, app, u, id_type).unwrap_or_default(), "user"),
    };
    json!({
        "reaction_id": r.reaction_id,
        "operator": {"operator_id": operator_id, "operator_type": operator_type},
        "action_time": r.created_at_ms.to_string(),
        "reaction_type": {"emoji_type": r.emoji_type},
    })
}

/// The message a reaction call names, as the bot reaches it (see `message_ops::reach`), in the
/// reaction family's codes: no such message, or a recalled one, is 231003; a chat the bot is not
/// in (or another tenant's) is `outside`.
async fn reactable(
    state: &AppState,
    call: &ImCall,
    message_id: &str,
    outside: ReactionErr,
) -> Result<Message, ApiError> {
    let (app, tenant) = call.caller()?;
    let message = match reach(state, &call.dir, app, tenant, message_id).await {
        Ok((m, _)) => m,
        Err(ApiError::Feishu(e)) if e.code == crate::error::MessageErr::InvalidParam.code() => {
            return Err(ApiError::Feishu(ReactionErr::MessageNotFound.err()))
        }
        Err(ApiError::Feishu(_)) => return Err(ApiError::Feishu(outside.err())),
        Err(e) => return Err(e),
    };
    if message.is_recalled() {
        return Err(ApiError::Feishu(ReactionErr::MessageNotFound.err()));
    }
    Ok(message)
}

/// `reaction_type` of a new reaction.
#[derive(Deserialize, utoipa::ToSchema)]
struct ReactionTypeBody {
    emoji_type: Option<String>,
}

/// A reaction to add.
#[derive(Deserialize, utoipa::ToSchema)]
struct CreateBody {
    reaction_type: Option<ReactionTypeBody>,
}

/// Adds an emoji (one of Feishu's emoji types, 231001 otherwise) to a message of a chat the bot
/// is in (231002 otherwise); a recalled or unknown message is 231003. The same emoji from the
/// same bot again answers the first reaction.
///
/// Side effects: one unit of the app's budget; one durable write of the reaction with its
/// `im.message.reaction.created_v1` (none for a repeat).
#[utoipa::path(
    post,
    path = "/open-apis/im/v1/messages/{message_id}/reactions",
    operation_id = "create_reaction",
    tag = "im",
    summary = "Add a reaction to a message",
    params(("message_id" = String, Path, description = "The message (om_…)")),
    request_body(content = CreateBody, content_type = "application/json"),
    security(("tenant_access_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn create(State(state): State<Arc<AppState>>, headers: HeaderMap, PathParam(message_id): PathParam, RawBody(body): RawBody) -> ApiResult {
    let call = ImCall::begin(&state, &headers, Family::CreateReaction, WRITE_SCOPES).await?;
    let (app, _) = call.caller()?;
    let message = reactable(&state, &call, &message_id, ReactionErr::NoPermission).await?;
    let body: CreateBody = parse_json(&body, |_, _| ReactionErr::InvalidEmoji.err())?;
    let emoji = emoji_type(body.reaction_type.as_ref().and_then(|t| t.emoji_type.as_deref()))?.to_string();
    let reaction = add(&state, &message, Sender::App(app.app_id.clone()), emoji).await?;
    Ok(ok(&reaction_view(&call.dir, app, &reaction, UserIdType::OpenId)))
}

/// Stores `operator`'s `emoji` on `message` now with its event (the first one on a repeat).
pub async fn add(state: &AppState, message: &Message, operator: Sender, emoji: String) -> Result<Reaction, ApiError> {
    let now = state.clock.now_ms();
    let reaction = Reaction {
        reaction_id: new_reaction_id(now),
        message_id: message.message_id.clone(),
        chat_id: message.chat_id.clone(),
        emoji_type: emoji,
        operator,
        created_at_ms: now,
    };
    let events = vec![reaction_changed(&reaction, true, now)];
    Ok(state.store.add_reaction(reaction, events).await?)
}

/// `user_id_type` of the reaction list: open_id by default, 231014 otherwise.
fn reaction_user_id_type(v: Option<&str>) -> Result<UserIdType, FeishuError> {
    match v {
        None | Some("") => Ok(UserIdType::OpenId),
        Some(v) => UserIdType::parse(v)
            .ok_or_else(|| ReactionErr::InvalidUserIdType.err().with_field("user_id_type", Some(v), "open_id, union_id or user_id")),
    }
}

/// Lists a message's reactions, oldest first, optionally of one emoji type (231001 for one
/// Feishu does not know); the bot must be in the chat (231008).
#[utoipa::path(
    get,
    path = "/open-apis/im/v1/messages/{message_id}/reactions",
    operation_id = "list_reactions",
    tag = "im",
    summary = "List a message's reactions",
    params(
        ("message_id" = String, Path, description = "The message (om_…)"),
        ("reaction_type" = Option<String>, Query, description = "Only this emoji type"),
        ("page_size" = Option<i64>, Query, minimum = 1, maximum = 50, description = "Default 20"),
        ("page_token" = Option<String>, Query, description = "From the previous page"),
        ("user_id_type" = inline(Option<crate::domain::directory::UserIdType>), Query, description = "Ids of user operators; default open_id"),
    ),
    security(("tenant_access_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap, uri: Uri, PathParam(message_id): PathParam) -> ApiResult {
    let call = ImCall::begin(&state, &headers, Family::ListReactions, READ_SCOPES).await?;
    let (app, _) = call.caller()?;
    let message = reactable(&state, &call, &message_id, ReactionErr::NoAccess).await?;
    let q = QueryParams::parse(uri.query());
    let filter = match q.get("reaction_type").filter(|t| !t.is_empty()) {
        Some(t) => Some(emoji_type(Some(t))?.to_string()),
        None => None,
    };
    let id_type = reaction_user_id_type(q.get("user_id_type"))?;
    let size = page_size(q.get("page_size"), 20, 50, |f, w| crate::domain::message::invalid(f, w))?;
    let after = decode_cursor(q.get("page_token"), |_, _| ReactionErr::InvalidPageToken.err())?;
    let query = ReactionQuery { message_id: message.message_id, emoji_type: filter, after_seq: after.map_or(0, |c| c.seq), limit: size + 1 };
    let mut rows = state.store.list_reactions(query).await?;
    let has_more = rows.len() > size;
    rows.truncate(size);
    let page_token = has_more.then(|| rows.last().map(|(seq, _)| encode_cursor(Cursor { key: 0, seq: *seq }))).flatten();
    let items: Vec<Value> = rows.iter().map(|(_, r)| reaction_view(&call.dir, app, r, id_type)).collect();
    Ok(ok(&json!({ "items": items, "page_token": page_token, "has_more": has_more })))
}

/// Removes a reaction the calling bot added (231007 for another operator's): it must be a
/// reaction (231011) of this message (231010), of a chat the bot is in (231002).
///
/// Side effects: one unit of the app's budget; one durable removal with its
/// `im.message.reaction.deleted_v1`.
#[utoipa::path(
    delete,
    path = "/open-apis/im/v1/messages/{message_id}/reactions/{reaction_id}",
    operation_id = "delete_reaction",
    tag = "im",
    summary = "Remove the app's reaction",
    params(
        ("message_id" = String, Path, description = "The message (om_…)"),
        ("reaction_id" = String, Path, description = "The reaction"),
    ),
    security(("tenant_access_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn delete(State(state): State<Arc<AppState>>, headers: HeaderMap, PathPair(message_id, reaction_id): PathPair) -> ApiResult {
    let call = ImCall::begin(&state, &headers, Family::DeleteReaction, WRITE_SCOPES).await?;
    let (app, _) = call.caller()?;
    let message = reactable(&state, &call, &message_id, ReactionErr::NoPermission).await?;
    let reaction = state.store.get_reaction(&reaction_id).await?.ok_or_else(|| ApiError::Feishu(ReactionErr::InvalidReactionId.err()))?;
    if reaction.message_id != message.message_id {
        return Err(ApiError::Feishu(ReactionErr::NotOfMessage.err()));
    }
    if reaction.operator != Sender::App(app.app_id.clone()) {
        return Err(ApiError::Feishu(ReactionErr::NotReactionOwner.err()));
    }
    let now = state.clock.now_ms();
    // A concurrent delete of the same reaction already recorded its event: answer the same.
    state.store.delete_reaction(&reaction.reaction_id, vec![reaction_changed(&reaction, false, now)]).await?;
    Ok(ok(&reaction_view(&call.dir, app, &reaction, UserIdType::OpenId)))
}

