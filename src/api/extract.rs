//! Lenient request parsing, as the official SDKs need it: bodies are JSON whatever the
//! Content-Type says (or when it is missing), an empty body is `{}`, query booleans are
//! case-insensitive (`True` from Python), and oversized bodies get an envelope, not a bare 413.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::CONTENT_LENGTH;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::envelope::ApiError;
use crate::error::{FeishuError, TransportErr};
use crate::state::AppState;

/// The raw body, at most the configured limit.
pub struct RawBody(pub Bytes);

pub(crate) fn too_large(limit: usize) -> ApiError {
    ApiError::Feishu(TransportErr::BodyTooLarge.with_msg(format!("request body exceeds {limit} bytes")))
}

/// Bytes an upload's multipart body may take on top of the largest file: the other fields, the
/// part headers and boundaries.
pub const MULTIPART_OVERHEAD: usize = 1 << 20;

/// The body limit of a request to `path`: the uploads (`/open-apis/im/v1/images` and `/files`)
/// take the largest file Feishu accepts plus `MULTIPART_OVERHEAD`, the rest the configured limit.
pub fn body_limit_for(state: &AppState, path: &str) -> usize {
    if crate::api::im::media::UPLOAD_PATHS.contains(&path) {
        state.body_limit.max(crate::domain::media::MAX_FILE_BYTES + MULTIPART_OVERHEAD)
    } else {
        state.body_limit
    }
}

impl FromRequest<std::sync::Arc<AppState>> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request<Body>, state: &std::sync::Arc<AppState>) -> Result<Self, Self::Rejection> {
        let limit = body_limit_for(state, req.uri().path());
        let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(too_large(limit));
        }
        axum::body::to_bytes(req.into_body(), limit).await.map(RawBody).map_err(|_| too_large(limit))
    }
}

/// The route's one path parameter. A bad one (percent-encoded bytes that are not UTF-8) gets an
/// envelope with HTTP 400, not axum's plain-text rejection.
pub struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(PathParam(value)),
            Err(e) => Err(ApiError::Feishu(TransportErr::BadPathParam.with_msg(e.body_text()))),
        }
    }
}

/// The route's two path parameters, in order; a bad one is rejected like `PathParam`'s.
pub struct PathPair(pub String, pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathPair {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<(String, String)>::from_request_parts(parts, state).await {
            Ok(Path((a, b))) => Ok(PathPair(a, b)),
            Err(e) => Err(ApiError::Feishu(TransportErr::BadPathParam.with_msg(e.body_text()))),
        }
    }
}

/// Path parameters as a tuple of any types (e.g. an enum segment), rejected in the Feishu
/// envelope like `PathParam`.
pub struct PathParts<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParts<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(PathParts(value)),
            Err(e) => Err(ApiError::Feishu(TransportErr::BadPathParam.with_msg(e.body_text()))),
        }
    }
}

/// Parses a JSON body; `invalid` builds the family's "invalid parameter" error from (field, reason).
pub fn parse_json<T: DeserializeOwned>(
    bytes: &[u8],
    invalid: impl Fn(&str, String) -> FeishuError,
) -> Result<T, FeishuError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { bytes };
    // The fast path parses once; only a failure pays for a second, path-tracking parse.
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "body".to_string() } else { path };
        invalid(&field, e.into_inner().to_string())
    })
}

/// The query string as key/value pairs.
pub struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    pub fn parse(query: Option<&str>) -> Self {
        QueryParams(form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned().collect())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated key (`k=a&k=b`, as the SDKs send arrays), in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }

    /// `name` as the query enum `T`, by its serde names (the same enum gives the OpenAPI schema):
    /// `Ok(None)` when absent or empty, `Err` with the value when `T` has no such name, for the
    /// handler to refuse in its family's envelope.
    pub fn enum_of<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, &str> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(v) => crate::domain::wire_name(v).map(Some).ok_or(v),
        }
    }

    /// `true`/`True`/`TRUE`/`1` and their opposites; `Err` names a value that is neither.
    pub fn bool(&self, name: &str) -> Result<Option<bool>, String> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => Ok(Some(false)),
            Some(v) => Err(v.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_are_case_insensitive() {
        let q = QueryParams::parse(Some("a=True&b=false&c=yes&d=1"));
        assert_eq!(q.bool("a"), Ok(Some(true)));
        assert_eq!(q.bool("b"), Ok(Some(false)));
        assert!(q.bool("c").is_err());
        assert_eq!(q.bool("d"), Ok(Some(true)));
        assert_eq!(q.bool("missing"), Ok(None));
    }

    #[test]
    fn enums_by_their_serde_names() {
        use crate::api::im::ChatSortType;
        let q = QueryParams::parse(Some("a=ByActiveTimeDesc&b=byactivetimedesc&c="));
        assert_eq!(q.enum_of::<ChatSortType>("a"), Ok(Some(ChatSortType::ByActiveTimeDesc)));
        assert_eq!(q.enum_of::<ChatSortType>("b"), Err("byactivetimedesc"));
        assert_eq!(q.enum_of::<ChatSortType>("c"), Ok(None));
        assert_eq!(q.enum_of::<ChatSortType>("missing"), Ok(None));
    }

    #[test]
    fn json_errors_name_the_field() {
        #[derive(serde::Deserialize, Debug)]
        struct B {
            #[allow(dead_code)]
            name: Option<String>,
        }
        let err = parse_json::<B>(br#"{"name": 5}"#, |f, why| FeishuError::im_invalid_param(f, None, why)).unwrap_err();
        assert_eq!(err.field_violations[0].field, "name");
        assert!(parse_json::<B>(b"", |f, why| FeishuError::im_invalid_param(f, None, why)).is_ok());
        assert!(parse_json::<B>(b"{", |f, why| FeishuError::im_invalid_param(f, None, why)).is_err());
    }
}
