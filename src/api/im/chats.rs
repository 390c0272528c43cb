//! Chats: create (seed: im-create-chat.md), get, update, disband, list, search (spec §3.1–3.6).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use serde::Serialize;

use super::{
    change_chat, decode_cursor, encode_cursor, existing_chat, im_param, page_size, user_id_type, user_ref, ImCall,
};
use crate::api::extract::{parse_json, PathParam, QueryParams, RawBody};
use crate::domain::chat_ops::{
    apply_disband, apply_update, other_tenant, public_name_used, standing, usable_group, Standing, UpdateChatBody,
};
use crate::store::{BotChatsQuery, ChatOrder, ChatSearchQuery, Cursor, NewChat};
use crate::domain::chat::{
    avatar_url, plan_create, Caller, Chat, CreateChatBody, CreateChatQuery, I18nNames, Owner, RestrictedModeSetting,
    CREATE_DEDUP_WINDOW_MS, MAX_UUID_CHARS,
};
use crate::domain::directory::{App, Directory, UserIdType};
use crate::domain::events::{chat_created, tracked, Actor};
use crate::domain::ids::{new_chat_id, ChatId};
use crate::envelope::{ok, ApiError, ApiResult};
use crate::error::{im, FeishuError};
use crate::ratelimit::Family;
use crate::state::{AppState, InFlight};
use crate::store::{Created, DedupKey};

const CREATE_SCOPES: &[&str] = &["im:chat", "im:chat:create"];
const USER_ID_SCOPE: &str = "contact:user.employee_id:readonly";

/// A chat as the API shows it to members. Create returns it with `chat_id`; get without
/// `chat_id` but with counts, manager lists and `chat_status`. Owner fields are left out when a
/// bot owns the chat.
#[derive(Serialize)]
pub struct ChatView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    chat_id: Option<&'a str>,
    avatar: String,
    name: &'a str,
    description: &'a str,
    i18n_names: &'a I18nNames,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner_id_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_manager_id_list: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bot_manager_id_list: Option<Vec<&'a str>>,
    urgent_setting: &'a str,
    video_conference_setting: &'a str,
    pin_manage_setting: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    add_member_permission: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    share_card_permission: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    at_all_permission: Option<&'a str>,
    edit_permission: &'a str,
    group_message_type: &'a str,
    chat_mode: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    chat_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    chat_tag: Option<&'static str>,
    external: bool,
    tenant_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    join_message_visibility: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    leave_message_visibility: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    membership_approval: Option<&'a str>,
    moderation_permission: &'a str,
    labels: &'a [String],
    toolkit_ids: &'a [String],
    restricted_mode_setting: &'a RestrictedModeSetting,
    hide_member_count_setting: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_count: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bot_count: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    chat_status: Option<&'static str>,
}

/// What a bot outside the chat sees of it.
#[derive(Serialize)]
struct OutsiderChatView<'a> {
    avatar: String,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_count: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bot_count: Option<String>,
    chat_status: &'static str,
}

fn owner_fields(dir: &Directory, app: &App, chat: &Chat, id_type: UserIdType) -> (Option<String>, Option<&'static str>) {
    let owner_id = match &chat.owner {
        Owner::User(uid) => user_ref(dir, app, uid, id_type),
        Owner::Bot(_) => None,
    };
    let owner_type = owner_id.as_ref().map(|_| id_type.as_str());
    (owner_id, owner_type)
}

fn full_view<'a>(dir: &Directory, app: &App, chat: &'a Chat, id_type: UserIdType) -> ChatView<'a> {
    let s = &chat.settings;
    let (owner_id, owner_id_type) = owner_fields(dir, app, chat, id_type);
    // A p2p chat has no member, sharing or message-visibility settings: Feishu leaves them out.
    let group = chat.is_group();
    ChatView {
        chat_id: None,
        avatar: avatar_url(&s.avatar),
        name: &s.name,
        description: &s.description,
        i18n_names: &s.i18n_names,
        owner_id,
        owner_id_type,
        user_manager_id_list: None,
        bot_manager_id_list: None,
        urgent_setting: &s.urgent_setting,
        video_conference_setting: &s.video_conference_setting,
        pin_manage_setting: &s.pin_manage_setting,
        add_member_permission: group.then_some(&s.add_member_permission),
        share_card_permission: group.then_some(&s.share_card_permission),
        at_all_permission: group.then_some(&s.at_all_permission),
        edit_permission: &s.edit_permission,
        group_message_type: &s.group_message_type,
        chat_mode: &s.chat_mode,
        chat_type: group.then_some(&s.chat_type),
        chat_tag: (!chat.external && chat.is_group()).then_some("inner"),
        external: chat.external,
        tenant_key: chat.tenant_key.as_str(),
        join_message_visibility: group.then_some(&s.join_message_visibility),
        leave_message_visibility: group.then_some(&s.leave_message_visibility),
        membership_approval: group.then_some(&s.membership_approval),
        moderation_permission: &s.moderation_permission,
        labels: &s.labels,
        toolkit_ids: &s.toolkit_ids,
        restricted_mode_setting: &s.restricted_mode_setting,
        hide_member_count_setting: &s.hide_member_count_setting,
        user_count: None,
        bot_count: None,
        chat_status: None,
    }
}

