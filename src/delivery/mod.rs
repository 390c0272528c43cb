//! Webhook delivery of Feishu events (spec events.md §1), and over the long connection for apps
//! in that mode (`target`, `over_long_connection`: the same rows, retries and faults; the attempt
//! goes to `longconn::Hub::deliver` instead of an HTTP POST).
//!
//! A fan-out step reads the outbox in `seq` order from a cursor and turns each domain event into
//! one delivery per subscribed recipient app (`feishu_events::app_events`), each with its
//! `event_id` fixed at creation. Workers send due deliveries: per (app, chat) one at a time in
//! creation order, so events of one chat reach one app in commit order; per app at most
//! `MAX_IN_FLIGHT_PER_APP` at once, so a slow or dead receiver only holds up its own app. A failed attempt is retried after 15 s, 5 min, 1 h and 6 h on the
//! larkstack clock, keeping its `event_id`; a delivery waiting for a retry does not hold up later
//! ones (docs/parity.md). Behind the fan-out, the loop prunes the outbox to `--outbox-bytes`
//! (`prune_outbox`: the floor is the cursor, so only events already fanned out go).
//!
//! This version keeps the cursor, the deliveries and run-time settings in memory (the store
//! tables are the next step): a restart fans the whole outbox out again (at-least-once; the
//! `event_id` is derived from the event and the app, so a redelivery carries the same one), and
//! several nodes each deliver every event.

pub mod send;
pub mod ticket;
pub mod wire;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value;

use crate::domain::directory::Directory;
use crate::domain::feishu_events::app_events;
use crate::domain::ids::AppId;
use crate::domain::subscriptions::{EventMode, EventSettings};
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::store::{EventQuery, Store};

/// What the engine works with (the server hands it over at start).
#[derive(Clone)]
pub struct Ctx {
    pub store: Arc<dyn Store>,
    pub clock: Arc<Clock>,
    pub metrics: Arc<Metrics>,
    /// The directory now; `None` once the server is gone (the engine then stops).
    pub directory: Arc<dyn Fn() -> Option<Arc<Directory>> + Send + Sync>,
    /// Bound on the outbox's bytes (`--outbox-bytes`): the loop prunes what it has fanned out.
    pub outbox_bytes: u64,
    /// Long-connection apps' events go over these instead of a request URL.
    pub longconn: Arc<crate::longconn::Hub>,
}

/// Attempts kept for `GET /_larkstack/deliveries`: at most this many…
pub const MAX_ATTEMPTS_KEPT: usize = 10_000;
/// …and at most this many bytes of payloads and responses.
pub const MAX_ATTEMPT_BYTES: usize = 64 << 20;
/// Outbox events read per fan-out step.
const FANOUT_BATCH: usize = 500;
/// Fan-out pauses while this many deliveries wait (the outbox holds the rest).
pub const MAX_QUEUED: usize = 50_000;
const TICK: Duration = Duration::from_millis(20);
/// Least time between two outbox prunes: the outbox may exceed `--outbox-bytes` by what is
/// committed (and fanned out) in this long.
const PRUNE_EVERY: Duration = Duration::from_millis(250);
/// Concurrent attempts per app (over different chats): a slow receiver holds up at most this
/// many of its own deliveries and nobody else's.
pub const MAX_IN_FLIGHT_PER_APP: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowState {
    Pending,
    InFlight,
    Delivered,
    GivenUp,
}

/// One event for one app, until delivered or given up.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub event_id: String,
    pub seq: i64,
    pub app_id: AppId,
    pub chat_id: String,
    pub event_type: &'static str,
    /// The plain envelope (encrypted per attempt with the app's key then).
    pub payload: Value,
    pub committed_ms: i64,
    pub failed: u32,
    pub due_ms: i64,
    pub state: RowState,
}

/// One HTTP attempt, as `GET /_larkstack/deliveries` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub event_id: String,
    pub seq: i64,
    #[serde(rename = "type")]
    pub event_type: &'static str,
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
    /// The plain envelope sent (encrypted on the wire when the app has a key).
    pub payload: Value,
    #[serde(skip)]
    committed_ms: i64,
}

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

