//! Test harness: an in-process app over a temp data dir, and a spawned real server.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use larkstack::clock::Clock;
use larkstack::domain::directory::Directory;
use larkstack::state::{AppState, StateConfig};
use larkstack::cluster::Redis;
use larkstack::store::postgres::PostgresStore;
use larkstack::store::sqlite::SqliteStore;
use larkstack::store::Store;
use serde_json::Value;
use tower::ServiceExt;

pub const DEMO_APP_ID: &str = "cli_a1b2c3d4e5f60718";
pub const DEMO_SECRET: &str = "larkstackDemoSecret0000000000001";

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn code(&self) -> i64 {
        self.body["code"].as_i64().unwrap_or_else(|| panic!("no integer code in {}", self.body))
    }

    pub fn chat_id(&self) -> String {
        self.body["data"]["chat_id"].as_str().unwrap_or_else(|| panic!("no chat_id in {}", self.body)).to_string()
    }
}

pub struct TestApp {
    pub state: Arc<AppState>,
    pub router: Router,
    pub dir: Arc<Directory>,
    pub data: tempfile::TempDir,
}

/// The backend under test: SQLite in the data dir unless `LARKSTACK_DATABASE` names a PostgreSQL
/// database; with `LARKSTACK_REDIS`, shared limits too (scripts/test.sh runs the suite both ways).
pub fn test_database() -> Option<String> {
    std::env::var("LARKSTACK_DATABASE").ok().filter(|s| !s.is_empty())
}

pub fn test_redis() -> Option<String> {
    std::env::var("LARKSTACK_REDIS").ok().filter(|s| !s.is_empty())
}

/// The schema (and Redis namespace) a data dir's state lives in on PostgreSQL: one per test, and
/// the same one again when a test restarts on its data dir.
pub fn schema_for(data_dir: &Path) -> String {
    let name: String = data_dir
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
        .collect();
    let tail = &name[name.len().saturating_sub(40)..];
    format!("t{:x}_{tail}", name.len())
}

/// The store a test's data dir uses on the backend under test.
pub async fn open_store(data_dir: &Path) -> Arc<dyn Store> {
    match test_database() {
        Some(url) => Arc::new(PostgresStore::open(&url, &schema_for(data_dir), 4).await.unwrap()),
        None => Arc::new(SqliteStore::open(data_dir).unwrap()),
    }
}

/// What the backend under test adds to `larkstack serve` for a data dir.
pub fn backend_args(data_dir: &Path) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(url) = test_database() {
        args.extend(["--database".to_string(), url, "--database-schema".to_string(), schema_for(data_dir)]);
    }
    if let Some(url) = test_redis() {
        args.extend(["--redis".to_string(), url]);
    }
    args
}

impl TestApp {
    pub async fn demo() -> Self {
        Self::with(Directory::demo(), StateConfig::default()).await
    }

    pub async fn with(directory: Directory, config: StateConfig) -> Self {
        let data = tempfile::tempdir().unwrap();
        Self::on(data, directory, config, Arc::new(Clock::default())).await
    }

    /// An app over an existing data dir, as after a restart.
    pub async fn on(data: tempfile::TempDir, directory: Directory, mut config: StateConfig, clock: Arc<Clock>) -> Self {
        let store = open_store(data.path()).await;
        if let Some(url) = test_redis() {
            config.redis = Some(Arc::new(Redis::connect(&url, &schema_for(data.path())).await.unwrap()));
        }
        let state = AppState::new(store, directory, clock, config);
        TestApp { router: larkstack::app(state.clone()), dir: state.directory(), state, data }
    }

    pub async fn request(&self, method: Method, uri: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Reply {
        let (status, headers, bytes) = self.raw(method, uri, headers, body).await;
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("reply is not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
        Reply { status, headers, body }
    }

    /// A call whose reply may be anything (an NDJSON stream): status, headers and the bytes.
    pub async fn raw(&self, method: Method, uri: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(body.map(|b| Body::from(b.to_vec())).unwrap_or_else(Body::empty)).unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (status, headers, bytes.to_vec())
    }

    /// `GET /_larkstack/state`, one JSON value per line.
    pub async fn export_state(&self) -> Vec<Value> {
        let auth = format!("Bearer {}", self.state.admin_token);
        let (status, headers, bytes) = self.raw(Method::GET, "/_larkstack/state", &[("authorization", &auth)], None).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&bytes));
        assert_eq!(headers["content-type"], "application/x-ndjson");
        bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect()
    }

    /// `PUT /_larkstack/state` with these bytes.
    pub async fn import_state(&self, body: &[u8]) -> Reply {
        let auth = format!("Bearer {}", self.state.admin_token);
        self.request(Method::PUT, "/_larkstack/state", &[("authorization", &auth), ("content-type", "application/x-ndjson")], Some(body))
            .await
    }

    pub async fn post_json(&self, uri: &str, token: Option<&str>, body: &Value) -> Reply {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", "application/json; charset=utf-8")];
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        self.request(Method::POST, uri, &headers, Some(body.to_string().as_bytes())).await
    }

    pub fn app_id(&self, app_key: &str) -> String {
        self.dir.apps().iter().find(|a| a.key == app_key).unwrap().app_id.0.clone()
    }

    pub fn secret(&self, app_key: &str) -> String {
        self.dir.apps().iter().find(|a| a.key == app_key).unwrap().app_secret.clone()
    }

