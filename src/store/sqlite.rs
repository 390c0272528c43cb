//! The embedded default: SQLite in WAL mode under the data dir.
//!
//! Writes go to one writer thread that drains whatever is queued and commits it as one
//! transaction (group commit, `synchronous=FULL`): every caller's reply is sent only after the
//! commit that holds its change has reached the disk. Reads use a small pool of connections.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::{mpsc, oneshot};

use super::{
    ChatChange, ChatOrder, EventQuery, Created, Cursor, DedupKey, DedupRecord, ImportBatch, LinkedChat, MessageDedupKey,
    MessageDedupRecord, MessageOrder, MessageQuery, P2pRecord, StateRecord, Store, StoreError, StoreStats,
    TaskChatRecord, TaskLink, TokenRecord, EXPORT_BUFFER,
};
use super::codec::{self, from_json, to_json, token_record, ChatRow, TokenRow, CHAT_COLUMNS, TOKEN_COLUMNS};
use crate::domain::chat::{fold_case, Chat};
use crate::domain::events::{DomainEvent, StoredEvent};
use crate::domain::ids::{AppId, ChatId, MessageId, TenantKey, Uid};
use crate::domain::message::Message;
use crate::error::FeishuError;

const MIGRATIONS: &[&str] =
    &[
    include_str!("migrations/sqlite/0001_init.sql"),
    include_str!("migrations/sqlite/0002_lifecycle.sql"),
    include_str!("migrations/sqlite/0003_task_chats.sql"),
    include_str!("migrations/sqlite/0004_search_text.sql"),
    include_str!("migrations/sqlite/0005_events.sql"),
];
/// The migration that adds `chats.search_text`; its rows are backfilled in Rust right after it.
const SEARCH_TEXT_MIGRATION: usize = 4;
/// Most operations one commit carries; bounds latency of the first op in a burst.
const MAX_BATCH: usize = 512;
const READERS: usize = 4;
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);
/// WAL size at which the writer itself checkpoints and truncates the WAL between two commits.
/// Background PASSIVE checkpoints copy most frames before that, but under constant writes they
/// never catch up with the end of the WAL, so SQLite never starts it over: without this the WAL
/// grows without bound.
const WAL_CHECKPOINT_BYTES: u64 = 32 << 20;
/// What SQLite leaves of a WAL it starts over (`journal_size_limit`).
const JOURNAL_SIZE_LIMIT: i64 = 64 << 20;
/// How long a truncating checkpoint waits for readers still on old snapshots before giving up
/// (and trying again once the WAL has grown by another `WAL_CHECKPOINT_BYTES / 4`).
const CHECKPOINT_WAIT: std::time::Duration = std::time::Duration::from_millis(250);
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

enum WriteOp {
    CreateChat {
        chat: Box<Chat>,
        dedup: Option<DedupKey>,
        window_start_ms: i64,
        events: Vec<DomainEvent>,
        reply: oneshot::Sender<Result<Created, StoreError>>,
    },
    RotateToken { fresh: TokenRecord, reuse_after_ms: i64, reply: oneshot::Sender<Result<TokenRecord, StoreError>> },
    Modify { chat_id: ChatId, change: ChatChange, reply: oneshot::Sender<Result<Option<Result<Chat, FeishuError>>, StoreError>> },
    P2p { app: AppId, uid: Uid, new: Box<Chat>, events: Vec<DomainEvent>, reply: oneshot::Sender<Result<Chat, StoreError>> },
    TaskChat { link: TaskLink, new: Box<Chat>, events: Vec<DomainEvent>, reply: oneshot::Sender<Result<Created, StoreError>> },
    LinkTaskChat { link: TaskLink, chat_id: ChatId, reply: oneshot::Sender<Result<(), StoreError>> },
    /// Clears all but tokens.
    Clear { reply: oneshot::Sender<Result<(), StoreError>> },
    /// Replaces everything with the records received, in one transaction.
    Import { batches: mpsc::Receiver<ImportBatch>, reply: oneshot::Sender<Result<u64, StoreError>> },
    /// Test hook: caps the database at its current size (`true`), or lifts the cap.
    LimitGrowth { limit: bool, reply: oneshot::Sender<Result<(), StoreError>> },
    CreateMessage {
        message: Box<Message>,
        dedup: Option<MessageDedupKey>,
        window_start_ms: i64,
        events: Vec<DomainEvent>,
        reply: oneshot::Sender<Result<Message, StoreError>>,
    },
}

type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

pub struct SqliteStore {
    path: PathBuf,
    writer: mpsc::UnboundedSender<WriteOp>,
    /// Jobs for the reader threads, each of which owns one connection. A fixed pool keeps the
    /// number of threads doing SQLite reads at the pool size, however many requests wait.
    readers: crossbeam_channel::Sender<ReadJob>,
    /// Dropping it ends the checkpoint thread.
    _stop_checkpoints: std::sync::mpsc::Sender<()>,
    commit_seconds: Histogram,
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: the WAL is fsynced at every commit, so an acknowledged write survives power loss too.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // 64 MiB of page cache per connection: the writer keeps the hot end of the tables in memory.
    conn.pragma_update(None, "cache_size", -65536)?;
    // Random reads of a large database through the OS page cache without a syscall each.
    conn.pragma_update(None, "mmap_size", 4i64 << 30)?;
    // Checkpoints run on their own thread (see `checkpoint_loop`), never inside a commit.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))? as usize;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        if i + 1 == SEARCH_TEXT_MIGRATION {
            backfill_search_text(&tx)?;
        }
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

