//! The embedded default: SQLite in WAL mode under the data dir.
//!
//! Writes go to one writer thread that drains whatever is queued and commits it as one
//! transaction (group commit, `synchronous=FULL`): every caller's reply is sent only after the
//! commit that holds its change has reached the disk. Reads use a small pool of connections.

use std::cell::Cell;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::{mpsc, oneshot};

use super::sql::{self, Cols, EachRow, Param, Sql, Tx, STATE_TABLES, CREDENTIAL_TABLES};
use super::{BotChatsQuery, ChatSearchQuery, NewChat, NewMessage, ChatChange, Created, Cursor, DedupKey,
    EventQuery, ImportBatch, MessageDedupKey, MessageQuery, OutboxStats, StateRecord, MessageChange,
    ReactionQuery, ReadMark, ReadQuery, ReadRecord, Store, StoreError, StoreStats, TaskChatRecord,
    TaskLink, TokenRecord, EXPORT_BUFFER, AppTicketRecord, CardToken, CardTokenUse, AttemptFilter, AttemptRecord, Delivery,
    DeliveryClaim, DeliveryQueue, FanOut, FinishedAttempt, NewDelivery};
use super::codec::{ChatRow, EventRow};
use crate::domain::chat::Chat;
use crate::domain::custom_bots::CustomBot;
use crate::domain::events::{DomainEvent, StoredEvent};
use crate::domain::ids::{AppId, ChatId, MessageId, TenantKey, Uid};
use crate::domain::media::{Blob, BlobMeta};
use crate::domain::message::Message;
use crate::domain::reaction::Reaction;
use crate::domain::subscriptions::EventSettings;
use crate::error::FeishuError;

const MIGRATIONS: &[&str] =
    &[
    include_str!("migrations/sqlite/0001_init.sql"),
    include_str!("migrations/sqlite/0002_lifecycle.sql"),
    include_str!("migrations/sqlite/0003_task_chats.sql"),
    include_str!("migrations/sqlite/0004_search_text.sql"),
    include_str!("migrations/sqlite/0005_events.sql"),
    OUTBOX_COMPACT_MIGRATION,
    include_str!("migrations/sqlite/0007_blobs.sql"),
    include_str!("migrations/sqlite/0008_message_ops.sql"),
    include_str!("migrations/sqlite/0009_custom_bots.sql"),
    include_str!("migrations/sqlite/0010_app_tickets.sql"),
    include_str!("migrations/sqlite/0011_deliveries.sql"),
    include_str!("migrations/sqlite/0012_card_tokens.sql"),
    include_str!("migrations/sqlite/0013_threads.sql"),
];
/// The migration that compacts the outbox; the rows it finds are rewritten in Rust right after it
/// (found by its text, so renumbering the migrations cannot miss it).
const OUTBOX_COMPACT_MIGRATION: &str = include_str!("migrations/sqlite/0006_outbox_compact.sql");
/// The migration that adds `chats.search_text`; its rows are backfilled in Rust right after it.
const SEARCH_TEXT_MIGRATION: usize = 4;
/// Most operations one commit carries; bounds latency of the first op in a burst.
const MAX_BATCH: usize = 512;
const READERS: usize = 4;
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);
/// WAL size at which the writer itself checkpoints and restarts the WAL between two commits.
/// Background PASSIVE checkpoints copy most frames before that, but under constant writes they
/// never catch up with the end of the WAL, so SQLite never starts it over: without this the WAL
/// grows without bound.
const WAL_CHECKPOINT_BYTES: u64 = 32 << 20;
/// What SQLite leaves of a WAL it starts over (`journal_size_limit`).
const JOURNAL_SIZE_LIMIT: i64 = 64 << 20;
/// How long a truncating checkpoint waits for readers still on old snapshots before giving up
/// (and trying again once the WAL has grown by another `WAL_CHECKPOINT_BYTES / 4`).
const CHECKPOINT_WAIT: std::time::Duration = std::time::Duration::from_millis(250);
/// Prepared statements each connection keeps (`prepare_cached`).
const STATEMENT_CACHE: usize = 256;
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// The writer's page cache (KiB; the readers keep 64 MiB). Once the outbox prune has freed pages,
/// B-tree splits reuse them out of order, and SQLite swaps page numbers through a temporary one
/// (the pending-byte page, 1 GiB into the file). In a database under 1 GiB that page lies past
/// the end, so the commit then scans the cache's whole hash table for pages to drop
/// (`pcache1TruncateUnsafe`): at 64 MiB that was 6–10 % of the writer's time under a create load
/// once the prune ran (issue 12, measured with `perf`). The writer's hot pages are the tables'
/// right edges; what else it touches is read through the memory map or the WAL.
const WRITER_CACHE_KIB: i64 = 8 << 10;

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
    /// A change of the shared SQL (`sql`) in a savepoint of its own, answering its caller itself
    /// (see `SqliteStore::change`).
    Change(Box<dyn FnOnce(&Batch<'_>) -> Reply + Send>),
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
    // 64 MiB of page cache per connection (the writer's is smaller, `WRITER_CACHE_KIB`).
    conn.pragma_update(None, "cache_size", -65536)?;
    // Random reads of a large database through the OS page cache without a syscall each.
    conn.pragma_update(None, "mmap_size", 4i64 << 30)?;
    // Checkpoints run on their own thread (see `checkpoint_loop`), never inside a commit.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
    // Room for every statement of `sql` (rusqlite keeps 16): a connection that cycles through
    // more than the cache holds compiles each statement again at every use.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // Plans never depend on bound values (the query planner stability guarantee). Without it,
    // SQLite built with STAT4 marks every statement whose `LIMIT $n` (or indexed comparison)
    // reads a parameter and compiles it again at the first step after each new binding: the
    // delivery claims spent a third of the writer's time in the parser.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
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
        if *sql == OUTBOX_COMPACT_MIGRATION {
            ready(sql::compact_legacy_events(&mut Lite(&tx, None)))?;
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
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
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
        // The same WAL, lock and batch count, for the checkpoint thread.
        let idle_wal = wal.clone();
        conn.wal_hook(Some(note_wal_frames));
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

    /// Runs `f` (an algorithm of `sql` over the writer's savepoint) in the next group commit;
    /// its result once that commit is durable.
    async fn change<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Lite<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        let run = move |batch: &Batch<'_>| deliver(reply, in_savepoint(batch, f));
        self.write(WriteOp::Change(Box::new(run)), rx).await
    }

    /// Test hook: with `true`, the database may not grow past its current size, so writes that
    /// need a new page fail as on a full disk; `false` lifts the cap.
    #[doc(hidden)]
    pub async fn limit_growth_for_tests(&self, limit: bool) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.write(WriteOp::LimitGrowth { limit, reply }, rx).await
    }
}

