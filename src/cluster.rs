//! What several nodes share through Redis (`--redis`): rate-limit windows, the dedup keys of
//! creates in flight, the larkstack clock, the long-connection slots (which node holds each), and
//! requests from one node to another (`ask`, answered by the handler `serve_peers` installs). Every read-modify-write is one Lua script, so it
//! is atomic across nodes; every time it compares is the larkstack clock's, passed in by the caller.
//!
//! Keys live under a namespace (`larkstack:<schema>:`) so deployments, or test runs, that use
//! different database schemas can share one Redis.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::envelope::InfraError;

/// The sliding-log rule of ratelimit.rs (see `Log` there: the same steps, in the same order), on
/// one sorted set per budget whose scores are the admitted stamps (ms) and whose members are
/// unique ids. KEYS: the sorted set. ARGV: the call's stamp (ms), a unique member, the key's TTL
/// (ms), then the span (ms) and limit of each window, widest first.
/// Returns {0} when taken, {1, limit, ms until a slot frees} when refused.
const TAKE: &str = r"
local key = KEYS[1]
local t = tonumber(ARGV[1])
local windows, widest = {}, 0
for i = 4, #ARGV - 1, 2 do
  local span, limit = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  windows[#windows + 1] = {span, limit}
  if span > widest then widest = span end
end
if #windows == 0 then return {0} end
local function ms(x) return string.format('%.0f', x) end
local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
local newest = last[2] and tonumber(last[2])
if newest and t < newest - widest then
  -- A whole window behind the newest: the clock was set back; the log is in the future.
  redis.call('DEL', key)
  newest = nil
end
if not newest or t >= newest then
  redis.call('ZREMRANGEBYSCORE', key, '-inf', ms(t - 2 * widest))
end
for _, w in ipairs(windows) do
  local span, limit = w[1], w[2]
  local full = redis.call('ZCOUNT', key, '(' .. ms(t - span), ms(t)) >= limit
  if not full and newest and t < newest then
    -- A late stamp: the windows ending at each later stamp within a span must have room too.
    local around = redis.call('ZRANGEBYSCORE', key, '(' .. ms(t - span), '(' .. ms(t + span), 'WITHSCORES')
    local s = {}
    for i = 2, #around, 2 do s[#s + 1] = tonumber(around[i]) end
    local lo = 1
    for hi = 1, #s do
      local x = s[hi]
      if x > t then
        while s[lo] <= x - span do lo = lo + 1 end
        if hi - lo + 1 >= limit then
          full = true
          break
        end
      end
    end
  end
  if full then
    local frees = t + span
    if limit > 0 then
      local nth = redis.call('ZRANGE', key, -limit, -limit, 'WITHSCORES')
      frees = nth[2] and (tonumber(nth[2]) + span) or t
    end
    if newest and newest > frees then frees = newest end
    return {1, limit, frees - t}
  end
end
redis.call('ZADD', key, ms(t), ARGV[2])
redis.call('PEXPIRE', key, ARGV[3])
return {0}
";

/// How long an idle budget's key lives, in real time. Far longer than the windows, so a budget
/// used under a frozen clock stays exhausted while a test thinks.
const LIMIT_TTL_MS: u64 = 600_000;

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
    /// This node's name (12 hex): tags its clock announcements (so it does not re-apply possibly
    /// stale echoes of its own), names its channel and the long-connection slots it holds.
    node: String,
    /// Numbers this node's rate-log entries, which must be unique members of their sorted set.
    admitted: AtomicU64,
    take: Script,
    release: Script,
    /// Asks of this node awaiting their answer, by id.
    asks: parking_lot::Mutex<HashMap<u64, oneshot::Sender<Value>>>,
    next_ask: AtomicU64,
}

/// At most `limit` admitted calls in any window `(x − span_ms, x]` (a rate limit's, see
/// `ratelimit::windows`; Redis keeps the log when nodes share the limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub span_ms: i64,
    pub limit: u32,
}

