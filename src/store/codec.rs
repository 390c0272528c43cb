//! How a chat is laid out in a row, shared by every SQL backend: members as compact blobs, the
//! rest as JSON text. One place, so SQLite and PostgreSQL rows hold the same bytes.

use super::{StoreError, TokenKind, TokenRecord};
use crate::domain::chat::{join_key, Chat, ChatStatus, Owner};
use crate::domain::events::{Actor, DomainEvent, EventBody};
use crate::domain::ids::{AppId, ChatId, PackedUids, TenantKey, Uid};

/// A chat's column values, in `chat_columns!()` order after `seq` (see `sql`).
pub struct ChatRow {
    pub chat_id: String,
    pub tenant_key: String,
    pub creator_app: String,
    pub owner: String,
    pub external: bool,
    pub status: &'static str,
    pub created_at: i64,
    pub settings: String,
    pub users: Vec<u8>,
    pub bots: String,
    pub user_managers: Vec<u8>,
    pub bot_managers: String,
    pub last_active_at: i64,
    pub user_joined: Vec<u8>,
}

impl ChatRow {
    pub fn encode(chat: &Chat) -> Result<Self, StoreError> {
        Self::encode_with(chat, &[])
    }

    /// A new chat's row, stored with `events`: when they hold its created event, the members
    /// blob is that event's (`PackedUids`, the same 10-byte form), so a create packs its members
    /// once, not once for the event and again for the row (issue 12).
    pub fn encode_with(chat: &Chat, events: &[DomainEvent]) -> Result<Self, StoreError> {
        let packed = events.iter().find_map(|e| match &e.body {
            // `chat_created` packs every member or none (a uid it cannot pack): the count tells.
            EventBody::ChatCreated { users, .. } if e.chat_id == chat.chat_id && users.len() == chat.users.len() => {
                debug_assert_eq!(Some(users.as_bytes()), users_blob(&chat.users).ok().as_deref(), "another membership");
                Some(users.as_bytes().to_vec())
            }
            _ => None,
        });
        let users = match packed {
            Some(blob) => blob,
            None => users_blob(&chat.users)?,
        };
        Ok(ChatRow {
            chat_id: chat.chat_id.0.clone(),
            tenant_key: chat.tenant_key.0.clone(),
            creator_app: chat.creator_app.0.clone(),
            owner: to_json(&chat.owner),
            external: chat.external,
            status: status_str(chat.status),
            created_at: chat.created_at_ms,
            settings: to_json(&chat.settings),
            users,
            bots: to_json(&chat.bots),
            user_managers: users_blob(&chat.user_managers)?,
            bot_managers: to_json(&chat.bot_managers),
            last_active_at: chat.last_active_at_ms,
            user_joined: joined_blob(chat),
        })
    }

    pub fn decode(self) -> Result<Chat, StoreError> {
        let users = users_from_blob(&self.users)?;
        let user_join_keys = joined_from_blob(&self.user_joined, users.len(), self.created_at)?;
        Ok(Chat {
            chat_id: ChatId(self.chat_id),
            tenant_key: TenantKey(self.tenant_key),
            creator_app: AppId(self.creator_app),
            owner: from_json("owner", &self.owner)?,
            external: self.external,
            status: match self.status {
                "dissolved" => ChatStatus::Dissolved,
                _ => ChatStatus::Normal,
            },
            created_at_ms: self.created_at,
            settings: from_json("settings", &self.settings)?,
            users,
            user_join_keys,
            bots: from_json("bots", &self.bots)?,
            user_managers: users_from_blob(&self.user_managers)?,
            bot_managers: from_json("bot_managers", &self.bot_managers)?,
            last_active_at_ms: self.last_active_at,
        })
    }
}

/// An outbox event's column values (`seq` and `bytes_end` aside). What a column holds is not
/// repeated in `body`: it is the event's JSON without `type`, `chat_id` and `at_ms`, and for a
/// created chat without `users`, which go in the `users` column as 10-byte uids (the chats
/// table's form). A 50-member chat's created event is ~0.7 KB instead of ~2 KB of JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub type_name: &'static str,
    pub chat_id: String,
    pub at_ms: i64,
    /// A created chat's members; `NULL` for every other event.
    pub users: Option<Vec<u8>>,
    pub body: String,
}

/// What a row counts against `--outbox-bytes` besides its text and blob columns: `seq`, `at_ms`
/// and `bytes_end`, 8 bytes each. Pages and indexes are not counted.
const EVENT_ROW_FIXED_BYTES: usize = 24;

