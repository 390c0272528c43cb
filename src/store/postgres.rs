//! PostgreSQL, for several nodes sharing one database.
//!
//! Each operation is one transaction on a pooled connection. Where SQLite relies on its single
//! writer, this backend relies on PostgreSQL's locks: `modify_chat` locks the chat's row
//! (`SELECT … FOR UPDATE`) while the change runs; dedup keys are claimed by upsert on their
//! primary key; a task's chat and a token rotation run under a transaction-scoped advisory lock.
//! With `synchronous_commit` on (PostgreSQL's default) an acknowledged write is on disk.
//!
//! All tables live in one schema (`--database-schema`), created at start with the migrations, so
//! several larkstack deployments (or test runs) can share a database.

use std::time::Instant;

use async_trait::async_trait;
use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Transaction,
};
use prometheus_client::metrics::histogram::Histogram;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use super::codec::{self, from_json, to_json, token_record, ChatRow, CHAT_COLUMNS, TOKEN_COLUMNS};
use super::{
    ChatChange, ChatOrder, EventQuery, Created, Cursor, DedupKey, DedupRecord, LinkedChat, MessageDedupKey,
    ImportBatch, MessageDedupRecord, MessageOrder, MessageQuery, P2pRecord, StateRecord, Store,
    StoreError, StoreStats, TaskChatRecord, TaskLink, TokenRecord, EXPORT_BUFFER,
};
use crate::domain::chat::Chat;
use crate::domain::events::{DomainEvent, StoredEvent};
use crate::domain::ids::{AppId, ChatId, MessageId, TenantKey, Uid};
use crate::domain::message::Message;
use crate::error::FeishuError;

const MIGRATIONS: &[&str] = &[
    include_str!("migrations/postgres/0001_init.sql"),
    include_str!("migrations/postgres/0002_search_text.sql"),
    include_str!("migrations/postgres/0003_events.sql"),
];
/// The migration that adds `chats.search_text`; its rows are backfilled in Rust right after it.
const SEARCH_TEXT_MIGRATION: usize = 2;
/// Advisory lock keys. Migrations: one node at a time migrates the database.
const MIGRATION_LOCK: i64 = 0x6c61_726b_0001;
pub const DEFAULT_POOL_SIZE: usize = 8;

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Backend(match e.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => e.to_string(),
        })
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::Backend(format!("connection pool: {e}"))
    }
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// PostgreSQL text cannot hold U+0000, which SQLite and Feishu's JSON can. Text that callers
/// choose (names, `uuid`s, IDs from paths and queries) is bound with each NUL as U+FFFD:
/// an ID holding one matches nothing, as it would not have on SQLite either.
fn text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

pub struct PostgresStore {
    pool: Pool,
    commit_seconds: Histogram,
}

/// A schema name larkstack will put in `search_path`: a plain lower-case identifier.
pub fn valid_schema(schema: &str) -> bool {
    let mut chars = schema.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && schema.len() <= 63
}

impl PostgresStore {
    /// Connects to `url`, creates `schema` if needed and applies the migrations it lacks.
    pub async fn open(url: &str, schema: &str, pool_size: usize) -> Result<Self, StoreError> {
        if !valid_schema(schema) {
            return Err(StoreError::Backend(format!(
                "database schema {schema:?}: use lower-case letters, digits and _"
            )));
        }
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Backend(format!("database URL: {e}")))?;
        config.options(format!("-c search_path={schema}"));
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .build()
            .map_err(|e| StoreError::Backend(format!("connection pool: {e}")))?;
        let store = PostgresStore {
            pool,
            commit_seconds: super::latency_histogram(),
        };
        store.migrate(schema).await?;
        Ok(store)
    }

    async fn migrate(&self, schema: &str) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Nodes starting together wait here; the first applies, the rest find nothing to do.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS larkstack_migrations (
                 version    INTEGER PRIMARY KEY,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             );"
        ))
        .await?;
        let applied: i32 = tx
            .query_one(
                "SELECT coalesce(max(version), 0) FROM larkstack_migrations",
                &[],
            )
            .await?
            .get(0);
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
            tx.batch_execute(sql).await?;
            if i + 1 == SEARCH_TEXT_MIGRATION {
                backfill_search_text(&tx).await?;
            }
            tx.execute(
                "INSERT INTO larkstack_migrations (version) VALUES ($1)",
                &[&(i as i32 + 1)],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.pool.get().await?)
    }

    async fn commit(&self, tx: Transaction<'_>) -> Result<(), StoreError> {
        let started = Instant::now();
        tx.commit().await?;
        self.commit_seconds.observe(started.elapsed().as_secs_f64());
        Ok(())
    }
}

async fn query<C: GenericClient>(
    c: &C,
    sql: &str,
    params: Params<'_>,
) -> Result<Vec<Row>, StoreError> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.query(&stmt, params).await?)
}

