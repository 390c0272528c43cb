//! Shared server state: the clock, the store, the directory, limits and caches.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use sha2::Digest;

use crate::clock::Clock;
use crate::cluster::Redis;
use crate::envelope::InfraError;
use crate::faults::Faults;
use crate::journal::{Journal, DEFAULT_JOURNAL_BYTES, DEFAULT_JOURNAL_SIZE};
use crate::domain::directory::Directory;
use crate::ratelimit::RateLimits;
use crate::store::{DedupKey, Store, TokenRecord};

pub const DEFAULT_BODY_LIMIT: usize = 2 * 1024 * 1024;
/// Default bound on the event outbox's bytes (`--outbox-bytes`).
pub const DEFAULT_OUTBOX_BYTES: u64 = 256 << 20;
/// Default bound on the bytes one app's uploaded images and files take in the store.
pub const DEFAULT_BLOB_QUOTA_BYTES: u64 = 1 << 30;

pub struct AppState {
    pub clock: Arc<Clock>,
    pub store: Arc<dyn Store>,
    directory: RwLock<Arc<Directory>>,
    pub limits: RateLimits,
    /// Tokens seen by this node; tokens are immutable, so a cached one never goes stale.
    pub token_cache: TokenCache,
    /// Create requests with a dedup key that are between validation and commit.
    pub creates_in_flight: Mutex<HashSet<DedupKey>>,
    pub body_limit: usize,
    /// Bytes one app's uploads (images and files, all tenants) may take in the store.
    pub blob_quota_bytes: u64,
    /// The only credential the control API accepts (and one /open-apis never accepts).
    pub admin_token: String,
    pub journal: Journal,
    pub faults: Faults,
    /// The TOML the directory was built from, when known: exported with the state.
    pub fixture_text: RwLock<Option<String>>,
    /// Where a fixture loaded at run time is kept for the next start.
    pub fixture_file: Option<std::path::PathBuf>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// What this node shares with others through Redis, when it runs as one of several.
    pub shared: Option<Arc<Redis>>,
    /// Webhook delivery of events (started with the router).
    pub deliveries: Arc<crate::delivery::Engine>,
    /// Bound on the event outbox's bytes, enforced behind the delivery's fan-out.
    pub outbox_bytes: u64,
    /// The long connections (WebSocket) this node holds, and their event delivery.
    pub longconn: Arc<crate::longconn::Hub>,
    /// `app_ticket` pushes to store apps (started with the router).
    pub tickets: Arc<crate::delivery::ticket::Tickets>,
}

pub struct StateConfig {
    pub rate_limits: bool,
    pub body_limit: usize,
    pub blob_quota_bytes: u64,
    pub admin_token: String,
    pub journal_size: usize,
    /// Bound on the bytes the journal keeps.
    pub journal_bytes: usize,
    pub fixture_text: Option<String>,
    pub fixture_file: Option<std::path::PathBuf>,
    pub redis: Option<Arc<Redis>>,
    /// Bound on the event outbox's bytes (at least 1; the newest event is always kept).
    pub outbox_bytes: u64,
    /// Who this node's delivery leases belong to; the same after a restart on one data dir, so
    /// the node takes its own leases back at once (`None`: a random id).
    pub node_id: Option<String>,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            rate_limits: true,
            body_limit: DEFAULT_BODY_LIMIT,
            blob_quota_bytes: DEFAULT_BLOB_QUOTA_BYTES,
            admin_token: new_admin_token(),
            journal_size: DEFAULT_JOURNAL_SIZE,
            journal_bytes: DEFAULT_JOURNAL_BYTES,
            fixture_text: None,
            fixture_file: None,
            redis: None,
            outbox_bytes: DEFAULT_OUTBOX_BYTES,
            node_id: None,
        }
    }
}

/// A fresh random admin token.
pub fn new_admin_token() -> String {
    format!("lsadm-{}", random_hex())
}

pub use crate::secrets::random_hex;

impl AppState {
    pub fn new(store: Arc<dyn Store>, directory: Directory, clock: Arc<Clock>, config: StateConfig) -> Arc<Self> {
        let deliveries = Arc::new(crate::delivery::Engine::new(config.node_id));
        Arc::new(AppState {
            limits: RateLimits::new(config.rate_limits, clock.clone(), config.redis.clone()),
            longconn: Arc::new(crate::longconn::Hub::new(clock.clone(), config.redis.clone())),
            shared: config.redis,
            metrics: Arc::new(crate::metrics::Metrics::new(store.commit_latency())),
            clock,
            // Every write's outcome is remembered for /healthz.
            // …and the delivery engine woken by every write that may append events.
            store: Arc::new(crate::store::health::Tracked::notifying(store, deliveries.commit_signal())),
            directory: RwLock::new(Arc::new(directory)),
            token_cache: TokenCache::default(),
            creates_in_flight: Mutex::new(HashSet::new()),
            body_limit: config.body_limit,
            blob_quota_bytes: config.blob_quota_bytes,
            admin_token: config.admin_token,
            journal: Journal::new(config.journal_size, config.journal_bytes),
            faults: Faults::default(),
            fixture_text: RwLock::new(config.fixture_text),
            fixture_file: config.fixture_file,
            deliveries,
            outbox_bytes: config.outbox_bytes.max(1),
            tickets: Arc::default(),
        })
    }