/// The keys the columns hold, left out of `body`.
const EVENT_COLUMN_KEYS: [&str; 3] = ["type", "chat_id", "at_ms"];

impl EventRow {
    pub fn encode(event: &DomainEvent) -> Self {
        let (users, body) = match &event.body {
            // Every create writes one: its body goes straight to text (see `CreatedBody`).
            EventBody::ChatCreated { name, chat_mode, chat_type, owner, users, bots, external } => {
                let body = CreatedBody {
                    actor: KindId::actor(&event.actor),
                    bots,
                    chat_mode,
                    chat_type,
                    external: *external,
                    name,
                    owner: KindId::owner(owner),
                };
                (Some(users.as_bytes().to_vec()), to_json(&body))
            }
            _ => (None, generic_body(event)),
        };
        EventRow { type_name: event.type_name(), chat_id: event.chat_id.0.clone(), at_ms: event.at_ms, users, body }
    }

    /// Bytes the row counts against `--outbox-bytes`.
    pub fn bytes(&self) -> i64 {
        event_bytes(self.type_name, &self.chat_id, self.users.as_deref(), &self.body)
    }
}

/// An event's body through a `serde_json::Value`: the event's JSON less `EVENT_COLUMN_KEYS`, its
/// object keys sorted at every depth (serde_json's map is ordered by key).
fn generic_body(event: &DomainEvent) -> String {
    let mut map = match serde_json::to_value(event).expect("plain data serialises") {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("a DomainEvent serialises as an object"),
    };
    for key in EVENT_COLUMN_KEYS {
        map.remove(key);
    }
    to_json(&map)
}

/// A created event's body, byte for byte what `generic_body` makes of it without `users` (keys
/// in sorted order here too), written without building the tree: the tree and its second
/// serialisation were most of a create's outbox insert (issue 12). A test holds the two to the
/// same bytes.
#[derive(serde::Serialize)]
struct CreatedBody<'a> {
    actor: KindId<'a>,
    bots: &'a [AppId],
    chat_mode: &'a str,
    chat_type: &'a str,
    external: bool,
    name: &'a str,
    owner: KindId<'a>,
}

/// An `Actor` or an `Owner` (`{kind, id}` enums) with its keys sorted, as in `generic_body`.
#[derive(serde::Serialize)]
struct KindId<'a> {
    id: &'a str,
    kind: &'static str,
}

impl<'a> KindId<'a> {
    fn actor(actor: &'a Actor) -> Self {
        let (kind, id) = match actor {
            Actor::User(u) => ("user", &u.0),
            Actor::App(a) => ("app", &a.0),
            Actor::ControlAsUser(u) => ("control_as_user", &u.0),
            Actor::CustomBot(a) => ("custom_bot", &a.0),
        };
        KindId { id, kind }
    }

    fn owner(owner: &'a Owner) -> Self {
        match owner {
            Owner::User(u) => KindId { id: &u.0, kind: "user" },
            Owner::Bot(a) => KindId { id: &a.0, kind: "bot" },
        }
    }
}

/// Bytes a stored event counts against `--outbox-bytes`: its text and blob columns plus
/// `EVENT_ROW_FIXED_BYTES`. The same sum when it is stored and when a prune measures it.
pub fn event_bytes(type_name: &str, chat_id: &str, users: Option<&[u8]>, body: &str) -> i64 {
    (type_name.len() + chat_id.len() + users.map_or(0, <[u8]>::len) + body.len() + EVENT_ROW_FIXED_BYTES) as i64
}

/// The event a row holds: the columns go back into `body`'s JSON (one parse, no tree), the
/// members into a created chat.
pub fn decode_event(type_name: &str, chat_id: &str, at_ms: i64, users: Option<&[u8]>, body: &str) -> Result<DomainEvent, StoreError> {
    let rest = body
        .strip_prefix('{')
        .ok_or_else(|| StoreError::Corrupt(format!("events.body of {chat_id}: not a JSON object")))?
        .trim_start();
    let mut json = String::with_capacity(body.len() + type_name.len() + chat_id.len() + 48);
    json.push_str("{\"type\":");
    json.push_str(&to_json(&type_name));
    json.push_str(",\"chat_id\":");
    json.push_str(&to_json(&chat_id));
    json.push_str(",\"at_ms\":");
    json.push_str(&at_ms.to_string());
    if !rest.starts_with('}') {
        json.push(',');
    }
    json.push_str(rest);
    let mut event: DomainEvent = from_json("events.body", &json)?;
    match (&mut event.body, users) {
        (_, None) => {}
        (EventBody::ChatCreated { users: members, .. }, Some(blob)) => {
            *members = PackedUids::from_bytes(blob.to_vec()).ok_or_else(|| StoreError::Corrupt("events.users length".into()))?;
        }
        (_, Some(_)) => return Err(StoreError::Corrupt(format!("events.users on a {type_name} event"))),
    }
    Ok(event)
}