/// The data dir (when larkstack creates it) and the database with its WAL and shared memory
/// readable by the owner only, whatever the umask (see `crate::secrets`).
fn private_files(data_dir: &Path, db: &Path) -> Result<(), StoreError> {
    let fail = |p: &Path, e: std::io::Error| StoreError::Backend(format!("{}: {e}", p.display()));
    crate::secrets::create_private_dir(data_dir).map_err(|e| fail(data_dir, e))?;
    crate::secrets::touch_private(db).map_err(|e| fail(db, e))?;
    for suffix in ["-wal", "-shm"] {
        let mut file = db.as_os_str().to_owned();
        file.push(suffix);
        crate::secrets::restrict_file(Path::new(&file)).map_err(|e| fail(Path::new(&file), e))?;
    }
    Ok(())
}

/// Fills `search_text` of the chats stored before the column existed, a page at a time so an
/// upgrade of a large database holds one page in memory.
fn backfill_search_text(tx: &Connection) -> Result<(), StoreError> {
    let mut page = tx.prepare("SELECT seq, settings FROM chats WHERE search_text IS NULL ORDER BY seq LIMIT 1000")?;
    let mut update = tx.prepare("UPDATE chats SET search_text = ?2 WHERE seq = ?1")?;
    loop {
        let rows: Vec<(i64, String)> = page.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
        if rows.is_empty() {
            return Ok(());
        }
        for (seq, settings) in rows {
            update.execute(params![seq, crate::store::codec::search_text_from_settings(&settings)?])?;
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) `larkstack.db` in `data_dir` and starts the writer thread.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join("larkstack.db");
        private_files(data_dir, &path)?;
        let mut conn = open_connection(&path)?;
        // The WAL and shared-memory files exist now (SQLite gives them the database's mode).
        private_files(data_dir, &path)?;
        migrate(&mut conn)?;
        // Whatever WAL an earlier run left (a crash, a kill -9) goes into the database now. A
        // store of this process dropped just before may still be closing, or be in a checkpoint
        // of its own (SQLite then answers busy at once, without waiting): try for up to ~5 s.
        let mut wal = WalBound::new(&path, Default::default());
        for _ in 0..20 {
            if wal.truncate(&conn) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let idle_wal = WalBound::new(&path, wal.one_checkpoint.clone());
        let (tx, rx) = mpsc::unbounded_channel();
        let commit_seconds = super::latency_histogram();
        let timer = commit_seconds.clone();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx, timer, wal))
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let checkpointer = open_connection(&path)?;
        let (stop_checkpoints, stopped) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpointer, stopped, idle_wal))
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let (readers, jobs) = crossbeam_channel::unbounded::<ReadJob>();
        for i in 0..READERS {
            let conn = open_connection(&path)?;
            let jobs = jobs.clone();
            std::thread::Builder::new()
                .name(format!("sqlite-reader-{i}"))
                .spawn(move || {
                    // Ends when the store (the sending side) is dropped.
                    for job in jobs {
                        job(&conn);
                    }
                })
                .map_err(|e| StoreError::Backend(e.to_string()))?;
        }
        Ok(SqliteStore {
            path,
            writer: tx,
            readers,
            _stop_checkpoints: stop_checkpoints,
            commit_seconds,
        })
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        let job: ReadJob = Box::new(move |conn| {
            let _ = reply.send(f(conn));
        });
        self.readers.send(job).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn write<T>(&self, op: WriteOp, rx: oneshot::Receiver<Result<T, StoreError>>) -> Result<T, StoreError> {
        self.writer.send(op).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Test hook: with `true`, the database may not grow past its current size, so writes that
    /// need a new page fail as on a full disk; `false` lifts the cap.
    #[doc(hidden)]
    pub async fn limit_growth_for_tests(&self, limit: bool) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.write(WriteOp::LimitGrowth { limit, reply }, rx).await
    }
}

/// Keeps the WAL file bounded: truncating checkpoints when it has grown past
/// `WAL_CHECKPOINT_BYTES` (run by the writer between commits, so no commit races it) and when
/// writes have stopped (run by the checkpoint thread). `synchronous=FULL` stays: a checkpoint only
/// moves committed frames into the database file, which SQLite fsyncs before truncating the WAL.
struct WalBound {
    wal: PathBuf,
    /// Held through every checkpoint: SQLite runs one at a time and fails a second at once, so
    /// the writer's truncation waits for a background checkpoint instead of failing on it.
    one_checkpoint: std::sync::Arc<parking_lot::Mutex<()>>,
    /// The size at which the next truncation is tried.
    next_at: u64,
}

impl WalBound {
    fn new(db: &Path, one_checkpoint: std::sync::Arc<parking_lot::Mutex<()>>) -> Self {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        WalBound { wal: wal.into(), one_checkpoint, next_at: WAL_CHECKPOINT_BYTES }
    }

    fn size(&self) -> u64 {
        std::fs::metadata(&self.wal).map(|m| m.len()).unwrap_or(0)
    }

    /// After a commit: truncates the WAL once it is large enough.
    fn after_commit(&mut self, conn: &Connection) {
        let size = self.size();
        if size >= self.next_at {
            if self.truncate(conn) {
                self.next_at = WAL_CHECKPOINT_BYTES;
            } else {
                // Readers hold old snapshots (a long export): try again after more growth.
                self.next_at = size + WAL_CHECKPOINT_BYTES / 4;
            }
        }
    }

    /// Copies the whole WAL into the database and truncates it to zero bytes; false when readers
    /// on old snapshots kept it from completing within `CHECKPOINT_WAIT`.
    fn truncate(&mut self, conn: &Connection) -> bool {
        let _one = self.one_checkpoint.lock();
        let _ = conn.busy_timeout(CHECKPOINT_WAIT);
        let outcome = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0));
        let _ = conn.busy_timeout(BUSY_TIMEOUT);
        match outcome {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint failed");
                false
            }
        }
    }
}

