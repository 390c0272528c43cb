//! Delivery of Feishu events to apps (spec events.md §1), shared by every node on the store.
//!
//! A fan-out step reads the outbox in `seq` order after the cursor and turns each domain event
//! into one delivery per subscribed recipient app (`feishu_events::app_events`), each with its
//! `event_id` fixed at creation; the deliveries and the cursor's move are one transaction that
//! first checks the cursor under a lock (`Store::fan_out`), so no two nodes fan out one range and
//! a restart never fans out again what it did before. What the payloads need of a chat
//! (`ChatFacts`: its bots, tenant, kind) is kept from batch to batch (`ChatFactsCache`), so a
//! message's event costs no read of its chat. Nodes then claim due deliveries with a
//! lease (`Store::claim_deliveries`): per (app, chat) one run at a time (up to `RUN` of the chat's
//! due deliveries, sent one after another in commit order), per app at most
//! `MAX_IN_FLIGHT_PER_APP` chats leased over all nodes, so a slow or dead receiver only holds up
//! its own app. An attempt's outcome and the delivery's next state are one transaction
//! (`Store::finish_delivery`). A failed attempt is retried after 15 s, 5 min, 1 h and 6 h on the
//! larkstack clock, keeping its `event_id`; a delivery waiting for a retry does not hold up later
//! ones (docs/parity.md).
//!
//! Leases run on the wall clock (`LEASE`), not the larkstack clock a test may freeze or move by
//! hours: a node killed mid-delivery leaves rows that any node claims again once their lease has
//! ended, and the same node restarted on its data dir (same node id) takes its own back at once.
//! At-least-once: a delivery whose attempt succeeded but whose node died before recording it is
//! sent again, with the same `event_id`.
//!
//! Run-time settings (`PUT /_larkstack/apps/{app_id}/events`) live in the store too; each node
//! keeps a copy, read again before every fan-out batch and every `SETTINGS_REFRESH`. Delivery
//! faults stay in the memory of the node they were set on (docs/control-api.md).
//!
//! Apps in long-connection mode get the same rows, retries and faults; only the attempt differs
//! (`transmit`: `longconn::Hub::deliver` instead of an HTTP POST), and only a node holding one of
//! the app's connections claims them. Behind the fan-out, the loop prunes the outbox to
//! `--outbox-bytes` (`prune_outbox`: its floor is the stored cursor, so only events every node's
//! fan-out has passed go).

pub mod callback;
pub mod send;
pub mod ticket;
pub mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use serde::Serialize;

use crate::clock::Clock;
use crate::domain::directory::Directory;
use crate::domain::feishu_events::{app_events, causes_feishu_events, may_change_chat, ChatFacts};
use crate::domain::ids::AppId;
use crate::domain::subscriptions::{EventMode, EventSettings};
use crate::metrics::{DeliveryStage, Metrics};
use crate::store::{
    AttemptBounds, AttemptRecord, Delivery, DeliveryClaim, DeliveryNext, DeliveryQueue, EventQuery, FanOut, FinishedAttempt,
    NewDelivery, Store, StoreError,
};

/// What the engine works with (the server hands it over at start).
#[derive(Clone)]
pub struct Ctx {
    pub store: Arc<dyn Store>,
    pub clock: Arc<Clock>,
    pub metrics: Arc<Metrics>,
    /// The directory now; `None` once the server is gone (the engine then stops).
    pub directory: Arc<dyn Fn() -> Option<Arc<Directory>> + Send + Sync>,
    /// Bound on the outbox's bytes (`--outbox-bytes`): the loop prunes what was fanned out.
    pub outbox_bytes: u64,
    /// Long-connection apps' events go over these instead of a request URL.
    pub longconn: Arc<crate::longconn::Hub>,
}

/// Outbox events read per fan-out step.
const FANOUT_BATCH: usize = 500;
/// Fan-out pauses while this many deliveries wait, over all nodes (the outbox holds the rest)…
pub const MAX_QUEUED: i64 = 50_000;
/// …or while their payloads weigh this many bytes.
pub const MAX_QUEUED_BYTES: i64 = 256 << 20;
/// Longest wait between two looks at the store (other nodes' commits, due retries, ended
/// leases); a commit on this node wakes the engine at once.
const TICK: Duration = Duration::from_millis(20);
/// How often the settings and the cursor are read again when nothing else makes the engine read
/// them (a PUT or a reset on another node).
const SETTINGS_REFRESH: Duration = Duration::from_secs(1);
/// Chats of one app delivered to at once (one request in flight each, over all nodes): a slow
/// receiver holds up at most this many of its own chats and nobody else's.
pub const MAX_IN_FLIGHT_PER_APP: usize = 16;
/// Chats claimed per claim.
const CLAIM_BATCH: usize = 256;
/// Deliveries of one chat claimed at once and sent one after another (commit order).
const RUN: usize = 32;
/// Runs of one chat a node sends in a row, each claimed as the last one is recorded, before the
/// chat's slot goes back to the claim loop (so other chats of the app get their turn).
const RUNS_IN_A_ROW: usize = 8;
/// How long a claim holds a delivery (wall time): longer than an attempt (`send::TIMEOUT`, sent
/// twice at most) plus the delivery fault's delay, which is added to it.
pub const LEASE: Duration = Duration::from_secs(10);
/// Least time between two outbox prunes: the outbox may exceed `--outbox-bytes` by what is
/// committed (and fanned out) in this long.
const PRUNE_EVERY: Duration = Duration::from_millis(250);
/// `Attempt::url` (before the connection id) of deliveries over the long connection.
pub const LONG_CONNECTION: &str = "longconn:";

