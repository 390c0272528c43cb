//! Fault injection: rules that make matching `/open-apis` calls fail, slow down or lose their
//! connection, a set number of times or with a probability.

use std::time::Duration;

use parking_lot::Mutex;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::catalogue::Entry;
use crate::error::{ChatErr, GatewayErr, ServerErr};

/// What a matching call gets instead of (or before) its real answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Effect {
    /// A Feishu error envelope. With code 99991400 the rate-limit headers are sent too.
    Error { http_status: u16, code: i64, msg: String },
    /// The real answer, `ms` milliseconds late (wall time, not the larkstack clock).
    Delay { ms: u64 },
    /// The connection is closed without an answer.
    Drop,
}

/// Ready-made effects for the failures clients actually handle.
pub fn preset(name: &str) -> Option<Effect> {
    let error = |e: Entry| Effect::Error { http_status: e.http_status, code: e.code, msg: e.msg.to_string() };
    Some(match name {
        "token_invalid" => error(GatewayErr::InvalidToken.entry()),
        "rate_limited" => error(GatewayErr::RateLimited.entry()),
        "chat_throttled" => error(ChatErr::RateLimited.entry()),
        "internal_error" => error(ServerErr::Internal.entry()),
        "unavailable" => error(ServerErr::Unavailable.entry()),
        "slow" => Effect::Delay { ms: 3000 },
        "drop" => Effect::Drop,
        _ => return None,
    })
}

pub const PRESETS: &[&str] = &["token_invalid", "rate_limited", "chat_throttled", "internal_error", "unavailable", "slow", "drop"];

/// A preset as `GET /_larkstack/faults/presets` lists it (and the console shows it).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PresetInfo {
    /// What `preset` takes in a rule.
    pub name: &'static str,
    pub description: &'static str,
    /// The effect a rule made with this preset gets.
    pub effect: Effect,
}

/// Every preset with its description and effect, in `PRESETS` order.
pub fn presets() -> Vec<PresetInfo> {
    PRESETS
        .iter()
        .map(|&name| PresetInfo {
            name,
            description: preset_description(name),
            effect: preset(name).expect("every name in PRESETS is a preset"),
        })
        .collect()
}

fn preset_description(name: &str) -> &'static str {
    match name {
        "token_invalid" => "99991663: the access token is invalid, as after it expired or was revoked",
        "rate_limited" => "99991400: the app's request frequency limit, with x-ogw-ratelimit-* headers",
        "chat_throttled" => "232019: chat operations throttled",
        "internal_error" => "HTTP 500 with code 1: a server-side error",
        "unavailable" => "HTTP 503 with code 1: the service is unavailable",
        "slow" => "The real answer, 3 s late (wall time)",
        "drop" => "The connection is closed without an answer",
        _ => "",
    }
}

/// A rule as the control API takes it: `effect` or `preset`, which calls it applies to, how often.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct FaultSpec {
    /// HTTP method; any when absent.
    pub method: Option<String>,
    /// Path pattern: `*` matches within one path segment, `**` across segments. Default `/open-apis/**`.
    pub path: Option<String>,
    /// Only calls made with this app's token (or credentials).
    pub app_id: Option<String>,
    pub effect: Option<Effect>,
    pub preset: Option<String>,
    /// Applies to this many matching calls (at least 1), then stops; unlimited when absent.
    #[schema(minimum = 1)]
    pub count: Option<u32>,
    /// Chance (0–1) that a matching call is affected; 1 when absent.
    pub probability: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FaultRule {
    pub id: u64,
    pub method: Option<String>,
    pub path: String,
    pub app_id: Option<String>,
    pub effect: Effect,
    /// Calls it will still affect; `None` = unlimited.
    pub remaining: Option<u32>,
    pub probability: f64,
    /// Calls it has affected so far.
    pub hits: u64,
}

#[derive(Default)]
pub struct Faults {
    inner: Mutex<(u64, Vec<FaultRule>)>,
}

impl Faults {
    /// Validates and adds a rule.
    pub fn add(&self, spec: FaultSpec) -> Result<FaultRule, String> {
        let effect = match (spec.effect, spec.preset.as_deref()) {
            (Some(e), None) => e,
            (None, Some(p)) => preset(p).ok_or_else(|| format!("unknown preset {p:?}; presets: {}", PRESETS.join(", ")))?,
            _ => return Err("give exactly one of `effect` and `preset`".into()),
        };
        if let Effect::Error { http_status, .. } = effect {
            if !(400..=599).contains(&http_status) {
                return Err("effect.http_status must be 400–599".into());
            }
        }
        if spec.count == Some(0) {
            return Err("count must be at least 1 (leave it out for no limit)".into());
        }
        let probability = spec.probability.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&probability) {
            return Err("probability must be between 0 and 1".into());
        }
        let path = spec.path.unwrap_or_else(|| "/open-apis/**".into());
        if !path.starts_with('/') {
            return Err("path must start with /".into());
        }
        let mut inner = self.inner.lock();
        inner.0 += 1;
        let rule = FaultRule {
            id: inner.0,
            method: spec.method.map(|m| m.to_ascii_uppercase()),
            path,
            app_id: spec.app_id,
            effect,
            remaining: spec.count,
            probability,
            hits: 0,
        };
        inner.1.push(rule.clone());
        Ok(rule)
    }

    pub fn list(&self) -> Vec<FaultRule> {
        self.inner.lock().1.clone()
    }

    pub fn remove(&self, id: u64) -> bool {
        let mut inner = self.inner.lock();
        let before = inner.1.len();
        inner.1.retain(|r| r.id != id);
        inner.1.len() != before
    }

    pub fn clear(&self) {
        self.inner.lock().1.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.inner.lock().1.is_empty()
    }

    /// The effect of the first live rule matching the call, counting it as a hit.
    pub fn take(&self, method: &str, path: &str, app_id: Option<&str>) -> Option<Effect> {
        let mut inner = self.inner.lock();
        let rule = inner.1.iter_mut().find(|r| {
            r.remaining != Some(0)
                && r.method.as_deref().is_none_or(|m| m == method)
                && r.app_id.as_deref().is_none_or(|a| Some(a) == app_id)
                && path_matches(&r.path, path)
        })?;
        if rule.probability < 1.0 && !rand::rng().random_bool(rule.probability) {
            return None;
        }
        rule.hits += 1;
        if let Some(n) = rule.remaining.as_mut() {
            *n -= 1;
        }
        Some(rule.effect.clone())
    }
}

