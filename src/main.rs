use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Parser, Subcommand};
use larkstack::clock::Clock;
use larkstack::domain::directory::{AppKind, Directory, DEMO_FIXTURE};
use larkstack::state::{AppState, StateConfig};
use larkstack::cluster::Redis;
use larkstack::store::postgres::PostgresStore;
use larkstack::store::sqlite::SqliteStore;
use larkstack::store::Store;

#[derive(Parser)]
#[command(name = "larkstack", version, about = "A Feishu/Lark Open Platform-compatible server for group chats")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Print the directory a fixture describes (apps with credentials, users with their IDs) as JSON.
    Directory {
        /// Fixture file; the bundled demo directory when absent.
        #[arg(long, env = "LARKSTACK_FIXTURE")]
        fixture: Option<PathBuf>,
    },
    /// Export or import a running server's whole state (NDJSON, streamed; docs/control-api.md).
    State {
        #[command(subcommand)]
        action: StateAction,
        /// The running server.
        #[arg(long, global = true, env = "LARKSTACK_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        /// The server's admin token. Default: the one kept in the data dir.
        #[arg(long, global = true, env = "LARKSTACK_ADMIN_TOKEN")]
        admin_token: Option<String>,
        /// The server's data dir (where its admin token is kept).
        #[arg(long, global = true, env = "LARKSTACK_DATA_DIR", default_value = "./larkstack-data")]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum StateAction {
    /// Write the state to a file (stdout with `-` or without --out).
    Export {
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Replace the state with one read from a file (stdin with `-` or without --in).
    Import {
        #[arg(long = "in")]
        input: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "LARKSTACK_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Where the SQLite database and the active fixture are kept.
    #[arg(long, env = "LARKSTACK_DATA_DIR", default_value = "./larkstack-data")]
    data_dir: PathBuf,
    /// Directory fixture (TOML, see docs/fixture.md). Without it: the data dir's, else the demo.
    #[arg(long, env = "LARKSTACK_FIXTURE")]
    fixture: Option<PathBuf>,
    /// Rate limits: `on` (Feishu's limits) or `off` (for load tests).
    #[arg(long, env = "LARKSTACK_RATE_LIMITS", default_value = "on", value_parser = ["on", "off"])]
    rate_limits: String,
    /// Token for the control API (/_larkstack/) and the console. Default: one generated on first
    /// start and kept in the data dir.
    #[arg(long, env = "LARKSTACK_ADMIN_TOKEN")]
    admin_token: Option<String>,
    /// How many /open-apis calls the request journal keeps (0: none).
    #[arg(long, env = "LARKSTACK_JOURNAL_SIZE", default_value_t = larkstack::control::journal::DEFAULT_JOURNAL_SIZE)]
    journal_size: usize,
    /// Bound on the bytes the request journal keeps (bodies are cut at 64 KiB each); oldest out first.
    #[arg(long, env = "LARKSTACK_JOURNAL_BYTES", default_value_t = larkstack::control::journal::DEFAULT_JOURNAL_BYTES)]
    journal_bytes: usize,
    /// Bound on the bytes the event outbox keeps (events' columns, see docs/control-api.md): the
    /// oldest events the webhook fan-out has passed are deleted beyond it.
    #[arg(long, env = "LARKSTACK_OUTBOX_BYTES", default_value_t = larkstack::state::DEFAULT_OUTBOX_BYTES,
          value_parser = clap::value_parser!(u64).range(1..))]
    outbox_bytes: u64,
    /// Bytes one app's uploaded images and files may take in the store (all its tenants); an
    /// upload past it is refused with 234042.
    #[arg(long, env = "LARKSTACK_BLOB_QUOTA_BYTES", default_value_t = larkstack::state::DEFAULT_BLOB_QUOTA_BYTES)]
    blob_quota_bytes: u64,
    /// A PostgreSQL URL (postgres://user@host:port/db) to keep the state there instead of in the
    /// data dir's SQLite database: the way to run several nodes on one state.
    #[arg(long, env = "LARKSTACK_DATABASE")]
    database: Option<String>,
    /// The PostgreSQL schema larkstack's tables live in (created if missing). Also names the
    /// Redis key namespace, so deployments with different schemas can share both servers.
    #[arg(long, env = "LARKSTACK_DATABASE_SCHEMA", default_value = "public")]
    database_schema: String,
    /// Connections this node keeps to PostgreSQL.
    #[arg(long, env = "LARKSTACK_DATABASE_POOL", default_value_t = larkstack::store::postgres::DEFAULT_POOL_SIZE)]
    database_pool: usize,
    /// A Redis URL (redis://host:port/db): rate-limit windows, creates in flight and the clock
    /// are then shared with every node that uses the same Redis and schema.
    #[arg(long, env = "LARKSTACK_REDIS")]
    redis: Option<String>,
    /// Host names (comma-separated; `*.example.com` for subdomains, `name:port` for one port)
    /// answered besides loopback names and the listen IP; `*` answers any Host. Others get 421.
    #[arg(long, env = "LARKSTACK_PUBLIC_HOST", value_delimiter = ',')]
    public_host: Vec<String>,
    /// Connections served at once; more are answered 503 and closed. Default: 4096, or fewer
    /// when the file-descriptor limit is lower.
    #[arg(long, env = "LARKSTACK_MAX_CONNECTIONS", value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: Option<u64>,
    /// Seconds a connection has to send a whole request head after it opens or goes idle
    /// between keep-alive requests; then it is closed.
    #[arg(long, env = "LARKSTACK_HEADER_READ_TIMEOUT", default_value = "20", value_parser = parse_secs)]
    header_read_timeout: std::time::Duration,
}