/// Delivery faults of one app (`/_larkstack/faults/deliveries`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveryFault {
    /// The next this many attempts fail without reaching the receiver (retried as usual).
    #[serde(default)]
    pub fail_next: u32,
    /// Every attempt waits this long before it is sent (wall time; the 3 s timeout still holds
    /// for the receiver's answer).
    #[serde(default)]
    pub delay_ms: u64,
    /// The next this many deliveries are sent twice, as Feishu may (bots must de-duplicate).
    #[serde(default)]
    pub deliver_twice: u32,
}

/// The delivery engine of one node.
pub struct Engine {
    /// Who this node's leases belong to: stable across restarts on one data dir.
    node_id: String,
    /// Run-time settings as last read from the store.
    overrides: RwLock<HashMap<AppId, EventSettings>>,
    faults: Mutex<HashMap<AppId, DeliveryFault>>,
    /// The fan-out cursor as this node last saw it (the store's is the truth).
    cursor: AtomicI64,
    /// Notified by the store after writes that may append events: wakes the fan-out.
    wake: Arc<tokio::sync::Notify>,
    /// Whether some app could receive events at the last fan-out: while none can, the fan-out
    /// only moves the cursor once a `TICK` rather than after every commit.
    receivers: AtomicBool,
    /// Wakes the claims: deliveries a fan-out could not claim, a run that left its chat or app
    /// with more, a redelivery, new settings.
    claims: tokio::sync::Notify,
    /// Runs this node is sending, per app (bounded by the apps with leases here).
    running: Mutex<HashMap<AppId, usize>>,
    started: AtomicBool,
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new(None)
    }
}