#[derive(Default)]
struct Inner {
    cursor: i64,
    rows: Vec<Row>,
    attempts: VecDeque<Attempt>,
    /// Bytes of the kept attempts' payloads and responses.
    attempt_bytes: usize,
    /// (app, chat) pairs with an attempt in flight: one at a time each, so a chat's events reach
    /// an app in commit order.
    busy: HashSet<(AppId, String)>,
    /// Attempts in flight per app (at most `MAX_IN_FLIGHT_PER_APP`).
    in_flight: HashMap<AppId, usize>,
}

/// The delivery engine of one node.
#[derive(Default)]
pub struct Engine {
    overrides: Mutex<HashMap<AppId, EventSettings>>,
    faults: Mutex<HashMap<AppId, DeliveryFault>>,
    inner: Mutex<Inner>,
    wake: tokio::sync::Notify,
    started: AtomicBool,
}

impl Engine {
    /// The app's settings now: run-time ones, else the fixture's.
    pub fn settings(&self, dir: &Directory, app_id: &AppId) -> Option<EventSettings> {
        if let Some(s) = self.overrides.lock().get(app_id) {
            return Some(s.clone());
        }
        dir.app(app_id).map(|a| a.events.clone())
    }

    /// Looks for due deliveries now (a long-connection client just connected).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn set_settings(&self, app_id: &AppId, settings: EventSettings) {
        self.overrides.lock().insert(app_id.clone(), settings);
        self.wake.notify_one();
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

    /// After the store was cleared or replaced: the outbox starts over, so does the fan-out;
    /// queued deliveries, attempts and faults are forgotten (run-time settings stay).
    pub fn reset(&self) {
        let mut inner = self.inner.lock();
        inner.cursor = 0;
        inner.rows.retain(|r| r.state == RowState::InFlight);
        inner.attempts.clear();
        inner.attempt_bytes = 0;
        drop(inner);
        self.clear_faults();
    }

    /// Forgets run-time settings (a new fixture or a reset).
    pub fn clear_settings(&self) {
        self.overrides.lock().clear();
    }

    /// Attempts, oldest first, filtered.
    pub fn attempts(&self, filter: impl Fn(&Attempt) -> bool) -> Vec<Attempt> {
        self.inner.lock().attempts.iter().filter(|a| filter(a)).cloned().collect()
    }

    /// Deliveries not yet delivered or given up (the queue).
    pub fn queue_depth(&self) -> usize {
        self.inner.lock().rows.iter().filter(|r| matches!(r.state, RowState::Pending | RowState::InFlight)).count()
    }

    /// Sends `event_id` again now, to every app it went to, keeping the id. `false` if unknown.
    pub fn redeliver(&self, event_id: &str, now_ms: i64) -> bool {
        let mut inner = self.inner.lock();
        let payloads: Vec<Row> = {
            let mut found: Vec<Row> = inner.rows.iter().filter(|r| r.event_id == event_id).cloned().collect();
            if found.is_empty() {
                found = inner
                    .attempts
                    .iter()
                    .rev()
                    .find(|a| a.event_id == event_id)
                    .and_then(|a| self_payload(&inner, a))
                    .into_iter()
                    .collect();
            }
            found
        };
        if payloads.is_empty() {
            return false;
        }
        for mut r in payloads {
            if let Some(existing) = inner.rows.iter_mut().find(|x| x.event_id == r.event_id && x.app_id == r.app_id) {
                if existing.state != RowState::InFlight {
                    existing.state = RowState::Pending;
                    existing.due_ms = now_ms;
                }
            } else {
                r.state = RowState::Pending;
                r.due_ms = now_ms;
                inner.rows.push(r);
            }
        }
        drop(inner);
        self.wake.notify_one();
        true
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
        // The cursor starts at the outbox's beginning (it is not persisted yet): after a restart
        // every event is fanned out again, so none is lost and some are delivered twice.
        rt.spawn(run(Arc::downgrade(self), ctx));
    }

