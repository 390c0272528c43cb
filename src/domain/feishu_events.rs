//! Feishu event payloads from stored domain events, one per recipient app, ids in each
//! recipient's id space. (A minimal version: `im.message.receive_v1` for users' messages.)

use serde_json::{json, Value};

use crate::domain::chat::Chat;
use crate::domain::directory::{App, Directory, User};
use crate::domain::events::{EventBody, StoredEvent};
use crate::domain::ids::{AppId, TenantKey};
use crate::domain::message::Sender;

/// One Feishu event for one app: the delivery wraps `event` in the schema-2.0 envelope
/// (`header{event_id, event_type, create_time, token, app_id, tenant_key}`).
#[derive(Debug, Clone, PartialEq)]
pub struct AppEvent {
    pub app_id: AppId,
    pub event_type: &'static str,
    pub tenant_key: TenantKey,
    /// The `event` object, ids already in `app_id`'s id space.
    pub event: serde_json::Value,
}

fn user_id_of(dir: &Directory, app: &App, user: &User) -> Value {
    let mut id = json!({
        "open_id": dir.open_id(app, user).0,
        "union_id": dir.union_id(&app.developer, user).0,
    });
    if app.has_scope("contact:user.employee_id:readonly") {
        id["user_id"] = json!(user.user_id.0);
    }
    id
}

/// The Feishu events one stored domain event causes, one per recipient app, in a stable order.
/// `chat` is the chat as stored now. Subscriptions (`event_types`) are NOT applied here.
pub fn app_events(event: &StoredEvent, chat: &Chat, dir: &Directory) -> Vec<AppEvent> {
    let EventBody::MessageSent { message_id, chat_type, sender: Sender::User(uid), msg_type, content, mentions } =
        &event.event.body
    else {
        return Vec::new();
    };
    let Some(user) = dir.user(uid) else { return Vec::new() };
    let mut out = Vec::new();
    for app_id in &chat.bots {
        let Some(app) = dir.app(app_id) else { continue };
        let p2p = chat_type == "p2p";
        let mentioned = mentions.iter().any(|m| m.id == app_id.0);
        let receives = if p2p {
            // GUESS (docs/parity.md): `im:message` (read and send p2p and group messages) covers p2p.
            app.has_any_scope(&["im:message.p2p_msg:readonly", "im:message"])
        } else {
            app.has_scope("im:message.group_msg") || (mentioned && app.has_scope("im:message.group_at_msg:readonly"))
        };
        if !receives {
            continue;
        }
        let ms = event.event.at_ms.to_string();
        out.push(AppEvent {
            app_id: app_id.clone(),
            event_type: "im.message.receive_v1",
            tenant_key: chat.tenant_key.clone(),
            event: json!({
                "sender": {"sender_id": user_id_of(dir, app, user), "sender_type": "user", "tenant_key": user.tenant_key.0},
                "message": {
                    "message_id": message_id.0,
                    "root_id": "",
                    "parent_id": "",
                    "create_time": ms,
                    "update_time": ms,
                    "chat_id": chat.chat_id.0,
                    "chat_type": chat_type,
                    "message_type": msg_type,
                    "content": content,
                    "mentions": [],
                },
            }),
        });
    }
    out
}
