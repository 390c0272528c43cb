//! Per-app, per-tenant request limits (GCRA, via governor) read through the larkstack clock.
//!
//! Each endpoint family declares its limits; each (app, tenant, family) gets its own cells.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{Quota, RateLimiter};
use parking_lot::Mutex;

use crate::clock::{Clock, GovernorClock};
use crate::domain::directory::RateLimitSpec;
use crate::domain::ids::{AppId, TenantKey};
use crate::error::FeishuError;

type Limiter = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    GovernorClock,
    governor::middleware::NoOpMiddleware<governor::nanos::Nanos>,
>;

/// A family of endpoints sharing one budget, e.g. "create chat".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    CreateChat,
}

impl Family {
    /// Feishu's documented default for the family.
    pub fn default_limits(self) -> RateLimitSpec {
        match self {
            Family::CreateChat => RateLimitSpec { per_second: 50, per_minute: 1000 },
        }
    }
}

struct Windows {
    spec: RateLimitSpec,
    per_second: Option<Limiter>,
    per_minute: Option<Limiter>,
}

pub struct RateLimits {
    enabled: bool,
    clock: Arc<Clock>,
    windows: Mutex<HashMap<(AppId, TenantKey, Family), Arc<Windows>>>,
}

impl RateLimits {
    pub fn new(enabled: bool, clock: Arc<Clock>) -> Self {
        RateLimits { enabled, clock, windows: Mutex::new(HashMap::new()) }
    }

    fn limiter(&self, n: u32, per: std::time::Duration) -> Option<Limiter> {
        let n = NonZeroU32::new(n)?;
        let quota = Quota::with_period(per / n.get())?.allow_burst(n);
        Some(RateLimiter::direct_with_clock(quota, GovernorClock(self.clock.clone())))
    }

    /// Takes one request from the budget, or says how long to wait.
    /// `app_override` is the fixture's per-app setting; it replaces the family default.
    pub fn check(
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
        let windows = {
            let mut map = self.windows.lock();
            let entry = map.entry((app.clone(), tenant.clone(), family));
            let w = entry.or_insert_with(|| {
                Arc::new(Windows {
                    spec,
                    per_second: self.limiter(spec.per_second, std::time::Duration::from_secs(1)),
                    per_minute: self.limiter(spec.per_minute, std::time::Duration::from_secs(60)),
                })
            });
            w.clone()
        };
        let now = governor::clock::Clock::now(&GovernorClock(self.clock.clone()));
        for (limiter, limit) in [
            (&windows.per_minute, windows.spec.per_minute),
            (&windows.per_second, windows.spec.per_second),
        ] {
            if let Some(l) = limiter {
                if let Err(not_until) = l.check() {
                    let wait = not_until.wait_time_from(now);
                    let reset = wait.as_millis().div_ceil(1000).max(1) as u64;
                    return Err(FeishuError::rate_limited(limit, reset));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifty_per_second_then_refill_with_the_clock() {
        let clock = Arc::new(Clock::default());
        clock.freeze();
        let rl = RateLimits::new(true, clock.clone());
        let (a, t) = (AppId("cli_a".into()), TenantKey("t".into()));
        for _ in 0..50 {
            rl.check(&a, &t, Family::CreateChat, None).unwrap();
        }
        let err = rl.check(&a, &t, Family::CreateChat, None).unwrap_err();
        assert_eq!(err.code, 99991400);
        assert_eq!(err.rate_limited.unwrap().limit, 50);
        // Another app has its own budget.
        rl.check(&AppId("cli_b".into()), &t, Family::CreateChat, None).unwrap();
        clock.advance_ms(1000);
        rl.check(&a, &t, Family::CreateChat, None).unwrap();
    }

    #[test]
    fn per_minute_budget_holds_across_seconds() {
        let clock = Arc::new(Clock::default());
        clock.freeze();
        let rl = RateLimits::new(true, clock.clone());
        let (a, t) = (AppId("cli_a".into()), TenantKey("t".into()));
        let spec = Some(RateLimitSpec { per_second: 1000, per_minute: 5 });
        for _ in 0..5 {
            rl.check(&a, &t, Family::CreateChat, spec).unwrap();
        }
        let err = rl.check(&a, &t, Family::CreateChat, spec).unwrap_err();
        assert_eq!(err.rate_limited.unwrap().limit, 5);
        assert!(err.rate_limited.unwrap().reset_secs >= 1);
        clock.advance_ms(12_000);
        rl.check(&a, &t, Family::CreateChat, spec).unwrap();
    }

    #[test]
    fn disabled_never_limits() {
        let rl = RateLimits::new(false, Arc::new(Clock::default()));
        for _ in 0..200 {
            rl.check(&AppId("a".into()), &TenantKey("t".into()), Family::CreateChat, None).unwrap();
        }
    }
}
