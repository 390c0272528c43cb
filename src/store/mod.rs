//! Storage: one `Store` trait, one module per backend; the SQL both backends run, statements and
//! algorithms, is written once in `sql` (how to add to it: docs/architecture.md, "A new stored
//! thing").
//!
//! The contract never leans on a single writer: uniqueness (chat ids, `uuid` dedup keys, tokens)
//! is enforced by constraints, so a backend with many concurrent writers keeps the same guarantees.
//! A call that returns `Ok` has been committed durably.

mod codec;
pub(crate) mod sql;
pub mod health;
pub mod postgres;
pub mod sqlite;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::chat::Chat;
use crate::domain::custom_bots::CustomBot;
use crate::domain::events::{DomainEvent, StoredEvent};
use crate::domain::ids::{AppId, ChatId, MessageId, TenantKey, Uid};
use crate::domain::media::{Blob, BlobMeta};
use crate::domain::message::Message;
use crate::domain::reaction::Reaction;
use crate::domain::subscriptions::EventSettings;
use crate::error::FeishuError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage failure: {0}")]
    Backend(String),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    #[error("the store is shutting down")]
    Closed,
    /// An import whose records stopped coming before their end: nothing was changed.
    #[error("the import was abandoned before its end; nothing changed")]
    Abandoned,
}

/// What makes two creates "the same request": Feishu's `uuid` + `owner_id`, scoped to the caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DedupKey {
    pub tenant_key: TenantKey,
    pub app_id: AppId,
    pub uuid: String,
    /// The owner as larkstack knows it (a uid), or empty when the bot owns the chat.
    pub owner: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    New(Chat),
    /// The dedup key was already used inside the window: the chat created then.
    Existing(Chat),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    Tenant,
    App,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Tenant => "tenant",
            TokenKind::App => "app",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tenant" => Some(TokenKind::Tenant),
            "app" => Some(TokenKind::App),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub token: String,
    pub kind: TokenKind,
    pub app_id: AppId,
    pub tenant_key: TenantKey,
    pub issued_at_ms: i64,
    pub expires_at_ms: i64,
}

/// A store app's `app_ticket` (auth v3): the one an app may trade for an app token now. Each
/// app has at most one; a new one replaces (supersedes) it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppTicketRecord {
    pub app_id: AppId,
    pub ticket: String,
    pub issued_at_ms: i64,
    pub expires_at_ms: i64,
}

/// A delayed card-update token (`c-…`), issued with a card callback (`domain::cards`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardToken {
    pub token: String,
    /// The app that sent the card and the tenant it was called back in: only that app's
    /// tenant token of that tenant may use the token.
    pub app_id: AppId,
    pub tenant_key: TenantKey,
    pub message_id: MessageId,
    pub issued_at_ms: i64,
    pub expires_at_ms: i64,
}

/// What became of one use of a card token.
#[derive(Debug)]
pub enum CardTokenUse {
    /// No such token, or another app's (the caller learns nothing about it).
    Unknown,
    Expired,
    /// It was used its maximum number of times.
    UsedUp,
    /// The token was good: what `Store::update_message` would answer (a refused change or a
    /// message gone does not spend the use).
    Applied(Option<Result<Message, FeishuError>>),
}

/// A change to one chat, run atomically against its latest stored state, returning its domain
/// events. Returning `Err` leaves the chat as it was and records no event. Backends serialise
/// changes per chat, so none is lost and caps hold; the events are committed with the change.
pub type ChatChange = crate::domain::events::Change;

/// A change to one message (an edit, a card update, a recall, its thread id), run atomically
/// against its latest stored state, returning its domain events. `Err` leaves the message as it
/// was and records no event.
pub type MessageChange = Box<dyn FnOnce(&mut Message) -> Result<Vec<DomainEvent>, FeishuError> + Send>;

/// The events of a "user reads chat": made from the messages it newly marked read.
pub type ReadEvents = Box<dyn FnOnce(&[Message]) -> Vec<DomainEvent> + Send>;

/// A user reads a chat at `at_ms`: the bots' messages sent from `since_ms` on (the newest
/// `limit`, not recalled) that the user has not read yet get a receipt.
pub struct ReadMark {
    pub chat_id: ChatId,
    pub uid: Uid,
    pub at_ms: i64,
    pub since_ms: i64,
    pub limit: usize,
    /// Committed with the receipts.
    pub events: ReadEvents,
}

