//! A group's custom bots (Feishu's 自定义机器人): a webhook token that posts into one chat, with
//! optional security settings that stack — a signing secret, keywords, an IP allowlist. Pure:
//! the rules of Feishu's "custom bot guide" (Bot v2 hook), and how a webhook body becomes a
//! message. GUESSES are in docs/parity.md, "Custom bots".

use std::net::IpAddr;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::ids::{AppId, ChatId, TenantKey};
use super::message::validate_content;

/// Custom bots one chat may have (GUESS: Feishu's group bot cap).
pub const MAX_CUSTOM_BOTS_PER_CHAT: usize = 15;
/// "自定义关键词（最多 10 个）", "IP 白名单（最多 10 个）".
pub const MAX_KEYWORDS: usize = 10;
pub const MAX_IP_RULES: usize = 10;
/// Characters of a bot's name and description, and of one keyword (GUESS).
pub const MAX_NAME_CHARS: usize = 50;
pub const MAX_DESCRIPTION_CHARS: usize = 200;
pub const MAX_KEYWORD_CHARS: usize = 200;
/// Bytes of a signing secret (GUESS; Feishu issues 22-character secrets).
pub const MAX_SECRET_BYTES: usize = 128;
/// A webhook body is at most 20 KB (the guide's request-size limit).
pub const MAX_HOOK_BODY_BYTES: usize = 20 * 1024;
/// A signature's `timestamp` (seconds) may be at most this far from the server's clock.
pub const SIGN_WINDOW_SECS: i64 = 3600;

/// One custom bot of one chat, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomBot {
    /// What messages name as their sender (`cli_` + 16 hex).
    pub bot_id: AppId,
    /// The last path segment of the webhook URL: whoever holds it may post.
    pub token: String,
    pub chat_id: ChatId,
    pub tenant_key: TenantKey,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// With a secret, every post must be signed (`timestamp` + `sign`).
    #[serde(default)]
    pub secret: Option<String>,
    /// With keywords, a post's text must contain one of them.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// With rules, only posts from matching addresses are taken.
    #[serde(default)]
    pub ip_allowlist: Vec<String>,
    pub created_at_ms: i64,
}

/// What the control API gives to add a custom bot.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomBotSpec {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Turns on the signature check.
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Addresses (`10.0.0.1`), wildcards (`10.0.0.*`) or CIDR blocks (`10.0.0.0/8`, `::1/128`).
    #[serde(default)]
    pub ip_allowlist: Vec<String>,
}

impl CustomBotSpec {
    /// Checks the spec against the limits above: `Err` says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let chars = |s: &str| s.chars().count();
        if self.name.trim().is_empty() || chars(&self.name) > MAX_NAME_CHARS {
            return Err(format!("name must have 1 to {MAX_NAME_CHARS} characters"));
        }
        if self.description.as_deref().is_some_and(|d| chars(d) > MAX_DESCRIPTION_CHARS) {
            return Err(format!("description has at most {MAX_DESCRIPTION_CHARS} characters"));
        }
        if let Some(secret) = &self.secret {
            if secret.is_empty() || secret.len() > MAX_SECRET_BYTES {
                return Err(format!("secret must have 1 to {MAX_SECRET_BYTES} bytes"));
            }
        }
        if self.keywords.len() > MAX_KEYWORDS {
            return Err(format!("at most {MAX_KEYWORDS} keywords"));
        }
        if self.keywords.iter().any(|k| k.trim().is_empty() || chars(k) > MAX_KEYWORD_CHARS) {
            return Err(format!("a keyword has 1 to {MAX_KEYWORD_CHARS} characters"));
        }
        if self.ip_allowlist.len() > MAX_IP_RULES {
            return Err(format!("at most {MAX_IP_RULES} ip_allowlist entries"));
        }
        if let Some(bad) = self.ip_allowlist.iter().find(|r| IpRule::parse(r).is_none()) {
            return Err(format!("ip_allowlist entry {bad:?} is not an address, a 1.2.3.* wildcard or a CIDR block"));
        }
        Ok(())
    }
}

/// HMAC-SHA256 (RFC 2104), the one MAC the custom bot signature uses.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(msg).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

/// The `sign` of a post at `timestamp` (seconds, as sent): Feishu's custom bot signature,
/// base64(HMAC-SHA256(key = "{timestamp}\n{secret}", message = "")).
pub fn sign(timestamp: &str, secret: &str) -> String {
    let key = format!("{timestamp}\n{secret}");
    base64::engine::general_purpose::STANDARD.encode(hmac_sha256(key.as_bytes(), b""))
}

/// Whether a post's `timestamp` and `sign` pass a bot with `secret` at `now_ms`: the timestamp
/// within an hour of the clock, either side, and the signature of exactly that timestamp text.
pub fn signature_ok(timestamp: Option<&str>, given: Option<&str>, secret: &str, now_ms: i64) -> bool {
    let (Some(ts), Some(given)) = (timestamp, given) else { return false };
    let Ok(secs) = ts.trim().parse::<i64>() else { return false };
    if (now_ms.div_euclid(1000) - secs).abs() > SIGN_WINDOW_SECS {
        return false;
    }
    crate::secrets::secret_eq(given, &sign(ts, secret))
}

