//! Per-app, per-tenant request limits, read through the larkstack clock.
//!
//! Feishu states limits as "50 次/秒" and "1000 次/分钟": at most 50 calls in any 1-second window
//! and at most 1000 in any 60-second window, per (API, app, tenant). larkstack enforces exactly
//! that with a sliding log of the admitted calls' times: a call stamped `t` is admitted iff, with
//! it, no window of the limit's length that contains `t` holds more than the limit. Nothing rounds
//! to clock seconds or minutes, so no burst straddling a boundary gets through twice.
//!
//! The same rule runs in process (below) and, with several nodes, as one Lua script in Redis
//! (`cluster.rs`); the unit tests at the bottom run both through the same assertions.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::clock::Clock;
use crate::cluster::Redis;
use crate::domain::directory::RateLimitSpec;
use crate::domain::ids::{AppId, TenantKey};
use crate::envelope::ApiError;
use crate::envelope::InfraError;
use crate::error::{FeishuError, RateLimited};

/// An endpoint with its own budget per app and tenant (Feishu limits each API separately),
/// or `ChatMessages`, the budget of one chat shared by every bot posting into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    CreateChat,
    GetChat,
    UpdateChat,
    DeleteChat,
    ListChats,
    SearchChats,
    AddMembers,
    RemoveMembers,
    ListMembers,
    IsInChat,
    MeJoin,
    Managers,
    SendMessage,
    ListMessages,
    ReplyMessage,
    GetMessage,
    EditMessage,
    PatchMessage,
    RecallMessage,
    ForwardMessage,
    ReadUsers,
    CreateReaction,
    ListReactions,
    DeleteReaction,
    ChatMessages,
    ApaasChatGroup,
    ApaasTaskQuery,
    /// Image and file uploads and downloads, message resources: 1000/min, 50/s each, as Feishu's
    /// five pages say.
    UploadImage,
    UploadFile,
    DownloadImage,
    DownloadFile,
    MessageResource,
    BotInfo,
    ApplicationInfo,
    ContactUser,
    ContactUsersBatch,
    ContactBatchGetId,
    /// One custom bot's webhook: "100 次/分钟、5 次/秒" per bot.
    CustomBotHook,
    /// Delayed card updates (`interactive/v1/card/update`): 1000/min, 50/s.
    CardUpdate,
}

impl Family {
    /// Feishu's documented default for the family.
    pub fn default_limits(self) -> RateLimitSpec {
        match self {
            // 5 QPS per chat, shared by all bots in it (spec §1.6).
            Family::ChatMessages => RateLimitSpec { per_second: 5, per_minute: u32::MAX },
            // aPaaS user-task endpoints: "100 次/分钟" only (spec §1.6).
            Family::ApaasChatGroup | Family::ApaasTaskQuery => RateLimitSpec { per_second: 100, per_minute: 100 },
            Family::CustomBotHook => RateLimitSpec { per_second: 5, per_minute: 100 },
            _ => RateLimitSpec { per_second: 50, per_minute: 1000 },
        }
    }
}

pub use crate::cluster::Window;

/// The windows a spec enforces, widest first (when both are full, the minute's is the limit named).
/// A window the other implies is left out, so the log stays short: 60 × per-second ≤ per-minute
/// makes the minute window redundant (the per-chat 5/s), per-second ≥ per-minute the second window
/// (aPaaS 100/min). A per-second limit of 0 means none.
pub fn windows(spec: RateLimitSpec) -> Vec<Window> {
    let (second, minute) = (spec.per_second, spec.per_minute);
    let mut out = Vec::with_capacity(2);
    if second == 0 || u64::from(minute) < 60 * u64::from(second) {
        out.push(Window { span_ms: 60_000, limit: minute });
    }
    if second > 0 && second < minute {
        out.push(Window { span_ms: 1_000, limit: second });
    }
    out
}

/// Whole seconds for `x-ogw-ratelimit-reset`: rounded up, at least 1.
pub fn reset_secs(ms: i64) -> u64 {
    (ms.max(1) as u64).div_ceil(1000)
}

