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
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Transaction};
use prometheus_client::metrics::histogram::Histogram;
use tokio_postgres::types::ToSql;
use tokio_postgres::error::SqlState;
use tokio_postgres::{NoTls, Row};

use super::codec::{ChatRow, EventRow};
use super::sql::{self, Cols, EachRow, Param, Sql, Tx};
use super::{BotChatsQuery, ChatSearchQuery, NewChat, NewMessage, ChatChange, Created, Cursor, DedupKey,
    EventQuery, ImportBatch, MessageQuery, OutboxStats, StateRecord, Store, StoreError, StoreStats,
    TaskChatRecord, TaskLink, TokenRecord, EXPORT_BUFFER, MessageChange, ReactionQuery, ReadMark,
    ReadQuery, ReadRecord, AppTicketRecord, CardToken, CardTokenUse, AttemptFilter, AttemptRecord, Delivery, DeliveryClaim,
    DeliveryQueue, FanOut, FinishedAttempt, NewDelivery};
use crate::domain::chat::Chat;
use crate::domain::custom_bots::CustomBot;
use crate::domain::events::{DomainEvent, StoredEvent};
use crate::domain::ids::{AppId, ChatId, MessageId, TenantKey, Uid};
use crate::domain::media::{Blob, BlobMeta};
use crate::domain::message::Message;
use crate::domain::reaction::Reaction;
use crate::domain::subscriptions::EventSettings;
use crate::error::FeishuError;

const MIGRATIONS: &[&str] = &[
    include_str!("migrations/postgres/0001_init.sql"),
    include_str!("migrations/postgres/0002_search_text.sql"),
    include_str!("migrations/postgres/0003_events.sql"),
    OUTBOX_COMPACT_MIGRATION,
    include_str!("migrations/postgres/0005_blobs.sql"),
    include_str!("migrations/postgres/0006_message_ops.sql"),
    include_str!("migrations/postgres/0007_custom_bots.sql"),
    include_str!("migrations/postgres/0008_app_tickets.sql"),
    include_str!("migrations/postgres/0009_deliveries.sql"),
    include_str!("migrations/postgres/0010_card_tokens.sql"),
    include_str!("migrations/postgres/0011_threads.sql"),
];
/// The migration that compacts the outbox; the rows it finds are rewritten in Rust right after it
/// (found by its text, so renumbering the migrations cannot miss it).
const OUTBOX_COMPACT_MIGRATION: &str = include_str!("migrations/postgres/0004_outbox_compact.sql");
/// The migration that adds `chats.search_text`; its rows are backfilled in Rust right after it.
const SEARCH_TEXT_MIGRATION: usize = 2;
/// Advisory lock keys. Migrations: one node at a time migrates the database.
const MIGRATION_LOCK: i64 = 0x6c61_726b_0001;
pub const DEFAULT_POOL_SIZE: usize = 8;
/// How long a reset's TRUNCATE waits for one table's lock before it steps back (`Pg::clear`),
/// and how many times it tries: a minute in all, far longer than any request holds a table.
const TRUNCATE_LOCK_WAIT_MS: u64 = 50;
const TRUNCATE_ATTEMPTS: u32 = 600;

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
            if *sql == OUTBOX_COMPACT_MIGRATION {
                sql::compact_legacy_events(&mut Pg(&tx)).await?;
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

async fn execute<C: GenericClient>(
    c: &C,
    sql: &str,
    params: Params<'_>,
) -> Result<u64, StoreError> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.execute(&stmt, params).await?)
}

/// The shared SQL's `Tx` on a pooled connection or one of its transactions; statements are
/// prepared once per connection (`prepare_cached`).
struct Pg<'c, C>(&'c C);

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match *self {
            Param::Int(v) => v.to_sql_checked(ty, out),
            Param::OptInt(v) => v.to_sql_checked(ty, out),
            Param::Text(s) => text(s).as_ref().to_sql_checked(ty, out),
            Param::OptText(s) => s.map(text).as_deref().to_sql_checked(ty, out),
            Param::Bool(b) => b.to_sql_checked(ty, out),
            Param::Blob(b) => b.to_sql_checked(ty, out),
            Param::OptBlob(b) => b.to_sql_checked(ty, out),
        }
    }

    /// Each value checks its type as it is bound (`to_sql_checked`).
    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

