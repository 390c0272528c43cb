//! Storage hardening: the SQLite WAL stays bounded under load; the state streams out and in at
//! 100 k chats in constant memory; /healthz reports failing writes.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use axum::http::Method;
use larkstack::clock::Clock;
use larkstack::domain::chat::Chat;
use larkstack::domain::directory::Directory;
use larkstack::domain::ids::ChatId;
use larkstack::state::{AppState, StateConfig};
use larkstack::store::sqlite::SqliteStore;
use larkstack::store::{NewChat, Store};
use serde_json::{json, Value};

use crate::support::*;

/// An app on the backend under test (on SQLite whatever it is, with `sqlite`); on SQLite, its
/// store too (for its test hooks).
async fn app_with_store(fixture: &str, sqlite: bool) -> (TestApp, Option<Arc<SqliteStore>>) {
    let data = tempfile::tempdir().unwrap();
    let (store, sqlite): (Arc<dyn Store>, _) = match test_database().filter(|_| !sqlite) {
        Some(_) => (open_store(data.path()).await, None),
        None => {
            let s = Arc::new(SqliteStore::open(data.path()).unwrap());
            (s.clone(), Some(s))
        }
    };
    let config = StateConfig { rate_limits: false, ..StateConfig::default() };
    let state = AppState::new(store, Directory::from_toml(fixture).unwrap(), Arc::new(Clock::default()), config);
    (TestApp { router: larkstack::app(state.clone()), dir: state.directory(), state, data }, sqlite)
}

fn wal_size(data_dir: &Path) -> u64 {
    std::fs::metadata(data_dir.join("larkstack.db-wal")).map(|m| m.len()).unwrap_or(0)
}