/// A page of a message's reactions, oldest first, optionally of one emoji type.
#[derive(Debug, Clone)]
pub struct ReactionQuery {
    pub message_id: MessageId,
    pub emoji_type: Option<String>,
    pub after_seq: i64,
    pub limit: usize,
}

/// A page of a message's read receipts, in the order they were made.
#[derive(Debug, Clone)]
pub struct ReadQuery {
    pub message_id: MessageId,
    pub after_seq: i64,
    pub limit: usize,
}

/// One read receipt: `uid` read `message_id` at `read_at_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadRecord {
    pub message_id: MessageId,
    pub uid: Uid,
    pub read_at_ms: i64,
}

/// A page query over the event outbox: events after `after` (a seq), oldest first.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub after: i64,
    pub chat_id: Option<ChatId>,
    pub type_name: Option<String>,
    pub limit: usize,
}

/// A chat to store: with a dedup key, at most one chat exists per key among keys created after
/// `dedup_window_start_ms`, and a repeat stores nothing (neither the chat nor its events).
#[derive(Debug, Clone)]
pub struct NewChat {
    pub chat: Chat,
    pub dedup: Option<DedupKey>,
    pub dedup_window_start_ms: i64,
    /// Committed with the chat.
    pub events: Vec<DomainEvent>,
}

/// A message to store: with a dedup key live after `dedup_window_start_ms`, a repeat stores
/// nothing and answers the message sent first.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub message: Message,
    pub dedup: Option<MessageDedupKey>,
    pub dedup_window_start_ms: i64,
    /// Committed with the message.
    pub events: Vec<DomainEvent>,
}

/// Chats of `tenant` that bot `app` is in, `limit` of them after `after` in `order`.
#[derive(Debug, Clone)]
pub struct BotChatsQuery {
    pub app: AppId,
    pub tenant: TenantKey,
    pub order: ChatOrder,
    pub after: Option<Cursor>,
    pub limit: usize,
}

/// Chats of `tenant` whose name or i18n names contain `text` (case-folded) that bot `app` is
/// in, or that are public, in creation order after `after_seq`.
#[derive(Debug, Clone)]
pub struct ChatSearchQuery {
    pub app: AppId,
    pub tenant: TenantKey,
    pub text: String,
    pub after_seq: i64,
    pub limit: usize,
}

/// Orders for listing a bot's chats; the cursor is the last item's position in that order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatOrder {
    CreatedAsc,
    ActiveDesc,
}

impl ChatOrder {
    /// Where a page that ends at this chat (stored as `seq`) ends, in this order.
    pub fn cursor(self, seq: i64, chat: &Chat) -> Cursor {
        let key = match self {
            ChatOrder::CreatedAsc => seq,
            ChatOrder::ActiveDesc => chat.last_active_at_ms,
        };
        Cursor { key, seq }
    }
}

/// Where a page ends: (sort key, seq) of its last item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub key: i64,
    pub seq: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageOrder {
    Asc,
    Desc,
}

/// What a message listing reads: one chat's messages, or one thread's (its root and replies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageContainer {
    Chat(ChatId),
    /// `omt_…`.
    Thread(String),
}

/// A page query over one chat's or one thread's messages.
#[derive(Debug, Clone)]
pub struct MessageQuery {
    pub container: MessageContainer,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub order: MessageOrder,
    pub after: Option<Cursor>,
    pub limit: usize,
}

