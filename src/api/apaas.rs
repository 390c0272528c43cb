//! aPaaS user tasks (spec §6): start a group chat from a task (seed: apaas-user-task-chat-group.md)
//! and the task query.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::json;

use super::auth::tenant_token;
use super::extract::{parse_json, PathParam, RawBody};
use crate::domain::apaas::{
    apply_pull, param_invalid, plan_chat_group, query_tasks, ChatGroupBody, ChatGroupPlan, ChatTarget, TaskQueryBody,
    READ_SCOPE, WRITE_SCOPE,
};
use crate::domain::chat::{plan_create_with, Caller, CreateChatBody, CreateChatQuery, People};
use crate::domain::directory::{App, AppKind, Directory, Tenant, UserIdType};
use crate::domain::events::{chat_created, tracked, Actor};
use crate::domain::ids::{new_chat_id, ChatId, Uid};
use crate::envelope::{ok, ApiError, ApiResult};
use crate::error::{im, FeishuError};
use crate::ratelimit::Family;
use crate::state::AppState;
use crate::store::{Created, TaskLink, TokenRecord};

/// An authenticated aPaaS call: bearer → the endpoint's rate budget → the app is still there and
/// enabled (99991663 otherwise), self-built and holding `scope` (99991672: store apps can not be
/// granted aPaaS scopes).
async fn begin(
    state: &AppState,
    headers: &HeaderMap,
    family: Family,
    scope: &'static str,
) -> Result<(Arc<Directory>, Arc<TokenRecord>), ApiError> {
    let token = tenant_token(state, headers).await?;
    let dir = state.directory();
    let rate_override = dir.app(&token.app_id).and_then(|a| a.rate_limit);
    state.limits.check(&token.app_id, &token.tenant_key, family, rate_override).await?;
    caller(&dir, &token, scope)?;
    Ok((dir, token))
}

fn caller<'d>(dir: &'d Directory, token: &TokenRecord, scope: &'static str) -> Result<(&'d App, &'d Tenant), ApiError> {
    let app = dir.app(&token.app_id).filter(|a| a.enabled_in(&token.tenant_key));
    let tenant = dir.tenant(&token.tenant_key);
    let (Some(app), Some(tenant)) = (app, tenant) else {
        return Err(ApiError::Feishu(FeishuError::invalid_token()));
    };
    if app.kind != AppKind::SelfBuilt || !app.has_scope(scope) {
        return Err(ApiError::Feishu(FeishuError::scope_missing(&[scope])));
    }
    Ok((app, tenant))
}

fn invalid_body(field: &str, why: String) -> FeishuError {
    param_invalid().with_field(field, None, why)
}

