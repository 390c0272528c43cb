//! The OpenAPI 3.1 document of the whole HTTP surface and `GET /coverage`, a small HTML page
//! listing the implemented Feishu endpoints, built from that document. The operations come from
//! the `#[utoipa::path]` annotations beside each handler, collected by the one registration that
//! also builds the router (`server::routes`); this module holds the rest: the document's info,
//! tags, security schemes and reply schemas.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use utoipa_axum::router::UtoipaMethodRouter;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};

use crate::envelope::JSON_UTF8;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "larkstack",
        description = "A Feishu/Lark Open Platform–compatible server for group chats. The `/open-apis` \
            operations follow Feishu's own API (paths, parameters, bodies and the `{code, msg, data}` \
            envelope), so the official SDKs work against it unmodified; `/_larkstack` is larkstack's \
            control API for test harnesses (admin token)."
    ),
    components(schemas(Envelope, ErrorEnvelope, ErrorDetail, FieldViolation, PermissionViolation)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "auth", description = "Tenant and app access tokens"),
        (name = "im", description = "Group chats, members, managers and messages"),
        (name = "apaas", description = "aPaaS user tasks"),
        (name = "bot", description = "The bot's own identity, and groups' custom bots (webhooks)"),
        (name = "application", description = "Application information"),
        (name = "contact", description = "Users of the tenant's directory"),
        (name = "events", description = "Event delivery over the long connection (WebSocket discovery and upgrade)"),
        (name = "control", description = "larkstack's control API (admin token)"),
        (name = "ops", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;

/// Feishu's reply envelope. Success is `code` 0 under HTTP 200.
#[derive(ToSchema)]
pub struct Envelope {
    /// 0 on success.
    pub code: i64,
    pub msg: String,
    /// The operation's result.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// Feishu's error envelope: a non-zero `code`, its message and details.
#[derive(ToSchema)]
pub struct ErrorEnvelope {
    /// The Feishu error code (the control API uses the HTTP status).
    pub code: i64,
    pub msg: String,
    pub error: ErrorDetail,
}

#[derive(ToSchema)]
pub struct ErrorDetail {
    /// The request's log id, also in the `X-Tt-Logid` header.
    pub log_id: String,
    pub troubleshooter: Option<String>,
    pub field_violations: Option<Vec<FieldViolation>>,
    pub permission_violations: Option<Vec<PermissionViolation>>,
}

#[derive(ToSchema)]
pub struct FieldViolation {
    pub field: String,
    pub value: Option<String>,
    pub description: String,
}

#[derive(ToSchema)]
pub struct PermissionViolation {
    #[schema(rename = "type")]
    pub kind: String,
    pub subject: String,
    pub description: String,
}

/// A token endpoint's reply: fields at the top level, HTTP 200 also on failure (non-zero
/// `code`, `data: {}`).
#[derive(ToSchema)]
pub struct TenantTokenReply {
    pub code: i64,
    pub msg: String,
    pub tenant_access_token: Option<String>,
    /// Seconds the token stays valid.
    pub expire: Option<i64>,
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
}

/// `app_access_token/internal`'s reply (same rules as [`TenantTokenReply`]).
#[derive(ToSchema)]
pub struct AppTokenReply {
    pub code: i64,
    pub msg: String,
    pub app_access_token: Option<String>,
    /// Seconds the token stays valid.
    pub expire: Option<i64>,
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
}

/// `GET /open-apis/bot/v3/info`'s reply: `bot` at the top level, no `data`.
#[derive(ToSchema)]
pub struct BotInfoReply {
    pub code: i64,
    pub msg: String,
    pub bot: BotInfo,
}

#[derive(ToSchema)]
pub struct BotInfo {
    /// 2: the app is installed and enabled in the token's tenant; 1: disabled there.
    pub activate_status: i64,
    pub app_name: String,
    pub avatar_url: String,
    pub ip_white_list: Vec<String>,
    /// The bot's open_id in its own app's id space.
    pub open_id: String,
}

/// A custom bot webhook's reply, HTTP 200 also on failure (non-zero `code`, `data: {}`).
#[derive(ToSchema)]
pub struct HookReply {
    pub code: i64,
    pub msg: String,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// Kept by Feishu for old clients: 0 on success.
    #[schema(rename = "StatusCode")]
    pub status_code: Option<i64>,
    #[schema(rename = "StatusMessage")]
    pub status_message: Option<String>,
}

/// `app_ticket/resend`'s reply: `{code, msg}` (HTTP 200 also on failure, with `data: {}`).
#[derive(ToSchema)]
pub struct TicketResendReply {
    pub code: i64,
    pub msg: String,
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
}

/// The replies of every enveloped operation: 200 with `{code: 0, msg, data}`, anything else
/// with the error envelope.
pub struct FeishuResponses;

impl IntoResponses for FeishuResponses {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::response::Response>> {
        let json = |schema: &str| ContentBuilder::new().schema(Some(Ref::from_schema_name(schema))).build();
        BTreeMap::from([
            (
                "200".to_string(),
                ResponseBuilder::new().description("Success: `code` 0").content("application/json", json("Envelope")).build().into(),
            ),
            (
                "default".to_string(),
                ResponseBuilder::new()
                    .description("Failure: a non-zero `code`; the HTTP status is 400 for business errors, else its own")
                    .content("application/json", json("ErrorEnvelope"))
                    .build()
                    .into(),
            ),
        ])
    }
}

/// The error reply alone, for operations whose success is not an envelope.
pub struct ErrorResponse;

impl IntoResponses for ErrorResponse {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::response::Response>> {
        let mut all = FeishuResponses::responses();
        all.remove("200");
        all
    }
}

// Query parameter value sets, named as Feishu names them.

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "tenant_access_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A tenant_access_token from /open-apis/auth/v3/tenant_access_token[/internal]"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The admin token larkstack prints at start (also accepted as X-Larkstack-Admin-Token)"))
                    .build(),
            ),
        );
    }
}