impl MessageQuery {
    /// The newest `limit` messages of a chat, newest first.
    pub fn latest(chat_id: ChatId, limit: usize) -> Self {
        MessageQuery { container: MessageContainer::Chat(chat_id), start_ms: None, end_ms: None, order: MessageOrder::Desc, after: None, limit }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageDedupKey {
    pub app_id: AppId,
    pub uuid: String,
}

/// A chat's link to an aPaaS user task, made by `app_id` at `at_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskLink {
    pub task_id: String,
    pub app_id: AppId,
    pub at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkedChat {
    pub chat_id: ChatId,
    pub app_id: AppId,
    /// Whether the chat was created from the task (rather than an existing chat pulled in).
    pub started_here: bool,
    pub linked_at_ms: i64,
}

/// One record of an exported state: one line of the NDJSON stream `GET /_larkstack/state` sends
/// (`{"chat": {...}}`, `{"token": {...}}`, ...). A store exports chats first (in the order they
/// were stored), then dedup keys, p2p chats, messages, message dedup keys, task links, reactions,
/// read receipts, custom bots, tokens, app tickets, events, and last the blobs (each `Blob`
/// followed by its bytes in `BlobChunk`s).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
// Most records of a state are chats: boxing them would cost an allocation each for nothing.
#[allow(clippy::large_enum_variant)]
pub enum StateRecord {
    Chat(Chat),
    ChatDedup(DedupRecord),
    P2pChat(P2pRecord),
    Message(Message),
    MessageDedup(MessageDedupRecord),
    TaskChat(TaskChatRecord),
    Reaction(Reaction),
    MessageRead(ReadRecord),
    /// A group's custom bot, with its webhook token and secret.
    CustomBot(CustomBot),
    Token(TokenRecord),
    AppTicket(AppTicketRecord),
    /// One event of the outbox, with its seq (events come after the rest, in seq order).
    Event(StoredEvent),
    /// An uploaded image or file; its bytes follow in `BlobChunk` records, in order.
    Blob(BlobMeta),
    BlobChunk(BlobChunkRecord),
}

/// Some bytes of the blob before it in the stream (at most `sql::BLOB_CHUNK_BYTES`), base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobChunkRecord {
    pub key: String,
    pub data: String,
}

/// Records an export hands over at a time: what the channel of an export holds at most.
pub const EXPORT_BUFFER: usize = 512;

/// What an import receives: records in batches, then `End`. An import commits only after `End`;
/// a channel closed before it (the sender gave up) rolls everything back.
#[derive(Debug)]
pub enum ImportBatch {
    Records(Vec<StateRecord>),
    End,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupRecord {
    #[serde(flatten)]
    pub key: DedupKey,
    pub chat_id: ChatId,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct P2pRecord {
    pub app_id: AppId,
    pub uid: Uid,
    pub chat_id: ChatId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageDedupRecord {
    pub app_id: AppId,
    pub uuid: String,
    pub message_id: MessageId,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskChatRecord {
    pub task_id: String,
    #[serde(flatten)]
    pub link: LinkedChat,
}

/// One event for one app, as the fan-out creates it (`Store::fan_out`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// 32 hex, fixed at creation and kept by every attempt.
    pub event_id: String,
    pub app_id: AppId,
    /// The outbox event's seq.
    pub seq: i64,
    pub chat_id: String,
    pub event_type: String,
    /// The plain schema-2.0 envelope, JSON (encrypted per attempt with the app's key then).
    pub payload: String,
    pub committed_ms: i64,
}

/// A delivery a node has claimed (leased) to attempt now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub new: NewDelivery,
    /// Attempts that failed so far.
    pub failed: u32,
}

/// What `Store::fan_out` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanOut {
    /// The deliveries are stored and the cursor is at `upto`.
    Done,
    /// The cursor was not at `after` (another node fanned that range out): nothing stored; the
    /// cursor is here.
    Moved(i64),
}

/// A claim of due deliveries by one node (`Store::claim_deliveries`).
#[derive(Debug, Clone)]
pub struct DeliveryClaim {
    /// Who leases the rows (a node id).
    pub owner: String,
    /// The larkstack clock: pending rows due by then are claimable.
    pub now_ms: i64,
    /// Wall-clock ms: leases that ended by then are claimable again.
    pub wall_ms: i64,
    /// Wall-clock ms the new leases end at.
    pub lease_until_ms: i64,
    /// The apps this node may deliver to now; rows of other apps wait.
    pub apps: Vec<AppId>,
    /// Chats with live leases per app, over all nodes, at most this many.
    pub per_app: usize,
    /// Chats (heads) claimed at most.
    pub limit: usize,
    /// Deliveries of one chat claimed at once, at most: its claimable ones in commit order, sent
    /// one after another by the claiming node.
    pub run: usize,
    /// Only this chat's deliveries, of the first of `apps` (a node going on with the chat whose
    /// run it just sent, in the transaction that records it: the chat keeps its slot, so
    /// `per_app` is not checked).
    pub chat_id: Option<String>,
}

/// After an attempt: what becomes of its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryNext {
    /// Delivered or given up: the row leaves the queue.
    Done,
    /// Pending again, due at `due_ms` with `failed` failures so far.
    Retry { failed: u32, due_ms: i64 },
}

/// One attempt, as `GET /_larkstack/deliveries` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptRecord {
    pub event_id: String,
    pub seq: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub app_id: AppId,
    pub chat_id: String,
    pub url: String,
    pub attempt: u32,
    pub at_ms: i64,
    /// `null` when the receiver gave no HTTP answer.
    pub status: Option<u16>,
    pub delivered: bool,
    pub latency_ms: u64,
    pub response: String,
    /// When the next attempt is due, if there is one.
    pub next_retry_ms: Option<i64>,
    /// The plain envelope sent (encrypted on the wire when the app has a key), as JSON text:
    /// stored and sent as the fan-out wrote it, parsed only to be listed.
    #[serde(serialize_with = "json_text_as_value")]
    pub payload: String,
    #[serde(skip)]
    pub committed_ms: i64,
}