    /// The directory as of now; a handler keeps using the snapshot it took.
    pub fn directory(&self) -> Arc<Directory> {
        self.directory.read().clone()
    }

    pub fn replace_directory(&self, directory: Directory) {
        *self.directory.write() = Arc::new(directory);
    }
}

/// The tokens this node has issued or looked up, by their text. Bounded by the live tokens: an
/// insert sweeps out the expired ones once the cache has doubled since the last sweep, so it
/// holds at most twice the live tokens (a few per app and tenant) and each sweep is paid for by
/// as many inserts as it looks at.
#[derive(Default)]
pub struct TokenCache {
    inner: RwLock<TokenCacheInner>,
}

#[derive(Default)]
struct TokenCacheInner {
    tokens: HashMap<String, Arc<TokenRecord>>,
    /// How many tokens the last sweep left.
    after_sweep: usize,
}

impl TokenCache {
    /// Fewest tokens before a sweep is worth it.
    const SWEEP_FROM: usize = 64;

    pub fn get(&self, token: &str) -> Option<Arc<TokenRecord>> {
        self.inner.read().tokens.get(token).cloned()
    }

    /// Keeps `record`; `now_ms` (larkstack clock) tells which tokens have expired.
    pub fn insert(&self, record: Arc<TokenRecord>, now_ms: i64) {
        let mut inner = self.inner.write();
        if inner.tokens.len() >= Self::SWEEP_FROM.max(2 * inner.after_sweep) {
            inner.tokens.retain(|_, r| r.expires_at_ms > now_ms);
            inner.after_sweep = inner.tokens.len();
        }
        inner.tokens.insert(record.token.clone(), record);
    }

    pub fn clear(&self) {
        *self.inner.write() = TokenCacheInner::default();
    }

    pub fn len(&self) -> usize {
        self.inner.read().tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Marks a dedup key as in flight for as long as it lives: in this process, or in Redis for all
/// nodes when they share one.
pub enum InFlight<'a> {
    Here { state: &'a AppState, key: DedupKey },
    Shared { redis: Arc<Redis>, key: String, claim: String },
}

impl<'a> InFlight<'a> {
    /// `None` when the same key is already being created.
    pub async fn claim(state: &'a AppState, key: DedupKey) -> Result<Option<Self>, InfraError> {
        if let Some(redis) = &state.shared {
            let digest = sha2::Sha256::digest(serde_json::to_vec(&key).expect("plain data serialises"));
            let (key, claim) = (hex::encode(digest), random_hex());
            return Ok(redis.claim(&key, &claim).await?.then(|| InFlight::Shared { redis: redis.clone(), key, claim }));
        }
        let fresh = state.creates_in_flight.lock().insert(key.clone());
        // Built only when claimed: a dropped InFlight releases the key.
        Ok(fresh.then_some(InFlight::Here { state, key }))
    }

    /// Releases the key now rather than in the background (dropping releases a shared key
    /// asynchronously; releasing twice is harmless, a claim only deletes its own key).
    pub async fn release(self) {
        if let InFlight::Shared { redis, key, claim } = &self {
            redis.release(key, claim).await;
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        match self {
            InFlight::Here { state, key } => {
                state.creates_in_flight.lock().remove(key);
            }
            InFlight::Shared { redis, key, claim } => {
                let (redis, key, claim) = (redis.clone(), std::mem::take(key), std::mem::take(claim));
                tokio::spawn(async move { redis.release(&key, &claim).await });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::{AppId, TenantKey};
    use crate::store::TokenKind;

    fn token(n: i64, expires_at_ms: i64) -> Arc<TokenRecord> {
        Arc::new(TokenRecord {
            token: format!("t-{n}"),
            kind: TokenKind::Tenant,
            app_id: AppId("cli_a".into()),
            tenant_key: TenantKey("tenant".into()),
            issued_at_ms: 0,
            expires_at_ms,
        })
    }

    /// However many tokens come and expire, the cache keeps about the live ones: here 10 new
    /// tokens a round, each living 5 rounds, so 60 at most are live (and 120 kept) at a time.
    #[test]
    fn the_token_cache_forgets_expired_tokens() {
        let cache = TokenCache::default();
        for round in 0..1000 {
            for i in 0..10 {
                cache.insert(token(round * 10 + i, round + 5), round);
            }
            assert!(cache.len() <= 120, "round {round}: {} tokens kept", cache.len());
        }
        assert!(cache.get("t-9999").is_some(), "a live token stays");
        assert!(cache.get("t-0").is_none(), "an expired one goes");
        cache.clear();
        assert!(cache.is_empty());
    }
}