/// Keeps the WAL bounded: the writer restarts it once it holds `WAL_CHECKPOINT_BYTES` of frames
/// (between commits, so no commit races it), and the checkpoint thread truncates it to zero bytes
/// when writes have stopped. `synchronous=FULL` stays: a checkpoint only moves committed frames
/// into the database file, which SQLite fsyncs before the WAL starts over.
///
/// Under load the WAL is restarted, not truncated: the next commit writes it again from its first
/// byte, over blocks the file already has (SQLite cuts the file to `JOURNAL_SIZE_LIMIT` then).
/// Truncating made every bound a file truncation and the following megabytes new allocations,
/// and the writer (every commit behind it) waited for both (issue 12).
#[derive(Clone)]
struct WalBound {
    wal: PathBuf,
    /// Held through every checkpoint: SQLite runs one at a time and fails a second at once, so
    /// the writer's checkpoint waits for a background one instead of failing on it.
    one_checkpoint: std::sync::Arc<parking_lot::Mutex<()>>,
    /// Batches begun plus batches committed (odd while one is in progress); the checkpoint
    /// thread sees writes have stopped when it stands still at an even value.
    batches: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// The WAL's size (in frames, as SQLite counts them) at which the writer next tries a restart.
    next_at: u64,
}

/// Bytes of one WAL frame: a page and its 24-byte header (the writer's pages are SQLite's default
/// 4096 bytes; a larger page only makes the bound count in larger steps).
const WAL_FRAME_BYTES: u64 = 4096 + 24;
/// `WAL_CHECKPOINT_BYTES` in frames, the unit SQLite's WAL hook counts in.
const WAL_CHECKPOINT_FRAMES: u64 = WAL_CHECKPOINT_BYTES / WAL_FRAME_BYTES;

