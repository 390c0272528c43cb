//! Contacts: `GET /open-apis/contact/v3/users/{user_id}`, `GET …/users/batch` and
//! `POST …/users/batch_get_id`. Who an app may read and which fields it sees are the domain's
//! rules (`domain::contacts`); parameters outside their rules are the gateway's 99992402.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::{parse_json, PathParam, QueryParams, RawBody};
use super::AppCall;
use crate::domain::contacts::{readable, status, user_view, BATCH_GET_ID_SCOPES, CALL_SCOPES, MAX_BATCH_USERS};
use crate::domain::directory::{App, Directory, Tenant, User, UserIdType};
use crate::envelope::{ok, ApiError, ApiResult};
use crate::error::{ContactErr, FeishuError};
use crate::ratelimit::Family;
use crate::state::AppState;

/// Naming users by `user_id` needs the employee-id scope (as in IM).
const EMPLOYEE_ID_SCOPE: &str = "contact:user.employee_id:readonly";

/// `department_id_type`: accepted and checked; larkstack users belong to no department.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DepartmentIdType {
    DepartmentId,
    OpenDepartmentId,
}

/// The query's `user_id_type` (default open_id) and `department_id_type`, each one of its
/// names or 99992402; `user_id` also needs the employee-id scope (99991672).
fn id_types(app: &App, q: &QueryParams) -> Result<UserIdType, FeishuError> {
    let id_type = q
        .enum_of::<UserIdType>("user_id_type")
        .map_err(|_| FeishuError::field_validation("user_id_type", "open_id, union_id or user_id"))?
        .unwrap_or(UserIdType::OpenId);
    q.enum_of::<DepartmentIdType>("department_id_type")
        .map_err(|_| FeishuError::field_validation("department_id_type", "department_id or open_department_id"))?;
    if id_type == UserIdType::UserId && !app.has_scope(EMPLOYEE_ID_SCOPE) {
        return Err(FeishuError::scope_missing(&[EMPLOYEE_ID_SCOPE]));
    }
    Ok(id_type)
}

/// The user `raw` names, if the app may read them (another tenant's, invisible and unknown
/// users alike are not).
fn readable_user<'d>(dir: &'d Directory, app: &App, tenant: &Tenant, id_type: UserIdType, raw: &str) -> Option<&'d User> {
    dir.resolve_user(app, &tenant.tenant_key, id_type, raw).filter(|u| readable(app, &tenant.tenant_key, u))
}

