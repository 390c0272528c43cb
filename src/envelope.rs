//! The one place that builds Feishu's reply envelope and maps an error to its HTTP status.
//!
//! Success: `{"code":0,"msg":"success","data":{…}}`. Error: `{"code":N,"msg":"…","error":{"log_id":…}}`.
//! Every reply is JSON with `Content-Type: application/json; charset=utf-8`; the log id of the
//! request is in `X-Tt-Logid` and in `error.log_id`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::{ApaasErr, AuthErr, ChatErr, ContactErr, ControlErr, CustomBotErr, FeishuError, GatewayErr, LongConnErr, MessageErr, ReactionErr, ResourceErr, ServerErr, TransportErr};
use crate::store::StoreError;

tokio::task_local! {
    /// The log id of the request being served.
    pub static LOG_ID: String;
}

pub const JSON_UTF8: &str = "application/json; charset=utf-8";

/// `yyyyMMddHHmmss` + 20 uppercase hex, the shape Feishu's gateway uses.
pub fn new_log_id(now_ms: i64) -> String {
    use chrono::{Datelike, Timelike};
    let ts = chrono::DateTime::from_timestamp_millis(now_ms).unwrap_or_default();
    // Digits written into a fixed buffer: every request makes one, and `format!` with widths
    // cost ~2 k instructions (issue 12). A year past 9999 is written as 9999 (ids keep 34 characters).
    let mut id = [0u8; 34];
    let fields = [(ts.year().clamp(0, 9999) as u32, 4), (ts.month(), 2), (ts.day(), 2), (ts.hour(), 2), (ts.minute(), 2), (ts.second(), 2)];
    let mut end = 0;
    for (mut value, width) in fields {
        end += width;
        for digit in id[end - width..end].iter_mut().rev() {
            *digit = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    let mut suffix: u128 = rand::random();
    for digit in id[end..].iter_mut().rev() {
        *digit = b"0123456789ABCDEF"[(suffix & 0xf) as usize];
        suffix >>= 4;
    }
    String::from_utf8(id.to_vec()).expect("digits are ASCII")
}

pub fn current_log_id() -> String {
    LOG_ID.try_with(|id| id.clone()).unwrap_or_default()
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_UTF8));
    resp
}

/// The Feishu `code` of a reply, kept beside it for metrics (no body parsing on the way out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeishuCode(pub i64);

fn with_code(mut resp: Response, code: i64) -> Response {
    resp.extensions_mut().insert(FeishuCode(code));
    resp
}

/// What a success reply's buffer starts with: a chat's reply (~1.1 KB) fits without regrowing.
const REPLY_CAPACITY: usize = 2048;

/// `{"code":0,"msg":"success","data":data}` under HTTP 200.
pub fn ok<T: Serialize>(data: &T) -> Response {
    #[derive(Serialize)]
    struct Envelope<'a, T> {
        code: i64,
        msg: &'static str,
        data: &'a T,
    }
    // Room for a chat's reply up front: `to_vec` starts at 128 bytes and grows by doubling.
    let mut body = Vec::with_capacity(REPLY_CAPACITY);
    serde_json::to_writer(&mut body, &Envelope { code: 0, msg: "success", data }).expect("reply serialises");
    with_code(json_response(StatusCode::OK, body), 0)
}

/// Bytes under HTTP 200 (image and file downloads): `code` 0 for metrics, no envelope. The body
/// is the stored buffer itself, written out as it is (no copy).
pub fn binary(content_type: &str, disposition: Option<&str>, bytes: axum::body::Bytes) -> Response {
    let mut resp = (StatusCode::OK, bytes).into_response();
    let headers = resp.headers_mut();
    let content_type = HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, content_type);
    if let Some(v) = disposition.and_then(|d| HeaderValue::from_str(d).ok()) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    with_code(resp, 0)
}

/// A reply whose fields sit at the top level (the auth endpoints), under HTTP 200.
pub fn top_level(body: &serde_json::Value) -> Response {
    let code = body.get("code").and_then(serde_json::Value::as_i64).unwrap_or(0);
    with_code(json_response(StatusCode::OK, serde_json::to_vec(body).expect("reply serialises")), code)
}

/// HTTP status of a Feishu error: its catalogue entry's (400 for business and gateway errors).
fn status_of(err: &FeishuError) -> StatusCode {
    StatusCode::from_u16(err.http_status()).unwrap_or(StatusCode::BAD_REQUEST)
}