/// The admitted stamps of one budget (ms, sorted): the in-process form of the rule. Redis keeps
/// the same log as a sorted set and runs the same steps in `cluster.rs`'s script.
///
/// Stamps may arrive out of order (a clock read that lost a race for the lock; another node's read,
/// in Redis). A late stamp is not moved to "now": the rule is applied to the stamp as read, on
/// both sides — every window of the span that contains `t` must hold fewer than the limit, not
/// just the one ending at `t`. Adding `t` changes only windows containing `t`, so each stays at
/// most the limit whatever the arrival order; and for a stamp at or after the newest the only such
/// window that can be full is the one ending at `t`, so the usual case is one binary search.
/// (Moving late stamps to the newest one instead would keep the recorded stamps within limits but
/// not the stamps the calls were made at: 2 at 100 ms, 0 in (101, 1101], one at 1101 ms, then one
/// stamped 1099 would be recorded at 1101 and let three calls into (99, 1099].)
///
/// A stamp more than one widest window behind the newest is not a late read but the clock set back
/// (control API): the log, now in the future, is forgotten and the budget starts afresh, as a test
/// that moves the clock back expects. The log keeps two widest windows of stamps, all that the
/// windows around a stamp at most one window late can reach.
#[derive(Debug, Default)]
struct Log(VecDeque<i64>);

impl Log {
    fn count_le(&self, x: i64) -> usize {
        self.0.partition_point(|&e| e <= x)
    }

    /// Admits (and records) a call stamped `t`, or says which limit refused it and in how many ms a
    /// slot frees.
    fn take(&mut self, t: i64, windows: &[Window]) -> Result<(), (u32, i64)> {
        let Some(widest) = windows.iter().map(|w| w.span_ms).max() else {
            return Ok(());
        };
        match self.0.back() {
            Some(&newest) if t < newest - widest => self.0.clear(),
            Some(&newest) if t < newest => {}
            _ => {
                let gone = t - 2 * widest;
                while self.0.front().is_some_and(|&e| e <= gone) {
                    self.0.pop_front();
                }
            }
        }
        for w in windows {
            if !self.fits(t, *w) {
                return Err((w.limit, self.frees_in(t, *w)));
            }
        }
        let at = self.count_le(t);
        self.0.insert(at, t);
        Ok(())
    }

    /// Whether every window of `w` that contains `t` holds fewer than `w.limit` stamps: the one
    /// ending at `t`, and the ones ending at each later stamp less than a span after `t`.
    fn fits(&self, t: i64, w: Window) -> bool {
        let limit = w.limit as usize;
        let (mut lo, mut hi) = (self.count_le(t - w.span_ms), self.count_le(t));
        if hi - lo >= limit {
            return false;
        }
        while hi < self.0.len() && self.0[hi] < t + w.span_ms {
            let end = self.0[hi];
            while self.0[lo] <= end - w.span_ms {
                lo += 1;
            }
            if hi + 1 - lo >= limit {
                return false;
            }
            hi += 1;
        }
        true
    }

    /// Milliseconds from `t` until a call fits `w` again if nothing else is admitted: when the
    /// limit-th newest stamp leaves the window, and not before the newest stamp.
    fn frees_in(&self, t: i64, w: Window) -> i64 {
        let n = self.0.len();
        let frees = match w.limit as usize {
            0 => t + w.span_ms,
            limit if limit <= n => self.0[n - limit] + w.span_ms,
            _ => t,
        };
        frees.max(self.0.back().copied().unwrap_or(t)) - t
    }
}

struct Budget {
    spec: RateLimitSpec,
    windows: Vec<Window>,
    log: Mutex<Log>,
}

pub struct RateLimits {
    enabled: bool,
    clock: Arc<Clock>,
    budgets: Mutex<HashMap<(Family, String), Arc<Budget>>>,
    /// With several nodes the budgets live in Redis instead, shared by all of them.
    shared: Option<Arc<Redis>>,
}

impl RateLimits {
    pub fn new(enabled: bool, clock: Arc<Clock>, shared: Option<Arc<Redis>>) -> Self {
        RateLimits { enabled, clock, budgets: Mutex::new(HashMap::new()), shared }
    }

    fn budget(&self, key: (Family, String), spec: RateLimitSpec) -> Arc<Budget> {
        let mut map = self.budgets.lock();
        let fresh = || Arc::new(Budget { spec, windows: windows(spec), log: Mutex::new(Log::default()) });
        let budget = map.entry(key).or_insert_with(fresh);
        // A fixture loaded at run time may change an app's limits: they apply from then on.
        if budget.spec != spec {
            *budget = fresh();
        }
        budget.clone()
    }

    /// Forgets every window (control API reset).
    pub async fn clear(&self) -> Result<(), InfraError> {
        self.budgets.lock().clear();
        match &self.shared {
            Some(redis) => redis.clear_limits().await,
            None => Ok(()),
        }
    }

