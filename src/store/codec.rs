//! How a chat is laid out in a row, shared by every SQL backend: members as compact blobs, the
//! rest as JSON text. One place, so SQLite and PostgreSQL rows hold the same bytes.

use super::{StoreError, TokenKind, TokenRecord};
use crate::domain::chat::{join_key, Chat, ChatStatus};
use crate::domain::ids::{AppId, ChatId, TenantKey, Uid};

/// A chat's column values, in `chat_columns!()` order after `seq` (see `sql`).
pub struct ChatRow {
    pub chat_id: String,
    pub tenant_key: String,
    pub creator_app: String,
    pub owner: String,
    pub external: bool,
    pub status: &'static str,
    pub created_at: i64,
    pub settings: String,
    pub users: Vec<u8>,
    pub bots: String,
    pub user_managers: Vec<u8>,
    pub bot_managers: String,
    pub last_active_at: i64,
    pub user_joined: Vec<u8>,
}

impl ChatRow {
    pub fn encode(chat: &Chat) -> Result<Self, StoreError> {
        Ok(ChatRow {
            chat_id: chat.chat_id.0.clone(),
            tenant_key: chat.tenant_key.0.clone(),
            creator_app: chat.creator_app.0.clone(),
            owner: to_json(&chat.owner),
            external: chat.external,
            status: status_str(chat.status),
            created_at: chat.created_at_ms,
            settings: to_json(&chat.settings),
            users: users_blob(&chat.users)?,
            bots: to_json(&chat.bots),
            user_managers: users_blob(&chat.user_managers)?,
            bot_managers: to_json(&chat.bot_managers),
            last_active_at: chat.last_active_at_ms,
            user_joined: joined_blob(chat),
        })
    }

    pub fn decode(self) -> Result<Chat, StoreError> {
        let users = users_from_blob(&self.users)?;
        let user_join_keys = joined_from_blob(&self.user_joined, users.len(), self.created_at)?;
        Ok(Chat {
            chat_id: ChatId(self.chat_id),
            tenant_key: TenantKey(self.tenant_key),
            creator_app: AppId(self.creator_app),
            owner: from_json("owner", &self.owner)?,
            external: self.external,
            status: match self.status {
                "dissolved" => ChatStatus::Dissolved,
                _ => ChatStatus::Normal,
            },
            created_at_ms: self.created_at,
            settings: from_json("settings", &self.settings)?,
            users,
            user_join_keys,
            bots: from_json("bots", &self.bots)?,
            user_managers: users_from_blob(&self.user_managers)?,
            bot_managers: from_json("bot_managers", &self.bot_managers)?,
            last_active_at_ms: self.last_active_at,
        })
    }
}

/// The search text of a row stored before the `search_text` column existed, from its settings
/// (the migrations that add the column backfill it with this).
pub fn search_text_from_settings(settings: &str) -> Result<String, StoreError> {
    Ok(from_json::<crate::domain::chat::ChatSettings>("settings", settings)?.search_text())
}

/// The stored status text, as a static str so `ChatRow` can hold it.
pub fn status_from(s: &str) -> &'static str {
    match s {
        "dissolved" => "dissolved",
        _ => "normal",
    }
}

pub fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serialises")
}

pub fn from_json<T: serde::de::DeserializeOwned>(col: &str, s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("column {col}: {e}")))
}

pub fn status_str(s: ChatStatus) -> &'static str {
    match s {
        ChatStatus::Normal => "normal",
        ChatStatus::Dissolved => "dissolved",
    }
}

/// Users are stored as one blob of 10-byte uids, in join order.
fn users_blob(users: &[Uid]) -> Result<Vec<u8>, StoreError> {
    let mut blob = Vec::with_capacity(users.len() * 10);
    for u in users {
        blob.extend_from_slice(
            &u.to_bytes()
                .ok_or_else(|| StoreError::Corrupt(format!("non-canonical uid {u}")))?,
        );
    }
    Ok(blob)
}

fn users_from_blob(blob: &[u8]) -> Result<Vec<Uid>, StoreError> {
    if blob.len() % 10 != 0 {
        return Err(StoreError::Corrupt("users blob length".into()));
    }
    Ok(blob.chunks_exact(10).map(Uid::from_bytes).collect())
}

/// Join keys: one blob of 8-byte little-endian keys. A chat whose members all joined at creation
/// (the common case) stores an empty blob.
fn joined_blob(chat: &Chat) -> Vec<u8> {
    let at_creation = chat
        .user_join_keys
        .iter()
        .enumerate()
        .all(|(i, k)| *k == join_key(chat.created_at_ms, i));
    if at_creation {
        return Vec::new();
    }
    chat.user_join_keys
        .iter()
        .flat_map(|t| t.to_le_bytes())
        .collect()
}

fn joined_from_blob(blob: &[u8], users: usize, created_at_ms: i64) -> Result<Vec<i64>, StoreError> {
    if blob.is_empty() {
        return Ok((0..users).map(|i| join_key(created_at_ms, i)).collect());
    }
    if blob.len() != users * 8 {
        return Err(StoreError::Corrupt("user_joined blob length".into()));
    }
    Ok(blob
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect())
}

/// The token columns `token, kind, app_id, tenant_key, issued_at, expires_at` as read.
pub type TokenRow = (String, String, String, String, i64, i64);

pub fn token_record(row: TokenRow) -> Result<TokenRecord, StoreError> {
    let (token, kind, app, tenant, issued, expires) = row;
    Ok(TokenRecord {
        token,
        kind: TokenKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("token kind {kind}")))?,
        app_id: AppId(app),
        tenant_key: TenantKey(tenant),
        issued_at_ms: issued,
        expires_at_ms: expires,
    })
}