    /// A tenant token: self-built apps for their tenant, store apps (via an app token) for their first install.
    pub async fn token(&self, app_key: &str) -> String {
        let app = self.dir.apps().iter().find(|a| a.key == app_key).unwrap();
        if app.kind == larkstack::domain::directory::AppKind::Store {
            let r = self
                .post_json(
                    "/open-apis/auth/v3/app_access_token/internal",
                    None,
                    &serde_json::json!({"app_id": app.app_id, "app_secret": app.app_secret}),
                )
                .await;
            let tenant = self.dir.tenants().iter().find(|t| app.installs.contains_key(&t.tenant_key)).unwrap();
            let r = self
                .post_json(
                    "/open-apis/auth/v3/tenant_access_token",
                    None,
                    &serde_json::json!({"app_access_token": r.body["app_access_token"], "tenant_key": tenant.tenant_key}),
                )
                .await;
            return r.body["tenant_access_token"].as_str().unwrap().to_string();
        }
        let r = self
            .post_json(
                "/open-apis/auth/v3/tenant_access_token/internal",
                None,
                &serde_json::json!({"app_id": self.app_id(app_key), "app_secret": self.secret(app_key)}),
            )
            .await;
        assert_eq!(r.code(), 0, "{}", r.body);
        r.body["tenant_access_token"].as_str().unwrap().to_string()
    }

    /// `user`'s open_id as `app` sees it.
    pub fn open_id(&self, app_key: &str, user_key: &str) -> String {
        let app = self.dir.apps().iter().find(|a| a.key == app_key).unwrap();
        let user = self.dir.users().iter().find(|u| u.key == user_key).unwrap();
        self.dir.open_id(app, user).0
    }

    pub async fn create(&self, token: &str, query: &str, body: Value) -> Reply {
        self.post_json(&format!("/open-apis/im/v1/chats{query}"), Some(token), &body).await
    }

    /// Any method with a bearer token and an optional JSON body.
    pub async fn call(&self, method: Method, uri: &str, token: &str, body: Option<Value>) -> Reply {
        let auth = format!("Bearer {token}");
        let bytes = body.map(|b| b.to_string().into_bytes());
        self.request(method, uri, &[("authorization", auth.as_str())], bytes.as_deref()).await
    }

    /// Creates a chat that must succeed and returns its id.
    pub async fn new_chat(&self, token: &str, body: Value) -> String {
        let r = self.create(token, "", body).await;
        assert_eq!(r.code(), 0, "{}", r.body);
        r.chat_id()
    }
}

/// Lines as NDJSON bytes.
pub fn ndjson(lines: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        serde_json::to_writer(&mut out, l).unwrap();
        out.push(b'\n');
    }
    out
}

/// The records of one kind (`"chat"`, `"token"`, ...) in an exported state.
pub fn records_of(lines: &[Value], kind: &str) -> Vec<Value> {
    lines.iter().filter_map(|l| l.get(kind)).cloned().collect()
}

/// A fixture with one tenant, the demo-style bot, and `n` active users `user0`..`user{n-1}`.
pub fn big_fixture(n: usize) -> String {
    let mut s = format!(
        "[[tenants]]\nkey = \"t\"\n\n[[apps]]\nkey = \"bot\"\ntenant = \"t\"\napp_id = \"{DEMO_APP_ID}\"\n\
         app_secret = \"{DEMO_SECRET}\"\nscopes = [\"im:chat\"]\n"
    );
    for i in 0..n {
        s.push_str(&format!("\n[[users]]\nkey = \"user{i}\"\ntenant = \"t\"\n"));
    }
    s
}

/// The real binary, serving on a free port with the given data dir.
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Server {
    /// On the backend under test (see `backend_args`).
    pub fn spawn(data_dir: &Path, fixture: Option<&Path>, extra: &[&str]) -> Server {
        let mut args = backend_args(data_dir);
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::spawn_with(data_dir, fixture, &args)
    }

    /// With exactly these arguments after the data dir.
    pub fn spawn_with(data_dir: &Path, fixture: Option<&Path>, args: &[String]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_larkstack"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(data_dir).args(args);
        if let Some(f) = fixture {
            cmd.arg("--fixture").arg(f);
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            let line = lines.next().expect("server exited before listening").unwrap();
            if let Some(url) = line.strip_prefix("larkstack listening on ") {
                break url.trim().to_string();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { child, base }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn kill9(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-9", &pid]).status().unwrap();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn write_fixture(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("test-fixture.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Tables the migrations after the outbox's compaction (sqlite 0006, postgres 0004) create, for
/// tests that take a store back to an older schema and let it upgrade again: a new migration's
/// tables go here.
pub const TABLES_AFTER_OUTBOX_COMPACTION: &[&str] = &[
    "blobs",
    "reactions",
    "message_reads",
    "custom_bots",
    "app_tickets",
    "event_settings",
    "delivery_cursor",
    "deliveries",
    "delivery_attempts",
    "delivery_attempt_totals",
    "card_tokens",
    "thread_messages",
];

/// `DROP TABLE …;` of `TABLES_AFTER_OUTBOX_COMPACTION`.
pub fn drop_tables_after_outbox_compaction() -> String {
    format!("DROP TABLE {};", TABLES_AFTER_OUTBOX_COMPACTION.join(", "))
}
