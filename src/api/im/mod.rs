//! The IM family (`/open-apis/im/v1/…`).

pub mod cards;
pub mod chats;
pub mod media;
pub mod members;
pub mod message_ops;
pub mod messages;
pub mod reactions;

use std::sync::Arc;

use axum::http::HeaderMap;

use crate::api::auth::tenant_token;
use crate::domain::chat::Chat;
use crate::domain::chat_ops::invalid_chat_id;
use crate::domain::directory::{App, Directory, Tenant, User, UserIdType};
use crate::domain::ids::{ChatId, Uid};
use crate::envelope::ApiError;
use crate::error::{im, FeishuError};
use crate::ratelimit::Family;
use crate::state::AppState;
use crate::store::{Cursor, TokenRecord};

/// The app and tenant behind a tenant token, after the checks every IM call shares:
/// the app still exists (232004), holds one of `scopes` (99991672), is installed and enabled in
/// the tenant (232034) and has bot ability (232025).
pub fn im_caller<'d>(dir: &'d Directory, token: &TokenRecord, scopes: &[&str]) -> Result<(&'d App, &'d Tenant), ApiError> {
    let app = dir.app(&token.app_id).ok_or_else(|| ApiError::Feishu(im::app_not_exist()))?;
    // No scope at all: the endpoint needs none (image and file downloads).
    if !scopes.is_empty() && !app.has_any_scope(scopes) {
        return Err(ApiError::Feishu(FeishuError::scope_missing(scopes)));
    }
    let tenant = dir.tenant(&token.tenant_key).filter(|_| app.enabled_in(&token.tenant_key));
    let tenant = tenant.ok_or_else(|| ApiError::Feishu(im::app_unavailable()))?;
    if !app.bot {
        return Err(ApiError::Feishu(im::bot_ability_inactive()));
    }
    Ok((app, tenant))
}

/// An authenticated IM call: the directory snapshot and the token, checked in gateway order
/// (bearer → the endpoint's rate budget → app, scope, install, bot ability).
pub struct ImCall {
    pub dir: Arc<Directory>,
    pub token: Arc<TokenRecord>,
    scopes: &'static [&'static str],
}

impl ImCall {
    pub async fn begin(
        state: &AppState,
        headers: &HeaderMap,
        family: Family,
        scopes: &'static [&'static str],
    ) -> Result<ImCall, ApiError> {
        let token = tenant_token(state, headers).await?;
        let dir = state.directory();
        let rate_override = dir.app(&token.app_id).and_then(|a| a.rate_limit);
        state.limits.check(&token.app_id, &token.tenant_key, family, rate_override).await?;
        im_caller(&dir, &token, scopes)?;
        Ok(ImCall { dir, token, scopes })
    }

    pub fn caller(&self) -> Result<(&App, &Tenant), ApiError> {
        im_caller(&self.dir, &self.token, self.scopes)
    }
}

/// The stored chat named by a path's `chat_id`, or 232006.
pub async fn existing_chat(state: &AppState, chat_id: &str) -> Result<Chat, ApiError> {
    state.store.get_chat(&ChatId(chat_id.to_string())).await?.ok_or_else(|| ApiError::Feishu(invalid_chat_id()))
}

/// Runs an atomic change on the chat; "no such chat" is 232006, a refused change its own error.
pub async fn change_chat(state: &AppState, chat_id: &ChatId, change: crate::store::ChatChange) -> Result<Chat, ApiError> {
    let outcome = state.store.modify_chat(chat_id, change).await?;
    Ok(outcome.ok_or_else(|| ApiError::Feishu(invalid_chat_id()))??)
}

/// `sort_type` of the chat list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
pub enum ChatSortType {
    ByCreateTimeAsc,
    ByActiveTimeDesc,
}

/// `sort_type` of the message list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
pub enum MessageSortType {
    ByCreateTimeAsc,
    ByCreateTimeDesc,
}

/// `receive_id_type` of send-message: what `receive_id` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReceiveIdType {
    OpenId,
    UnionId,
    UserId,
    Email,
    ChatId,
}

impl ReceiveIdType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenId => "open_id",
            Self::UnionId => "union_id",
            Self::UserId => "user_id",
            Self::Email => "email",
            Self::ChatId => "chat_id",
        }
    }
}

/// `type` of a message resource download: an image (of an image or post message) or a file (of
/// a file, audio or video message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResourceType {
    Image,
    File,
}

/// `container_id_type` of the message list: a chat (p2p or group), or a thread (`omt_…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContainerIdType {
    Chat,
    Thread,
}

/// `user_id_type` from the query: open_id when absent, else one of the three (232001).
pub fn user_id_type(value: Option<&str>) -> Result<UserIdType, FeishuError> {
    match value {
        None | Some("") => Ok(UserIdType::OpenId),
        Some(v) => UserIdType::parse(v)
            .ok_or_else(|| FeishuError::im_invalid_param("user_id_type", Some(v), "must be open_id, union_id or user_id")),
    }
}

/// `page_size` within 1..=max, `default` when absent.
pub fn page_size(value: Option<&str>, default: usize, max: usize, invalid: fn(&str, &str) -> FeishuError) -> Result<usize, FeishuError> {
    match value {
        None | Some("") => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(invalid("page_size", &format!("must be an integer from 1 to {max}"))),
        },
    }
}

pub fn im_param(field: &str, why: &str) -> FeishuError {
    FeishuError::im_invalid_param(field, None, why)
}

/// Page tokens are opaque to clients: hex of `key:seq`.
pub fn encode_cursor(c: Cursor) -> String {
    hex::encode(format!("{}:{}", c.key, c.seq))
}

pub fn decode_cursor(token: Option<&str>, invalid: fn(&str, &str) -> FeishuError) -> Result<Option<Cursor>, FeishuError> {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let parsed = hex::decode(token).ok().and_then(|b| String::from_utf8(b).ok()).and_then(|s| {
        let (k, q) = s.split_once(':')?;
        Some(Cursor { key: k.parse().ok()?, seq: q.parse().ok()? })
    });
    parsed.map(Some).ok_or_else(|| invalid("page_token", "not a page token larkstack issued"))
}

/// A user's ID as `app` sees it, when the user is still in the directory.
pub fn user_ref(dir: &Directory, app: &App, uid: &Uid, id_type: UserIdType) -> Option<String> {
    dir.user(uid).map(|u: &User| dir.user_external_id(app, u, id_type))
}