fn unavailable(e: redis::RedisError) -> InfraError {
    InfraError::Redis(e)
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
            node: crate::secrets::random_hex()[..12].to_string(),
            admitted: AtomicU64::new(0),
            take: Script::new(TAKE),
            release: Script::new(RELEASE),
            asks: parking_lot::Mutex::default(),
            next_ask: AtomicU64::new(1),
        })
    }

    /// Takes one call from the budget `key`, or says which limit refused it and in how many
    /// milliseconds a slot frees.
    pub async fn take(&self, key: &str, now_ms: i64, windows: &[Window]) -> Result<Result<(), (u32, i64)>, InfraError> {
        let member = format!("{}{:x}", self.node, self.admitted.fetch_add(1, Ordering::Relaxed));
        let mut invocation = self.take.key(format!("{}rl:{{{key}}}", self.namespace));
        invocation.arg(now_ms).arg(member).arg(LIMIT_TTL_MS);
        for w in windows {
            invocation.arg(w.span_ms).arg(w.limit);
        }
        let reply: Vec<i64> = invocation.invoke_async(&mut self.conn.clone()).await.map_err(unavailable)?;
        Ok(match reply.as_slice() {
            [1, limit, frees_in_ms] => Err((*limit as u32, *frees_in_ms)),
            _ => Ok(()),
        })
    }

    /// This node's name among the nodes sharing this Redis.
    pub fn node(&self) -> &str {
        &self.node
    }

    pub async fn ping(&self) -> Result<(), redis::RedisError> {
        redis::cmd("PING").query_async::<String>(&mut self.conn.clone()).await.map(drop)
    }

    /// Forgets every rate window (control API reset).
    pub async fn clear_limits(&self) -> Result<(), InfraError> {
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
    pub async fn claim(&self, key: &str, token: &str) -> Result<bool, InfraError> {
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
    pub async fn publish_clock(&self, clock: &Clock) -> Result<(), InfraError> {
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

/// Claims (or refreshes) a long-connection slot: the app's sorted set holds its connections
/// cluster-wide, as `<conn_id>@<node>` (which node holds it), scored by when their lease ends
/// (real ms). KEYS: the set, the set of apps that had connections. ARGV: now, lease end, the
/// member, the limit, the app. Returns 1 when held, 0 when the app is full.
const WS_CLAIM: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if not redis.call('ZSCORE', KEYS[1], ARGV[3]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[5])
return 1
";

fn wall_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Redis {
    fn ws_key(&self, app_id: &str) -> String {
        format!("{}ws:{app_id}", self.namespace)
    }

    /// The apps that had long connections (so counting them needs no keyspace scan; at most the
    /// directory's apps).
    fn ws_apps_key(&self) -> String {
        format!("{}wsapps", self.namespace)
    }

    fn ws_member(&self, conn_id: &str) -> String {
        format!("{conn_id}@{}", self.node)
    }

    /// Takes (or keeps) `conn_id`'s slot among the app's at most `limit` long connections for
    /// `lease`; `false` when the cluster already holds `limit`. Leases are in real time: they say
    /// the node is alive, whatever larkstack's clock says.
    pub async fn ws_claim(&self, app_id: &str, conn_id: &str, limit: usize, lease: std::time::Duration) -> Result<bool, InfraError> {
        let now = wall_ms();
        let held: i64 = Script::new(WS_CLAIM)
            .key(self.ws_key(app_id))
            .key(self.ws_apps_key())
            .arg(now)
            .arg(now + lease.as_millis() as i64)
            .arg(self.ws_member(conn_id))
            .arg(limit.min(i64::MAX as usize) as i64)
            .arg(app_id)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(held == 1)
    }

    pub async fn ws_release(&self, app_id: &str, conn_id: &str) {
        let removed: Result<i64, _> = self.conn.clone().zrem(self.ws_key(app_id), self.ws_member(conn_id)).await;
        if let Err(e) = removed {
            tracing::warn!(error = %e, "releasing a long-connection slot failed; its lease ends by itself");
        }
    }

    /// Live long connections cluster-wide (of one app, or of all): which node holds each.
    pub async fn ws_holders(&self, app_id: Option<&str>) -> Result<Vec<Held>, InfraError> {
        let mut conn = self.conn.clone();
        let apps: Vec<String> = match app_id {
            Some(app) => vec![app.to_string()],
            None => conn.smembers(self.ws_apps_key()).await.map_err(unavailable)?,
        };
        let now = wall_ms();
        let mut out = Vec::new();
        for app in apps {
            let members: Vec<String> = conn.zrangebyscore(self.ws_key(&app), format!("({now}"), "+inf").await.map_err(unavailable)?;
            for m in members {
                if let Some((conn_id, node)) = m.rsplit_once('@') {
                    out.push(Held { app_id: app.clone(), conn_id: conn_id.to_string(), node: node.to_string() });
                }
            }
        }
        Ok(out)
    }

    /// Live long connections per app, cluster-wide.
    pub async fn ws_counts(&self) -> Result<Vec<(String, usize)>, InfraError> {
        let mut conn = self.conn.clone();
        let apps: Vec<String> = conn.smembers(self.ws_apps_key()).await.map_err(unavailable)?;
        let now = wall_ms();
        let mut out = Vec::new();
        for app in apps {
            let n: usize = conn.zcount(self.ws_key(&app), format!("({now}"), "+inf").await.map_err(unavailable)?;
            if n > 0 {
                out.push((app, n));
            }
        }
        Ok(out)
    }
}

/// A live long connection as Redis records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub app_id: String,
    pub conn_id: String,
    /// The node holding it.
    pub node: String,
}

/// What a node answers an `ask` with (its handler's work, in its own process).
pub type PeerHandler = Arc<dyn Fn(Value) -> Pin<Box<dyn Future<Output = Value> + Send>> + Send + Sync>;

/// What one node sends another on the receiver's channel (`<namespace>node:<node>`): a request,
/// with the asker's node so the answer can go to the asker's channel, or that answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum PeerMessage {
    Ask { id: u64, from: String, body: Value },
    Answer { id: u64, body: Value },
}

/// What became of an `ask`.
#[derive(Debug)]
pub enum Asked {
    Answer(Value),
    /// Nobody listens on that node's channel: the node is gone (its slots expire with their lease).
    NoNode,
    /// The node did not answer in time.
    NoAnswer,
}

impl Redis {
    fn node_channel(&self, node: &str) -> String {
        format!("{}node:{node}", self.namespace)
    }

    /// Subscribes to this node's channel and, for as long as the process runs, answers every ask
    /// with `handler` (each in a task of its own) and hands every answer to the `ask` awaiting it.
    pub async fn serve_peers(self: &Arc<Self>, handler: PeerHandler) -> Result<(), redis::RedisError> {
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.subscribe(self.node_channel(&self.node)).await?;
        let me: Weak<Redis> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut messages = pubsub.into_on_message();
            while let Some(msg) = futures_util::StreamExt::next(&mut messages).await {
                let Some(redis) = me.upgrade() else { return };
                let parsed = msg.get_payload::<String>().ok().and_then(|p| serde_json::from_str::<PeerMessage>(&p).ok());
                match parsed {
                    Some(PeerMessage::Ask { id, from, body }) => {
                        let answer = handler(body);
                        tokio::spawn(async move {
                            let text = serde_json::to_string(&PeerMessage::Answer { id, body: answer.await }).expect("plain data serialises");
                            let sent: Result<i64, _> = redis.conn.clone().publish(redis.node_channel(&from), text).await;
                            if let Err(e) = sent {
                                tracing::warn!(error = %e, node = %from, "answering another node failed");
                            }
                        });
                    }
                    Some(PeerMessage::Answer { id, body }) => {
                        if let Some(waiting) = redis.asks.lock().remove(&id) {
                            let _ = waiting.send(body);
                        }
                    }
                    None => tracing::debug!("an unreadable message on this node's channel"),
                }
            }
            tracing::error!("lost the redis subscription of this node's channel; other nodes can no longer reach it");
        });
        Ok(())
    }

    /// Asks `node` (another one, whose `serve_peers` runs) and waits up to `within` for its answer.
    pub async fn ask(&self, node: &str, body: Value, within: Duration) -> Result<Asked, InfraError> {
        let id = self.next_ask.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.asks.lock().insert(id, tx);
        let text = serde_json::to_string(&PeerMessage::Ask { id, from: self.node.clone(), body }).expect("plain data serialises");
        let asked = async {
            let listeners: i64 = self.conn.clone().publish(self.node_channel(node), text).await.map_err(unavailable)?;
            if listeners == 0 {
                return Ok(Asked::NoNode);
            }
            Ok(match tokio::time::timeout(within, rx).await {
                Ok(Ok(answer)) => Asked::Answer(answer),
                _ => Asked::NoAnswer,
            })
        };
        // Forgets the ask however it ends (answered, timed out, or its caller gone).
        struct Forget<'a>(&'a Redis, u64);
        impl Drop for Forget<'_> {
            fn drop(&mut self) {
                self.0.asks.lock().remove(&self.1);
            }
        }
        let _forget = Forget(self, id);
        asked.await
    }
}
