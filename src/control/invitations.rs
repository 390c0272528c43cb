//! Pending invitations of a chat that needs approval, as users of the Feishu client handle them:
//! list them, invite, and approve, reject or withdraw one. Users are named by fixture key; the
//! rules are `domain::chat_ops` (`apply_user_invites`, `apply_decision`), each action one atomic
//! change of the chat with its events.

use std::sync::Arc;

use axum::extract::State;
use serde::Deserialize;
use serde_json::json;

use super::actors::{bot, chat_or_404, person, user_by_key};
use super::{control_error, json_body};
use crate::api::extract::{PathParam, PathParts, RawBody};
use crate::domain::chat::{Chat, Inviter};
use crate::domain::chat_ops::{apply_decision, apply_user_invites, Decision, InvitationRefusal, Invited};
use crate::domain::directory::Directory;
use crate::domain::events::{chat_changes, users_withdrawn, Actor};
use crate::domain::ids::{ChatId, Uid};
use crate::envelope::{ok, ApiError, ApiResult};
use crate::error::{ControlErr, FeishuError};
use crate::state::AppState;
use crate::store::ChatChange;

/// A chat's pending invitations as the control API shows them: the invited user, who invited
/// (`{"user": …}` or `{"bot": …}`) and when.
pub(super) fn view(dir: &Directory, chat: &Chat) -> Vec<serde_json::Value> {
    chat.settings
        .pending_invitations
        .iter()
        .map(|inv| {
            let inviter = match &inv.inviter {
                Inviter::User(uid) => json!({"user": person(dir, uid)}),
                Inviter::App(app) => json!({"bot": bot(dir, app)}),
            };
            json!({"user": person(dir, &inv.uid), "inviter": inviter, "at_ms": inv.at_ms})
        })
        .collect()
}

fn refused(why: InvitationRefusal) -> FeishuError {
    match why {
        InvitationRefusal::NotPending => ControlErr::NotFound.with_msg(why.why().to_string()),
        _ => ControlErr::BadRequest.with_msg(why.why().to_string()),
    }
}

/// Commits `change` to the chat; answers the chat as it is after it.
async fn commit(state: &AppState, chat_id: &str, change: ChatChange) -> Result<Chat, ApiError> {
    match state.store.modify_chat(&ChatId(chat_id.to_string()), change).await? {
        None => Err(control_error(ControlErr::NotFound, format!("no chat {chat_id}"))),
        Some(Ok(chat)) => Ok(chat),
        Some(Err(e)) => Err(ApiError::Feishu(e)),
    }
}

/// The chat's pending invitations, oldest first.
#[utoipa::path(
    get,
    path = "/_larkstack/chats/{chat_id}/invitations",
    operation_id = "control_list_invitations",
    tag = "control",
    summary = "A chat's pending invitations",
    params(("chat_id" = String, Path, description = "The chat (oc_…)")),
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn list(State(state): State<Arc<AppState>>, PathParam(chat_id): PathParam) -> ApiResult {
    let chat = chat_or_404(&state, &chat_id).await?;
    let dir = state.directory();
    Ok(ok(&json!({ "chat_id": chat.chat_id, "items": view(&dir, &chat) })))
}

/// A member and the user they invite, by fixture keys.
#[derive(Deserialize, utoipa::ToSchema)]
struct Invite {
    /// The member who invites.
    user: String,
    /// The user invited.
    invitee: String,
}