/// Why a call failed: a Feishu error about the request, or larkstack's own infrastructure failing.
#[derive(Debug)]
pub enum ApiError {
    /// An entry of the error catalogue (`crate::error::catalogue`), with its details.
    Feishu(FeishuError),
    /// The store or Redis failed: HTTP 500, code 1 — never a business code.
    Internal(InfraError),
}

impl From<FeishuError> for ApiError {
    fn from(e: FeishuError) -> Self {
        ApiError::Feishu(e)
    }
}

/// A failure of larkstack's own infrastructure — the store (SQLite/PostgreSQL), Redis — as
/// opposed to a Feishu error about the request. It has no Feishu code of its own: it answers
/// HTTP 500 with `ServerErr::Internal` (code 1), and the cause goes to the log, not the client.
#[derive(Debug)]
pub enum InfraError {
    Store(StoreError),
    Redis(redis::RedisError),
}

impl std::fmt::Display for InfraError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InfraError::Store(e) => write!(f, "store failure: {e}"),
            InfraError::Redis(e) => write!(f, "redis failure: {e}"),
        }
    }
}

impl std::error::Error for InfraError {}

impl From<StoreError> for InfraError {
    fn from(e: StoreError) -> Self {
        InfraError::Store(e)
    }
}

impl From<redis::RedisError> for InfraError {
    fn from(e: redis::RedisError) -> Self {
        InfraError::Redis(e)
    }
}

/// Every catalogue entry is an error reply.
macro_rules! catalogue_replies {
    ($($family:ident),*) => {$(
        impl From<$family> for ApiError {
            fn from(e: $family) -> ApiError {
                ApiError::Feishu(e.err())
            }
        }
    )*};
}

catalogue_replies!(GatewayErr, AuthErr, ChatErr, MessageErr, ResourceErr, ReactionErr, ContactErr, CustomBotErr, ApaasErr, LongConnErr, TransportErr, ControlErr, ServerErr);

impl From<InfraError> for ApiError {
    fn from(e: InfraError) -> Self {
        ApiError::Internal(e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Internal(InfraError::Store(e))
    }
}

pub fn error_body(err: &FeishuError) -> serde_json::Value {
    let log_id = current_log_id();
    let mut error = serde_json::json!({
        "log_id": log_id,
        "troubleshooter": format!(
            "排查建议查看(Troubleshooting suggestions): https://open.feishu.cn/search?from=openapi&log_id={log_id}&code={}",
            err.code
        ),
    });
    if !err.field_violations.is_empty() {
        error["field_violations"] = serde_json::to_value(&err.field_violations).expect("serialises");
    }
    if !err.permission_violations.is_empty() {
        error["permission_violations"] = serde_json::to_value(&err.permission_violations).expect("serialises");
    }
    serde_json::json!({"code": err.code, "msg": err.msg, "error": error})
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let err = match self {
            ApiError::Feishu(err) => err,
            ApiError::Internal(e) => {
                tracing::error!(error = %e, "infrastructure failure");
                ServerErr::Internal.err()
            }
        };
        let resp = json_response(status_of(&err), serde_json::to_vec(&error_body(&err)).expect("serialises"));
        let mut resp = with_code(resp, err.code);
        if let Some(rl) = err.rate_limited {
            let h = resp.headers_mut();
            h.insert("x-ogw-ratelimit-limit", HeaderValue::from(rl.limit));
            h.insert("x-ogw-ratelimit-reset", HeaderValue::from(rl.reset_secs));
        }
        resp
    }
}

pub type ApiResult = Result<Response, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    /// A store failure is the infrastructure kind: HTTP 500, code 1, and its cause stays in the log.
    #[tokio::test]
    async fn store_failures_answer_500_code_1_without_their_cause() {
        let err = ApiError::from(StoreError::Backend("disk on fire".into()));
        assert!(matches!(err, ApiError::Internal(InfraError::Store(_))));
        let resp = err.into_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(resp.extensions().get::<FeishuCode>(), Some(&FeishuCode(ServerErr::Internal.code())));
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!((body["code"].as_i64(), body["msg"].as_str()), (Some(1), Some("internal error")));
        assert!(!body.to_string().contains("disk on fire"));
    }

    #[test]
    fn log_id_shape() {
        let id = new_log_id(1_700_000_000_000);
        assert_eq!(id.len(), 34);
        assert!(id.starts_with("20231114221320"), "{id}");
        assert!(id[14..].chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()));
        // Single-digit fields keep their leading zero.
        assert!(new_log_id(1_000_000_000_000).starts_with("20010909014640"));
        assert_ne!(new_log_id(0)[14..], new_log_id(0)[14..], "the suffix is random");
    }
}