/// One IP allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum IpRule {
    /// An address and how many leading bits must match (an exact address: all of them).
    Block(IpAddr, u32),
    /// IPv4 octets, `None` for `*`.
    Wildcard([Option<u8>; 4]),
}

impl IpRule {
    fn parse(s: &str) -> Option<IpRule> {
        let s = s.trim();
        if let Some((addr, bits)) = s.split_once('/') {
            let addr: IpAddr = addr.parse().ok()?;
            let bits: u32 = bits.parse().ok()?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            return (bits <= max).then_some(IpRule::Block(addr, bits));
        }
        if let Ok(addr) = s.parse::<IpAddr>() {
            return Some(IpRule::Block(addr, if addr.is_ipv4() { 32 } else { 128 }));
        }
        let parts: Vec<&str> = s.split('.').collect();
        if parts.len() != 4 || !s.contains('*') {
            return None;
        }
        let mut octets = [None; 4];
        for (slot, part) in octets.iter_mut().zip(parts) {
            *slot = if part == "*" { None } else { Some(part.parse::<u8>().ok()?) };
        }
        Some(IpRule::Wildcard(octets))
    }

    fn matches(&self, ip: IpAddr) -> bool {
        // An IPv4 client may arrive as an IPv4-mapped IPv6 address.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self, ip) {
            (IpRule::Block(IpAddr::V4(net), bits), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                u32::from(*net) & mask == u32::from(ip) & mask
            }
            (IpRule::Block(IpAddr::V6(net), bits), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                u128::from(*net) & mask == u128::from(ip) & mask
            }
            (IpRule::Wildcard(octets), IpAddr::V4(ip)) => octets.iter().zip(ip.octets()).all(|(want, got)| want.is_none_or(|w| w == got)),
            _ => false,
        }
    }
}

/// Whether a post from `ip` passes the bot's allowlist (an empty list lets everyone in).
pub fn ip_allowed(rules: &[String], ip: IpAddr) -> bool {
    rules.is_empty() || rules.iter().filter_map(|r| IpRule::parse(r)).any(|r| r.matches(ip))
}

/// Whether the message's text contains one of `keywords` (none: every message passes). Text is
/// what a reader sees: the values of `text`, `title` and `content` strings anywhere in the
/// message, never link targets (`href`, `url`) — the guide: keywords are matched against the
/// text parameters, not `href`.
pub fn has_keyword(message: &Value, keywords: &[String]) -> bool {
    fn texts<'v>(v: &'v Value, out: &mut Vec<&'v str>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("text" | "title" | "content", Value::String(s)) => out.push(s),
                        ("href" | "url" | "multi_url", _) => {}
                        _ => texts(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| texts(i, out)),
            _ => {}
        }
    }
    if keywords.is_empty() {
        return true;
    }
    let mut found = Vec::new();
    texts(message, &mut found);
    keywords.iter().any(|k| found.iter().any(|t| t.contains(k.as_str())))
}

