//! Chat members and managers (spec §3.7–3.12).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use serde::{Deserialize, Serialize};

use super::{change_chat, decode_cursor, encode_cursor, existing_chat, im_param, page_size, user_ref, ImCall};
use crate::api::extract::{parse_json, PathParam, QueryParams, RawBody};
use crate::domain::chat::{Chat, Inviter};
use crate::domain::chat_ops::{
    apply_add, apply_managers, apply_me_join, apply_remove, check_id_list, other_tenant, plan_add,
    require_member, standing, usable_group, AddPlan, MemberIdType, Standing,
};
use crate::domain::directory::{App, UserIdType};
use crate::domain::events::{tracked, Actor};
use crate::domain::ids::{ChatId, Uid};

use crate::envelope::{ok, ApiError, ApiResult};
use crate::error::FeishuError;
use crate::ratelimit::Family;
use crate::state::AppState;
use crate::store::Cursor;

const WRITE_SCOPES: &[&str] = &["im:chat", "im:chat.members:write_only"];
const READ_SCOPES: &[&str] = &["im:chat", "im:chat.group_info:readonly", "im:chat.members:read", "im:chat:readonly"];
const MANAGER_SCOPES: &[&str] = &["im:chat", "im:chat.managers:write_only"];

/// The members to add or remove.
#[derive(Deserialize, utoipa::ToSchema)]
struct IdList {
    #[serde(default)]
    id_list: Vec<String>,
}

fn invalid(field: &str, why: String) -> FeishuError {
    FeishuError::im_invalid_param(field, None, why)
}

/// Runs `f` on the chat as the calling app; its events are what it did to the chat.
async fn change(
    state: &AppState,
    chat_id: &str,
    app: &App,
    f: impl FnOnce(&mut Chat) -> Result<(), FeishuError> + Send + 'static,
) -> Result<Chat, ApiError> {
    let change = tracked(Actor::App(app.app_id.clone()), state.clock.now_ms(), f);
    change_chat(state, &ChatId(chat_id.to_string()), change).await
}

#[derive(Serialize)]
struct AddReply {
    invalid_id_list: Vec<String>,
    not_existed_id_list: Vec<String>,
    pending_approval_id_list: Vec<String>,
}