fn wall_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Engine {
    /// An engine leasing as `node_id` (a random one when `None`).
    pub fn new(node_id: Option<String>) -> Self {
        Engine {
            node_id: node_id.unwrap_or_else(|| format!("node-{}", crate::secrets::random_hex())),
            overrides: RwLock::default(),
            faults: Mutex::default(),
            cursor: AtomicI64::new(0),
            wake: Arc::default(),
            receivers: AtomicBool::new(true),
            claims: tokio::sync::Notify::new(),
            running: Mutex::default(),
            started: AtomicBool::new(false),
        }
    }

    /// What the store notifies after writes that may append events.
    pub fn commit_signal(&self) -> Arc<tokio::sync::Notify> {
        self.wake.clone()
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The app's settings as this node last read them: run-time ones, else the fixture's.
    pub fn settings(&self, dir: &Directory, app_id: &AppId) -> Option<EventSettings> {
        let app = dir.app(app_id)?;
        Some(self.overrides.read().get(app_id).cloned().unwrap_or_else(|| app.events.clone()))
    }

    /// Reads the run-time settings from the store again.
    pub async fn load_settings(&self, store: &dyn Store) -> Result<(), StoreError> {
        let fresh: HashMap<AppId, EventSettings> = store.event_settings().await?.into_iter().collect();
        *self.overrides.write() = fresh;
        Ok(())
    }

    /// The app's settings now, as the store has them.
    pub async fn current_settings(&self, store: &dyn Store, dir: &Directory, app_id: &AppId) -> Result<Option<EventSettings>, StoreError> {
        self.load_settings(store).await?;
        Ok(self.settings(dir, app_id))
    }

    /// Stores the app's run-time settings (every node sees them; they survive a restart).
    pub async fn set_settings(&self, store: &dyn Store, app_id: &AppId, settings: EventSettings) -> Result<(), StoreError> {
        store.set_event_settings(app_id, &settings).await?;
        self.overrides.write().insert(app_id.clone(), settings);
        self.claims.notify_one();
        Ok(())
    }

    /// Forgets run-time settings (a new fixture).
    pub async fn clear_settings(&self, store: &dyn Store) -> Result<(), StoreError> {
        store.clear_event_settings().await?;
        self.overrides.write().clear();
        Ok(())
    }

    /// Looks for due deliveries now (a long-connection client just connected to this node).
    pub fn wake(&self) {
        self.claims.notify_one();
    }

    /// Sets (or, when all zero, removes) an app's delivery faults.
    pub fn set_fault(&self, app_id: &AppId, fault: DeliveryFault) {
        let mut faults = self.faults.lock();
        if fault == DeliveryFault::default() {
            faults.remove(app_id);
        } else {
            faults.insert(app_id.clone(), fault);
        }
    }

    pub fn faults(&self) -> Vec<(AppId, DeliveryFault)> {
        let mut v: Vec<_> = self.faults.lock().iter().map(|(a, f)| (a.clone(), f.clone())).collect();
        v.sort_by(|a, b| a.0 .0.cmp(&b.0 .0));
        v
    }

    pub fn clear_faults(&self) {
        self.faults.lock().clear();
    }

    /// What the fault rules do to the app's next attempt: (fail it, delay, send twice).
    fn take_fault(&self, app_id: &AppId) -> (bool, u64, bool) {
        let mut faults = self.faults.lock();
        let Some(f) = faults.get_mut(app_id) else { return (false, 0, false) };
        let fail = f.fail_next > 0;
        f.fail_next = f.fail_next.saturating_sub(1);
        let twice = !fail && f.deliver_twice > 0;
        if twice {
            f.deliver_twice -= 1;
        }
        let delay_ms = f.delay_ms;
        if *f == DeliveryFault::default() {
            faults.remove(app_id);
        }
        (fail, delay_ms, twice)
    }

    /// The longest fault delay of any app here (added to leases taken now).
    fn max_fault_delay_ms(&self) -> i64 {
        self.faults.lock().values().map(|f| f.delay_ms as i64).max().unwrap_or(0)
    }

    /// After the store was cleared or replaced (its delivery tables with it): the fan-out starts
    /// over from the new outbox's start, and faults are forgotten (run-time settings stay).
    pub fn reset(&self) {
        self.cursor.store(0, Ordering::Release);
        self.clear_faults();
        self.wake.notify_one();
    }

    /// The queue (all nodes) and the cursor.
    pub async fn queue(&self, store: &dyn Store) -> Result<DeliveryQueue, StoreError> {
        store.delivery_queue().await
    }

    /// Sends `event_id` again now, keeping the id (from any node). `false` if unknown.
    pub async fn redeliver(&self, store: &dyn Store, event_id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let found = store.redeliver(event_id, now_ms).await?;
        self.claims.notify_one();
        Ok(found)
    }

    /// Starts the engine's loop once (later calls do nothing); it stops when the engine is
    /// dropped or `ctx.directory` says the server is gone.
    pub fn start(self: &Arc<Self>, ctx: Ctx) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.started.store(false, Ordering::Release);
            return;
        };
        rt.spawn(fan_out_loop(Arc::downgrade(self), ctx.clone()));
        rt.spawn(claim_loop(Arc::downgrade(self), ctx));
    }

    /// A claim by this node, now, of the apps it may deliver to; `None` when it may deliver to none.
    fn claim_now(&self, ctx: &Ctx, dir: &Directory) -> Option<DeliveryClaim> {
        self.claim_of(ctx, self.deliverable_apps(ctx, dir), None)
    }

    /// A claim by this node, now, of the next run of one chat of `app_id`; `None` when this node
    /// may no longer deliver to the app.
    fn claim_of_chat(&self, ctx: &Ctx, dir: &Directory, app_id: AppId, chat_id: String) -> Option<DeliveryClaim> {
        let deliverable = self.deliverable(dir, &app_id, |app| ctx.longconn.has_connection(app));
        deliverable.then(|| self.claim_of(ctx, vec![app_id], Some(chat_id))).flatten().map(|c| DeliveryClaim { limit: 1, ..c })
    }

    fn claim_of(&self, ctx: &Ctx, apps: Vec<AppId>, chat_id: Option<String>) -> Option<DeliveryClaim> {
        if apps.is_empty() {
            return None;
        }
        let (now_ms, wall_ms) = (ctx.clock.now_ms(), wall_ms());
        Some(DeliveryClaim {
            owner: self.node_id.clone(),
            now_ms,
            wall_ms,
            lease_until_ms: wall_ms + LEASE.as_millis() as i64 + self.max_fault_delay_ms(),
            apps,
            per_app: MAX_IN_FLIGHT_PER_APP,
            limit: CLAIM_BATCH,
            run: RUN,
            chat_id,
        })
    }

    /// Whether this node may deliver to the app now: a webhook app with a request URL, a
    /// long-connection app one of whose connections this node holds (`connected`).
    fn deliverable(&self, dir: &Directory, app_id: &AppId, connected: impl Fn(&AppId) -> bool) -> bool {
        match self.settings(dir, app_id) {
            Some(s) if s.event_mode == EventMode::LongConnection => connected(app_id),
            Some(s) => s.webhook_url().is_some(),
            None => false,
        }
    }

    /// The apps whose deliveries this node may claim now: webhook apps with a request URL (any
    /// node), long-connection apps whose connection this node holds.
    fn deliverable_apps(&self, ctx: &Ctx, dir: &Directory) -> Vec<AppId> {
        // One pass over the connections, not one per app.
        let connected = ctx.longconn.apps_with_connections();
        dir.apps()
            .iter()
            .filter(|a| self.deliverable(dir, &a.app_id, |app| connected.contains(app)))
            .map(|a| a.app_id.clone())
            .collect()
    }
}

