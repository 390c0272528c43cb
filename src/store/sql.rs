//! Every statement and algorithm the SQL backends share, written once.
//!
//! Statements are written in PostgreSQL's spelling (`$1…` placeholders) as `Sql` statics (the
//! `statements!` macro); SQLite's spelling is derived once, on first use, by `sqlite_spelling`
//! (placeholders `?1…` and the few words the dialects spell apart: `SQLITE_SPELLING`). The
//! algorithms (create, modify, p2p, task link, token rotation, messages, listings, export rows,
//! import records) are async functions over `Tx`, which each backend implements: PostgreSQL on a
//! pooled connection or transaction, SQLite on the writer's savepoint or a reader's connection
//! (its futures are always ready: see `sqlite::ready`). What only one dialect can say (the
//! one-round-trip chat insert of PostgreSQL, advisory locks, clearing tables) is a `Tx` method.

use std::sync::LazyLock;

use super::codec::{self, from_json, to_json, token_record, ChatRow, EventRow};
use super::{BlobChunkRecord, BotChatsQuery, ChatSearchQuery, ChatChange, ChatOrder, Created, Cursor, DedupKey,
    DedupRecord, EventQuery, ImportBatch, LinkedChat, MessageDedupKey, MessageDedupRecord, MessageOrder,
    MessageContainer, MessageQuery, OutboxStats, P2pRecord, StateRecord, StoreError, TaskChatRecord, TaskLink, TokenRecord,
    MessageChange, ReactionQuery, ReadMark, ReadQuery, ReadRecord, AppTicketRecord, AttemptFilter,
    AttemptRecord, Delivery, DeliveryClaim, DeliveryNext, DeliveryQueue, FanOut, FinishedAttempt,
    NewDelivery, CardToken, CardTokenUse};
use crate::domain::chat::{fold_case, Chat};
use crate::domain::custom_bots::CustomBot;
use crate::domain::events::{DomainEvent, StoredEvent};
use crate::domain::ids::{AppId, ChatId, MessageId, TenantKey, Uid};
use crate::domain::media::{self, BlobKind, BlobMeta};
use crate::domain::message::{Message, Sender};
use crate::domain::reaction::Reaction;
use crate::domain::subscriptions::EventSettings;
use crate::error::FeishuError;

/// One statement: its PostgreSQL text, and its SQLite text made from it once.
pub struct Sql {
    text: &'static str,
    sqlite: LazyLock<String>,
}

impl Sql {
    pub fn postgres(&self) -> &'static str {
        self.text
    }

    pub fn sqlite(&self) -> &str {
        &self.sqlite
    }
}

/// What SQLite spells otherwise, in the statements of this module.
const SQLITE_SPELLING: &[(&str, &str)] = &[
    // Row locks: SQLite's single writer already serialises every change.
    (" FOR UPDATE SKIP LOCKED", ""),
    (" FOR UPDATE", ""),
    ("greatest(", "max("),
    ("strpos(", "instr("),
    // Booleans are integers (a partial index says `= 1`).
    (" = TRUE", " = 1"),
];

/// `text` in SQLite's spelling: `$n` placeholders as `?n`, then `SQLITE_SPELLING`.
pub fn sqlite_spelling(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    SQLITE_SPELLING.iter().fold(out, |s, (pg, lite)| s.replace(pg, lite))
}

