//! What several nodes share through Redis (`--redis`): rate-limit windows, the dedup keys of
//! creates in flight, and the larkstack clock. Every read-modify-write is one Lua script, so it
//! is atomic across nodes; every time it compares is the larkstack clock's, passed in by the caller.
//!
//! Keys live under a namespace (`larkstack:<schema>:`) so deployments, or test runs, that use
//! different database schemas can share one Redis.

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};

use crate::clock::Clock;
use crate::error::FeishuError;

/// Per-second budget as GCRA (theoretical arrival time in µs, burst = the limit), per-minute as a
/// fixed window per clock minute: the same rules as the in-process limiter in ratelimit.rs.
/// KEYS: the GCRA key, the minute's counter. ARGV: now (ms), per second, per minute.
/// Returns {0} when taken, {1, limit, reset seconds} when refused.
const TAKE: &str = r"
local now_ms = tonumber(ARGV[1])
local per_second = tonumber(ARGV[2])
local per_minute = tonumber(ARGV[3])
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
if used >= per_minute then
  return {1, per_minute, math.max(1, math.ceil((60000 - (now_ms % 60000)) / 1000))}
end
if per_second > 0 then
  local now = now_ms * 1000
  local interval = 1000000 / per_second
  local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
  -- A TAT beyond a full burst ahead is left from a clock that was set back: start afresh.
  if tat < now or tat > now + interval * per_second then tat = now end
  local early = tat - now - interval * (per_second - 1)
  if early > 0 then
    return {1, per_second, math.max(1, math.ceil(early / 1000000))}
  end
  redis.call('SET', KEYS[1], string.format('%.0f', tat + interval), 'PX', 120000)
end
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], 120000)
return {0}
";

/// Deletes an in-flight key only if this claim still holds it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// How long a claimed in-flight key lives if its node dies before releasing it.
const IN_FLIGHT_TTL_MS: u64 = 30_000;

pub struct Redis {
    conn: ConnectionManager,
    client: redis::Client,
    namespace: String,
    /// Tags this node's clock announcements, so it does not re-apply (possibly stale) echoes of its own.
    node: String,
    take: Script,
    release: Script,
}

fn unavailable(e: redis::RedisError) -> FeishuError {
    tracing::error!(error = %e, "redis failure");
    FeishuError::new(1, "internal error").with_status(500)
}

impl Redis {
    pub async fn connect(url: &str, schema: &str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("redis URL: {e}"))?;
        let conn = client
            .get_connection_manager()
            .await
            .map_err(|e| format!("redis {url}: {e}"))?;
        Ok(Redis {
            conn,
            client,
            namespace: format!("larkstack:{schema}:"),
            node: crate::state::random_hex(),
            take: Script::new(TAKE),
            release: Script::new(RELEASE),
        })
    }

    /// Takes one call from the budget `key`, or says which limit refused it and for how long.
    pub async fn take(
        &self,
        key: &str,
        now_ms: i64,
        per_second: u32,
        per_minute: u32,
    ) -> Result<Option<(u32, u64)>, FeishuError> {
        let minute = now_ms.div_euclid(60_000);
        let reply: Vec<i64> = self
            .take
            .key(format!("{}rl:{key}:s", self.namespace))
            .key(format!("{}rl:{key}:m:{minute}", self.namespace))
            .arg(now_ms)
            .arg(per_second)
            .arg(per_minute)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(match reply.as_slice() {
            [1, limit, reset] => Some((*limit as u32, *reset as u64)),
            _ => None,
        })
    }

    pub async fn ping(&self) -> Result<(), redis::RedisError> {
        redis::cmd("PING").query_async::<String>(&mut self.conn.clone()).await.map(drop)
    }

    /// Forgets every rate window (control API reset).
    pub async fn clear_limits(&self) -> Result<(), FeishuError> {
        let mut conn = self.conn.clone();
        let keys: Vec<String> = {
            let mut iter: redis::AsyncIter<String> = conn
                .scan_match(format!("{}rl:*", self.namespace))
                .await
                .map_err(unavailable)?;
            let mut keys = Vec::new();
            while let Some(k) = futures_util::StreamExt::next(&mut iter).await {
                keys.push(k.map_err(unavailable)?);
            }
            keys
        };
        for chunk in keys.chunks(500) {
            let _: () = conn.del(chunk).await.map_err(unavailable)?;
        }
        Ok(())
    }

    /// Claims `key` for `token` unless another claim holds it.
    pub async fn claim(&self, key: &str, token: &str) -> Result<bool, FeishuError> {
        let set: Option<String> = redis::cmd("SET")
            .arg(format!("{}inflight:{key}", self.namespace))
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(IN_FLIGHT_TTL_MS)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(set.is_some())
    }

    pub async fn release(&self, key: &str, token: &str) {
        let released: Result<i64, _> = self
            .release
            .key(format!("{}inflight:{key}", self.namespace))
            .arg(token)
            .invoke_async(&mut self.conn.clone())
            .await;
        if let Err(e) = released {
            tracing::warn!(error = %e, "releasing an in-flight key failed; it expires by itself");
        }
    }

    fn clock_key(&self) -> String {
        format!("{}clock", self.namespace)
    }

    /// Tells every node (this one included) the clock's new state.
    pub async fn publish_clock(&self, clock: &Clock) -> Result<(), FeishuError> {
        let state = clock.shared_state();
        let mut conn = self.conn.clone();
        let _: () = conn
            .set(self.clock_key(), &state)
            .await
            .map_err(unavailable)?;
        let _: () = conn
            .publish(self.clock_key(), format!("{} {state}", self.node))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Adopts the shared clock now and follows its changes for as long as the process runs.
    pub async fn follow_clock(&self, clock: std::sync::Arc<Clock>) -> Result<(), String> {
        let mut pubsub = self
            .client
            .get_async_pubsub()
            .await
            .map_err(|e| format!("redis pub/sub: {e}"))?;
        pubsub
            .subscribe(self.clock_key())
            .await
            .map_err(|e| format!("redis pub/sub: {e}"))?;
        // Subscribed first, read second: a change published in between is not missed.
        let current: Option<String> = self
            .conn
            .clone()
            .get(self.clock_key())
            .await
            .map_err(|e| format!("redis: {e}"))?;
        if let Some(state) = current {
            clock.adopt_shared_state(&state);
        }
        let own = format!("{} ", self.node);
        tokio::spawn(async move {
            let mut messages = pubsub.into_on_message();
            while let Some(msg) = futures_util::StreamExt::next(&mut messages).await {
                let Ok(payload) = msg.get_payload::<String>() else {
                    continue;
                };
                if payload.starts_with(&own) {
                    continue;
                }
                if let Some((_node, state)) = payload.split_once(' ') {
                    clock.adopt_shared_state(state);
                }
            }
            tracing::error!(
                "lost the redis clock subscription; this node's clock no longer follows the others"
            );
        });
        Ok(())
    }
}
