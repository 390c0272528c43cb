//! The request journal: the last N `/open-apis` calls with their bodies, for tests and the console.
//!
//! Recording is cheap on the request path: bodies are kept as the `Bytes` already in hand, and the
//! reply's `code` is parsed only when someone reads the journal.

use std::collections::VecDeque;

use axum::body::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const DEFAULT_JOURNAL_SIZE: usize = 1000;

#[derive(Debug, Clone)]
pub struct JournalEntry {
    pub seq: u64,
    pub at_ms: i64,
    pub app_id: Option<String>,
    pub method: String,
    /// Path with its query string.
    pub path: String,
    pub status: u16,
    pub log_id: String,
    pub duration_us: u64,
    pub request_body: Bytes,
    pub response_body: Bytes,
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
    /// JSON bodies as JSON, anything else as a string (empty → null).
    pub request_body: Value,
    pub response_body: Value,
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
            code: response_body.get("code").and_then(Value::as_i64),
            log_id: self.log_id.clone(),
            duration_us: self.duration_us,
            request_body: body_value(&self.request_body),
            response_body,
        }
    }
}

pub struct Journal {
    capacity: usize,
    inner: Mutex<(u64, VecDeque<JournalEntry>)>,
}

impl Journal {
    /// A journal keeping the last `capacity` calls; 0 records nothing.
    pub fn new(capacity: usize) -> Self {
        Journal { capacity, inner: Mutex::new((0, VecDeque::with_capacity(capacity.min(4096)))) }
    }

    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Records `entry` (its `seq` is assigned here), dropping the oldest beyond capacity.
    pub fn record(&self, mut entry: JournalEntry) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.inner.lock();
        inner.0 += 1;
        entry.seq = inner.0;
        if inner.1.len() == self.capacity {
            inner.1.pop_front();
        }
        inner.1.push_back(entry);
    }

    /// Matching entries, newest first.
    pub fn list(&self, f: &JournalFilter) -> Vec<JournalView> {
        let entries: Vec<JournalEntry> = {
            let inner = self.inner.lock();
            inner
                .1
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
        self.inner.lock().1.clear();
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
            log_id: "l".into(),
            duration_us: 1,
            request_body: Bytes::new(),
            response_body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn bounded_newest_first_and_filtered_by_code() {
        let j = Journal::new(2);
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
    }
}