/// Starts a group chat from a user task, or pulls people into an existing chat.
///
/// Side effects, in order:
/// 1. bearer check, then one unit of the app's chat_group budget (100/min);
/// 2. app checks, then every request field (one 2320001 naming each bad field; nothing stored);
/// 3. `chat_id` given: one atomic change pulling the invitees into that chat, then its link to the task;
/// 4. `chat_id` empty: the chat this app started from the task before, if not disbanded, gets the
///    invitees; otherwise one write stores a new chat (operator owns it; invitees and the bot are
///    members) together with its link to the task.
#[utoipa::path(
    post,
    path = "/open-apis/apaas/v1/user_tasks/{task_id}/chat_group",
    operation_id = "task_chat_group",
    tag = "apaas",
    summary = "Start a group chat from a user task",
    params(("task_id" = String, Path, description = "The user task")),
    request_body(content = ChatGroupBody, content_type = "application/json"),
    security(("tenant_access_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn chat_group(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    PathParam(task_id): PathParam,
    RawBody(body): RawBody,
) -> ApiResult {
    let (dir, token) = begin(&state, &headers, Family::ApaasChatGroup, WRITE_SCOPE).await?;
    let (app, tenant) = caller(&dir, &token, WRITE_SCOPE)?;
    let body: ChatGroupBody = parse_json(&body, invalid_body)?;
    let plan = plan_chat_group(&dir, app, tenant, &task_id, body)?;
    let now = state.clock.now_ms();
    let link = TaskLink { task_id: plan.task.task_id.clone(), app_id: app.app_id.clone(), at_ms: now };
    let invitees: Vec<Uid> = plan.invitees.iter().map(|u| u.uid.clone()).collect();

    let chat_id = match &plan.target {
        ChatTarget::Existing(raw) => {
            let chat_id = ChatId(raw.clone());
            pull(&state, &chat_id, app, tenant, &plan, invitees, "chat_id").await?;
            state.store.link_task_chat(link, &chat_id).await?;
            chat_id
        }
        ChatTarget::New { name } => {
            if !app.bot {
                return Err(ApiError::Feishu(im::bot_ability_inactive()));
            }
            let chat = new_chat(&dir, app, tenant, &plan, name, now)?;
            let created = vec![chat_created(&chat, Actor::App(app.app_id.clone()), now)];
            match state.store.task_chat(link, chat, created).await? {
                Created::New(chat) => chat.chat_id,
                Created::Existing(chat) => {
                    pull(&state, &chat.chat_id, app, tenant, &plan, invitees, "task_id").await?;
                    chat.chat_id
                }
            }
        }
    };
    Ok(ok(&json!({ "chat_id": chat_id })))
}

async fn pull(
    state: &AppState,
    chat_id: &ChatId,
    app: &App,
    tenant: &Tenant,
    plan: &ChatGroupPlan<'_>,
    invitees: Vec<Uid>,
    field: &'static str,
) -> Result<(), ApiError> {
    let (tenant_key, operator, now) = (tenant.tenant_key.clone(), plan.operator.uid.clone(), state.clock.now_ms());
    let dir = state.directory();
    let actor = Actor::App(app.app_id.clone());
    let change = tracked(actor, now, move |chat: &mut crate::domain::chat::Chat| {
        apply_pull(&dir, chat, &tenant_key, &operator, &invitees, field, now)
    });
    match state.store.modify_chat(chat_id, change).await? {
        Some(outcome) => outcome.map(|_| ()).map_err(ApiError::Feishu),
        None => Err(ApiError::Feishu(param_invalid().with_field(field, Some(chat_id.as_str()), "no such chat"))),
    }
}

/// The chat as create-chat builds it for the bot, through the same domain constructor, with the
/// operator as owner and the invitees as users (already resolved from their Kunlun IDs), so every
/// create-chat rule applies; its refusals come back as 2320001 in the aPaaS request's terms.
fn new_chat<'d>(
    dir: &'d Directory,
    app: &App,
    tenant: &Tenant,
    plan: &'d ChatGroupPlan<'d>,
    name: &str,
    now_ms: i64,
) -> Result<crate::domain::chat::Chat, FeishuError> {
    let body = CreateChatBody { name: Some(name.to_string()), ..Default::default() };
    let query = CreateChatQuery { user_id_type: UserIdType::OpenId, set_bot_manager: false, uuid: None };
    let people = People::Resolved { owner: plan.operator, users: &plan.invitees };
    plan_create_with(dir, &Caller { app, tenant }, &query, body, people, new_chat_id(now_ms), now_ms)
        .map_err(in_apaas_terms)
}

/// A create-chat refusal as 2320001, with fields and IDs renamed to the aPaaS request's.
fn in_apaas_terms(e: FeishuError) -> FeishuError {
    let mut out = param_invalid();
    for v in &e.field_violations {
        let field = match v.field.as_str() {
            "owner_id" => "operator_user_id",
            "user_id_list" => "invite_user_ids",
            "name" => "chat_name",
            other => other,
        };
        out = out.with_field(field, v.value.as_deref(), format!("{} ({})", v.description, e.msg));
    }
    if out.field_violations.is_empty() {
        // Codes without fields here are about the chat's texts (review, name rules).
        out = out.with_field("chat_name", None, e.msg.to_string());
    }
    out
}

/// Lists the user tasks a Kunlun user is part of. Side effects: one unit of the query budget.
#[utoipa::path(
    post,
    path = "/open-apis/apaas/v1/user_task/query",
    operation_id = "query_user_tasks",
    tag = "apaas",
    summary = "Query user tasks",
    request_body(content = TaskQueryBody, content_type = "application/json"),
    security(("tenant_access_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn query(State(state): State<Arc<AppState>>, headers: HeaderMap, RawBody(body): RawBody) -> ApiResult {
    let (dir, token) = begin(&state, &headers, Family::ApaasTaskQuery, READ_SCOPE).await?;
    let body: TaskQueryBody = parse_json(&body, invalid_body)?;
    Ok(ok(&query_tasks(&dir, &token.tenant_key, &body)?))
}