    /// Takes one request from the budget, or says how long to wait.
    /// `app_override` is the fixture's per-app setting; it replaces the family default.
    pub async fn check(
        &self,
        app: &AppId,
        tenant: &TenantKey,
        family: Family,
        app_override: Option<RateLimitSpec>,
    ) -> Result<(), ApiError> {
        if !self.enabled {
            return Ok(());
        }
        let spec = app_override.unwrap_or_else(|| family.default_limits());
        let taken = self.take((family, format!("{app}|{tenant}")), spec).await?;
        Ok(taken.map_err(|rl| FeishuError::rate_limited(rl.limit, rl.reset_secs))?)
    }

    /// The per-chat message budget: `Ok(Err(_))` when it is spent (230020, decided by the
    /// caller), `Err` when Redis failed (an internal error, never 230020).
    pub async fn check_chat_messages(&self, chat: &crate::domain::ids::ChatId) -> Result<Result<(), RateLimited>, InfraError> {
        if !self.enabled {
            return Ok(Ok(()));
        }
        self.take((Family::ChatMessages, chat.0.clone()), Family::ChatMessages.default_limits()).await
    }

    /// One custom bot's budget (by its bot id): `Ok(Err(_))` when it is spent (11232, decided by
    /// the caller), `Err` when Redis failed.
    pub async fn check_custom_bot(&self, bot_id: &AppId) -> Result<Result<(), RateLimited>, InfraError> {
        if !self.enabled {
            return Ok(Ok(()));
        }
        self.take((Family::CustomBotHook, bot_id.0.clone()), Family::CustomBotHook.default_limits()).await
    }

    /// `Ok(Err(_))`: the budget refused the call; `Err`: the shared budget could not be read.
    async fn take(&self, key: (Family, String), spec: RateLimitSpec) -> Result<Result<(), RateLimited>, InfraError> {
        let taken = match &self.shared {
            Some(redis) => {
                let budget = format!("{:?}:{}", key.0, key.1);
                redis.take(&budget, self.clock.now_ms(), &windows(spec)).await?
            }
            None => {
                let budget = self.budget(key, spec);
                let mut log = budget.log.lock();
                log.take(self.clock.now_ms(), &budget.windows)
            }
        };
        Ok(taken.map_err(|(limit, frees_in_ms)| RateLimited { limit, reset_secs: reset_secs(frees_in_ms) }))
    }
}

/// The most stamps in any window `(x − span, x]`: what a limit of that span bounds (the tests
/// measure admitted calls with it).
pub fn max_in_window(stamps: &[i64], span: i64) -> usize {
    let mut sorted = stamps.to_vec();
    sorted.sort_unstable();
    let mut lo = 0;
    (0..sorted.len())
        .map(|hi| {
            while sorted[lo] <= sorted[hi] - span {
                lo += 1;
            }
            hi + 1 - lo
        })
        .max()
        .unwrap_or(0)
}


#[cfg(test)]
mod tests {
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// The start of a minute (30 000 000 of them since the epoch).
    const T0: i64 = 1_800_000_000_000;

    fn tenant() -> TenantKey {
        TenantKey("t".into())
    }

    /// Nodes sharing one budget, each reading its own clock.
    struct Nodes(Vec<(Arc<Clock>, RateLimits)>);

    impl Nodes {
        /// A call of `app` to create-chat reaching `node`, whose clock reads `at`.
        async fn take(&self, node: usize, at: i64, app: &str, spec: Option<RateLimitSpec>) -> Result<(), FeishuError> {
            let (clock, rl) = &self.0[node % self.0.len()];
            clock.set_ms(at);
            rl.check(&AppId(app.into()), &tenant(), Family::CreateChat, spec).await.map_err(|e| match e {
                ApiError::Feishu(e) => e,
                ApiError::Internal(e) => panic!("{e}"),
            })
        }

        async fn admits(&self, node: usize, at: i64, app: &str, spec: Option<RateLimitSpec>) -> bool {
            match self.take(node, at, app, spec).await {
                Ok(()) => true,
                Err(e) => {
                    assert_eq!(e.code, 99991400);
                    false
                }
            }
        }

        /// `n` calls at `at`, which must all pass.
        async fn fill(&self, node: usize, at: i64, app: &str, n: usize) {
            for i in 0..n {
                self.take(node, at, app, None).await.unwrap_or_else(|e| panic!("call {i} at +{} ms: {e:?}", at - T0));
            }
        }

        /// The refusal of a call at `at`: (limit, reset seconds).
        async fn refusal(&self, node: usize, at: i64, app: &str) -> (u32, u64) {
            let err = self.take(node, at, app, None).await.expect_err("refused");
            let rl = err.rate_limited.expect("rate-limit details");
            (rl.limit, rl.reset_secs)
        }
    }