async fn query_opt<C: GenericClient>(
    c: &C,
    sql: &str,
    params: Params<'_>,
) -> Result<Option<Row>, StoreError> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.query_opt(&stmt, params).await?)
}

async fn execute<C: GenericClient>(
    c: &C,
    sql: &str,
    params: Params<'_>,
) -> Result<u64, StoreError> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.execute(&stmt, params).await?)
}

fn chat_from_row(r: &Row) -> Result<(i64, Chat), StoreError> {
    let status: String = r.try_get(6)?;
    let row = ChatRow {
        chat_id: r.try_get(1)?,
        tenant_key: r.try_get(2)?,
        creator_app: r.try_get(3)?,
        owner: r.try_get(4)?,
        external: r.try_get(5)?,
        status: codec::status_from(&status),
        created_at: r.try_get(7)?,
        settings: r.try_get(8)?,
        users: r.try_get(9)?,
        bots: r.try_get(10)?,
        user_managers: r.try_get(11)?,
        bot_managers: r.try_get(12)?,
        last_active_at: r.try_get(13)?,
        user_joined: r.try_get(14)?,
    };
    Ok((r.try_get(0)?, row.decode()?))
}

/// Chats matching `condition` (SQL over `chats`, aliased `c`).
async fn load_chats_where<C: GenericClient>(
    c: &C,
    condition: &str,
    params: Params<'_>,
) -> Result<Vec<(i64, Chat)>, StoreError> {
    query(
        c,
        &format!("SELECT {CHAT_COLUMNS} FROM chats c WHERE {condition}"),
        params,
    )
    .await?
    .iter()
    .map(chat_from_row)
    .collect()
}

async fn load_chat<C: GenericClient>(c: &C, chat_id: &str) -> Result<Option<Chat>, StoreError> {
    Ok(load_chats_where(c, "chat_id = $1", &[&text(chat_id)])
        .await?
        .pop()
        .map(|(_, chat)| chat))
}

fn token_from_row(r: &Row) -> Result<TokenRecord, StoreError> {
    token_record((
        r.try_get(0)?,
        r.try_get(1)?,
        r.try_get(2)?,
        r.try_get(3)?,
        r.try_get(4)?,
        r.try_get(5)?,
    ))
}

/// Fills `search_text` of the chats stored before the column existed, then makes it required.
async fn backfill_search_text(tx: &Transaction<'_>) -> Result<(), StoreError> {
    // A page at a time, so an upgrade of a large database holds one page in memory.
    loop {
        let rows =
            tx.query("SELECT seq, settings FROM chats WHERE search_text IS NULL ORDER BY seq LIMIT 1000", &[]).await?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            let (seq, settings): (i64, String) = (row.try_get(0)?, row.try_get(1)?);
            let search = super::codec::search_text_from_settings(&settings)?;
            tx.execute("UPDATE chats SET search_text = $2 WHERE seq = $1", &[&seq, &text(&search)]).await?;
        }
    }
    tx.batch_execute("ALTER TABLE chats ALTER COLUMN search_text SET NOT NULL").await?;
    Ok(())
}

/// The chat and its bots index in one statement: atomic without a transaction of its own, and one
/// round trip, which is most of a create's cost.
/// With `events`, the same statement appends them to the outbox too (see `insert_events`), so a
/// create stays one round trip.
async fn insert_chat<C: GenericClient>(c: &C, chat: &Chat, events: &[DomainEvent]) -> Result<(), StoreError> {
    let row = ChatRow::encode(chat)?;
    let bots: Vec<&str> = chat.bots.iter().map(|b| b.0.as_str()).collect();
    let batch = EventBatch::of(events);
    let (name, search_text) = (chat.settings.name.as_str(), chat.settings.search_text());
    let (name, search_text) = (text(name), text(&search_text));
    let chat_sql = "WITH chat AS (
             INSERT INTO chats (chat_id, tenant_key, creator_app, owner, external, status, created_at, settings, users,
                                bots, user_managers, bot_managers, name, chat_type, chat_mode, last_active_at, user_joined,
                                search_text)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $19) RETURNING seq
         )";
    let sql = if events.is_empty() {
        format!("{chat_sql} INSERT INTO chat_bots (app_id, chat_seq) SELECT DISTINCT unnest($18::text[]), seq FROM chat")
    } else {
        format!(
            "{chat_sql}, bots AS (INSERT INTO chat_bots (app_id, chat_seq) SELECT DISTINCT unnest($18::text[]), seq FROM chat)
             {}",
            events_insert(20)
        )
    };
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![
            &row.chat_id,
            &row.tenant_key,
            &row.creator_app,
            &row.owner,
            &row.external,
            &row.status,
            &row.created_at,
            &row.settings,
            &row.users,
            &row.bots,
            &row.user_managers,
            &row.bot_managers,
            &name,
            &chat.settings.chat_type,
            &chat.settings.chat_mode,
            &row.last_active_at,
            &row.user_joined,
            &bots,
            &search_text,
        ];
    if !events.is_empty() {
        params.extend(batch.params());
    }
    execute(c, &sql, &params).await?;
    Ok(())
}