    /// The last outbox seq fanned out.
    pub fn cursor(&self) -> i64 {
        self.inner.lock().cursor
    }
}

/// Keeps `a`, dropping the oldest attempts beyond the bounds (entries and bytes).
fn keep_attempt(inner: &mut Inner, a: Attempt) {
    inner.attempt_bytes += attempt_size(&a);
    inner.attempts.push_back(a);
    while inner.attempts.len() > MAX_ATTEMPTS_KEPT || inner.attempt_bytes > MAX_ATTEMPT_BYTES {
        let Some(old) = inner.attempts.pop_front() else { break };
        inner.attempt_bytes -= attempt_size(&old);
    }
}

/// What an attempt weighs in memory, roughly: its payload and response.
fn attempt_size(a: &Attempt) -> usize {
    a.payload.to_string().len() + a.response.len() + a.url.len() + 256
}

fn self_payload(_inner: &Inner, a: &Attempt) -> Option<Row> {
    Some(Row {
        event_id: a.event_id.clone(),
        seq: a.seq,
        app_id: a.app_id.clone(),
        chat_id: a.chat_id.clone(),
        event_type: a.event_type,
        payload: a.payload.clone(),
        committed_ms: a.committed_ms,
        failed: 0,
        due_ms: 0,
        state: RowState::Pending,
    })
}

async fn run(weak: Weak<Engine>, ctx: Ctx) {
    let mut pruned = Pruned { cursor: 0, at: tokio::time::Instant::now() };
    loop {
        let (Some(engine), Some(dir)) = (weak.upgrade(), (ctx.directory)()) else { return };
        if let Err(e) = fan_out(&engine, &ctx, &dir).await {
            tracing::warn!(error = %e, "event fan-out failed; retrying");
        }
        dispatch(&engine, &ctx, &dir);
        prune_outbox(&ctx, engine.cursor(), &mut pruned).await;
        {
            let wake = engine.wake.notified();
            let _ = tokio::time::timeout(TICK, wake).await;
        }
    }
}

/// The cursor the last prune of the outbox ran with, and when.
struct Pruned {
    cursor: i64,
    at: tokio::time::Instant,
}

/// Keeps the outbox within `ctx.outbox_bytes`. Only what the fan-out has passed may go: the floor
/// is `cursor`. Runs when the cursor moved, at most every `PRUNE_EVERY` (an idle store sees no
/// writes); a failure is retried at the next turn.
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

/// Turns new outbox events into deliveries.
async fn fan_out(engine: &Engine, ctx: &Ctx, dir: &Directory) -> Result<(), crate::store::StoreError> {
    let after = {
        let inner = engine.inner.lock();
        if inner.rows.len() >= MAX_QUEUED {
            return Ok(());
        }
        inner.cursor
    };
    let events = ctx.store.events(EventQuery { after, chat_id: None, type_name: None, limit: FANOUT_BATCH }).await?;
    if events.is_empty() {
        return Ok(());
    }
    // With no request URL set anywhere there is nobody to deliver to: move the cursor past the
    // events without reading their chats (a store read per event, on every write path's heels).
    let receivers = dir.apps().iter().any(|a| engine.settings(dir, &a.app_id).is_some_and(|s| receives(&s)));
    let mut rows = Vec::new();
    for e in events.iter().filter(|_| receivers) {
        let Some(chat) = ctx.store.get_chat(&e.event.chat_id).await? else { continue };
        for ae in app_events(e, &chat, dir) {
            let Some(settings) = engine.settings(dir, &ae.app_id) else { continue };
            // Only apps with a request URL or a long connection get deliveries.
            if !settings.subscribes(ae.event_type) || !receives(&settings) {
                continue;
            }
            let event_id = wire::event_id_for(&ae.app_id.0, e.seq, e.event.at_ms);
            let payload = wire::envelope(&ae, &event_id, e.event.at_ms, &settings.verification_token);
            rows.push(Row {
                event_id,
                seq: e.seq,
                app_id: ae.app_id,
                chat_id: e.event.chat_id.0.clone(),
                event_type: ae.event_type,
                payload,
                committed_ms: e.event.at_ms,
                failed: 0,
                due_ms: i64::MIN,
                state: RowState::Pending,
            });
        }
    }
    let mut inner = engine.inner.lock();
    if inner.cursor == after {
        inner.cursor = events.last().map(|e| e.seq).unwrap_or(after);
        inner.rows.extend(rows);
    }
    Ok(())
}

