//! The one clock. Every time read — token expiry, dedup windows, rate-limit windows — goes through
//! it, so tests (and later the control API) can freeze, set and advance time.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const NOT_FROZEN: i64 = i64::MIN;

#[derive(Debug)]
pub struct Clock {
    offset_ms: AtomicI64,
    frozen_at_ms: AtomicI64,
}

impl Default for Clock {
    fn default() -> Self {
        Clock { offset_ms: AtomicI64::new(0), frozen_at_ms: AtomicI64::new(NOT_FROZEN) }
    }
}

fn system_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Clock {
    /// Milliseconds since the Unix epoch, as larkstack sees it.
    pub fn now_ms(&self) -> i64 {
        match self.frozen_at_ms.load(Ordering::Acquire) {
            NOT_FROZEN => system_ms() + self.offset_ms.load(Ordering::Acquire),
            frozen => frozen,
        }
    }

    pub fn now_secs(&self) -> i64 {
        self.now_ms() / 1000
    }

    pub fn advance_ms(&self, by: i64) {
        self.offset_ms.fetch_add(by, Ordering::AcqRel);
        let _ = self.frozen_at_ms.fetch_update(Ordering::AcqRel, Ordering::Acquire, |f| {
            // Lazily: `then_some(f + by)` would compute i64::MIN + by (overflow) while running.
            (f != NOT_FROZEN).then(|| f + by)
        });
    }

    /// Jumps to `ms` (and keeps running from there unless frozen).
    pub fn set_ms(&self, ms: i64) {
        if self.is_frozen() {
            self.frozen_at_ms.store(ms, Ordering::Release);
        } else {
            self.offset_ms.store(ms - system_ms(), Ordering::Release);
        }
    }

    /// Stops time at the current instant.
    pub fn freeze(&self) {
        let now = self.now_ms();
        self.frozen_at_ms.store(now, Ordering::Release);
    }

    /// Lets time run again from where it stands.
    pub fn unfreeze(&self) {
        let frozen = self.frozen_at_ms.swap(NOT_FROZEN, Ordering::AcqRel);
        if frozen != NOT_FROZEN {
            self.offset_ms.store(frozen - system_ms(), Ordering::Release);
        }
    }

    pub fn is_frozen(&self) -> bool {
        self.frozen_at_ms.load(Ordering::Acquire) != NOT_FROZEN
    }

    /// The state other nodes adopt to read the same time: "offset frozen_at" (frozen_at is
    /// i64::MIN while running). Offsets are from the system clock, which nodes share via NTP.
    pub fn shared_state(&self) -> String {
        format!("{} {}", self.offset_ms.load(Ordering::Acquire), self.frozen_at_ms.load(Ordering::Acquire))
    }

    /// Takes the state another node published; malformed input changes nothing.
    pub fn adopt_shared_state(&self, state: &str) {
        let mut parts = state.split(' ').map(str::parse::<i64>);
        if let (Some(Ok(offset)), Some(Ok(frozen)), None) = (parts.next(), parts.next(), parts.next()) {
            self.offset_ms.store(offset, Ordering::Release);
            self.frozen_at_ms.store(frozen, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freeze_advance_unfreeze() {
        let c = Clock::default();
        c.freeze();
        let t = c.now_ms();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(c.now_ms(), t);
        c.advance_ms(3_600_000);
        assert_eq!(c.now_ms(), t + 3_600_000);
        c.unfreeze();
        assert!(c.now_ms() >= t + 3_600_000);
        assert!(!c.is_frozen());
    }

    #[test]
    fn shared_state_round_trip() {
        let a = Clock::default();
        a.freeze();
        a.advance_ms(86_400_000);
        let b = Clock::default();
        b.adopt_shared_state(&a.shared_state());
        assert_eq!(b.now_ms(), a.now_ms());
        assert!(b.is_frozen());
        a.unfreeze();
        b.adopt_shared_state(&a.shared_state());
        assert!(!b.is_frozen());
        assert!((b.now_ms() - a.now_ms()).abs() < 1000);
        b.adopt_shared_state("garbage");
        assert!(!b.is_frozen());
    }

    #[test]
    fn going_back_while_running() {
        let c = Clock::default();
        let t = c.now_ms();
        c.advance_ms(-3_600_000);
        assert!(c.now_ms() < t);
        assert!(!c.is_frozen());
    }
}