    /// The in-process limiter (one node), and the Redis one (LARKSTACK_REDIS, default the local
    /// server) as three nodes in a namespace of their own: both must keep the same rules.
    async fn limiters() -> Vec<Nodes> {
        let url = std::env::var("LARKSTACK_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let namespace = format!("unit_{}", crate::secrets::random_hex());
        let frozen = || {
            let clock = Arc::new(Clock::default());
            clock.freeze();
            clock
        };
        let mut shared = Vec::new();
        for _ in 0..3 {
            let redis = Redis::connect(&url, &namespace).await.expect("Redis for the shared limiter tests");
            let clock = frozen();
            shared.push((clock.clone(), RateLimits::new(true, clock, Some(Arc::new(redis)))));
        }
        let local = frozen();
        vec![Nodes(vec![(local.clone(), RateLimits::new(true, local, None))]), Nodes(shared)]
    }

    #[tokio::test]
    async fn fifty_per_second_then_the_window_slides() {
        for nodes in limiters().await {
            nodes.fill(0, T0, "cli_a", 50).await;
            assert_eq!(nodes.refusal(1, T0, "cli_a").await, (50, 1));
            // Another app has its own budget.
            nodes.fill(2, T0, "cli_b", 1).await;
            // No refill before the window has passed the burst: GCRA let one call in every 20 ms,
            // 99 in one second.
            for ms in (20..1000).step_by(20) {
                assert_eq!(nodes.refusal(ms as usize, T0 + ms, "cli_a").await, (50, 1), "+{ms} ms");
            }
            nodes.fill(1, T0 + 1000, "cli_a", 50).await;
            assert_eq!(nodes.refusal(2, T0 + 1000, "cli_a").await, (50, 1));
            nodes.0[0].1.clear().await.unwrap();
            nodes.fill(0, T0 + 1000, "cli_a", 1).await;
        }
    }

    #[tokio::test]
    async fn a_burst_straddling_a_second_boundary() {
        for nodes in limiters().await {
            nodes.fill(0, T0 + 999, "cli_a", 50).await;
            // The clock second turned at +1000; the window (t − 1 s, t] still holds the burst.
            assert_eq!(nodes.refusal(1, T0 + 1001, "cli_a").await, (50, 1));
            assert_eq!(nodes.refusal(2, T0 + 1998, "cli_a").await, (50, 1));
            nodes.fill(0, T0 + 1999, "cli_a", 50).await;
            assert_eq!(nodes.refusal(1, T0 + 1999, "cli_a").await, (50, 1));
            // Half a burst on each side of a boundary is one burst.
            nodes.fill(0, T0 + 2990, "cli_c", 25).await;
            nodes.fill(1, T0 + 3010, "cli_c", 25).await;
            assert_eq!(nodes.refusal(2, T0 + 3500, "cli_c").await, (50, 1));
            nodes.fill(2, T0 + 3990, "cli_c", 25).await;
        }
    }

    #[tokio::test]
    async fn a_burst_straddling_a_minute_boundary() {
        for nodes in limiters().await {
            // 50 a second through the last 20 seconds of a clock minute: 1000.
            for s in 40..60 {
                nodes.fill(s as usize, T0 + s * 1000, "cli_a", 50).await;
            }
            // A new clock minute, the same 60-second window: refused until the first 50 leave it.
            assert_eq!(nodes.refusal(0, T0 + 60_000, "cli_a").await, (1000, 40));
            assert_eq!(nodes.refusal(1, T0 + 99_999, "cli_a").await, (1000, 1));
            nodes.fill(2, T0 + 100_000, "cli_a", 50).await;
            // Those 50 fill this second; the next second has room for the 50 that left at +41 s.
            assert_eq!(nodes.refusal(0, T0 + 100_000, "cli_a").await, (1000, 1));
            nodes.fill(1, T0 + 101_000, "cli_a", 50).await;
            assert_eq!(nodes.refusal(2, T0 + 101_000, "cli_a").await, (1000, 1));
        }
    }

    #[tokio::test]
    async fn late_stamps_are_judged_on_both_sides() {
        for nodes in limiters().await {
            nodes.fill(0, T0 + 1000, "cli_a", 25).await;
            nodes.fill(1, T0 + 1900, "cli_a", 25).await;
            // Read before the last 25 were taken: (+900, +1900] would hold 51. A call fits again
            // at +2000, 1.05 s after its stamp.
            assert_eq!(nodes.refusal(2, T0 + 950, "cli_a").await, (50, 2));
            // No window containing +850 holds 50.
            nodes.fill(0, T0 + 850, "cli_a", 1).await;
            assert_eq!(nodes.refusal(1, T0 + 1901, "cli_a").await, (50, 1));
            // (+850, +1850] has room, (+900, +1900] has not.
            assert_eq!(nodes.refusal(2, T0 + 1850, "cli_a").await, (50, 1));
            assert_eq!(nodes.refusal(0, T0 + 1849, "cli_a").await, (50, 1));
            nodes.fill(1, T0 + 2000, "cli_a", 25).await;
            assert_eq!(nodes.refusal(2, T0 + 2000, "cli_a").await, (50, 1));

            // Moving late stamps to the newest would take the third call into (+99, +1099].
            let two = Some(RateLimitSpec { per_second: 2, per_minute: 1000 });
            assert!(nodes.admits(0, T0 + 100, "cli_b", two).await);
            assert!(nodes.admits(1, T0 + 100, "cli_b", two).await);
            assert!(nodes.admits(2, T0 + 1101, "cli_b", two).await);
            assert!(!nodes.admits(0, T0 + 1099, "cli_b", two).await);
            assert!(nodes.admits(1, T0 + 1100, "cli_b", two).await);

            // A clock set back by more than a window starts the budget afresh.
            nodes.fill(2, T0 - 120_000, "cli_a", 50).await;
            assert_eq!(nodes.refusal(0, T0 - 120_000, "cli_a").await, (50, 1));
        }
    }

    /// The definition, by brute force: admitting `t` keeps every window of every limit within it.
    fn definition_admits(admitted: &[i64], t: i64, spec: RateLimitSpec) -> bool {
        let limits = [(1_000, spec.per_second), (60_000, spec.per_minute)];
        limits.iter().filter(|(_, limit)| *limit > 0 || (*limit == 0 && spec.per_minute == 0)).all(|&(span, limit)| {
            let ends = std::iter::once(t).chain(admitted.iter().copied().filter(|&e| e > t && e < t + span));
            ends.into_iter().all(|x| admitted.iter().filter(|&&e| e > x - span && e <= x).count() < limit as usize)
        })
    }

    #[tokio::test]
    async fn random_arrivals_never_overfill_a_window() {
        // (spec, calls, over ms, how late a node's shuffled reads may reach the limiter)
        let cases = [
            (RateLimitSpec { per_second: 50, per_minute: 1000 }, 600, 4_000, 4_000),
            (RateLimitSpec { per_second: 5, per_minute: 60 }, 700, 150_000, 30_000),
            (RateLimitSpec { per_second: 5, per_minute: u32::MAX }, 300, 10_000, 900),
        ];
        for (n, nodes) in limiters().await.into_iter().enumerate() {
            for (case, &(spec, calls, over, lateness)) in cases.iter().enumerate() {
                for seed in 0..3u64 {
                    let mut rng = rand::rngs::StdRng::seed_from_u64(seed * 10 + case as u64);
                    // Each of three nodes reads the clock for its calls; node 0 in order, the
                    // others shuffled within `lateness`; the calls reach the limiter interleaved.
                    let mut arrivals: Vec<(i64, usize, i64)> = (0..calls)
                        .map(|_| {
                            let (node, at) = (rng.random_range(0..3usize), T0 + rng.random_range(0..over));
                            let delay = if node == 0 { 0 } else { rng.random_range(0..lateness) };
                            (at + delay, node, at)
                        })
                        .collect();
                    arrivals.sort_unstable();
                    if lateness >= over {
                        arrivals.shuffle(&mut rng);
                    }
                    let app = format!("cli_{case}_{seed}");
                    let mut admitted = Vec::new();
                    for (_, node, at) in arrivals {
                        let expected = definition_admits(&admitted, at, spec);
                        assert_eq!(nodes.admits(node, at, &app, Some(spec)).await, expected, "limiter {n}, case {case}, seed {seed}, +{} ms", at - T0);
                        if expected {
                            admitted.push(at);
                        }
                    }
                    assert!(admitted.len() < calls && !admitted.is_empty());
                    assert!(max_in_window(&admitted, 1_000) <= spec.per_second as usize, "case {case}");
                    assert!(max_in_window(&admitted, 60_000) <= spec.per_minute as usize, "case {case}");
                }
            }
        }
    }

    #[tokio::test]
    async fn disabled_never_limits() {
        let rl = RateLimits::new(false, Arc::new(Clock::default()), None);
        for _ in 0..200 {
            rl.check(&AppId("a".into()), &TenantKey("t".into()), Family::CreateChat, None).await.unwrap();
        }
    }
}
