//! `GET /_larkstack/events`: the event outbox, for test harnesses (and, later, delivery). Each
//! item is a domain event with its `seq` (gap-free per store), `type`, `chat_id`, `actor`,
//! `at_ms` and its details. The outbox keeps the newest `--outbox-bytes` of events the fan-out
//! has passed (`outbox` says which seqs are kept): `after` below the oldest kept seq starts there.

use std::sync::Arc;

use axum::extract::State;
use serde::Deserialize;
use serde_json::json;

use super::{control_error, query};
use crate::error::ControlErr;
use crate::domain::events::EVENT_TYPES;
use crate::domain::ids::ChatId;
use crate::envelope::{ok, ApiResult};
use crate::state::AppState;
use crate::store::EventQuery;

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

#[derive(Debug, Deserialize)]
struct EventsFilter {
    after: Option<i64>,
    chat_id: Option<String>,
    #[serde(rename = "type")]
    type_name: Option<String>,
    limit: Option<usize>,
}

/// Events in seq order after `after`, optionally of one chat and one type.
#[utoipa::path(
    get,
    path = "/_larkstack/events",
    operation_id = "list_events",
    tag = "control",
    summary = "Domain events committed with their changes, in seq order",
    params(
        ("after" = Option<i64>, Query, description = "Events after this seq (default 0: from the first)"),
        ("chat_id" = Option<String>, Query, description = "Events of this chat"),
        ("type" = Option<String>, Query, description = "Events of this type (im.message.receive_v1, …; see docs/control-api.md)"),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "Default 100"),
    ),
    security(("admin_token" = [])),
    responses(crate::openapi::FeishuResponses),
)]
pub(crate) async fn list(State(state): State<Arc<AppState>>, uri: axum::http::Uri) -> ApiResult {
    let f: EventsFilter = query(&uri)?;
    let limit = f.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(control_error(ControlErr::BadRequest, format!("limit must be from 1 to {MAX_LIMIT}")));
    }
    let type_name = f.type_name.filter(|t| !t.is_empty());
    if let Some(t) = &type_name {
        if !EVENT_TYPES.contains(&t.as_str()) {
            return Err(control_error(ControlErr::BadRequest, format!("unknown event type {t:?}; one of: {}", EVENT_TYPES.join(", "))));
        }
    }
    let q = EventQuery {
        after: f.after.unwrap_or(0),
        chat_id: f.chat_id.filter(|c| !c.is_empty()).map(ChatId),
        type_name,
        limit: limit + 1,
    };
    let mut items = state.store.events(q).await?;
    let has_more = items.len() > limit;
    items.truncate(limit);
    let outbox = state.store.outbox_stats().await?;
    let outbox = json!({
        "first_seq": outbox.first_seq,
        "last_seq": outbox.last_seq,
        "bytes": outbox.bytes,
        "max_bytes": state.outbox_bytes,
    });
    Ok(ok(&json!({ "items": items, "has_more": has_more, "outbox": outbox })))
}
