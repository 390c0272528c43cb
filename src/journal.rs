//! The request journal: the last N `/open-apis` calls with their bodies, for tests and the console.
//!
//! Recording is cheap on the request path: bodies are copied up to a cap (a few KiB for most
//! calls), the reply's `code` comes from the response's `FeishuCode` (or is parsed when someone
//! reads the journal), and only the auth endpoints' bodies are parsed, to redact credentials.
//!
//! Bounded twice: by entries (`--journal-size`) and by the bytes they keep (`--journal-bytes`),
//! oldest out first. A body longer than the per-body cap is kept cut, and the entry says so.

use std::collections::VecDeque;

use axum::body::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::secrets;

pub const DEFAULT_JOURNAL_SIZE: usize = 1000;
/// Default bound on the bytes the journal keeps (bodies, path and bookkeeping).
pub const DEFAULT_JOURNAL_BYTES: usize = 64 << 20;
/// The most of one request or response body an entry keeps.
pub const BODY_CAP: usize = 64 << 10;

/// Paths whose bodies carry credentials (app_secret, app_ticket, tokens): redacted when kept.
const CREDENTIAL_PATHS: &str = "/open-apis/auth/";
/// A custom bot's webhook: the last path segment is its credential.
const HOOK_PATH: &str = "/open-apis/bot/v2/hook/";

/// The path as the journal keeps it: a webhook token becomes its fingerprint, like bearer tokens.
fn kept_path(path: &str) -> String {
    match path.strip_prefix(HOOK_PATH) {
        Some(rest) => {
            let (token, query) = rest.split_once('?').map_or((rest, None), |(t, q)| (t, Some(q)));
            let query = query.map(|q| format!("?{q}")).unwrap_or_default();
            format!("{HOOK_PATH}{}{query}", secrets::fingerprint(token))
        }
        None => path.to_string(),
    }
}

#[derive(Debug, Clone)]
pub struct JournalEntry {
    pub seq: u64,
    pub at_ms: i64,
    pub app_id: Option<String>,
    pub method: String,
    /// Path with its query string.
    pub path: String,
    pub status: u16,
    /// The reply's Feishu code when the handler said it (else parsed from the body on reading).
    pub code: Option<i64>,
    pub log_id: String,
    pub duration_us: u64,
    /// The bearer token of the call; `record` keeps only its fingerprint.
    pub token: Option<String>,
    /// The bodies as sent; `record` keeps at most the per-body cap of each, credentials redacted.
    pub request_body: Bytes,
    pub response_body: Bytes,
    /// Set by `record`: the lengths of the bodies as sent (before redaction and cutting) and
    /// whether the kept body was cut.
    pub request_body_size: usize,
    pub response_body_size: usize,
    pub request_body_truncated: bool,
    pub response_body_truncated: bool,
}

/// Which entries a reader wants; every given field must match.
#[derive(Debug, Default, Deserialize)]
pub struct JournalFilter {
    pub app_id: Option<String>,
    /// Substring of the path.
    pub path: Option<String>,
    pub code: Option<i64>,
    pub method: Option<String>,
    /// Only entries after this seq (for polling).
    pub after: Option<u64>,
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize)]
pub struct JournalView {
    pub seq: u64,
    pub at_ms: i64,
    pub app_id: Option<String>,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub code: Option<i64>,
    pub log_id: String,
    pub duration_us: u64,
    /// Fingerprint of the call's bearer token (see `secrets::fingerprint`).
    pub token: Option<String>,
    /// JSON bodies as JSON, anything else (a cut body too) as a string (empty → null).
    pub request_body: Value,
    pub response_body: Value,
    /// Length of the body as sent, in bytes.
    pub request_body_size: usize,
    pub response_body_size: usize,
    /// The body above is only the first `BODY_CAP` bytes of it.
    pub request_body_truncated: bool,
    pub response_body_truncated: bool,
}

fn body_value(b: &Bytes) -> Value {
    if b.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(b).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(b).into_owned()))
}

impl JournalEntry {
    pub fn view(&self) -> JournalView {
        let response_body = body_value(&self.response_body);
        JournalView {
            seq: self.seq,
            at_ms: self.at_ms,
            app_id: self.app_id.clone(),
            method: self.method.clone(),
            path: self.path.clone(),
            status: self.status,
            code: self.code.or_else(|| response_body.get("code").and_then(Value::as_i64)),
            log_id: self.log_id.clone(),
            duration_us: self.duration_us,
            token: self.token.clone(),
            request_body: body_value(&self.request_body),
            response_body,
            request_body_size: self.request_body_size,
            response_body_size: self.response_body_size,
            request_body_truncated: self.request_body_truncated,
            response_body_truncated: self.response_body_truncated,
        }
    }

