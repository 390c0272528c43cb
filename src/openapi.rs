//! The OpenAPI 3.1 document of the whole HTTP surface, generated from the `#[utoipa::path]`
//! annotations beside each handler and served at `GET /openapi.json`; and `GET /coverage`, a
//! small HTML page listing the implemented Feishu endpoints, built from that document.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};

use crate::api::{apaas, auth, im};
use crate::control;
use crate::envelope::JSON_UTF8;
use crate::metrics;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "larkstack",
        description = "A Feishu/Lark Open Platform–compatible server for group chats. The `/open-apis` \
            operations follow Feishu's own API (paths, parameters, bodies and the `{code, msg, data}` \
            envelope), so the official SDKs work against it unmodified; `/_larkstack` is larkstack's \
            control API for test harnesses (admin token)."
    ),
    paths(
        auth::tenant_access_token_internal,
        auth::app_access_token_internal,
        auth::tenant_access_token,
        im::chats::create,
        im::chats::list,
        im::chats::search,
        im::chats::get,
        im::chats::update,
        im::chats::delete,
        im::members::add,
        im::members::remove,
        im::members::list,
        im::members::is_in_chat,
        im::members::me_join,
        im::members::add_managers,
        im::members::delete_managers,
        im::messages::send,
        im::messages::list,
        apaas::chat_group,
        apaas::query,
        control::directory,
        control::reset,
        control::get_fixture,
        control::load_fixture,
        control::export,
        control::import,
        control::journal,
        control::clear_journal,
        control::events::list,
        control::list_faults,
        control::list_fault_presets,
        control::add_fault,
        control::clear_faults,
        control::remove_fault,
        control::clock,
        control::set_clock,
        control::actors::list_chats,
        control::actors::chat_detail,
        control::actors::post_as_user,
        control::actors::join_as_user,
        control::actors::leave_as_user,
        control::actors::tasks,
        control::healthz,
        metrics::render,
    ),
    components(schemas(Envelope, ErrorEnvelope, ErrorDetail, FieldViolation, PermissionViolation)),
    modifiers(&SecuritySchemes, &TrailingSlashAliases),
    tags(
        (name = "auth", description = "Tenant and app access tokens"),
        (name = "im", description = "Group chats, members, managers and messages"),
        (name = "apaas", description = "aPaaS user tasks"),
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

/// `user_id_type`.
#[allow(non_camel_case_types)]
#[derive(ToSchema)]
pub enum UserIdType {
    open_id,
    union_id,
    user_id,
}

/// `member_id_type`: a user ID type, or `app_id` for bots.
#[allow(non_camel_case_types)]
#[derive(ToSchema)]
pub enum MemberIdType {
    open_id,
    union_id,
    user_id,
    app_id,
}

#[allow(non_camel_case_types)]
#[derive(ToSchema)]
pub enum ReceiveIdType {
    open_id,
    union_id,
    user_id,
    email,
    chat_id,
}

#[derive(ToSchema)]
pub enum ChatSortType {
    ByCreateTimeAsc,
    ByActiveTimeDesc,
}

#[derive(ToSchema)]
pub enum MessageSortType {
    ByCreateTimeAsc,
    ByCreateTimeDesc,
}

#[allow(non_camel_case_types)]
#[derive(ToSchema)]
pub enum ContainerIdType {
    chat,
}

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

/// The token paths the router also serves with a trailing slash (some SDKs ask for those).
pub const TRAILING_SLASH_ALIASES: &[&str] =
    &["/open-apis/auth/v3/tenant_access_token/internal", "/open-apis/auth/v3/app_access_token/internal"];

struct TrailingSlashAliases;

impl Modify for TrailingSlashAliases {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for path in TRAILING_SLASH_ALIASES {
            let Some(mut item) = openapi.paths.paths.get(*path).cloned() else { continue };
            for op in [&mut item.get, &mut item.post, &mut item.put, &mut item.delete, &mut item.patch].into_iter().flatten() {
                op.operation_id = op.operation_id.take().map(|id| format!("{id}_trailing_slash"));
                op.summary = op.summary.take().map(|s| format!("{s} (trailing slash)"));
            }
            openapi.paths.paths.insert(format!("{path}/"), item);
        }
    }
}

fn document() -> &'static (String, String) {
    static DOC: OnceLock<(String, String)> = OnceLock::new();
    DOC.get_or_init(|| {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serialises");
        (serde_json::to_string(&doc).expect("serialises"), coverage_html(&doc))
    })
}

/// `GET /openapi.json`.
pub async fn openapi_json() -> Response {
    ([(CONTENT_TYPE, JSON_UTF8)], document().0.as_str()).into_response()
}

/// `GET /coverage`: the implemented Feishu endpoints, by tag.
pub async fn coverage() -> Response {
    ([(CONTENT_TYPE, "text/html; charset=utf-8")], document().1.as_str()).into_response()
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