/// Whether an app gets deliveries: by its request URL, or over its long connection.
fn receives(s: &EventSettings) -> bool {
    s.webhook_url().is_some() || s.event_mode == EventMode::LongConnection
}

/// `Attempt::url` (before the connection id) of deliveries over the long connection.
pub const LONG_CONNECTION: &str = "longconn:";

/// Where a delivery goes now: the request URL, or `LONG_CONNECTION` for a long-connection app
/// with a client connected to this node (without one its deliveries wait; a connect wakes the
/// engine).
fn target(ctx: &Ctx, s: &EventSettings, app_id: &AppId) -> Option<String> {
    match s.event_mode {
        EventMode::LongConnection => ctx.longconn.has_connection(app_id).then(|| LONG_CONNECTION.to_string()),
        EventMode::Webhook => s.webhook_url().map(str::to_string),
    }
}

/// One delivery over the long connection (twice when a fault says so); `None` when the app's
/// connection went away meanwhile (the delivery waits, it did not fail). The ack's `code` stands
/// for the HTTP status: 200 delivered, anything else (or no ack in 3 s) a failed attempt.
async fn over_long_connection(ctx: &Ctx, row: &Row, twice: bool) -> Option<(String, send::Outcome)> {
    let first = ctx.longconn.deliver(&row.app_id, &row.payload).await;
    if twice {
        ctx.longconn.deliver(&row.app_id, &row.payload).await;
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

/// Starts one attempt per idle app whose next delivery is due.
fn dispatch(engine: &Arc<Engine>, ctx: &Ctx, dir: &Directory) {
    let now = ctx.clock.now_ms();
    let mut inner = engine.inner.lock();
    let mut picked: Vec<(usize, String, EventSettings)> = Vec::new();
    let mut seen: HashSet<(AppId, String)> = HashSet::new();
    let mut in_flight = inner.in_flight.clone();
    for (i, r) in inner.rows.iter().enumerate() {
        if r.state != RowState::Pending || r.due_ms > now {
            continue;
        }
        // Only the first due delivery of each (app, chat) may go, and not while one is in flight.
        let key = (r.app_id.clone(), r.chat_id.clone());
        if !seen.insert(key.clone()) || inner.busy.contains(&key) {
            continue;
        }
        let n = in_flight.entry(r.app_id.clone()).or_insert(0);
        if *n >= MAX_IN_FLIGHT_PER_APP {
            continue;
        }
        let Some(settings) = engine.settings(dir, &r.app_id) else { continue };
        let Some(url) = target(ctx, &settings, &r.app_id) else { continue };
        *n += 1;
        picked.push((i, url, settings));
    }
    inner.in_flight = in_flight;
    for (i, url, settings) in picked {
        let row = &mut inner.rows[i];
        row.state = RowState::InFlight;
        let row = row.clone();
        inner.busy.insert((row.app_id.clone(), row.chat_id.clone()));
        let (engine, ctx) = (engine.clone(), ctx.clone());
        tokio::spawn(async move { attempt(engine, ctx, row, url, settings).await });
    }
}

async fn attempt(engine: Arc<Engine>, ctx: Ctx, row: Row, mut url: String, settings: EventSettings) {
    let (fail, delay_ms, twice) = engine.take_fault(&row.app_id);
    if delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    }
    let signed = wire::seal(&row.payload, &settings.encrypt_key, ctx.clock.now_secs());
    let outcome = if fail {
        send::Outcome { status: None, body: "failed by a delivery fault (/_larkstack/faults/deliveries)".into(), latency_ms: 0 }
    } else if url == LONG_CONNECTION {
        let Some((conn, outcome)) = over_long_connection(&ctx, &row, twice).await else {
            // No connection any more: the delivery waits for the next one, as it was.
            let mut inner = engine.inner.lock();
            inner.busy.remove(&(row.app_id.clone(), row.chat_id.clone()));
            if let Some(n) = inner.in_flight.get_mut(&row.app_id) {
                *n = n.saturating_sub(1);
            }
            if let Some(r) = inner.rows.iter_mut().find(|r| r.event_id == row.event_id && r.app_id == row.app_id) {
                r.state = RowState::Pending;
            }
            return;
        };
        url = conn;
        outcome
    } else {
        let first = send::post(&url, &signed.headers, signed.body.clone(), send::TIMEOUT).await;
        if twice {
            // The same request again: same event_id, same signature.
            send::post(&url, &signed.headers, signed.body, send::TIMEOUT).await;
        }
        first
    };
    let now = ctx.clock.now_ms();
    let delivered = outcome.delivered();
    let failed = row.failed + u32::from(!delivered);
    let next_retry_ms = if delivered { None } else { wire::next_retry(failed, now) };
    ctx.metrics.delivery(row.event_type, delivered, next_retry_ms.is_none(), now - row.committed_ms);
    let mut inner = engine.inner.lock();
    inner.busy.remove(&(row.app_id.clone(), row.chat_id.clone()));
    if let Some(n) = inner.in_flight.get_mut(&row.app_id) {
        *n = n.saturating_sub(1);
    }
    keep_attempt(&mut inner, Attempt {
        event_id: row.event_id.clone(),
        seq: row.seq,
        event_type: row.event_type,
        app_id: row.app_id.clone(),
        chat_id: row.chat_id.clone(),
        url,
        attempt: row.failed + 1,
        at_ms: now,
        status: outcome.status,
        delivered,
        latency_ms: outcome.latency_ms,
        response: outcome.body,
        next_retry_ms,
        payload: row.payload.clone(),
        committed_ms: row.committed_ms,
    });
    if let Some(r) = inner.rows.iter_mut().find(|r| r.event_id == row.event_id && r.app_id == row.app_id) {
        r.failed = failed;
        match next_retry_ms {
            _ if delivered => r.state = RowState::Delivered,
            Some(due) => {
                r.state = RowState::Pending;
                r.due_ms = due;
            }
            None => r.state = RowState::GivenUp,
        }
    }
    // Finished rows leave the queue (their attempts stay listed).
    inner.rows.retain(|r| matches!(r.state, RowState::Pending | RowState::InFlight));
    drop(inner);
    engine.wake.notify_one();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(n: usize, response: String) -> Attempt {
        Attempt {
            event_id: format!("{n:032x}"),
            seq: n as i64,
            event_type: "im.message.receive_v1",
            app_id: AppId("cli_x".into()),
            chat_id: "oc_x".into(),
            url: "http://127.0.0.1:1/".into(),
            attempt: 1,
            at_ms: 0,
            status: Some(200),
            delivered: true,
            latency_ms: 1,
            response,
            next_retry_ms: None,
            payload: Value::Null,
            committed_ms: 0,
        }
    }

    #[test]
    fn kept_attempts_are_bounded_in_entries_and_bytes() {
        let mut inner = Inner::default();
        for n in 0..MAX_ATTEMPTS_KEPT + 5 {
            keep_attempt(&mut inner, attempt(n, String::new()));
        }
        assert_eq!(inner.attempts.len(), MAX_ATTEMPTS_KEPT);
        assert_eq!(inner.attempts.front().unwrap().seq, 5);
        let big = "x".repeat(MAX_ATTEMPT_BYTES / 3);
        for n in 0..4 {
            keep_attempt(&mut inner, attempt(n, big.clone()));
        }
        assert!(inner.attempt_bytes <= MAX_ATTEMPT_BYTES);
        assert_eq!(inner.attempts.len(), 2);
        assert_eq!(inner.attempt_bytes, inner.attempts.iter().map(attempt_size).sum::<usize>());
    }
}