async fn index_bots(tx: &Transaction<'_>, seq: i64, bots: &[AppId]) -> Result<(), StoreError> {
    let apps: Vec<&str> = bots.iter().map(|b| b.0.as_str()).collect();
    execute(
        tx,
        "INSERT INTO chat_bots (app_id, chat_seq) SELECT unnest($1::text[]), $2 ON CONFLICT DO NOTHING",
        &[&apps, &seq],
    )
    .await?;
    Ok(())
}

/// Events as the parameters of `events_insert`: their count, then one array per column.
struct EventBatch<'a> {
    n: i64,
    types: Vec<&'static str>,
    chats: Vec<&'a str>,
    ats: Vec<i64>,
    bodies: Vec<String>,
}

impl<'a> EventBatch<'a> {
    fn of(events: &'a [DomainEvent]) -> Self {
        EventBatch {
            n: events.len() as i64,
            types: events.iter().map(DomainEvent::type_name).collect(),
            chats: events.iter().map(|e| e.chat_id.0.as_str()).collect(),
            ats: events.iter().map(|e| e.at_ms).collect(),
            bodies: events.iter().map(|e| text(&to_json(e)).into_owned()).collect(),
        }
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 5] {
        [&self.n, &self.types, &self.chats, &self.ats, &self.bodies]
    }
}

/// The tail of a statement that appends a batch of events whose parameters start at `$first`:
/// bumps the one-row counter (its row lock holds until commit, so seq order is commit order and a
/// rollback leaves no gap), then inserts the events numbered from it.
fn events_insert(first: usize) -> String {
    let [n, types, chats, ats, bodies] = [first, first + 1, first + 2, first + 3, first + 4];
    format!(
        "{with} s AS (UPDATE event_seq SET last = last + ${n} RETURNING last)
         INSERT INTO events (seq, type, chat_id, at_ms, body)
         SELECT s.last - ${n} + e.ord, e.type, e.chat_id, e.at_ms, e.body
         FROM s, unnest(${types}::text[], ${chats}::text[], ${ats}::bigint[], ${bodies}::text[])
              WITH ORDINALITY AS e(type, chat_id, at_ms, body, ord)",
        with = if first == 1 { "WITH" } else { "," }
    )
}

/// Appends events to the outbox in one statement (`events_insert`).
async fn insert_events(tx: &Transaction<'_>, events: &[DomainEvent]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let batch = EventBatch::of(events);
    execute(tx, &events_insert(1), &batch.params()).await?;
    Ok(())
}

async fn insert_stored_event(tx: &Transaction<'_>, e: &StoredEvent) -> Result<(), StoreError> {
    execute(
        tx,
        "INSERT INTO events (seq, type, chat_id, at_ms, body) VALUES ($1, $2, $3, $4, $5)",
        &[&e.seq, &e.event.type_name(), &e.event.chat_id.0, &e.event.at_ms, &text(&to_json(&e.event))],
    )
    .await?;
    Ok(())
}

/// Restarts the counter after the last stored event (0 when there is none).
async fn reset_event_seq(tx: &Transaction<'_>) -> Result<(), StoreError> {
    execute(tx, "UPDATE event_seq SET last = (SELECT coalesce(max(seq), 0) FROM events)", &[]).await?;
    Ok(())
}

const EVENTS_SQL: &str = "SELECT seq, body FROM events WHERE seq > $1 AND ($2::text IS NULL OR chat_id = $2)
                          AND ($3::text IS NULL OR type = $3) ORDER BY seq LIMIT $4";

fn event_from_row(r: &Row) -> Result<StoredEvent, StoreError> {
    Ok(StoredEvent { seq: r.try_get(0)?, event: from_json("events.body", r.try_get(1)?)? })
}

async fn apply_create(
    tx: &Transaction<'_>,
    chat: Chat,
    dedup: Option<&DedupKey>,
    window_start_ms: i64,
    events: &[DomainEvent],
) -> Result<Created, StoreError> {
    if let Some(key) = dedup {
        // A concurrent claim of the same key waits here for the other transaction, then sees its row.
        let claimed = execute(
            tx,
            "INSERT INTO chat_dedup (tenant_key, app_id, uuid, owner, chat_id, created_at) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (tenant_key, app_id, uuid, owner) DO UPDATE
             SET chat_id = excluded.chat_id, created_at = excluded.created_at
             WHERE chat_dedup.created_at <= $7",
            &[&key.tenant_key.0, &key.app_id.0, &text(&key.uuid), &key.owner, &chat.chat_id.0, &chat.created_at_ms, &window_start_ms],
        )
        .await?;
        if claimed == 0 {
            let existing = dedup_target(tx, key).await?.ok_or_else(|| {
                StoreError::Corrupt(format!("dedup key {key:?} points at a missing chat"))
            })?;
            return Ok(Created::Existing(existing));
        }
    }
    insert_chat(tx, &chat, events).await?;
    Ok(Created::New(chat))
}

