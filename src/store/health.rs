//! Write health: the latest write that failed, until a later write succeeds. `/healthz` reports
//! it, so a node whose disk is full (or whose database refuses writes) is not "ok" just because
//! it can still read.

use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::mpsc;

use super::{BotChatsQuery, ChatSearchQuery, NewChat, NewMessage, ChatChange, EventQuery, Created, Cursor,
    DedupKey, ImportBatch, LinkedChat, MessageQuery, OutboxStats, StateRecord, Store, StoreError,
    StoreStats, TaskChatRecord, TaskLink, TokenRecord, MessageChange, ReactionQuery, ReadMark, ReadQuery,
    ReadRecord, AppTicketRecord, CardToken, CardTokenUse, AttemptFilter, AttemptRecord, Delivery, DeliveryClaim, DeliveryQueue,
    FanOut, FinishedAttempt, NewDelivery};
use crate::domain::chat::Chat;
use crate::domain::custom_bots::CustomBot;
use crate::domain::events::{DomainEvent, StoredEvent};
use crate::domain::ids::{AppId, ChatId, MessageId, TenantKey, Uid};
use crate::domain::media::{Blob, BlobMeta};
use crate::domain::message::Message;
use crate::domain::reaction::Reaction;
use crate::domain::subscriptions::EventSettings;
use crate::error::FeishuError;

/// A write the store could not make: when (wall-clock ms) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WriteFailure {
    pub at_ms: i64,
    pub error: String,
}

/// Any store, with the outcome of its writes remembered: a write that fails in the backend (or
/// finds it closed) is the last failure until a later write succeeds. Reads change nothing.
pub struct Tracked {
    inner: Arc<dyn Store>,
    last_failure: Mutex<Option<WriteFailure>>,
    /// Told after every write that may have appended events to the outbox (the delivery engine
    /// waits on it rather than polling the store hot).
    committed_events: Option<Arc<tokio::sync::Notify>>,
}

impl Tracked {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Tracked { inner, last_failure: Mutex::new(None), committed_events: None }
    }

    /// Also notifies `committed_events` after each successful write that can append events.
    pub fn notifying(inner: Arc<dyn Store>, committed_events: Arc<tokio::sync::Notify>) -> Self {
        Tracked { committed_events: Some(committed_events), ..Tracked::new(inner) }
    }

    /// `track`, then a notification when the write succeeded (it may have appended events).
    fn track_events<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        let result = self.track(result);
        if let (Ok(_), Some(n)) = (&result, &self.committed_events) {
            n.notify_one();
        }
        result
    }

    fn track<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        match &result {
            Ok(_) => {
                let mut last = self.last_failure.lock();
                if last.is_some() {
                    tracing::info!("store writes succeed again");
                    *last = None;
                }
            }
            Err(e @ (StoreError::Backend(_) | StoreError::Closed)) => {
                let at_ms = chrono::Utc::now().timestamp_millis();
                *self.last_failure.lock() = Some(WriteFailure { at_ms, error: e.to_string() });
            }
            // Unreadable rows are a data problem, an abandoned import the sender's: neither is a
            // failing write path.
            Err(StoreError::Corrupt(_) | StoreError::Abandoned) => {}
        }
        result
    }
}

#[async_trait]
impl Store for Tracked {
    fn commit_latency(&self) -> Option<prometheus_client::metrics::histogram::Histogram> {
        self.inner.commit_latency()
    }

    fn last_write_failure(&self) -> Option<WriteFailure> {
        self.last_failure.lock().clone()
    }

    async fn create_chat(&self, new: NewChat) -> Result<Created, StoreError> {
        self.track_events(self.inner.create_chat(new).await)
    }

    async fn find_dedup(&self, key: &DedupKey, window_start_ms: i64) -> Result<Option<Chat>, StoreError> {
        self.inner.find_dedup(key, window_start_ms).await
    }

    async fn get_chat(&self, chat_id: &ChatId) -> Result<Option<Chat>, StoreError> {
        self.inner.get_chat(chat_id).await
    }

    async fn modify_chat(&self, chat_id: &ChatId, change: ChatChange) -> Result<Option<Result<Chat, FeishuError>>, StoreError> {
        self.track_events(self.inner.modify_chat(chat_id, change).await)
    }