thread_local! {
    /// Frames in the WAL after this thread's last commit (`note_wal_frames`): the WAL's logical
    /// size, which its file's no longer tells once the WAL is restarted in place.
    static WAL_FRAMES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// SQLite's WAL hook (it runs on the committing thread, after each commit).
fn note_wal_frames(_: &rusqlite::hooks::Wal, frames: std::ffi::c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.set(frames.max(0) as u64);
    Ok(())
}

impl WalBound {
    fn new(db: &Path, one_checkpoint: std::sync::Arc<parking_lot::Mutex<()>>) -> Self {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        WalBound { wal: wal.into(), one_checkpoint, batches: Default::default(), next_at: WAL_CHECKPOINT_FRAMES }
    }

    fn size(&self) -> u64 {
        std::fs::metadata(&self.wal).map(|m| m.len()).unwrap_or(0)
    }

    /// Before the writer begins a batch.
    fn before_batch(&self) {
        self.batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// After a commit on the writer's connection (which has `note_wal_frames` as its WAL hook):
    /// restarts the WAL once it is large enough.
    fn after_commit(&mut self, conn: &Connection) {
        self.batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let frames = WAL_FRAMES.get();
        if frames >= self.next_at {
            if self.checkpoint(conn, "RESTART") {
                self.next_at = WAL_CHECKPOINT_FRAMES;
            } else {
                // Readers hold old snapshots (a long export): try again after more growth.
                self.next_at = frames + WAL_CHECKPOINT_FRAMES / 4;
            }
        }
    }

    /// Copies the whole WAL into the database and truncates it to zero bytes; false when readers
    /// on old snapshots kept it from completing within `CHECKPOINT_WAIT`.
    fn truncate(&mut self, conn: &Connection) -> bool {
        self.checkpoint(conn, "TRUNCATE")
    }

    /// A `TRUNCATE` or `RESTART` checkpoint: true when it completed within `CHECKPOINT_WAIT`.
    fn checkpoint(&mut self, conn: &Connection, mode: &str) -> bool {
        let _one = self.one_checkpoint.lock();
        let _ = conn.busy_timeout(CHECKPOINT_WAIT);
        let outcome = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| r.get::<_, i64>(0));
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
/// before the writer restarts it (PASSIVE never blocks the writer). When writes have stopped (no
/// batch begun or committed for a whole period, none in progress: a long import is not idle),
/// truncates it. Ends when the store is dropped.
fn checkpoint_loop(conn: Connection, stop: std::sync::mpsc::Receiver<()>, mut wal: WalBound) {
    let mut last_batches = u64::MAX;
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY) {
        let batches = wal.batches.load(std::sync::atomic::Ordering::Relaxed);
        let idle = batches == last_batches && batches.is_multiple_of(2);
        last_batches = batches;
        if idle {
            if wal.size() > 0 {
                wal.truncate(&conn);
            }
            continue;
        }
        let _one = wal.one_checkpoint.lock();
        let wal_frames: Result<(i64, i64, i64), _> =
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)));
        if let Err(e) = wal_frames {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
}

fn writer_loop(conn: Connection, mut rx: mpsc::UnboundedReceiver<WriteOp>, commit_seconds: Histogram, mut wal: WalBound) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let tail = OutboxTail::default();
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        wal.before_batch();
        commit_batch(&conn, &mut batch, &tail, &commit_seconds);
        wal.after_commit(&conn);
    }
}

/// Applies every op atomically on its own (one bad op does not sink the others), commits once,
/// then answers. If the commit itself fails, every op in the batch fails.
fn commit_batch(conn: &Connection, batch: &mut Vec<WriteOp>, tail: &OutboxTail, commit_seconds: &Histogram) {
    let started = std::time::Instant::now();
    let mut replies: Vec<Reply> = Vec::with_capacity(batch.len());
    let outcome = (|| -> Result<(), rusqlite::Error> {
        // BEGIN and COMMIT as cached statements, like the savepoints (`in_savepoint`): rusqlite's
        // `Transaction` compiles both anew each time, two parses per commit (issue 12).
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        let tx = &Batch { conn, tail, alone: batch.len() == 1 };
        for op in batch.drain(..) {
            replies.push(match op {
                WriteOp::CreateChat { chat, dedup, window_start_ms, events, reply } => deliver(
                    reply,
                    in_savepoint(tx, |sp| ready(sql::create_chat(sp, *chat, dedup.as_ref(), window_start_ms, &events))),
                ),
                WriteOp::RotateToken { fresh, reuse_after_ms, reply } => {
                    deliver(reply, ready(sql::rotate_token(&mut Lite(conn, Some(tail)), fresh, reuse_after_ms)))
                }
                WriteOp::Modify { chat_id, change, reply } => {
                    deliver(reply, in_savepoint(tx, |sp| ready(sql::modify_chat(sp, &chat_id, change))))
                }
                WriteOp::P2p { app, uid, new, events, reply } => {
                    deliver(reply, in_savepoint(tx, |sp| ready(sql::p2p_chat(sp, &app, &uid, *new, &events))))
                }
                WriteOp::TaskChat { link, new, events, reply } => {
                    deliver(reply, in_savepoint(tx, |sp| ready(sql::task_chat(sp, &link, *new, &events))))
                }
                WriteOp::LinkTaskChat { link, chat_id, reply } => {
                    deliver(reply, ready(sql::insert_task_link(&mut Lite(conn, Some(tail)), &link, &chat_id, false)))
                }
                WriteOp::Clear { reply } => deliver(reply, in_savepoint(tx, |sp| ready(sp.clear(false)))),
                WriteOp::Import { batches, reply } => {
                    deliver(reply, in_savepoint(tx, |sp| ready(sql::import(sp, batches))))
                }
                WriteOp::LimitGrowth { limit, reply } => deliver(reply, apply_limit_growth(conn, limit)),
                WriteOp::CreateMessage { message, dedup, window_start_ms, events, reply } => deliver(
                    reply,
                    in_savepoint(tx, |sp| ready(sql::create_message(sp, *message, dedup.as_ref(), window_start_ms, &events))),
                ),
                WriteOp::Change(run) => run(tx),
            });
        }
        conn.prepare_cached("COMMIT")?.execute([]).map(drop)
    })();
    if outcome.is_err() && !conn.is_autocommit() {
        // As when rusqlite's `Transaction` is dropped unfinished: what was begun is rolled back.
        let _ = conn.execute_batch("ROLLBACK");
    }
    let commit_error = outcome.err().map(|e| e.to_string());
    if commit_error.is_some() {
        // Whatever the batch appended is gone with it.
        tail.forget();
    }
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

/// What the writer's ops run in: the batch's transaction on the writer's connection, the writer's
/// `OutboxTail`, and whether the op is the only one of its batch.
struct Batch<'c> {
    conn: &'c Connection,
    tail: &'c OutboxTail,
    alone: bool,
}