fn parse_secs(s: &str) -> Result<std::time::Duration, String> {
    match s.trim().parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs.is_finite() => Ok(std::time::Duration::from_secs_f64(secs)),
        _ => Err(format!("expected a positive number of seconds, got {s:?}")),
    }
}

/// The given admin token, else the data dir's, else a new one kept there.
fn admin_token(data_dir: &Path, given: Option<String>) -> anyhow_like::Result<String> {
    if let Some(t) = given.filter(|t| !t.trim().is_empty()) {
        return Ok(t.trim().to_string());
    }
    let file = data_dir.join("admin-token");
    if let Ok(t) = std::fs::read_to_string(&file) {
        if !t.trim().is_empty() {
            // One kept by an older larkstack may be world-readable.
            larkstack::secrets::restrict_file(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            return Ok(t.trim().to_string());
        }
    }
    let token = larkstack::state::new_admin_token();
    larkstack::secrets::write_private(&file, token.as_bytes()).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(token)
}

/// This node's id for delivery leases: the data dir's, else a new one kept there, so a node
/// restarted on its data dir takes back the deliveries it held when it died.
fn node_id(data_dir: &Path) -> anyhow_like::Result<String> {
    let file = data_dir.join("node-id");
    if let Ok(id) = std::fs::read_to_string(&file) {
        if !id.trim().is_empty() {
            return Ok(id.trim().to_string());
        }
    }
    let id = format!("node-{}", larkstack::secrets::random_hex());
    larkstack::secrets::write_private(&file, id.as_bytes()).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(id)
}

/// The fixture in force: the one given (which then becomes the data dir's), the data dir's, or the demo.
fn load_fixture(data_dir: &Path, given: Option<&Path>) -> anyhow_like::Result<(String, &'static str)> {
    let stored = data_dir.join("fixture.toml");
    let (text, source) = match given {
        Some(path) => (std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?, "the --fixture file"),
        None => match std::fs::read_to_string(&stored) {
            Ok(text) => (text, "the data dir's fixture.toml"),
            Err(_) => (DEMO_FIXTURE.to_string(), "the demo directory"),
        },
    };
    larkstack::secrets::create_private_dir(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    larkstack::secrets::write_private(&stored, text.as_bytes()).map_err(|e| format!("{}: {e}", stored.display()))?;
    Ok((text, source))
}

mod anyhow_like {
    pub type Result<T> = std::result::Result<T, String>;
}


#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("LARKSTACK_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Directory { fixture } => print_directory(fixture.as_deref()),
        Command::State { action, url, admin_token, data_dir } => state_command(action, url, admin_token, &data_dir).await,
    };
    if let Err(e) = result {
        eprintln!("larkstack: {e}");
        std::process::exit(1);
    }
}

async fn state_command(action: StateAction, url: String, admin_token: Option<String>, data_dir: &Path) -> anyhow_like::Result<()> {
    use larkstack::control::client;
    let target = client::Target { url, admin_token: client::admin_token(admin_token, data_dir)? };
    match action {
        StateAction::Export { out } => {
            let bytes = client::export(&target, out.as_deref()).await?;
            eprintln!("exported {bytes} bytes");
        }
        StateAction::Import { input } => {
            let records = client::import(&target, input.as_deref()).await?;
            eprintln!("imported {records} records");
        }
    }
    Ok(())
}