/// Serialises JSON text as the JSON value it holds (`null` if it holds none).
fn json_text_as_value<S: serde::Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&serde_json::from_str::<serde_json::Value>(text).unwrap_or_default(), s)
}

impl AttemptRecord {
    /// What the attempt weighs against `AttemptBounds::bytes`: its payload, response and URL.
    pub fn weight(&self, payload_len: usize) -> i64 {
        (payload_len + self.response.len() + self.url.len() + 256) as i64
    }
}

/// A finished attempt of a leased delivery (`Store::finish_delivery`).
#[derive(Debug, Clone)]
pub struct FinishedAttempt {
    pub owner: String,
    pub attempt: AttemptRecord,
    pub next: DeliveryNext,
    /// What the attempts table keeps, this attempt included (the oldest go first).
    pub keep: AttemptBounds,
}

/// Bounds on the attempts kept: entries and bytes (`AttemptRecord::weight`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptBounds {
    pub entries: i64,
    pub bytes: i64,
}

impl AttemptBounds {
    /// 10 000 attempts, 64 MiB.
    pub const DEFAULT: AttemptBounds = AttemptBounds { entries: 10_000, bytes: 64 << 20 };
}

/// Which attempts to list: each `Some` must match; the last `limit`, oldest first.
#[derive(Debug, Clone, Default)]
pub struct AttemptFilter {
    pub app_id: Option<String>,
    pub event_id: Option<String>,
    pub type_name: Option<String>,
    pub chat_id: Option<String>,
    pub limit: usize,
}

/// The delivery queue: rows not yet delivered or given up, their bytes, and the fan-out cursor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryQueue {
    pub rows: i64,
    pub bytes: i64,
    pub cursor: i64,
}

/// Sizes for /metrics and the console.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StoreStats {
    pub chats: u64,
    pub members: u64,
    pub messages: u64,
}

/// What the event outbox keeps (`Store::outbox_stats`): its oldest and newest seqs (0 when
/// empty) and the bytes of the events between them (`codec::event_bytes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutboxStats {
    pub first_seq: i64,
    pub last_seq: i64,
    pub bytes: u64,
}