/// Runs an op in a savepoint of its own: one failed op leaves the rest of its batch as it was.
/// An op alone in its batch needs none: its failure rolls the whole transaction back and begins
/// an empty one, which the batch then commits. A savepoint copies every page it changes into a
/// sub-journal, and its two statements ran for every create that had its commit to itself.
///
/// The savepoint statements are prepared once per connection (`prepare_cached`), like every other
/// statement of the writer: rusqlite's `Savepoint` parses `SAVEPOINT`/`RELEASE` text anew each
/// time, which cost every create two statement compilations (issue 12).
fn in_savepoint<T>(batch: &Batch<'_>, f: impl FnOnce(&mut Lite<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
    let Batch { conn, tail, alone } = *batch;
    let run = |sql: &str| -> Result<(), StoreError> { Ok(conn.prepare_cached(sql)?.execute([]).map(drop)?) };
    if alone {
        let outcome = f(&mut Lite(conn, Some(tail)));
        if outcome.is_err() {
            // If SQLite rolled the transaction back itself (a full disk), there is none to end;
            // a failed BEGIN fails the batch's commit, and the op's own error is reported.
            if !conn.is_autocommit() {
                let _ = run("ROLLBACK");
            }
            let _ = run("BEGIN IMMEDIATE");
            tail.forget();
        }
        return outcome;
    }
    run("SAVEPOINT op")?;
    let outcome = f(&mut Lite(conn, Some(tail))).and_then(|v| run("RELEASE op").map(|()| v));
    if outcome.is_err() {
        // Undoes the op's changes and ends its savepoint; the batch's transaction goes on. As
        // when rusqlite's `Savepoint` is dropped, a failure here (SQLite rolled the whole
        // transaction back itself, e.g. on a full disk) leaves the op's own error to report.
        let _ = run("ROLLBACK TO op").and_then(|()| run("RELEASE op"));
        // Events the op appended may have gone with it.
        tail.forget();
    }
    outcome
}

/// Runs a future of the shared SQL (`super::sql`) over `Lite`: its statements run synchronously,
/// so it is ready at its first poll.
fn ready<T>(f: impl std::future::Future<Output = T>) -> T {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => unreachable!("SQLite statements never wait"),
    }
}

/// The shared SQL's `Tx` on a SQLite connection (the writer's savepoint with its `OutboxTail`, or
/// a reader's connection); statements are prepared once per connection (`prepare_cached`).
struct Lite<'c>(&'c Connection, Option<&'c OutboxTail>);

/// The writer's note of the outbox's last `bytes_end`, so appending an event need not look it up
/// (a lookup of the last row cost every create ~12 k instructions, issue 12); PostgreSQL keeps
/// the same in its `event_seq` row. The writer is the only connection that appends events, and
/// pruning spares the newest one, so the note stays right until something it did not see: a
/// savepoint or a commit that failed, a clear, an import. Those forget it (`None`), and the next
/// append reads it again.
#[derive(Default)]
struct OutboxTail(Cell<Option<i64>>);

impl OutboxTail {
    fn forget(&self) {
        self.0.set(None);
    }
}

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value, ValueRef};
        Ok(match *self {
            Param::Int(v) => ToSqlOutput::Owned(Value::Integer(v)),
            Param::OptInt(v) => ToSqlOutput::Owned(v.map_or(Value::Null, Value::Integer)),
            Param::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Param::OptText(s) => ToSqlOutput::Borrowed(s.map_or(ValueRef::Null, |s| ValueRef::Text(s.as_bytes()))),
            Param::Bool(b) => ToSqlOutput::Owned(Value::Integer(b as i64)),
            Param::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            Param::OptBlob(b) => ToSqlOutput::Borrowed(b.map_or(ValueRef::Null, ValueRef::Blob)),
        })
    }
}

impl Cols for rusqlite::Row<'_> {
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        Ok(self.get(i)?)
    }

    fn str(&self, i: usize) -> Result<&str, StoreError> {
        self.get_ref(i)?.as_str().map_err(|e| StoreError::Corrupt(format!("column {i}: {e}")))
    }

    fn blob(&self, i: usize) -> Result<&[u8], StoreError> {
        match self.get_ref(i)? {
            rusqlite::types::ValueRef::Blob(b) | rusqlite::types::ValueRef::Text(b) => Ok(b),
            other => Err(StoreError::Corrupt(format!("column {i}: {:?} is no blob", other.data_type()))),
        }
    }

    fn opt_blob(&self, i: usize) -> Result<Option<&[u8]>, StoreError> {
        match self.get_ref(i)? {
            rusqlite::types::ValueRef::Null => Ok(None),
            _ => self.blob(i).map(Some),
        }
    }

    fn flag(&self, i: usize) -> Result<bool, StoreError> {
        Ok(self.get(i)?)
    }

    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.get(i)?)
    }
}