/// Copies the WAL into the database in the background, so most of a checkpoint's work is done
/// before the writer truncates (PASSIVE never blocks the writer). When writes have stopped (the
/// WAL did not change for a whole period), truncates it. Ends when the store is dropped.
fn checkpoint_loop(conn: Connection, stop: std::sync::mpsc::Receiver<()>, mut wal: WalBound) {
    let mut last_size = 0;
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY) {
        let size = wal.size();
        if size > 0 && size == last_size {
            wal.truncate(&conn);
            last_size = wal.size();
            continue;
        }
        last_size = size;
        let _one = wal.one_checkpoint.lock();
        let wal_frames: Result<(i64, i64, i64), _> =
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)));
        if let Err(e) = wal_frames {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
}

fn writer_loop(mut conn: Connection, mut rx: mpsc::UnboundedReceiver<WriteOp>, commit_seconds: Histogram, mut wal: WalBound) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        commit_batch(&mut conn, &mut batch, &commit_seconds);
        wal.after_commit(&conn);
    }
}

/// Applies every op atomically on its own (one bad op does not sink the others), commits once,
/// then answers. If the commit itself fails, every op in the batch fails.
fn commit_batch(conn: &mut Connection, batch: &mut Vec<WriteOp>, commit_seconds: &Histogram) {
    let started = std::time::Instant::now();
    let mut replies: Vec<Reply> = Vec::with_capacity(batch.len());
    let outcome = (|| -> Result<(), rusqlite::Error> {
        let mut tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for op in batch.drain(..) {
            replies.push(match op {
                WriteOp::CreateChat { chat, dedup, window_start_ms, events, reply } => deliver(
                    reply,
                    in_savepoint(&mut tx, |sp| apply_create(sp, *chat, dedup.as_ref(), window_start_ms, &events)),
                ),
                WriteOp::RotateToken { fresh, reuse_after_ms, reply } => {
                    deliver(reply, apply_rotate_token(&tx, fresh, reuse_after_ms))
                }
                WriteOp::Modify { chat_id, change, reply } => {
                    deliver(reply, in_savepoint(&mut tx, |sp| apply_modify(sp, &chat_id, change)))
                }
                WriteOp::P2p { app, uid, new, events, reply } => {
                    deliver(reply, in_savepoint(&mut tx, |sp| apply_p2p(sp, &app, &uid, *new, &events)))
                }
                WriteOp::TaskChat { link, new, events, reply } => {
                    deliver(reply, in_savepoint(&mut tx, |sp| apply_task_chat(sp, &link, *new, &events)))
                }
                WriteOp::LinkTaskChat { link, chat_id, reply } => {
                    deliver(reply, insert_task_link(&tx, &link, &chat_id, false))
                }
                WriteOp::Clear { reply } => deliver(reply, in_savepoint(&mut tx, apply_clear)),
                WriteOp::Import { batches, reply } => {
                    deliver(reply, in_savepoint(&mut tx, |sp| apply_import(sp, batches)))
                }
                WriteOp::LimitGrowth { limit, reply } => deliver(reply, apply_limit_growth(&tx, limit)),
                WriteOp::CreateMessage { message, dedup, window_start_ms, events, reply } => deliver(
                    reply,
                    in_savepoint(&mut tx, |sp| apply_create_message(sp, *message, dedup.as_ref(), window_start_ms, &events)),
                ),
            });
        }
        tx.commit()
    })();
    let commit_error = outcome.err().map(|e| e.to_string());
    // Observed before anyone is answered, so /metrics never lags a reply.
    commit_seconds.observe(started.elapsed().as_secs_f64());
    for reply in replies {
        reply(commit_error.as_deref());
    }
    // Ops never reached (the transaction did not begin) are dropped: their callers get `Closed`.
    batch.clear();
}

/// Sends an op's result once the batch's commit is known; a failed commit fails every op.
type Reply = Box<dyn FnOnce(Option<&str>) + Send>;

fn deliver<T: Send + 'static>(reply: oneshot::Sender<Result<T, StoreError>>, result: Result<T, StoreError>) -> Reply {
    Box::new(move |commit_error| {
        let _ = reply.send(match (commit_error, result) {
            (None, result) => result,
            // The op's own failure says more (a full disk can roll the whole transaction back).
            (Some(_), Err(e)) => Err(e),
            (Some(e), Ok(_)) => Err(StoreError::Backend(format!("commit failed: {e}"))),
        });
    })
}

fn in_savepoint<T>(
    tx: &mut Transaction<'_>,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let sp = tx.savepoint()?;
    match f(&sp) {
        Ok(v) => {
            sp.commit()?;
            Ok(v)
        }
        Err(e) => Err(e), // dropping the savepoint rolls it back
    }
}

fn apply_create(
    tx: &Connection,
    chat: Chat,
    dedup: Option<&DedupKey>,
    window_start_ms: i64,
    events: &[DomainEvent],
) -> Result<Created, StoreError> {
    if let Some(key) = dedup {
        let claimed = tx
            .prepare_cached(
                "INSERT INTO chat_dedup (tenant_key, app_id, uuid, owner, chat_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (tenant_key, app_id, uuid, owner) DO UPDATE
                 SET chat_id = excluded.chat_id, created_at = excluded.created_at
                 WHERE chat_dedup.created_at <= ?7",
            )?
            .execute(params![
                key.tenant_key.0,
                key.app_id.0,
                key.uuid,
                key.owner,
                chat.chat_id.0,
                chat.created_at_ms,
                window_start_ms
            ])?;
        if claimed == 0 {
            let existing = dedup_target(tx, key)?
                .ok_or_else(|| StoreError::Corrupt(format!("dedup key {key:?} points at a missing chat")))?;
            return Ok(Created::Existing(existing));
        }
    }
    insert_chat(tx, &chat)?;
    insert_events(tx, events)?;
    Ok(Created::New(chat))
}

/// Appends events to the outbox; `seq` is the rowid, so max(seq) + 1 each (see 0005_events.sql).
fn insert_events(tx: &Connection, events: &[DomainEvent]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut insert = tx.prepare_cached("INSERT INTO events (type, chat_id, at_ms, body) VALUES (?1, ?2, ?3, ?4)")?;
    for e in events {
        insert.execute(params![e.type_name(), e.chat_id.0, e.at_ms, to_json(e)])?;
    }
    Ok(())
}