/// The search text of a row stored before the `search_text` column existed, from its settings
/// (the migrations that add the column backfill it with this).
pub fn search_text_from_settings(settings: &str) -> Result<String, StoreError> {
    Ok(from_json::<crate::domain::chat::ChatSettings>("settings", settings)?.search_text())
}

/// The stored status text, as a static str so `ChatRow` can hold it.
pub fn status_from(s: &str) -> &'static str {
    match s {
        "dissolved" => "dissolved",
        _ => "normal",
    }
}

pub fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serialises")
}

pub fn from_json<T: serde::de::DeserializeOwned>(col: &str, s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("column {col}: {e}")))
}

pub fn status_str(s: ChatStatus) -> &'static str {
    match s {
        ChatStatus::Normal => "normal",
        ChatStatus::Dissolved => "dissolved",
    }
}

/// Users are stored as one blob of 10-byte uids, in join order.
fn users_blob(users: &[Uid]) -> Result<Vec<u8>, StoreError> {
    let mut blob = Vec::with_capacity(users.len() * 10);
    for u in users {
        blob.extend_from_slice(
            &u.to_bytes()
                .ok_or_else(|| StoreError::Corrupt(format!("non-canonical uid {u}")))?,
        );
    }
    Ok(blob)
}

fn users_from_blob(blob: &[u8]) -> Result<Vec<Uid>, StoreError> {
    if blob.len() % 10 != 0 {
        return Err(StoreError::Corrupt("users blob length".into()));
    }
    Ok(blob.chunks_exact(10).map(Uid::from_bytes).collect())
}

/// Join keys: one blob of 8-byte little-endian keys. A chat whose members all joined at creation
/// (the common case) stores an empty blob.
fn joined_blob(chat: &Chat) -> Vec<u8> {
    let at_creation = chat
        .user_join_keys
        .iter()
        .enumerate()
        .all(|(i, k)| *k == join_key(chat.created_at_ms, i));
    if at_creation {
        return Vec::new();
    }
    chat.user_join_keys
        .iter()
        .flat_map(|t| t.to_le_bytes())
        .collect()
}

fn joined_from_blob(blob: &[u8], users: usize, created_at_ms: i64) -> Result<Vec<i64>, StoreError> {
    if blob.is_empty() {
        return Ok((0..users).map(|i| join_key(created_at_ms, i)).collect());
    }
    if blob.len() != users * 8 {
        return Err(StoreError::Corrupt("user_joined blob length".into()));
    }
    Ok(blob
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect())
}

/// The token columns `token, kind, app_id, tenant_key, issued_at, expires_at` as read.
pub type TokenRow = (String, String, String, String, i64, i64);

