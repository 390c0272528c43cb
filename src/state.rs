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
    pub token_cache: RwLock<HashMap<String, Arc<TokenRecord>>>,
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
            token_cache: RwLock::new(HashMap::new()),
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
