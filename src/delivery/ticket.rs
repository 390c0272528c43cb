//! `app_ticket` pushes to store apps (Feishu's page "app_ticket 事件"): what the SDKs' ISV mode
//! trades for an app token (`POST /open-apis/auth/v3/app_access_token`).
//!
//! Every store app with a request URL gets tickets pushed to that URL: when this node first sees
//! the app with that URL (the server's start, a URL set or a fixture loaded at run time: the
//! current ticket, or a new one when there is none less than an hour old), a new one every
//! `PUSH_EVERY_MS` of larkstack clock after the current one was issued (advancing the clock past
//! it pushes), and a new one on `POST /open-apis/auth/v3/app_ticket/resend`. A new ticket supersedes
//! the app's previous one, which no longer buys a token; a ticket expires `TICKET_LIFETIME_MS`
//! after it was issued (docs/parity.md). Tickets are stored (`Store::issue_app_ticket`) before
//! they are pushed: with several nodes the store's conditional upsert lets one node issue each
//! hourly ticket.
//!
//! The push is Feishu's v1 callback (`{"uuid", "event": {"app_id", "app_ticket", "type":
//! "app_ticket"}, "token", "ts", "type": "event_callback"}`), sealed like every delivery
//! (`wire::seal`: AES with the app's encrypt key, `X-Lark-*` signature headers). One attempt: a
//! failed push is not retried (the next hourly push or a resend brings a new ticket); outcomes are
//! logged and counted in `larkstack_event_deliveries_total{event_type="app_ticket"}`, not listed in
//! `GET /_larkstack/deliveries`. Per app, pushes go one at a time and each sends the ticket
//! current when it starts, so a receiver never ends up holding a superseded ticket; at most one
//! push per app waits behind the one sending (later requests join it), which bounds the work a
//! burst of resends can queue to two pushes per app.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Value};

use super::{send, wire, Ctx, Engine};
use crate::domain::directory::{AppKind, Directory};
use crate::domain::ids::AppId;
use crate::store::{AppTicketRecord, StoreError};

/// A new ticket is pushed this long after the current one was issued (Feishu: "每隔1小时").
pub const PUSH_EVERY_MS: i64 = 3_600_000;
/// A ticket buys app tokens for this long after it was issued, unless a newer one supersedes it
/// first (GUESS: Feishu documents no lifetime; docs/parity.md).
pub const TICKET_LIFETIME_MS: i64 = 12 * PUSH_EVERY_MS;
/// How often the clock is looked at for due hourly pushes.
const TICK: Duration = Duration::from_millis(100);

/// The v1 `event_callback` that carries a ticket (before sealing).
pub fn callback(app_id: &AppId, ticket: &str, verification_token: &str, now_ms: i64) -> Value {
    json!({
        "uuid": wire::new_event_id(),
        "event": {"app_id": app_id.0, "app_ticket": ticket, "type": "app_ticket"},
        "token": verification_token,
        // Seconds with a fraction, as in Feishu's example ("1502199207.7171419").
        "ts": format!("{}.{:03}", now_ms.div_euclid(1000), now_ms.rem_euclid(1000)),
        "type": "event_callback",
    })
}

/// A fresh ticket for `app_id`, issued now.
fn fresh_ticket(app_id: &AppId, now_ms: i64) -> AppTicketRecord {
    AppTicketRecord {
        app_id: app_id.clone(),
        ticket: format!("ticket-{}", crate::secrets::random_hex()),
        issued_at_ms: now_ms,
        expires_at_ms: now_ms + TICKET_LIFETIME_MS,
    }
}

/// What this node knows of one store app's pushes.
#[derive(Default)]
struct Slot {
    /// The request URL the app's tickets went to (`None`: not yet seen with one); a new URL gets
    /// a new ticket at once.
    url: Option<String>,
    /// When the app's current ticket was issued, as this node last saw it.
    issued_at_ms: Option<i64>,
    /// A push is waiting behind the one sending.
    queued: bool,
    /// Held while a push sends: one at a time per app.
    sending: Arc<tokio::sync::Mutex<()>>,
}

/// The ticket pusher of one node (started with the router, next to the delivery engine).
#[derive(Default)]
pub struct Tickets {
    ctx: OnceLock<(Ctx, Weak<Engine>)>,
    /// One slot per store app seen: bounded by the apps of the directories loaded.
    slots: Mutex<HashMap<AppId, Slot>>,
    started: AtomicBool,
}

