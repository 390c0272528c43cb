//! Messages: the stored model and `content` validation per `msg_type` (spec §4.1).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ids::{AppId, ChatId, MessageId, TenantKey, Uid};
use crate::error::{FeishuError, MessageErr};

/// A message's own edits: at most 20 (Feishu's documented limit, 230072).
pub const MAX_EDITS: u32 = 20;
/// How long after sending a message can be edited (230075). Feishu leaves it to the tenant admin;
/// larkstack takes the recall default, 24 h (GUESS, docs/parity.md).
pub const EDIT_WINDOW_MS: i64 = 24 * 3600 * 1000;
/// A bot recalls its own messages within 24 h (the admin default; 230009).
pub const RECALL_OWN_WINDOW_MS: i64 = 24 * 3600 * 1000;
/// Owners and managers recall others' messages within a year (230009 after).
pub const RECALL_OTHERS_WINDOW_MS: i64 = 365 * 24 * 3600 * 1000;
/// A card can be updated within 14 days of sending (230031).
pub const PATCH_WINDOW_MS: i64 = 14 * 24 * 3600 * 1000;
/// Read receipts are kept, and asked for, within 7 days of sending (230033).
pub const READ_USERS_WINDOW_MS: i64 = 7 * 24 * 3600 * 1000;
/// What a recalled message's body shows in place of its content.
pub const RECALLED_CONTENT: &str = r#"{"text":"This message was recalled"}"#;

/// Message `uuid` dedup window.
pub const MESSAGE_DEDUP_WINDOW_MS: i64 = 3600 * 1000;
pub const MAX_TEXT_BYTES: usize = 150 * 1024;
pub const MAX_RICH_BYTES: usize = 30 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Sender {
    App(AppId),
    User(Uid),
    /// A group's custom bot, by its bot id (`domain::custom_bots`), posting through its webhook.
    CustomBot(AppId),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Message {
    pub message_id: MessageId,
    pub chat_id: ChatId,
    pub msg_type: String,
    /// The JSON string exactly as sent.
    pub content: String,
    pub sender: Sender,
    pub sender_tenant: TenantKey,
    pub created_at_ms: i64,
    /// Where it sits in a reply chain and what happened to it since it was sent (absent from
    /// bodies stored before these existed: all defaults).
    #[serde(flatten)]
    pub state: MessageState,
}

/// A message's place among replies and what happened to it after it was sent.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MessageState {
    /// The first message of the reply chain (a reply's root; none for the root itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_id: Option<MessageId>,
    /// The message replied to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<MessageId>,
    /// `omt_…` once the message is in a thread (its root too, from the first thread reply on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// When the content was last changed (an edit or a card update).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at_ms: Option<i64>,
    /// Edits made through `PUT` (card updates do not count).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub edit_count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recalled_at_ms: Option<i64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Message {
    pub fn is_recalled(&self) -> bool {
        self.state.recalled_at_ms.is_some()
    }

    pub fn sent_by_app(&self, app: &AppId) -> bool {
        matches!(&self.sender, Sender::App(a) if a == app)
    }

    /// The content readers see: a recalled message's is gone.
    pub fn shown_content(&self) -> &str {
        if self.is_recalled() {
            RECALLED_CONTENT
        } else {
            &self.content
        }
    }

    pub fn update_time_ms(&self) -> i64 {
        self.state.updated_at_ms.unwrap_or(self.created_at_ms)
    }
}

/// Why a recall is allowed: Feishu's `recall_type` of `im.message.recalled_v1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecallType {
    MessageOwner,
    GroupOwner,
    GroupManager,
}

/// Whether the bot `app` may recall `m` now: its own message within 24 h; another's only as the
/// chat's owner, a manager or its creator (`is_owner` / `is_manager`), within a year.
pub fn may_recall(m: &Message, app: &AppId, is_owner: bool, is_manager: bool, now_ms: i64) -> Result<RecallType, FeishuError> {
    if m.is_recalled() {
        return Err(recalled());
    }
    let age = now_ms - m.created_at_ms;
    if m.sent_by_app(app) {
        return if age > RECALL_OWN_WINDOW_MS { Err(MessageErr::RecallExpired.err()) } else { Ok(RecallType::MessageOwner) };
    }
    let kind = match (is_owner, is_manager) {
        (true, _) => RecallType::GroupOwner,
        (false, true) => RecallType::GroupManager,
        (false, false) => return Err(MessageErr::RecallDenied.err()),
    };
    if age > RECALL_OTHERS_WINDOW_MS {
        return Err(MessageErr::RecallExpired.err());
    }
    Ok(kind)
}

/// An edit of a text or post message by its sender `app`: the rules of `PUT`, then the change.
pub fn edit(m: &mut Message, app: &AppId, msg_type: &str, content: String, now_ms: i64) -> Result<(), FeishuError> {
    if m.is_recalled() {
        return Err(recalled());
    }
    if !m.sent_by_app(app) {
        return Err(MessageErr::EditNotSender.err());
    }
    if !matches!(m.msg_type.as_str(), "text" | "post") {
        return Err(invalid("message_id", "only text and post messages can be edited"));
    }
    if m.state.edit_count >= MAX_EDITS {
        return Err(MessageErr::EditLimit.err());
    }
    if now_ms - m.created_at_ms > EDIT_WINDOW_MS {
        return Err(MessageErr::EditExpired.err());
    }
    m.msg_type = msg_type.to_string();
    m.content = content;
    m.state.edit_count += 1;
    m.state.updated_at_ms = Some(now_ms);
    Ok(())
}