/// `name = "text", "more text";` declares `pub static name: Sql` (the pieces are `concat!`ed, so
/// column lists come in as the `chat_columns!()` and `token_columns!()` macros).
macro_rules! statements {
    ($($(#[$m:meta])* $name:ident = $($text:expr),+ ;)*) => {
        $(
            $(#[$m])*
            pub static $name: Sql = Sql {
                text: concat!($($text),+),
                sqlite: LazyLock::new(|| sqlite_spelling(concat!($($text),+))),
            };
        )*
    };
}

/// The columns `chat_from_row` reads, `seq` first (see `codec::ChatRow`).
macro_rules! chat_columns {
    () => {
        "seq, chat_id, tenant_key, creator_app, owner, external, status, created_at, settings, users, \
         bots, user_managers, bot_managers, last_active_at, user_joined"
    };
}

/// The columns `token_from_row` reads.
macro_rules! token_columns {
    () => {
        "token, kind, app_id, tenant_key, issued_at, expires_at"
    };
}

/// The columns `event_from_row` reads, `seq` first (see `codec::EventRow`).
macro_rules! event_columns {
    () => {
        "seq, type, chat_id, at_ms, users, body, bytes_end"
    };
}

/// Columns (as `new_delivery_from_row` reads them, then `failed`), table and condition of a
/// claimable delivery: pending and due by `$1` (larkstack clock), or leased until `$2` (wall
/// clock) or earlier, so its node is presumed dead; and no other row of its (app, chat) holds it
/// back: one leased now, or an earlier one that is due or leased (a row waiting for its retry
/// holds nothing back). Rows another transaction holds are skipped.
macro_rules! claimable_deliveries {
    () => {
        "d.event_id, d.app_id, d.seq, d.chat_id, d.type, d.payload, d.committed_ms, d.failed FROM deliveries d
        WHERE ((d.state = 'pending' AND d.due_ms <= $1) OR (d.state = 'in_flight' AND d.lease_until <= $2))
        AND NOT EXISTS (SELECT 1 FROM deliveries e WHERE e.app_id = d.app_id AND e.chat_id = d.chat_id
            AND e.event_id <> d.event_id
            AND ((e.state = 'in_flight' AND e.lease_until > $2) OR (e.seq < d.seq AND (e.state = 'in_flight' OR e.due_ms <= $1))))"
    };
}

/// The columns `blob_meta_from_row` reads.
macro_rules! blob_columns {
    () => {
        "key, app_id, tenant_key, kind, purpose, content_type, file_name, size, created_at"
    };
}

/// Where a group chat that bot `$1` is in, of tenant `$2`, is listed.
macro_rules! bot_membership {
    () => {
        "SELECT seq, chat_id, tenant_key, creator_app, owner, external, status, created_at, settings, users, \
         bots, user_managers, bot_managers, last_active_at, user_joined FROM chats c
         WHERE c.seq IN (SELECT chat_seq FROM chat_bots WHERE app_id = $1) AND c.tenant_key = $2
         AND c.chat_mode = 'group' AND c.status = 'normal'"
    };
}

/// The messages `$filter` picks (by `$1`) in a time range, after a cursor (`$4` null: from the start).
macro_rules! message_page {
    ($filter:literal, $cmp:literal, $dir:literal) => {
        concat!(
            "SELECT created_at, seq, body FROM messages WHERE ", $filter, " AND created_at >= $2 AND created_at <= $3
             AND (CAST($4 AS BIGINT) IS NULL OR created_at ", $cmp, " $4 OR (created_at = $4 AND seq ", $cmp, " $5))
             ORDER BY created_at ", $dir, ", seq ", $dir, " LIMIT $6"
        )
    };
}

statements! {
    CHAT_BY_ID = "SELECT ", chat_columns!(), " FROM chats c WHERE chat_id = $1";
    /// The chat's row, locked until the transaction ends (PostgreSQL; SQLite's writer is alone).
    CHAT_FOR_UPDATE = "SELECT ", chat_columns!(), " FROM chats c WHERE chat_id = $1 FOR UPDATE";
    ALL_CHATS = "SELECT ", chat_columns!(), " FROM chats c WHERE seq > $1 ORDER BY seq LIMIT $2";
    BOT_CHATS_CREATED = bot_membership!(), " ORDER BY c.seq LIMIT $3";
    BOT_CHATS_CREATED_AFTER = bot_membership!(), " AND c.seq > $4 ORDER BY c.seq LIMIT $3";
    BOT_CHATS_ACTIVE = bot_membership!(), " ORDER BY c.last_active_at DESC, c.seq DESC LIMIT $3";
    BOT_CHATS_ACTIVE_AFTER = bot_membership!(),
        " AND (c.last_active_at < $4 OR (c.last_active_at = $4 AND c.seq < $5))
         ORDER BY c.last_active_at DESC, c.seq DESC LIMIT $3";
    /// A plain substring match over the search text folded in Rust (name and i18n names): no LIKE
    /// escaping, and the same folding on both backends.
    SEARCH_CHATS = "SELECT ", chat_columns!(), " FROM chats c
        WHERE c.tenant_key = $2 AND c.status = 'normal' AND c.chat_mode = 'group' AND c.seq > $4
        AND (c.chat_type = 'public' OR c.seq IN (SELECT chat_seq FROM chat_bots WHERE app_id = $1))
        AND strpos(c.search_text, $3) > 0 ORDER BY c.seq LIMIT $5";
    PUBLIC_NAME_TAKEN = "SELECT 1 FROM chats WHERE tenant_key = $1 AND chat_type = 'public' AND name = $2
        AND status = 'normal' AND chat_id != $3 LIMIT 1";
    UPDATE_CHAT = "UPDATE chats SET owner = $2, external = $3, status = $4, settings = $5, users = $6, bots = $7,
                          user_managers = $8, bot_managers = $9, name = $10, chat_type = $11, last_active_at = $12,
                          user_joined = $13, search_text = $14
        WHERE seq = $1";
    UNINDEX_BOTS = "DELETE FROM chat_bots WHERE chat_seq = $1";

    /// Claims a dedup key unless a live one (created after `$7`) holds it.
    CLAIM_CHAT_DEDUP = "INSERT INTO chat_dedup (tenant_key, app_id, uuid, owner, chat_id, created_at)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (tenant_key, app_id, uuid, owner) DO UPDATE
        SET chat_id = excluded.chat_id, created_at = excluded.created_at
        WHERE chat_dedup.created_at <= $7";
    INSERT_CHAT_DEDUP = "INSERT INTO chat_dedup (tenant_key, app_id, uuid, owner, chat_id, created_at)
        VALUES ($1, $2, $3, $4, $5, $6)";
    DEDUP_CHAT_ID = "SELECT chat_id FROM chat_dedup WHERE tenant_key = $1 AND app_id = $2 AND uuid = $3 AND owner = $4";
    LIVE_DEDUP_CHAT_ID = "SELECT chat_id FROM chat_dedup WHERE tenant_key = $1 AND app_id = $2 AND uuid = $3
        AND owner = $4 AND created_at > $5";

    CLAIM_P2P = "INSERT INTO p2p_chats (app_id, uid, chat_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
    INSERT_P2P = "INSERT INTO p2p_chats (app_id, uid, chat_id) VALUES ($1, $2, $3)";
    P2P_CHAT_ID = "SELECT chat_id FROM p2p_chats WHERE app_id = $1 AND uid = $2";

    CLAIM_MESSAGE_DEDUP = "INSERT INTO message_dedup (app_id, uuid, message_id, created_at) VALUES ($1, $2, $3, $4)
        ON CONFLICT (app_id, uuid) DO UPDATE SET message_id = excluded.message_id, created_at = excluded.created_at
        WHERE message_dedup.created_at <= $5";
    INSERT_MESSAGE_DEDUP = "INSERT INTO message_dedup (app_id, uuid, message_id, created_at) VALUES ($1, $2, $3, $4)";
    DEDUP_MESSAGE_ID = "SELECT message_id FROM message_dedup WHERE app_id = $1 AND uuid = $2";
    INSERT_MESSAGE = "INSERT INTO messages (message_id, chat_id, created_at, body) VALUES ($1, $2, $3, $4)";
    MARK_ACTIVE = "UPDATE chats SET last_active_at = greatest(last_active_at, $2) WHERE chat_id = $1";
    MESSAGE_BODY = "SELECT body FROM messages WHERE message_id = $1";
    /// The message's row, locked until the transaction ends (PostgreSQL; SQLite's writer is alone).
    MESSAGE_FOR_UPDATE = "SELECT body FROM messages WHERE message_id = $1 FOR UPDATE";
    UPDATE_MESSAGE_BODY = "UPDATE messages SET body = $2 WHERE message_id = $1";
    MESSAGES_ASC = message_page!("chat_id = $1", ">", "ASC");
    MESSAGES_DESC = message_page!("chat_id = $1", "<", "DESC");
    THREAD_MESSAGES_ASC = message_page!("message_id IN (SELECT message_id FROM thread_messages WHERE thread_id = $1)", ">", "ASC");
    THREAD_MESSAGES_DESC = message_page!("message_id IN (SELECT message_id FROM thread_messages WHERE thread_id = $1)", "<", "DESC");
    INSERT_THREAD_MESSAGE = "INSERT INTO thread_messages (thread_id, message_id) VALUES ($1, $2) ON CONFLICT (message_id) DO NOTHING";

    /// An operator's emoji on a message is unique: a repeat inserts nothing.
    INSERT_REACTION = "INSERT INTO reactions (reaction_id, message_id, operator, emoji_type, body) VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT DO NOTHING";
    REACTION_BY_OPERATOR = "SELECT body FROM reactions WHERE message_id = $1 AND operator = $2 AND emoji_type = $3";
    REACTION_BY_ID = "SELECT body FROM reactions WHERE reaction_id = $1";
    DELETE_REACTION = "DELETE FROM reactions WHERE reaction_id = $1";
    REACTIONS_PAGE = "SELECT seq, body FROM reactions WHERE message_id = $1
        AND (CAST($2 AS TEXT) IS NULL OR emoji_type = $2) AND seq > $3 ORDER BY seq LIMIT $4";
    INSERT_READ = "INSERT INTO message_reads (message_id, uid, read_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
    READS_PAGE = "SELECT seq, message_id, uid, read_at FROM message_reads WHERE message_id = $1 AND seq > $2
        ORDER BY seq LIMIT $3";

    STARTED_TASK_CHAT = "SELECT chat_id FROM task_chats WHERE task_id = $1 AND app_id = $2 AND started_here = TRUE
        ORDER BY linked_at DESC LIMIT 1";
    INSERT_TASK_LINK = "INSERT INTO task_chats (task_id, app_id, chat_id, started_here, linked_at) VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT DO NOTHING";
    TASK_LINKS = "SELECT task_id, chat_id, app_id, started_here, linked_at FROM task_chats
        ORDER BY linked_at, task_id, chat_id";

    LATEST_TOKEN = "SELECT ", token_columns!(), " FROM tokens WHERE app_id = $1 AND tenant_key = $2 AND kind = $3
        ORDER BY expires_at DESC LIMIT 1";
    INSERT_TOKEN = "INSERT INTO tokens (token, kind, app_id, tenant_key, issued_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)";
    TOKEN = "SELECT ", token_columns!(), " FROM tokens WHERE token = $1";

    /// A new ticket replaces the app's current one only if that was issued before `$5`.
    ISSUE_APP_TICKET = "INSERT INTO app_tickets (app_id, ticket, issued_at, expires_at) VALUES ($1, $2, $3, $4)
        ON CONFLICT (app_id) DO UPDATE SET ticket = excluded.ticket, issued_at = excluded.issued_at,
        expires_at = excluded.expires_at WHERE app_tickets.issued_at < $5";
    INSERT_APP_TICKET = "INSERT INTO app_tickets (app_id, ticket, issued_at, expires_at) VALUES ($1, $2, $3, $4)";
    APP_TICKET = "SELECT app_id, ticket, issued_at, expires_at FROM app_tickets WHERE app_id = $1";

    INSERT_CARD_TOKEN = "INSERT INTO card_tokens (token, app_id, tenant_key, message_id, issued_at, expires_at, uses)
        VALUES ($1, $2, $3, $4, $5, $6, 0)";
    PRUNE_EXPIRED_CARD_TOKENS = "DELETE FROM card_tokens WHERE expires_at <= $1";
    COUNT_CARD_TOKENS = "SELECT COUNT(*) FROM card_tokens";
    DROP_OLDEST_CARD_TOKEN = "DELETE FROM card_tokens WHERE token = (SELECT token FROM card_tokens ORDER BY issued_at, token LIMIT 1)";
    CARD_TOKEN_FOR_UPDATE = "SELECT app_id, tenant_key, message_id, expires_at, uses FROM card_tokens WHERE token = $1 FOR UPDATE";
    USE_CARD_TOKEN = "UPDATE card_tokens SET uses = uses + 1 WHERE token = $1";

    /// No index on `chat_id` (it cost every create a second B-tree insert): a chat's events are
    /// found by walking seq order from `$1`, within the outbox's byte bound.
    EVENTS = "SELECT ", event_columns!(), " FROM events WHERE seq > $1 AND (CAST($2 AS TEXT) IS NULL OR chat_id = $2)
        AND (CAST($3 AS TEXT) IS NULL OR type = $3) ORDER BY seq LIMIT $4";
    /// An event with its seq (an import, in seq order): it ends `$7` bytes after the last one.
    INSERT_STORED_EVENT = "INSERT INTO events (seq, type, chat_id, at_ms, users, body, bytes_end)
        VALUES ($1, $2, $3, $4, $5, $6, coalesce((SELECT bytes_end FROM events ORDER BY seq DESC LIMIT 1), 0) + $7)";
    FIRST_EVENT = "SELECT ", event_columns!(), " FROM events ORDER BY seq LIMIT 1";
    LAST_EVENT = "SELECT ", event_columns!(), " FROM events ORDER BY seq DESC LIMIT 1";
    /// The oldest event that ends past byte `$1` or comes after seq `$2`. It walks seq order from
    /// the oldest and stops there, so it reads the rows a prune deletes plus one.
    FIRST_KEPT_EVENT = "SELECT ", event_columns!(), " FROM events WHERE bytes_end > $1 OR seq > $2 ORDER BY seq LIMIT 1";
    PRUNE_EVENTS = "DELETE FROM events WHERE seq < $1";
    /// Rows of the layout before `codec::EventRow` (the whole event as JSON in `body`).
    LEGACY_EVENTS = "SELECT seq, body FROM events WHERE seq > $1 ORDER BY seq LIMIT $2";
    COMPACT_EVENT = "UPDATE events SET users = $2, body = $3, bytes_end = $4 WHERE seq = $1";

    COUNT_CUSTOM_BOTS = "SELECT count(*) FROM custom_bots WHERE chat_id = $1";
    INSERT_CUSTOM_BOT = "INSERT INTO custom_bots (token, bot_id, chat_id, created_at, body) VALUES ($1, $2, $3, $4, $5)";
    CUSTOM_BOTS_OF_CHAT = "SELECT body FROM custom_bots WHERE chat_id = $1 ORDER BY created_at, token";
    CUSTOM_BOT_BY_TOKEN = "SELECT body FROM custom_bots WHERE token = $1";
    DELETE_CUSTOM_BOT = "DELETE FROM custom_bots WHERE chat_id = $1 AND bot_id = $2";

    COUNT_CHATS = "SELECT count(*) FROM chats";
    PING = "SELECT 1";

    EXPORT_CHATS = "SELECT ", chat_columns!(), " FROM chats ORDER BY seq";
    EXPORT_CHAT_DEDUP = "SELECT tenant_key, app_id, uuid, owner, chat_id, created_at FROM chat_dedup ORDER BY created_at, chat_id";
    EXPORT_P2P = "SELECT app_id, uid, chat_id FROM p2p_chats ORDER BY app_id, uid";
    EXPORT_MESSAGES = "SELECT body FROM messages ORDER BY seq";
    EXPORT_MESSAGE_DEDUP = "SELECT app_id, uuid, message_id, created_at FROM message_dedup ORDER BY created_at, message_id";
    EXPORT_REACTIONS = "SELECT body FROM reactions ORDER BY seq";
    EXPORT_READS = "SELECT seq, message_id, uid, read_at FROM message_reads ORDER BY seq";
    EXPORT_CUSTOM_BOTS = "SELECT body FROM custom_bots ORDER BY created_at, token";
    EXPORT_TOKENS = "SELECT ", token_columns!(), " FROM tokens ORDER BY issued_at, token";
    EXPORT_APP_TICKETS = "SELECT app_id, ticket, issued_at, expires_at FROM app_tickets ORDER BY app_id";
    EXPORT_EVENTS = "SELECT ", event_columns!(), " FROM events ORDER BY seq";

    /// Bytes the app's blobs take, for the blob quota.
    BLOB_BYTES_OF_APP = "SELECT CAST(coalesce(sum(size), 0) AS BIGINT) FROM blobs WHERE app_id = $1";
    INSERT_BLOB = "INSERT INTO blobs (key, app_id, tenant_key, kind, purpose, content_type, file_name, size, created_at, bytes)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
    BLOB_META = "SELECT ", blob_columns!(), " FROM blobs WHERE key = $1";
    BLOB_WITH_BYTES = "SELECT ", blob_columns!(), ", bytes FROM blobs WHERE key = $1";
    /// Keys only: an export reads one blob's bytes at a time.
    EXPORT_BLOB_KEYS = "SELECT key FROM blobs ORDER BY created_at, key";

    EVENT_SETTINGS = "SELECT app_id, settings FROM event_settings ORDER BY app_id";
    PUT_EVENT_SETTINGS = "INSERT INTO event_settings (app_id, settings) VALUES ($1, $2)
        ON CONFLICT (app_id) DO UPDATE SET settings = excluded.settings";
    CLEAR_EVENT_SETTINGS = "DELETE FROM event_settings";

    /// The fan-out cursor, locked until the transaction ends (no row: 0).
    DELIVERY_CURSOR_FOR_UPDATE = "SELECT seq FROM delivery_cursor WHERE id = 1 FOR UPDATE";
    SET_DELIVERY_CURSOR = "INSERT INTO delivery_cursor (id, seq) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq";
    /// `Tx::insert_deliveries` row by row (SQLite; PostgreSQL inserts a batch in one statement).
    INSERT_DELIVERY = "INSERT INTO deliveries (event_id, app_id, seq, chat_id, type, payload, bytes, committed_ms, failed, due_ms, state)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, 'pending') ON CONFLICT (event_id) DO NOTHING";
    /// The cursor's table is named first: PostgreSQL locks a statement's tables in that order,
    /// and `STATE_TABLES` (a reset's TRUNCATE) has it before `deliveries`.
    DELIVERY_QUEUE = "SELECT q.n, q.b, c.seq FROM (SELECT coalesce(max(seq), 0) AS seq FROM delivery_cursor) c,
        (SELECT count(*) AS n, CAST(coalesce(sum(bytes), 0) AS BIGINT) AS b FROM deliveries) q";
    /// A claimable delivery: pending and due by `$1` (larkstack clock), or leased until `$2`
    /// (wall clock) or earlier, so its node is presumed dead.
    DUE_DELIVERY = "SELECT 1 FROM deliveries WHERE (state = 'pending' AND due_ms <= $1)
        OR (state = 'in_flight' AND lease_until <= $2) LIMIT 1";
    /// Claimable deliveries of the apps in `$3` (",app,app,"), oldest first (see
    /// `claimable_deliveries!`).
    CLAIMABLE_DELIVERIES = "SELECT ", claimable_deliveries!(), " AND strpos($3, ',' || d.app_id || ',') > 0
        ORDER BY d.seq LIMIT $4 FOR UPDATE SKIP LOCKED";
    /// The same of one chat, `$5` of the app `$3`: read through the chat's index, so a node going
    /// on with a chat pays for that chat's rows only, not the whole queue's.
    CHAT_CLAIMABLE_DELIVERIES = "SELECT ", claimable_deliveries!(), " AND d.app_id = $3 AND d.chat_id = $5
        ORDER BY d.seq LIMIT $4 FOR UPDATE SKIP LOCKED";
    /// Chats with a live lease, per app (a claim leases a run of one chat's deliveries, sent one
    /// after another: one request in flight per chat).
    LIVE_LEASES = "SELECT app_id, count(DISTINCT chat_id) FROM deliveries WHERE state = 'in_flight' AND lease_until > $1
        GROUP BY app_id";
    /// The claimable deliveries of one chat after its claimed head `$3`, in commit order.
    CHAT_RUN = "SELECT event_id, app_id, seq, chat_id, type, payload, committed_ms, failed FROM deliveries
        WHERE app_id = $1 AND chat_id = $2 AND seq > $3
        AND ((state = 'pending' AND due_ms <= $4) OR (state = 'in_flight' AND lease_until <= $5))
        ORDER BY seq LIMIT $6 FOR UPDATE";
    UNLEASE_DELIVERY = "UPDATE deliveries SET state = 'pending', lease_owner = NULL, lease_until = NULL
        WHERE event_id = $1 AND lease_owner = $2";
    LEASE_DELIVERY = "UPDATE deliveries SET state = 'in_flight', lease_owner = $2, lease_until = $3 WHERE event_id = $1";
    RETRY_DELIVERY = "UPDATE deliveries SET state = 'pending', failed = $3, due_ms = $4, lease_owner = NULL, lease_until = NULL
        WHERE event_id = $1 AND lease_owner = $2";
    DROP_DELIVERY = "DELETE FROM deliveries WHERE event_id = $1 AND lease_owner = $2";
    RELEASE_LEASES = "UPDATE deliveries SET state = 'pending', lease_owner = NULL, lease_until = NULL
        WHERE lease_owner = $1 AND state = 'in_flight'";
    /// Due now and free to claim. A row in flight loses its lease: the attempt under way may
    /// finish, but it no longer removes the row, which is sent once more.
    REQUEUE_DELIVERY = "UPDATE deliveries SET state = 'pending', due_ms = $2, lease_owner = NULL, lease_until = NULL
        WHERE event_id = $1";
    LATEST_ATTEMPT = "SELECT event_id, app_id, seq, chat_id, type, payload, committed_ms FROM delivery_attempts
        WHERE event_id = $1 ORDER BY id DESC LIMIT 1";
    /// The attempt's id and the bytes of every attempt ever recorded, this one included (its row
    /// lock serialises attempts until commit, so ids follow commit order).
    BUMP_ATTEMPT_TOTALS = "INSERT INTO delivery_attempt_totals (id, attempts, bytes) VALUES (1, 1, $1)
        ON CONFLICT (id) DO UPDATE SET attempts = delivery_attempt_totals.attempts + 1,
        bytes = delivery_attempt_totals.bytes + excluded.bytes RETURNING attempts, bytes";
    INSERT_ATTEMPT = "INSERT INTO delivery_attempts (id, bytes_before, event_id, seq, type, app_id, chat_id, url, attempt, at_ms,
        status, delivered, latency_ms, response, next_retry_ms, payload, committed_ms)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)";
    PRUNE_ATTEMPTS_UPTO_ID = "DELETE FROM delivery_attempts WHERE id <= $1";
    /// Attempts whose earlier ones weigh less than `$1` (the total beyond the bound): what remains,
    /// from the oldest kept to the newest, fits the bound.
    PRUNE_ATTEMPTS_BEFORE_BYTES = "DELETE FROM delivery_attempts WHERE bytes_before < $1";
    DELIVERY_ATTEMPTS = "SELECT event_id, seq, type, app_id, chat_id, url, attempt, at_ms, status, delivered, latency_ms,
        response, next_retry_ms, payload, committed_ms FROM delivery_attempts
        WHERE (CAST($1 AS TEXT) IS NULL OR app_id = $1) AND (CAST($2 AS TEXT) IS NULL OR event_id = $2)
        AND (CAST($3 AS TEXT) IS NULL OR type = $3) AND (CAST($4 AS TEXT) IS NULL OR chat_id = $4)
        ORDER BY id DESC LIMIT $5";
}

/// Every table of the state but the credentials (`CREDENTIAL_TABLES`, which `clear` keeps),
/// children first. The delivery tables go with the outbox they were fanned out from (run-time
/// event settings stay). In the order delivery transactions lock them (an attempt: totals,
/// attempts, deliveries; a fan-out: cursor, deliveries), so PostgreSQL's TRUNCATE, which locks
/// in list order, does not deadlock with them.
pub const STATE_TABLES: &[&str] = &[
    "card_tokens",
    "delivery_attempt_totals",
    "delivery_attempts",
    "delivery_cursor",
    "deliveries",
    "blobs", "events", "message_reads", "reactions", "custom_bots", "task_chats", "message_dedup", "thread_messages", "messages", "p2p_chats",
    "chat_dedup", "chat_bots", "chats",
];

/// What SDK clients hold on to (tokens, app tickets): kept by `clear`, replaced by an import.
pub const CREDENTIAL_TABLES: &[&str] = &["tokens", "app_tickets"];

/// A value bound to a placeholder.
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    Int(i64),
    OptInt(Option<i64>),
    Text(&'a str),
    OptText(Option<&'a str>),
    Bool(bool),
    Blob(&'a [u8]),
    OptBlob(Option<&'a [u8]>),
}

use Param::{Blob, Bool, Int, OptBlob, OptInt, OptText, Text};

/// One row as read: column `i`, counted from 0.
pub trait Cols {
    fn int(&self, i: usize) -> Result<i64, StoreError>;
    fn str(&self, i: usize) -> Result<&str, StoreError>;
    fn blob(&self, i: usize) -> Result<&[u8], StoreError>;
    /// A blob column that may be `NULL`.
    fn opt_blob(&self, i: usize) -> Result<Option<&[u8]>, StoreError>;
    fn flag(&self, i: usize) -> Result<bool, StoreError>;
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError>;

    fn string(&self, i: usize) -> Result<String, StoreError> {
        Ok(self.str(i)?.to_owned())
    }
}

/// What `Tx::each` hands each row to.
pub type EachRow<'r> = dyn FnMut(&dyn Cols) -> Result<(), StoreError> + Send + 'r;

/// A connection or transaction of one backend. Futures of the SQLite one are always ready.
#[allow(async_fn_in_trait)]
pub trait Tx {
    /// Runs `sql`; the number of rows it changed.
    async fn execute(&mut self, sql: &Sql, params: &[Param<'_>]) -> Result<u64, StoreError>;

    /// Runs `sql`, handing each row to `row` as it is read.
    async fn each(&mut self, sql: &Sql, params: &[Param<'_>], row: &mut EachRow<'_>) -> Result<(), StoreError>;

    /// Stores a chat with its bots index and appends `events` to the outbox; its `seq`.
    async fn insert_chat(&mut self, chat: &Chat, events: &[DomainEvent]) -> Result<(), StoreError>;

    /// Indexes a stored chat's bots (on top of what is indexed).
    async fn index_bots(&mut self, seq: i64, bots: &[AppId]) -> Result<(), StoreError>;

    /// Appends events to the outbox, numbered on from the last one.
    async fn insert_events(&mut self, events: &[DomainEvent]) -> Result<(), StoreError>;

    /// Stores new deliveries due at `due_ms` (one that exists already stays as it is). Row by row
    /// here; PostgreSQL sends a batch as one statement.
    async fn insert_deliveries(&mut self, rows: &[NewDelivery], due_ms: i64) -> Result<(), StoreError> {
        for r in rows {
            let params = [
                Text(&r.event_id),
                Text(&r.app_id.0),
                Int(r.seq),
                Text(&r.chat_id),
                Text(&r.event_type),
                Text(&r.payload),
                Int(r.payload.len() as i64),
                Int(r.committed_ms),
                Int(due_ms),
            ];
            self.execute(&INSERT_DELIVERY, &params).await?;
        }
        Ok(())
    }

    /// Serialises transactions that take the same `(scope, key)` until they end (a no-op where
    /// one writer runs everything).
    async fn lock(&mut self, scope: &str, key: &str) -> Result<(), StoreError>;

    /// Empties `STATE_TABLES` (and `CREDENTIAL_TABLES` with `tokens`); event seqs start over at 1.
    async fn clear(&mut self, tokens: bool) -> Result<(), StoreError>;

    /// After events were stored with their seqs (an import): the next one follows the last.
    async fn events_restored(&mut self) -> Result<(), StoreError>;

    /// The next batch of an import (`None`: the sender gave up), waited for as the backend waits.
    async fn next_batch(&mut self, batches: &mut tokio::sync::mpsc::Receiver<ImportBatch>) -> Option<ImportBatch>;

    /// Runs `sql`, turning each row into a `T` with `row`.
    async fn query<T: Send>(
        &mut self,
        sql: &Sql,
        params: &[Param<'_>],
        mut row: impl FnMut(&dyn Cols) -> Result<T, StoreError> + Send,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        self.each(sql, params, &mut |r| {
            out.push(row(r)?);
            Ok(())
        })
        .await?;
        Ok(out)
    }

    async fn query_opt<T: Send>(
        &mut self,
        sql: &Sql,
        params: &[Param<'_>],
        row: impl FnMut(&dyn Cols) -> Result<T, StoreError> + Send,
    ) -> Result<Option<T>, StoreError> {
        Ok(self.query(sql, params, row).await?.pop())
    }
}

pub fn chat_from_row(r: &dyn Cols) -> Result<(i64, Chat), StoreError> {
    let row = ChatRow {
        chat_id: r.string(1)?,
        tenant_key: r.string(2)?,
        creator_app: r.string(3)?,
        owner: r.string(4)?,
        external: r.flag(5)?,
        status: codec::status_from(r.str(6)?),
        created_at: r.int(7)?,
        settings: r.string(8)?,
        users: r.blob(9)?.to_vec(),
        bots: r.string(10)?,
        user_managers: r.blob(11)?.to_vec(),
        bot_managers: r.string(12)?,
        last_active_at: r.int(13)?,
        user_joined: r.blob(14)?.to_vec(),
    };
    Ok((r.int(0)?, row.decode()?))
}

pub fn token_from_row(r: &dyn Cols) -> Result<TokenRecord, StoreError> {
    token_record((r.string(0)?, r.string(1)?, r.string(2)?, r.string(3)?, r.int(4)?, r.int(5)?))
}

fn app_ticket_from_row(r: &dyn Cols) -> Result<AppTicketRecord, StoreError> {
    Ok(AppTicketRecord { app_id: AppId(r.string(0)?), ticket: r.string(1)?, issued_at_ms: r.int(2)?, expires_at_ms: r.int(3)? })
}

fn event_from_row(r: &dyn Cols) -> Result<StoredEvent, StoreError> {
    let event = codec::decode_event(r.str(1)?, r.str(2)?, r.int(3)?, r.opt_blob(4)?, r.str(5)?)?;
    Ok(StoredEvent { seq: r.int(0)?, event })
}

/// An event row's seq, where it ends in the outbox's bytes, and its size (`codec::event_bytes`).
fn event_extent(r: &dyn Cols) -> Result<EventExtent, StoreError> {
    let bytes = codec::event_bytes(r.str(1)?, r.str(2)?, r.opt_blob(4)?, r.str(5)?);
    Ok(EventExtent { seq: r.int(0)?, end: r.int(6)?, bytes })
}

struct EventExtent {
    seq: i64,
    end: i64,
    bytes: i64,
}

impl EventExtent {
    fn start(&self) -> i64 {
        self.end - self.bytes
    }
}

fn task_link_from_row(r: &dyn Cols) -> Result<TaskChatRecord, StoreError> {
    Ok(TaskChatRecord {
        task_id: r.string(0)?,
        link: LinkedChat {
            chat_id: ChatId(r.string(1)?),
            app_id: AppId(r.string(2)?),
            started_here: r.flag(3)?,
            linked_at_ms: r.int(4)?,
        },
    })
}

fn blob_meta_from_row(r: &dyn Cols) -> Result<BlobMeta, StoreError> {
    let kind = r.str(3)?;
    Ok(BlobMeta {
        key: r.string(0)?,
        app_id: AppId(r.string(1)?),
        tenant_key: TenantKey(r.string(2)?),
        kind: BlobKind::parse(kind).ok_or_else(|| StoreError::Corrupt(format!("blobs.kind {kind:?}")))?,
        purpose: r.string(4)?,
        content_type: r.string(5)?,
        file_name: r.string(6)?,
        size: r.int(7)?,
        created_at_ms: r.int(8)?,
    })
}

fn custom_bot_from_row(r: &dyn Cols) -> Result<CustomBot, StoreError> {
    from_json("custom_bots.body", r.str(0)?)
}

fn message_from_row(r: &dyn Cols) -> Result<Message, StoreError> {
    from_json("messages.body", r.str(0)?)
}

fn reaction_from_row(r: &dyn Cols) -> Result<Reaction, StoreError> {
    from_json("reactions.body", r.str(0)?)
}

/// `(seq, receipt)` of a `message_reads` row read as `seq, message_id, uid, read_at`.
fn read_from_row(r: &dyn Cols) -> Result<(i64, ReadRecord), StoreError> {
    Ok((r.int(0)?, ReadRecord { message_id: MessageId(r.string(1)?), uid: Uid(r.string(2)?), read_at_ms: r.int(3)? }))
}

/// The `operator` column: who reacted, as one comparable string.
fn operator_key(operator: &Sender) -> String {
    match operator {
        Sender::App(a) | Sender::CustomBot(a) => format!("app:{}", a.0),
        Sender::User(u) => format!("user:{}", u.0),
    }
}

/// How an exported row of one table becomes a record.
pub type RecordFromRow = fn(&dyn Cols) -> Result<StateRecord, StoreError>;

/// Every table's export query, in export order (see `StateRecord`), with how a row becomes a record.
pub fn export_queries() -> [(&'static Sql, RecordFromRow); 12] {
    [
        (&EXPORT_CHATS, |r| Ok(StateRecord::Chat(chat_from_row(r)?.1))),
        (&EXPORT_CHAT_DEDUP, |r| {
            Ok(StateRecord::ChatDedup(DedupRecord {
                key: DedupKey {
                    tenant_key: TenantKey(r.string(0)?),
                    app_id: AppId(r.string(1)?),
                    uuid: r.string(2)?,
                    owner: r.string(3)?,
                },
                chat_id: ChatId(r.string(4)?),
                created_at_ms: r.int(5)?,
            }))
        }),
        (&EXPORT_P2P, |r| {
            Ok(StateRecord::P2pChat(P2pRecord { app_id: AppId(r.string(0)?), uid: Uid(r.string(1)?), chat_id: ChatId(r.string(2)?) }))
        }),
        (&EXPORT_MESSAGES, |r| Ok(StateRecord::Message(message_from_row(r)?))),
        (&EXPORT_MESSAGE_DEDUP, |r| {
            Ok(StateRecord::MessageDedup(MessageDedupRecord {
                app_id: AppId(r.string(0)?),
                uuid: r.string(1)?,
                message_id: MessageId(r.string(2)?),
                created_at_ms: r.int(3)?,
            }))
        }),
        (&TASK_LINKS, |r| Ok(StateRecord::TaskChat(task_link_from_row(r)?))),
        (&EXPORT_REACTIONS, |r| Ok(StateRecord::Reaction(reaction_from_row(r)?))),
        (&EXPORT_READS, |r| Ok(StateRecord::MessageRead(read_from_row(r)?.1))),
        (&EXPORT_CUSTOM_BOTS, |r| Ok(StateRecord::CustomBot(custom_bot_from_row(r)?))),
        (&EXPORT_TOKENS, |r| Ok(StateRecord::Token(token_from_row(r)?))),
        (&EXPORT_APP_TICKETS, |r| Ok(StateRecord::AppTicket(app_ticket_from_row(r)?))),
        (&EXPORT_EVENTS, |r| Ok(StateRecord::Event(event_from_row(r)?))),
    ]
}

// ---- reads ----

pub async fn load_chat(tx: &mut impl Tx, chat_id: &str) -> Result<Option<Chat>, StoreError> {
    Ok(tx.query_opt(&CHAT_BY_ID, &[Text(chat_id)], chat_from_row).await?.map(|(_, c)| c))
}

/// The chat a live dedup key points at.
pub async fn find_dedup(tx: &mut impl Tx, key: &DedupKey, window_start_ms: i64) -> Result<Option<Chat>, StoreError> {
    let params = [Text(&key.tenant_key.0), Text(&key.app_id.0), Text(&key.uuid), Text(&key.owner), Int(window_start_ms)];
    match tx.query_opt(&LIVE_DEDUP_CHAT_ID, &params, |r| r.string(0)).await? {
        Some(id) => load_chat(tx, &id).await,
        None => Ok(None),
    }
}

pub async fn chats_of_bot(tx: &mut impl Tx, q: &BotChatsQuery) -> Result<Vec<(Cursor, Chat)>, StoreError> {
    let (app, tenant, limit) = (Text(&q.app.0), Text(&q.tenant.0), Int(q.limit as i64));
    let rows = match (q.order, q.after) {
        (ChatOrder::CreatedAsc, None) => tx.query(&BOT_CHATS_CREATED, &[app, tenant, limit], chat_from_row).await?,
        (ChatOrder::CreatedAsc, Some(c)) => {
            tx.query(&BOT_CHATS_CREATED_AFTER, &[app, tenant, limit, Int(c.seq)], chat_from_row).await?
        }
        (ChatOrder::ActiveDesc, None) => tx.query(&BOT_CHATS_ACTIVE, &[app, tenant, limit], chat_from_row).await?,
        (ChatOrder::ActiveDesc, Some(c)) => {
            tx.query(&BOT_CHATS_ACTIVE_AFTER, &[app, tenant, limit, Int(c.key), Int(c.seq)], chat_from_row).await?
        }
    };
    Ok(rows.into_iter().map(|(seq, chat)| (q.order.cursor(seq, &chat), chat)).collect())
}

pub async fn search_chats(tx: &mut impl Tx, q: &ChatSearchQuery) -> Result<Vec<(i64, Chat)>, StoreError> {
    let needle = fold_case(&q.text);
    let params = [Text(&q.app.0), Text(&q.tenant.0), Text(&needle), Int(q.after_seq), Int(q.limit as i64)];
    tx.query(&SEARCH_CHATS, &params, chat_from_row).await
}

pub async fn public_name_taken(tx: &mut impl Tx, tenant: &TenantKey, name: &str, except: &ChatId) -> Result<bool, StoreError> {
    let params = [Text(&tenant.0), Text(name), Text(&except.0)];
    Ok(tx.query_opt(&PUBLIC_NAME_TAKEN, &params, |_| Ok(())).await?.is_some())
}

pub async fn all_chats(tx: &mut impl Tx, after_seq: i64, limit: usize) -> Result<Vec<(i64, Chat)>, StoreError> {
    tx.query(&ALL_CHATS, &[Int(after_seq), Int(limit as i64)], chat_from_row).await
}

pub async fn count_chats(tx: &mut impl Tx) -> Result<u64, StoreError> {
    Ok(tx.query_opt(&COUNT_CHATS, &[], |r| r.int(0)).await?.unwrap_or(0) as u64)
}

pub async fn ping(tx: &mut impl Tx) -> Result<(), StoreError> {
    tx.query(&PING, &[], |_| Ok(())).await?;
    Ok(())
}

pub async fn list_messages(tx: &mut impl Tx, q: &MessageQuery) -> Result<Vec<(Cursor, Message)>, StoreError> {
    let (sql, container) = match (&q.container, q.order) {
        (MessageContainer::Chat(chat), MessageOrder::Asc) => (&MESSAGES_ASC, &chat.0),
        (MessageContainer::Chat(chat), MessageOrder::Desc) => (&MESSAGES_DESC, &chat.0),
        (MessageContainer::Thread(thread), MessageOrder::Asc) => (&THREAD_MESSAGES_ASC, thread),
        (MessageContainer::Thread(thread), MessageOrder::Desc) => (&THREAD_MESSAGES_DESC, thread),
    };
    let params = [
        Text(container),
        Int(q.start_ms.unwrap_or(i64::MIN)),
        Int(q.end_ms.unwrap_or(i64::MAX)),
        OptInt(q.after.map(|c| c.key)),
        Int(q.after.map(|c| c.seq).unwrap_or(0)),
        Int(q.limit as i64),
    ];
    tx.query(sql, &params, |r| Ok((Cursor { key: r.int(0)?, seq: r.int(1)? }, from_json("messages.body", r.str(2)?)?)))
        .await
}

pub async fn load_message(tx: &mut impl Tx, id: &str) -> Result<Option<Message>, StoreError> {
    tx.query_opt(&MESSAGE_BODY, &[Text(id)], message_from_row).await
}

pub async fn blob_meta(tx: &mut impl Tx, key: &str) -> Result<Option<BlobMeta>, StoreError> {
    tx.query_opt(&BLOB_META, &[Text(key)], blob_meta_from_row).await
}

pub async fn load_blob(tx: &mut impl Tx, key: &str) -> Result<Option<media::Blob>, StoreError> {
    tx.query_opt(&BLOB_WITH_BYTES, &[Text(key)], |r| Ok(media::Blob { meta: blob_meta_from_row(r)?, bytes: r.blob(9)?.to_vec().into() })).await
}

/// Bytes of a blob per `StateRecord::BlobChunk` of an export: a record, and what the export's
/// channel holds of a blob per record, stays this small whatever the blob's size.
pub const BLOB_CHUNK_BYTES: usize = 256 << 10;

/// Every blob as records: its `StateRecord::Blob`, then its bytes in `BlobChunk`s of at most
/// `BLOB_CHUNK_BYTES`, one blob at a time (so memory holds one blob, plus what `emit` buffers).
/// `emit` answers false when the reader is gone, which ends the export.
pub async fn export_blobs<F: std::future::Future<Output = bool>>(
    tx: &mut impl Tx,
    mut emit: impl FnMut(StateRecord) -> F,
) -> Result<(), StoreError> {
    use base64::Engine as _;
    let keys = tx.query(&EXPORT_BLOB_KEYS, &[], |r| r.string(0)).await?;
    for key in keys {
        let Some(blob) = load_blob(tx, &key).await? else { continue };
        if !emit(StateRecord::Blob(blob.meta)).await {
            return Ok(());
        }
        for chunk in blob.bytes.chunks(BLOB_CHUNK_BYTES) {
            let data = base64::engine::general_purpose::STANDARD.encode(chunk);
            if !emit(StateRecord::BlobChunk(BlobChunkRecord { key: key.clone(), data })).await {
                return Ok(());
            }
        }
    }
    Ok(())
}

pub async fn get_reaction(tx: &mut impl Tx, reaction_id: &str) -> Result<Option<Reaction>, StoreError> {
    tx.query_opt(&REACTION_BY_ID, &[Text(reaction_id)], reaction_from_row).await
}

pub async fn list_reactions(tx: &mut impl Tx, q: &ReactionQuery) -> Result<Vec<(i64, Reaction)>, StoreError> {
    let params = [Text(&q.message_id.0), OptText(q.emoji_type.as_deref()), Int(q.after_seq), Int(q.limit as i64)];
    tx.query(&REACTIONS_PAGE, &params, |r| Ok((r.int(0)?, from_json("reactions.body", r.str(1)?)?))).await
}

pub async fn read_receipts(tx: &mut impl Tx, q: &ReadQuery) -> Result<Vec<(i64, ReadRecord)>, StoreError> {
    tx.query(&READS_PAGE, &[Text(&q.message_id.0), Int(q.after_seq), Int(q.limit as i64)], read_from_row).await
}

pub async fn task_links(tx: &mut impl Tx) -> Result<Vec<TaskChatRecord>, StoreError> {
    tx.query(&TASK_LINKS, &[], task_link_from_row).await
}

pub async fn events(tx: &mut impl Tx, q: &EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
    let params = [Int(q.after), OptText(q.chat_id.as_ref().map(|c| c.0.as_str())), OptText(q.type_name.as_deref()), Int(q.limit as i64)];
    tx.query(&EVENTS, &params, event_from_row).await
}

/// The oldest and newest events kept and the bytes between them (three index lookups).
pub async fn outbox_stats(tx: &mut impl Tx) -> Result<OutboxStats, StoreError> {
    let first = tx.query_opt(&FIRST_EVENT, &[], event_extent).await?;
    let last = tx.query_opt(&LAST_EVENT, &[], event_extent).await?;
    Ok(match (first, last) {
        (Some(first), Some(last)) => OutboxStats { first_seq: first.seq, last_seq: last.seq, bytes: (last.end - first.start()).max(0) as u64 },
        _ => OutboxStats::default(),
    })
}

/// Deletes the oldest events until the rest fit in `max_bytes`, sparing every event after
/// `floor_seq` and the newest one (SQLite numbers the next event after it); how many went.
/// Work: two index lookups, then the rows deleted (plus one) in seq order.
pub async fn prune_events(tx: &mut impl Tx, max_bytes: u64, floor_seq: i64) -> Result<u64, StoreError> {
    let Some(last) = tx.query_opt(&LAST_EVENT, &[], event_extent).await? else { return Ok(0) };
    // Events that end at or before this byte lie wholly outside the newest `max_bytes`.
    let below = last.end.saturating_sub(i64::try_from(max_bytes).unwrap_or(i64::MAX));
    let Some(first_kept) = tx.query_opt(&FIRST_KEPT_EVENT, &[Int(below), Int(floor_seq)], event_extent).await? else {
        return Ok(0);
    };
    // Within the floor, an event that starts before the bound but ends past it goes too.
    let straddles = first_kept.seq <= floor_seq && first_kept.start() < below;
    let cut = if straddles { first_kept.seq + 1 } else { first_kept.seq };
    tx.execute(&PRUNE_EVENTS, &[Int(cut.min(last.seq))]).await
}

/// Rewrites the rows an older larkstack stored (the whole event as JSON in `body`) into
/// `codec::EventRow`'s layout with their `bytes_end`, a page at a time; run by the migration that
/// adds the columns.
pub async fn compact_legacy_events(tx: &mut impl Tx) -> Result<(), StoreError> {
    const PAGE: i64 = 1000;
    let (mut after, mut end) = (0, 0);
    loop {
        let page = tx
            .query(&LEGACY_EVENTS, &[Int(after), Int(PAGE)], |r| {
                Ok((r.int(0)?, from_json::<DomainEvent>("events.body", r.str(1)?)?))
            })
            .await?;
        if page.is_empty() {
            break;
        }
        for (seq, event) in page {
            let row = EventRow::encode(&event);
            end += row.bytes();
            tx.execute(&COMPACT_EVENT, &[Int(seq), OptBlob(row.users.as_deref()), Text(&row.body), Int(end)]).await?;
            after = seq;
        }
    }
    tx.events_restored().await
}

pub async fn custom_bots(tx: &mut impl Tx, chat_id: &ChatId) -> Result<Vec<CustomBot>, StoreError> {
    tx.query(&CUSTOM_BOTS_OF_CHAT, &[Text(&chat_id.0)], custom_bot_from_row).await
}

pub async fn custom_bot(tx: &mut impl Tx, token: &str) -> Result<Option<CustomBot>, StoreError> {
    tx.query_opt(&CUSTOM_BOT_BY_TOKEN, &[Text(token)], custom_bot_from_row).await
}

pub async fn find_token(tx: &mut impl Tx, token: &str) -> Result<Option<TokenRecord>, StoreError> {
    tx.query_opt(&TOKEN, &[Text(token)], token_from_row).await
}

pub async fn app_ticket(tx: &mut impl Tx, app_id: &AppId) -> Result<Option<AppTicketRecord>, StoreError> {
    tx.query_opt(&APP_TICKET, &[Text(&app_id.0)], app_ticket_from_row).await
}

// ---- changes: each runs inside one transaction (or savepoint) the backend commits ----

/// Stores `chat` unless a live dedup key says it was created already.
pub async fn create_chat(
    tx: &mut impl Tx,
    chat: Chat,
    dedup: Option<&DedupKey>,
    window_start_ms: i64,
    events: &[DomainEvent],
) -> Result<Created, StoreError> {
    if let Some(key) = dedup {
        // A concurrent claim of the same key waits here for the other transaction, then sees its row.
        let params = [
            Text(&key.tenant_key.0),
            Text(&key.app_id.0),
            Text(&key.uuid),
            Text(&key.owner),
            Text(&chat.chat_id.0),
            Int(chat.created_at_ms),
            Int(window_start_ms),
        ];
        if tx.execute(&CLAIM_CHAT_DEDUP, &params).await? == 0 {
            let existing = dedup_target(tx, key)
                .await?
                .ok_or_else(|| StoreError::Corrupt(format!("dedup key {key:?} points at a missing chat")))?;
            return Ok(Created::Existing(existing));
        }
    }
    tx.insert_chat(&chat, events).await?;
    Ok(Created::New(chat))
}

async fn dedup_target(tx: &mut impl Tx, key: &DedupKey) -> Result<Option<Chat>, StoreError> {
    let params = [Text(&key.tenant_key.0), Text(&key.app_id.0), Text(&key.uuid), Text(&key.owner)];
    match tx.query_opt(&DEDUP_CHAT_ID, &params, |r| r.string(0)).await? {
        Some(id) => load_chat(tx, &id).await,
        None => Ok(None),
    }
}

/// Applies `change` to the chat's latest state (its row locked until the end of the transaction).
pub async fn modify_chat(
    tx: &mut impl Tx,
    chat_id: &ChatId,
    change: ChatChange,
) -> Result<Option<Result<Chat, FeishuError>>, StoreError> {
    let Some((seq, mut chat)) = tx.query_opt(&CHAT_FOR_UPDATE, &[Text(&chat_id.0)], chat_from_row).await? else {
        return Ok(None);
    };
    let bots_before = chat.bots.clone();
    let events = match change(&mut chat) {
        Ok(events) => events,
        Err(e) => return Ok(Some(Err(e))),
    };
    let row = ChatRow::encode(&chat)?;
    let search_text = chat.settings.search_text();
    let params = [
        Int(seq),
        Text(&row.owner),
        Bool(row.external),
        Text(row.status),
        Text(&row.settings),
        Blob(&row.users),
        Text(&row.bots),
        Blob(&row.user_managers),
        Text(&row.bot_managers),
        Text(&chat.settings.name),
        Text(&chat.settings.chat_type),
        Int(row.last_active_at),
        Blob(&row.user_joined),
        Text(&search_text),
    ];
    tx.execute(&UPDATE_CHAT, &params).await?;
    if chat.bots != bots_before {
        tx.execute(&UNINDEX_BOTS, &[Int(seq)]).await?;
        tx.index_bots(seq, &chat.bots).await?;
    }
    tx.insert_events(&events).await?;
    Ok(Some(Ok(chat)))
}

/// The p2p chat of `app` and `uid`, stored as `new` when there is none. The primary key decides
/// between concurrent first calls; the loser reads the winner's chat.
pub async fn p2p_chat(tx: &mut impl Tx, app: &AppId, uid: &Uid, new: Chat, events: &[DomainEvent]) -> Result<Chat, StoreError> {
    if tx.execute(&CLAIM_P2P, &[Text(&app.0), Text(&uid.0), Text(&new.chat_id.0)]).await? == 0 {
        let id = tx
            .query_opt(&P2P_CHAT_ID, &[Text(&app.0), Text(&uid.0)], |r| r.string(0))
            .await?
            .ok_or_else(|| StoreError::Corrupt("p2p row vanished".into()))?;
        return load_chat(tx, &id).await?.ok_or_else(|| StoreError::Corrupt("p2p chat row missing".into()));
    }
    tx.insert_chat(&new, events).await?;
    Ok(new)
}

pub async fn create_message(
    tx: &mut impl Tx,
    message: Message,
    dedup: Option<&MessageDedupKey>,
    window_start_ms: i64,
    events: &[DomainEvent],
) -> Result<Message, StoreError> {
    if let Some(key) = dedup {
        let params = [
            Text(&key.app_id.0),
            Text(&key.uuid),
            Text(&message.message_id.0),
            Int(message.created_at_ms),
            Int(window_start_ms),
        ];
        if tx.execute(&CLAIM_MESSAGE_DEDUP, &params).await? == 0 {
            let first = tx
                .query_opt(&DEDUP_MESSAGE_ID, &[Text(&key.app_id.0), Text(&key.uuid)], |r| r.string(0))
                .await?
                .ok_or_else(|| StoreError::Corrupt("message dedup row vanished".into()))?;
            return load_message(tx, &first).await?.ok_or_else(|| StoreError::Corrupt("deduped message missing".into()));
        }
    }
    insert_message(tx, &message).await?;
    tx.execute(&MARK_ACTIVE, &[Text(&message.chat_id.0), Int(message.created_at_ms)]).await?;
    tx.insert_events(events).await?;
    Ok(message)
}

async fn insert_message(tx: &mut impl Tx, m: &Message) -> Result<(), StoreError> {
    let body = to_json(m);
    tx.execute(&INSERT_MESSAGE, &[Text(&m.message_id.0), Text(&m.chat_id.0), Int(m.created_at_ms), Text(&body)]).await?;
    index_thread(tx, m).await
}

/// Files a message under its thread (`thread_messages`), when it is in one: a thread reply when
/// written, its root when the first thread reply gives it the thread. Derived from the body, so
/// an import rebuilds it.
async fn index_thread(tx: &mut impl Tx, m: &Message) -> Result<(), StoreError> {
    if let Some(thread) = &m.state.thread_id {
        tx.execute(&INSERT_THREAD_MESSAGE, &[Text(thread), Text(&m.message_id.0)]).await?;
    }
    Ok(())
}

/// Stores `blob` unless its app's blobs would take more than `quota_bytes` with it (`false`:
/// nothing stored). The app's lock makes check and insert one step on every backend.
pub async fn put_blob(tx: &mut impl Tx, blob: &media::Blob, quota_bytes: u64) -> Result<bool, StoreError> {
    let m = &blob.meta;
    tx.lock("blob_quota", &m.app_id.0).await?;
    let used = tx.query_opt(&BLOB_BYTES_OF_APP, &[Text(&m.app_id.0)], |r| r.int(0)).await?.unwrap_or(0);
    if (used.max(0) as u64).saturating_add(blob.bytes.len() as u64) > quota_bytes {
        return Ok(false);
    }
    insert_blob(tx, blob).await?;
    Ok(true)
}

async fn insert_blob(tx: &mut impl Tx, blob: &media::Blob) -> Result<(), StoreError> {
    let m = &blob.meta;
    let params = [
        Text(&m.key),
        Text(&m.app_id.0),
        Text(&m.tenant_key.0),
        Text(m.kind.as_str()),
        Text(&m.purpose),
        Text(&m.content_type),
        Text(&m.file_name),
        Int(blob.bytes.len() as i64),
        Int(m.created_at_ms),
        Blob(&blob.bytes),
    ];
    tx.execute(&INSERT_BLOB, &params).await?;
    Ok(())
}

/// Applies `change` to the message's latest state (its row locked until the end of the
/// transaction), then stores its body and events.
pub async fn update_message(
    tx: &mut impl Tx,
    id: &MessageId,
    change: MessageChange,
) -> Result<Option<Result<Message, FeishuError>>, StoreError> {
    let Some(mut message) = tx.query_opt(&MESSAGE_FOR_UPDATE, &[Text(&id.0)], message_from_row).await? else {
        return Ok(None);
    };
    let events = match change(&mut message) {
        Ok(events) => events,
        Err(e) => return Ok(Some(Err(e))),
    };
    tx.execute(&UPDATE_MESSAGE_BODY, &[Text(&id.0), Text(&to_json(&message))]).await?;
    index_thread(tx, &message).await?;
    tx.insert_events(&events).await?;
    Ok(Some(Ok(message)))
}

/// Stores `reaction` with `events` unless its operator's same emoji is on the message already:
/// then the first one, and no events.
pub async fn add_reaction(tx: &mut impl Tx, reaction: Reaction, events: &[DomainEvent]) -> Result<Reaction, StoreError> {
    let operator = operator_key(&reaction.operator);
    let (message, emoji) = (Text(&reaction.message_id.0), Text(&reaction.emoji_type));
    let params = [Text(&reaction.reaction_id), message, Text(&operator), emoji, Text(&to_json(&reaction))];
    if tx.execute(&INSERT_REACTION, &params).await? == 0 {
        return tx
            .query_opt(&REACTION_BY_OPERATOR, &[message, Text(&operator), emoji], reaction_from_row)
            .await?
            .ok_or_else(|| StoreError::Corrupt("reaction row vanished".into()));
    }
    tx.insert_events(events).await?;
    Ok(reaction)
}

/// Removes the reaction with `events`; `false` (no events) when there was none.
pub async fn delete_reaction(tx: &mut impl Tx, reaction_id: &str, events: &[DomainEvent]) -> Result<bool, StoreError> {
    if tx.execute(&DELETE_REACTION, &[Text(reaction_id)]).await? == 0 {
        return Ok(false);
    }
    tx.insert_events(events).await?;
    Ok(true)
}

/// Receipts for the bots' messages of `mark.chat_id` the user has not read yet (see `ReadMark`),
/// with the events `mark.events` makes of them; the messages newly read, newest first.
pub async fn mark_read(tx: &mut impl Tx, mark: ReadMark) -> Result<Vec<Message>, StoreError> {
    let params =
        [Text(&mark.chat_id.0), Int(mark.since_ms), Int(mark.at_ms), OptInt(None), Int(0), Int(mark.limit as i64)];
    let recent = tx.query(&MESSAGES_DESC, &params, |r| from_json::<Message>("messages.body", r.str(2)?)).await?;
    let mut newly = Vec::new();
    for m in recent {
        if !matches!(m.sender, Sender::App(_)) || m.is_recalled() {
            continue;
        }
        if tx.execute(&INSERT_READ, &[Text(&m.message_id.0), Text(&mark.uid.0), Int(mark.at_ms)]).await? == 1 {
            newly.push(m);
        }
    }
    let events = (mark.events)(&newly);
    tx.insert_events(&events).await?;
    Ok(newly)
}

/// The chat `link.app_id` started from the task unless it is dissolved; otherwise stores `new`.
pub async fn task_chat(tx: &mut impl Tx, link: &TaskLink, new: Chat, events: &[DomainEvent]) -> Result<Created, StoreError> {
    tx.lock("task", &format!("{}|{}", link.task_id, link.app_id)).await?;
    let started = tx.query_opt(&STARTED_TASK_CHAT, &[Text(&link.task_id), Text(&link.app_id.0)], |r| r.string(0)).await?;
    if let Some(id) = started {
        if let Some(chat) = load_chat(tx, &id).await? {
            if !chat.is_dissolved() {
                return Ok(Created::Existing(chat));
            }
        }
    }
    tx.insert_chat(&new, events).await?;
    insert_task_link(tx, link, &new.chat_id, true).await?;
    Ok(Created::New(new))
}

/// Links a chat to a task; a repeat link changes nothing.
pub async fn insert_task_link(tx: &mut impl Tx, link: &TaskLink, chat_id: &ChatId, started_here: bool) -> Result<(), StoreError> {
    let params = [Text(&link.task_id), Text(&link.app_id.0), Text(&chat_id.0), Bool(started_here), Int(link.at_ms)];
    tx.execute(&INSERT_TASK_LINK, &params).await?;
    Ok(())
}

/// The latest token of `fresh`'s kind, app and tenant if it expires after `reuse_after_ms`;
/// otherwise stores `fresh`.
pub async fn rotate_token(tx: &mut impl Tx, fresh: TokenRecord, reuse_after_ms: i64) -> Result<TokenRecord, StoreError> {
    tx.lock("token", &format!("{}|{}|{}", fresh.app_id, fresh.tenant_key, fresh.kind.as_str())).await?;
    let params = [Text(&fresh.app_id.0), Text(&fresh.tenant_key.0), Text(fresh.kind.as_str())];
    if let Some(t) = tx.query_opt(&LATEST_TOKEN, &params, token_from_row).await? {
        if t.expires_at_ms > reuse_after_ms {
            return Ok(t);
        }
    }
    insert_token(tx, &fresh).await?;
    Ok(fresh)
}

async fn insert_token(tx: &mut impl Tx, t: &TokenRecord) -> Result<(), StoreError> {
    let params = [
        Text(&t.token),
        Text(t.kind.as_str()),
        Text(&t.app_id.0),
        Text(&t.tenant_key.0),
        Int(t.issued_at_ms),
        Int(t.expires_at_ms),
    ];
    tx.execute(&INSERT_TOKEN, &params).await?;
    Ok(())
}

/// Stores `bot` unless its chat has `max_per_chat` custom bots already (`Ok(false)`). The chat's
/// lock makes the count and the insert one step for concurrent adds.
pub async fn add_custom_bot(tx: &mut impl Tx, bot: &CustomBot, max_per_chat: usize) -> Result<bool, StoreError> {
    tx.lock("custom_bots", &bot.chat_id.0).await?;
    let count = tx.query_opt(&COUNT_CUSTOM_BOTS, &[Text(&bot.chat_id.0)], |r| r.int(0)).await?.unwrap_or(0);
    if usize::try_from(count).unwrap_or(usize::MAX) >= max_per_chat {
        return Ok(false);
    }
    insert_custom_bot(tx, bot).await?;
    Ok(true)
}

async fn insert_custom_bot(tx: &mut impl Tx, bot: &CustomBot) -> Result<(), StoreError> {
    let body = to_json(bot);
    let params = [Text(&bot.token), Text(&bot.bot_id.0), Text(&bot.chat_id.0), Int(bot.created_at_ms), Text(&body)];
    tx.execute(&INSERT_CUSTOM_BOT, &params).await?;
    Ok(())
}

/// Removes the chat's custom bot `bot_id`; whether there was one.
pub async fn remove_custom_bot(tx: &mut impl Tx, chat_id: &ChatId, bot_id: &AppId) -> Result<bool, StoreError> {
    Ok(tx.execute(&DELETE_CUSTOM_BOT, &[Text(&chat_id.0), Text(&bot_id.0)]).await? > 0)
}

/// Stores `fresh` as its app's ticket unless the current one was issued at or after
/// `replace_issued_before_ms`; the row's conditional upsert decides between concurrent issuers.
pub async fn issue_app_ticket(
    tx: &mut impl Tx,
    fresh: AppTicketRecord,
    replace_issued_before_ms: i64,
) -> Result<Option<AppTicketRecord>, StoreError> {
    let t = &fresh;
    let params = [Text(&t.app_id.0), Text(&t.ticket), Int(t.issued_at_ms), Int(t.expires_at_ms), Int(replace_issued_before_ms)];
    Ok((tx.execute(&ISSUE_APP_TICKET, &params).await? > 0).then_some(fresh))
}

/// Stores a fresh card token; expired ones go first, and the oldest when `max_live` are kept.
pub async fn issue_card_token(tx: &mut impl Tx, t: &CardToken, max_live: i64) -> Result<(), StoreError> {
    tx.execute(&PRUNE_EXPIRED_CARD_TOKENS, &[Int(t.issued_at_ms)]).await?;
    let live = tx.query_opt(&COUNT_CARD_TOKENS, &[], |r| r.int(0)).await?.unwrap_or(0);
    for _ in max_live.saturating_sub(1)..live {
        tx.execute(&DROP_OLDEST_CARD_TOKEN, &[]).await?;
    }
    let params =
        [Text(&t.token), Text(&t.app_id.0), Text(&t.tenant_key.0), Text(&t.message_id.0), Int(t.issued_at_ms), Int(t.expires_at_ms)];
    tx.execute(&INSERT_CARD_TOKEN, &params).await?;
    Ok(())
}

/// Spends one use of `token` (its row locked) on `change` to its card, for `app_id` in
/// `tenant_key` at `now_ms`: the use counts only when the change is stored.
pub async fn update_card_by_token(
    tx: &mut impl Tx,
    token: &str,
    app_id: &AppId,
    tenant_key: &TenantKey,
    now_ms: i64,
    max_uses: i64,
    change: MessageChange,
) -> Result<CardTokenUse, StoreError> {
    let row = tx
        .query_opt(&CARD_TOKEN_FOR_UPDATE, &[Text(token)], |r| Ok((r.string(0)?, r.string(1)?, r.string(2)?, r.int(3)?, r.int(4)?)))
        .await?;
    let Some((owner, tenant, message_id, expires_at_ms, uses)) = row else {
        return Ok(CardTokenUse::Unknown);
    };
    if owner != app_id.0 || tenant != tenant_key.0 {
        return Ok(CardTokenUse::Unknown);
    }
    if expires_at_ms <= now_ms {
        return Ok(CardTokenUse::Expired);
    }
    if uses >= max_uses {
        return Ok(CardTokenUse::UsedUp);
    }
    let updated = update_message(tx, &MessageId(message_id), change).await?;
    if let Some(Ok(_)) = &updated {
        tx.execute(&USE_CARD_TOKEN, &[Text(token)]).await?;
    }
    Ok(CardTokenUse::Applied(updated))
}

// ---- event delivery (src/delivery): every node on the store shares the queue ----

pub async fn event_settings(tx: &mut impl Tx) -> Result<Vec<(AppId, EventSettings)>, StoreError> {
    tx.query(&EVENT_SETTINGS, &[], |r| Ok((AppId(r.string(0)?), from_json("event_settings.settings", r.str(1)?)?))).await
}

pub async fn set_event_settings(tx: &mut impl Tx, app_id: &AppId, settings: &EventSettings) -> Result<(), StoreError> {
    tx.execute(&PUT_EVENT_SETTINGS, &[Text(&app_id.0), Text(&to_json(settings))]).await?;
    Ok(())
}

pub async fn clear_event_settings(tx: &mut impl Tx) -> Result<(), StoreError> {
    tx.execute(&CLEAR_EVENT_SETTINGS, &[]).await?;
    Ok(())
}

/// Stores the deliveries of the outbox range (`after`, `upto`] unless another node did: the
/// cursor is read under a lock every fan-out takes, and moved in the same transaction. With a
/// `claim`, the same transaction then claims what is due (the new rows first among them), so
/// the node can send them without another commit.
pub async fn fan_out(
    tx: &mut impl Tx,
    after: i64,
    upto: i64,
    rows: &[NewDelivery],
    claim: Option<&DeliveryClaim>,
) -> Result<(FanOut, Vec<Delivery>), StoreError> {
    tx.lock("deliveries", "fan-out").await?;
    let cursor = tx.query_opt(&DELIVERY_CURSOR_FOR_UPDATE, &[], |r| r.int(0)).await?.unwrap_or(0);
    if cursor != after {
        return Ok((FanOut::Moved(cursor), Vec::new()));
    }
    // Due at once: `i64::MIN` is before any time the clock can be set to.
    tx.insert_deliveries(rows, i64::MIN).await?;
    tx.execute(&SET_DELIVERY_CURSOR, &[Int(upto)]).await?;
    let claimed = match claim {
        Some(claim) if !rows.is_empty() => claim_deliveries(tx, claim).await?,
        _ => Vec::new(),
    };
    Ok((FanOut::Done, claimed))
}

pub async fn delivery_queue(tx: &mut impl Tx) -> Result<DeliveryQueue, StoreError> {
    let q = tx.query_opt(&DELIVERY_QUEUE, &[], |r| Ok(DeliveryQueue { rows: r.int(0)?, bytes: r.int(1)?, cursor: r.int(2)? })).await?;
    Ok(q.unwrap_or_default())
}

pub async fn deliveries_due(tx: &mut impl Tx, now_ms: i64, wall_ms: i64) -> Result<bool, StoreError> {
    Ok(tx.query_opt(&DUE_DELIVERY, &[Int(now_ms), Int(wall_ms)], |_| Ok(())).await?.is_some())
}

fn new_delivery_from_row(r: &dyn Cols) -> Result<NewDelivery, StoreError> {
    Ok(NewDelivery {
        event_id: r.string(0)?,
        app_id: AppId(r.string(1)?),
        seq: r.int(2)?,
        chat_id: r.string(3)?,
        event_type: r.string(4)?,
        payload: r.string(5)?,
        committed_ms: r.int(6)?,
    })
}

/// Leases what `CLAIMABLE_DELIVERIES` finds, keeping each app under `claim.per_app` live leases.
pub async fn claim_deliveries(tx: &mut impl Tx, claim: &DeliveryClaim) -> Result<Vec<Delivery>, StoreError> {
    if claim.apps.is_empty() {
        return Ok(Vec::new());
    }
    let apps = format!(",{},", claim.apps.iter().map(|a| a.0.as_str()).collect::<Vec<_>>().join(","));
    // A claim of one chat hands the chat's slot from its finished run to its next one within one
    // transaction: the app's count of leased chats stays what it was, so it is not counted (a
    // scan of every live lease, which was most of the writer's time under load).
    let mut live: std::collections::HashMap<String, usize> = match claim.chat_id {
        Some(_) => Default::default(),
        None => tx.query(&LIVE_LEASES, &[Int(claim.wall_ms)], |r| Ok((r.string(0)?, r.int(1)? as usize))).await?.into_iter().collect(),
    };
    let delivery = |r: &dyn Cols| Ok(Delivery { new: new_delivery_from_row(r)?, failed: r.int(7)? as u32 });
    let candidates = match &claim.chat_id {
        Some(chat) => {
            let params = [Int(claim.now_ms), Int(claim.wall_ms), Text(&claim.apps[0].0), Int(claim.limit as i64), Text(chat)];
            tx.query(&CHAT_CLAIMABLE_DELIVERIES, &params, delivery).await?
        }
        None => {
            let params = [Int(claim.now_ms), Int(claim.wall_ms), Text(&apps), Int(claim.limit as i64)];
            tx.query(&CLAIMABLE_DELIVERIES, &params, delivery).await?
        }
    };
    let mut claimed = Vec::new();
    for head in candidates {
        let leased = live.entry(head.new.app_id.0.clone()).or_default();
        if *leased >= claim.per_app {
            continue;
        }
        *leased += 1;
        // The head and the chat's claimable deliveries after it: a run sent in commit order.
        let params = [
            Text(&head.new.app_id.0),
            Text(&head.new.chat_id),
            Int(head.new.seq),
            Int(claim.now_ms),
            Int(claim.wall_ms),
            Int(claim.run.saturating_sub(1) as i64),
        ];
        let followers = tx.query(&CHAT_RUN, &params, delivery).await?;
        for d in std::iter::once(head).chain(followers) {
            tx.execute(&LEASE_DELIVERY, &[Text(&d.new.event_id), Text(&claim.owner), Int(claim.lease_until_ms)]).await?;
            claimed.push(d);
        }
    }
    Ok(claimed)
}

/// Gives back leased deliveries not attempted (due again at once).
pub async fn release_deliveries(tx: &mut impl Tx, owner: &str, event_ids: &[String]) -> Result<(), StoreError> {
    for id in event_ids {
        tx.execute(&UNLEASE_DELIVERY, &[Text(id), Text(owner)]).await?;
    }
    Ok(())
}

/// Records the attempt, prunes the oldest beyond the bounds, then moves the delivery on (only
/// while `owner` holds its lease: a node whose lease ran out leaves the row to its new owner);
/// then, with a `claim`, claims (the row just finished no longer holds its chat back).
pub async fn finish_delivery(tx: &mut impl Tx, f: &FinishedAttempt, claim: Option<&DeliveryClaim>) -> Result<Vec<Delivery>, StoreError> {
    let a = &f.attempt;
    let payload = &a.payload;
    let weight = a.weight(payload.len());
    let (id, total_bytes) = tx
        .query_opt(&BUMP_ATTEMPT_TOTALS, &[Int(weight)], |r| Ok((r.int(0)?, r.int(1)?)))
        .await?
        .ok_or_else(|| StoreError::Corrupt("delivery_attempt_totals returned no row".into()))?;
    let params = [
        Int(id),
        Int(total_bytes - weight),
        Text(&a.event_id),
        Int(a.seq),
        Text(&a.event_type),
        Text(&a.app_id.0),
        Text(&a.chat_id),
        Text(&a.url),
        Int(a.attempt as i64),
        Int(a.at_ms),
        OptInt(a.status.map(i64::from)),
        Bool(a.delivered),
        Int(a.latency_ms as i64),
        Text(&a.response),
        OptInt(a.next_retry_ms),
        Text(&payload),
        Int(a.committed_ms),
    ];
    tx.execute(&INSERT_ATTEMPT, &params).await?;
    tx.execute(&PRUNE_ATTEMPTS_UPTO_ID, &[Int(id - f.keep.entries)]).await?;
    tx.execute(&PRUNE_ATTEMPTS_BEFORE_BYTES, &[Int(total_bytes - f.keep.bytes)]).await?;
    match f.next {
        DeliveryNext::Done => tx.execute(&DROP_DELIVERY, &[Text(&a.event_id), Text(&f.owner)]).await?,
        DeliveryNext::Retry { failed, due_ms } => {
            let params = [Text(&a.event_id), Text(&f.owner), Int(failed as i64), Int(due_ms)];
            tx.execute(&RETRY_DELIVERY, &params).await?
        }
    };
    match claim {
        Some(claim) => claim_deliveries(tx, claim).await,
        None => Ok(Vec::new()),
    }
}

pub async fn release_leases(tx: &mut impl Tx, owner: &str) -> Result<u64, StoreError> {
    tx.execute(&RELEASE_LEASES, &[Text(owner)]).await
}

/// Due now again: the queued row, or a new row from the latest attempt's copy of the delivery.
/// (Requeue first: a row deleted by an attempt finishing concurrently shows as no row updated,
/// and the attempt it recorded is then there to requeue from.)
pub async fn redeliver(tx: &mut impl Tx, event_id: &str, now_ms: i64) -> Result<bool, StoreError> {
    if tx.execute(&REQUEUE_DELIVERY, &[Text(event_id), Int(now_ms)]).await? > 0 {
        return Ok(true);
    }
    let Some(row) = tx.query_opt(&LATEST_ATTEMPT, &[Text(event_id)], new_delivery_from_row).await? else {
        return Ok(false);
    };
    tx.insert_deliveries(&[row], now_ms).await?;
    Ok(true)
}

pub async fn delivery_attempts(tx: &mut impl Tx, f: &AttemptFilter) -> Result<Vec<AttemptRecord>, StoreError> {
    let params = [
        OptText(f.app_id.as_deref()),
        OptText(f.event_id.as_deref()),
        OptText(f.type_name.as_deref()),
        OptText(f.chat_id.as_deref()),
        Int(f.limit as i64),
    ];
    let mut newest_first = tx
        .query(&DELIVERY_ATTEMPTS, &params, |r| {
            Ok(AttemptRecord {
                event_id: r.string(0)?,
                seq: r.int(1)?,
                event_type: r.string(2)?,
                app_id: AppId(r.string(3)?),
                chat_id: r.string(4)?,
                url: r.string(5)?,
                attempt: r.int(6)? as u32,
                at_ms: r.int(7)?,
                status: r.opt_int(8)?.map(|s| s as u16),
                delivered: r.flag(9)?,
                latency_ms: r.int(10)? as u64,
                response: r.string(11)?,
                next_retry_ms: r.opt_int(12)?,
                payload: r.string(13)?,
                committed_ms: r.int(14)?,
            })
        })
        .await?;
    newest_first.reverse();
    Ok(newest_first)
}

/// Replaces everything with the records received; how many it stored. Nothing is committed
/// unless it returns `Ok` (the backend's transaction or savepoint makes it all or nothing).
pub async fn import(tx: &mut impl Tx, mut batches: tokio::sync::mpsc::Receiver<ImportBatch>) -> Result<u64, StoreError> {
    tx.clear(true).await?;
    let mut stored = 0;
    let mut blob = None;
    loop {
        match tx.next_batch(&mut batches).await {
            Some(ImportBatch::Records(records)) => {
                for record in records {
                    import_record(tx, record, &mut blob).await?;
                    stored += 1;
                }
            }
            Some(ImportBatch::End) => break,
            None => return Err(StoreError::Abandoned),
        }
    }
    if let Some((meta, bytes)) = blob {
        return Err(StoreError::Corrupt(format!("blob {} ends after {} of its {} bytes", meta.key, bytes.len(), meta.size)));
    }
    tx.events_restored().await?;
    Ok(stored)
}

/// Stores one record of an import (after `Tx::clear(true)`). A blob's bytes come in the chunk
/// records after it: `blob` holds them until they are all there (one blob in memory).
async fn import_record(tx: &mut impl Tx, record: StateRecord, blob: &mut Option<(BlobMeta, Vec<u8>)>) -> Result<(), StoreError> {
    match record {
        StateRecord::Blob(meta) => {
            if let Some((meta, bytes)) = blob.take() {
                return Err(StoreError::Corrupt(format!("blob {} ends after {} of its {} bytes", meta.key, bytes.len(), meta.size)));
            }
            let size = usize::try_from(meta.size).ok().filter(|n| *n <= media::MAX_DOWNLOAD_BYTES);
            let size = size.ok_or_else(|| StoreError::Corrupt(format!("blob {} of {} bytes", meta.key, meta.size)))?;
            if size == 0 {
                insert_blob(tx, &media::Blob { meta, bytes: Default::default() }).await?;
            } else {
                *blob = Some((meta, Vec::with_capacity(size)));
            }
        }
        StateRecord::BlobChunk(chunk) => {
            use base64::Engine as _;
            let Some((meta, bytes)) = blob.as_mut().filter(|(m, _)| m.key == chunk.key) else {
                return Err(StoreError::Corrupt(format!("bytes of blob {} without its blob record before them", chunk.key)));
            };
            base64::engine::general_purpose::STANDARD
                .decode_vec(chunk.data.as_bytes(), bytes)
                .map_err(|e| StoreError::Corrupt(format!("blob {} bytes: {e}", chunk.key)))?;
            if bytes.len() as i64 > meta.size {
                return Err(StoreError::Corrupt(format!("blob {} has more than its {} bytes", chunk.key, meta.size)));
            }
            if bytes.len() as i64 == meta.size {
                let (meta, bytes) = blob.take().expect("the pending blob");
                insert_blob(tx, &media::Blob { meta, bytes: bytes.into() }).await?;
            }
        }
        StateRecord::Chat(chat) => tx.insert_chat(&chat, &[]).await?,
        StateRecord::ChatDedup(d) => {
            let k = &d.key;
            let params = [Text(&k.tenant_key.0), Text(&k.app_id.0), Text(&k.uuid), Text(&k.owner), Text(&d.chat_id.0), Int(d.created_at_ms)];
            tx.execute(&INSERT_CHAT_DEDUP, &params).await?;
        }
        StateRecord::P2pChat(p) => {
            tx.execute(&INSERT_P2P, &[Text(&p.app_id.0), Text(&p.uid.0), Text(&p.chat_id.0)]).await?;
        }
        StateRecord::Message(m) => insert_message(tx, &m).await?,
        StateRecord::MessageDedup(d) => {
            let params = [Text(&d.app_id.0), Text(&d.uuid), Text(&d.message_id.0), Int(d.created_at_ms)];
            tx.execute(&INSERT_MESSAGE_DEDUP, &params).await?;
        }
        StateRecord::TaskChat(t) => {
            let link = TaskLink { task_id: t.task_id, app_id: t.link.app_id, at_ms: t.link.linked_at_ms };
            insert_task_link(tx, &link, &t.link.chat_id, t.link.started_here).await?;
        }
        StateRecord::Reaction(r) => {
            let operator = operator_key(&r.operator);
            let params = [Text(&r.reaction_id), Text(&r.message_id.0), Text(&operator), Text(&r.emoji_type), Text(&to_json(&r))];
            tx.execute(&INSERT_REACTION, &params).await?;
        }
        StateRecord::MessageRead(read) => {
            tx.execute(&INSERT_READ, &[Text(&read.message_id.0), Text(&read.uid.0), Int(read.read_at_ms)]).await?;
        }
        StateRecord::CustomBot(bot) => insert_custom_bot(tx, &bot).await?,
        StateRecord::Token(token) => insert_token(tx, &token).await?,
        StateRecord::AppTicket(t) => {
            tx.execute(&INSERT_APP_TICKET, &[Text(&t.app_id.0), Text(&t.ticket), Int(t.issued_at_ms), Int(t.expires_at_ms)]).await?;
        }
        StateRecord::Event(e) => {
            let row = EventRow::encode(&e.event);
            let params = [
                Int(e.seq),
                Text(row.type_name),
                Text(&row.chat_id),
                Int(row.at_ms),
                OptBlob(row.users.as_deref()),
                Text(&row.body),
                Int(row.bytes()),
            ];
            tx.execute(&INSERT_STORED_EVENT, &params).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_spelling_numbers_placeholders_and_swaps_words() {
        assert_eq!(
            sqlite_spelling("SELECT greatest(a, $2) FROM t WHERE x = $1 AND b = TRUE FOR UPDATE"),
            "SELECT max(a, ?2) FROM t WHERE x = ?1 AND b = 1"
        );
        assert_eq!(CHAT_FOR_UPDATE.sqlite(), CHAT_BY_ID.sqlite());
        assert!(MESSAGES_ASC.postgres().contains("created_at > $4"));
        assert!(MESSAGES_DESC.sqlite().contains("ORDER BY created_at DESC, seq DESC LIMIT ?6"));
    }
}