/// `routes` served and documented under their paths with a trailing slash too (some SDKs ask for
/// the token endpoints that way); the aliases are operations of their own in the document.
pub fn with_trailing_slash<S>((schemas, mut paths, router): UtoipaMethodRouter<S>) -> UtoipaMethodRouter<S> {
    let aliases: Vec<_> = paths
        .paths
        .iter()
        .map(|(path, item)| {
            let mut item = item.clone();
            for op in [&mut item.get, &mut item.post, &mut item.put, &mut item.delete, &mut item.patch].into_iter().flatten() {
                op.operation_id = op.operation_id.take().map(|id| format!("{id}_trailing_slash"));
                op.summary = op.summary.take().map(|s| format!("{s} (trailing slash)"));
            }
            (format!("{path}/"), item)
        })
        .collect();
    paths.paths.extend(aliases);
    (schemas, paths, router)
}

/// `GET /openapi.json` serving `doc` and `GET /coverage` built from it (these two are not in the
/// document themselves).
pub fn publish<S: Clone + Send + Sync + 'static>(doc: &utoipa::openapi::OpenApi) -> Router<S> {
    let doc = serde_json::to_value(doc).expect("the OpenAPI document serialises");
    let json: Arc<str> = serde_json::to_string(&doc).expect("serialises").into();
    let html: Arc<str> = coverage_html(&doc).into();
    Router::new()
        .route("/openapi.json", get(move || async move { ([(CONTENT_TYPE, JSON_UTF8)], json.to_string()).into_response() }))
        .route(
            "/coverage",
            get(move || async move { ([(CONTENT_TYPE, "text/html; charset=utf-8")], html.to_string()).into_response() }),
        )
}

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch"];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The page: every `/open-apis` operation of `doc` as method, path and summary, grouped by tag.
pub fn coverage_html(doc: &serde_json::Value) -> String {
    let mut by_tag: BTreeMap<String, Vec<(String, String, String)>> = BTreeMap::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths.iter().filter(|(p, _)| p.starts_with("/open-apis/")) {
            for method in METHODS {
                let Some(op) = item.get(*method) else { continue };
                let tag = op["tags"][0].as_str().unwrap_or("other").to_string();
                let summary = op["summary"].as_str().unwrap_or("").to_string();
                by_tag.entry(tag).or_default().push((method.to_uppercase(), path.clone(), summary));
            }
        }
    }
    let title = format!("larkstack {}: implemented Feishu endpoints", doc["info"]["version"].as_str().unwrap_or(""));
    let mut html = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font-family:sans-serif;margin:2em}}td{{padding:2px 12px}}code{{white-space:nowrap}}</style>\
         </head><body>\n<h1>{t}</h1>\n<p>Generated from <a href=\"/openapi.json\">/openapi.json</a>.</p>\n",
        t = escape(&title)
    );
    for (tag, mut ops) in by_tag {
        ops.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
        html.push_str(&format!("<h2>{}</h2>\n<table>\n", escape(&tag)));
        for (method, path, summary) in ops {
            html.push_str(&format!(
                "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td></tr>\n",
                method,
                escape(&path),
                escape(&summary)
            ));
        }
        html.push_str("</table>\n");
    }
    html.push_str("</body></html>\n");
    html
}