fn insert_stored_event(tx: &Connection, e: &StoredEvent) -> Result<(), StoreError> {
    tx.prepare_cached("INSERT INTO events (seq, type, chat_id, at_ms, body) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![e.seq, e.event.type_name(), e.event.chat_id.0, e.event.at_ms, to_json(&e.event)])?;
    Ok(())
}

const EVENTS_SQL: &str = "SELECT seq, body FROM events WHERE seq > ?1 AND (?2 IS NULL OR chat_id = ?2)
                          AND (?3 IS NULL OR type = ?3) ORDER BY seq LIMIT ?4";

fn event_from_row(r: &rusqlite::Row<'_>) -> Result<StoredEvent, StoreError> {
    Ok(StoredEvent { seq: r.get(0)?, event: from_json("events.body", &r.get::<_, String>(1)?)? })
}

fn insert_chat(tx: &Connection, chat: &Chat) -> Result<i64, StoreError> {
    let row = ChatRow::encode(chat)?;
    tx.prepare_cached(
        "INSERT INTO chats (chat_id, tenant_key, creator_app, owner, external, status, created_at, settings,
                            users, bots, user_managers, bot_managers, name, chat_type, chat_mode, last_active_at, user_joined,
                            search_text)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
    )?
    .execute(params![
        row.chat_id,
        row.tenant_key,
        row.creator_app,
        row.owner,
        row.external,
        row.status,
        row.created_at,
        row.settings,
        row.users,
        row.bots,
        row.user_managers,
        row.bot_managers,
        chat.settings.name,
        chat.settings.chat_type,
        chat.settings.chat_mode,
        row.last_active_at,
        row.user_joined,
        chat.settings.search_text(),
    ])?;
    let seq = tx.last_insert_rowid();
    index_bots(tx, seq, &chat.bots)?;
    Ok(seq)
}

fn index_bots(tx: &Connection, seq: i64, bots: &[AppId]) -> Result<(), StoreError> {
    let mut insert = tx.prepare_cached("INSERT OR IGNORE INTO chat_bots (app_id, chat_seq) VALUES (?1, ?2)")?;
    for bot in bots {
        insert.execute(params![bot.0, seq])?;
    }
    Ok(())
}

fn apply_modify(tx: &Connection, chat_id: &ChatId, change: ChatChange) -> Result<Option<Result<Chat, FeishuError>>, StoreError> {
    let Some((seq, mut chat)) = load_chat_where(tx, "chat_id = ?1", params![chat_id.0])?.pop() else {
        return Ok(None);
    };
    let bots_before = chat.bots.clone();
    let events = match change(&mut chat) {
        Ok(events) => events,
        Err(e) => return Ok(Some(Err(e))),
    };
    let row = ChatRow::encode(&chat)?;
    tx.prepare_cached(
        "UPDATE chats SET owner = ?2, external = ?3, status = ?4, settings = ?5, users = ?6, bots = ?7,
                          user_managers = ?8, bot_managers = ?9, name = ?10, chat_type = ?11, last_active_at = ?12,
                          user_joined = ?13, search_text = ?14
         WHERE seq = ?1",
    )?
    .execute(params![
        seq,
        row.owner,
        row.external,
        row.status,
        row.settings,
        row.users,
        row.bots,
        row.user_managers,
        row.bot_managers,
        chat.settings.name,
        chat.settings.chat_type,
        row.last_active_at,
        row.user_joined,
        chat.settings.search_text(),
    ])?;
    if chat.bots != bots_before {
        tx.prepare_cached("DELETE FROM chat_bots WHERE chat_seq = ?1")?.execute(params![seq])?;
        index_bots(tx, seq, &chat.bots)?;
    }
    insert_events(tx, &events)?;
    Ok(Some(Ok(chat)))
}

fn apply_p2p(tx: &Connection, app: &AppId, uid: &Uid, new: Chat, events: &[DomainEvent]) -> Result<Chat, StoreError> {
    let existing: Option<String> = tx
        .prepare_cached("SELECT chat_id FROM p2p_chats WHERE app_id = ?1 AND uid = ?2")?
        .query_row(params![app.0, uid.0], |r| r.get(0))
        .optional()?;
    if let Some(id) = existing {
        return load_chat(tx, &ChatId(id))?.ok_or_else(|| StoreError::Corrupt("p2p chat row missing".into()));
    }
    tx.prepare_cached("INSERT INTO p2p_chats (app_id, uid, chat_id) VALUES (?1, ?2, ?3)")?
        .execute(params![app.0, uid.0, new.chat_id.0])?;
    insert_chat(tx, &new)?;
    insert_events(tx, events)?;
    Ok(new)
}

fn apply_task_chat(tx: &Connection, link: &TaskLink, new: Chat, events: &[DomainEvent]) -> Result<Created, StoreError> {
    let started: Option<String> = tx
        .prepare_cached(
            "SELECT chat_id FROM task_chats WHERE task_id = ?1 AND app_id = ?2 AND started_here = 1
             ORDER BY linked_at DESC LIMIT 1",
        )?
        .query_row(params![link.task_id, link.app_id.0], |r| r.get(0))
        .optional()?;
    if let Some(chat) = started.map(|id| load_chat(tx, &ChatId(id))).transpose()?.flatten() {
        if !chat.is_dissolved() {
            return Ok(Created::Existing(chat));
        }
    }
    insert_chat(tx, &new)?;
    insert_task_link(tx, link, &new.chat_id, true)?;
    insert_events(tx, events)?;
    Ok(Created::New(new))
}

fn insert_task_link(tx: &Connection, link: &TaskLink, chat_id: &ChatId, started_here: bool) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO task_chats (task_id, app_id, chat_id, started_here, linked_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![link.task_id, link.app_id.0, chat_id.0, started_here, link.at_ms])?;
    Ok(())
}