/// Latency buckets, 100 µs to ~3 s: the backends' commit latency, and /metrics' request latency.
pub fn latency_histogram() -> prometheus_client::metrics::histogram::Histogram {
    use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Commit latency, for /metrics, when the backend measures it.
    fn commit_latency(&self) -> Option<prometheus_client::metrics::histogram::Histogram> {
        None
    }

    /// Stores `chat`. With a dedup key, at most one chat exists per key among keys created after
    /// `dedup_window_start_ms`; a repeat gets `Created::Existing` and stores nothing. `events`
    /// are appended to the outbox with the new chat (not on a repeat).
    async fn create_chat(&self, new: NewChat) -> Result<Created, StoreError>;

    /// The chat a live dedup key points at.
    async fn find_dedup(&self, key: &DedupKey, window_start_ms: i64) -> Result<Option<Chat>, StoreError>;

    async fn get_chat(&self, chat_id: &ChatId) -> Result<Option<Chat>, StoreError>;

    /// Applies `change` to the chat atomically; `Ok(None)` when there is no such chat.
    async fn modify_chat(&self, chat_id: &ChatId, change: ChatChange) -> Result<Option<Result<Chat, FeishuError>>, StoreError>;

    /// Chats of `tenant` that bot `app` is in, `limit` of them after `after` in `order`.
    async fn chats_of_bot(&self, q: BotChatsQuery) -> Result<Vec<(Cursor, Chat)>, StoreError>;

    /// Chats of `tenant` whose name contains `query` (case-insensitively) that bot `app` is in,
    /// or that are public, in creation order after `after_seq`.
    async fn search_chats(&self, q: ChatSearchQuery) -> Result<Vec<(i64, Chat)>, StoreError>;

    /// Whether another normal public chat of `tenant` is named `name`.
    async fn public_name_taken(&self, tenant: &TenantKey, name: &str, except: &ChatId) -> Result<bool, StoreError>;

    /// The p2p chat between bot `app` and user `uid`, creating it as `new` (with `events`) when
    /// there is none.
    async fn p2p_chat(&self, app: &AppId, uid: &Uid, new: Chat, events: Vec<DomainEvent>) -> Result<Chat, StoreError>;

    /// Stores `message` and marks its chat active. With a dedup key live after `window_start_ms`,
    /// stores nothing (no events either) and returns the message sent first.
    async fn create_message(&self, new: NewMessage) -> Result<Message, StoreError>;

    async fn list_messages(&self, query: MessageQuery) -> Result<Vec<(Cursor, Message)>, StoreError>;

    async fn get_message(&self, id: &MessageId) -> Result<Option<Message>, StoreError>;

    /// Stores an uploaded image or file, unless its app's blobs would then take more than
    /// `quota_bytes`: `Ok(false)`, nothing stored. Check and insert are atomic across nodes.
    async fn put_blob(&self, blob: Blob, quota_bytes: u64) -> Result<bool, StoreError>;

    /// What was uploaded under `key`, without the bytes.
    async fn blob_meta(&self, key: &str) -> Result<Option<BlobMeta>, StoreError>;

    /// What was uploaded under `key`, with the bytes.
    async fn get_blob(&self, key: &str) -> Result<Option<Blob>, StoreError>;
    /// Applies `change` to the message's latest stored state atomically (its row locked until
    /// the change and its events are committed); `Ok(None)` when there is no such message.
    async fn update_message(&self, id: &MessageId, change: MessageChange) -> Result<Option<Result<Message, FeishuError>>, StoreError>;

    /// Stores `reaction` with `events`, unless its operator already put that emoji on that
    /// message: then nothing is stored (no events either) and the first reaction is returned.
    async fn add_reaction(&self, reaction: Reaction, events: Vec<DomainEvent>) -> Result<Reaction, StoreError>;

    async fn get_reaction(&self, reaction_id: &str) -> Result<Option<Reaction>, StoreError>;

    /// Removes the reaction and records `events`; `false` (and no events) when it was gone.
    async fn delete_reaction(&self, reaction_id: &str, events: Vec<DomainEvent>) -> Result<bool, StoreError>;

    /// A page of a message's reactions with their seqs (the page cursor).
    async fn list_reactions(&self, query: ReactionQuery) -> Result<Vec<(i64, Reaction)>, StoreError>;

    /// Records a user reading a chat (see `ReadMark`); the messages newly read, newest first.
    async fn mark_read(&self, mark: ReadMark) -> Result<Vec<Message>, StoreError>;

    /// A page of a message's read receipts with their seqs (the page cursor).
    async fn read_receipts(&self, query: ReadQuery) -> Result<Vec<(i64, ReadRecord)>, StoreError>;

    /// The chat `link.app_id` started from `link.task_id`, if it is not dissolved; otherwise
    /// stores `new` as that chat, with `events`. Atomic, so concurrent first calls start one chat.
    async fn task_chat(&self, link: TaskLink, new: Chat, events: Vec<DomainEvent>) -> Result<Created, StoreError>;

    /// Records that an existing chat is linked to the task (a repeat link changes nothing).
    async fn link_task_chat(&self, link: TaskLink, chat_id: &ChatId) -> Result<(), StoreError>;

    /// Chats linked to the task, in the order they were linked.
    async fn task_chats(&self, task_id: &str) -> Result<Vec<LinkedChat>, StoreError> {
        Ok(self.task_links().await?.into_iter().filter(|l| l.task_id == task_id).map(|l| l.link).collect())
    }

    /// Every task link, in the order they were made.
    async fn task_links(&self) -> Result<Vec<TaskChatRecord>, StoreError>;

    async fn count_chats(&self) -> Result<u64, StoreError>;

    /// Events of the outbox matching `query`, in seq order. After a prune, `after` below the
    /// oldest kept seq starts at the oldest kept event.
    async fn events(&self, query: EventQuery) -> Result<Vec<StoredEvent>, StoreError>;

    /// Deletes the oldest events of the outbox until the rest hold at most `max_bytes`
    /// (`codec::event_bytes`), but none after `floor_seq` (the delivery has not fanned them out)
    /// and never the newest; how many it deleted. Work: O(log n) plus the rows deleted.
    async fn prune_events(&self, max_bytes: u64, floor_seq: i64) -> Result<u64, StoreError>;

    /// The outbox's extent in seqs and bytes (index lookups only).
    async fn outbox_stats(&self) -> Result<OutboxStats, StoreError>;

    /// Whether the backend answers at all (health checks): one trivial read.
    async fn ping(&self) -> Result<(), StoreError>;

    async fn stats(&self) -> Result<StoreStats, StoreError>;

    /// Every chat of every tenant, in creation order after `after_seq` (the console's view).
    async fn all_chats(&self, after_seq: i64, limit: usize) -> Result<Vec<(i64, Chat)>, StoreError>;

    /// A consistent copy of everything stored, as a stream of records (see `StateRecord` for the
    /// order) read in pages from one snapshot: memory stays bounded by `EXPORT_BUFFER` records
    /// whatever the size of the state. Dropping the receiver stops the export. A failure is the
    /// stream's last item.
    fn export(&self) -> tokio::sync::mpsc::Receiver<Result<StateRecord, StoreError>>;

    /// Replaces everything stored with the records received, atomically: nothing changes unless
    /// every record is stored and `ImportBatch::End` arrives. Returns how many records it stored.
    async fn import(&self, batches: tokio::sync::mpsc::Receiver<ImportBatch>) -> Result<u64, StoreError>;

    /// The latest write that failed, unless a write has succeeded since (`/healthz`).
    fn last_write_failure(&self) -> Option<health::WriteFailure> {
        None
    }

    /// Removes every chat, message, dedup key, task link, event and upload (seqs start over at 1); tokens
    /// stay valid.
    async fn clear(&self) -> Result<(), StoreError>;

    /// The token of `fresh.kind` for `fresh`'s (app, tenant) that expires last, if it expires after
    /// `reuse_after_ms`; otherwise stores and returns `fresh`. Atomic, so concurrent callers on
    /// any number of nodes rotate to one new token.
    async fn rotate_token(&self, fresh: TokenRecord, reuse_after_ms: i64) -> Result<TokenRecord, StoreError>;

    async fn find_token(&self, token: &str) -> Result<Option<TokenRecord>, StoreError>;

    /// Stores `bot` unless its chat has `max_per_chat` custom bots already (`Ok(false)`).
    async fn add_custom_bot(&self, bot: CustomBot, max_per_chat: usize) -> Result<bool, StoreError>;

    /// The chat's custom bots, oldest first.
    async fn custom_bots(&self, chat_id: &ChatId) -> Result<Vec<CustomBot>, StoreError>;

    /// The custom bot with this webhook token.
    async fn custom_bot(&self, token: &str) -> Result<Option<CustomBot>, StoreError>;

    /// Removes the chat's custom bot `bot_id`; whether there was one.
    async fn remove_custom_bot(&self, chat_id: &ChatId, bot_id: &AppId) -> Result<bool, StoreError>;

    /// Stores `fresh` as its app's ticket, superseding the current one, unless the current one
    /// was issued at or after `replace_issued_before_ms` (`None` then: it stays). Atomic, so of
    /// concurrent issuers on any number of nodes with the same bound one wins. Tickets survive
    /// `clear`, like tokens.
    async fn issue_app_ticket(&self, fresh: AppTicketRecord, replace_issued_before_ms: i64) -> Result<Option<AppTicketRecord>, StoreError>;

    /// The app's current ticket (expired or not).
    async fn app_ticket(&self, app_id: &AppId) -> Result<Option<AppTicketRecord>, StoreError>;

    /// Stores a fresh card token; expired tokens are dropped, and the oldest while `max_live`
    /// are kept.
    async fn issue_card_token(&self, token: CardToken, max_live: i64) -> Result<(), StoreError>;

    /// Atomically checks `token` (issued to `app_id` in `tenant_key`, not expired, used fewer
    /// than `max_uses` times), applies `change` to its card and counts the use when the change
    /// is stored.
    async fn update_card_by_token(
        &self,
        token: &str,
        app_id: &AppId,
        tenant_key: &TenantKey,
        now_ms: i64,
        max_uses: i64,
        change: MessageChange,
    ) -> Result<CardTokenUse, StoreError>;

    // ---- event delivery (src/delivery): shared by every node on the store ----

    /// Run-time event settings of apps (`PUT /_larkstack/apps/{app_id}/events`), by app.
    async fn event_settings(&self) -> Result<Vec<(AppId, EventSettings)>, StoreError>;

    async fn set_event_settings(&self, app_id: &AppId, settings: &EventSettings) -> Result<(), StoreError>;

    /// Forgets every run-time setting (a new fixture).
    async fn clear_event_settings(&self) -> Result<(), StoreError>;

    /// Stores `rows` and moves the fan-out cursor from `after` to `upto`, atomically, unless the
    /// cursor is not at `after`: then nothing changes (`FanOut::Moved`). Concurrent calls are
    /// serialised, so no range of the outbox is fanned out twice. With a `claim` (and rows), the
    /// same transaction then claims due deliveries as `claim_deliveries` does and returns them:
    /// the fan-out's node sends new events without waiting for another commit.
    async fn fan_out(&self, after: i64, upto: i64, rows: Vec<NewDelivery>, claim: Option<DeliveryClaim>) -> Result<(FanOut, Vec<Delivery>), StoreError>;

    /// The queue's size and the cursor.
    async fn delivery_queue(&self) -> Result<DeliveryQueue, StoreError>;

    /// Whether any delivery is claimable now (a cheap read before `claim_deliveries`).
    async fn deliveries_due(&self, now_ms: i64, wall_ms: i64) -> Result<bool, StoreError>;

    /// Leases due deliveries to `claim.owner`: per (app, chat) one run at a time (a head that no
    /// earlier due or leased delivery of its chat holds back, then up to `claim.run - 1` of the
    /// chat's claimable deliveries after it, in commit order); per app at most `claim.per_app`
    /// chats leased. Rows another node is claiming are skipped, not waited for.
    async fn claim_deliveries(&self, claim: DeliveryClaim) -> Result<Vec<Delivery>, StoreError>;

    /// Records the attempt (pruning the oldest beyond `finished.keep`)
    /// and, while `owner` still holds the lease, the delivery's next state, atomically. With a
    /// `claim`, the same transaction then claims as `claim_deliveries` does and returns what it
    /// leased (a node going straight on with the next run of the chat it just delivered to).
    async fn finish_delivery(&self, finished: FinishedAttempt, claim: Option<DeliveryClaim>) -> Result<Vec<Delivery>, StoreError>;

    /// Gives back deliveries `owner` leased but did not attempt: due again at once.
    async fn release_deliveries(&self, owner: &str, event_ids: Vec<String>) -> Result<(), StoreError>;

    /// Ends every lease `owner` holds (a node restarted on its data dir): its rows are due again.
    async fn release_leases(&self, owner: &str) -> Result<u64, StoreError>;

    /// Makes the delivery of `event_id` due at `now_ms` again (re-queued from its latest attempt
    /// when it has left the queue); `false` when no delivery or attempt has that id.
    async fn redeliver(&self, event_id: &str, now_ms: i64) -> Result<bool, StoreError>;

    async fn delivery_attempts(&self, filter: AttemptFilter) -> Result<Vec<AttemptRecord>, StoreError>;
}