/// Whether a card's JSON declares itself shared (`config.update_multi: true`).
fn is_shared_card(content: &str) -> bool {
    serde_json::from_str::<Value>(content)
        .ok()
        .and_then(|v| v.get("config").and_then(|c| c.get("update_multi")).and_then(Value::as_bool))
        .unwrap_or(false)
}

/// A card update by `app` (`PATCH`): only a shared interactive card the app sent, not recalled,
/// within 14 days; the new card must be a shared card too, and at most 30 KB.
pub fn patch_card(m: &mut Message, app: &AppId, content: String, now_ms: i64) -> Result<(), FeishuError> {
    if m.is_recalled() {
        return Err(recalled());
    }
    if m.msg_type != "interactive" {
        return Err(invalid("message_id", "only interactive (card) messages can be updated this way"));
    }
    if !m.sent_by_app(app) {
        return Err(invalid("message_id", "only the app that sent the card can update it"));
    }
    if now_ms - m.created_at_ms > PATCH_WINDOW_MS {
        return Err(MessageErr::PatchExpired.err());
    }
    if content.len() > MAX_RICH_BYTES {
        return Err(too_long());
    }
    if validate_content("interactive", &content).is_err() {
        return Err(MessageErr::CardBuildFailed.with_msg("Failed to create card content: content is not a card"));
    }
    if !is_shared_card(&m.content) || !is_shared_card(&content) {
        return Err(invalid("content", "only shared cards (config.update_multi: true, before and after) can be updated"));
    }
    m.content = content;
    m.state.updated_at_ms = Some(now_ms);
    Ok(())
}

pub fn recalled() -> FeishuError {
    MessageErr::Recalled.err()
}

pub fn invalid(field: &str, why: impl Into<String>) -> FeishuError {
    MessageErr::InvalidParam.err().with_field(field, None, why)
}

pub fn bot_not_in_chat() -> FeishuError {
    MessageErr::BotNotInChat.err()
}

pub fn too_long() -> FeishuError {
    MessageErr::ContentTooLong.err()
}

pub fn chat_rate_limited() -> FeishuError {
    MessageErr::ChatRateLimited.err()
}

pub fn user_unavailable() -> FeishuError {
    MessageErr::UserUnavailable.err()
}

pub const MSG_TYPES: &[&str] =
    &["text", "post", "image", "file", "audio", "media", "sticker", "interactive", "share_chat", "share_user", "system"];

fn string_field(obj: &serde_json::Map<String, Value>, key: &str, msg_type: &str) -> Result<(), FeishuError> {
    match obj.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(()),
        _ => Err(invalid("content", format!("{msg_type} content needs a non-empty string \"{key}\""))),
    }
}

/// Checks `content` (a JSON string) against `msg_type`.
pub fn validate_content(msg_type: &str, content: &str) -> Result<(), FeishuError> {
    if !MSG_TYPES.contains(&msg_type) {
        return Err(invalid("msg_type", format!("must be one of: {}", MSG_TYPES.join(", "))));
    }
    let limit = if msg_type == "text" { MAX_TEXT_BYTES } else { MAX_RICH_BYTES };
    if content.len() > limit {
        return Err(too_long());
    }
    let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(content) else {
        return Err(invalid("content", "content must be a JSON object encoded as a string"));
    };
    match msg_type {
        "text" => string_field(&obj, "text", msg_type),
        "image" => string_field(&obj, "image_key", msg_type),
        "file" | "audio" | "media" | "sticker" => string_field(&obj, "file_key", msg_type),
        "share_chat" => string_field(&obj, "chat_id", msg_type),
        "share_user" => string_field(&obj, "user_id", msg_type),
        "post" => {
            // {"zh_cn": {"title", "content": [[…]]}} or the same under "post".
            let body = obj.get("post").and_then(Value::as_object).unwrap_or(&obj);
            let ok = !body.is_empty()
                && body.values().all(|lang| lang.get("content").is_some_and(|c| c.as_array().is_some_and(|rows| rows.iter().all(Value::is_array))));
            if ok {
                Ok(())
            } else {
                Err(invalid("content", "post content is {\"<locale>\": {\"title\": …, \"content\": [[…]]}}"))
            }
        }
        "interactive" => {
            if obj.contains_key("elements") || obj.contains_key("header") || obj.contains_key("body") || obj.contains_key("type") {
                Ok(())
            } else {
                Err(invalid("content", "a card needs elements, header, body or a template type"))
            }
        }
        _ => Ok(()), // system: any object
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_rules_per_type() {
        assert!(validate_content("text", r#"{"text":"hi"}"#).is_ok());
        assert_eq!(validate_content("text", r#"{"txt":"hi"}"#).unwrap_err().code, 230001);
        assert_eq!(validate_content("text", "hi").unwrap_err().code, 230001);
        assert_eq!(validate_content("video", r#"{}"#).unwrap_err().code, 230001);
        assert!(validate_content("post", r#"{"zh_cn":{"title":"t","content":[[{"tag":"text","text":"x"}]]}}"#).is_ok());
        assert!(validate_content("post", r#"{"zh_cn":{"title":"t"}}"#).is_err());
        assert!(validate_content("interactive", r#"{"elements":[]}"#).is_ok());
        assert!(validate_content("image", r#"{"image_key":"img_1"}"#).is_ok());
        assert!(validate_content("share_chat", r#"{"chat_id":""}"#).is_err());
        let long = format!(r#"{{"text":"{}"}}"#, "x".repeat(MAX_TEXT_BYTES));
        assert_eq!(validate_content("text", &long).unwrap_err().code, 230025);
    }
}