impl Tx for Lite<'_> {
    async fn execute(&mut self, sql: &Sql, params: &[Param<'_>]) -> Result<u64, StoreError> {
        Ok(self.0.prepare_cached(sql.sqlite())?.execute(rusqlite::params_from_iter(params))? as u64)
    }

    async fn each(&mut self, sql: &Sql, params: &[Param<'_>], row: &mut EachRow<'_>) -> Result<(), StoreError> {
        let mut stmt = self.0.prepare_cached(sql.sqlite())?;
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        while let Some(r) = rows.next()? {
            row(r)?;
        }
        Ok(())
    }

    async fn insert_chat(&mut self, chat: &Chat, events: &[DomainEvent]) -> Result<(), StoreError> {
        insert_chat(self.0, chat, events)?;
        insert_events(self.0, self.1, events)
    }

    async fn index_bots(&mut self, seq: i64, bots: &[AppId]) -> Result<(), StoreError> {
        index_bots(self.0, seq, bots)
    }

    async fn insert_events(&mut self, events: &[DomainEvent]) -> Result<(), StoreError> {
        insert_events(self.0, self.1, events)
    }

    /// The writer runs one change at a time.
    async fn lock(&mut self, _scope: &str, _key: &str) -> Result<(), StoreError> {
        Ok(())
    }

    async fn clear(&mut self, tokens: bool) -> Result<(), StoreError> {
        let credentials = if tokens { CREDENTIAL_TABLES } else { &[] };
        for table in STATE_TABLES.iter().chain(credentials) {
            self.0.execute(&format!("DELETE FROM {table}"), [])?;
        }
        if let Some(tail) = self.1 {
            tail.forget();
        }
        Ok(())
    }

    /// An event's seq is its rowid: the next one follows the last by itself; its `bytes_end` is
    /// read again.
    async fn events_restored(&mut self) -> Result<(), StoreError> {
        if let Some(tail) = self.1 {
            tail.forget();
        }
        Ok(())
    }

    /// The writer thread waits for the sender.
    async fn next_batch(&mut self, batches: &mut mpsc::Receiver<ImportBatch>) -> Option<ImportBatch> {
        batches.blocking_recv()
    }
}

/// Appends events to the outbox (`codec::EventRow`); `seq` is the rowid, so max(seq) + 1 each
/// (see 0005_events.sql), and each ends its size after the last one (`bytes_end`, from `tail`
/// when the writer knows it, else read).
fn insert_events(tx: &Connection, tail: Option<&OutboxTail>, events: &[DomainEvent]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut end = match tail.and_then(|t| t.0.get()) {
        Some(end) => end,
        None => tx
            .prepare_cached("SELECT bytes_end FROM events ORDER BY seq DESC LIMIT 1")?
            .query_row([], |r| r.get(0))
            .optional()?
            .unwrap_or(0),
    };
    let mut insert = tx.prepare_cached(
        "INSERT INTO events (type, chat_id, at_ms, users, body, bytes_end) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for e in events {
        let row = EventRow::encode(e);
        end += row.bytes();
        insert.execute(params![row.type_name, row.chat_id, row.at_ms, row.users, row.body, end])?;
    }
    if let Some(tail) = tail {
        tail.0.set(Some(end));
    }
    Ok(())
}

fn insert_chat(tx: &Connection, chat: &Chat, events: &[DomainEvent]) -> Result<i64, StoreError> {
    let row = ChatRow::encode_with(chat, events)?;
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

fn apply_limit_growth(tx: &Connection, limit: bool) -> Result<(), StoreError> {
    let pages: i64 = if limit { tx.query_row("PRAGMA page_count", [], |r| r.get(0))? } else { 0xFFFF_FFFE };
    tx.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
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
    for (sql, record) in sql::export_queries() {
        let mut stmt = tx.prepare(sql.sqlite())?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            if out.blocking_send(Ok(record(r)?)).is_err() {
                return Ok(()); // the reader is gone
            }
        }
    }
    ready(sql::export_blobs(&mut Lite(&tx, None), |r| std::future::ready(out.blocking_send(Ok(r)).is_ok())))
}

#[async_trait]
impl Store for SqliteStore {
    fn commit_latency(&self) -> Option<Histogram> {
        Some(self.commit_seconds.clone())
    }

    async fn create_chat(&self, new: NewChat) -> Result<Created, StoreError> {
        let NewChat { chat, dedup, dedup_window_start_ms: window_start_ms, events } = new;
        let (reply, rx) = oneshot::channel();
        self.write(WriteOp::CreateChat { chat: Box::new(chat), dedup, window_start_ms, events, reply }, rx).await
    }

    async fn find_dedup(&self, key: &DedupKey, window_start_ms: i64) -> Result<Option<Chat>, StoreError> {
        let key = key.clone();
        self.read(move |conn| ready(sql::find_dedup(&mut Lite(conn, None), &key, window_start_ms))).await
    }

    async fn get_chat(&self, chat_id: &ChatId) -> Result<Option<Chat>, StoreError> {
        let id = chat_id.clone();
        self.read(move |conn| ready(sql::load_chat(&mut Lite(conn, None), &id.0))).await
    }

    async fn modify_chat(&self, chat_id: &ChatId, change: ChatChange) -> Result<Option<Result<Chat, FeishuError>>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.write(WriteOp::Modify { chat_id: chat_id.clone(), change, reply }, rx).await
    }

    async fn chats_of_bot(&self, q: BotChatsQuery) -> Result<Vec<(Cursor, Chat)>, StoreError> {
        self.read(move |conn| ready(sql::chats_of_bot(&mut Lite(conn, None), &q))).await
    }

    async fn search_chats(&self, q: ChatSearchQuery) -> Result<Vec<(i64, Chat)>, StoreError> {
        self.read(move |conn| ready(sql::search_chats(&mut Lite(conn, None), &q))).await
    }

    async fn public_name_taken(&self, tenant: &TenantKey, name: &str, except: &ChatId) -> Result<bool, StoreError> {
        let (tenant, name, except) = (tenant.clone(), name.to_string(), except.clone());
        self.read(move |conn| ready(sql::public_name_taken(&mut Lite(conn, None), &tenant, &name, &except))).await
    }

    async fn p2p_chat(&self, app: &AppId, uid: &Uid, new: Chat, events: Vec<DomainEvent>) -> Result<Chat, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.write(WriteOp::P2p { app: app.clone(), uid: uid.clone(), new: Box::new(new), events, reply }, rx).await
    }

    async fn create_message(&self, new: NewMessage) -> Result<Message, StoreError> {
        let NewMessage { message, dedup, dedup_window_start_ms: window_start_ms, events } = new;
        let (reply, rx) = oneshot::channel();
        self.write(WriteOp::CreateMessage { message: Box::new(message), dedup, window_start_ms, events, reply }, rx).await
    }

    async fn list_messages(&self, q: MessageQuery) -> Result<Vec<(Cursor, Message)>, StoreError> {
        self.read(move |conn| ready(sql::list_messages(&mut Lite(conn, None), &q))).await
    }

    async fn get_message(&self, id: &MessageId) -> Result<Option<Message>, StoreError> {
        let id = id.clone();
        self.read(move |conn| ready(sql::load_message(&mut Lite(conn, None), &id.0))).await
    }

    async fn put_blob(&self, blob: Blob, quota_bytes: u64) -> Result<bool, StoreError> {
        self.change(move |tx| ready(sql::put_blob(tx, &blob, quota_bytes))).await
    }

    async fn blob_meta(&self, key: &str) -> Result<Option<BlobMeta>, StoreError> {
        let key = key.to_string();
        self.read(move |conn| ready(sql::blob_meta(&mut Lite(conn, None), &key))).await
    }

    async fn get_blob(&self, key: &str) -> Result<Option<Blob>, StoreError> {
        let key = key.to_string();
        self.read(move |conn| ready(sql::load_blob(&mut Lite(conn, None), &key))).await
    }

    async fn update_message(&self, id: &MessageId, change: MessageChange) -> Result<Option<Result<Message, FeishuError>>, StoreError> {
        let id = id.clone();
        self.change(move |sp| ready(sql::update_message(sp, &id, change))).await
    }

    async fn add_reaction(&self, reaction: Reaction, events: Vec<DomainEvent>) -> Result<Reaction, StoreError> {
        self.change(move |sp| ready(sql::add_reaction(sp, reaction, &events))).await
    }

    async fn get_reaction(&self, reaction_id: &str) -> Result<Option<Reaction>, StoreError> {
        let id = reaction_id.to_string();
        self.read(move |conn| ready(sql::get_reaction(&mut Lite(conn, None), &id))).await
    }

    async fn delete_reaction(&self, reaction_id: &str, events: Vec<DomainEvent>) -> Result<bool, StoreError> {
        let id = reaction_id.to_string();
        self.change(move |sp| ready(sql::delete_reaction(sp, &id, &events))).await
    }

    async fn list_reactions(&self, q: ReactionQuery) -> Result<Vec<(i64, Reaction)>, StoreError> {
        self.read(move |conn| ready(sql::list_reactions(&mut Lite(conn, None), &q))).await
    }

    async fn mark_read(&self, mark: ReadMark) -> Result<Vec<Message>, StoreError> {
        self.change(move |sp| ready(sql::mark_read(sp, mark))).await
    }

    async fn read_receipts(&self, q: ReadQuery) -> Result<Vec<(i64, ReadRecord)>, StoreError> {
        self.read(move |conn| ready(sql::read_receipts(&mut Lite(conn, None), &q))).await
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
        self.read(|conn| ready(sql::task_links(&mut Lite(conn, None)))).await
    }

    async fn add_custom_bot(&self, bot: CustomBot, max_per_chat: usize) -> Result<bool, StoreError> {
        self.change(move |tx| ready(sql::add_custom_bot(tx, &bot, max_per_chat))).await
    }

    async fn custom_bots(&self, chat_id: &ChatId) -> Result<Vec<CustomBot>, StoreError> {
        let chat_id = chat_id.clone();
        self.read(move |conn| ready(sql::custom_bots(&mut Lite(conn, None), &chat_id))).await
    }

    async fn custom_bot(&self, token: &str) -> Result<Option<CustomBot>, StoreError> {
        let token = token.to_string();
        self.read(move |conn| ready(sql::custom_bot(&mut Lite(conn, None), &token))).await
    }

    async fn remove_custom_bot(&self, chat_id: &ChatId, bot_id: &AppId) -> Result<bool, StoreError> {
        let (chat_id, bot_id) = (chat_id.clone(), bot_id.clone());
        self.change(move |tx| ready(sql::remove_custom_bot(tx, &chat_id, &bot_id))).await
    }

    async fn events(&self, q: EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        self.read(move |conn| ready(sql::events(&mut Lite(conn, None), &q))).await
    }

    async fn prune_events(&self, max_bytes: u64, floor_seq: i64) -> Result<u64, StoreError> {
        self.change(move |tx| ready(sql::prune_events(tx, max_bytes, floor_seq))).await
    }

    async fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        self.read(|conn| ready(sql::outbox_stats(&mut Lite(conn, None)))).await
    }

    async fn count_chats(&self) -> Result<u64, StoreError> {
        self.read(|conn| ready(sql::count_chats(&mut Lite(conn, None)))).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| ready(sql::ping(&mut Lite(conn, None)))).await
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
        self.read(move |conn| ready(sql::all_chats(&mut Lite(conn, None), after_seq, limit))).await
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
        self.read(move |conn| ready(sql::find_token(&mut Lite(conn, None), &token))).await
    }

    async fn issue_app_ticket(&self, fresh: AppTicketRecord, replace_issued_before_ms: i64) -> Result<Option<AppTicketRecord>, StoreError> {
        self.change(move |tx| ready(sql::issue_app_ticket(tx, fresh, replace_issued_before_ms))).await
    }

    async fn issue_card_token(&self, token: CardToken, max_live: i64) -> Result<(), StoreError> {
        self.change(move |sp| ready(sql::issue_card_token(sp, &token, max_live))).await
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
        let (token, app_id, tenant_key) = (token.to_string(), app_id.clone(), tenant_key.clone());
        self.change(move |sp| ready(sql::update_card_by_token(sp, &token, &app_id, &tenant_key, now_ms, max_uses, change))).await
    }

    async fn app_ticket(&self, app_id: &AppId) -> Result<Option<AppTicketRecord>, StoreError> {
        let app_id = app_id.clone();
        self.read(move |conn| ready(sql::app_ticket(&mut Lite(conn, None), &app_id))).await
    }

    async fn event_settings(&self) -> Result<Vec<(AppId, EventSettings)>, StoreError> {
        self.read(|conn| ready(sql::event_settings(&mut Lite(conn, None)))).await
    }

    async fn set_event_settings(&self, app_id: &AppId, settings: &EventSettings) -> Result<(), StoreError> {
        let (app_id, settings) = (app_id.clone(), settings.clone());
        self.change(move |tx| ready(sql::set_event_settings(tx, &app_id, &settings))).await
    }

    async fn clear_event_settings(&self) -> Result<(), StoreError> {
        self.change(|tx| ready(sql::clear_event_settings(tx))).await
    }

    async fn fan_out(&self, after: i64, upto: i64, rows: Vec<NewDelivery>, claim: Option<DeliveryClaim>) -> Result<(FanOut, Vec<Delivery>), StoreError> {
        self.change(move |tx| ready(sql::fan_out(tx, after, upto, &rows, claim.as_ref()))).await
    }

    async fn delivery_queue(&self) -> Result<DeliveryQueue, StoreError> {
        self.read(|conn| ready(sql::delivery_queue(&mut Lite(conn, None)))).await
    }

    async fn deliveries_due(&self, now_ms: i64, wall_ms: i64) -> Result<bool, StoreError> {
        self.read(move |conn| ready(sql::deliveries_due(&mut Lite(conn, None), now_ms, wall_ms))).await
    }

    /// The writer runs one claim at a time: no row is claimed twice.
    async fn claim_deliveries(&self, claim: DeliveryClaim) -> Result<Vec<Delivery>, StoreError> {
        self.change(move |tx| ready(sql::claim_deliveries(tx, &claim))).await
    }

    async fn finish_delivery(&self, finished: FinishedAttempt, claim: Option<DeliveryClaim>) -> Result<Vec<Delivery>, StoreError> {
        self.change(move |tx| ready(sql::finish_delivery(tx, &finished, claim.as_ref()))).await
    }

    async fn release_deliveries(&self, owner: &str, event_ids: Vec<String>) -> Result<(), StoreError> {
        let owner = owner.to_string();
        self.change(move |tx| ready(sql::release_deliveries(tx, &owner, &event_ids))).await
    }

    async fn release_leases(&self, owner: &str) -> Result<u64, StoreError> {
        let owner = owner.to_string();
        self.change(move |tx| ready(sql::release_leases(tx, &owner))).await
    }

    async fn redeliver(&self, event_id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let event_id = event_id.to_string();
        self.change(move |tx| ready(sql::redeliver(tx, &event_id, now_ms))).await
    }

    async fn delivery_attempts(&self, filter: AttemptFilter) -> Result<Vec<AttemptRecord>, StoreError> {
        self.read(move |conn| ready(sql::delivery_attempts(&mut Lite(conn, None), &filter))).await
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

    /// A statement reading a parameter in its `LIMIT` runs again with new bindings without being
    /// compiled again.
    #[test]
    fn new_bindings_do_not_recompile_a_cached_statement() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_connection(&dir.path().join("t.db")).unwrap();
        let mut stmt = conn.prepare_cached("SELECT name FROM sqlite_master WHERE type = ?1 LIMIT ?2").unwrap();
        for limit in 1..=3 {
            stmt.query_map(rusqlite::params!["table", limit], |r| r.get::<_, String>(0)).unwrap().for_each(drop);
        }
        assert_eq!(stmt.get_status(rusqlite::StatementStatus::RePrepare), 0);
    }

    /// An op alone in its batch runs without a savepoint: its failure rolls the transaction back
    /// and begins an empty one for the batch to commit; the next append reads the tail again.
    #[test]
    fn a_failed_op_alone_in_its_batch_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open_connection(&dir.path().join("t.db")).unwrap();
        migrate(&mut conn).unwrap();
        let tail = OutboxTail::default();
        let batch = Batch { conn: &conn, tail: &tail, alone: true };
        let commit = |op: &dyn Fn() -> Result<(), StoreError>| {
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            let outcome = op();
            conn.execute_batch("COMMIT").unwrap();
            outcome
        };
        commit(&|| in_savepoint(&batch, |sp| insert_events(sp.0, sp.1, &[event(1)]))).unwrap();
        let refused = commit(&|| {
            in_savepoint(&batch, |sp| {
                insert_events(sp.0, sp.1, &[event(2)])?;
                Err(StoreError::Backend("rolled back".into()))
            })
        });
        assert!(refused.is_err());
        commit(&|| in_savepoint(&batch, |sp| insert_events(sp.0, sp.1, &[event(3)]))).unwrap();
        let rows = event_extents(&conn);
        let size = EventRow::encode(&event(1)).bytes();
        assert_eq!(rows, [(1, 1, size), (2, 3, 2 * size)]);
    }

    /// (seq, at_ms, bytes_end) of every stored event, in seq order.
    fn event_extents(conn: &Connection) -> Vec<(i64, i64, i64)> {
        let mut stmt = conn.prepare("SELECT seq, at_ms, bytes_end FROM events ORDER BY seq").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().collect::<Result<_, _>>().unwrap()
    }

    /// The rowid seq stays gap-free when a savepoint that appended events rolls back: the next
    /// insert takes max(seq) + 1 again, inside the same batch and after its commit.
    #[test]
    fn event_seqs_have_no_gap_after_a_rolled_back_savepoint() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open_connection(&dir.path().join("t.db")).unwrap();
        migrate(&mut conn).unwrap();
        let tx = conn.transaction().unwrap();
        let tail = OutboxTail::default();
        let batch = Batch { conn: &tx, tail: &tail, alone: false };
        in_savepoint(&batch, |sp| insert_events(sp.0, sp.1, &[event(1), event(2)])).unwrap();
        let refused: Result<(), StoreError> = in_savepoint(&batch, |sp| {
            insert_events(sp.0, sp.1, &[event(3)])?;
            Err(StoreError::Backend("rolled back".into()))
        });
        assert!(refused.is_err());
        in_savepoint(&batch, |sp| insert_events(sp.0, sp.1, &[event(4)])).unwrap();
        tx.commit().unwrap();
        let tx = conn.transaction().unwrap();
        insert_events(&tx, None, &[event(5)]).unwrap();
        tx.rollback().unwrap();
        insert_events(&conn, None, &[event(6)]).unwrap();
        let rows = event_extents(&conn);
        // Each ends its size after the one before, the writer's note forgotten with the savepoint.
        let size = EventRow::encode(&event(1)).bytes();
        assert_eq!(rows, [(1, 1, size), (2, 2, 2 * size), (3, 4, 3 * size), (4, 6, 4 * size)]);
    }
}
