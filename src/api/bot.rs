//! Who the calling app is: `GET /open-apis/bot/v3/info` (the bot's identity, which every bot
//! framework asks for at start) and `GET /open-apis/application/v6/applications/{app_id}`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use serde_json::json;

use super::extract::{PathParam, QueryParams};
use super::AppCall;
use crate::domain::directory::{App, AppKind};
use crate::envelope::{ok, top_level, ApiError, ApiResult};
use crate::error::FeishuError;
use crate::ratelimit::Family;
use crate::state::AppState;

/// Scopes that let an app read apps' information; an app reads its own without any.
const APPLICATION_SCOPES: &[&str] = &["application:application:readonly"];

/// `lang` of application/get: the languages Feishu keeps app names in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AppLang {
    ZhCn,
    EnUs,
    JaJp,
}

impl AppLang {
    fn as_str(self) -> &'static str {
        match self {
            AppLang::ZhCn => "zh_cn",
            AppLang::EnUs => "en_us",
            AppLang::JaJp => "ja_jp",
        }
    }
}

/// The placeholder avatar larkstack shows for an app (no image is served: docs/parity.md).
fn avatar_url(app: &App) -> String {
    format!("https://larkstack.invalid/app-avatar/{}.png", app.app_id)
}

/// The calling bot's identity. Its reply is Feishu's exception to the envelope: `bot` sits at
/// the top level beside `code` and `msg`, there is no `data`.
///
/// Side effects: one unit of the app's bot-info budget.
#[utoipa::path(
    get,
    path = "/open-apis/bot/v3/info",
    operation_id = "get_bot_info",
    tag = "bot",
    summary = "The calling bot's identity",
    security(("tenant_access_token" = [])),
    responses(
        (status = 200, description = "`code` 0 with `bot` at the top level", body = crate::openapi::BotInfoReply),
        crate::openapi::ErrorResponse,
    ),
)]
pub async fn info(State(state): State<Arc<AppState>>, headers: HeaderMap) -> ApiResult {
    let call = AppCall::begin(&state, &headers, Family::BotInfo, &[]).await?;
    let (app, _) = call.caller()?;
    Ok(top_level(&json!({
        "code": 0,
        "msg": "ok",
        "bot": {
            // The caller's tenant has the app installed and enabled (else 99991662 above).
            "activate_status": 2,
            "app_name": app.name,
            "avatar_url": avatar_url(app),
            "ip_white_list": [],
            "open_id": call.dir.bot_open_id(app, &app.app_id).0,
        },
    })))
}

/// An app's information: the calling app's own (any app may read itself), or another app's
/// with `application:application:readonly` — larkstack serves only the caller's own
/// (docs/parity.md). `lang` is required.
///
/// Side effects: one unit of the app's application-info budget.
#[utoipa::path(
    get,
    path = "/open-apis/application/v6/applications/{app_id}",
    operation_id = "get_application",
    tag = "application",
    summary = "An application's information",
    params(
        ("app_id" = String, Path, description = "The app (cli_…); larkstack serves the caller's own"),
        ("lang" = inline(AppLang), Query, description = "The language of names and descriptions"),
        ("user_id_type" = inline(Option<crate::domain::directory::UserIdType>), Query, description = "Default open_id"),
    ),
    security(("tenant_access_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn application(State(state): State<Arc<AppState>>, headers: HeaderMap, PathParam(app_id): PathParam, uri: Uri) -> ApiResult {
    let call = AppCall::begin(&state, &headers, Family::ApplicationInfo, &[]).await?;
    let (app, _) = call.caller()?;
    let q = QueryParams::parse(uri.query());
    let lang = match q.enum_of::<AppLang>("lang") {
        Ok(Some(lang)) => lang,
        _ => return Err(ApiError::Feishu(FeishuError::field_validation("lang", "lang is required: zh_cn, en_us or ja_jp"))),
    };
    if q.enum_of::<crate::domain::directory::UserIdType>("user_id_type").is_err() {
        return Err(ApiError::Feishu(FeishuError::field_validation("user_id_type", "open_id, union_id or user_id")));
    }
    if app_id != app.app_id.0 {
        return Err(ApiError::Feishu(FeishuError::scope_missing(APPLICATION_SCOPES)));
    }
    let scopes: Vec<_> = {
        let mut names: Vec<&String> = app.scopes.iter().collect();
        names.sort();
        names.into_iter().map(|s| json!({"scope": s, "description": "", "level": 1})).collect()
    };
    Ok(ok(&json!({
        "app": {
            "app_id": app.app_id.0,
            "creator_id": "",
            // 1: enabled (the caller's tenant has it switched on, else 99991662 above).
            "status": 1,
            // 0: self-built, 1: from the app store.
            "scene_type": if app.kind == AppKind::Store { 1 } else { 0 },
            "payment_type": 0,
            "redirect_urls": [],
            "online_version_id": "",
            "unaudit_version_id": "",
            "app_name": app.name,
            "avatar_url": avatar_url(app),
            "description": "",
            "scopes": scopes,
            "back_home_url": "",
            "i18n": [{"i18n_key": lang.as_str(), "name": app.name, "description": "", "help_use": ""}],
            "primary_language": lang.as_str(),
            "common_categories": [],
            "owner": {"type": 0, "owner_id": "", "name": app.developer, "help_desk": "", "email": "", "phone": ""},
            "mobile_default_ability": if app.bot { "bot" } else { "" },
            "pc_default_ability": if app.bot { "bot" } else { "" },
        }
    })))
}