/// Fans the outbox out as events are committed (woken by this node's commits, or every `TICK`
/// for other nodes').
async fn fan_out_loop(weak: Weak<Engine>, ctx: Ctx) {
    let mut refreshed: Option<Instant> = None;
    let mut pruned = Pruned { cursor: 0, at: tokio::time::Instant::now() };
    let mut chats = ChatFactsCache::default();
    loop {
        let (Some(engine), Some(dir)) = (weak.upgrade(), (ctx.directory)()) else { return };
        if refreshed.is_none_or(|at| at.elapsed() >= SETTINGS_REFRESH) {
            match refresh(&engine, &ctx).await {
                Ok(()) => refreshed = Some(Instant::now()),
                Err(e) => tracing::warn!(error = %e, "reading delivery settings failed; retrying"),
            }
        }
        // Several batches in a row while the outbox has more.
        for _ in 0..8 {
            match fan_out(&engine, &ctx, &dir, &mut chats).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "event fan-out failed; retrying");
                    break;
                }
            }
        }
        prune_outbox(&ctx, engine.cursor.load(Ordering::Acquire), &mut pruned).await;
        let (wake, receivers) = (engine.wake.clone(), engine.receivers.load(Ordering::Acquire));
        drop((engine, dir));
        if receivers {
            let _ = tokio::time::timeout(TICK, wake.notified()).await;
        } else {
            tokio::time::sleep(TICK).await;
        }
    }
}

/// Bound on the bytes of `ChatFactsCache` (emptied when over): some 50 000 chats of a few bots.
const CHAT_FACTS_BYTES: usize = 16 << 20;

/// What the fan-out knows of the chats it has read (`ChatFacts`), kept across batches, so that a
/// message's event costs no read of its chat. An entry read while fanning out through outbox seq
/// `n` reflects every change up to `n` (a batch's events are read before their chats); every
/// change to a chat commits an event with it, so the entry holds until the fan-out meets a
/// `may_change_chat` event of that chat after `n`. That needs every event since: when the cursor
/// moves past events this node did not read (another node's fan-out, a reset), it starts over.
#[derive(Default)]
struct ChatFactsCache {
    /// The cursor through which this node has read every event.
    seen: i64,
    /// Per chat: the seq its facts are fresh through, the facts.
    chats: HashMap<String, (i64, Arc<ChatFacts>)>,
    bytes: usize,
}

impl ChatFactsCache {
    /// Before a fan-out from `after`: what was kept holds only if this node saw every event so far.
    fn start(&mut self, after: i64) {
        if self.seen != after {
            self.chats.clear();
            self.bytes = 0;
            self.seen = after;
        }
    }

    /// After a fan-out: through `cursor` when this node fanned out what it read (`followed`),
    /// else another node moved the cursor past events this one did not read: start over.
    fn finish(&mut self, cursor: i64, followed: bool) {
        self.seen = if followed { cursor } else { -1 };
    }

    /// The chat's event `seq` may have changed it.
    fn changed(&mut self, chat_id: &str, seq: i64) {
        if self.chats.get(chat_id).is_some_and(|(fresh, _)| *fresh < seq) {
            if let Some((_, facts)) = self.chats.remove(chat_id) {
                self.bytes -= entry_bytes(chat_id, &facts);
            }
        }
    }

    fn get(&self, chat_id: &str) -> Option<Arc<ChatFacts>> {
        self.chats.get(chat_id).map(|(_, facts)| facts.clone())
    }

    fn put(&mut self, chat_id: &str, fresh_through: i64, facts: ChatFacts) -> Arc<ChatFacts> {
        let facts = Arc::new(facts);
        let weight = entry_bytes(chat_id, &facts);
        if self.bytes + weight > CHAT_FACTS_BYTES {
            self.chats.clear();
            self.bytes = 0;
        }
        self.bytes += weight;
        if let Some((_, old)) = self.chats.insert(chat_id.to_string(), (fresh_through, facts.clone())) {
            self.bytes -= entry_bytes(chat_id, &old);
        }
        facts
    }
}

/// What one entry of `ChatFactsCache` counts against `CHAT_FACTS_BYTES`.
fn entry_bytes(chat_id: &str, facts: &ChatFacts) -> usize {
    facts.weight() + chat_id.len()
}

/// The cursor the last prune of the outbox ran with, and when.
struct Pruned {
    cursor: i64,
    at: tokio::time::Instant,
}

/// Keeps the outbox within `ctx.outbox_bytes`. Only what the fan-out has passed may go: the floor
/// is the stored cursor as this node last saw it (it only moves forward). Runs when the cursor
/// moved, at most every `PRUNE_EVERY`; a failure is retried at the next turn.
async fn prune_outbox(ctx: &Ctx, cursor: i64, last: &mut Pruned) {
    if cursor == last.cursor || last.at.elapsed() < PRUNE_EVERY {
        return;
    }
    let outcome = ctx.store.prune_events(ctx.outbox_bytes, cursor).await;
    last.at = tokio::time::Instant::now();
    match outcome {
        Ok(_) => last.cursor = cursor,
        Err(e) => tracing::warn!(error = %e, "outbox prune failed; retrying"),
    }
}