/// A chat of 50 members, made through the API, to copy.
async fn chat_of_50(app: &TestApp) -> Chat {
    let token = app.token("bot").await;
    let members: Vec<String> = (0..50).map(|i| app.open_id("bot", &format!("user{i}"))).collect();
    let id = app.new_chat(&token, json!({"name": "load", "user_id_list": members})).await;
    app.state.store.get_chat(&ChatId(id)).await.unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sqlite_wal_stays_bounded_under_load_and_is_truncated_at_open() {
    // SQLite on either test pass: the WAL is SQLite's (PostgreSQL manages its own).
    let (app, _) = app_with_store(&big_fixture(50), true).await;
    let template = chat_of_50(&app).await;
    let dir = app.data.path().to_path_buf();
    // Writers keep the writer busy with full batches while readers keep reading, as under a
    // create-chat load; a sampler records the largest WAL seen.
    let stop = Arc::new(AtomicBool::new(false));
    let largest = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, largest, dir) = (stop.clone(), largest.clone(), dir.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                largest.fetch_max(wal_size(&dir), Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        })
    };
    let written = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..64u64 {
        let (store, template, written) = (app.state.store.clone(), template.clone(), written.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..1200u64 {
                let mut chat = template.clone();
                chat.chat_id = ChatId(format!("oc_{w:016x}{i:016x}"));
                store.create_chat(NewChat { chat, dedup: None, dedup_window_start_ms: 0, events: Vec::new() }).await.unwrap();
                written.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for _ in 0..4 {
        let (store, id, stop) = (app.state.store.clone(), template.chat_id.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                store.get_chat(&id).await.unwrap();
                store.all_chats(0, 20).await.unwrap();
            }
        }));
    }
    for t in tasks.drain(..64) {
        t.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    sampler.join().unwrap();
    let largest = largest.load(Ordering::Relaxed);
    let db: i64 = rusqlite::Connection::open(dir.join("larkstack.db"))
        .unwrap()
        .query_row("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()", [], |r| r.get(0))
        .unwrap();
    assert!(db > 64 << 20, "the load stored more than the bound ({db} bytes)");
    assert!(largest <= 80 << 20, "the WAL reached {largest} bytes under load (bound: 64 MiB + 16 MiB slack)");

    eprintln!("wrote {db} bytes; the largest WAL was {largest} bytes");

    // Under load the WAL is started over in place; once writes stop it goes to zero bytes.
    let quiet_since = std::time::Instant::now();
    while wal_size(&dir) > 0 {
        assert!(quiet_since.elapsed() < std::time::Duration::from_secs(5), "the WAL stayed at {} bytes after the writes stopped", wal_size(&dir));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // A WAL left behind (a connection that never closed, as after kill -9) is truncated at open.
    let TestApp { data: _data, .. } = app;
    let leaked = rusqlite::Connection::open(dir.join("larkstack.db")).unwrap();
    leaked.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    leaked.execute("CREATE TABLE junk (b BLOB)", []).unwrap();
    for _ in 0..16 {
        leaked.execute("INSERT INTO junk VALUES (zeroblob(1 << 20))", []).unwrap();
    }
    std::mem::forget(leaked);
    assert!(wal_size(&dir) > 8 << 20, "the leftover WAL: {}", wal_size(&dir));
    let reopened = SqliteStore::open(&dir).unwrap();
    assert_eq!(wal_size(&dir), 0, "opening truncates the WAL");
    assert_eq!(reopened.count_chats().await.unwrap(), 64 * 1200 + 1);
}

const ROUND_TRIP_CHATS: usize = 100_000;

fn larkstack(args: &[&str], data_dir: &Path, base: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_larkstack"))
        .args(args)
        .arg("--url")
        .arg(base)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "larkstack {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Peak resident memory of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

fn same_file(a: &Path, b: &Path) -> bool {
    let (mut a, mut b) = (BufReader::new(std::fs::File::open(a).unwrap()), BufReader::new(std::fs::File::open(b).unwrap()));
    let (mut x, mut y) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = a.read(&mut x).unwrap();
        if n == 0 {
            return b.read(&mut y).unwrap() == 0;
        }
        if b.read_exact(&mut y[..n]).is_err() || x[..n] != y[..n] {
            return false;
        }
    }
}

/// 100 k chats of 50 members: import, export, import into a fresh server, export again. Both
/// exports are the same bytes, and neither server's memory grew with the state.
#[test]
fn a_state_of_100k_chats_streams_out_and_back_in_constant_memory() {
    let work = tempfile::tempdir().unwrap();
    let fixture = write_fixture(work.path(), &big_fixture(50));
    let (dir_a, dir_b) = (work.path().join("a"), work.path().join("b"));
    let a = Server::spawn(&dir_a, Some(&fixture), &["--rate-limits", "off"]);
    let client = reqwest::blocking::Client::new();
    let token = client
        .post(a.url("/open-apis/auth/v3/tenant_access_token/internal"))
        .json(&json!({"app_id": DEMO_APP_ID, "app_secret": DEMO_SECRET}))
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap()["tenant_access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let directory: Value = serde_json::from_slice(
        &Command::new(env!("CARGO_BIN_EXE_larkstack")).args(["directory", "--fixture"]).arg(&fixture).output().unwrap().stdout,
    )
    .unwrap();
    let members: Vec<&str> = directory["users"].as_array().unwrap().iter().map(|u| u["open_ids"]["bot"].as_str().unwrap()).collect();
    let created: Value = client
        .post(a.url("/open-apis/im/v1/chats"))
        .bearer_auth(&token)
        .json(&json!({"name": "round trip", "user_id_list": members}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let chat_id = created["data"]["chat_id"].as_str().unwrap().to_string();

    // The generated state: the one chat, copied under new ids, and the token.
    let small = work.path().join("small.ndjson");
    larkstack(&["state", "export", "--out", small.to_str().unwrap()], &dir_a, &a.base);
    let lines: Vec<String> = BufReader::new(std::fs::File::open(&small).unwrap()).lines().map(Result::unwrap).collect();
    let chat_line = lines.iter().find(|l| l.starts_with("{\"chat\":")).unwrap();
    let others: Vec<&String> = lines[1..lines.len() - 1].iter().filter(|l| !l.starts_with("{\"chat\":")).collect();
    let generated = work.path().join("generated.ndjson");
    {
        let mut out = BufWriter::new(std::fs::File::create(&generated).unwrap());
        writeln!(out, "{}", lines[0]).unwrap();
        for i in 0..ROUND_TRIP_CHATS {
            writeln!(out, "{}", chat_line.replace(&chat_id, &format!("oc_{i:032x}"))).unwrap();
        }
        for l in &others {
            writeln!(out, "{l}").unwrap();
        }
        writeln!(out, "{}", json!({"end": {"records": ROUND_TRIP_CHATS + others.len()}})).unwrap();
    }
    let size = std::fs::metadata(&generated).unwrap().len();

    let (first, second) = (work.path().join("first.ndjson"), work.path().join("second.ndjson"));
    larkstack(&["state", "import", "--in", generated.to_str().unwrap()], &dir_a, &a.base);
    larkstack(&["state", "export", "--out", first.to_str().unwrap()], &dir_a, &a.base);
    let b = Server::spawn(&dir_b, Some(&fixture), &["--rate-limits", "off"]);
    larkstack(&["state", "import", "--in", first.to_str().unwrap()], &dir_b, &b.base);
    larkstack(&["state", "export", "--out", second.to_str().unwrap()], &dir_b, &b.base);

    assert!(same_file(&first, &second), "the two exports differ");
    assert!(same_file(&generated, &first), "the export is not what was imported");
    let chats = BufReader::new(std::fs::File::open(&second).unwrap()).lines().filter(|l| l.as_ref().unwrap().starts_with("{\"chat\":")).count();
    assert_eq!(chats, ROUND_TRIP_CHATS);
    // The imported chats answer on the second server.
    let r: Value = client
        .get(b.url(&format!("/open-apis/im/v1/chats/{}", format_args!("oc_{:032x}", ROUND_TRIP_CHATS - 1))))
        .bearer_auth(&token)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!((r["code"].as_i64(), r["data"]["name"].as_str()), (Some(0), Some("round trip")), "{r}");

    let (peak_a, peak_b) = (peak_rss(a.child.id()), peak_rss(b.child.id()));
    eprintln!("state: {size} bytes; peak RSS: {peak_a} and {peak_b} bytes");
    for peak in [peak_a, peak_b] {
        assert!(peak < 200 << 20 && peak < size, "a server's memory grew with the state: peak {peak} bytes for a {size}-byte state");
    }
}

/// Makes every store write fail (as on a full disk), or stop failing.
async fn break_writes(app: &TestApp, sqlite: &Option<Arc<SqliteStore>>, broken: bool) {
    match sqlite {
        Some(store) => store.limit_growth_for_tests(broken).await.unwrap(),
        None => {
            let (client, connection) = tokio_postgres::connect(&test_database().unwrap(), tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            let schema = schema_for(app.data.path());
            let sql = if broken {
                format!(
                    "CREATE OR REPLACE FUNCTION {schema}.no_space() RETURNS trigger LANGUAGE plpgsql AS
                     $$ BEGIN RAISE EXCEPTION 'could not extend file: No space left on device'; END $$;
                     CREATE TRIGGER no_space BEFORE INSERT OR UPDATE ON {schema}.chats
                     FOR EACH ROW EXECUTE FUNCTION {schema}.no_space();"
                )
            } else {
                format!("DROP TRIGGER no_space ON {schema}.chats")
            };
            client.batch_execute(&sql).await.unwrap();
        }
    }
}

#[tokio::test]
async fn healthz_reports_failing_writes_until_a_write_succeeds() {
    let (app, sqlite) = app_with_store(&big_fixture(50), false).await;
    let health = || app.request(Method::GET, "/healthz", &[], None);
    assert_eq!(health().await.status.as_u16(), 200);
    let token = app.token("bot").await;
    let members: Vec<String> = (0..50).map(|i| app.open_id("bot", &format!("user{i}"))).collect();
    let body = json!({"name": "full disk", "user_id_list": members});
    app.new_chat(&token, body.clone()).await;

    break_writes(&app, &sqlite, true).await;
    // Writes fail once the database needs room it may not take.
    let mut failed = None;
    for _ in 0..2000 {
        let r = app.create(&token, "", body.clone()).await;
        if r.code() != 0 {
            failed = Some(r);
            break;
        }
    }
    let failed = failed.expect("a write failed");
    assert_eq!(failed.status.as_u16(), 500, "{}", failed.body);
    // Reads still work, but the node is not healthy.
    let h = health().await;
    assert_eq!((h.status.as_u16(), h.code()), (503, 503), "{}", h.body);
    let msg = h.body["msg"].as_str().unwrap();
    assert!(msg.contains("write failed") && (msg.contains("full") || msg.contains("No space")), "{msg}");

    break_writes(&app, &sqlite, false).await;
    app.new_chat(&token, body).await;
    let h = health().await;
    assert_eq!((h.status.as_u16(), h.body["data"]["status"].as_str()), (200, Some("ok")), "{}", h.body);
}

/// A reset while another transaction has read `chats` and goes on to `chat_bots` (the order every
/// query takes them in). On PostgreSQL the reset's TRUNCATE, which takes `chat_bots` first, used
/// to deadlock with it, and PostgreSQL aborted the reset (rarely, when a test's reset met a
/// request in flight). Now the reset steps back until the transaction is done, and both succeed.
#[tokio::test]
async fn a_reset_waits_for_a_transaction_in_flight_instead_of_deadlocking() {
    let app = TestApp::demo().await;
    let t = app.token("demo-bot").await;
    app.new_chat(&t, json!({"name": "before the reset"})).await;
    let store = app.state.store.clone();
    let reset = || tokio::spawn(async move { store.clear().await });
    let remaining = match test_database() {
        None => {
            // SQLite's readers do not block its writer: the reset goes through at once.
            let conn = rusqlite::Connection::open(app.data.path().join("larkstack.db")).unwrap();
            conn.execute_batch("BEGIN").unwrap();
            let chats: i64 = conn.query_row("SELECT count(*) FROM chats", [], |r| r.get(0)).unwrap();
            assert_eq!(chats, 1);
            reset().await.unwrap().expect("the reset");
            let bots: i64 = conn.query_row("SELECT count(*) FROM chat_bots", [], |r| r.get(0)).unwrap();
            assert_eq!(bots, 1, "the transaction reads the state it began with");
            conn.execute_batch("COMMIT").unwrap();
            conn.query_row("SELECT count(*) FROM chats", [], |r| r.get::<_, i64>(0)).unwrap()
        }
        Some(url) => {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            client.batch_execute(&format!("SET search_path = {}; BEGIN", schema_for(app.data.path()))).await.unwrap();
            let chats: i64 = client.query_one("SELECT count(*) FROM chats", &[]).await.unwrap().get(0);
            assert_eq!(chats, 1);
            let reset = reset();
            // Long enough for the TRUNCATE to hold `chat_bots` and wait for `chats`; shorter than
            // PostgreSQL's deadlock check (deadlock_timeout, 1 s).
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let bots = client.query_one("SELECT count(*) FROM chat_bots", &[]).await.expect("no deadlock");
            assert_eq!(bots.get::<_, i64>(0), 1);
            assert!(!reset.is_finished(), "the reset waits for the transaction");
            client.batch_execute("COMMIT").await.unwrap();
            reset.await.unwrap().expect("the reset, once the transaction is done");
            client.query_one("SELECT count(*) FROM chats", &[]).await.unwrap().get(0)
        }
    };
    assert_eq!(remaining, 0);
}