async fn dedup_target<C: GenericClient>(c: &C, key: &DedupKey) -> Result<Option<Chat>, StoreError> {
    let row = query_opt(
        c,
        "SELECT chat_id FROM chat_dedup WHERE tenant_key = $1 AND app_id = $2 AND uuid = $3 AND owner = $4",
        &[&key.tenant_key.0, &key.app_id.0, &text(&key.uuid), &key.owner],
    )
    .await?;
    match row {
        Some(r) => load_chat(c, r.try_get::<_, &str>(0)?).await,
        None => Ok(None),
    }
}

async fn insert_task_link(
    tx: &Transaction<'_>,
    link: &TaskLink,
    chat_id: &ChatId,
    started_here: bool,
) -> Result<(), StoreError> {
    execute(
        tx,
        "INSERT INTO task_chats (task_id, app_id, chat_id, started_here, linked_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT DO NOTHING",
        &[&text(&link.task_id), &link.app_id.0, &text(&chat_id.0), &started_here, &link.at_ms],
    )
    .await?;
    Ok(())
}

async fn insert_token(tx: &Transaction<'_>, t: &TokenRecord) -> Result<(), StoreError> {
    execute(
        tx,
        "INSERT INTO tokens (token, kind, app_id, tenant_key, issued_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        &[&t.token, &t.kind.as_str(), &t.app_id.0, &t.tenant_key.0, &t.issued_at_ms, &t.expires_at_ms],
    )
    .await?;
    Ok(())
}

async fn load_message<C: GenericClient>(c: &C, id: &str) -> Result<Option<Message>, StoreError> {
    match query_opt(c, "SELECT body FROM messages WHERE message_id = $1", &[&text(id)]).await? {
        Some(r) => Ok(Some(from_json("messages.body", r.try_get(0)?)?)),
        None => Ok(None),
    }
}

const TASK_LINKS_SQL: &str =
    "SELECT task_id, chat_id, app_id, started_here, linked_at FROM task_chats ORDER BY linked_at, task_id, chat_id";

fn task_link_from_row(r: &Row) -> Result<TaskChatRecord, StoreError> {
    Ok(TaskChatRecord {
        task_id: r.try_get(0)?,
        link: LinkedChat {
            chat_id: ChatId(r.try_get(1)?),
            app_id: AppId(r.try_get(2)?),
            started_here: r.try_get(3)?,
            linked_at_ms: r.try_get(4)?,
        },
    })
}

async fn read_task_links<C: GenericClient>(c: &C) -> Result<Vec<TaskChatRecord>, StoreError> {
    query(c, TASK_LINKS_SQL, &[]).await?.iter().map(task_link_from_row).collect()
}

/// Rows an export fetches per round trip.
const EXPORT_PAGE: i32 = 500;

type RecordFromRow = fn(&Row) -> Result<StateRecord, StoreError>;

/// Every table's export query, in export order, with how a row becomes a record.
fn export_queries() -> [(String, RecordFromRow); 8] {
    [
        (format!("SELECT {CHAT_COLUMNS} FROM chats ORDER BY seq"), |r| Ok(StateRecord::Chat(chat_from_row(r)?.1))),
        (
            "SELECT tenant_key, app_id, uuid, owner, chat_id, created_at FROM chat_dedup ORDER BY created_at, chat_id".into(),
            |r| {
                Ok(StateRecord::ChatDedup(DedupRecord {
                    key: DedupKey {
                        tenant_key: TenantKey(r.try_get(0)?),
                        app_id: AppId(r.try_get(1)?),
                        uuid: r.try_get(2)?,
                        owner: r.try_get(3)?,
                    },
                    chat_id: ChatId(r.try_get(4)?),
                    created_at_ms: r.try_get(5)?,
                }))
            },
        ),
        ("SELECT app_id, uid, chat_id FROM p2p_chats ORDER BY app_id, uid".into(), |r| {
            Ok(StateRecord::P2pChat(P2pRecord {
                app_id: AppId(r.try_get(0)?),
                uid: Uid(r.try_get(1)?),
                chat_id: ChatId(r.try_get(2)?),
            }))
        }),
        ("SELECT body FROM messages ORDER BY seq".into(), |r| {
            Ok(StateRecord::Message(from_json("messages.body", r.try_get(0)?)?))
        }),
        (
            "SELECT app_id, uuid, message_id, created_at FROM message_dedup ORDER BY created_at, message_id".into(),
            |r| {
                Ok(StateRecord::MessageDedup(MessageDedupRecord {
                    app_id: AppId(r.try_get(0)?),
                    uuid: r.try_get(1)?,
                    message_id: MessageId(r.try_get(2)?),
                    created_at_ms: r.try_get(3)?,
                }))
            },
        ),
        (TASK_LINKS_SQL.into(), |r| Ok(StateRecord::TaskChat(task_link_from_row(r)?))),
        (format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY issued_at, token"), |r| {
            Ok(StateRecord::Token(token_from_row(r)?))
        }),
        ("SELECT seq, body FROM events ORDER BY seq".into(), |r| Ok(StateRecord::Event(event_from_row(r)?))),
    ]
}