/// Claims due deliveries (woken by the fan-out, finished runs and redeliveries, or every `TICK`
/// for due retries, ended leases and other nodes' deliveries).
async fn claim_loop(weak: Weak<Engine>, ctx: Ctx) {
    // Leases of this node's earlier life (a kill -9) are ours to take back now.
    if let Some(engine) = weak.upgrade() {
        if let Err(e) = ctx.store.release_leases(&engine.node_id).await {
            tracing::warn!(error = %e, "releasing this node's earlier leases failed; they end on their own");
        }
    }
    loop {
        let (Some(engine), Some(dir)) = (weak.upgrade(), (ctx.directory)()) else { return };
        if let Err(e) = dispatch(&engine, &ctx, &dir).await {
            tracing::warn!(error = %e, "claiming deliveries failed; retrying");
        }
        drop(dir);
        // Holds the engine for at most a tick.
        let _ = tokio::time::timeout(TICK, engine.claims.notified()).await;
    }
}

/// Settings and cursor as the store has them (another node may have changed either).
async fn refresh(engine: &Engine, ctx: &Ctx) -> Result<(), StoreError> {
    engine.load_settings(&*ctx.store).await?;
    engine.cursor.store(ctx.store.delivery_queue().await?.cursor, Ordering::Release);
    Ok(())
}

/// Turns the next outbox events into deliveries; `true` when it moved on (more may follow).
async fn fan_out(engine: &Arc<Engine>, ctx: &Ctx, dir: &Directory, cache: &mut ChatFactsCache) -> Result<bool, StoreError> {
    let after = engine.cursor.load(Ordering::Acquire);
    // The outbox's end, read before the settings: an event committed after a subscription is
    // never passed over by a cursor moved on the settings from before it.
    let last = ctx.store.outbox_stats().await?.last_seq;
    if last <= after {
        return Ok(false);
    }
    // Settings as of now: a PUT on another node counts from its commit.
    engine.load_settings(&*ctx.store).await?;
    let targets: HashMap<AppId, EventSettings> = dir
        .apps()
        .iter()
        .filter_map(|a| engine.settings(dir, &a.app_id).map(|s| (a.app_id.clone(), s)))
        // Webhook apps without a URL get nothing; long-connection apps get rows that wait for a
        // node holding their connection.
        .filter(|(_, s)| s.event_mode == EventMode::LongConnection || s.webhook_url().is_some())
        .collect();
    engine.receivers.store(!targets.is_empty(), Ordering::Release);
    if targets.is_empty() {
        // Nobody receives events now: the cursor moves to the outbox's end without reading
        // (and decoding) the events, which would cost every write path a read of what it wrote.
        let cursor = match ctx.store.fan_out(after, last, Vec::new(), None).await?.0 {
            FanOut::Done => last,
            FanOut::Moved(cursor) => cursor,
        };
        engine.cursor.store(cursor, Ordering::Release);
        return Ok(false);
    }
    let events = ctx.store.events(EventQuery { after, chat_id: None, type_name: None, limit: FANOUT_BATCH }).await?;
    let Some(upto) = events.last().map(|e| e.seq) else { return Ok(false) };
    let queue = ctx.store.delivery_queue().await?;
    if queue.cursor != after {
        // Another node fanned this range out (or the store was reset): go on from where it is.
        engine.cursor.store(queue.cursor, Ordering::Release);
        return Ok(queue.cursor > after);
    }
    if queue.rows >= MAX_QUEUED || queue.bytes >= MAX_QUEUED_BYTES {
        return Ok(false);
    }
    cache.start(after);
    let mut rows = Vec::new();
    for e in &events {
        let chat_id = &e.event.chat_id;
        if may_change_chat(&e.event) {
            cache.changed(&chat_id.0, e.seq);
        }
        // Only events that can reach an app need their chat.
        if !causes_feishu_events(&e.event) {
            continue;
        }
        let chat = match cache.get(&chat_id.0) {
            Some(chat) => chat,
            None => match ctx.store.get_chat(chat_id).await? {
                Some(chat) => cache.put(&chat_id.0, upto, ChatFacts::of(&chat)),
                None => continue,
            },
        };
        for ae in app_events(e, &chat, dir) {
            let Some(settings) = targets.get(&ae.app_id) else { continue };
            if !settings.subscribes(ae.event_type) {
                continue;
            }
            let event_id = wire::event_id_for(&ae.app_id.0, e.seq, e.event.at_ms);
            let payload = wire::envelope(&ae, &event_id, e.event.at_ms, &settings.verification_token).to_string();
            rows.push(NewDelivery {
                event_id,
                app_id: ae.app_id,
                seq: e.seq,
                chat_id: chat_id.0.clone(),
                event_type: ae.event_type.to_string(),
                payload,
                committed_ms: e.event.at_ms,
            });
        }
    }
    // The new rows are claimed in the fan-out's own commit and sent at once: the claim loop would
    // cost them another commit (and a wake-up) before the first byte goes out.
    let claim = if rows.is_empty() { None } else { engine.claim_now(ctx, dir) };
    let lease_until_ms = claim.as_ref().map(|c| c.lease_until_ms);
    let new_rows = rows.len();
    let committed: Vec<i64> = rows.iter().map(|r| r.committed_ms).collect();
    let (done, claimed) = ctx.store.fan_out(after, upto, rows, claim).await?;
    if matches!(done, FanOut::Done) {
        let now_ms = ctx.clock.now_ms();
        for at_ms in committed {
            ctx.metrics.delivery_stage(DeliveryStage::FannedOut, now_ms - at_ms);
        }
    }
    if lease_until_ms.is_some() && claimed.len() < new_rows {
        // Rows behind a chat's run (its run claims them as it ends) or over an app's bound (a
        // run of the app ending wakes the claims): a look now costs little and may find some.
        engine.claims.notify_one();
    }
    let cursor = match done {
        FanOut::Done => upto,
        FanOut::Moved(cursor) => cursor,
    };
    engine.cursor.store(cursor, Ordering::Release);
    cache.finish(cursor, matches!(done, FanOut::Done));
    if let Some(lease_until_ms) = lease_until_ms {
        send_claimed(engine, ctx, claimed, lease_until_ms);
    }
    Ok(true)
}