impl Effect {
    pub fn delay(&self) -> Option<Duration> {
        match self {
            Effect::Delay { ms } => Some(Duration::from_millis(*ms)),
            _ => None,
        }
    }
}

/// Glob over path segments: `*` is any text within a segment, `**` any number of segments.
pub fn path_matches(pattern: &str, path: &str) -> bool {
    fn segments(p: &str) -> Vec<&str> {
        p.trim_matches('/').split('/').collect()
    }
    fn segment_matches(pat: &str, seg: &str) -> bool {
        match pat.split_once('*') {
            None => pat == seg,
            Some((head, rest)) => {
                let Some(tail) = seg.strip_prefix(head) else { return false };
                (0..=tail.len()).filter(|&i| tail.is_char_boundary(i)).any(|i| segment_matches(rest, &tail[i..]))
            }
        }
    }
    fn go(pat: &[&str], segs: &[&str]) -> bool {
        match pat.split_first() {
            None => segs.is_empty(),
            Some((&"**", rest)) => (0..=segs.len()).any(|i| go(rest, &segs[i..])),
            Some((p, rest)) => segs.split_first().is_some_and(|(s, srest)| segment_matches(p, s) && go(rest, srest)),
        }
    }
    go(&segments(pattern), &segments(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(path_matches("/open-apis/**", "/open-apis/im/v1/chats"));
        assert!(path_matches("/open-apis/im/v1/chats", "/open-apis/im/v1/chats"));
        assert!(!path_matches("/open-apis/im/v1/chats", "/open-apis/im/v1/chats/oc_1"));
        assert!(path_matches("/open-apis/im/v1/chats/*", "/open-apis/im/v1/chats/oc_1"));
        assert!(path_matches("/open-apis/im/v1/chats/oc_*/members", "/open-apis/im/v1/chats/oc_1/members"));
        assert!(!path_matches("/open-apis/im/v1/chats/*", "/open-apis/im/v1/chats/oc_1/members"));
        assert!(path_matches("/open-apis/**/members", "/open-apis/im/v1/chats/oc_1/members"));
    }

    #[test]
    fn count_runs_out_and_app_filter_applies() {
        let f = Faults::default();
        let spec = FaultSpec {
            method: Some("post".into()),
            path: Some("/open-apis/im/v1/chats".into()),
            app_id: Some("cli_a".into()),
            effect: None,
            preset: Some("chat_throttled".into()),
            count: Some(2),
            probability: None,
        };
        f.add(spec).unwrap();
        assert!(f.take("POST", "/open-apis/im/v1/chats", Some("cli_b")).is_none());
        assert!(f.take("GET", "/open-apis/im/v1/chats", Some("cli_a")).is_none());
        assert!(f.take("POST", "/open-apis/im/v1/chats", Some("cli_a")).is_some());
        assert!(f.take("POST", "/open-apis/im/v1/chats", Some("cli_a")).is_some());
        assert!(f.take("POST", "/open-apis/im/v1/chats", Some("cli_a")).is_none());
        assert_eq!(f.list()[0].hits, 2);
    }

    #[test]
    fn every_preset_is_described() {
        let listed = presets();
        assert_eq!(listed.iter().map(|p| p.name).collect::<Vec<_>>(), PRESETS);
        assert!(listed.iter().all(|p| !p.description.is_empty()), "{listed:?}");
    }

    #[test]
    fn bad_specs_are_refused() {
        let f = Faults::default();
        let base = || FaultSpec { method: None, path: None, app_id: None, effect: None, preset: None, count: None, probability: None };
        assert!(f.add(base()).is_err());
        assert!(f.add(FaultSpec { preset: Some("nope".into()), ..base() }).is_err());
        assert!(f.add(FaultSpec { preset: Some("slow".into()), probability: Some(2.0), ..base() }).is_err());
        assert!(f.add(FaultSpec { preset: Some("slow".into()), count: Some(0), ..base() }).is_err());
        assert!(f.add(FaultSpec { effect: Some(Effect::Error { http_status: 200, code: 1, msg: "x".into() }), ..base() }).is_err());
        assert!(f.is_empty());
    }
}