    async fn chats_of_bot(&self, q: BotChatsQuery) -> Result<Vec<(Cursor, Chat)>, StoreError> {
        self.inner.chats_of_bot(q).await
    }

    async fn search_chats(&self, q: ChatSearchQuery) -> Result<Vec<(i64, Chat)>, StoreError> {
        self.inner.search_chats(q).await
    }

    async fn public_name_taken(&self, tenant: &TenantKey, name: &str, except: &ChatId) -> Result<bool, StoreError> {
        self.inner.public_name_taken(tenant, name, except).await
    }

    async fn p2p_chat(&self, app: &AppId, uid: &Uid, new: Chat, events: Vec<DomainEvent>) -> Result<Chat, StoreError> {
        self.track_events(self.inner.p2p_chat(app, uid, new, events).await)
    }

    async fn create_message(&self, new: NewMessage) -> Result<Message, StoreError> {
        self.track_events(self.inner.create_message(new).await)
    }

    async fn list_messages(&self, query: MessageQuery) -> Result<Vec<(Cursor, Message)>, StoreError> {
        self.inner.list_messages(query).await
    }

    async fn get_message(&self, id: &MessageId) -> Result<Option<Message>, StoreError> {
        self.inner.get_message(id).await
    }

    async fn put_blob(&self, blob: Blob, quota_bytes: u64) -> Result<bool, StoreError> {
        self.track(self.inner.put_blob(blob, quota_bytes).await)
    }

    async fn blob_meta(&self, key: &str) -> Result<Option<BlobMeta>, StoreError> {
        self.inner.blob_meta(key).await
    }

    async fn get_blob(&self, key: &str) -> Result<Option<Blob>, StoreError> {
        self.inner.get_blob(key).await
    }

    async fn update_message(&self, id: &MessageId, change: MessageChange) -> Result<Option<Result<Message, FeishuError>>, StoreError> {
        self.track(self.inner.update_message(id, change).await)
    }

    async fn add_reaction(&self, reaction: Reaction, events: Vec<DomainEvent>) -> Result<Reaction, StoreError> {
        self.track(self.inner.add_reaction(reaction, events).await)
    }

    async fn get_reaction(&self, reaction_id: &str) -> Result<Option<Reaction>, StoreError> {
        self.inner.get_reaction(reaction_id).await
    }

    async fn delete_reaction(&self, reaction_id: &str, events: Vec<DomainEvent>) -> Result<bool, StoreError> {
        self.track(self.inner.delete_reaction(reaction_id, events).await)
    }

    async fn list_reactions(&self, query: ReactionQuery) -> Result<Vec<(i64, Reaction)>, StoreError> {
        self.inner.list_reactions(query).await
    }

    async fn mark_read(&self, mark: ReadMark) -> Result<Vec<Message>, StoreError> {
        self.track(self.inner.mark_read(mark).await)
    }

    async fn read_receipts(&self, query: ReadQuery) -> Result<Vec<(i64, ReadRecord)>, StoreError> {
        self.inner.read_receipts(query).await
    }

    async fn task_chat(&self, link: TaskLink, new: Chat, events: Vec<DomainEvent>) -> Result<Created, StoreError> {
        self.track_events(self.inner.task_chat(link, new, events).await)
    }

    async fn link_task_chat(&self, link: TaskLink, chat_id: &ChatId) -> Result<(), StoreError> {
        self.track(self.inner.link_task_chat(link, chat_id).await)
    }

    async fn task_chats(&self, task_id: &str) -> Result<Vec<LinkedChat>, StoreError> {
        self.inner.task_chats(task_id).await
    }

    async fn task_links(&self) -> Result<Vec<TaskChatRecord>, StoreError> {
        self.inner.task_links().await
    }

    async fn count_chats(&self) -> Result<u64, StoreError> {
        self.inner.count_chats().await
    }

    async fn events(&self, query: EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.events(query).await
    }

    async fn prune_events(&self, max_bytes: u64, floor_seq: i64) -> Result<u64, StoreError> {
        self.track(self.inner.prune_events(max_bytes, floor_seq).await)
    }