impl Tickets {
    /// Starts the hourly loop once (later calls do nothing); it stops when the server is gone.
    pub fn start(self: &Arc<Self>, ctx: Ctx, engine: Weak<Engine>) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.started.store(false, Ordering::Release);
            return;
        };
        let _ = self.ctx.set((ctx, engine));
        rt.spawn(run(Arc::downgrade(self)));
    }

    /// `app_ticket/resend`: a new ticket for the app, stored now and pushed right after. `false`
    /// when the app has no request URL (nothing is issued then: nobody could receive it).
    pub async fn resend(self: &Arc<Self>, app_id: &AppId) -> Result<bool, StoreError> {
        let Some((ctx, engine)) = self.ctx.get() else { return Ok(false) };
        let (Some(dir), Some(engine)) = ((ctx.directory)(), engine.upgrade()) else { return Ok(false) };
        if request_url(&engine, &dir, app_id).is_none() {
            return Ok(false);
        }
        self.issue_and_push(ctx, app_id, i64::MAX, true).await?;
        Ok(true)
    }

    /// A request URL this node has not pushed to: it gets the current ticket while that is less
    /// than an hour old (so nodes starting together, or a restart, push one ticket rather than
    /// superseding each other's), else a new one.
    async fn push_to_new_url(self: &Arc<Self>, ctx: &Ctx, app_id: &AppId) -> Result<(), StoreError> {
        let now = ctx.clock.now_ms();
        match ctx.store.app_ticket(app_id).await? {
            Some(t) if t.expires_at_ms > now && now - t.issued_at_ms < PUSH_EVERY_MS => {
                self.note_issued(app_id, t.issued_at_ms);
                self.push(app_id);
                Ok(())
            }
            _ => self.issue_and_push(ctx, app_id, now - PUSH_EVERY_MS + 1, true).await,
        }
    }

    /// Stores a new ticket unless the current one was issued at or after `replace_issued_before_ms`
    /// (another node issued it), then pushes the current one: always when this node issued it,
    /// else only with `push_if_not_issued_here`.
    async fn issue_and_push(
        self: &Arc<Self>,
        ctx: &Ctx,
        app_id: &AppId,
        replace_issued_before_ms: i64,
        push_if_not_issued_here: bool,
    ) -> Result<(), StoreError> {
        let now = ctx.clock.now_ms();
        match ctx.store.issue_app_ticket(fresh_ticket(app_id, now), replace_issued_before_ms).await? {
            Some(t) => self.note_issued(app_id, t.issued_at_ms),
            None => {
                let current = ctx.store.app_ticket(app_id).await?.map_or(now, |t| t.issued_at_ms);
                self.note_issued(app_id, current);
                if !push_if_not_issued_here {
                    return Ok(()); // the node that issued it pushes it
                }
            }
        }
        self.push(app_id);
        Ok(())
    }

    fn note_issued(&self, app_id: &AppId, issued_at_ms: i64) {
        self.slots.lock().entry(app_id.clone()).or_default().issued_at_ms = Some(issued_at_ms);
    }

    /// Sends the app's current ticket soon, after any push already sending.
    fn push(self: &Arc<Self>, app_id: &AppId) {
        let sending = {
            let mut slots = self.slots.lock();
            let slot = slots.entry(app_id.clone()).or_default();
            if slot.queued {
                return; // the waiting push will send the newest ticket
            }
            slot.queued = true;
            slot.sending.clone()
        };
        let (this, app_id) = (self.clone(), app_id.clone());
        tokio::spawn(async move {
            let _turn = sending.lock().await;
            if let Some(slot) = this.slots.lock().get_mut(&app_id) {
                slot.queued = false;
            }
            if let Err(e) = this.send_current(&app_id).await {
                tracing::warn!(app_id = %app_id.0, error = %e, "app_ticket push failed to read the ticket");
            }
        });
    }

    async fn send_current(&self, app_id: &AppId) -> Result<(), StoreError> {
        let Some((ctx, engine)) = self.ctx.get() else { return Ok(()) };
        let (Some(dir), Some(engine)) = ((ctx.directory)(), engine.upgrade()) else { return Ok(()) };
        let Some(settings) = engine.settings(&dir, app_id).filter(|s| s.webhook_url().is_some()) else { return Ok(()) };
        let Some(ticket) = ctx.store.app_ticket(app_id).await? else { return Ok(()) };
        let url = settings.webhook_url().unwrap_or_default().to_string();
        let payload = callback(app_id, &ticket.ticket, &settings.verification_token, ctx.clock.now_ms());
        let signed = wire::seal(&payload, &settings.encrypt_key, ctx.clock.now_secs());
        let outcome = send::post(&url, &signed.headers, signed.body, send::TIMEOUT).await;
        let delivered = outcome.delivered();
        ctx.metrics.delivery("app_ticket", delivered, !delivered, ctx.clock.now_ms() - ticket.issued_at_ms);
        if delivered {
            tracing::info!(app_id = %app_id.0, %url, "app_ticket pushed");
        } else {
            tracing::warn!(app_id = %app_id.0, %url, status = ?outcome.status, response = %outcome.body, "app_ticket push failed; not retried");
        }
        Ok(())
    }

    /// Store apps with a request URL that are due a push: a URL this node has not pushed to yet
    /// (noted as pushed to now), or a ticket issued at least `PUSH_EVERY_MS` ago.
    fn due(&self, engine: &Engine, dir: &Directory, now_ms: i64) -> Vec<(AppId, Due)> {
        let mut slots = self.slots.lock();
        let mut due = Vec::new();
        for app in dir.apps().iter().filter(|a| a.kind == AppKind::Store) {
            let Some(url) = request_url(engine, dir, &app.app_id) else { continue };
            let slot = slots.entry(app.app_id.clone()).or_default();
            if slot.url.as_deref() != Some(url.as_str()) {
                slot.url = Some(url);
                due.push((app.app_id.clone(), Due::NewUrl));
            } else if slot.issued_at_ms.is_some_and(|at| now_ms - at >= PUSH_EVERY_MS) {
                due.push((app.app_id.clone(), Due::Hourly));
            }
        }
        due
    }

    /// After a failed issue: the app's ticket is due again on the next tick.
    fn retry_soon(&self, app_id: &AppId) {
        if let Some(slot) = self.slots.lock().get_mut(app_id) {
            slot.url = None;
        }
    }
}