/// Claims due deliveries of the apps this node may deliver to, and sends each chat's run.
async fn dispatch(engine: &Arc<Engine>, ctx: &Ctx, dir: &Directory) -> Result<(), StoreError> {
    let Some(claim) = engine.claim_now(ctx, dir) else { return Ok(()) };
    if !ctx.store.deliveries_due(claim.now_ms, claim.wall_ms).await? {
        return Ok(());
    }
    let lease_until_ms = claim.lease_until_ms;
    let claimed = ctx.store.claim_deliveries(claim).await?;
    send_claimed(engine, ctx, claimed, lease_until_ms);
    Ok(())
}

/// Sends claimed deliveries: each chat's run (they come together, in commit order) as a task.
fn send_claimed(engine: &Arc<Engine>, ctx: &Ctx, claimed: Vec<Delivery>, lease_until_ms: i64) {
    let mut runs: Vec<Vec<Delivery>> = Vec::new();
    for d in claimed {
        match runs.last_mut() {
            Some(run) if run[0].new.app_id == d.new.app_id && run[0].new.chat_id == d.new.chat_id => run.push(d),
            _ => runs.push(vec![d]),
        }
    }
    for run in runs {
        let (engine, ctx) = (engine.clone(), ctx.clone());
        *engine.running.lock().entry(run[0].new.app_id.clone()).or_default() += 1;
        tokio::spawn(async move { send_run(engine, ctx, run, lease_until_ms).await });
    }
}

/// Sends one chat's claimed deliveries one after another; each outcome is recorded as it comes.
/// When the lease would end before another attempt could, the rest go back to the queue. The
/// last outcome is recorded together with a claim of the chat's next run, which this task sends
/// straight away (up to `RUNS_IN_A_ROW` runs, then the chat's slot goes back to the claim loop).
/// The claim loop is woken only when this may have left it something to claim: the chat not
/// drained, or the app at its bound of chats in flight here.
async fn send_run(engine: Arc<Engine>, ctx: Ctx, run: Vec<Delivery>, lease_until_ms: i64) {
    let app = run[0].new.app_id.clone();
    let drained = send_runs(&engine, &ctx, run, lease_until_ms).await;
    let app_was_full = {
        let mut running = engine.running.lock();
        let n = running.get(&app).copied().unwrap_or(1);
        if n <= 1 {
            running.remove(&app);
        } else {
            running.insert(app, n - 1);
        }
        n >= MAX_IN_FLIGHT_PER_APP
    };
    if !drained || app_was_full {
        engine.claims.notify_one();
    }
}

/// `send_run`'s runs of one chat; `true` when the chat had no more due deliveries at the end.
async fn send_runs(engine: &Arc<Engine>, ctx: &Ctx, mut run: Vec<Delivery>, mut lease_until_ms: i64) -> bool {
    for turn in 1..=RUNS_IN_A_ROW {
        let (app_id, chat_id) = (run[0].new.app_id.clone(), run[0].new.chat_id.clone());
        let Some((last, complete)) = send_one_run(engine, ctx, run, lease_until_ms).await else { return false };
        let Some(dir) = (ctx.directory)() else { return true };
        // Going on with this chat: its next run, if it may (its app still deliverable here).
        let go_on = complete && turn < RUNS_IN_A_ROW;
        let claim = if go_on { engine.claim_of_chat(ctx, &dir, app_id, chat_id) } else { None };
        drop(dir);
        let lease = claim.as_ref().map(|c| c.lease_until_ms);
        let next = record(ctx, last, claim).await;
        match lease {
            Some(lease) if !next.is_empty() => (run, lease_until_ms) = (next, lease),
            Some(_) => return true,
            None => return false,
        }
    }
    false
}