    async fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        self.inner.outbox_stats().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.inner.stats().await
    }

    async fn all_chats(&self, after_seq: i64, limit: usize) -> Result<Vec<(i64, Chat)>, StoreError> {
        self.inner.all_chats(after_seq, limit).await
    }

    fn export(&self) -> mpsc::Receiver<Result<StateRecord, StoreError>> {
        self.inner.export()
    }

    async fn import(&self, batches: mpsc::Receiver<ImportBatch>) -> Result<u64, StoreError> {
        self.track(self.inner.import(batches).await)
    }

    async fn clear(&self) -> Result<(), StoreError> {
        self.track(self.inner.clear().await)
    }

    async fn rotate_token(&self, fresh: TokenRecord, reuse_after_ms: i64) -> Result<TokenRecord, StoreError> {
        self.track(self.inner.rotate_token(fresh, reuse_after_ms).await)
    }

    async fn find_token(&self, token: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.inner.find_token(token).await
    }

    async fn add_custom_bot(&self, bot: CustomBot, max_per_chat: usize) -> Result<bool, StoreError> {
        self.track(self.inner.add_custom_bot(bot, max_per_chat).await)
    }

    async fn custom_bots(&self, chat_id: &ChatId) -> Result<Vec<CustomBot>, StoreError> {
        self.inner.custom_bots(chat_id).await
    }

    async fn custom_bot(&self, token: &str) -> Result<Option<CustomBot>, StoreError> {
        self.inner.custom_bot(token).await
    }

    async fn remove_custom_bot(&self, chat_id: &ChatId, bot_id: &AppId) -> Result<bool, StoreError> {
        self.track(self.inner.remove_custom_bot(chat_id, bot_id).await)
    }

    async fn issue_app_ticket(&self, fresh: AppTicketRecord, replace_issued_before_ms: i64) -> Result<Option<AppTicketRecord>, StoreError> {
        self.track(self.inner.issue_app_ticket(fresh, replace_issued_before_ms).await)
    }

    async fn app_ticket(&self, app_id: &AppId) -> Result<Option<AppTicketRecord>, StoreError> {
        self.inner.app_ticket(app_id).await
    }

    async fn issue_card_token(&self, token: CardToken, max_live: i64) -> Result<(), StoreError> {
        self.track(self.inner.issue_card_token(token, max_live).await)
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
        self.track(self.inner.update_card_by_token(token, app_id, tenant_key, now_ms, max_uses, change).await)
    }

    async fn event_settings(&self) -> Result<Vec<(AppId, EventSettings)>, StoreError> {
        self.inner.event_settings().await
    }

    async fn set_event_settings(&self, app_id: &AppId, settings: &EventSettings) -> Result<(), StoreError> {
        self.track(self.inner.set_event_settings(app_id, settings).await)
    }

    async fn clear_event_settings(&self) -> Result<(), StoreError> {
        self.track(self.inner.clear_event_settings().await)
    }

    async fn fan_out(&self, after: i64, upto: i64, rows: Vec<NewDelivery>, claim: Option<DeliveryClaim>) -> Result<(FanOut, Vec<Delivery>), StoreError> {
        self.track(self.inner.fan_out(after, upto, rows, claim).await)
    }

    async fn delivery_queue(&self) -> Result<DeliveryQueue, StoreError> {
        self.inner.delivery_queue().await
    }

    async fn deliveries_due(&self, now_ms: i64, wall_ms: i64) -> Result<bool, StoreError> {
        self.inner.deliveries_due(now_ms, wall_ms).await
    }

    async fn claim_deliveries(&self, claim: DeliveryClaim) -> Result<Vec<Delivery>, StoreError> {
        self.track(self.inner.claim_deliveries(claim).await)
    }

    async fn finish_delivery(&self, finished: FinishedAttempt, claim: Option<DeliveryClaim>) -> Result<Vec<Delivery>, StoreError> {
        self.track(self.inner.finish_delivery(finished, claim).await)
    }

    async fn release_deliveries(&self, owner: &str, event_ids: Vec<String>) -> Result<(), StoreError> {
        self.track(self.inner.release_deliveries(owner, event_ids).await)
    }

    async fn release_leases(&self, owner: &str) -> Result<u64, StoreError> {
        self.track(self.inner.release_leases(owner).await)
    }

    async fn redeliver(&self, event_id: &str, now_ms: i64) -> Result<bool, StoreError> {
        self.track(self.inner.redeliver(event_id, now_ms).await)
    }

    async fn delivery_attempts(&self, filter: AttemptFilter) -> Result<Vec<AttemptRecord>, StoreError> {
        self.inner.delivery_attempts(filter).await
    }
}