/// Streams every table from one REPEATABLE READ snapshot, `EXPORT_PAGE` rows per fetch from a
/// portal (a server-side cursor), so memory holds a page plus what the channel buffers.
async fn export_records(pool: &Pool, out: &tokio::sync::mpsc::Sender<Result<StateRecord, StoreError>>) -> Result<(), StoreError> {
    let mut client = pool.get().await?;
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    for (sql, record) in export_queries() {
        let portal = tx.bind(&sql, &[]).await?;
        loop {
            let rows = tx.query_portal(&portal, EXPORT_PAGE).await?;
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                if out.send(Ok(record(r)?)).await.is_err() {
                    return Ok(()); // the reader is gone
                }
            }
        }
    }
    Ok(())
}

async fn import_record(tx: &Transaction<'_>, record: StateRecord) -> Result<(), StoreError> {
    match record {
        StateRecord::Chat(chat) => insert_chat(tx, &chat, &[]).await?,
        StateRecord::ChatDedup(d) => {
            execute(
                tx,
                "INSERT INTO chat_dedup (tenant_key, app_id, uuid, owner, chat_id, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                &[&d.key.tenant_key.0, &d.key.app_id.0, &text(&d.key.uuid), &d.key.owner, &d.chat_id.0, &d.created_at_ms],
            )
            .await?;
        }
        StateRecord::P2pChat(p) => {
            execute(
                tx,
                "INSERT INTO p2p_chats (app_id, uid, chat_id) VALUES ($1, $2, $3)",
                &[&p.app_id.0, &p.uid.0, &p.chat_id.0],
            )
            .await?;
        }
        StateRecord::Message(m) => {
            execute(
                tx,
                "INSERT INTO messages (message_id, chat_id, created_at, body) VALUES ($1, $2, $3, $4)",
                &[&m.message_id.0, &m.chat_id.0, &m.created_at_ms, &to_json(&m)],
            )
            .await?;
        }
        StateRecord::MessageDedup(d) => {
            execute(
                tx,
                "INSERT INTO message_dedup (app_id, uuid, message_id, created_at) VALUES ($1, $2, $3, $4)",
                &[&d.app_id.0, &d.uuid, &d.message_id.0, &d.created_at_ms],
            )
            .await?;
        }
        StateRecord::TaskChat(t) => {
            let link = TaskLink { task_id: t.task_id, app_id: t.link.app_id, at_ms: t.link.linked_at_ms };
            insert_task_link(tx, &link, &t.link.chat_id, t.link.started_here).await?;
        }
        StateRecord::Token(token) => insert_token(tx, &token).await?,
        StateRecord::Event(e) => insert_stored_event(tx, &e).await?,
    }
    Ok(())
}

/// Serialises transactions that take the same `(scope, key)`, until they end.
async fn advisory_lock(tx: &Transaction<'_>, scope: &str, key: &str) -> Result<(), StoreError> {
    execute(
        tx,
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&text(&format!("{scope}|{key}"))],
    )
    .await?;
    Ok(())
}

#[async_trait]
impl Store for PostgresStore {
    fn commit_latency(&self) -> Option<Histogram> {
        Some(self.commit_seconds.clone())
    }

    async fn create_chat(
        &self,
        chat: Chat,
        dedup: Option<DedupKey>,
        window_start_ms: i64,
        events: Vec<DomainEvent>,
    ) -> Result<Created, StoreError> {
        let mut client = self.client().await?;
        if dedup.is_none() {
            // One statement (the chat, its bots and its events): its own (auto-committed) transaction.
            let started = Instant::now();
            insert_chat(&client, &chat, &events).await?;
            self.commit_seconds.observe(started.elapsed().as_secs_f64());
            return Ok(Created::New(chat));
        }
        let tx = client.transaction().await?;
        let created = apply_create(&tx, chat, dedup.as_ref(), window_start_ms, &events).await?;
        self.commit(tx).await?;
        Ok(created)
    }

    async fn find_dedup(
        &self,
        key: &DedupKey,
        window_start_ms: i64,
    ) -> Result<Option<Chat>, StoreError> {
        let client = self.client().await?;
        let live = query_opt(
            &client,
            "SELECT chat_id FROM chat_dedup WHERE tenant_key = $1 AND app_id = $2 AND uuid = $3 AND owner = $4
             AND created_at > $5",
            &[&key.tenant_key.0, &key.app_id.0, &text(&key.uuid), &key.owner, &window_start_ms],
        )
        .await?;
        match live {
            Some(r) => load_chat(&client, r.try_get::<_, &str>(0)?).await,
            None => Ok(None),
        }
    }