const STATE_TABLES: &[&str] = &["events", "task_chats", "message_dedup", "messages", "p2p_chats", "chat_dedup", "chat_bots", "chats"];

fn apply_clear(tx: &Connection) -> Result<(), StoreError> {
    for table in STATE_TABLES {
        tx.execute(&format!("DELETE FROM {table}"), [])?;
    }
    Ok(())
}

fn apply_limit_growth(tx: &Connection, limit: bool) -> Result<(), StoreError> {
    let pages: i64 = if limit { tx.query_row("PRAGMA page_count", [], |r| r.get(0))? } else { 0xFFFF_FFFE };
    tx.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
    Ok(())
}

/// Empties every table, then stores each record as it arrives; the caller's savepoint makes it
/// all or nothing.
fn apply_import(tx: &Connection, mut batches: mpsc::Receiver<ImportBatch>) -> Result<u64, StoreError> {
    apply_clear(tx)?;
    tx.execute("DELETE FROM tokens", [])?;
    let mut stored = 0;
    loop {
        match batches.blocking_recv() {
            Some(ImportBatch::Records(records)) => {
                for record in records {
                    import_record(tx, record)?;
                    stored += 1;
                }
            }
            Some(ImportBatch::End) => return Ok(stored),
            None => return Err(StoreError::Abandoned),
        }
    }
}

