//! `POST /open-apis/im/v1/chats` — create a group chat (seed: im-create-chat.md).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use serde::Serialize;

use super::im_caller;
use crate::api::auth::tenant_token;
use crate::api::extract::{parse_json, QueryParams, RawBody};
use crate::domain::chat::{
    avatar_url, plan_create, Caller, Chat, CreateChatBody, CreateChatQuery, I18nNames, Owner, RestrictedModeSetting,
    CREATE_DEDUP_WINDOW_MS, MAX_UUID_CHARS,
};
use crate::domain::directory::{App, Directory, UserIdType};
use crate::domain::ids::new_chat_id;
use crate::envelope::{ok, ApiError, ApiResult};
use crate::error::{im, FeishuError};
use crate::ratelimit::Family;
use crate::state::{AppState, InFlight};
use crate::store::{Created, DedupKey};

const CREATE_SCOPES: &[&str] = &["im:chat", "im:chat:create"];
const USER_ID_SCOPE: &str = "contact:user.employee_id:readonly";

/// The create reply's `data` (seed "响应体"). Owner fields are left out when a bot owns the chat.
#[derive(Serialize)]
pub struct CreatedChatView<'a> {
    chat_id: &'a str,
    avatar: String,
    name: &'a str,
    description: &'a str,
    i18n_names: &'a I18nNames,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner_id_type: Option<&'static str>,
    urgent_setting: &'a str,
    video_conference_setting: &'a str,
    pin_manage_setting: &'a str,
    add_member_permission: &'a str,
    share_card_permission: &'a str,
    at_all_permission: &'a str,
    edit_permission: &'a str,
    group_message_type: &'a str,
    chat_mode: &'a str,
    chat_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    chat_tag: Option<&'static str>,
    external: bool,
    tenant_key: &'a str,
    join_message_visibility: &'a str,
    leave_message_visibility: &'a str,
    membership_approval: &'a str,
    moderation_permission: &'a str,
    labels: &'a [String],
    toolkit_ids: &'a [String],
    restricted_mode_setting: &'a RestrictedModeSetting,
    hide_member_count_setting: &'a str,
}

pub fn created_chat_view<'a>(dir: &Directory, app: &App, chat: &'a Chat, id_type: UserIdType) -> CreatedChatView<'a> {
    let s = &chat.settings;
    let owner_id = match &chat.owner {
        Owner::User(uid) => dir.user(uid).map(|u| dir.user_external_id(app, u, id_type)),
        Owner::Bot(_) => None,
    };
    CreatedChatView {
        chat_id: chat.chat_id.as_str(),
        avatar: avatar_url(&s.avatar),
        name: &s.name,
        description: &s.description,
        i18n_names: &s.i18n_names,
        owner_id_type: owner_id.as_ref().map(|_| id_type.as_str()),
        owner_id,
        urgent_setting: &s.urgent_setting,
        video_conference_setting: &s.video_conference_setting,
        pin_manage_setting: &s.pin_manage_setting,
        add_member_permission: &s.add_member_permission,
        share_card_permission: &s.share_card_permission,
        at_all_permission: &s.at_all_permission,
        edit_permission: &s.edit_permission,
        group_message_type: &s.group_message_type,
        chat_mode: &s.chat_mode,
        chat_type: &s.chat_type,
        chat_tag: (!chat.external).then_some("inner"),
        external: chat.external,
        tenant_key: chat.tenant_key.as_str(),
        join_message_visibility: &s.join_message_visibility,
        leave_message_visibility: &s.leave_message_visibility,
        membership_approval: &s.membership_approval,
        moderation_permission: &s.moderation_permission,
        labels: &s.labels,
        toolkit_ids: &s.toolkit_ids,
        restricted_mode_setting: &s.restricted_mode_setting,
        hide_member_count_setting: &s.hide_member_count_setting,
    }
}

fn parse_query(uri: &Uri) -> Result<CreateChatQuery, FeishuError> {
    let q = QueryParams::parse(uri.query());
    let user_id_type = match q.get("user_id_type") {
        None | Some("") => UserIdType::OpenId,
        Some(v) => UserIdType::parse(v)
            .ok_or_else(|| FeishuError::im_invalid_param("user_id_type", Some(v), "must be open_id, union_id or user_id"))?,
    };
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
pub async fn create(State(state): State<Arc<AppState>>, headers: HeaderMap, uri: Uri, RawBody(body): RawBody) -> ApiResult {
    let token = tenant_token(&state, &headers).await?;
    let dir = state.directory();
    let rate_override = dir.app(&token.app_id).and_then(|a| a.rate_limit);
    state.limits.check(&token.app_id, &token.tenant_key, Family::CreateChat, rate_override)?;
    let (app, tenant) = im_caller(&dir, &token, CREATE_SCOPES)?;
    let query = parse_query(&uri)?;
    if query.user_id_type == UserIdType::UserId && !app.has_scope(USER_ID_SCOPE) {
        return Err(ApiError(FeishuError::scope_missing(&[USER_ID_SCOPE])));
    }
    let body: CreateChatBody = parse_json(&body, |field, why| FeishuError::im_invalid_param(field, None, why))?;

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
                return Ok(ok(&created_chat_view(&dir, app, &existing, query.user_id_type)));
            }
            Some(InFlight::claim(&state, key.clone()).ok_or_else(|| ApiError(im::being_created()))?)
        }
        None => None,
    };

    let chat = plan_create(&dir, &Caller { app, tenant }, &query, body, new_chat_id(now), now)?;
    let stored = match state.store.create_chat(chat, dedup, window_start).await? {
        Created::New(chat) | Created::Existing(chat) => chat,
    };
    Ok(ok(&created_chat_view(&dir, app, &stored, query.user_id_type)))
}