    /// The bytes this entry is accounted for: what it owns on the heap and its own size.
    pub fn cost(&self) -> usize {
        std::mem::size_of::<JournalEntry>()
            + self.app_id.as_ref().map_or(0, String::len)
            + self.method.len()
            + self.path.len()
            + self.log_id.len()
            + self.token.as_ref().map_or(0, String::len)
            + self.request_body.len()
            + self.response_body.len()
    }
}

/// At most `cap` bytes of `body`, in a buffer of its own (a slice would keep the whole body
/// alive), credentials redacted first when `credentials`; and whether it was cut.
fn kept_body(body: &Bytes, cap: usize, credentials: bool) -> (Bytes, bool) {
    let redacted;
    let body: &[u8] = if credentials {
        redacted = secrets::redact_body(body);
        &redacted
    } else {
        body
    };
    let cut = body.len() > cap;
    (Bytes::copy_from_slice(&body[..body.len().min(cap)]), cut)
}

struct Entries {
    last_seq: u64,
    /// Sum of `cost()` over `entries`.
    bytes: usize,
    entries: VecDeque<JournalEntry>,
}

pub struct Journal {
    capacity: usize,
    max_bytes: usize,
    body_cap: usize,
    inner: Mutex<Entries>,
}

impl Journal {
    /// A journal keeping the last `capacity` calls within `max_bytes`; 0 for either records nothing.
    pub fn new(capacity: usize, max_bytes: usize) -> Self {
        Journal {
            capacity,
            max_bytes,
            // A small byte bound still holds several entries.
            body_cap: BODY_CAP.min(max_bytes / 8),
            inner: Mutex::new(Entries { last_seq: 0, bytes: 0, entries: VecDeque::with_capacity(capacity.min(4096)) }),
        }
    }

