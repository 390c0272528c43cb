//! Hardening: credentials never kept in the journal, the journal bounded by bytes, owner-only
//! files in the data dir, `larkstack directory` into a closed pipe, fault rules that would do
//! nothing refused.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use axum::http::Method;
use larkstack::domain::directory::Directory;
use larkstack::secrets::fingerprint;
use larkstack::state::StateConfig;
use serde_json::{json, Value};

use crate::support::*;

async fn admin(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Reply {
    let token = app.state.admin_token.clone();
    app.call(method, path, &token, body).await
}

async fn journal(app: &TestApp) -> Value {
    let r = admin(app, Method::GET, "/_larkstack/journal", None).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    r.body["data"].clone()
}

#[tokio::test]
async fn the_journal_keeps_fingerprints_of_secrets_and_tokens() {
    let app = TestApp::demo().await;
    let secret = app.secret("demo-bot");
    let tenant_token = app.token("demo-bot").await;
    app.new_chat(&tenant_token, json!({"name": "secret keeping"})).await;
    // A store app: app token (reply), then a tenant token asked for with it (request).
    let store = app.dir.apps().iter().find(|a| a.key == "store-app").unwrap().clone();
    let r = app
        .post_json("/open-apis/auth/v3/app_access_token/internal", None, &json!({"app_id": store.app_id, "app_secret": store.app_secret}))
        .await;
    let app_token = r.body["app_access_token"].as_str().unwrap().to_string();
    let tenant = app.dir.tenants().iter().find(|t| store.installs.contains_key(&t.tenant_key)).unwrap().tenant_key.clone();
    let r = app
        .post_json("/open-apis/auth/v3/tenant_access_token", None, &json!({"app_access_token": app_token, "tenant_key": tenant}))
        .await;
    let store_tenant_token = r.body["tenant_access_token"].as_str().unwrap().to_string();

    let j = journal(&app).await;
    let text = j.to_string();
    for s in [&secret, &store.app_secret, &tenant_token, &app_token, &store_tenant_token] {
        assert!(!text.contains(s.as_str()), "{s} is in the journal: {text}");
    }
    let items = j["items"].as_array().unwrap();
    let find = |path: &str| items.iter().find(|e| e["path"] == path).unwrap_or_else(|| panic!("no {path} in {text}"));
    let internal = find("/open-apis/auth/v3/tenant_access_token/internal");
    assert_eq!(internal["request_body"]["app_secret"], json!(fingerprint(&secret)));
    assert_eq!(internal["request_body"]["app_id"], app.app_id("demo-bot"), "other fields as sent");
    assert_eq!(internal["response_body"]["tenant_access_token"], json!(fingerprint(&tenant_token)));
    assert!(internal["response_body"]["expire"].is_u64(), "other fields as sent");
    assert_eq!(find("/open-apis/auth/v3/app_access_token/internal")["response_body"]["app_access_token"], json!(fingerprint(&app_token)));
    let store_tenant = find("/open-apis/auth/v3/tenant_access_token");
    assert_eq!(store_tenant["request_body"]["app_access_token"], json!(fingerprint(&app_token)));
    assert_eq!(store_tenant["request_body"]["tenant_key"], tenant.0);
    let create = find("/open-apis/im/v1/chats");
    assert_eq!(create["token"], json!(fingerprint(&tenant_token)), "the bearer token as a fingerprint");
    assert_eq!(create["request_body"], json!({"name": "secret keeping"}));
    assert_eq!(create["code"], 0);
}

#[tokio::test]
async fn the_journal_is_bounded_by_bytes_and_says_what_it_cut() {
    let max_bytes = 1 << 20;
    let config = StateConfig { journal_size: 1_000_000, journal_bytes: max_bytes, ..StateConfig::default() };
    let app = TestApp::with(Directory::demo(), config).await;
    let big = vec![b'x'; 1 << 20];
    for i in 0..60 {
        let r = app.request(Method::POST, &format!("/open-apis/no/such/path/{i}"), &[], Some(&big)).await;
        assert_eq!(r.status.as_u16(), 404, "{}", r.body);
        let j = journal(&app).await;
        assert_eq!(j["max_bytes"], max_bytes);
        let bytes = j["bytes"].as_u64().unwrap() as usize;
        assert!(0 < bytes && bytes <= max_bytes, "after {} calls the journal keeps {bytes} bytes, bound {max_bytes}", i + 1);
        let kept: usize = j["items"].as_array().unwrap().iter().map(|e| e["request_body"].as_str().unwrap().len()).sum();
        assert!(kept <= bytes, "bodies kept: {kept}, accounted: {bytes}");
    }
    let j = journal(&app).await;
    let items = j["items"].as_array().unwrap();
    assert!(items.len() > 1 && items.len() < 60, "{} entries: oldest evicted", items.len());
    let newest = &items[0];
    assert_eq!(newest["path"], "/open-apis/no/such/path/59");
    assert_eq!(newest["request_body_truncated"], true);
    assert_eq!(newest["request_body_size"], 1 << 20);
    assert!(newest["request_body"].as_str().unwrap().len() <= 64 << 10);
    assert_eq!(newest["response_body_truncated"], false);
    assert_eq!(newest["code"], newest["response_body"]["code"], "the reply itself is whole");
    let first_seq = items.last().unwrap()["seq"].as_u64().unwrap();
    assert!(first_seq > 1, "the first calls are gone");
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

#[test]
fn the_data_dir_and_its_secrets_are_the_owners_only() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("fresh").join("data");
    // umask 000: only the modes larkstack asks for keep the files private.
    let mut child = Command::new("sh")
        .args(["-c", "umask 000; exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_larkstack"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .args(backend_args(&data))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The files exist once the server listens.
    while !lines.next().expect("server exited before listening").unwrap().starts_with("larkstack listening on ") {}
    let modes: Vec<(String, u32)> = {
        let mut files = vec!["admin-token", "fixture.toml"];
        if test_database().is_none() {
            files.extend(["larkstack.db", "larkstack.db-wal", "larkstack.db-shm"]);
        }
        files.into_iter().map(|f| (f.to_string(), mode(&data.join(f)))).collect()
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(mode(&data), 0o700, "the data dir");
    for (file, mode) in modes {
        assert_eq!(mode, 0o600, "{file}: {mode:o}");
    }
}

#[test]
fn an_admin_token_file_kept_world_readable_is_made_private() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("admin-token");
    std::fs::write(&file, "lsadm-old").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let server = Server::spawn(tmp.path(), None, &[]);
    let r = reqwest::blocking::Client::new().get(server.url("/_larkstack/clock")).bearer_auth("lsadm-old").send().unwrap();
    assert_eq!(r.status().as_u16(), 200, "the kept token still opens the control API");
    assert_eq!(mode(&file), 0o600);
}

#[test]
fn directory_into_a_closed_pipe_exits_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    // Far more than a pipe holds, so the writer is still writing when the reader goes.
    let fixture = write_fixture(tmp.path(), &big_fixture(3000));
    let mut child = Command::new(env!("CARGO_BIN_EXE_larkstack"))
        .arg("directory")
        .arg("--fixture")
        .arg(&fixture)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"{");
    drop(stdout); // `| head -c1`
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(out.status.code(), Some(101), "{stderr}");
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
}

#[test]
fn serve_keeps_serving_when_its_stdout_reader_is_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // A pipe whose reader is closed before the server writes its banner (`larkstack serve | head -0`).
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut child = Command::new(env!("CARGO_BIN_EXE_larkstack"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(tmp.path().join("data"))
        .args(crate::support::backend_args(&tmp.path().join("data")))
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let healthy = loop {
        match reqwest::blocking::get(format!("http://127.0.0.1:{port}/healthz")) {
            Ok(r) => break r.status().as_u16(),
            Err(_) if std::time::Instant::now() < deadline && child.try_wait().unwrap().is_none() => {
                std::thread::sleep(std::time::Duration::from_millis(50))
            }
            Err(e) => {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!("no answer ({e}); exit {:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
            }
        }
    };
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(healthy, 200);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

#[tokio::test]
async fn a_fault_with_count_zero_is_refused() {
    let app = TestApp::demo().await;
    let r = admin(&app, Method::POST, "/_larkstack/faults", Some(json!({"preset": "internal_error", "count": 0}))).await;
    assert_eq!((r.status.as_u16(), r.code()), (400, 400), "{}", r.body);
    assert!(r.body["msg"].as_str().unwrap().contains("count"), "{}", r.body);
    assert!(r.body["error"]["log_id"].is_string(), "the Feishu error envelope: {}", r.body);
    let listed = admin(&app, Method::GET, "/_larkstack/faults", None).await;
    assert_eq!(listed.body["data"]["items"], json!([]));
    let ok = admin(&app, Method::POST, "/_larkstack/faults", Some(json!({"preset": "internal_error", "count": 1}))).await;
    assert_eq!(ok.code(), 0, "count 1 is fine: {}", ok.body);
}