fn print_directory(fixture: Option<&Path>) -> anyhow_like::Result<()> {
    let text = match fixture {
        Some(p) => std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?,
        None => DEMO_FIXTURE.to_string(),
    };
    let dir = Directory::from_toml(&text).map_err(|e| e.to_string())?;
    let json = serde_json::to_string_pretty(&larkstack::control::directory_json(&dir)).expect("json");
    use std::io::Write;
    match writeln!(std::io::stdout().lock(), "{json}") {
        // The reader has gone (`larkstack directory | head`): nothing more to say to it.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("stdout: {e}")),
        _ => Ok(()),
    }
}

async fn serve(args: ServeArgs) -> anyhow_like::Result<()> {
    let (text, source) = load_fixture(&args.data_dir, args.fixture.as_deref())?;
    let directory = Directory::from_toml(&text).map_err(|e| e.to_string())?;
    let admin_token = admin_token(&args.data_dir, args.admin_token)?;
    let (store, store_line): (Arc<dyn Store>, String) = match &args.database {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let store = PostgresStore::open(url, &args.database_schema, args.database_pool)
                .await
                .map_err(|e| format!("--database: {e}"))?;
            (Arc::new(store), format!("PostgreSQL, schema {}", args.database_schema))
        }
        Some(other) => return Err(format!("--database: expected a postgres:// URL, got {other:?}")),
        None => (
            Arc::new(SqliteStore::open(&args.data_dir).map_err(|e| e.to_string())?),
            format!("SQLite in {}", args.data_dir.display()),
        ),
    };
    let clock = Arc::new(Clock::default());
    let redis = match &args.redis {
        Some(url) => {
            let redis = Redis::connect(url, &args.database_schema).await.map_err(|e| format!("--redis: {e}"))?;
            redis.follow_clock(clock.clone()).await.map_err(|e| format!("--redis: {e}"))?;
            Some(Arc::new(redis))
        }
        None => None,
    };
    let fd_limit = larkstack::transport::raise_fd_limit();
    let hosts = larkstack::transport::HostPolicy::new(&args.public_host, args.listen)?;
    let max_connections = args
        .max_connections
        .map_or_else(|| larkstack::transport::default_max_connections(fd_limit), |n| n as usize);
    let listener = tokio::net::TcpListener::bind(args.listen).await.map_err(|e| format!("{}: {e}", args.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;

    // The banner goes out whole and its write errors are ignored: a server whose stdout reader
    // went away (`larkstack serve | head -1`) keeps serving.
    let mut banner = String::new();
    macro_rules! outln {
        ($out:expr, $($arg:tt)*) => {{
            use std::fmt::Write as _;
            let _ = writeln!($out, $($arg)*);
        }};
    }
    outln!(banner, "larkstack listening on http://{addr}");
    outln!(banner, "data dir: {} (directory from {source})", args.data_dir.display());
    outln!(banner, "store: {store_line}");
    if redis.is_some() {
        outln!(banner, "shared through Redis: rate-limit windows, creates in flight, the clock");
    }
    if args.rate_limits == "off" {
        outln!(banner, "rate limits: OFF");
    }
    outln!(
        banner,
        "connections: at most {max_connections}{}; hosts: {}",
        fd_limit.map(|n| format!(" (fd limit {n})")).unwrap_or_default(),
        if hosts.checks() { "loopback, the listen IP and --public-host" } else { "any" }
    );
    outln!(banner, "console: http://{addr}/#token={admin_token}");
    outln!(banner, "control API: http://{addr}/_larkstack/ (Authorization: Bearer {admin_token})");
    outln!(banner, "apps (use with lark.Client.builder().domain(\"http://{addr}\")):");
    for app in directory.apps().iter().filter(|a| a.kind == AppKind::SelfBuilt && a.bot) {
        outln!(banner, "  {:<14} app_id={}  app_secret={}", app.key, app.app_id, app.app_secret);
    }
    {
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(banner.as_bytes()).and_then(|()| stdout.flush());
    }
    let serve_options = larkstack::server::ServeOptions {
        hosts,
        max_connections,
        header_read_timeout: args.header_read_timeout,
        ..larkstack::server::ServeOptions::new(clock.clone())
    };
    let state = AppState::new(
        store,
        directory,
        clock,
        StateConfig {
            rate_limits: args.rate_limits == "on",
            admin_token,
            journal_size: args.journal_size,
            journal_bytes: args.journal_bytes,
            outbox_bytes: args.outbox_bytes,
            blob_quota_bytes: args.blob_quota_bytes,
            fixture_text: Some(text),
            fixture_file: Some(args.data_dir.join("fixture.toml")),
            redis,
            node_id: Some(node_id(&args.data_dir)?),
            ..StateConfig::default()
        },
    );
    larkstack::server::serve(listener, larkstack::app(state), serve_options).await.map_err(|e| e.to_string())
}