    pub fn enabled(&self) -> bool {
        self.capacity > 0 && self.max_bytes > 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// The bytes the kept entries are accounted for (never above `max_bytes`).
    pub fn bytes(&self) -> usize {
        self.inner.lock().bytes
    }

    /// Records `entry` (its `seq` is assigned here): keeps a fingerprint of its token and at most
    /// the per-body cap of each body (redacted on the auth endpoints), then drops the oldest
    /// entries beyond the entry and byte bounds. An entry larger than the byte bound on its own
    /// (a huge path) is not kept.
    pub fn record(&self, mut entry: JournalEntry) {
        if !self.enabled() {
            return;
        }
        let credentials = entry.path.starts_with(CREDENTIAL_PATHS);
        entry.path = kept_path(&entry.path);
        entry.request_body_size = entry.request_body.len();
        entry.response_body_size = entry.response_body.len();
        (entry.request_body, entry.request_body_truncated) = kept_body(&entry.request_body, self.body_cap, credentials);
        (entry.response_body, entry.response_body_truncated) = kept_body(&entry.response_body, self.body_cap, credentials);
        entry.token = entry.token.as_deref().map(secrets::fingerprint);
        let cost = entry.cost();
        let mut inner = self.inner.lock();
        inner.last_seq += 1;
        entry.seq = inner.last_seq;
        if cost > self.max_bytes {
            return;
        }
        while inner.entries.len() >= self.capacity || inner.bytes + cost > self.max_bytes {
            let Some(old) = inner.entries.pop_front() else { break };
            inner.bytes -= old.cost();
        }
        inner.bytes += cost;
        inner.entries.push_back(entry);
    }

    /// Matching entries, newest first.
    pub fn list(&self, f: &JournalFilter) -> Vec<JournalView> {
        let entries: Vec<JournalEntry> = {
            let inner = self.inner.lock();
            inner
                .entries
                .iter()
                .rev()
                .filter(|e| f.after.is_none_or(|a| e.seq > a))
                .filter(|e| f.app_id.as_ref().is_none_or(|a| e.app_id.as_ref() == Some(a)))
                .filter(|e| f.path.as_ref().is_none_or(|p| e.path.contains(p.as_str())))
                .filter(|e| f.method.as_ref().is_none_or(|m| e.method.eq_ignore_ascii_case(m)))
                .cloned()
                .collect()
        };
        entries
            .iter()
            .map(JournalEntry::view)
            .filter(|v| f.code.is_none_or(|c| v.code == Some(c)))
            .take(f.limit.unwrap_or(usize::MAX))
            .collect()
    }

    pub fn clear(&self) {
        let mut inner = self.inner.lock();
        inner.entries.clear();
        inner.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, body: &str) -> JournalEntry {
        JournalEntry {
            seq: 0,
            at_ms: 0,
            app_id: Some("cli_a".into()),
            method: "POST".into(),
            path: path.into(),
            status: 200,
            code: None,
            log_id: "l".into(),
            duration_us: 1,
            token: None,
            request_body: Bytes::new(),
            response_body: Bytes::from(body.to_string()),
            request_body_size: 0,
            response_body_size: 0,
            request_body_truncated: false,
            response_body_truncated: false,
        }
    }

    #[test]
    fn bounded_newest_first_and_filtered_by_code() {
        let j = Journal::new(2, DEFAULT_JOURNAL_BYTES);
        j.record(entry("/a", r#"{"code":0}"#));
        j.record(entry("/b", r#"{"code":232001}"#));
        j.record(entry("/c", "not json"));
        let all = j.list(&JournalFilter::default());
        assert_eq!(all.iter().map(|v| v.path.as_str()).collect::<Vec<_>>(), ["/c", "/b"]);
        assert_eq!(all[0].response_body, Value::String("not json".into()));
        let failed = j.list(&JournalFilter { code: Some(232001), ..Default::default() });
        assert_eq!((failed.len(), failed[0].seq), (1, 2));
        j.clear();
        assert!(j.list(&JournalFilter::default()).is_empty());
        assert_eq!(j.bytes(), 0);
    }

    #[test]
    fn bounded_by_bytes_with_bodies_cut_and_marked() {
        let max = 1 << 20;
        let j = Journal::new(1_000_000, max);
        let big = Bytes::from(vec![b'x'; 2 << 20]);
        for i in 0..200 {
            let mut e = entry(&format!("/open-apis/unknown/{i}"), r#"{"code":404}"#);
            e.request_body = big.clone();
            e.code = Some(404);
            j.record(e);
            assert!(j.bytes() <= max, "{} bytes kept after {i} calls, bound {max}", j.bytes());
        }
        let all = j.list(&JournalFilter::default());
        assert!(all.len() > 1 && all.len() < 200, "{} entries", all.len());
        let kept: usize = all.iter().map(|v| v.request_body.as_str().unwrap().len()).sum();
        assert!(kept <= max);
        let newest = &all[0];
        assert_eq!(newest.path, "/open-apis/unknown/199", "oldest out first");
        assert!(newest.request_body_truncated && !newest.response_body_truncated);
        assert_eq!(newest.request_body_size, 2 << 20);
        assert_eq!(newest.request_body.as_str().unwrap().len(), BODY_CAP.min(max / 8));
        assert_eq!(newest.code, Some(404));
    }

    #[test]
    fn credentials_and_tokens_are_fingerprinted() {
        let j = Journal::new(10, DEFAULT_JOURNAL_BYTES);
        let mut e = entry(
            "/open-apis/auth/v3/tenant_access_token/internal",
            r#"{"code":0,"msg":"ok","tenant_access_token":"t-g1044ghJRUIJJ5ELLSPOEFNN","expire":7200}"#,
        );
        e.request_body = Bytes::from_static(br#"{"app_id":"cli_a","app_secret":"larkstackDemoSecret0000000000001"}"#);
        j.record(e);
        let mut e = entry("/open-apis/im/v1/chats", r#"{"code":0}"#);
        e.token = Some("t-g1044ghJRUIJJ5ELLSPOEFNN".into());
        e.request_body = Bytes::from_static(br#"{"name":"app_secret"}"#);
        j.record(e);
        let all = j.list(&JournalFilter::default());
        let text = serde_json::to_string(&all).unwrap();
        assert!(!text.contains("larkstackDemoSecret0000000000001") && !text.contains("t-g1044ghJRUIJJ5ELLSPOEFNN"), "{text}");
        let fp = secrets::fingerprint("t-g1044ghJRUIJJ5ELLSPOEFNN");
        assert_eq!(all[0].token.as_deref(), Some(fp.as_str()));
        assert_eq!(all[1].response_body["tenant_access_token"], Value::String(fp));
        assert_eq!(all[1].request_body["app_secret"], Value::String(secrets::fingerprint("larkstackDemoSecret0000000000001")));
        assert_eq!(all[1].request_body["app_id"], "cli_a");
        assert_eq!(all[1].code, Some(0));
    }

    #[test]
    fn webhook_tokens_are_kept_as_fingerprints() {
        let token = "0f4b1c2d-1111-4222-8333-444455556666";
        let kept = kept_path(&format!("/open-apis/bot/v2/hook/{token}?x=1"));
        assert!(!kept.contains(token), "{kept}");
        assert_eq!(kept, format!("/open-apis/bot/v2/hook/{}?x=1", secrets::fingerprint(token)));
        assert_eq!(kept_path("/open-apis/im/v1/messages"), "/open-apis/im/v1/messages");
    }
}