/// One user.
///
/// Side effects: one unit of the app's users/get budget.
#[utoipa::path(
    get,
    path = "/open-apis/contact/v3/users/{user_id}",
    operation_id = "get_user",
    tag = "contact",
    summary = "Get one user",
    params(
        ("user_id" = String, Path, description = "The user, as `user_id_type` names them"),
        ("user_id_type" = inline(Option<UserIdType>), Query, description = "Default open_id"),
        ("department_id_type" = inline(Option<DepartmentIdType>), Query, description = "Default open_department_id"),
    ),
    security(("tenant_access_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn get(State(state): State<Arc<AppState>>, headers: HeaderMap, PathParam(user_id): PathParam, uri: Uri) -> ApiResult {
    let call = AppCall::begin(&state, &headers, Family::ContactUser, CALL_SCOPES).await?;
    let (app, tenant) = call.caller()?;
    let id_type = id_types(app, &QueryParams::parse(uri.query()))?;
    let user = readable_user(&call.dir, app, tenant, id_type, &user_id).ok_or_else(|| ApiError::Feishu(ContactErr::NoUserAuthority.err()))?;
    Ok(ok(&json!({ "user": user_view(&call.dir, app, user) })))
}

/// Up to 50 users by repeated `user_ids`; users the app may not read are left out.
///
/// Side effects: one unit of the app's users/batch budget.
#[utoipa::path(
    get,
    path = "/open-apis/contact/v3/users/batch",
    operation_id = "batch_get_users",
    tag = "contact",
    summary = "Get up to 50 users",
    params(
        ("user_ids" = Vec<String>, Query, description = "1 to 50 users, the key repeated"),
        ("user_id_type" = inline(Option<UserIdType>), Query, description = "Default open_id"),
        ("department_id_type" = inline(Option<DepartmentIdType>), Query, description = "Default open_department_id"),
    ),
    security(("tenant_access_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn batch(State(state): State<Arc<AppState>>, headers: HeaderMap, uri: Uri) -> ApiResult {
    let call = AppCall::begin(&state, &headers, Family::ContactUsersBatch, CALL_SCOPES).await?;
    let (app, tenant) = call.caller()?;
    let q = QueryParams::parse(uri.query());
    let id_type = id_types(app, &q)?;
    let ids = q.all("user_ids");
    if ids.is_empty() || ids.len() > MAX_BATCH_USERS {
        return Err(ApiError::Feishu(FeishuError::field_validation("user_ids", format!("1 to {MAX_BATCH_USERS} user ids"))));
    }
    let items: Vec<Value> =
        ids.iter().filter_map(|raw| readable_user(&call.dir, app, tenant, id_type, raw)).map(|u| user_view(&call.dir, app, u)).collect();
    Ok(ok(&json!({ "items": items })))
}

/// Emails and mobile numbers to look up.
#[derive(Deserialize, utoipa::ToSchema)]
struct BatchGetIdBody {
    /// At most 50.
    #[serde(default)]
    emails: Vec<String>,
    /// At most 50; without a country code, a mainland number.
    #[serde(default)]
    mobiles: Vec<String>,
    /// Whether resigned users are found too (default false).
    #[serde(default)]
    include_resigned: bool,
}

/// User ids by email and mobile number: one `user_list` entry per email, then per mobile, with
/// `user_id` (in `user_id_type`) and `status` only when a user the app may read has it.
///
/// Side effects: one unit of the app's batch_get_id budget.
#[utoipa::path(
    post,
    path = "/open-apis/contact/v3/users/batch_get_id",
    operation_id = "batch_get_user_ids",
    tag = "contact",
    summary = "User ids by email or mobile number",
    params(("user_id_type" = inline(Option<UserIdType>), Query, description = "Default open_id")),
    request_body(content = BatchGetIdBody, content_type = "application/json"),
    security(("tenant_access_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn batch_get_id(State(state): State<Arc<AppState>>, headers: HeaderMap, uri: Uri, RawBody(body): RawBody) -> ApiResult {
    let call = AppCall::begin(&state, &headers, Family::ContactBatchGetId, BATCH_GET_ID_SCOPES).await?;
    let (app, tenant) = call.caller()?;
    let id_type = id_types(app, &QueryParams::parse(uri.query()))?;
    let body: BatchGetIdBody = parse_json(&body, FeishuError::field_validation)?;
    if body.emails.is_empty() && body.mobiles.is_empty() {
        return Err(ApiError::Feishu(FeishuError::field_validation("emails", "give emails, mobiles or both")));
    }
    for (field, list) in [("emails", &body.emails), ("mobiles", &body.mobiles)] {
        if list.len() > MAX_BATCH_USERS {
            return Err(ApiError::Feishu(FeishuError::field_validation(field, format!("at most {MAX_BATCH_USERS}"))));
        }
    }
    let found = |user: Option<&User>| {
        user.filter(|u| readable(app, &tenant.tenant_key, u) && (body.include_resigned || u.is_active()))
            .map(|u| (call.dir.user_external_id(app, u, id_type), status(u)))
    };
    let entry = |key: &str, given: &str, user: Option<&User>| {
        let mut e = json!({ key: given });
        if let Some((id, status)) = found(user) {
            e["user_id"] = json!(id);
            e["status"] = status;
        }
        e
    };
    let mut list: Vec<Value> = body.emails.iter().map(|e| entry("email", e, call.dir.user_by_email(&tenant.tenant_key, e))).collect();
    list.extend(body.mobiles.iter().map(|m| entry("mobile", m, call.dir.user_by_mobile(&tenant.tenant_key, m))));
    Ok(ok(&json!({ "user_list": list })))
}