impl Cols for Row {
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        Ok(self.try_get(i)?)
    }

    fn str(&self, i: usize) -> Result<&str, StoreError> {
        Ok(self.try_get(i)?)
    }

    fn blob(&self, i: usize) -> Result<&[u8], StoreError> {
        Ok(self.try_get(i)?)
    }

    fn opt_blob(&self, i: usize) -> Result<Option<&[u8]>, StoreError> {
        Ok(self.try_get(i)?)
    }

    fn flag(&self, i: usize) -> Result<bool, StoreError> {
        Ok(self.try_get(i)?)
    }

    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(i)?)
    }
}

impl<C: GenericClient + Sync> Tx for Pg<'_, C> {
    async fn execute(&mut self, sql: &Sql, params: &[Param<'_>]) -> Result<u64, StoreError> {
        let stmt = self.0.prepare_cached(sql.postgres()).await?;
        Ok(self.0.execute_raw(&stmt, params.iter()).await?)
    }

    async fn each(&mut self, sql: &Sql, params: &[Param<'_>], row: &mut EachRow<'_>) -> Result<(), StoreError> {
        let stmt = self.0.prepare_cached(sql.postgres()).await?;
        let rows = self.0.query_raw(&stmt, params.iter()).await?;
        futures_util::pin_mut!(rows);
        while let Some(r) = futures_util::TryStreamExt::try_next(&mut rows).await? {
            row(&r)?;
        }
        Ok(())
    }

    async fn insert_chat(&mut self, chat: &Chat, events: &[DomainEvent]) -> Result<(), StoreError> {
        insert_chat(self.0, chat, events).await
    }

    async fn index_bots(&mut self, seq: i64, bots: &[AppId]) -> Result<(), StoreError> {
        index_bots(self.0, seq, bots).await
    }

    async fn insert_events(&mut self, events: &[DomainEvent]) -> Result<(), StoreError> {
        insert_events(self.0, events).await
    }

    async fn lock(&mut self, scope: &str, key: &str) -> Result<(), StoreError> {
        advisory_lock(self.0, scope, key).await
    }

    async fn insert_deliveries(&mut self, rows: &[NewDelivery], due_ms: i64) -> Result<(), StoreError> {
        insert_deliveries(self.0, rows, due_ms).await
    }

    /// TRUNCATE locks its tables one after another, in list order, while a transaction in flight
    /// locks them in its own order (a chat before its bots, say): the two could deadlock, and
    /// PostgreSQL would then abort one of them, perhaps a client's request. So the TRUNCATE waits
    /// for each lock only briefly; when one does not come, it gives back those it took (its
    /// savepoint) and tries again, and the transaction in its way finishes meanwhile.
    async fn clear(&mut self, tokens: bool) -> Result<(), StoreError> {
        let tables = sql::STATE_TABLES.join(", ");
        let credentials = if tokens { format!(", {}", sql::CREDENTIAL_TABLES.join(", ")) } else { String::new() };
        let truncate = format!(
            "SAVEPOINT truncate; SET LOCAL lock_timeout = {TRUNCATE_LOCK_WAIT_MS}; TRUNCATE {tables}{credentials};
             SET LOCAL lock_timeout = DEFAULT; RELEASE SAVEPOINT truncate"
        );
        for attempt in 1..=TRUNCATE_ATTEMPTS {
            match self.0.batch_execute(&truncate).await {
                Ok(()) => break,
                Err(e) if attempt < TRUNCATE_ATTEMPTS && e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
                    self.0.batch_execute("ROLLBACK TO SAVEPOINT truncate").await?;
                    tokio::time::sleep(std::time::Duration::from_millis(TRUNCATE_LOCK_WAIT_MS)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        reset_event_seq(self.0).await
    }

    async fn events_restored(&mut self) -> Result<(), StoreError> {
        reset_event_seq(self.0).await
    }

    async fn next_batch(&mut self, batches: &mut tokio::sync::mpsc::Receiver<ImportBatch>) -> Option<ImportBatch> {
        batches.recv().await
    }
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
    let row = ChatRow::encode_with(chat, events)?;
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

async fn index_bots<C: GenericClient>(tx: &C, seq: i64, bots: &[AppId]) -> Result<(), StoreError> {
    let apps: Vec<&str> = bots.iter().map(|b| b.0.as_str()).collect();
    execute(
        tx,
        "INSERT INTO chat_bots (app_id, chat_seq) SELECT unnest($1::text[]), $2 ON CONFLICT DO NOTHING",
        &[&apps, &seq],
    )
    .await?;
    Ok(())
}

/// Events as the parameters of `events_insert`: their count and bytes, then one array per column
/// (`codec::EventRow`).
struct EventBatch {
    n: i64,
    bytes: i64,
    types: Vec<&'static str>,
    chats: Vec<String>,
    ats: Vec<i64>,
    users: Vec<Option<Vec<u8>>>,
    bodies: Vec<String>,
    sizes: Vec<i64>,
}

impl EventBatch {
    fn of(events: &[DomainEvent]) -> Self {
        let mut batch = EventBatch {
            n: events.len() as i64,
            bytes: 0,
            types: Vec::with_capacity(events.len()),
            chats: Vec::with_capacity(events.len()),
            ats: Vec::with_capacity(events.len()),
            users: Vec::with_capacity(events.len()),
            bodies: Vec::with_capacity(events.len()),
            sizes: Vec::with_capacity(events.len()),
        };
        for e in events {
            let mut row = EventRow::encode(e);
            // Measured as stored (see `text`), so a prune measures the same bytes.
            for column in [&mut row.body, &mut row.chat_id] {
                if let std::borrow::Cow::Owned(stored) = text(column) {
                    *column = stored;
                }
            }
            batch.sizes.push(row.bytes());
            batch.types.push(row.type_name);
            batch.chats.push(row.chat_id);
            batch.ats.push(row.at_ms);
            batch.users.push(row.users);
            batch.bodies.push(row.body);
        }
        batch.bytes = batch.sizes.iter().sum();
        batch
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 8] {
        [&self.n, &self.bytes, &self.types, &self.chats, &self.ats, &self.users, &self.bodies, &self.sizes]
    }
}

/// The tail of a statement that appends a batch of events whose parameters start at `$first`:
/// bumps the one-row counter's seq and bytes (its row lock holds until commit, so seq order is
/// commit order and a rollback leaves no gap), then inserts the events numbered from it, each
/// ending its size after the one before (`bytes_end`).
fn events_insert(first: usize) -> String {
    let [n, bytes, types, chats, ats, users, bodies, sizes] = std::array::from_fn(|i| first + i);
    format!(
        "{with} s AS (UPDATE event_seq SET last = last + ${n}, bytes = bytes + ${bytes} RETURNING last, bytes)
         INSERT INTO events (seq, type, chat_id, at_ms, users, body, bytes_end)
         SELECT s.last - ${n} + e.ord, e.type, e.chat_id, e.at_ms, e.users, e.body,
                s.bytes - ${bytes} + (sum(e.size) OVER (ORDER BY e.ord))::bigint
         FROM s, unnest(${types}::text[], ${chats}::text[], ${ats}::bigint[], ${users}::bytea[], ${bodies}::text[],
                        ${sizes}::bigint[])
              WITH ORDINALITY AS e(type, chat_id, at_ms, users, body, size, ord)",
        with = if first == 1 { "WITH" } else { "," }
    )
}

/// Appends events to the outbox in one statement (`events_insert`).
async fn insert_events<C: GenericClient>(tx: &C, events: &[DomainEvent]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let batch = EventBatch::of(events);
    execute(tx, &events_insert(1), &batch.params()).await?;
    Ok(())
}

/// Restarts the counter after the last stored event (0 when there is none), seq and bytes.
async fn reset_event_seq<C: GenericClient>(tx: &C) -> Result<(), StoreError> {
    let sql = "UPDATE event_seq SET last = coalesce((SELECT max(seq) FROM events), 0),
                                    bytes = coalesce((SELECT bytes_end FROM events ORDER BY seq DESC LIMIT 1), 0)";
    execute(tx, sql, &[]).await?;
    Ok(())
}

/// A fan-out's deliveries in one statement (one round trip, whatever the batch).
async fn insert_deliveries<C: GenericClient>(c: &C, rows: &[NewDelivery], due_ms: i64) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = rows.iter().map(|r| r.event_id.as_str()).collect();
    let apps: Vec<&str> = rows.iter().map(|r| r.app_id.0.as_str()).collect();
    let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    let chats: Vec<&str> = rows.iter().map(|r| r.chat_id.as_str()).collect();
    let types: Vec<&str> = rows.iter().map(|r| r.event_type.as_str()).collect();
    let payloads: Vec<String> = rows.iter().map(|r| text(&r.payload).into_owned()).collect();
    let bytes: Vec<i64> = rows.iter().map(|r| r.payload.len() as i64).collect();
    let committed: Vec<i64> = rows.iter().map(|r| r.committed_ms).collect();
    execute(
        c,
        "INSERT INTO deliveries (event_id, app_id, seq, chat_id, type, payload, bytes, committed_ms, failed, due_ms, state)
         SELECT r.e, r.a, r.s, r.c, r.t, r.p, r.b, r.m, 0, $9, 'pending'
         FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::bigint[])
              AS r(e, a, s, c, t, p, b, m)
         ON CONFLICT (event_id) DO NOTHING",
        &[&ids, &apps, &seqs, &chats, &types, &payloads, &bytes, &committed, &due_ms],
    )
    .await?;
    Ok(())
}

/// Rows an export fetches per round trip.
const EXPORT_PAGE: i32 = 500;


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
    for (sql, record) in sql::export_queries() {
        let portal = tx.bind(sql.postgres(), &[]).await?;
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
    sql::export_blobs(&mut Pg(&tx), |r| {
        let out = out.clone();
        async move { out.send(Ok(r)).await.is_ok() }
    })
    .await
}

/// Serialises transactions that take the same `(scope, key)`, until they end.
async fn advisory_lock<C: GenericClient>(tx: &C, scope: &str, key: &str) -> Result<(), StoreError> {
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

    async fn create_chat(&self, new: NewChat) -> Result<Created, StoreError> {
        let NewChat { chat, dedup, dedup_window_start_ms: window_start_ms, events } = new;
        let mut client = self.client().await?;
        if dedup.is_none() {
            // One statement (the chat, its bots and its events): its own (auto-committed) transaction.
            let started = Instant::now();
            insert_chat(&client, &chat, &events).await?;
            self.commit_seconds.observe(started.elapsed().as_secs_f64());
            return Ok(Created::New(chat));
        }
        let tx = client.transaction().await?;
        let created = sql::create_chat(&mut Pg(&tx), chat, dedup.as_ref(), window_start_ms, &events).await?;
        self.commit(tx).await?;
        Ok(created)
    }

    async fn find_dedup(&self, key: &DedupKey, window_start_ms: i64) -> Result<Option<Chat>, StoreError> {
        sql::find_dedup(&mut Pg(&self.client().await?), key, window_start_ms).await
    }

    async fn get_chat(&self, chat_id: &ChatId) -> Result<Option<Chat>, StoreError> {
        sql::load_chat(&mut Pg(&self.client().await?), &chat_id.0).await
    }

    async fn modify_chat(
        &self,
        chat_id: &ChatId,
        change: ChatChange,
    ) -> Result<Option<Result<Chat, FeishuError>>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let modified = sql::modify_chat(&mut Pg(&tx), chat_id, change).await?;
        // Nothing to keep when there is no such chat or the change was refused.
        if let Some(Ok(_)) = modified {
            self.commit(tx).await?;
        }
        Ok(modified)
    }

    async fn chats_of_bot(&self, q: BotChatsQuery) -> Result<Vec<(Cursor, Chat)>, StoreError> {
        sql::chats_of_bot(&mut Pg(&self.client().await?), &q).await
    }

    async fn search_chats(&self, q: ChatSearchQuery) -> Result<Vec<(i64, Chat)>, StoreError> {
        sql::search_chats(&mut Pg(&self.client().await?), &q).await
    }

    async fn public_name_taken(&self, tenant: &TenantKey, name: &str, except: &ChatId) -> Result<bool, StoreError> {
        sql::public_name_taken(&mut Pg(&self.client().await?), tenant, name, except).await
    }

    async fn p2p_chat(&self, app: &AppId, uid: &Uid, new: Chat, events: Vec<DomainEvent>) -> Result<Chat, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let chat = sql::p2p_chat(&mut Pg(&tx), app, uid, new, &events).await?;
        self.commit(tx).await?;
        Ok(chat)
    }

    async fn create_message(&self, new: NewMessage) -> Result<Message, StoreError> {
        let NewMessage { message, dedup, dedup_window_start_ms: window_start_ms, events } = new;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let message = sql::create_message(&mut Pg(&tx), message, dedup.as_ref(), window_start_ms, &events).await?;
        self.commit(tx).await?;
        Ok(message)
    }

    async fn list_messages(&self, q: MessageQuery) -> Result<Vec<(Cursor, Message)>, StoreError> {
        sql::list_messages(&mut Pg(&self.client().await?), &q).await
    }

    async fn get_message(&self, id: &MessageId) -> Result<Option<Message>, StoreError> {
        sql::load_message(&mut Pg(&self.client().await?), &id.0).await
    }

    async fn put_blob(&self, blob: Blob, quota_bytes: u64) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let stored = sql::put_blob(&mut Pg(&tx), &blob, quota_bytes).await?;
        if stored {
            self.commit(tx).await?;
        }
        Ok(stored)
    }

    async fn blob_meta(&self, key: &str) -> Result<Option<BlobMeta>, StoreError> {
        sql::blob_meta(&mut Pg(&self.client().await?), key).await
    }

    async fn get_blob(&self, key: &str) -> Result<Option<Blob>, StoreError> {
        sql::load_blob(&mut Pg(&self.client().await?), key).await
    }

    async fn update_message(&self, id: &MessageId, change: MessageChange) -> Result<Option<Result<Message, FeishuError>>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let updated = sql::update_message(&mut Pg(&tx), id, change).await?;
        // Nothing to keep when there is no such message or the change was refused.
        if let Some(Ok(_)) = updated {
            self.commit(tx).await?;
        }
        Ok(updated)
    }

    async fn add_reaction(&self, reaction: Reaction, events: Vec<DomainEvent>) -> Result<Reaction, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let stored = sql::add_reaction(&mut Pg(&tx), reaction, &events).await?;
        self.commit(tx).await?;
        Ok(stored)
    }

    async fn get_reaction(&self, reaction_id: &str) -> Result<Option<Reaction>, StoreError> {
        sql::get_reaction(&mut Pg(&self.client().await?), reaction_id).await
    }

    async fn delete_reaction(&self, reaction_id: &str, events: Vec<DomainEvent>) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let deleted = sql::delete_reaction(&mut Pg(&tx), reaction_id, &events).await?;
        self.commit(tx).await?;
        Ok(deleted)
    }

    async fn list_reactions(&self, q: ReactionQuery) -> Result<Vec<(i64, Reaction)>, StoreError> {
        sql::list_reactions(&mut Pg(&self.client().await?), &q).await
    }

    async fn mark_read(&self, mark: ReadMark) -> Result<Vec<Message>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let read = sql::mark_read(&mut Pg(&tx), mark).await?;
        self.commit(tx).await?;
        Ok(read)
    }

    async fn read_receipts(&self, q: ReadQuery) -> Result<Vec<(i64, ReadRecord)>, StoreError> {
        sql::read_receipts(&mut Pg(&self.client().await?), &q).await
    }

    async fn task_chat(&self, link: TaskLink, new: Chat, events: Vec<DomainEvent>) -> Result<Created, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let created = sql::task_chat(&mut Pg(&tx), &link, new, &events).await?;
        self.commit(tx).await?;
        Ok(created)
    }

    async fn link_task_chat(&self, link: TaskLink, chat_id: &ChatId) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        sql::insert_task_link(&mut Pg(&tx), &link, chat_id, false).await?;
        self.commit(tx).await
    }

    async fn task_links(&self) -> Result<Vec<TaskChatRecord>, StoreError> {
        sql::task_links(&mut Pg(&self.client().await?)).await
    }

    async fn add_custom_bot(&self, bot: CustomBot, max_per_chat: usize) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let added = sql::add_custom_bot(&mut Pg(&tx), &bot, max_per_chat).await?;
        self.commit(tx).await?;
        Ok(added)
    }

    async fn custom_bots(&self, chat_id: &ChatId) -> Result<Vec<CustomBot>, StoreError> {
        sql::custom_bots(&mut Pg(&self.client().await?), chat_id).await
    }

    async fn custom_bot(&self, token: &str) -> Result<Option<CustomBot>, StoreError> {
        sql::custom_bot(&mut Pg(&self.client().await?), token).await
    }

    async fn remove_custom_bot(&self, chat_id: &ChatId, bot_id: &AppId) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let removed = sql::remove_custom_bot(&mut Pg(&tx), chat_id, bot_id).await?;
        self.commit(tx).await?;
        Ok(removed)
    }

    async fn events(&self, q: EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        // A NUL matches nothing (no stored id has one), as elsewhere: see `text`.
        sql::events(&mut Pg(&self.client().await?), &q).await
    }

    async fn prune_events(&self, max_bytes: u64, floor_seq: i64) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let pruned = sql::prune_events(&mut Pg(&tx), max_bytes, floor_seq).await?;
        self.commit(tx).await?;
        Ok(pruned)
    }

    async fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        sql::outbox_stats(&mut Pg(&self.client().await?)).await
    }

    async fn count_chats(&self) -> Result<u64, StoreError> {
        sql::count_chats(&mut Pg(&self.client().await?)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sql::ping(&mut Pg(&self.client().await?)).await
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

    async fn all_chats(&self, after_seq: i64, limit: usize) -> Result<Vec<(i64, Chat)>, StoreError> {
        sql::all_chats(&mut Pg(&self.client().await?), after_seq, limit).await
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
    async fn import(&self, batches: tokio::sync::mpsc::Receiver<ImportBatch>) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let stored = sql::import(&mut Pg(&tx), batches).await?;
        self.commit(tx).await?;
        Ok(stored)
    }

    async fn clear(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        Pg(&tx).clear(false).await?;
        self.commit(tx).await
    }

    async fn rotate_token(&self, fresh: TokenRecord, reuse_after_ms: i64) -> Result<TokenRecord, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let token = sql::rotate_token(&mut Pg(&tx), fresh, reuse_after_ms).await?;
        self.commit(tx).await?;
        Ok(token)
    }

    async fn find_token(&self, token: &str) -> Result<Option<TokenRecord>, StoreError> {
        sql::find_token(&mut Pg(&self.client().await?), token).await
    }

    async fn issue_app_ticket(&self, fresh: AppTicketRecord, replace_issued_before_ms: i64) -> Result<Option<AppTicketRecord>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let issued = sql::issue_app_ticket(&mut Pg(&tx), fresh, replace_issued_before_ms).await?;
        self.commit(tx).await?;
        Ok(issued)
    }

    async fn issue_card_token(&self, token: CardToken, max_live: i64) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        sql::issue_card_token(&mut Pg(&tx), &token, max_live).await?;
        self.commit(tx).await
    }

    async fn update_card_by_token(
        &self,
        token: &str,
        app_id: &AppId,
        tenant_key: &TenantKey,
        now_ms: i64,
        max_uses: i64,
        change: MessageChange,
    ) -> Result<CardTokenUse, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let used = sql::update_card_by_token(&mut Pg(&tx), token, app_id, tenant_key, now_ms, max_uses, change).await?;
        // Only a stored change is kept (it spent a use); anything else leaves the token as it was.
        if let CardTokenUse::Applied(Some(Ok(_))) = used {
            self.commit(tx).await?;
        }
        Ok(used)
    }

    async fn app_ticket(&self, app_id: &AppId) -> Result<Option<AppTicketRecord>, StoreError> {
        sql::app_ticket(&mut Pg(&self.client().await?), app_id).await
    }

    async fn event_settings(&self) -> Result<Vec<(AppId, EventSettings)>, StoreError> {
        sql::event_settings(&mut Pg(&self.client().await?)).await
    }

    async fn set_event_settings(&self, app_id: &AppId, settings: &EventSettings) -> Result<(), StoreError> {
        sql::set_event_settings(&mut Pg(&self.client().await?), app_id, settings).await
    }

    async fn clear_event_settings(&self) -> Result<(), StoreError> {
        sql::clear_event_settings(&mut Pg(&self.client().await?)).await
    }

    async fn fan_out(&self, after: i64, upto: i64, rows: Vec<NewDelivery>, claim: Option<DeliveryClaim>) -> Result<(FanOut, Vec<Delivery>), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let done = sql::fan_out(&mut Pg(&tx), after, upto, &rows, claim.as_ref()).await?;
        if done.0 == FanOut::Done {
            self.commit(tx).await?;
        }
        Ok(done)
    }

    async fn delivery_queue(&self) -> Result<DeliveryQueue, StoreError> {
        sql::delivery_queue(&mut Pg(&self.client().await?)).await
    }

    async fn deliveries_due(&self, now_ms: i64, wall_ms: i64) -> Result<bool, StoreError> {
        sql::deliveries_due(&mut Pg(&self.client().await?), now_ms, wall_ms).await
    }

    async fn claim_deliveries(&self, claim: DeliveryClaim) -> Result<Vec<Delivery>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let claimed = sql::claim_deliveries(&mut Pg(&tx), &claim).await?;
        self.commit(tx).await?;
        Ok(claimed)
    }

    async fn finish_delivery(&self, finished: FinishedAttempt, claim: Option<DeliveryClaim>) -> Result<Vec<Delivery>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let claimed = sql::finish_delivery(&mut Pg(&tx), &finished, claim.as_ref()).await?;
        self.commit(tx).await?;
        Ok(claimed)
    }

    async fn release_deliveries(&self, owner: &str, event_ids: Vec<String>) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        sql::release_deliveries(&mut Pg(&tx), owner, &event_ids).await?;
        self.commit(tx).await
    }

    async fn release_leases(&self, owner: &str) -> Result<u64, StoreError> {
        sql::release_leases(&mut Pg(&self.client().await?), owner).await
    }

    async fn redeliver(&self, event_id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let found = sql::redeliver(&mut Pg(&tx), event_id, now_ms).await?;
        self.commit(tx).await?;
        Ok(found)
    }

    async fn delivery_attempts(&self, filter: AttemptFilter) -> Result<Vec<AttemptRecord>, StoreError> {
        sql::delivery_attempts(&mut Pg(&self.client().await?), &filter).await
    }
}