/// Sends a run; records every outcome but the last, which it returns with whether the whole run
/// was attempted (`None`: nothing was, or the server is gone).
async fn send_one_run(engine: &Engine, ctx: &Ctx, run: Vec<Delivery>, lease_until_ms: i64) -> Option<(Outcome, bool)> {
    let mut recording = Vec::new();
    let mut last: Option<Outcome> = None;
    let mut complete = true;
    let mut rest = run.into_iter();
    while let Some(delivery) = rest.next() {
        let dir = (ctx.directory)()?;
        let settings = engine.settings(&dir, &delivery.new.app_id);
        // Room for the slowest attempt: the delay, then two sends (deliver twice) of `TIMEOUT`.
        let worst_ms = engine.max_fault_delay_ms() + 2 * send::TIMEOUT.as_millis() as i64 + 1_000;
        let (Some(settings), true) = (settings, wall_ms() + worst_ms < lease_until_ms) else {
            let ids: Vec<String> = std::iter::once(delivery).chain(rest).map(|d| d.new.event_id).collect();
            give_back(engine, ctx, ids).await;
            complete = false;
            break;
        };
        let event_id = delivery.new.event_id.clone();
        let Some(finished) = attempt(engine, ctx, delivery, settings).await else {
            give_back(engine, ctx, std::iter::once(event_id).chain(rest.map(|d| d.new.event_id)).collect()).await;
            complete = false;
            break;
        };
        if let Some(previous) = last.replace(finished) {
            let ctx = ctx.clone();
            recording.push(tokio::spawn(async move { record(&ctx, previous, None).await }));
        }
    }
    // The earlier outcomes first: the last one's claim must not see them still leased.
    for r in recording {
        let _ = r.await;
    }
    last.map(|last| (last, complete))
}

/// Gives leased deliveries not attempted back to the queue.
async fn give_back(engine: &Engine, ctx: &Ctx, event_ids: Vec<String>) {
    if let Err(e) = ctx.store.release_deliveries(&engine.node_id, event_ids).await {
        tracing::warn!(error = %e, "giving back deliveries failed; their lease ends on its own");
    }
}

/// Sends one claimed delivery the way its app takes events: where it went and what came back;
/// `None` when a long-connection app's connection went away meanwhile (the delivery waits, it
/// did not fail).
async fn transmit(ctx: &Ctx, app_id: &AppId, settings: &EventSettings, payload: &str, twice: bool) -> Option<(String, send::Outcome)> {
    Some(match (settings.event_mode, settings.event_url.as_deref()) {
        (EventMode::Webhook, Some(url)) => (url.to_string(), send_webhook(url, settings, payload, ctx.clock.now_secs(), twice).await),
        (EventMode::Webhook, None) => {
            (String::new(), send::Outcome { status: None, body: "the app has no request URL now".into(), latency_ms: 0 })
        }
        (EventMode::LongConnection, _) => return over_long_connection(ctx, app_id, payload, twice).await,
    })
}

/// One delivery over the long connection (twice when a fault says so). The ack's `code` stands
/// for the HTTP status: 200 delivered, anything else (or no ack in 3 s) a failed attempt.
async fn over_long_connection(ctx: &Ctx, app_id: &AppId, payload: &str, twice: bool) -> Option<(String, send::Outcome)> {
    let first = ctx.longconn.deliver(app_id, payload).await;
    if twice {
        ctx.longconn.deliver(app_id, payload).await;
    }
    let crate::longconn::Outcome::Sent { conn_id, ack, latency_ms, why } = first else { return None };
    let status = ack.as_ref().map(|a| match a.code {
        Some(200) => 200,
        other => other.and_then(|c| u16::try_from(c).ok()).filter(|s| !(200..300).contains(s)).unwrap_or(500),
    });
    let body = match (&ack, why) {
        (Some(a), _) => format!("ack code {:?}{}", a.code, a.data.as_ref().map(|d| format!(", data {d}")).unwrap_or_default()),
        (None, why) => why.unwrap_or_default(),
    };
    Some((format!("{LONG_CONNECTION}{conn_id}"), send::Outcome { status, body, latency_ms }))
}

/// One webhook POST (twice for the deliver-twice fault: same event_id, same signature).
async fn send_webhook(url: &str, settings: &EventSettings, payload: &str, now_secs: i64, twice: bool) -> send::Outcome {
    let signed = wire::seal_json(payload.as_bytes().to_vec(), &settings.encrypt_key, now_secs);
    let first = send::post(url, &signed.headers, signed.body.clone(), send::TIMEOUT).await;
    if twice {
        send::post(url, &signed.headers, signed.body, send::TIMEOUT).await;
    }
    first
}

/// An attempt's outcome, to record (with what the metrics count once it is recorded).
struct Outcome {
    finished: FinishedAttempt,
    since_commit_ms: i64,
}

