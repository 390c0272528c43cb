//! Storage: one `Store` trait, one module per backend.
//!
//! The contract never leans on a single writer: uniqueness (chat ids, `uuid` dedup keys, tokens)
//! is enforced by constraints, so a backend with many concurrent writers keeps the same guarantees.
//! A call that returns `Ok` has been committed durably.

pub mod sqlite;

use async_trait::async_trait;

use crate::domain::chat::Chat;
use crate::domain::ids::{AppId, ChatId, TenantKey};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage failure: {0}")]
    Backend(String),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    #[error("the store is shutting down")]
    Closed,
}

/// What makes two creates "the same request": Feishu's `uuid` + `owner_id`, scoped to the caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DedupKey {
    pub tenant_key: TenantKey,
    pub app_id: AppId,
    pub uuid: String,
    /// The owner as larkstack knows it (a uid), or empty when the bot owns the chat.
    pub owner: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    New(Chat),
    /// The dedup key was already used inside the window: the chat created then.
    Existing(Chat),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Tenant,
    App,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Tenant => "tenant",
            TokenKind::App => "app",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tenant" => Some(TokenKind::Tenant),
            "app" => Some(TokenKind::App),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub token: String,
    pub kind: TokenKind,
    pub app_id: AppId,
    pub tenant_key: TenantKey,
    pub issued_at_ms: i64,
    pub expires_at_ms: i64,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores `chat`. With a dedup key, at most one chat exists per key among keys created after
    /// `dedup_window_start_ms`; a repeat gets `Created::Existing` and stores nothing.
    async fn create_chat(
        &self,
        chat: Chat,
        dedup: Option<DedupKey>,
        dedup_window_start_ms: i64,
    ) -> Result<Created, StoreError>;

    /// The chat a live dedup key points at.
    async fn find_dedup(&self, key: &DedupKey, window_start_ms: i64) -> Result<Option<Chat>, StoreError>;

    async fn get_chat(&self, chat_id: &ChatId) -> Result<Option<Chat>, StoreError>;

    async fn count_chats(&self) -> Result<u64, StoreError>;

    async fn put_token(&self, token: TokenRecord) -> Result<(), StoreError>;

    async fn find_token(&self, token: &str) -> Result<Option<TokenRecord>, StoreError>;

    /// The token of this kind for (app, tenant) that expires last.
    async fn latest_token(
        &self,
        app_id: &AppId,
        tenant_key: &TenantKey,
        kind: TokenKind,
    ) -> Result<Option<TokenRecord>, StoreError>;
}