/// Adds users (or bots, with `member_id_type=app_id`) to a chat.
///
/// Side effects, in order:
/// 1. one unit of the add-members budget;
/// 2. one atomic change of the chat: the IDs are judged against the directory and the chat's
///    latest state (`succeed_type` decides what fails the call), then added within the caps;
///    users who wait for approval are stored as the app's pending invitations.
#[utoipa::path(
    post,
    path = "/open-apis/im/v1/chats/{chat_id}/members",
    operation_id = "add_members",
    tag = "im",
    summary = "Add members to a chat",
    params(
        ("chat_id" = String, Path, description = "The chat (oc_…)"),
        ("member_id_type" = inline(Option<crate::domain::chat_ops::MemberIdTypeName>), Query, description = "Default open_id; app_id names bots"),
        ("succeed_type" = Option<i32>, Query, minimum = 0, maximum = 2, description = "0: skip unusable IDs; 1: add the usable, list the rest; 2: fail on any unusable ID"),
    ),
    request_body(content = IdList, content_type = "application/json"),
    security(("tenant_access_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn add(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    PathParam(chat_id): PathParam,
    RawBody(body): RawBody,
) -> ApiResult {
    let call = ImCall::begin(&state, &headers, Family::AddMembers, WRITE_SCOPES).await?;
    let (app, tenant) = call.caller()?;
    let q = QueryParams::parse(uri.query());
    let id_type = MemberIdType::parse(q.get("member_id_type"))?;
    let succeed_type = match q.get("succeed_type") {
        None | Some("") | Some("0") => 0,
        Some("1") => 1,
        Some("2") => 2,
        Some(v) => return Err(ApiError::Feishu(FeishuError::im_invalid_param("succeed_type", Some(v), "0, 1 or 2"))),
    };
    let body: IdList = parse_json(&body, invalid)?;
    check_id_list(&body.id_list, id_type, "id_list")?;
    let (dir, app_c, tenant_c) = (call.dir.clone(), app.clone(), tenant.clone());
    let now = state.clock.now_ms();
    let outcome = Arc::new(parking_lot::Mutex::new(AddPlan::default()));
    let sink = outcome.clone();
    change(&state, &chat_id, app, move |chat: &mut Chat| {
        let plan = plan_add(&dir, &app_c, &tenant_c, chat, id_type, &body.id_list, succeed_type)?;
        apply_add(chat, &plan, &Inviter::App(app_c.app_id.clone()), now)?;
        *sink.lock() = plan;
        Ok(())
    })
    .await?;
    let plan = std::mem::take(&mut *outcome.lock());
    Ok(ok(&AddReply {
        invalid_id_list: plan.invalid_id_list,
        not_existed_id_list: plan.not_existed_id_list,
        pending_approval_id_list: plan.pending_approval_id_list,
    }))
}

/// Removes members; a bot removing itself leaves the chat.
/// Side effects: one atomic change of the chat.
#[utoipa::path(
    delete,
    path = "/open-apis/im/v1/chats/{chat_id}/members",
    operation_id = "remove_members",
    tag = "im",
    summary = "Remove members from a chat",
    params(
        ("chat_id" = String, Path, description = "The chat (oc_…)"),
        ("member_id_type" = inline(Option<crate::domain::chat_ops::MemberIdTypeName>), Query, description = "Default open_id; app_id names bots"),
    ),
    request_body(content = IdList, content_type = "application/json"),
    security(("tenant_access_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn remove(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    PathParam(chat_id): PathParam,
    RawBody(body): RawBody,
) -> ApiResult {
    let call = ImCall::begin(&state, &headers, Family::RemoveMembers, WRITE_SCOPES).await?;
    let (app, tenant) = call.caller()?;
    let id_type = MemberIdType::parse(QueryParams::parse(uri.query()).get("member_id_type"))?;
    let body: IdList = parse_json(&body, invalid)?;
    check_id_list(&body.id_list, id_type, "id_list")?;
    let (dir, app_c, tenant_c) = (call.dir.clone(), app.clone(), tenant.clone());
    let invalid_ids = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let sink = invalid_ids.clone();
    change(&state, &chat_id, app, move |chat: &mut Chat| {
        *sink.lock() = apply_remove(&dir, &app_c, &tenant_c, chat, id_type, &body.id_list)?;
        Ok(())
    })
    .await?;
    let invalid_id_list = std::mem::take(&mut *invalid_ids.lock());
    Ok(ok(&serde_json::json!({ "invalid_id_list": invalid_id_list })))
}

#[derive(Serialize)]
struct MemberItem {
    member_id_type: &'static str,
    member_id: String,
    name: String,
    tenant_key: String,
}

/// Lists the users of a chat in join order (bots are not listed; `member_total` counts users).
/// The page token remembers the last user shown, so removals between pages skip nobody.
#[utoipa::path(
    get,
    path = "/open-apis/im/v1/chats/{chat_id}/members",
    operation_id = "list_members",
    tag = "im",
    summary = "List a chat's members",
    params(
        ("chat_id" = String, Path, description = "The chat (oc_…)"),
        ("member_id_type" = inline(Option<crate::domain::directory::UserIdType>), Query, description = "Default open_id"),
        ("page_size" = Option<i64>, Query, minimum = 1, maximum = 100, description = "Default 20"),
        ("page_token" = Option<String>, Query, description = "From the previous page"),
    ),
    security(("tenant_access_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap, uri: Uri, PathParam(chat_id): PathParam) -> ApiResult {
    let call = ImCall::begin(&state, &headers, Family::ListMembers, READ_SCOPES).await?;
    let (app, tenant) = call.caller()?;
    let q = QueryParams::parse(uri.query());
    let id_type = match MemberIdType::parse(q.get("member_id_type"))? {
        MemberIdType::User(t) => t,
        MemberIdType::App => return Err(ApiError::Feishu(FeishuError::im_invalid_param("member_id_type", Some("app_id"), "bots are not listed"))),
    };
    let size = page_size(q.get("page_size"), 20, 100, im_param)?;
    let after = decode_cursor(q.get("page_token"), im_param)?;
    let chat = existing_chat(&state, &chat_id).await?;
    require_member(usable_group(&call.dir, app, tenant, &chat)?)?;
    // Order (join time, uid); the cursor is the last user shown, by (join time, uid number).
    let ordered = chat.users_in_join_order();
    let start = match after {
        None => 0,
        Some(c) => ordered.partition_point(|(joined, uid)| (*joined, uid_number(uid).unwrap_or(i64::MIN)) <= (c.key, c.seq)),
    };
    let page = &ordered[start.min(ordered.len())..(start + size).min(ordered.len())];
    let has_more = start + page.len() < ordered.len();
    let items: Vec<MemberItem> = page
        .iter()
        .filter_map(|(_, uid)| {
            let user = call.dir.user(uid)?;
            Some(MemberItem {
                member_id_type: id_type.as_str(),
                member_id: user_ref(&call.dir, app, uid, id_type)?,
                name: user.name.clone(),
                tenant_key: user.tenant_key.0.clone(),
            })
        })
        .collect();
    let page_token = match page.last() {
        Some((joined, uid)) if has_more => uid_number(uid).map(|n| encode_cursor(Cursor { key: *joined, seq: n })),
        _ => None,
    };
    Ok(ok(&serde_json::json!({
        "items": items,
        "page_token": page_token,
        "has_more": has_more,
        "member_total": chat.users.len(),
    })))
}

/// A uid's first 8 bytes as a number, to name it inside a page token.
fn uid_number(uid: &Uid) -> Option<i64> {
    uid.to_bytes().map(|b| i64::from_be_bytes(b[..8].try_into().expect("8 bytes")))
}

/// Whether the calling bot is in the chat.
#[utoipa::path(
    get,
    path = "/open-apis/im/v1/chats/{chat_id}/members/is_in_chat",
    tag = "im",
    summary = "Whether the bot is in a chat",
    params(("chat_id" = String, Path, description = "The chat (oc_…)")),
    security(("tenant_access_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn is_in_chat(State(state): State<Arc<AppState>>, headers: HeaderMap, PathParam(chat_id): PathParam) -> ApiResult {
    let call = ImCall::begin(&state, &headers, Family::IsInChat, READ_SCOPES).await?;
    let (app, tenant) = call.caller()?;
    let chat = existing_chat(&state, &chat_id).await?;
    let standing = standing(&call.dir, app, tenant, &chat);
    if standing == Standing::OtherTenant {
        return Err(ApiError::Feishu(other_tenant()));
    }
    Ok(ok(&serde_json::json!({ "is_in_chat": standing.is_member() && !chat.is_dissolved() })))
}

/// The calling bot joins a public chat. Side effects: one atomic change of the chat.
#[utoipa::path(
    patch,
    path = "/open-apis/im/v1/chats/{chat_id}/members/me_join",
    tag = "im",
    summary = "The bot joins a public chat",
    params(("chat_id" = String, Path, description = "The chat (oc_…)")),
    security(("tenant_access_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn me_join(State(state): State<Arc<AppState>>, headers: HeaderMap, PathParam(chat_id): PathParam) -> ApiResult {
    let call = ImCall::begin(&state, &headers, Family::MeJoin, WRITE_SCOPES).await?;
    let (app, tenant) = call.caller()?;
    let (dir, app_c, tenant_c) = (call.dir.clone(), app.clone(), tenant.clone());
    change(&state, &chat_id, app, move |chat: &mut Chat| apply_me_join(&dir, &app_c, &tenant_c, chat)).await?;
    Ok(ok(&serde_json::json!({})))
}

/// The members whose manager rights change.
#[derive(Deserialize, utoipa::ToSchema)]
struct ManagerIds {
    #[serde(default)]
    manager_ids: Vec<String>,
}

async fn managers(state: Arc<AppState>, headers: HeaderMap, uri: Uri, chat_id: String, body: &[u8], add: bool) -> ApiResult {
    let call = ImCall::begin(&state, &headers, Family::Managers, MANAGER_SCOPES).await?;
    let (app, tenant) = call.caller()?;
    let id_type = MemberIdType::parse(QueryParams::parse(uri.query()).get("member_id_type"))?;
    let body: ManagerIds = parse_json(body, invalid)?;
    check_id_list(&body.manager_ids, id_type, "manager_ids")?;
    let (dir, app_c, tenant_c) = (call.dir.clone(), app.clone(), tenant.clone());
    let chat = change(&state, &chat_id, app, move |chat: &mut Chat| {
        apply_managers(&dir, &app_c, &tenant_c, chat, id_type, &body.manager_ids, add)
    })
    .await?;
    let user_type = match id_type {
        MemberIdType::User(t) => t,
        MemberIdType::App => UserIdType::OpenId,
    };
    let chat_managers: Vec<String> = chat.user_managers.iter().filter_map(|u| user_ref(&call.dir, app, u, user_type)).collect();
    Ok(ok(&serde_json::json!({ "chat_managers": chat_managers, "chat_bot_managers": chat.bot_managers })))
}

/// Makes members managers (owner only, at most 10). Side effects: one atomic change of the chat.
#[utoipa::path(
    post,
    path = "/open-apis/im/v1/chats/{chat_id}/managers/add_managers",
    tag = "im",
    summary = "Make members managers",
    params(
        ("chat_id" = String, Path, description = "The chat (oc_…)"),
        ("member_id_type" = inline(Option<crate::domain::chat_ops::MemberIdTypeName>), Query, description = "Default open_id; app_id names bots"),
    ),
    request_body(content = ManagerIds, content_type = "application/json"),
    security(("tenant_access_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn add_managers(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    PathParam(chat_id): PathParam,
    RawBody(body): RawBody,
) -> ApiResult {
    managers(state, headers, uri, chat_id, &body, true).await
}

/// Takes manager rights away (owner only). Side effects: one atomic change of the chat.
#[utoipa::path(
    post,
    path = "/open-apis/im/v1/chats/{chat_id}/managers/delete_managers",
    tag = "im",
    summary = "Take manager rights away",
    params(
        ("chat_id" = String, Path, description = "The chat (oc_…)"),
        ("member_id_type" = inline(Option<crate::domain::chat_ops::MemberIdTypeName>), Query, description = "Default open_id; app_id names bots"),
    ),
    request_body(content = ManagerIds, content_type = "application/json"),
    security(("tenant_access_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn delete_managers(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    PathParam(chat_id): PathParam,
    RawBody(body): RawBody,
) -> ApiResult {
    managers(state, headers, uri, chat_id, &body, false).await
}