    async fn get_chat(&self, chat_id: &ChatId) -> Result<Option<Chat>, StoreError> {
        load_chat(&self.client().await?, &chat_id.0).await
    }

    async fn modify_chat(
        &self,
        chat_id: &ChatId,
        change: ChatChange,
    ) -> Result<Option<Result<Chat, FeishuError>>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let Some((seq, mut chat)) = load_chats_where(&tx, "chat_id = $1 FOR UPDATE", &[&text(&chat_id.0)])
            .await?
            .pop()
        else {
            return Ok(None);
        };
        let bots_before = chat.bots.clone();
        let events = match change(&mut chat) {
            Ok(events) => events,
            Err(e) => return Ok(Some(Err(e))),
        };
        let row = ChatRow::encode(&chat)?;
        execute(
            &tx,
            "UPDATE chats SET owner = $2, external = $3, status = $4, settings = $5, users = $6, bots = $7,
                              user_managers = $8, bot_managers = $9, name = $10, chat_type = $11, last_active_at = $12,
                              user_joined = $13, search_text = $14
             WHERE seq = $1",
            &[
                &seq,
                &row.owner,
                &row.external,
                &row.status,
                &row.settings,
                &row.users,
                &row.bots,
                &row.user_managers,
                &row.bot_managers,
                &text(&chat.settings.name),
                &chat.settings.chat_type,
                &row.last_active_at,
                &row.user_joined,
                &text(&chat.settings.search_text()),
            ],
        )
        .await?;
        if chat.bots != bots_before {
            execute(&tx, "DELETE FROM chat_bots WHERE chat_seq = $1", &[&seq]).await?;
            index_bots(&tx, seq, &chat.bots).await?;
        }
        insert_events(&tx, &events).await?;
        self.commit(tx).await?;
        Ok(Some(Ok(chat)))
    }

    async fn chats_of_bot(
        &self,
        app: &AppId,
        tenant: &TenantKey,
        order: ChatOrder,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Vec<(Cursor, Chat)>, StoreError> {
        let client = self.client().await?;
        let membership =
            "c.seq IN (SELECT chat_seq FROM chat_bots WHERE app_id = $1) AND c.tenant_key = $2
                          AND c.chat_mode = 'group' AND c.status = 'normal'";
        let limit = limit as i64;
        let rows = match (order, after) {
            (ChatOrder::CreatedAsc, None) => {
                load_chats_where(&client, &format!("{membership} ORDER BY c.seq LIMIT $3"), &[&app.0, &tenant.0, &limit]).await?
            }
            (ChatOrder::CreatedAsc, Some(c)) => {
                load_chats_where(
                    &client,
                    &format!("{membership} AND c.seq > $4 ORDER BY c.seq LIMIT $3"),
                    &[&app.0, &tenant.0, &limit, &c.seq],
                )
                .await?
            }
            (ChatOrder::ActiveDesc, None) => {
                load_chats_where(
                    &client,
                    &format!("{membership} ORDER BY c.last_active_at DESC, c.seq DESC LIMIT $3"),
                    &[&app.0, &tenant.0, &limit],
                )
                .await?
            }
            (ChatOrder::ActiveDesc, Some(c)) => {
                load_chats_where(
                    &client,
                    &format!(
                        "{membership} AND (c.last_active_at < $4 OR (c.last_active_at = $4 AND c.seq < $5))
                         ORDER BY c.last_active_at DESC, c.seq DESC LIMIT $3"
                    ),
                    &[&app.0, &tenant.0, &limit, &c.key, &c.seq],
                )
                .await?
            }
        };
        Ok(rows.into_iter().map(|(seq, chat)| (order.cursor(seq, &chat), chat)).collect())
    }

    async fn search_chats(
        &self,
        app: &AppId,
        tenant: &TenantKey,
        query_text: &str,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<(i64, Chat)>, StoreError> {
        // strpos() over the search text folded in Rust (name and i18n names), as SQLite's instr():
        // a plain substring match, no LIKE escaping, and the same folding on both backends.
        let needle = crate::domain::chat::fold_case(query_text);
        load_chats_where(
            &self.client().await?,
            "c.tenant_key = $2 AND c.status = 'normal' AND c.chat_mode = 'group' AND c.seq > $4
             AND (c.chat_type = 'public' OR c.seq IN (SELECT chat_seq FROM chat_bots WHERE app_id = $1))
             AND strpos(c.search_text, $3) > 0 ORDER BY c.seq LIMIT $5",
            &[&app.0, &tenant.0, &text(&needle), &after_seq, &(limit as i64)],
        )
        .await
    }

    async fn public_name_taken(
        &self,
        tenant: &TenantKey,
        name: &str,
        except: &ChatId,
    ) -> Result<bool, StoreError> {
        let row = query_opt(
            &self.client().await?,
            "SELECT 1 FROM chats WHERE tenant_key = $1 AND chat_type = 'public' AND name = $2
             AND status = 'normal' AND chat_id != $3 LIMIT 1",
            &[&tenant.0, &text(name), &text(&except.0)],
        )
        .await?;
        Ok(row.is_some())
    }

    async fn p2p_chat(&self, app: &AppId, uid: &Uid, new: Chat, events: Vec<DomainEvent>) -> Result<Chat, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // The primary key decides between concurrent first calls; the loser reads the winner's chat.
        let claimed = execute(
            &tx,
            "INSERT INTO p2p_chats (app_id, uid, chat_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&app.0, &uid.0, &new.chat_id.0],
        )
        .await?;
        if claimed == 0 {
            drop(tx);
            let row = query_opt(
                &client,
                "SELECT chat_id FROM p2p_chats WHERE app_id = $1 AND uid = $2",
                &[&app.0, &uid.0],
            )
            .await?
            .ok_or_else(|| StoreError::Corrupt("p2p row vanished".into()))?;
            return load_chat(&client, row.try_get::<_, &str>(0)?)
                .await?
                .ok_or_else(|| StoreError::Corrupt("p2p chat row missing".into()));
        }
        insert_chat(&tx, &new, &events).await?;
        self.commit(tx).await?;
        Ok(new)
    }

    async fn create_message(
        &self,
        message: Message,
        dedup: Option<MessageDedupKey>,
        window_start_ms: i64,
        events: Vec<DomainEvent>,
    ) -> Result<Message, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        if let Some(key) = &dedup {
            let claimed = execute(
                &tx,
                "INSERT INTO message_dedup (app_id, uuid, message_id, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (app_id, uuid) DO UPDATE SET message_id = excluded.message_id, created_at = excluded.created_at
                 WHERE message_dedup.created_at <= $5",
                &[&key.app_id.0, &text(&key.uuid), &message.message_id.0, &message.created_at_ms, &window_start_ms],
            )
            .await?;
            if claimed == 0 {
                let first = query_opt(
                    &tx,
                    "SELECT message_id FROM message_dedup WHERE app_id = $1 AND uuid = $2",
                    &[&key.app_id.0, &text(&key.uuid)],
                )
                .await?
                .ok_or_else(|| StoreError::Corrupt("message dedup row vanished".into()))?;
                return load_message(&tx, first.try_get::<_, &str>(0)?)
                    .await?
                    .ok_or_else(|| StoreError::Corrupt("deduped message missing".into()));
            }
        }
        execute(
            &tx,
            "INSERT INTO messages (message_id, chat_id, created_at, body) VALUES ($1, $2, $3, $4)",
            &[
                &message.message_id.0,
                &message.chat_id.0,
                &message.created_at_ms,
                &to_json(&message),
            ],
        )
        .await?;
        execute(
            &tx,
            "UPDATE chats SET last_active_at = greatest(last_active_at, $2) WHERE chat_id = $1",
            &[&message.chat_id.0, &message.created_at_ms],
        )
        .await?;
        insert_events(&tx, &events).await?;
        self.commit(tx).await?;
        Ok(message)
    }

    async fn list_messages(&self, q: MessageQuery) -> Result<Vec<(Cursor, Message)>, StoreError> {
        let (cmp, dir) = match q.order {
            MessageOrder::Asc => (">", "ASC"),
            MessageOrder::Desc => ("<", "DESC"),
        };
        let sql = format!(
            "SELECT created_at, seq, body FROM messages WHERE chat_id = $1 AND created_at >= $2 AND created_at <= $3
             AND ($4::bigint IS NULL OR created_at {cmp} $4 OR (created_at = $4 AND seq {cmp} $5))
             ORDER BY created_at {dir}, seq {dir} LIMIT $6"
        );
        let rows = query(
            &self.client().await?,
            &sql,
            &[
                &text(&q.chat_id.0),
                &q.start_ms.unwrap_or(i64::MIN),
                &q.end_ms.unwrap_or(i64::MAX),
                &q.after.map(|c| c.key),
                &q.after.map(|c| c.seq).unwrap_or(0),
                &(q.limit as i64),
            ],
        )
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    Cursor {
                        key: r.try_get(0)?,
                        seq: r.try_get(1)?,
                    },
                    from_json("messages.body", r.try_get(2)?)?,
                ))
            })
            .collect()
    }

    async fn get_message(&self, id: &MessageId) -> Result<Option<Message>, StoreError> {
        load_message(&self.client().await?, &id.0).await
    }

    async fn task_chat(&self, link: TaskLink, new: Chat, events: Vec<DomainEvent>) -> Result<Created, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        advisory_lock(&tx, "task", &format!("{}|{}", link.task_id, link.app_id)).await?;
        let started = query_opt(
            &tx,
            "SELECT chat_id FROM task_chats WHERE task_id = $1 AND app_id = $2 AND started_here
             ORDER BY linked_at DESC LIMIT 1",
            &[&text(&link.task_id), &link.app_id.0],
        )
        .await?;
        if let Some(row) = started {
            if let Some(chat) = load_chat(&tx, row.try_get::<_, &str>(0)?).await? {
                if !chat.is_dissolved() {
                    return Ok(Created::Existing(chat));
                }
            }
        }
        insert_chat(&tx, &new, &events).await?;
        insert_task_link(&tx, &link, &new.chat_id, true).await?;
        self.commit(tx).await?;
        Ok(Created::New(new))
    }

    async fn link_task_chat(&self, link: TaskLink, chat_id: &ChatId) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        insert_task_link(&tx, &link, chat_id, false).await?;
        self.commit(tx).await
    }

    async fn task_links(&self) -> Result<Vec<TaskChatRecord>, StoreError> {
        read_task_links(&self.client().await?).await
    }

    async fn events(&self, q: EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        // A NUL matches nothing (no stored id has one), as elsewhere: see `text`.
        let chat_id = q.chat_id.map(|c| text(&c.0).into_owned());
        let rows = query(&self.client().await?, EVENTS_SQL, &[&q.after, &chat_id, &q.type_name, &(q.limit as i64)]).await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn count_chats(&self) -> Result<u64, StoreError> {
        let row = self
            .client()
            .await?
            .query_one("SELECT count(*) FROM chats", &[])
            .await?;
        Ok(row.try_get::<_, i64>(0)? as u64)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.client().await?.query_one("SELECT 1", &[]).await?;
        Ok(())
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT (SELECT count(*) FROM chats), (SELECT coalesce(sum(octet_length(users)), 0) / 10 FROM chats)::bigint,
                        (SELECT count(*) FROM messages)",
                &[],
            )
            .await?;
        Ok(StoreStats {
            chats: row.try_get::<_, i64>(0)? as u64,
            members: row.try_get::<_, i64>(1)? as u64,
            messages: row.try_get::<_, i64>(2)? as u64,
        })
    }

    async fn all_chats(
        &self,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<(i64, Chat)>, StoreError> {
        load_chats_where(
            &self.client().await?,
            "seq > $1 ORDER BY seq LIMIT $2",
            &[&after_seq, &(limit as i64)],
        )
        .await
    }

    fn export(&self) -> tokio::sync::mpsc::Receiver<Result<StateRecord, StoreError>> {
        let (out, records) = tokio::sync::mpsc::channel(EXPORT_BUFFER);
        let pool = self.pool.clone();
        tokio::spawn(async move {
            if let Err(e) = export_records(&pool, &out).await {
                let _ = out.send(Err(e)).await;
            }
        });
        records
    }

    /// One transaction: TRUNCATE, then the records as they come; committed only at `End`.
    async fn import(
        &self,
        mut batches: tokio::sync::mpsc::Receiver<ImportBatch>,
    ) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.batch_execute(&format!("TRUNCATE {}, tokens", STATE_TABLES))
            .await?;
        let mut stored = 0;
        loop {
            match batches.recv().await {
                Some(ImportBatch::Records(records)) => {
                    for record in records {
                        import_record(&tx, record).await?;
                        stored += 1;
                    }
                }
                Some(ImportBatch::End) => break,
                None => return Err(StoreError::Abandoned),
            }
        }
        reset_event_seq(&tx).await?;
        self.commit(tx).await?;
        Ok(stored)
    }

    async fn clear(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.batch_execute(&format!("TRUNCATE {STATE_TABLES}"))
            .await?;
        reset_event_seq(&tx).await?;
        self.commit(tx).await
    }

    async fn rotate_token(
        &self,
        fresh: TokenRecord,
        reuse_after_ms: i64,
    ) -> Result<TokenRecord, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        advisory_lock(
            &tx,
            "token",
            &format!(
                "{}|{}|{}",
                fresh.app_id,
                fresh.tenant_key,
                fresh.kind.as_str()
            ),
        )
        .await?;
        let latest = query_opt(
            &tx,
            &format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens WHERE app_id = $1 AND tenant_key = $2 AND kind = $3
                 ORDER BY expires_at DESC LIMIT 1"
            ),
            &[&fresh.app_id.0, &fresh.tenant_key.0, &fresh.kind.as_str()],
        )
        .await?
        .map(|r| token_from_row(&r))
        .transpose()?;
        if let Some(t) = latest.filter(|t| t.expires_at_ms > reuse_after_ms) {
            return Ok(t);
        }
        insert_token(&tx, &fresh).await?;
        self.commit(tx).await?;
        Ok(fresh)
    }

    async fn find_token(&self, token: &str) -> Result<Option<TokenRecord>, StoreError> {
        query_opt(
            &self.client().await?,
            &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE token = $1"),
            &[&token],
        )
        .await?
        .map(|r| token_from_row(&r))
        .transpose()
    }
}

/// Everything but tokens (which `clear` keeps).
const STATE_TABLES: &str =
    "events, task_chats, message_dedup, messages, p2p_chats, chat_dedup, chat_bots, chats";