/// The create reply's `data` (seed "响应体").
pub fn created_chat_view<'a>(dir: &Directory, app: &App, chat: &'a Chat, id_type: UserIdType) -> ChatView<'a> {
    ChatView { chat_id: Some(chat.chat_id.as_str()), ..full_view(dir, app, chat, id_type) }
}

fn status_str(chat: &Chat) -> &'static str {
    if chat.is_dissolved() {
        "dissolved"
    } else {
        "normal"
    }
}

/// The get reply's `data`: everything for a member bot, name/avatar/counts/status for others.
/// Counts are strings, and hidden from non-managers when `hide_member_count_setting=only_owner`.
fn get_view(dir: &Directory, app: &App, chat: &Chat, id_type: UserIdType, standing: Standing) -> axum::response::Response {
    let rights = standing.same_tenant() && chat.bot_has_owner_rights(app);
    let counts_visible = chat.settings.hide_member_count_setting != "only_owner" || rights;
    let (user_count, bot_count) =
        counts_visible.then(|| (chat.users.len().to_string(), chat.bots.len().to_string())).unzip();
    if !standing.is_member() {
        return ok(&OutsiderChatView {
            avatar: avatar_url(&chat.settings.avatar),
            name: &chat.settings.name,
            user_count,
            bot_count,
            chat_status: status_str(chat),
        });
    }
    ok(&ChatView {
        user_manager_id_list: Some(chat.user_managers.iter().filter_map(|u| user_ref(dir, app, u, id_type)).collect()),
        bot_manager_id_list: Some(chat.bot_managers.iter().map(|b| b.as_str()).collect()),
        user_count,
        bot_count,
        chat_status: Some(status_str(chat)),
        ..full_view(dir, app, chat, id_type)
    })
}

fn parse_query(uri: &Uri) -> Result<CreateChatQuery, FeishuError> {
    let q = QueryParams::parse(uri.query());
    let user_id_type = user_id_type(q.get("user_id_type"))?;
    let set_bot_manager = q
        .bool("set_bot_manager")
        .map_err(|v| FeishuError::im_invalid_param("set_bot_manager", Some(&v), "must be a boolean"))?
        .unwrap_or(false);
    let uuid = q.get("uuid").filter(|u| !u.is_empty()).map(str::to_string);
    if let Some(u) = &uuid {
        if u.chars().count() > MAX_UUID_CHARS {
            return Err(FeishuError::im_invalid_param("uuid", Some(u), format!("at most {MAX_UUID_CHARS} characters")));
        }
    }
    Ok(CreateChatQuery { user_id_type, set_bot_manager, uuid })
}

