//! Store apps' ISV auth: `app_ticket` pushes (on first sight of a request URL, hourly on the
//! larkstack clock, on `app_ticket/resend`), received by a raw receiver that checks the signature
//! and decrypts with its own crypto; `app_access_token` with the ticket and its error codes.

use std::time::Duration;

use axum::http::Method;
use larkstack::domain::directory::{Directory, DEMO_FIXTURE};
use larkstack::store::AppTicketRecord;
use serde_json::{json, Value};

use crate::support::*;
use crate::webhooks::{check_signature, plain, Answer, Receiver};

const KEY: &str = "isv-encrypt-key";
const TOKEN: &str = "isv-verification-token";

/// The `app_ticket` callbacks received so far, decrypted; each one's signature is checked.
fn tickets(rx: &Receiver) -> Vec<Value> {
    rx.got
        .lock()
        .iter()
        .filter_map(|r| {
            let v = plain(KEY, &r.body);
            (v["type"] == "event_callback").then(|| {
                check_signature(KEY, r);
                v
            })
        })
        .collect()
}

/// Waits (real time, generously) until `n` tickets arrived.
async fn wait_tickets(rx: &Receiver, n: usize) -> Vec<Value> {
    for _ in 0..1000 {
        let got = tickets(rx);
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{n} app_tickets did not arrive: {:?}", tickets(rx));
}

/// The ticket of a callback.
fn ticket(v: &Value) -> &str {
    v["event"]["app_ticket"].as_str().unwrap()
}

impl TestApp {
    /// Gives the app a request URL on `rx` (encrypted, with `TOKEN`).
    async fn receive_tickets(&self, app_key: &str, rx: &Receiver) {
        let r = self.subscribe(app_key, json!({"event_url": rx.url, "encrypt_key": KEY, "verification_token": TOKEN})).await;
        assert_eq!(r.code(), 0, "{}", r.body);
    }

    async fn app_token_with_ticket(&self, app_key: &str, ticket: &str) -> Reply {
        let body = json!({"app_id": self.app_id(app_key), "app_secret": self.secret(app_key), "app_ticket": ticket});
        self.post_json("/open-apis/auth/v3/app_access_token", None, &body).await
    }

    async fn resend(&self, app_key: &str, secret: &str) -> Reply {
        self.post_json("/open-apis/auth/v3/app_ticket/resend", None, &json!({"app_id": self.app_id(app_key), "app_secret": secret}))
            .await
    }

    fn tenant_key(&self, key: &str) -> String {
        self.dir.tenants().iter().find(|t| t.key == key).unwrap().tenant_key.0.clone()
    }

    async fn advance(&self, by: &str) {
        let r = self.admin_call(Method::POST, "/_larkstack/clock", Some(json!({"freeze": true, "advance": by}))).await;
        assert_eq!(r.code(), 0, "{}", r.body);
    }
}

/// The demo directory plus a second store app.
fn two_store_apps() -> Directory {
    let text = format!(
        "{DEMO_FIXTURE}\n[[apps]]\nkey = \"store-two\"\nkind = \"store\"\ninstalled = [\"acme\"]\nscopes = [\"im:chat\"]\n"
    );
    Directory::from_toml(&text).unwrap()
}

#[tokio::test]
async fn a_pushed_ticket_is_signed_encrypted_and_buys_app_then_tenant_tokens() {
    let app = TestApp::demo().await;
    let rx = Receiver::start(KEY, Answer::Good).await;
    app.receive_tickets("store-app", &rx).await;
    let got = wait_tickets(&rx, 1).await;
    let v = &got[0];
    // Feishu's v1 callback, encrypted on the wire.
    assert!(serde_json::from_slice::<Value>(&rx.got.lock().last().unwrap().body).unwrap().get("encrypt").is_some());
    assert_eq!(v["type"], "event_callback");
    assert_eq!(v["token"], TOKEN);
    assert_eq!(v["event"]["type"], "app_ticket");
    assert_eq!(v["event"]["app_id"], app.app_id("store-app"));
    let uuid = v["uuid"].as_str().unwrap();
    assert!(uuid.len() == 32 && uuid.chars().all(|c| c.is_ascii_hexdigit()), "{uuid}");
    let ts = v["ts"].as_str().unwrap();
    assert!(ts.split_once('.').is_some_and(|(s, f)| s.len() == 10 && !f.is_empty()), "{ts}");
    assert!(v.get("schema").is_none());

    let r = app.app_token_with_ticket("store-app", ticket(v)).await;
    assert_eq!((r.status.as_u16(), r.code()), (200, 0), "{}", r.body);
    assert!(r.body["expire"].as_i64().unwrap() > 7000);
    let app_token = r.body["app_access_token"].as_str().unwrap().to_string();
    let r = app
        .post_json("/open-apis/auth/v3/tenant_access_token", None, &json!({"app_access_token": app_token, "tenant_key": app.tenant_key("globex")}))
        .await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let tenant_token = r.body["tenant_access_token"].as_str().unwrap().to_string();
    // A real call as the store app in globex.
    let chat = app.new_chat(&tenant_token, json!({"name": "isv chat"})).await;
    let g = app.call(Method::GET, &format!("/open-apis/im/v1/chats/{chat}"), &tenant_token, None).await;
    assert_eq!(g.code(), 0, "{}", g.body);
    assert_eq!(g.body["data"]["tenant_key"], app.tenant_key("globex"));
    // Self-built apps get no tickets.
    assert!(tickets(&rx).iter().all(|t| t["event"]["app_id"] == app.app_id("store-app")));
    // The push is counted (once the receiver's answer is in).
    let counted = r#"larkstack_event_deliveries_total{event_type="app_ticket",outcome="delivered"} 1"#;
    let mut metrics = String::new();
    for _ in 0..250 {
        metrics = String::from_utf8(app.raw(Method::GET, "/metrics", &[], None).await.2).unwrap();
        if metrics.contains(counted) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(metrics.contains(counted), "{metrics}");
}

#[tokio::test]
async fn resend_pushes_a_new_ticket_that_supersedes_the_old_one() {
    let app = TestApp::demo().await;
    let rx = Receiver::start(KEY, Answer::Good).await;
    app.receive_tickets("store-app", &rx).await;
    let first = ticket(&wait_tickets(&rx, 1).await[0]).to_string();

    let r = app.resend("store-app", "wrong").await;
    assert_eq!((r.status.as_u16(), r.code()), (200, 10014), "{}", r.body);
    let r = app.resend("demo-bot", &app.secret("demo-bot")).await;
    assert_eq!(r.code(), 10003, "self-built apps have no tickets: {}", r.body);
    let r = app.resend("store-app", &app.secret("store-app")).await;
    assert_eq!(r.body, json!({"code": 0, "msg": "ok"}));
    let got = wait_tickets(&rx, 2).await;
    assert_eq!(got.len(), 2, "the refused resends pushed nothing");
    let second = ticket(&got[1]).to_string();
    assert_ne!(first, second);
    assert_ne!(got[0]["uuid"], got[1]["uuid"]);

    assert_eq!(app.app_token_with_ticket("store-app", &first).await.code(), 10012, "superseded");
    assert_eq!(app.app_token_with_ticket("store-app", &second).await.code(), 0);

    // A new request URL gets the current ticket at once (it is less than an hour old).
    let moved = Receiver::start(KEY, Answer::Good).await;
    app.receive_tickets("store-app", &moved).await;
    assert_eq!(ticket(&wait_tickets(&moved, 1).await[0]), second);
    assert_eq!(tickets(&rx).len(), 2);
    assert_eq!(app.app_token_with_ticket("store-app", &second).await.code(), 0);
}

#[tokio::test]
async fn a_restart_pushes_the_current_ticket_until_it_is_an_hour_old() {
    let app = TestApp::demo().await;
    let rx = Receiver::start(KEY, Answer::Good).await;
    app.advance("0s").await;
    app.receive_tickets("store-app", &rx).await;
    let first = ticket(&wait_tickets(&rx, 1).await[0]).to_string();
    // Another node on the same store (or this one restarted) with the same request URL.
    let text = DEMO_FIXTURE.replace(
        "kind = \"store\"\ninstalled = [\"acme\", \"globex\"]",
        &format!("kind = \"store\"\ninstalled = [\"acme\", \"globex\"]\nevent_url = \"{}\"\nencrypt_key = \"{KEY}\"\nverification_token = \"{TOKEN}\"", rx.url),
    );
    let clock = app.state.clock.clone();
    let TestApp { data, state, router, .. } = app;
    drop((state, router));
    let again = TestApp::on(data, Directory::from_toml(&text).unwrap(), Default::default(), clock).await;
    let got = wait_tickets(&rx, 2).await;
    assert_eq!(ticket(&got[1]), first, "the current ticket again, not a new one");
    assert_eq!(again.app_token_with_ticket("store-app", &first).await.code(), 0);
    again.advance("1h").await;
    let got = wait_tickets(&rx, 3).await;
    assert_ne!(ticket(&got[2]), first);
    assert_eq!(again.app_token_with_ticket("store-app", &first).await.code(), 10012);
}

#[tokio::test]
async fn an_hour_of_larkstack_clock_pushes_a_new_ticket_and_tickets_expire() {
    let app = TestApp::demo().await;
    let rx = Receiver::start(KEY, Answer::Good).await;
    app.advance("0s").await; // frozen: only the test moves time
    app.receive_tickets("store-app", &rx).await;
    wait_tickets(&rx, 1).await;
    app.advance("59m").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(tickets(&rx).len(), 1, "not due before the hour");
    app.advance("1m").await;
    let got = wait_tickets(&rx, 2).await;
    let hourly = ticket(&got[1]).to_string();
    assert_ne!(ticket(&got[0]), hourly);
    assert_eq!(app.app_token_with_ticket("store-app", ticket(&got[0])).await.code(), 10012);
    assert_eq!(app.app_token_with_ticket("store-app", &hourly).await.code(), 0);

    // Without a request URL no new ticket comes, and the last one expires after 12 hours.
    assert_eq!(app.subscribe("store-app", json!({"event_url": ""})).await.code(), 0);
    app.advance("11h59m").await;
    assert_eq!(app.app_token_with_ticket("store-app", &hourly).await.code(), 0, "still valid");
    app.advance("1m").await;
    let r = app.app_token_with_ticket("store-app", &hourly).await;
    assert_eq!((r.code(), r.body["msg"].as_str()), (10012, Some("app_ticket is invalid")), "{}", r.body);
    assert_eq!(r.body["data"], json!({}));
    assert_eq!(tickets(&rx).len(), 2);
}

#[tokio::test]
async fn app_access_token_refuses_missing_foreign_and_bad_credentials() {
    let app = TestApp::with(two_store_apps(), Default::default()).await;
    let rx = Receiver::start(KEY, Answer::Good).await;
    app.receive_tickets("store-app", &rx).await;
    app.receive_tickets("store-two", &rx).await;
    let got = wait_tickets(&rx, 2).await;
    let of = |key: &str| {
        let id = app.app_id(key);
        ticket(got.iter().find(|t| t["event"]["app_id"] == id.as_str()).unwrap()).to_string()
    };
    let (mine, foreign) = (of("store-app"), of("store-two"));
    let (id, secret) = (app.app_id("store-app"), app.secret("store-app"));

    let cases = [
        ("no ticket", json!({"app_id": id, "app_secret": secret}), 10012),
        ("empty ticket", json!({"app_id": id, "app_secret": secret, "app_ticket": ""}), 10012),
        ("unknown ticket", json!({"app_id": id, "app_secret": secret, "app_ticket": "ticket-nope"}), 10012),
        ("another app's ticket", json!({"app_id": id, "app_secret": secret, "app_ticket": foreign}), 10012),
        ("wrong secret", json!({"app_id": id, "app_secret": "wrong", "app_ticket": mine}), 10014),
        ("unknown app", json!({"app_id": "cli_0000000000000000", "app_secret": secret, "app_ticket": mine}), 10003),
        ("no app_id", json!({"app_secret": secret, "app_ticket": mine}), 10003),
        ("not an object", json!(["x"]), 10003),
        (
            "a self-built app",
            json!({"app_id": app.app_id("demo-bot"), "app_secret": app.secret("demo-bot"), "app_ticket": mine}),
            10003,
        ),
    ];
    for (what, body, code) in cases {
        let r = app.post_json("/open-apis/auth/v3/app_access_token", None, &body).await;
        assert_eq!((r.status.as_u16(), r.code()), (200, code), "{what}: {}", r.body);
        assert_eq!(r.body["data"], json!({}), "{what}");
        assert!(r.body.get("app_access_token").is_none(), "{what}");
    }
    assert_eq!(app.app_token_with_ticket("store-app", &mine).await.code(), 0);
    assert_eq!(app.app_token_with_ticket("store-two", &foreign).await.code(), 0);

    // A store app without a request URL gets nothing from a resend, and so no ticket.
    let bare = TestApp::with(two_store_apps(), Default::default()).await;
    assert_eq!(bare.resend("store-two", &bare.secret("store-two")).await.code(), 0);
    assert!(bare.state.store.app_ticket(&larkstack::domain::ids::AppId(bare.app_id("store-two"))).await.unwrap().is_none());
}

#[tokio::test]
async fn of_concurrent_issuers_with_one_bound_one_wins_and_tickets_move_with_the_state() {
    let app = TestApp::demo().await;
    let store = &app.state.store;
    let app_id = larkstack::domain::ids::AppId(app.app_id("store-app"));
    let record = |ticket: &str, at: i64| AppTicketRecord { app_id: app_id.clone(), ticket: ticket.into(), issued_at_ms: at, expires_at_ms: at + 1000 };
    assert_eq!(store.issue_app_ticket(record("a", 100), i64::MAX).await.unwrap(), Some(record("a", 100)));
    // Hourly issuers replace only a ticket issued before their bound: the first wins.
    assert!(store.issue_app_ticket(record("b", 200), 101).await.unwrap().is_some());
    assert!(store.issue_app_ticket(record("c", 200), 101).await.unwrap().is_none());
    assert_eq!(store.app_ticket(&app_id).await.unwrap(), Some(record("b", 200)));

    // A reset keeps tickets (SDKs hold them); export and import carry them.
    let r = app.admin_call(Method::POST, "/_larkstack/reset", None).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    assert_eq!(store.app_ticket(&app_id).await.unwrap(), Some(record("b", 200)));
    let lines = app.export_state().await;
    let exported = records_of(&lines, "app_ticket");
    assert_eq!(exported, [json!({"app_id": app_id.0, "ticket": "b", "issued_at_ms": 200, "expires_at_ms": 1200})]);
    let other = TestApp::demo().await;
    let r = other.import_state(&ndjson(&lines)).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    assert_eq!(other.state.store.app_ticket(&app_id).await.unwrap(), Some(record("b", 200)));
}