/// Why an app is due a push.
enum Due {
    /// A request URL this node has not pushed to.
    NewUrl,
    /// Its ticket is an hour old: a new one (issued by one node).
    Hourly,
}

/// The app's request URL now (run-time settings first), if it receives webhooks.
fn request_url(engine: &Engine, dir: &Directory, app_id: &AppId) -> Option<String> {
    engine.settings(dir, app_id).and_then(|s| s.webhook_url().map(str::to_string))
}

async fn run(weak: Weak<Tickets>) {
    loop {
        {
            let Some(this) = weak.upgrade() else { return };
            let Some((ctx, engine)) = this.ctx.get() else { return };
            let (Some(dir), Some(engine)) = ((ctx.directory)(), engine.upgrade()) else { return };
            let now = ctx.clock.now_ms();
            for (app_id, why) in this.due(&engine, &dir, now) {
                let done = match why {
                    Due::NewUrl => this.push_to_new_url(ctx, &app_id).await,
                    Due::Hourly => this.issue_and_push(ctx, &app_id, now - PUSH_EVERY_MS + 1, false).await,
                };
                if let Err(e) = done {
                    tracing::warn!(app_id = %app_id.0, error = %e, "issuing an app_ticket failed; retrying");
                    this.retry_soon(&app_id);
                }
            }
        }
        tokio::time::sleep(TICK).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_callback_is_feishus_v1_shape() {
        let v = callback(&AppId("cli_x".into()), "tk", "vt", 1_502_199_207_717);
        assert_eq!(v["type"], "event_callback");
        assert_eq!(v["token"], "vt");
        assert_eq!(v["ts"], "1502199207.717");
        assert_eq!(v["event"], json!({"app_id": "cli_x", "app_ticket": "tk", "type": "app_ticket"}));
        let uuid = v["uuid"].as_str().unwrap();
        assert!(uuid.len() == 32 && uuid.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(v.get("schema").is_none(), "v1: no schema, so the SDKs dispatch on event.type");
    }

    #[test]
    fn tickets_expire_after_their_lifetime() {
        let t = fresh_ticket(&AppId("cli_x".into()), 1000);
        assert_eq!(t.expires_at_ms - t.issued_at_ms, TICKET_LIFETIME_MS);
        const { assert!(TICKET_LIFETIME_MS > PUSH_EVERY_MS) };
        assert_ne!(t.ticket, fresh_ticket(&AppId("cli_x".into()), 1000).ticket);
    }
}
