//! Per-app, per-tenant request limits, read through the larkstack clock.
//!
//! Feishu states limits as "50 次/秒" and "1000 次/分钟". The per-second limit is a GCRA cell
//! (governor): bursts up to 50, refilled smoothly. The per-minute limit is a fixed window per clock
//! minute: a GCRA with a 1000 burst would let ~2000 calls through in the first minute, which is not
//! what "1000 per minute" promises a client.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{Quota, RateLimiter};
use parking_lot::Mutex;

use crate::clock::{Clock, GovernorClock};
use crate::cluster::Redis;
use crate::domain::directory::RateLimitSpec;
use crate::domain::ids::{AppId, TenantKey};
use crate::error::FeishuError;

type SecondCell = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    GovernorClock,
    governor::middleware::NoOpMiddleware<governor::nanos::Nanos>,
>;

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
    ChatMessages,
    ApaasChatGroup,
    ApaasTaskQuery,
}

impl Family {
    /// Feishu's documented default for the family.
    pub fn default_limits(self) -> RateLimitSpec {
        match self {
            // 5 QPS per chat, shared by all bots in it (spec §1.6).
            Family::ChatMessages => RateLimitSpec { per_second: 5, per_minute: u32::MAX },
            // aPaaS user-task endpoints: "100 次/分钟" only (spec §1.6).
            Family::ApaasChatGroup | Family::ApaasTaskQuery => RateLimitSpec { per_second: 100, per_minute: 100 },
            _ => RateLimitSpec { per_second: 50, per_minute: 1000 },
        }
    }
}

struct Budget {
    spec: RateLimitSpec,
    per_second: Option<SecondCell>,
    /// (minute number, calls counted in it)
    minute: Mutex<(i64, u32)>,
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
        let budget = map.entry(key).or_insert_with(|| {
            let per_second = NonZeroU32::new(spec.per_second).and_then(|n| {
                let quota = Quota::with_period(std::time::Duration::from_secs(1) / n.get())?.allow_burst(n);
                Some(RateLimiter::direct_with_clock(quota, GovernorClock(self.clock.clone())))
            });
            Arc::new(Budget { spec, per_second, minute: Mutex::new((i64::MIN, 0)) })
        });
        budget.clone()
    }

    /// Forgets every window (control API reset).
    pub async fn clear(&self) -> Result<(), FeishuError> {
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
    ) -> Result<(), FeishuError> {
        if !self.enabled {
            return Ok(());
        }
        let spec = app_override.unwrap_or_else(|| family.default_limits());
        self.take((family, format!("{app}|{tenant}")), spec).await
    }

    /// The per-chat message budget (230020 when exhausted, decided by the caller).
    pub async fn check_chat_messages(&self, chat: &crate::domain::ids::ChatId) -> Result<(), FeishuError> {
        if !self.enabled {
            return Ok(());
        }
        self.take((Family::ChatMessages, chat.0.clone()), Family::ChatMessages.default_limits()).await
    }

    async fn take(&self, key: (Family, String), spec: RateLimitSpec) -> Result<(), FeishuError> {
        if let Some(redis) = &self.shared {
            let budget = format!("{:?}:{}", key.0, key.1);
            return match redis.take(&budget, self.clock.now_ms(), spec.per_second, spec.per_minute).await? {
                None => Ok(()),
                Some((limit, reset_secs)) => Err(FeishuError::rate_limited(limit, reset_secs)),
            };
        }
        self.take_here(key, spec)
    }

    fn take_here(&self, key: (Family, String), spec: RateLimitSpec) -> Result<(), FeishuError> {
        let budget = self.budget(key, spec);
        let now_ms = self.clock.now_ms();
        let this_minute = now_ms.div_euclid(60_000);
        {
            let minute = budget.minute.lock();
            if minute.0 == this_minute && minute.1 >= budget.spec.per_minute {
                let reset = ((60_000 - now_ms.rem_euclid(60_000)) as u64).div_ceil(1000);
                return Err(FeishuError::rate_limited(budget.spec.per_minute, reset.max(1)));
            }
        }
        if let Some(cell) = &budget.per_second {
            if let Err(not_until) = cell.check() {
                let wait = not_until.wait_time_from(governor::clock::Clock::now(&GovernorClock(self.clock.clone())));
                let reset = wait.as_millis().div_ceil(1000).max(1) as u64;
                return Err(FeishuError::rate_limited(budget.spec.per_second, reset));
            }
        }
        let mut minute = budget.minute.lock();
        if minute.0 != this_minute {
            *minute = (this_minute, 0);
        }
        minute.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frozen_at_minute_start() -> Arc<Clock> {
        let clock = Arc::new(Clock::default());
        clock.freeze();
        clock.set_ms(1_800_000_000_000 - 1_800_000_000_000 % 60_000);
        clock
    }

    /// The in-process limiter, and the Redis one (LARKSTACK_REDIS, default the local server) in
    /// a namespace of its own: both must keep the same rules.
    async fn limiters(clock: &Arc<Clock>) -> Vec<RateLimits> {
        let url = std::env::var("LARKSTACK_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let namespace = format!("unit_{}", crate::state::random_hex());
        let redis = Redis::connect(&url, &namespace).await.expect("Redis for the shared limiter tests");
        vec![RateLimits::new(true, clock.clone(), None), RateLimits::new(true, clock.clone(), Some(Arc::new(redis)))]
    }

    #[tokio::test]
    async fn fifty_per_second_then_refill_with_the_clock() {
        let clock = frozen_at_minute_start();
        for rl in limiters(&clock).await {
            let (a, t) = (AppId("cli_a".into()), TenantKey("t".into()));
            for _ in 0..50 {
                rl.check(&a, &t, Family::CreateChat, None).await.unwrap();
            }
            let err = rl.check(&a, &t, Family::CreateChat, None).await.unwrap_err();
            assert_eq!(err.code, 99991400);
            assert_eq!(err.rate_limited.unwrap().limit, 50);
            // Another app has its own budget.
            rl.check(&AppId("cli_b".into()), &t, Family::CreateChat, None).await.unwrap();
            clock.advance_ms(1000);
            for _ in 0..50 {
                rl.check(&a, &t, Family::CreateChat, None).await.unwrap();
            }
            assert!(rl.check(&a, &t, Family::CreateChat, None).await.is_err());
            // A budget refills at 50/s: 20 ms later one call, not two.
            clock.advance_ms(20);
            rl.check(&a, &t, Family::CreateChat, None).await.unwrap();
            assert!(rl.check(&a, &t, Family::CreateChat, None).await.is_err());
            rl.clear().await.unwrap();
            rl.check(&a, &t, Family::CreateChat, None).await.unwrap();
        }
    }

    #[tokio::test]
    async fn per_minute_budget_resets_at_the_minute() {
        let clock = frozen_at_minute_start();
        for rl in limiters(&clock).await {
            let (a, t) = (AppId("cli_a".into()), TenantKey("t".into()));
            let spec = Some(RateLimitSpec { per_second: 1000, per_minute: 5 });
            for _ in 0..5 {
                rl.check(&a, &t, Family::CreateChat, spec).await.unwrap();
            }
            clock.advance_ms(15_000);
            let err = rl.check(&a, &t, Family::CreateChat, spec).await.unwrap_err();
            assert_eq!(err.rate_limited.unwrap().limit, 5);
            assert_eq!(err.rate_limited.unwrap().reset_secs, 45);
            clock.advance_ms(45_000);
            rl.check(&a, &t, Family::CreateChat, spec).await.unwrap();
            clock.advance_ms(-60_000);
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