/// Creates a group chat.
///
/// Side effects, in order:
/// 1. bearer check, then one unit of the app's create-chat rate budget;
/// 2. app, scope and parameter checks (nothing stored on failure);
/// 3. with `uuid`: a live (uuid, owner) key answers its original chat, an in-flight one 232068;
/// 4. one durable write: the chat with all its members (and the dedup key), then the reply.
#[utoipa::path(
    post,
    path = "/open-apis/im/v1/chats",
    operation_id = "create_chat",
    tag = "im",
    summary = "Create a group chat",
    params(
        ("user_id_type" = inline(Option<crate::domain::directory::UserIdType>), Query, description = "Default open_id"),
        ("set_bot_manager" = Option<bool>, Query, description = "Make the calling bot a manager"),
        ("uuid" = Option<String>, Query, max_length = 50, description = "Deduplicates creates with the same owner for 10 hours"),
    ),
    request_body(content = CreateChatBody, content_type = "application/json"),
    security(("tenant_access_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn create(State(state): State<Arc<AppState>>, headers: HeaderMap, uri: Uri, RawBody(body): RawBody) -> ApiResult {
    let call = ImCall::begin(&state, &headers, Family::CreateChat, CREATE_SCOPES).await?;
    let (dir, (app, tenant)) = (&call.dir, call.caller()?);
    let query = parse_query(&uri)?;
    if query.user_id_type == UserIdType::UserId && !app.has_scope(USER_ID_SCOPE) {
        return Err(ApiError::Feishu(FeishuError::scope_missing(&[USER_ID_SCOPE])));
    }
    let body: CreateChatBody = parse_json(&body, |field, why| FeishuError::im_invalid_param(field, None, why))?;
    super::media::check_chat_avatar(&state, app, tenant, body.avatar.as_deref()).await?;

    let now = state.clock.now_ms();
    let window_start = now - CREATE_DEDUP_WINDOW_MS;
    let dedup = query.uuid.as_ref().map(|uuid| DedupKey {
        tenant_key: tenant.tenant_key.clone(),
        app_id: app.app_id.clone(),
        uuid: uuid.clone(),
        owner: body
            .owner_id
            .as_deref()
            .filter(|o| !o.is_empty())
            .map(|raw| {
                dir.resolve_user(app, &tenant.tenant_key, query.user_id_type, raw)
                    .map(|u| u.uid.0.clone())
                    .unwrap_or_else(|| format!("unresolved:{raw}"))
            })
            .unwrap_or_default(),
    });
    let _in_flight = match &dedup {
        Some(key) => {
            if let Some(existing) = state.store.find_dedup(key, window_start).await? {
                return Ok(ok(&created_chat_view(dir, app, &existing, query.user_id_type)));
            }
            Some(InFlight::claim(&state, key.clone()).await?.ok_or_else(|| ApiError::Feishu(im::being_created()))?)
        }
        None => None,
    };

    let chat = plan_create(dir, &Caller { app, tenant }, &query, body, new_chat_id(now), now)?;
    let events = vec![chat_created(&chat, Actor::App(app.app_id.clone()), now)];
    let stored = match state.store.create_chat(NewChat { chat, dedup, dedup_window_start_ms: window_start, events }).await? {
        Created::New(chat) | Created::Existing(chat) => chat,
    };
    Ok(ok(&created_chat_view(dir, app, &stored, query.user_id_type)))
}

const READ_SCOPES: &[&str] = &["im:chat", "im:chat:read", "im:chat:readonly", "im:chat.group_info:readonly"];
const UPDATE_SCOPES: &[&str] = &["im:chat", "im:chat:update"];
const DELETE_SCOPES: &[&str] = &["im:chat", "im:chat:delete"];
const LIST_SCOPES: &[&str] = &["im:chat", "im:chat:read", "im:chat:readonly"];
const MAX_SEARCH_QUERY_CHARS: usize = 64;

/// Reads a chat. Side effects: one unit of the get-chat budget.
#[utoipa::path(
    get,
    path = "/open-apis/im/v1/chats/{chat_id}",
    operation_id = "get_chat",
    tag = "im",
    summary = "Get a chat",
    params(
        ("chat_id" = String, Path, description = "The chat (oc_…)"),
        ("user_id_type" = inline(Option<crate::domain::directory::UserIdType>), Query, description = "Default open_id"),
    ),
    security(("tenant_access_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn get(State(state): State<Arc<AppState>>, headers: HeaderMap, uri: Uri, PathParam(chat_id): PathParam) -> ApiResult {
    let call = ImCall::begin(&state, &headers, Family::GetChat, READ_SCOPES).await?;
    let (app, tenant) = call.caller()?;
    let id_type = user_id_type(QueryParams::parse(uri.query()).get("user_id_type"))?;
    let chat = existing_chat(&state, &chat_id).await?;
    let standing = standing(&call.dir, app, tenant, &chat);
    if standing == Standing::OtherTenant {
        return Err(ApiError::Feishu(other_tenant()));
    }
    Ok(get_view(&call.dir, app, &chat, id_type, standing))
}

/// Partially updates a chat (omitted fields unchanged), possibly transferring ownership.
///
/// Side effects, in order:
/// 1. one unit of the update budget;
/// 2. public-name uniqueness against other chats (232026);
/// 3. one atomic change of the chat, re-checking every rule against its latest state.
#[utoipa::path(
    put,
    path = "/open-apis/im/v1/chats/{chat_id}",
    operation_id = "update_chat",
    tag = "im",
    summary = "Update a chat",
    params(
        ("chat_id" = String, Path, description = "The chat (oc_…)"),
        ("user_id_type" = inline(Option<crate::domain::directory::UserIdType>), Query, description = "Default open_id"),
    ),
    request_body(content = UpdateChatBody, content_type = "application/json"),
    security(("tenant_access_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn update(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    PathParam(chat_id): PathParam,
    RawBody(body): RawBody,
) -> ApiResult {
    let call = ImCall::begin(&state, &headers, Family::UpdateChat, UPDATE_SCOPES).await?;
    let (app, tenant) = call.caller()?;
    let id_type = user_id_type(QueryParams::parse(uri.query()).get("user_id_type"))?;
    let body: UpdateChatBody = parse_json(&body, |field, why| FeishuError::im_invalid_param(field, None, why))?;
    let current = existing_chat(&state, &chat_id).await?;
    usable_group(&call.dir, app, tenant, &current)?;
    super::media::check_chat_avatar(&state, app, tenant, body.avatar.as_deref()).await?;
    if body.name.is_some() || body.chat_type.is_some() {
        if let Some(name) = body.resulting_public_name(&current) {
            if state.store.public_name_taken(&tenant.tenant_key, name, &current.chat_id).await? {
                return Err(ApiError::Feishu(public_name_used()));
            }
        }
    }
    let (dir, app_c, tenant_c) = (call.dir.clone(), app.clone(), tenant.clone());
    let actor = Actor::App(app.app_id.clone());
    let change = tracked(actor, state.clock.now_ms(), move |chat: &mut Chat| apply_update(&dir, &app_c, &tenant_c, id_type, chat, body));
    change_chat(&state, &current.chat_id, change).await?;
    Ok(ok(&serde_json::json!({})))
}

/// Disbands a chat. The chat and its members stay stored with `chat_status` `dissolved`;
/// later calls on it answer 232009. Side effects: one atomic change of the chat.
#[utoipa::path(
    delete,
    path = "/open-apis/im/v1/chats/{chat_id}",
    operation_id = "delete_chat",
    tag = "im",
    summary = "Disband a chat",
    params(("chat_id" = String, Path, description = "The chat (oc_…)")),
    security(("tenant_access_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn delete(State(state): State<Arc<AppState>>, headers: HeaderMap, PathParam(chat_id): PathParam) -> ApiResult {
    let call = ImCall::begin(&state, &headers, Family::DeleteChat, DELETE_SCOPES).await?;
    let (app, tenant) = call.caller()?;
    let (dir, app_c, tenant_c) = (call.dir.clone(), app.clone(), tenant.clone());
    let actor = Actor::App(app.app_id.clone());
    let change = tracked(actor, state.clock.now_ms(), move |chat: &mut Chat| apply_disband(&dir, &app_c, &tenant_c, chat));
    change_chat(&state, &ChatId(chat_id), change).await?;
    Ok(ok(&serde_json::json!({})))
}

/// An item of list and search replies.
#[derive(Serialize)]
struct ListItem<'a> {
    chat_id: &'a str,
    avatar: String,
    name: &'a str,
    description: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner_id_type: Option<&'static str>,
    external: bool,
    tenant_key: &'a str,
    labels: &'a [String],
    chat_status: &'static str,
    chat_mode: &'a str,
}

fn list_item<'a>(dir: &Directory, app: &App, chat: &'a Chat, id_type: UserIdType) -> ListItem<'a> {
    let (owner_id, owner_id_type) = owner_fields(dir, app, chat, id_type);
    ListItem {
        chat_id: chat.chat_id.as_str(),
        avatar: avatar_url(&chat.settings.avatar),
        name: &chat.settings.name,
        description: &chat.settings.description,
        owner_id,
        owner_id_type,
        external: chat.external,
        tenant_key: chat.tenant_key.as_str(),
        labels: &chat.settings.labels,
        chat_status: status_str(chat),
        chat_mode: &chat.settings.chat_mode,
    }
}

#[derive(Serialize)]
struct Page<T> {
    items: Vec<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    page_token: Option<String>,
    has_more: bool,
}

/// Lists the group chats the calling bot is in. `ByActiveTimeDesc` pages by (last activity, seq),
/// so the token stays valid while chats are created or become active between pages.
#[utoipa::path(
    get,
    path = "/open-apis/im/v1/chats",
    operation_id = "list_chats",
    tag = "im",
    summary = "List the chats the bot is in",
    params(
        ("user_id_type" = inline(Option<crate::domain::directory::UserIdType>), Query, description = "Default open_id"),
        ("sort_type" = inline(Option<super::ChatSortType>), Query, description = "Default ByCreateTimeAsc"),
        ("page_size" = Option<i64>, Query, minimum = 1, maximum = 100, description = "Default 20"),
        ("page_token" = Option<String>, Query, description = "From the previous page"),
    ),
    security(("tenant_access_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap, uri: Uri) -> ApiResult {
    let call = ImCall::begin(&state, &headers, Family::ListChats, LIST_SCOPES).await?;
    let (app, tenant) = call.caller()?;
    let q = QueryParams::parse(uri.query());
    let id_type = user_id_type(q.get("user_id_type"))?;
    let order = match q.enum_of::<super::ChatSortType>("sort_type") {
        Ok(None | Some(super::ChatSortType::ByCreateTimeAsc)) => ChatOrder::CreatedAsc,
        Ok(Some(super::ChatSortType::ByActiveTimeDesc)) => ChatOrder::ActiveDesc,
        Err(v) => return Err(ApiError::Feishu(FeishuError::im_invalid_param("sort_type", Some(v), "ByCreateTimeAsc or ByActiveTimeDesc"))),
    };
    let size = page_size(q.get("page_size"), 20, 100, im_param)?;
    let after = decode_cursor(q.get("page_token"), im_param)?;
    let mut rows = state
        .store
        .chats_of_bot(BotChatsQuery {
            app: app.app_id.clone(),
            tenant: tenant.tenant_key.clone(),
            order,
            after,
            limit: size + 1,
        })
        .await?;
    let has_more = rows.len() > size;
    rows.truncate(size);
    let page_token = has_more.then(|| rows.last().map(|(c, _)| encode_cursor(*c))).flatten();
    let items = rows.iter().map(|(_, chat)| list_item(&call.dir, app, chat, id_type)).collect();
    Ok(ok(&Page { items, page_token, has_more }))
}

/// Searches the calling bot's chats and the tenant's public chats by name.
/// An empty query or one over 64 characters finds nothing.
#[utoipa::path(
    get,
    path = "/open-apis/im/v1/chats/search",
    operation_id = "search_chats",
    tag = "im",
    summary = "Search chats by name",
    params(
        ("user_id_type" = inline(Option<crate::domain::directory::UserIdType>), Query, description = "Default open_id"),
        ("query" = Option<String>, Query, description = "Name to look for; empty or over 64 characters finds nothing"),
        ("page_size" = Option<i64>, Query, minimum = 1, maximum = 100, description = "Default 20"),
        ("page_token" = Option<String>, Query, description = "From the previous page"),
    ),
    security(("tenant_access_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn search(State(state): State<Arc<AppState>>, headers: HeaderMap, uri: Uri) -> ApiResult {
    let call = ImCall::begin(&state, &headers, Family::SearchChats, READ_SCOPES).await?;
    let (app, tenant) = call.caller()?;
    let q = QueryParams::parse(uri.query());
    let id_type = user_id_type(q.get("user_id_type"))?;
    let size = page_size(q.get("page_size"), 20, 100, im_param)?;
    let after = decode_cursor(q.get("page_token"), im_param)?;
    let query = q.get("query").unwrap_or("").trim().trim_matches('"');
    if query.is_empty() || query.chars().count() > MAX_SEARCH_QUERY_CHARS {
        return Ok(ok(&Page::<ListItem> { items: Vec::new(), page_token: None, has_more: false }));
    }
    let after_seq = after.map(|c| c.seq).unwrap_or(0);
    let mut rows = state
        .store
        .search_chats(ChatSearchQuery {
            app: app.app_id.clone(),
            tenant: tenant.tenant_key.clone(),
            text: query.to_string(),
            after_seq,
            limit: size + 1,
        })
        .await?;
    let has_more = rows.len() > size;
    rows.truncate(size);
    let page_token = has_more.then(|| rows.last().map(|(seq, _)| encode_cursor(Cursor { key: *seq, seq: *seq }))).flatten();
    let items = rows.iter().map(|(_, chat)| list_item(&call.dir, app, chat, id_type)).collect();
    Ok(ok(&Page { items, page_token, has_more }))
}