fn import_record(tx: &Connection, record: StateRecord) -> Result<(), StoreError> {
    match record {
        StateRecord::Chat(chat) => {
            insert_chat(tx, &chat)?;
        }
        StateRecord::ChatDedup(d) => {
            tx.prepare_cached(
                "INSERT INTO chat_dedup (tenant_key, app_id, uuid, owner, chat_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![d.key.tenant_key.0, d.key.app_id.0, d.key.uuid, d.key.owner, d.chat_id.0, d.created_at_ms])?;
        }
        StateRecord::P2pChat(p) => {
            tx.prepare_cached("INSERT INTO p2p_chats (app_id, uid, chat_id) VALUES (?1, ?2, ?3)")?
                .execute(params![p.app_id.0, p.uid.0, p.chat_id.0])?;
        }
        StateRecord::Message(m) => {
            tx.prepare_cached("INSERT INTO messages (message_id, chat_id, created_at, body) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![m.message_id.0, m.chat_id.0, m.created_at_ms, to_json(&m)])?;
        }
        StateRecord::MessageDedup(d) => {
            tx.prepare_cached("INSERT INTO message_dedup (app_id, uuid, message_id, created_at) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![d.app_id.0, d.uuid, d.message_id.0, d.created_at_ms])?;
        }
        StateRecord::TaskChat(t) => {
            let link = TaskLink { task_id: t.task_id, app_id: t.link.app_id, at_ms: t.link.linked_at_ms };
            insert_task_link(tx, &link, &t.link.chat_id, t.link.started_here)?;
        }
        StateRecord::Token(token) => apply_put_token(tx, &token)?,
        StateRecord::Event(e) => insert_stored_event(tx, &e)?,
    }
    Ok(())
}

/// Streams every record from one read transaction (so the copy is consistent) on its own
/// connection and thread; each statement steps through its table, so memory holds one row at a
/// time plus what the channel buffers. Stops when the receiver is dropped.
fn export_records(path: &Path, out: &mpsc::Sender<Result<StateRecord, StoreError>>) -> Result<(), StoreError> {
    let conn = open_connection(path)?;
    // A sequential scan: a small page cache and no memory map, so the export's footprint does
    // not grow with the database.
    conn.pragma_update(None, "cache_size", -2048)?;
    conn.pragma_update(None, "mmap_size", 0)?;
    let tx = conn.unchecked_transaction()?;
    let send = |record: StateRecord| out.blocking_send(Ok(record)).is_ok();
    fn each(
        tx: &Connection,
        sql: &str,
        mut row: impl FnMut(&rusqlite::Row<'_>) -> Result<StateRecord, StoreError>,
        send: &impl Fn(StateRecord) -> bool,
    ) -> Result<bool, StoreError> {
        let mut stmt = tx.prepare(sql)?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            if !send(row(r)?) {
                return Ok(false);
            }
        }
        Ok(true)
    }
    type RecordFromRow = fn(&rusqlite::Row<'_>) -> Result<StateRecord, StoreError>;
    let tables: [(&str, RecordFromRow); 8] = [
        (&format!("SELECT {CHAT_COLUMNS} FROM chats ORDER BY seq"), |r| Ok(StateRecord::Chat(chat_from_row(r)?.1))),
        ("SELECT tenant_key, app_id, uuid, owner, chat_id, created_at FROM chat_dedup ORDER BY created_at, chat_id", |r| {
            Ok(StateRecord::ChatDedup(DedupRecord {
                key: DedupKey { tenant_key: TenantKey(r.get(0)?), app_id: AppId(r.get(1)?), uuid: r.get(2)?, owner: r.get(3)? },
                chat_id: ChatId(r.get(4)?),
                created_at_ms: r.get(5)?,
            }))
        }),
        ("SELECT app_id, uid, chat_id FROM p2p_chats ORDER BY app_id, uid", |r| {
            Ok(StateRecord::P2pChat(P2pRecord { app_id: AppId(r.get(0)?), uid: Uid(r.get(1)?), chat_id: ChatId(r.get(2)?) }))
        }),
        ("SELECT body FROM messages ORDER BY seq", |r| Ok(StateRecord::Message(from_json("messages.body", &r.get::<_, String>(0)?)?))),
        ("SELECT app_id, uuid, message_id, created_at FROM message_dedup ORDER BY created_at, message_id", |r| {
            Ok(StateRecord::MessageDedup(MessageDedupRecord {
                app_id: AppId(r.get(0)?),
                uuid: r.get(1)?,
                message_id: MessageId(r.get(2)?),
                created_at_ms: r.get(3)?,
            }))
        }),
        (TASK_LINKS_SQL, |r| Ok(StateRecord::TaskChat(task_link_from_row(r)?))),
        (&format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY issued_at, token"), |r| {
            Ok(StateRecord::Token(token_record(token_from_row(r)?)?))
        }),
        ("SELECT seq, body FROM events ORDER BY seq", |r| Ok(StateRecord::Event(event_from_row(r)?))),
    ];
    for (sql, row) in tables {
        if !each(&tx, sql, row, &send)? {
            break;
        }
    }
    Ok(())
}

const TASK_LINKS_SQL: &str =
    "SELECT task_id, chat_id, app_id, started_here, linked_at FROM task_chats ORDER BY linked_at, task_id, chat_id";

fn task_link_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TaskChatRecord> {
    Ok(TaskChatRecord {
        task_id: r.get(0)?,
        link: LinkedChat { chat_id: ChatId(r.get(1)?), app_id: AppId(r.get(2)?), started_here: r.get(3)?, linked_at_ms: r.get(4)? },
    })
}

fn read_task_links(conn: &Connection) -> Result<Vec<TaskChatRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(TASK_LINKS_SQL)?;
    let rows = stmt.query_map([], task_link_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn apply_create_message(
    tx: &Connection,
    message: Message,
    dedup: Option<&MessageDedupKey>,
    window_start_ms: i64,
    events: &[DomainEvent],
) -> Result<Message, StoreError> {
    if let Some(key) = dedup {
        let claimed = tx
            .prepare_cached(
                "INSERT INTO message_dedup (app_id, uuid, message_id, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (app_id, uuid) DO UPDATE SET message_id = excluded.message_id, created_at = excluded.created_at
                 WHERE message_dedup.created_at <= ?5",
            )?
            .execute(params![key.app_id.0, key.uuid, message.message_id.0, message.created_at_ms, window_start_ms])?;
        if claimed == 0 {
            let first: String = tx
                .prepare_cached("SELECT message_id FROM message_dedup WHERE app_id = ?1 AND uuid = ?2")?
                .query_row(params![key.app_id.0, key.uuid], |r| r.get(0))?;
            return load_message(tx, &MessageId(first))?.ok_or_else(|| StoreError::Corrupt("deduped message missing".into()));
        }
    }
    tx.prepare_cached("INSERT INTO messages (message_id, chat_id, created_at, body) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![message.message_id.0, message.chat_id.0, message.created_at_ms, to_json(&message)])?;
    tx.prepare_cached("UPDATE chats SET last_active_at = max(last_active_at, ?2) WHERE chat_id = ?1")?
        .execute(params![message.chat_id.0, message.created_at_ms])?;
    insert_events(tx, events)?;
    Ok(message)
}

fn load_message(conn: &Connection, id: &MessageId) -> Result<Option<Message>, StoreError> {
    let body: Option<String> = conn
        .prepare_cached("SELECT body FROM messages WHERE message_id = ?1")?
        .query_row(params![id.0], |r| r.get(0))
        .optional()?;
    body.map(|b| from_json("messages.body", &b)).transpose()
}

fn dedup_target(conn: &Connection, key: &DedupKey) -> Result<Option<Chat>, StoreError> {
    let chat_id: Option<String> = conn
        .prepare_cached("SELECT chat_id FROM chat_dedup WHERE tenant_key = ?1 AND app_id = ?2 AND uuid = ?3 AND owner = ?4")?
        .query_row(params![key.tenant_key.0, key.app_id.0, key.uuid, key.owner], |r| r.get(0))
        .optional()?;
    match chat_id {
        Some(id) => load_chat(conn, &ChatId(id)),
        None => Ok(None),
    }
}

/// Runs in the writer, which serialises it against every other rotation.
fn apply_rotate_token(tx: &Connection, fresh: TokenRecord, reuse_after_ms: i64) -> Result<TokenRecord, StoreError> {
    let latest = tx
        .prepare_cached(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE app_id = ?1 AND tenant_key = ?2 AND kind = ?3
             ORDER BY expires_at DESC LIMIT 1"
        ))?
        .query_row(params![fresh.app_id.0, fresh.tenant_key.0, fresh.kind.as_str()], token_from_row)
        .optional()?
        .map(token_record)
        .transpose()?;
    match latest {
        Some(t) if t.expires_at_ms > reuse_after_ms => Ok(t),
        _ => {
            apply_put_token(tx, &fresh)?;
            Ok(fresh)
        }
    }
}

fn apply_put_token(tx: &Connection, t: &TokenRecord) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO tokens (token, kind, app_id, tenant_key, issued_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![t.token, t.kind.as_str(), t.app_id.0, t.tenant_key.0, t.issued_at_ms, t.expires_at_ms])?;
    Ok(())
}

fn chat_from_row(r: &rusqlite::Row<'_>) -> Result<(i64, Chat), StoreError> {
    let row = ChatRow {
        chat_id: r.get(1)?,
        tenant_key: r.get(2)?,
        creator_app: r.get(3)?,
        owner: r.get(4)?,
        external: r.get(5)?,
        status: codec::status_from(&r.get::<_, String>(6)?),
        created_at: r.get(7)?,
        settings: r.get(8)?,
        users: r.get(9)?,
        bots: r.get(10)?,
        user_managers: r.get(11)?,
        bot_managers: r.get(12)?,
        last_active_at: r.get(13)?,
        user_joined: r.get(14)?,
    };
    Ok((r.get(0)?, row.decode()?))
}

/// Chats matching `condition` (SQL over the `chats` table, aliased `c`).
fn load_chat_where(conn: &Connection, condition: &str, params: impl rusqlite::Params) -> Result<Vec<(i64, Chat)>, StoreError> {
    let sql = format!("SELECT {CHAT_COLUMNS} FROM chats c WHERE {condition}");
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(chat_from_row(row)?);
    }
    Ok(out)
}

fn load_chat(conn: &Connection, chat_id: &ChatId) -> Result<Option<Chat>, StoreError> {
    Ok(load_chat_where(conn, "chat_id = ?1", params![chat_id.0])?.pop().map(|(_, c)| c))
}

fn token_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
}

#[async_trait]
impl Store for SqliteStore {
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
        let (reply, rx) = oneshot::channel();
        self.write(WriteOp::CreateChat { chat: Box::new(chat), dedup, window_start_ms, events, reply }, rx).await
    }

    async fn find_dedup(&self, key: &DedupKey, window_start_ms: i64) -> Result<Option<Chat>, StoreError> {
        let key = key.clone();
        self.read(move |conn| {
            let live: Option<String> = conn
                .prepare_cached(
                    "SELECT chat_id FROM chat_dedup WHERE tenant_key = ?1 AND app_id = ?2 AND uuid = ?3 AND owner = ?4
                     AND created_at > ?5",
                )?
                .query_row(params![key.tenant_key.0, key.app_id.0, key.uuid, key.owner, window_start_ms], |r| r.get(0))
                .optional()?;
            match live {
                Some(id) => load_chat(conn, &ChatId(id)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn get_chat(&self, chat_id: &ChatId) -> Result<Option<Chat>, StoreError> {
        let id = chat_id.clone();
        self.read(move |conn| load_chat(conn, &id)).await
    }

    async fn modify_chat(&self, chat_id: &ChatId, change: ChatChange) -> Result<Option<Result<Chat, FeishuError>>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.write(WriteOp::Modify { chat_id: chat_id.clone(), change, reply }, rx).await
    }

    async fn chats_of_bot(
        &self,
        app: &AppId,
        tenant: &TenantKey,
        order: ChatOrder,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Vec<(Cursor, Chat)>, StoreError> {
        let (app, tenant) = (app.0.clone(), tenant.0.clone());
        self.read(move |conn| {
            let membership = "c.seq IN (SELECT chat_seq FROM chat_bots WHERE app_id = ?1) AND c.tenant_key = ?2
                              AND c.chat_mode = 'group' AND c.status = 'normal'";
            let rows = match (order, after) {
                (ChatOrder::CreatedAsc, None) => load_chat_where(
                    conn,
                    &format!("{membership} ORDER BY c.seq LIMIT ?3"),
                    params![app, tenant, limit as i64],
                )?,
                (ChatOrder::CreatedAsc, Some(c)) => load_chat_where(
                    conn,
                    &format!("{membership} AND c.seq > ?4 ORDER BY c.seq LIMIT ?3"),
                    params![app, tenant, limit as i64, c.seq],
                )?,
                (ChatOrder::ActiveDesc, None) => load_chat_where(
                    conn,
                    &format!("{membership} ORDER BY c.last_active_at DESC, c.seq DESC LIMIT ?3"),
                    params![app, tenant, limit as i64],
                )?,
                (ChatOrder::ActiveDesc, Some(c)) => load_chat_where(
                    conn,
                    &format!(
                        "{membership} AND (c.last_active_at < ?4 OR (c.last_active_at = ?4 AND c.seq < ?5))
                         ORDER BY c.last_active_at DESC, c.seq DESC LIMIT ?3"
                    ),
                    params![app, tenant, limit as i64, c.key, c.seq],
                )?,
            };
            Ok(rows.into_iter().map(|(seq, chat)| (order.cursor(seq, &chat), chat)).collect())
        })
        .await
    }

    async fn search_chats(
        &self,
        app: &AppId,
        tenant: &TenantKey,
        query: &str,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<(i64, Chat)>, StoreError> {
        let (app, tenant) = (app.0.clone(), tenant.0.clone());
        // instr() over the search text folded in Rust (name and i18n names): a plain substring match
        // that needs no LIKE escaping, folding every script as PostgreSQL does.
        let needle = fold_case(query);
        self.read(move |conn| {
            load_chat_where(
                conn,
                "c.tenant_key = ?2 AND c.status = 'normal' AND c.chat_mode = 'group' AND c.seq > ?4
                 AND (c.chat_type = 'public' OR c.seq IN (SELECT chat_seq FROM chat_bots WHERE app_id = ?1))
                 AND instr(c.search_text, ?3) > 0 ORDER BY c.seq LIMIT ?5",
                params![app, tenant, needle, after_seq, limit as i64],
            )
        })
        .await
    }

    async fn public_name_taken(&self, tenant: &TenantKey, name: &str, except: &ChatId) -> Result<bool, StoreError> {
        let (tenant, name, except) = (tenant.0.clone(), name.to_string(), except.0.clone());
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT 1 FROM chats WHERE tenant_key = ?1 AND chat_type = 'public' AND name = ?2
                     AND status = 'normal' AND chat_id != ?3 LIMIT 1",
                )?
                .exists(params![tenant, name, except])?)
        })
        .await
    }

    async fn p2p_chat(&self, app: &AppId, uid: &Uid, new: Chat, events: Vec<DomainEvent>) -> Result<Chat, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.write(WriteOp::P2p { app: app.clone(), uid: uid.clone(), new: Box::new(new), events, reply }, rx).await
    }

    async fn create_message(
        &self,
        message: Message,
        dedup: Option<MessageDedupKey>,
        window_start_ms: i64,
        events: Vec<DomainEvent>,
    ) -> Result<Message, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.write(WriteOp::CreateMessage { message: Box::new(message), dedup, window_start_ms, events, reply }, rx).await
    }

    async fn list_messages(&self, q: MessageQuery) -> Result<Vec<(Cursor, Message)>, StoreError> {
        self.read(move |conn| {
            let (cmp, dir) = match q.order {
                MessageOrder::Asc => (">", "ASC"),
                MessageOrder::Desc => ("<", "DESC"),
            };
            let sql = format!(
                "SELECT created_at, seq, body FROM messages WHERE chat_id = ?1 AND created_at >= ?2 AND created_at <= ?3
                 AND (?4 IS NULL OR created_at {cmp} ?4 OR (created_at = ?4 AND seq {cmp} ?5))
                 ORDER BY created_at {dir}, seq {dir} LIMIT ?6"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut rows = stmt.query(params![
                q.chat_id.0,
                q.start_ms.unwrap_or(i64::MIN),
                q.end_ms.unwrap_or(i64::MAX),
                q.after.map(|c| c.key),
                q.after.map(|c| c.seq).unwrap_or(0),
                q.limit as i64
            ])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                let cursor = Cursor { key: row.get(0)?, seq: row.get(1)? };
                out.push((cursor, from_json("messages.body", &row.get::<_, String>(2)?)?));
            }
            Ok(out)
        })
        .await
    }

    async fn get_message(&self, id: &MessageId) -> Result<Option<Message>, StoreError> {
        let id = id.clone();
        self.read(move |conn| load_message(conn, &id)).await
    }

    async fn task_chat(&self, link: TaskLink, new: Chat, events: Vec<DomainEvent>) -> Result<Created, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.write(WriteOp::TaskChat { link, new: Box::new(new), events, reply }, rx).await
    }

    async fn link_task_chat(&self, link: TaskLink, chat_id: &ChatId) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.write(WriteOp::LinkTaskChat { link, chat_id: chat_id.clone(), reply }, rx).await
    }

    async fn task_links(&self) -> Result<Vec<TaskChatRecord>, StoreError> {
        self.read(read_task_links).await
    }

    async fn events(&self, q: EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(EVENTS_SQL)?;
            let mut rows =
                stmt.query(params![q.after, q.chat_id.map(|c| c.0), q.type_name, q.limit as i64])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(event_from_row(row)?);
            }
            Ok(out)
        })
        .await
    }

    async fn count_chats(&self) -> Result<u64, StoreError> {
        self.read(|conn| Ok(conn.query_row("SELECT count(*) FROM chats", [], |r| r.get::<_, i64>(0))? as u64)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?)).await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.read(|conn| {
            let (chats, members): (i64, i64) =
                conn.query_row("SELECT count(*), coalesce(sum(length(users)), 0) / 10 FROM chats", [], |r| Ok((r.get(0)?, r.get(1)?)))?;
            let messages: i64 = conn.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))?;
            Ok(StoreStats { chats: chats as u64, members: members as u64, messages: messages as u64 })
        })
        .await
    }

    async fn all_chats(&self, after_seq: i64, limit: usize) -> Result<Vec<(i64, Chat)>, StoreError> {
        self.read(move |conn| load_chat_where(conn, "seq > ?1 ORDER BY seq LIMIT ?2", params![after_seq, limit as i64])).await
    }

    fn export(&self) -> mpsc::Receiver<Result<StateRecord, StoreError>> {
        let (out, records) = mpsc::channel(EXPORT_BUFFER);
        let path = self.path.clone();
        let spawned = std::thread::Builder::new().name("sqlite-export".into()).spawn({
            let out = out.clone();
            move || {
                if let Err(e) = export_records(&path, &out) {
                    let _ = out.blocking_send(Err(e));
                }
            }
        });
        if let Err(e) = spawned {
            let _ = out.try_send(Err(StoreError::Backend(e.to_string())));
        }
        records
    }

    async fn import(&self, batches: mpsc::Receiver<ImportBatch>) -> Result<u64, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.write(WriteOp::Import { batches, reply }, rx).await
    }

    async fn clear(&self) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.write(WriteOp::Clear { reply }, rx).await
    }

    async fn rotate_token(&self, fresh: TokenRecord, reuse_after_ms: i64) -> Result<TokenRecord, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.write(WriteOp::RotateToken { fresh, reuse_after_ms, reply }, rx).await
    }

    async fn find_token(&self, token: &str) -> Result<Option<TokenRecord>, StoreError> {
        let token = token.to_string();
        self.read(move |conn| {
            conn.prepare_cached(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE token = ?1"))?
            .query_row(params![token], token_from_row)
            .optional()?
            .map(token_record)
            .transpose()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::events::{Actor, EventBody};

    fn event(n: i64) -> DomainEvent {
        DomainEvent {
            chat_id: ChatId(format!("oc_{n}")),
            actor: Actor::App(AppId("cli_a".into())),
            at_ms: n,
            body: EventBody::ManagersAdded { users: Vec::new(), bots: Vec::new() },
        }
    }

    /// The rowid seq stays gap-free when a savepoint that appended events rolls back: the next
    /// insert takes max(seq) + 1 again, inside the same batch and after its commit.
    #[test]
    fn event_seqs_have_no_gap_after_a_rolled_back_savepoint() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open_connection(&dir.path().join("t.db")).unwrap();
        migrate(&mut conn).unwrap();
        let mut tx = conn.transaction().unwrap();
        in_savepoint(&mut tx, |sp| insert_events(sp, &[event(1), event(2)])).unwrap();
        let refused: Result<(), StoreError> = in_savepoint(&mut tx, |sp| {
            insert_events(sp, &[event(3)])?;
            Err(StoreError::Backend("rolled back".into()))
        });
        assert!(refused.is_err());
        in_savepoint(&mut tx, |sp| insert_events(sp, &[event(4)])).unwrap();
        tx.commit().unwrap();
        let tx = conn.transaction().unwrap();
        insert_events(&tx, &[event(5)]).unwrap();
        tx.rollback().unwrap();
        insert_events(&conn, &[event(6)]).unwrap();
        let rows: Vec<(i64, i64)> = conn
            .prepare("SELECT seq, at_ms FROM events ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows, [(1, 1), (2, 2), (3, 4), (4, 6)]);
    }
}