/// One attempt of a claimed delivery; `None` when it could not be made (a long connection gone):
/// the delivery goes back to the queue as it was.
async fn attempt(engine: &Engine, ctx: &Ctx, delivery: Delivery, settings: EventSettings) -> Option<Outcome> {
    let Delivery { new: row, failed } = delivery;
    let (fail, delay_ms, twice) = engine.take_fault(&row.app_id);
    if delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    }
    let payload = row.payload;
    ctx.metrics.delivery_stage(DeliveryStage::Sent, ctx.clock.now_ms() - row.committed_ms);
    let (url, outcome) = if fail {
        let url = settings.event_url.clone().unwrap_or_default();
        (url, send::Outcome { status: None, body: "failed by a delivery fault (/_larkstack/faults/deliveries)".into(), latency_ms: 0 })
    } else {
        let sent = transmit(ctx, &row.app_id, &settings, &payload, twice).await?;
        ctx.metrics.delivery_stage(DeliveryStage::Acked, sent.1.latency_ms as i64);
        sent
    };
    let now = ctx.clock.now_ms();
    let delivered = outcome.delivered();
    let failed_now = failed + u32::from(!delivered);
    let next_retry_ms = if delivered { None } else { wire::next_retry(failed_now, now) };
    let next = match next_retry_ms {
        Some(due_ms) => DeliveryNext::Retry { failed: failed_now, due_ms },
        None => DeliveryNext::Done,
    };
    let finished = FinishedAttempt {
        owner: engine.node_id.clone(),
        attempt: AttemptRecord {
            event_id: row.event_id,
            seq: row.seq,
            event_type: row.event_type,
            app_id: row.app_id,
            chat_id: row.chat_id,
            url,
            attempt: failed + 1,
            at_ms: now,
            status: outcome.status,
            delivered,
            latency_ms: outcome.latency_ms,
            response: outcome.body,
            next_retry_ms,
            payload,
            committed_ms: row.committed_ms,
        },
        next,
        keep: AttemptBounds::DEFAULT,
    };
    Some(Outcome { finished, since_commit_ms: now - row.committed_ms })
}

/// Records an attempt and the delivery's next state (with `claim`, in the same transaction, the
/// claim; what it leased is returned); then counts it in the metrics, so /metrics never shows an
/// outcome the queue does not yet reflect.
async fn record(ctx: &Ctx, outcome: Outcome, claim: Option<DeliveryClaim>) -> Vec<Delivery> {
    let Outcome { finished, since_commit_ms } = outcome;
    let (event_type, delivered) = (finished.attempt.event_type.clone(), finished.attempt.delivered);
    let last = finished.attempt.next_retry_ms.is_none();
    let started = Instant::now();
    let claimed = match ctx.store.finish_delivery(finished, claim).await {
        Ok(claimed) => claimed,
        Err(e) => {
            // The lease ends on its own and the delivery is attempted again (same event_id).
            tracing::warn!(error = %e, "recording a delivery attempt failed");
            Vec::new()
        }
    };
    ctx.metrics.delivery_stage(DeliveryStage::Recorded, started.elapsed().as_millis() as i64);
    ctx.metrics.delivery(&event_type, delivered, last, since_commit_ms);
    claimed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::{ChatId, TenantKey};

    fn facts(bots: &[&str]) -> ChatFacts {
        ChatFacts {
            chat_id: ChatId("oc_1".into()),
            tenant_key: TenantKey("t".into()),
            external: false,
            group: true,
            bots: bots.iter().map(|b| AppId(b.to_string())).collect(),
        }
    }

    #[test]
    fn chat_facts_hold_until_a_later_change_of_their_chat_or_a_cursor_this_node_did_not_follow() {
        let mut cache = ChatFactsCache::default();
        cache.start(0);
        // Read while fanning out through seq 10: changes up to 10 are in it.
        cache.put("oc_1", 10, facts(&["cli_a"]));
        cache.changed("oc_1", 7);
        assert!(cache.get("oc_1").is_some(), "a change the read already reflects");
        cache.changed("oc_2", 11);
        assert!(cache.get("oc_1").is_some(), "another chat's change");
        cache.changed("oc_1", 11);
        assert!(cache.get("oc_1").is_none(), "a change after the read");
        assert_eq!(cache.bytes, 0);

        cache.put("oc_1", 20, facts(&["cli_a"]));
        cache.finish(20, true);
        cache.start(20);
        assert!(cache.get("oc_1").is_some(), "this node fanned out through 20 itself");
        cache.start(35);
        assert!(cache.get("oc_1").is_none(), "events 21..=35 went by unread");
        assert_eq!((cache.seen, cache.bytes), (35, 0));
    }

    #[test]
    fn chat_facts_stay_within_their_byte_bound() {
        let mut cache = ChatFactsCache::default();
        let one = entry_bytes("oc_00000000", &facts(&["cli_a"]));
        let fit = CHAT_FACTS_BYTES / one;
        for i in 0..fit + 10 {
            cache.put(&format!("oc_{i:08}"), 1, facts(&["cli_a"]));
            assert!(cache.bytes <= CHAT_FACTS_BYTES);
        }
        assert!(cache.chats.len() < fit, "emptied once full");
        let again = cache.bytes;
        cache.put("oc_00000001", 2, facts(&["cli_a"]));
        cache.put("oc_00000001", 3, facts(&["cli_a"]));
        assert!(cache.bytes <= again + one, "a chat read again is counted once");
    }
}
