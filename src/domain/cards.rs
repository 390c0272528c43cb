//! Interactive-card callbacks (spec events.md §3.4): what a user's click on a card becomes
//! (`card.action.trigger`), how the app's answer is read (`toast`, `card`), the `c-` tokens of a
//! delayed update (`POST /open-apis/interactive/v1/card/update`: 30 minutes, two uses) and the
//! rule for replacing a card's content by either route. Pure.

use serde_json::{json, Map, Value};

use super::directory::{App, Directory, User};
use super::ids::AppId;
use super::message::{invalid, recalled, too_long, validate_content, Message, MAX_RICH_BYTES};
use crate::error::{FeishuError, MessageErr};

/// A delayed-update token is good for this long after the click (larkstack clock).
pub const CARD_TOKEN_TTL_MS: i64 = 30 * 60 * 1000;
/// … and for this many updates (Feishu's current page: 2; the older Lark page said 3).
pub const CARD_TOKEN_USES: i64 = 2;
/// Live tokens kept in the store; issuing one more drops the oldest (each row ~200 bytes, so
/// about 20 MB at most). Expired ones are dropped whenever a token is issued.
pub const MAX_CARD_TOKENS: i64 = 100_000;
/// The app's answer to a callback is read up to this many bytes (a card is at most 30 KB).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// A fresh `c-…` token: 32 hex after the prefix.
pub fn new_card_token() -> String {
    format!("c-{}", crate::secrets::random_hex().chars().take(32).collect::<String>())
}

/// The `card.action.trigger` `event` object for `app` (the card's sender): `user` clicked the
/// card `message` (in chat `message.chat_id`) with `action`; every id in `app`'s id space.
pub fn card_action_event(dir: &Directory, app: &App, tenant_key: &str, user: &User, message: &Message, token: &str, action: &Value) -> Value {
    let mut operator = json!({
        "tenant_key": tenant_key,
        "open_id": dir.open_id(app, user).0,
        "union_id": dir.union_id(&app.developer, user).0,
    });
    // As for events: user_id only with the employee-id scope, for users of the app's tenant.
    if app.has_scope("contact:user.employee_id:readonly") && user.tenant_key.0 == tenant_key {
        operator["user_id"] = json!(user.user_id.0);
    }
    json!({
        "operator": operator,
        "token": token,
        "action": action,
        "host": "im_message",
        "context": {
            "open_message_id": message.message_id.0,
            "open_chat_id": message.chat_id.0,
        },
    })
}

/// The `action` a control-API caller described, as the app receives it: `value` and
/// `form_value` must be objects when given (the Python SDK refuses a string `value`), `tag`
/// defaults to `button`; other keys (`option`, `options`, `input_value`, `name`, `checked`,
/// `timezone`) pass through.
pub fn action_object(action: &Value) -> Result<Value, String> {
    let Value::Object(given) = action else {
        return Err("action must be an object".into());
    };
    let mut out: Map<String, Value> = given.clone();
    for key in ["value", "form_value"] {
        if let Some(v) = out.get(key) {
            if !v.is_object() && !v.is_null() {
                return Err(format!("action.{key} must be an object (the SDKs only take objects)"));
            }
        }
    }
    out.entry("tag").or_insert_with(|| json!("button"));
    out.entry("value").or_insert_with(|| json!({}));
    Ok(Value::Object(out))
}

/// What an app answered to a callback.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Answer {
    /// `toast` as the app sent it (`{type, content, i18n}`).
    pub toast: Option<Value>,
    /// The card's new content (a JSON string as messages store it), from `card`.
    pub card: Option<String>,
}