/// A member invites a user into the chat, as from the Feishu client.
///
/// Side effects: one atomic change of the chat: where `membership_approval` is
/// `approval_required` and the member is neither owner nor manager, a pending invitation (no
/// event); otherwise the user joins (`im.chat.member.user.added_v1`).
#[utoipa::path(
    post,
    path = "/_larkstack/chats/{chat_id}/invitations",
    operation_id = "control_invite",
    tag = "control",
    summary = "A member invites a user (pending where approval is required)",
    params(("chat_id" = String, Path, description = "The chat (oc_…)")),
    request_body(content = Invite, content_type = "application/json"),
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn invite(State(state): State<Arc<AppState>>, PathParam(chat_id): PathParam, RawBody(body): RawBody) -> ApiResult {
    let req: Invite = json_body(&body)?;
    let dir = state.directory();
    let actor = user_by_key(&dir, &req.user)?.uid.clone();
    let invitee = user_by_key(&dir, &req.invitee)?;
    if !invitee.is_active() {
        return Err(control_error(ControlErr::BadRequest, format!("{} has resigned", invitee.key)));
    }
    let (uid, tenant, now) = (invitee.uid.clone(), invitee.tenant_key.clone(), state.clock.now_ms());
    let outcome = Arc::new(parking_lot::Mutex::new(Invited::AlreadyMember));
    let sink = outcome.clone();
    let who = Actor::ControlAsUser(actor.clone());
    let change: ChatChange = Box::new(move |chat: &mut Chat| {
        let before = chat.clone();
        *sink.lock() = apply_user_invites(chat, &actor, &uid, &tenant, now).map_err(refused)?;
        Ok(chat_changes(&before, chat, &who, now))
    });
    let chat = commit(&state, &chat_id, change).await?;
    let outcome = match *outcome.lock() {
        Invited::Joined => "joined",
        Invited::Pending => "pending",
        Invited::AlreadyMember => "already_member",
    };
    Ok(ok(&json!({ "chat_id": chat.chat_id, "outcome": outcome, "user_count": chat.users.len() })))
}

/// The user who acts on an invitation, by fixture key.
#[derive(Deserialize, utoipa::ToSchema)]
struct Acting {
    user: String,
}

/// `user` (the body's) approves, rejects or withdraws `invitee`'s pending invitation: approve and
/// reject are for the owner or a manager, withdraw also for the user who invited.
///
/// Side effects: one atomic change of the chat: the invitation is dropped; on approve the user
/// joins (`im.chat.member.user.added_v1`, the approver as operator); on withdraw
/// `im.chat.member.user.withdrawn_v1` (the withdrawing user as operator); a rejection has no event
/// (Feishu has none).
#[utoipa::path(
    post,
    path = "/_larkstack/chats/{chat_id}/invitations/{user}/{decision}",
    operation_id = "control_decide_invitation",
    tag = "control",
    summary = "Approve, reject or withdraw a pending invitation",
    params(
        ("chat_id" = String, Path, description = "The chat (oc_…)"),
        ("user" = String, Path, description = "The invited user's fixture key"),
        ("decision" = inline(Decision), Path, description = "approve | reject | withdraw"),
    ),
    request_body(content = Acting, content_type = "application/json"),
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn decide(
    State(state): State<Arc<AppState>>,
    PathParts((chat_id, invitee, decision)): PathParts<(String, String, Decision)>,
    RawBody(body): RawBody,
) -> ApiResult {
    let who: Acting = json_body(&body)?;
    let dir = state.directory();
    let actor = user_by_key(&dir, &who.user)?.uid.clone();
    let invitee = user_by_key(&dir, &invitee)?;
    if decision == Decision::Approve && !invitee.is_active() {
        return Err(control_error(ControlErr::BadRequest, format!("{} has resigned", invitee.key)));
    }
    let (uid, now): (Uid, i64) = (invitee.uid.clone(), state.clock.now_ms());
    let act = Actor::ControlAsUser(actor.clone());
    let change: ChatChange = Box::new(move |chat: &mut Chat| {
        let before = chat.clone();
        apply_decision(chat, &actor, &uid, decision, now).map_err(refused)?;
        let mut events = chat_changes(&before, chat, &act, now);
        if decision == Decision::Withdraw {
            events.push(users_withdrawn(chat, vec![uid], act, now));
        }
        Ok(events)
    });
    let chat = commit(&state, &chat_id, change).await?;
    Ok(ok(&json!({ "chat_id": chat.chat_id, "user_count": chat.users.len(), "pending": view(&dir, &chat) })))
}

