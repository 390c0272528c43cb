//! Messages: the stored model and `content` validation per `msg_type` (spec §4.1).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ids::{AppId, ChatId, MessageId, TenantKey, Uid};
use crate::error::{FeishuError, MessageErr};

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