pub fn token_record(row: TokenRow) -> Result<TokenRecord, StoreError> {
    let (token, kind, app, tenant, issued, expires) = row;
    Ok(TokenRecord {
        token,
        kind: TokenKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("token kind {kind}")))?,
        app_id: AppId(app),
        tenant_key: TenantKey(tenant),
        issued_at_ms: issued,
        expires_at_ms: expires,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::chat::Owner;
    use crate::domain::events::{Actor, Departure, DomainEvent, EventBody, Mention};
    use crate::domain::ids::{derive_uid, MessageId};
    use crate::domain::message::Sender;

    fn event(body: EventBody) -> DomainEvent {
        DomainEvent { chat_id: ChatId("oc_1".into()), actor: Actor::App(AppId("cli_a".into())), at_ms: 1_700_000_000_123, body }
    }

    fn uids(n: usize) -> Vec<Uid> {
        (0..n).map(|i| derive_uid("acme", &format!("user{i}"))).collect()
    }

    fn created(n: usize) -> DomainEvent {
        event(EventBody::ChatCreated {
            name: "n".into(),
            chat_mode: "group".into(),
            chat_type: "private".into(),
            owner: Owner::User(uids(1)[0].clone()),
            users: PackedUids::pack(&uids(n)).unwrap(),
            bots: vec![AppId("cli_a".into())],
            external: false,
        })
    }

    fn round_trip(e: &DomainEvent) -> EventRow {
        let row = EventRow::encode(e);
        let back = decode_event(row.type_name, &row.chat_id, row.at_ms, row.users.as_deref(), &row.body).unwrap();
        assert_eq!(&back, e, "{}", row.body);
        row
    }

    #[test]
    fn every_event_round_trips_without_repeating_its_columns() {
        let names = crate::domain::chat::I18nNames::default();
        let events = [
            created(3),
            created(0),
            event(EventBody::UsersDeleted { users: uids(2), reason: Departure::Left, name: "n".into(), i18n_names: names.clone() }),
            event(EventBody::BotP2pChatEntered { last_message_id: None, last_message_create_time_ms: None }),
            event(EventBody::MessageSent {
                message_id: MessageId("om_1".into()),
                chat_type: "group".into(),
                sender: Sender::App(AppId("cli_a".into())),
                msg_type: "text".into(),
                content: "{\"text\":\"a \\u0000 \\\" }\"}".into(),
                mentions: vec![Mention { key: "@_user_1".into(), id: "ou_1".into(), name: None, uid: None }],
                root_id: Some(MessageId("om_0".into())),
                parent_id: Some(MessageId("om_0".into())),
                thread_id: None,
            }),
        ];
        for e in &events {
            let row = round_trip(e);
            let body: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&row.body).unwrap();
            for key in EVENT_COLUMN_KEYS {
                assert!(!body.contains_key(key), "{key} in {}", row.body);
            }
            assert_eq!(row.users.is_some(), matches!(e.body, EventBody::ChatCreated { .. }));
        }
    }

    /// A 50-member chat's created event: its members as 500 bytes of blob, the rest a short JSON.
    #[test]
    fn a_created_event_keeps_its_members_packed() {
        let row = round_trip(&created(50));
        assert_eq!(row.users.as_ref().map(Vec::len), Some(500));
        assert!(!row.body.contains("users") && !row.body.contains(uids(50)[1].as_str()), "{}", row.body);
        assert!(row.body.len() < 200, "{}", row.body);
        assert!(row.bytes() < 800, "{}", row.bytes());
        // The whole event as JSON (the layout before) was about twice that.
        let before = to_json(&created(50)).len() as i64;
        assert!(before > 2 * row.bytes() - 200, "{before} vs {}", row.bytes());
    }

    /// The created event's direct body is the generic one's bytes less `users`, whoever acts and
    /// owns, whatever the text holds.
    #[test]
    fn a_created_body_is_the_generic_body_without_users() {
        let actors = [
            Actor::User(uids(1)[0].clone()),
            Actor::App(AppId("cli_a".into())),
            Actor::ControlAsUser(uids(2)[1].clone()),
            Actor::CustomBot(AppId("cli_b".into())),
        ];
        let owners = [Owner::User(uids(1)[0].clone()), Owner::Bot(AppId("cli_a".into()))];
        for (i, actor) in actors.into_iter().enumerate() {
            for owner in owners.clone() {
                let mut e = created(i * 3);
                e.actor = actor.clone();
                if let EventBody::ChatCreated { owner: o, name, bots, external, .. } = &mut e.body {
                    *o = owner;
                    *name = "群 \"q\" \\ \u{1} 😀".into();
                    bots.truncate(i % 2);
                    bots.push(AppId(format!("cli_{i}")));
                    *external = i % 2 == 1;
                }
                let mut generic: serde_json::Value = serde_json::from_str(&generic_body(&e)).unwrap();
                generic.as_object_mut().unwrap().remove("users");
                assert_eq!(EventRow::encode(&e).body, to_json(&generic));
            }
        }
    }

    #[test]
    fn a_blob_on_another_event_or_a_torn_blob_is_corrupt() {
        let row = EventRow::encode(&created(2));
        assert!(decode_event(row.type_name, "oc_1", 1, Some(&[0; 15]), &row.body).is_err());
        let other = EventRow::encode(&event(EventBody::ManagersAdded { users: uids(1), bots: Vec::new() }));
        assert!(decode_event(other.type_name, "oc_1", 1, Some(&[0; 10]), &other.body).is_err());
    }
}