/// A webhook post turned into a message of the chat: `(msg_type, content)` with `content` the
/// IM JSON string, or why the body is a bad request. `chat_id` is the bot's own chat: a shared
/// chat card may only share it ("只能分享所在群").
///
/// | msg_type | body | message content |
/// |---|---|---|
/// | text | `content.text` | `{"text"}` |
/// | post | `content.post.{locale}` | `{"{locale}": {title, content}}` |
/// | image | `content.image_key` | `{"image_key"}` |
/// | share_chat | `content.share_chat_id` | `{"chat_id"}` |
/// | interactive | `card` (an object, not a string) | the card |
pub fn hook_message(body: &Value, chat_id: &ChatId) -> Result<(String, String), String> {
    let msg_type = body.get("msg_type").and_then(Value::as_str).ok_or("msg_type is required")?;
    let content = body.get("content");
    let field = |name: &str| -> Result<&str, String> {
        content
            .and_then(|c| c.get(name))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("{msg_type} needs content.{name}"))
    };
    let im = match msg_type {
        "text" => serde_json::json!({ "text": field("text")? }),
        "image" => serde_json::json!({ "image_key": field("image_key")? }),
        "share_chat" => {
            let shared = field("share_chat_id")?;
            if shared != chat_id.as_str() {
                return Err("a custom bot shares only its own chat".into());
            }
            serde_json::json!({ "chat_id": shared })
        }
        "post" => content.and_then(|c| c.get("post")).filter(|p| p.is_object()).cloned().ok_or("post needs content.post")?,
        "interactive" => body.get("card").filter(|c| c.is_object()).cloned().ok_or("interactive needs a card object")?,
        other => return Err(format!("msg_type {other:?} is not one a custom bot sends")),
    };
    let content = im.to_string();
    validate_content(msg_type, &content).map_err(|e| {
        let why: Vec<&str> = e.field_violations.iter().map(|v| v.description.as_str()).collect();
        format!("{} {}", e.msg, why.join("; "))
    })?;
    Ok((msg_type.to_string(), content))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231, test case 2.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(hex::encode(mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn sign_matches_feishus_algorithm() {
        // Computed with Python's hmac module: base64(HMAC-SHA256(b"1599360473\nsecret", b"")).
        assert_eq!(sign("1599360473", "secret"), "q4jswNiMy51J5JuQV566yJat0/lQ/c+22kINzUgKsGU=");
    }

    #[test]
    fn signatures_are_checked_with_the_hour_window() {
        let now_ms = 1_599_360_473_000;
        let s = sign("1599360473", "secret");
        assert!(signature_ok(Some("1599360473"), Some(&s), "secret", now_ms));
        assert!(!signature_ok(Some("1599360473"), Some(&s), "other", now_ms), "another secret");
        assert!(!signature_ok(Some("1599360474"), Some(&s), "secret", now_ms), "another timestamp");
        let stale = sign("1599356872", "secret");
        assert!(!signature_ok(Some("1599356872"), Some(&stale), "secret", now_ms), "an hour and a second old");
        let edge = sign("1599356873", "secret");
        assert!(signature_ok(Some("1599356873"), Some(&edge), "secret", now_ms), "exactly an hour old");
        assert!(!signature_ok(None, Some(&s), "secret", now_ms));
    }

    #[test]
    fn ip_rules() {
        let rules = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(ip_allowed(&[], ip("8.8.8.8")));
        assert!(ip_allowed(&rules(&["10.1.2.*"]), ip("10.1.2.200")));
        assert!(!ip_allowed(&rules(&["10.1.2.*"]), ip("10.1.3.1")));
        assert!(ip_allowed(&rules(&["10.0.0.0/8"]), ip("10.200.0.1")));
        assert!(ip_allowed(&rules(&["127.0.0.1"]), ip("::ffff:127.0.0.1")));
        assert!(ip_allowed(&rules(&["::1/128"]), ip("::1")));
        assert!(!ip_allowed(&rules(&["192.168.0.1"]), ip("127.0.0.1")));
        assert!(IpRule::parse("10.0.0.0/33").is_none());
        assert!(IpRule::parse("example.com").is_none());
    }

    #[test]
    fn keywords_match_text_but_not_links() {
        let kw = vec!["alert".to_string()];
        assert!(has_keyword(&json!({"text": "disk alert"}), &kw));
        let post = json!({"zh_cn": {"title": "t", "content": [[{"tag": "a", "text": "x", "href": "https://alert.example"}]]}});
        assert!(!has_keyword(&post, &kw), "href is not text");
        let card = json!({"elements": [{"tag": "div", "text": {"tag": "lark_md", "content": "an alert"}}]});
        assert!(has_keyword(&card, &kw));
        assert!(has_keyword(&json!({"text": "anything"}), &[]));
    }

    #[test]
    fn hook_bodies_become_messages() {
        let chat = ChatId("oc_1".into());
        let (t, c) = hook_message(&json!({"msg_type": "text", "content": {"text": "hi"}}), &chat).unwrap();
        assert_eq!((t.as_str(), c.as_str()), ("text", r#"{"text":"hi"}"#));
        let post = json!({"msg_type": "post", "content": {"post": {"zh_cn": {"title": "T", "content": [[{"tag": "text", "text": "x"}]]}}}});
        assert_eq!(hook_message(&post, &chat).unwrap().0, "post");
        let card = json!({"msg_type": "interactive", "card": {"elements": []}});
        assert_eq!(hook_message(&card, &chat).unwrap().0, "interactive");
        assert!(hook_message(&json!({"msg_type": "interactive", "content": {"elements": []}}), &chat).is_err(), "card goes in `card`");
        assert!(hook_message(&json!({"msg_type": "share_chat", "content": {"share_chat_id": "oc_2"}}), &chat).is_err());
        assert!(hook_message(&json!({"msg_type": "text", "content": "{\"text\":\"hi\"}"}), &chat).is_err(), "content is an object");
        assert!(hook_message(&json!({"msg_type": "file"}), &chat).is_err());
    }

    #[test]
    fn specs_are_bounded() {
        let ok = CustomBotSpec { name: "CI".into(), ..Default::default() };
        assert!(ok.validate().is_ok());
        let many = CustomBotSpec { keywords: vec!["k".into(); MAX_KEYWORDS + 1], ..ok.clone() };
        assert!(many.validate().is_err());
        let bad_ip = CustomBotSpec { ip_allowlist: vec!["nope".into()], ..ok.clone() };
        assert!(bad_ip.validate().is_err());
        assert!(CustomBotSpec { name: " ".into(), ..Default::default() }.validate().is_err());
    }
}