/// Reads the app's answer body: `{}` / empty is "nothing"; `card` is `{type:"raw", data:{…}}`
/// or `{type:"template", data:{template_id, …}}` (kept as a template card's content). `Err`
/// says what is wrong with it.
pub fn read_answer(body: &str) -> Result<Answer, String> {
    let body = body.trim();
    if body.is_empty() {
        return Ok(Answer::default());
    }
    let v: Value = serde_json::from_str(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
    // The Python SDK's webhook handler answers a JSON string of the response; accept both.
    let v = match v {
        Value::String(s) if s.trim().is_empty() => return Ok(Answer::default()),
        Value::String(s) => serde_json::from_str(&s).map_err(|e| format!("the answer is not JSON: {e}"))?,
        other => other,
    };
    let Value::Object(obj) = v else {
        return Err("the answer is not a JSON object".into());
    };
    let toast = obj.get("toast").filter(|t| !t.is_null()).cloned();
    let card = match obj.get("card").filter(|c| !c.is_null()) {
        None => None,
        Some(c) => Some(card_content(c)?),
    };
    Ok(Answer { toast, card })
}

/// The stored content for an answered `card`.
fn card_content(card: &Value) -> Result<String, String> {
    let kind = card.get("type").and_then(Value::as_str).unwrap_or("raw");
    let data = card.get("data").ok_or("card has no data")?;
    match kind {
        "raw" => match data {
            Value::Object(_) => Ok(data.to_string()),
            // A raw card given as a JSON string.
            Value::String(s) => serde_json::from_str::<Value>(s).map(|v| v.to_string()).map_err(|e| format!("card.data is not JSON: {e}")),
            _ => Err("card.data must be the card JSON".into()),
        },
        "template" => Ok(json!({"type": "template", "data": data}).to_string()),
        other => Err(format!("card.type {other:?} is neither raw nor template")),
    }
}

/// The content a delayed update asks for: the `card` object without its `open_ids` (which name
/// the users whose copy changes; larkstack keeps one copy, see docs/parity.md).
pub fn update_content(card: &Value) -> Result<String, FeishuError> {
    let Value::Object(obj) = card else {
        return Err(invalid("card", "card must be the card JSON object"));
    };
    let mut obj = obj.clone();
    obj.remove("open_ids");
    Ok(Value::Object(obj).to_string())
}

/// Replaces the card `m` with `content` after a user's interaction (the callback's answer or a
/// delayed update): only a live interactive card `app` sent; the new one must be a card of at
/// most 30 KB. Unlike `PATCH` it needs no `update_multi` (Feishu then updates the clicking
/// user's copy; larkstack has one copy, see docs/parity.md).
pub fn replace_card(m: &mut Message, app: &AppId, content: String, now_ms: i64) -> Result<(), FeishuError> {
    if m.is_recalled() {
        return Err(recalled());
    }
    if m.msg_type != "interactive" || !m.sent_by_app(app) {
        return Err(invalid("token", "only the card the app sent can be updated"));
    }
    if content.len() > MAX_RICH_BYTES {
        return Err(too_long());
    }
    if validate_content("interactive", &content).is_err() {
        return Err(MessageErr::CardBuildFailed.with_msg("Failed to create card content: content is not a card"));
    }
    m.content = content;
    m.state.updated_at_ms = Some(now_ms);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_raw_template_string_and_empty() {
        assert_eq!(read_answer("").unwrap(), Answer::default());
        assert_eq!(read_answer("{}").unwrap(), Answer::default());
        assert_eq!(read_answer("\"\"").unwrap(), Answer::default());
        let a = read_answer(r#"{"toast":{"type":"info","content":"ok"},"card":{"type":"raw","data":{"elements":[]}}}"#).unwrap();
        assert_eq!(a.toast, Some(json!({"type":"info","content":"ok"})));
        assert_eq!(a.card.as_deref(), Some(r#"{"elements":[]}"#));
        let t = read_answer(r#"{"card":{"type":"template","data":{"template_id":"AAq"}}}"#).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&t.card.unwrap()).unwrap(), json!({"type":"template","data":{"template_id":"AAq"}}));
        let s = read_answer(r#""{\"toast\":{\"type\":\"success\"}}""#).unwrap();
        assert_eq!(s.toast, Some(json!({"type":"success"})));
        assert!(read_answer("nope").is_err());
        assert!(read_answer(r#"{"card":{"type":"video","data":{}}}"#).is_err());
    }

    #[test]
    fn actions_need_object_values() {
        assert_eq!(action_object(&json!({})).unwrap(), json!({"tag":"button","value":{}}));
        assert!(action_object(&json!({"value":"x"})).is_err());
        assert!(action_object(&json!({"form_value":[1]})).is_err());
        assert!(action_object(&json!("x")).is_err());
        let a = action_object(&json!({"tag":"select_static","option":"b","value":{"k":1}})).unwrap();
        assert_eq!(a["option"], "b");
    }

    #[test]
    fn tokens_look_like_feishus() {
        let t = new_card_token();
        assert!(t.starts_with("c-") && t.len() == 34, "{t}");
        assert_ne!(t, new_card_token());
    }

    #[test]
    fn open_ids_are_dropped_from_a_delayed_update() {
        let c = update_content(&json!({"elements":[], "open_ids":["ou_1"]})).unwrap();
        assert_eq!(c, r#"{"elements":[]}"#);
        assert!(update_content(&json!("x")).is_err());
    }
}
