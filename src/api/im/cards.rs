//! Delayed card updates: `POST /open-apis/interactive/v1/card/update` with a `c-` token that a
//! card callback (`card.action.trigger`) carried.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use super::ImCall;
use crate::api::extract::{parse_json, RawBody};
use crate::domain::cards::{replace_card, update_content, CARD_TOKEN_USES};
use crate::domain::message::{invalid, Message};
use crate::envelope::{ok, ApiError, ApiResult};
use crate::error::CardErr;
use crate::ratelimit::Family;
use crate::state::AppState;
use crate::store::{CardTokenUse, MessageChange};

/// A delayed update: the token and the new card.
#[derive(Deserialize, utoipa::ToSchema)]
struct CardUpdateBody {
    /// The `c-…` token of a card callback.
    token: Option<String>,
    /// The new card JSON; `open_ids` (users whose copy changes) is accepted and ignored: larkstack
    /// keeps one copy of a card (docs/parity.md).
    #[schema(value_type = Object)]
    card: Option<Value>,
}

/// Replaces the card a user interacted with, by the token of that interaction: valid 30 minutes
/// (larkstack clock) for two updates, only for the app the callback went to. An unknown or
/// another app's or another tenant's token is 200830, an expired one 200831, a used-up one 200832 (GUESS codes,
/// docs/parity.md); a card that is no card 230099, over 30 KB 230025, a recalled one 230011.
/// Answers `{}`.
///
/// Side effects: one unit of the app's budget; one durable change of the message and of the
/// token's use count, together (`Store::update_card_by_token`). No Feishu event.
#[utoipa::path(
    post,
    path = "/open-apis/interactive/v1/card/update",
    operation_id = "delay_update_card",
    tag = "im",
    summary = "Update a card later, with a card callback's token",
    request_body(content = CardUpdateBody, content_type = "application/json"),
    security(("tenant_access_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub async fn update(State(state): State<Arc<AppState>>, headers: HeaderMap, RawBody(body): RawBody) -> ApiResult {
    let call = ImCall::begin(&state, &headers, Family::CardUpdate, &[]).await?;
    let (app, _) = call.caller()?;
    let body: CardUpdateBody = parse_json(&body, invalid)?;
    let token = body.token.filter(|t| !t.is_empty()).ok_or_else(|| ApiError::Feishu(CardErr::TokenInvalid.err()))?;
    let card = body.card.ok_or_else(|| ApiError::Feishu(invalid("card", "required")))?;
    let content = update_content(&card)?;
    let (app_id, now) = (app.app_id.clone(), state.clock.now_ms());
    let change: MessageChange = Box::new(move |m: &mut Message| replace_card(m, &app_id, content, now).map(|()| Vec::new()));
    match state.store.update_card_by_token(&token, &app.app_id, &call.token.tenant_key, now, CARD_TOKEN_USES, change).await? {
        CardTokenUse::Unknown | CardTokenUse::Applied(None) => Err(ApiError::Feishu(CardErr::TokenInvalid.err())),
        CardTokenUse::Expired => Err(ApiError::Feishu(CardErr::TokenExpired.err())),
        CardTokenUse::UsedUp => Err(ApiError::Feishu(CardErr::TokenUsedUp.err())),
        CardTokenUse::Applied(Some(Err(e))) => Err(ApiError::Feishu(e)),
        CardTokenUse::Applied(Some(Ok(_))) => Ok(ok(&serde_json::json!({}))),
    }
}
