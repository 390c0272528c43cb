//! Card callbacks (`card.action.trigger`, spec events.md §3.4): one request to the app that sent
//! the card, answered within 3 s, whose answer (`toast`, `card`) the caller applies. Not a queued
//! delivery: nothing is retried (a click Feishu could not deliver shows the user an error), and
//! `event_types` does not gate it. The route: the app's `callback_url` (signed and encrypted like
//! events, `wire::seal`), or, when it has none, one of its long connections on any node
//! (`Hub::deliver_anywhere`: a `type=event` frame whose ack carries the answer, base64, in `data`).

use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};

use super::{send, wire};
use crate::domain::cards::MAX_ANSWER_BYTES;
use crate::domain::ids::AppId;
use crate::domain::subscriptions::EventSettings;
use crate::envelope::InfraError;
use crate::longconn::{Hub, Outcome};

/// The app answers within this, else the callback failed.
pub const TIMEOUT: Duration = Duration::from_secs(3);

pub const EVENT_TYPE: &str = "card.action.trigger";

/// The schema-2.0 envelope of a callback. `header.create_time` is in microseconds, as on
/// Feishu's card-callback page (events use milliseconds; docs/parity.md).
pub fn envelope(app_id: &AppId, tenant_key: &str, verification_token: &str, now_ms: i64, event: Value) -> Value {
    json!({
        "schema": "2.0",
        "header": {
            "event_id": wire::new_event_id(),
            "token": verification_token,
            "create_time": (now_ms * 1000).to_string(),
            "event_type": EVENT_TYPE,
            "tenant_key": tenant_key,
            "app_id": app_id.0,
        },
        "event": event,
    })
}

/// How the app answered (or did not).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Reply {
    /// `"webhook"` or `"long_connection"`.
    pub route: &'static str,
    /// The request URL, or `longconn:<conn_id>`.
    pub target: String,
    /// The HTTP status (webhook) or the ack's `code` (long connection); null: no answer.
    pub status: Option<i64>,
    pub latency_ms: u64,
    /// The answer's body (at most `MAX_ANSWER_BYTES`), when it came with status 2xx / code 200.
    #[serde(skip)]
    pub body: Option<String>,
    /// Why there is no usable answer.
    pub error: Option<String>,
}

/// Sends `payload` to the app and waits for its answer (`Err`: Redis failed finding or asking the
/// node holding its connection).
pub async fn send_callback(hub: &Hub, app_id: &AppId, settings: &EventSettings, payload: &Value, now_secs: i64) -> Result<Reply, InfraError> {
    Ok(match settings.callback_url.as_deref() {
        Some(url) => {
            let signed = wire::seal(payload, &settings.encrypt_key, now_secs);
            let out = send::post_keeping(url, &signed.headers, signed.body, TIMEOUT, MAX_ANSWER_BYTES + 1).await;
            let too_big = out.body.len() > MAX_ANSWER_BYTES;
            let ok = out.delivered() && !too_big;
            Reply {
                route: "webhook",
                target: url.to_string(),
                status: out.status.map(i64::from),
                latency_ms: out.latency_ms,
                error: (!ok).then(|| match out.status {
                    Some(_) if too_big => format!("the answer is over {MAX_ANSWER_BYTES} bytes"),
                    Some(s) => format!("the callback URL answered HTTP {s}: {}", out.body.chars().take(512).collect::<String>()),
                    None => out.body.clone(),
                }),
                body: ok.then_some(out.body),
            }
        }
        None => match hub.deliver_anywhere(app_id, payload).await? {
            Outcome::NoConnection => Reply {
                route: "long_connection",
                target: String::new(),
                status: None,
                latency_ms: 0,
                body: None,
                error: Some("the app has no callback_url and no long connection".into()),
            },
            Outcome::Sent { conn_id, ack, latency_ms, why } => {
                let code = ack.as_ref().and_then(|a| a.code);
                let data = ack.and_then(|a| a.data);
                let too_big = data.as_ref().is_some_and(|d| d.len() > MAX_ANSWER_BYTES);
                let error = match (code, why) {
                    (_, Some(why)) => Some(why),
                    (Some(200), _) if too_big => Some(format!("the answer is over {MAX_ANSWER_BYTES} bytes")),
                    (Some(200), _) => None,
                    (other, None) => Some(format!("the client acked with code {other:?} (its handler failed)")),
                };
                Reply {
                    route: "long_connection",
                    target: format!("{}{conn_id}", super::LONG_CONNECTION),
                    status: code,
                    latency_ms,
                    body: if error.is_none() { Some(data.unwrap_or_default()) } else { None },
                    error,
                }
            }
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_is_schema_2_with_microsecond_create_time() {
        let e = envelope(&AppId("cli_a".into()), "t1", "vt", 1_700_000_000_123, json!({"token": "c-1"}));
        assert_eq!(e["schema"], "2.0");
        assert_eq!(e["header"]["event_type"], "card.action.trigger");
        assert_eq!(e["header"]["create_time"], "1700000000123000");
        assert_eq!(e["header"]["token"], "vt");
        assert_eq!(e["header"]["event_id"].as_str().unwrap().len(), 32);
        assert_eq!(e["event"]["token"], "c-1");
    }
}
