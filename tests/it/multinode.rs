//! Several real larkstack processes on one PostgreSQL and one Redis, as a load balancer would
//! spread a client over them. PostgreSQL and Redis come from `LARKSTACK_DATABASE` and
//! `LARKSTACK_REDIS`, else the local servers CI starts; each cluster gets a schema of its own.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use larkstack::domain::ids::ChatId;
use larkstack::store::postgres::PostgresStore;
use larkstack::store::Store;
use serde_json::{json, Value};

use crate::support::*;

const ADMIN: &str = "lsadm-multinode-test";

fn database_url() -> String {
    test_database().unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn redis_url() -> String {
    test_redis().unwrap_or_else(|| "redis://127.0.0.1:6379".into())
}

struct Cluster {
    nodes: Vec<Option<Server>>,
    schema: String,
    client: reqwest::Client,
    _dirs: Vec<tempfile::TempDir>,
}

impl Cluster {
    /// `n` nodes on one fresh schema; each has its own data dir (only its fixture and admin
    /// token live there) and the same fixture.
    fn start(n: usize, fixture: Option<&str>, extra: &[&str]) -> Cluster {
        let dirs: Vec<_> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
        let schema = format!("m{}", schema_for(dirs[0].path()));
        let nodes = dirs
            .iter()
            .map(|dir| {
                let fixture = fixture.map(|text| write_fixture(dir.path(), text));
                let mut args: Vec<String> = vec![
                    "--database".into(),
                    database_url(),
                    "--database-schema".into(),
                    schema.clone(),
                    "--redis".into(),
                    redis_url(),
                    "--admin-token".into(),
                    ADMIN.into(),
                ];
                args.extend(extra.iter().map(|s| s.to_string()));
                Some(Server::spawn_with(&dir.path().join("data"), fixture.as_deref(), &args))
            })
            .collect();
        Cluster { nodes, schema, client: reqwest::Client::new(), _dirs: dirs }
    }

    fn url(&self, node: usize, path: &str) -> String {
        self.nodes[node].as_ref().expect("node is running").url(path)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Value {
        req.send().await.unwrap().json().await.unwrap()
    }

    async fn call(&self, node: usize, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> Value {
        let mut req = self.client.request(method, self.url(node, path)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.send(req).await
    }

    async fn token(&self, node: usize) -> String {
        let r = self
            .send(
                self.client
                    .post(self.url(node, "/open-apis/auth/v3/tenant_access_token/internal"))
                    .json(&json!({"app_id": DEMO_APP_ID, "app_secret": DEMO_SECRET})),
            )
            .await;
        assert_eq!(r["code"], 0, "{r}");
        r["tenant_access_token"].as_str().unwrap().to_string()
    }

    async fn clock(&self, node: usize, change: Option<Value>) -> Value {
        let req = match change {
            Some(body) => self.client.post(self.url(node, "/_larkstack/clock")).json(&body),
            None => self.client.get(self.url(node, "/_larkstack/clock")),
        };
        self.send(req.bearer_auth(ADMIN)).await["data"].clone()
    }

    /// Every node reads the same frozen time (clock changes reach the others through Redis).
    async fn wait_for_clock(&self, now_ms: i64) {
        for node in 0..self.nodes.len() {
            let mut tries = 0;
            while self.clock(node, None).await != json!({"now_ms": now_ms, "frozen": true}) {
                tries += 1;
                assert!(tries < 200, "node {node} never adopted the clock");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }

    async fn store(&self) -> PostgresStore {
        PostgresStore::open(&database_url(), &self.schema, 2).await.unwrap()
    }
}

impl Drop for Cluster {
    /// Stops the nodes, then drops the cluster's schema and Redis keys.
    fn drop(&mut self) {
        self.nodes.clear();
        let schema = self.schema.clone();
        let cleaned = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let (client, connection) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await?;
                let redis = redis::Client::open(redis_url()).unwrap();
                let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
                let _: () = redis::cmd("DEL").arg(format!("larkstack:{schema}:clock")).query_async(&mut conn).await.unwrap();
                Ok::<_, tokio_postgres::Error>(())
            })
        })
        .join();
        if let Ok(Err(e)) = cleaned {
            eprintln!("cleaning up schema {}: {e}", self.schema);
        }
    }
}

fn open_id(directory: &Value, user: &str) -> String {
    directory["users"].as_array().unwrap().iter().find(|u| u["key"] == user).unwrap()["open_ids"]["demo-bot"]
        .as_str()
        .unwrap()
        .to_string()
}

fn demo_directory() -> Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_larkstack")).arg("directory").output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multinode_token_and_chat_cross_nodes() {
    let c = Cluster::start(3, None, &[]);
    let dir = demo_directory();
    let (alice, bob, carol) = (open_id(&dir, "alice"), open_id(&dir, "bob"), open_id(&dir, "carol"));
    for node in 0..3 {
        let health = c.send(c.client.get(c.url(node, "/healthz"))).await;
        assert_eq!(health["data"]["status"], "ok", "node {node}: {health}");
    }
    let token = c.token(0).await;
    // The same app asking another node gets the same token back: rotation is shared.
    assert_eq!(c.token(1).await, token);

    let created =
        c.call(0, reqwest::Method::POST, "/open-apis/im/v1/chats", &token, Some(json!({"name": "跨节点", "user_id_list": [alice]}))).await;
    assert_eq!(created["code"], 0, "{created}");
    let chat_id = created["data"]["chat_id"].as_str().unwrap().to_string();
    let path = format!("/open-apis/im/v1/chats/{chat_id}");

    // Node B reads it with node A's token, and changes it.
    let read = c.call(1, reqwest::Method::GET, &path, &token, None).await;
    assert_eq!((read["code"].clone(), read["data"]["name"].clone()), (json!(0), json!("跨节点")), "{read}");
    let renamed = c.call(1, reqwest::Method::PUT, &path, &token, Some(json!({"name": "改名"}))).await;
    assert_eq!(renamed["code"], 0, "{renamed}");
    let added =
        c.call(1, reqwest::Method::POST, &format!("{path}/members"), &token, Some(json!({"id_list": [bob, carol]}))).await;
    assert_eq!(added["code"], 0, "{added}");

    // Node C sees both changes.
    let read = c.call(2, reqwest::Method::GET, &path, &token, None).await;
    assert_eq!(read["data"]["name"], "改名");
    assert_eq!(read["data"]["user_count"], "3", "{read}");
    let members = c.call(2, reqwest::Method::GET, &format!("{path}/members"), &token, None).await;
    let ids: HashSet<&str> = members["data"]["items"].as_array().unwrap().iter().map(|m| m["member_id"].as_str().unwrap()).collect();
    assert_eq!(ids, HashSet::from([alice.as_str(), bob.as_str(), carol.as_str()]));

    // A message sent on C is listed on A.
    let sent = c
        .call(
            2,
            reqwest::Method::POST,
            "/open-apis/im/v1/messages?receive_id_type=chat_id",
            &token,
            Some(json!({"receive_id": chat_id, "msg_type": "text", "content": "{\"text\":\"hi\"}"})),
        )
        .await;
    assert_eq!(sent["code"], 0, "{sent}");
    let listed =
        c.call(0, reqwest::Method::GET, &format!("/open-apis/im/v1/messages?container_id_type=chat&container_id={chat_id}"), &token, None).await;
    assert_eq!(listed["data"]["items"][0]["message_id"], sent["data"]["message_id"], "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multinode_identical_creates_make_one_chat() {
    // 64 at once is past the 50/s budget; this test is about dedup, not limits.
    let c = Arc::new(Cluster::start(3, None, &["--rate-limits", "off"]));
    let alice = open_id(&demo_directory(), "alice");
    let token = c.token(0).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(64));
    let mut tasks = Vec::new();
    for i in 0..64 {
        let (c, token, alice, barrier) = (c.clone(), token.clone(), alice.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            c.call(
                i % 3,
                reqwest::Method::POST,
                "/open-apis/im/v1/chats?uuid=storm-across-nodes",
                &token,
                Some(json!({"owner_id": alice, "user_id_list": [alice]})),
            )
            .await
        }));
    }
    let (mut chat_ids, mut busy) = (HashSet::new(), 0);
    for task in tasks {
        let r = task.await.unwrap();
        match r["code"].as_i64().unwrap() {
            0 => {
                chat_ids.insert(r["data"]["chat_id"].as_str().unwrap().to_string());
            }
            232068 => busy += 1,
            other => panic!("unexpected code {other}: {r}"),
        }
    }
    assert_eq!(chat_ids.len(), 1, "every success names the same chat");
    assert!(busy < 64);
    assert_eq!(c.store().await.count_chats().await.unwrap(), 1, "exactly one chat exists ({busy} answered 232068)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multinode_rate_limits_hold_across_nodes() {
    let c = Arc::new(Cluster::start(3, None, &[]));
    // Freeze time on node 0 at the start of a minute; the others follow through Redis.
    let minute_start = 1_900_000_020_000 - 1_900_000_020_000 % 60_000;
    c.clock(0, Some(json!({"freeze": true, "set_ms": minute_start}))).await;
    c.wait_for_clock(minute_start).await;
    let token = c.token(0).await;
    let chat = c.call(0, reqwest::Method::POST, "/open-apis/im/v1/chats", &token, Some(json!({}))).await;
    let path = format!("/open-apis/im/v1/chats/{}", chat["data"]["chat_id"].as_str().unwrap());

    // One second's budget is 50 calls, whichever nodes they reach.
    let round = |calls: usize| {
        let c = c.clone();
        let (token, path) = (token.clone(), path.clone());
        async move {
            let tasks: Vec<_> = (0..calls)
                .map(|i| {
                    let (c, token, path) = (c.clone(), token.clone(), path.clone());
                    tokio::spawn(async move { c.call(i % 3, reqwest::Method::GET, &path, &token, None).await })
                })
                .collect();
            let mut codes = Vec::new();
            for t in tasks {
                codes.push(t.await.unwrap()["code"].as_i64().unwrap());
            }
            (codes.iter().filter(|&&c| c == 0).count(), codes.iter().filter(|&&c| c == 99991400).count())
        }
    };
    assert_eq!(round(90).await, (50, 40), "50 per second across three nodes");

    // The minute's budget is 1000: nineteen more seconds of 50 fill it, the next second gets nothing.
    for second in 1..20 {
        c.clock(second % 3, Some(json!({"advance_ms": 1000}))).await;
        c.wait_for_clock(minute_start + second as i64 * 1000).await;
        assert_eq!(round(50).await, (50, 0), "second {second}");
    }
    c.clock(1, Some(json!({"advance_ms": 1000}))).await;
    c.wait_for_clock(minute_start + 20_000).await;
    let refused = c.call(2, reqwest::Method::GET, &path, &token, None).await;
    assert_eq!(refused["code"], 99991400, "{refused}");
    // The window slides, not the clock minute: at +60 s the first second's 50 have left it.
    c.clock(2, Some(json!({"advance_ms": 39_999}))).await;
    c.wait_for_clock(minute_start + 59_999).await;
    assert_eq!(round(30).await, (0, 30));
    c.clock(0, Some(json!({"advance_ms": 1}))).await;
    c.wait_for_clock(minute_start + 60_000).await;
    assert_eq!(round(60).await, (50, 10));
}

fn system_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multinode_real_clock_never_admits_more_than_fifty_in_any_second() {
    // The real clock, untouched: every node reads the system clock, as the client does.
    let c = Arc::new(Cluster::start(3, None, &[]));
    let token = c.token(0).await;
    let chat = c.call(0, reqwest::Method::POST, "/open-apis/im/v1/chats", &token, Some(json!({}))).await;
    let path = format!("/open-apis/im/v1/chats/{}", chat["data"]["chat_id"].as_str().unwrap());

    // Clients on all three nodes read the chat as fast as they can, until well past the limit
    // for a few seconds. Each call is recorded as (sent, answered, code) in system ms.
    let calls: Arc<Mutex<Vec<(i64, i64, i64)>>> = Arc::default();
    let started = system_ms();
    let done = move |calls: &Mutex<Vec<(i64, i64, i64)>>| {
        let elapsed = system_ms() - started;
        elapsed > 30_000 || (elapsed > 3_000 && calls.lock().unwrap().iter().filter(|call| call.2 != 0).count() >= 200)
    };
    let workers: Vec<_> = (0..24)
        .map(|w| {
            let (c, token, path, calls) = (c.clone(), token.clone(), path.clone(), calls.clone());
            tokio::spawn(async move {
                while !done(&calls) {
                    let sent = system_ms();
                    let r = c.call(w % 3, reqwest::Method::GET, &path, &token, None).await;
                    let code = r["code"].as_i64().unwrap();
                    assert!(code == 0 || code == 99991400, "{r}");
                    calls.lock().unwrap().push((sent, system_ms(), code));
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let calls = calls.lock().unwrap().clone();
    let admitted: Vec<(i64, i64)> = calls.iter().filter(|call| call.2 == 0).map(|&(s, a, _)| (s, a)).collect();
    assert!(calls.len() > admitted.len(), "the load never passed the limit ({} calls)", calls.len());

    // A node stamps an admitted call between its client's send and answer (one system clock):
    // calls sent and answered within one second were admitted within it.
    let within_a_second = admitted
        .iter()
        .map(|&(_, end)| admitted.iter().filter(|&&(s, a)| s > end - 1000 && a <= end).count())
        .max()
        .unwrap();
    assert!(within_a_second <= 50, "{within_a_second} calls sent and answered within one second all passed");

    // The shared log holds the stamps the nodes admitted at: one per success, each between its
    // call's send and answer, never 51 in a second.
    let redis = redis::Client::open(redis_url()).unwrap();
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("larkstack:{}:rl:{{GetChat:*", c.schema)).query_async(&mut conn).await.unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let stamps: Vec<(String, i64)> = redis::cmd("ZRANGE").arg(&keys[0]).arg(0).arg(-1).arg("WITHSCORES").query_async(&mut conn).await.unwrap();
    let stamps: Vec<i64> = stamps.into_iter().map(|(_, at)| at).collect();
    assert_eq!(stamps.len(), admitted.len());
    let (first, last) = (admitted.iter().map(|a| a.0).min().unwrap(), admitted.iter().map(|a| a.1).max().unwrap());
    assert!(stamps.iter().all(|at| (first..=last).contains(at)));
    assert!(larkstack::ratelimit::max_in_window(&stamps, 1000) <= 50, "{} in one second", larkstack::ratelimit::max_in_window(&stamps, 1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multinode_sigkill_loses_no_acknowledged_chat() {
    let mut c = Cluster::start(2, Some(&big_fixture(60)), &["--rate-limits", "off"]);
    let directory: Value = serde_json::from_slice(
        &std::process::Command::new(env!("CARGO_BIN_EXE_larkstack"))
            .args(["directory", "--fixture"])
            .arg(write_fixture(c._dirs[0].path(), &big_fixture(60)))
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let members: Vec<String> =
        directory["users"].as_array().unwrap().iter().take(50).map(|u| u["open_ids"]["bot"].as_str().unwrap().to_string()).collect();
    let token = c.token(0).await;

    let acked: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..16 {
        let node = w % 2;
        let (client, url, token, members, acked, stop) =
            (c.client.clone(), c.url(node, "/open-apis/im/v1/chats"), token.clone(), members.clone(), acked.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(resp) = client.post(&url).bearer_auth(&token).json(&json!({"name": "durable", "user_id_list": members})).send().await
                else {
                    break; // node 0 is gone
                };
                let Ok(body) = resp.json::<Value>().await else { break };
                if body["code"] == 0 {
                    acked.lock().unwrap().push((node, body["data"]["chat_id"].as_str().unwrap().to_string()));
                }
            }
        }));
    }
    while acked.lock().unwrap().iter().filter(|(n, _)| *n == 0).count() < 200 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    c.nodes[0].take().unwrap().kill9();
    // Node 1 keeps serving after its peer died.
    let before = acked.lock().unwrap().iter().filter(|(n, _)| *n == 1).count();
    while acked.lock().unwrap().iter().filter(|(n, _)| *n == 1).count() < before + 100 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let store = c.store().await;
    for (node, id) in &acked {
        let chat = store.get_chat(&ChatId(id.clone())).await.unwrap().unwrap_or_else(|| panic!("chat {id} acknowledged by node {node} lost"));
        assert_eq!(chat.users.len(), 50, "{id} has all its members");
    }
    // And the survivor serves the dead node's chats.
    for (_, id) in acked.iter().filter(|(n, _)| *n == 0).take(20) {
        let read = c.call(1, reqwest::Method::GET, &format!("/open-apis/im/v1/chats/{id}"), &token, None).await;
        assert_eq!(read["code"], 0, "{read}");
    }
}

/// An image uploaded through one node is served by the other, and messages sent through it may
/// name it: the bytes live in the shared store, not on a node.
#[tokio::test]
async fn an_upload_on_one_node_is_served_by_another() {
    use crate::media::{multipart, png, BOUNDARY};
    let c = Cluster::start(2, None, &[]);
    let token = c.token(0).await;
    let image = png(32, 32, &[7; 200_000]);
    let body = multipart(&[("image_type", None, b"message"), ("image", Some("a.png"), &image)]);
    let uploaded: Value = c
        .client
        .post(c.url(0, "/open-apis/im/v1/images"))
        .bearer_auth(&token)
        .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(uploaded["code"], 0, "{uploaded}");
    let key = uploaded["data"]["image_key"].as_str().unwrap();
    let got = c.client.get(c.url(1, &format!("/open-apis/im/v1/images/{key}"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-type"], "image/png");
    assert!(got.bytes().await.unwrap() == image, "node 1 serves node 0's upload byte-identical");
    let chat = c.call(1, reqwest::Method::POST, "/open-apis/im/v1/chats", &token, Some(json!({"name": "two nodes"}))).await;
    let chat_id = chat["data"]["chat_id"].as_str().unwrap();
    let content = json!({"image_key": key}).to_string();
    let body = json!({"receive_id": chat_id, "msg_type": "image", "content": content});
    let sent = c.call(1, reqwest::Method::POST, "/open-apis/im/v1/messages?receive_id_type=chat_id", &token, Some(body)).await;
    assert_eq!(sent["code"], 0, "{sent}");
}

/// Connection slots are cluster-wide: 50 on node 0 fill the app, node 1 then refuses the 51st
/// with the handshake headers, and a close on node 0 frees a slot node 1 can take.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multinode_long_connection_slots_are_counted_cluster_wide() {
    use crate::longconn::Client;
    let cluster = Cluster::start(2, None, &[]);
    let app = &demo_directory()["apps"].as_array().unwrap().iter().find(|a| a["key"] == "demo-bot").unwrap().clone();
    let (id, secret) = (app["app_id"].as_str().unwrap(), app["app_secret"].as_str().unwrap());
    let base = |node: usize| cluster.url(node, "");
    let mut held = Vec::new();
    for _ in 0..50 {
        held.push(Client::open(&base(0), id, secret).await.unwrap());
    }
    let refused = Client::open(&base(1), id, secret).await.err().expect("the 51st, on the other node, is refused");
    assert_eq!((refused.status, refused.headers["handshake-status"].as_str()), (403, "514"));
    assert_eq!(refused.headers["handshake-autherrcode"], "1000040350");
    let listed = cluster.call(1, reqwest::Method::GET, "/_larkstack/connections", ADMIN, None).await;
    assert_eq!(listed["data"]["counts"][id], 50, "{listed}");
    // Node 1 lists node 0's connections (it holds none itself).
    let node0 = cluster.call(0, reqwest::Method::GET, "/_larkstack/connections", ADMIN, None).await["data"]["node"].clone();
    let items = listed["data"]["items"].as_array().unwrap();
    assert_eq!(items.len(), 50);
    assert!(items.iter().all(|c| c["node"] == node0), "{listed}");
    let gone = held.pop().unwrap();
    let r = cluster.call(0, reqwest::Method::DELETE, &format!("/_larkstack/connections/{}", gone.conn_id), ADMIN, None).await;
    assert_eq!(r["code"], 0, "{r}");
    let mut taken = None;
    for _ in 0..200 {
        if let Ok(c) = Client::open(&base(1), id, secret).await {
            taken = Some(c);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(taken.is_some(), "node 1 takes the freed slot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multinode_deliver_each_event_once_in_commit_order_per_chat() {
    use crate::webhooks::{counts_by_event_id, message_text, Answer, Receiver};
    let rx = Receiver::start("", Answer::Good).await;
    let fixture = larkstack::domain::directory::DEMO_FIXTURE
        .replace("key = \"demo-bot\"", &format!("key = \"demo-bot\"\nevent_url = \"{}\"\nencrypt_key = \"\"", rx.url));
    let c = Cluster::start(2, Some(&fixture), &["--rate-limits", "off"]);
    let token = c.token(0).await;
    let mut chats = Vec::new();
    for k in 0..3 {
        let created = c.call(k % 2, reqwest::Method::POST, "/open-apis/im/v1/chats", &token, Some(json!({"name": format!("c{k}")}))).await;
        let chat_id = created["data"]["chat_id"].as_str().unwrap().to_string();
        let joined = c.call(k % 2, reqwest::Method::POST, &format!("/_larkstack/chats/{chat_id}/join"), ADMIN, Some(json!({"user": "alice"}))).await;
        assert_eq!(joined["code"], 0, "{joined}");
        chats.push(chat_id);
    }
    // Messages go in through both nodes, alternately; both nodes deliver.
    let per_chat = 20;
    for i in 0..per_chat {
        for (k, chat_id) in chats.iter().enumerate() {
            let path = format!("/_larkstack/chats/{chat_id}/messages");
            let r = c.call((i + k) % 2, reqwest::Method::POST, &path, ADMIN, Some(json!({"user": "alice", "text": format!("{k}-{i}")}))).await;
            assert_eq!(r["code"], 0, "{r}");
        }
    }
    // 3 joins + 60 messages.
    rx.wait_events("", 3 + 3 * per_chat).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let events = rx.events("");
    let counts = counts_by_event_id(&events);
    assert_eq!(counts.len(), 3 + 3 * per_chat);
    assert!(counts.values().all(|&n| n == 1), "an event reached the receiver twice: {counts:?}");
    for (k, chat_id) in chats.iter().enumerate() {
        let texts: Vec<String> = events
            .iter()
            .filter(|(_, v)| v["header"]["event_type"] == "im.message.receive_v1" && v["event"]["message"]["chat_id"] == chat_id.as_str())
            .map(|(_, v)| message_text(v))
            .collect();
        assert_eq!(texts, (0..per_chat).map(|i| format!("{k}-{i}")).collect::<Vec<_>>(), "chat {k} in commit order");
    }
    // Both nodes list every attempt, and either can redeliver any event.
    let event_id = events[5].1["header"]["event_id"].as_str().unwrap().to_string();
    for node in 0..2 {
        let listed = c.call(node, reqwest::Method::GET, &format!("/_larkstack/deliveries?event_id={event_id}"), ADMIN, None).await;
        assert_eq!(listed["data"]["items"].as_array().unwrap().len(), 1, "node {node}: {listed}");
    }
    let r = c.call(1, reqwest::Method::POST, &format!("/_larkstack/events/{event_id}/redeliver"), ADMIN, None).await;
    assert_eq!(r["code"], 0, "{r}");
    for _ in 0..500 {
        if counts_by_event_id(&rx.events("")).get(&event_id) == Some(&2) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(counts_by_event_id(&rx.events("")).get(&event_id), Some(&2), "redelivered once, by one node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multinode_settings_put_on_one_node_apply_on_the_other_and_retries_follow_the_shared_clock() {
    use crate::webhooks::{Answer, Receiver};
    let rx = Receiver::start("", Answer::Good).await;
    let c = Cluster::start(2, None, &["--rate-limits", "off"]);
    c.clock(0, Some(json!({"freeze": true}))).await;
    let frozen = c.clock(0, None).await["now_ms"].as_i64().unwrap();
    c.wait_for_clock(frozen).await;
    let put = c
        .call(0, reqwest::Method::PUT, &format!("/_larkstack/apps/{DEMO_APP_ID}/events"), ADMIN, Some(json!({"event_url": rx.url, "encrypt_key": ""})))
        .await;
    assert_eq!(put["code"], 0, "{put}");
    let got = c.call(1, reqwest::Method::GET, &format!("/_larkstack/apps/{DEMO_APP_ID}/events"), ADMIN, None).await;
    assert_eq!(got["data"], put["data"]);
    *rx.fail_next.lock() = 1;
    let token = c.token(1).await;
    let created = c.call(1, reqwest::Method::POST, "/open-apis/im/v1/chats", &token, Some(json!({"name": "retry"}))).await;
    let chat_id = created["data"]["chat_id"].as_str().unwrap().to_string();
    let joined = c.call(1, reqwest::Method::POST, &format!("/_larkstack/chats/{chat_id}/join"), ADMIN, Some(json!({"user": "alice"}))).await;
    assert_eq!(joined["code"], 0, "{joined}");
    let first = rx.wait_events("", 1).await[0].1["header"]["event_id"].clone();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(rx.events("").len(), 1, "no retry before the clock says so");
    // The clock moves on node 0; whichever node claims the retry sends it, once.
    c.clock(0, Some(json!({"advance_ms": 15_000}))).await;
    let got = rx.wait_events("", 2).await;
    assert_eq!(got[1].1["header"]["event_id"], first);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(rx.events("").len(), 2);
}

/// A long-connection client on node 1 hears what is committed through node 0: only a node holding
/// one of the app's connections claims its deliveries, whichever node committed the event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multinode_an_event_committed_on_one_node_reaches_a_long_connection_on_the_other() {
    use crate::longconn::Client;
    let fixture = larkstack::domain::directory::DEMO_FIXTURE
        .replace("key = \"demo-bot\"", "key = \"demo-bot\"\nevent_mode = \"long_connection\"");
    let c = Cluster::start(2, Some(&fixture), &["--rate-limits", "off"]);
    let app = &demo_directory()["apps"].as_array().unwrap().iter().find(|a| a["key"] == "demo-bot").unwrap().clone();
    let (id, secret) = (app["app_id"].as_str().unwrap(), app["app_secret"].as_str().unwrap());
    let mut client = Client::open(&c.url(1, ""), id, secret).await.unwrap();
    let token = c.token(0).await;
    let created = c.call(0, reqwest::Method::POST, "/open-apis/im/v1/chats", &token, Some(json!({"name": "lc"}))).await;
    let chat_id = created["data"]["chat_id"].as_str().unwrap().to_string();
    for (i, user) in ["alice", "bob"].iter().enumerate() {
        let joined = c.call(0, reqwest::Method::POST, &format!("/_larkstack/chats/{chat_id}/join"), ADMIN, Some(json!({"user": user}))).await;
        assert_eq!(joined["code"], 0, "{joined}");
        let said = json!({"user": user, "text": format!("hello {i}")});
        let r = c.call(0, reqwest::Method::POST, &format!("/_larkstack/chats/{chat_id}/messages"), ADMIN, Some(said)).await;
        assert_eq!(r["code"], 0, "{r}");
    }
    // Two joins and two messages, in commit order, each once.
    let mut seen = Vec::new();
    for _ in 0..4 {
        let (event, last, _) = client.event().await;
        client.ack(&last, r#"{"code":200}"#, Some("1")).await;
        seen.push((event["header"]["event_type"].as_str().unwrap().to_string(), event["header"]["event_id"].as_str().unwrap().to_string()));
    }
    let types: Vec<&str> = seen.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(types, ["im.chat.member.user.added_v1", "im.message.receive_v1", "im.chat.member.user.added_v1", "im.message.receive_v1"]);
    // Node 0 lists the attempt node 1 made over its connection.
    let event_id = &seen[1].1;
    for _ in 0..200 {
        let listed = c.call(0, reqwest::Method::GET, &format!("/_larkstack/deliveries?event_id={event_id}"), ADMIN, None).await;
        if let Some(a) = listed["data"]["items"].as_array().and_then(|items| items.first().cloned()) {
            assert!(a["url"].as_str().unwrap().starts_with("longconn:"), "{a}");
            assert_eq!(a["delivered"], true, "{a}");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the attempt of {event_id} was not listed on node 0");
}

/// A card interactive demo-bot sent to a chat with alice and bob (through `node`).
async fn card_message(c: &Cluster, node: usize, token: &str) -> (String, String) {
    let dir = demo_directory();
    let members = json!([open_id(&dir, "alice"), open_id(&dir, "bob")]);
    let created = c.call(node, reqwest::Method::POST, "/open-apis/im/v1/chats", token, Some(json!({"name": "cards", "user_id_list": members}))).await;
    assert_eq!(created["code"], 0, "{created}");
    let chat_id = created["data"]["chat_id"].as_str().unwrap().to_string();
    let card = json!({"elements": [{"tag": "div", "text": {"tag": "plain_text", "content": "pick one"}}]}).to_string();
    let body = json!({"receive_id": chat_id, "msg_type": "interactive", "content": card});
    let sent = c.call(node, reqwest::Method::POST, "/open-apis/im/v1/messages?receive_id_type=chat_id", token, Some(body)).await;
    assert_eq!(sent["code"], 0, "{sent}");
    (chat_id, sent["data"]["message_id"].as_str().unwrap().to_string())
}

async fn card_content(c: &Cluster, node: usize, token: &str, message: &str) -> Value {
    let r = c.call(node, reqwest::Method::GET, &format!("/open-apis/im/v1/messages/{message}"), token, None).await;
    assert_eq!(r["code"], 0, "{r}");
    serde_json::from_str(r["data"]["items"][0]["body"]["content"].as_str().unwrap()).unwrap()
}

/// A click posted to node 1 reaches the app's long connection on node 0: node 1 asks node 0
/// through Redis, node 0 sends the frame and passes the ack back, node 1 applies the answer.
/// Unanswered within 3 s it is the ack timeout; with node 0 dead, no connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multinode_a_card_click_on_one_node_reaches_a_long_connection_on_the_other() {
    use crate::longconn::Client;
    use base64::Engine;
    use std::time::{Duration, Instant};
    let mut c = Cluster::start(2, None, &["--rate-limits", "off"]);
    let app = &demo_directory()["apps"].as_array().unwrap().iter().find(|a| a["key"] == "demo-bot").unwrap().clone();
    let (id, secret) = (app["app_id"].as_str().unwrap(), app["app_secret"].as_str().unwrap());
    let mut client = Client::open(&c.url(0, ""), id, secret).await.unwrap();
    let token = c.token(1).await;
    let (_, message) = card_message(&c, 1, &token).await;
    let settings = c.call(1, reqwest::Method::GET, &format!("/_larkstack/apps/{id}/events"), ADMIN, None).await;
    assert_eq!(settings["data"]["callback_url"], Value::Null, "{settings}");

    let answer = json!({"toast": {"type": "success", "content": "done"}, "card": {"type": "raw", "data": {"elements": [{"tag": "hr"}]}}});
    let data = base64::engine::general_purpose::STANDARD.encode(answer.to_string());
    let click = json!({"user": "bob", "action": {"value": {"n": 1}}});
    let path = format!("/_larkstack/messages/{message}/card_action");
    let (r, event) = tokio::join!(c.call(1, reqwest::Method::POST, &path, ADMIN, Some(click.clone())), async {
        let (v, frame, _) = client.event().await;
        assert_eq!(frame.header("type"), Some("event"));
        client.ack(&frame, &json!({"code": 200, "data": data}).to_string(), Some("2")).await;
        v
    });
    assert_eq!(r["code"], 0, "{r}");
    let d = &r["data"];
    assert_eq!(event["header"]["event_type"], "card.action.trigger");
    assert_eq!(event["event"]["token"], d["token"]);
    assert_eq!(event["event"]["action"]["value"], json!({"n": 1}));
    assert_eq!(d["error"], Value::Null, "{d}");
    assert_eq!(d["callback"]["route"], "long_connection");
    assert_eq!(d["callback"]["target"], format!("longconn:{}", client.conn_id));
    assert_eq!(d["callback"]["status"], 200);
    assert_eq!(d["toast"], answer["toast"]);
    assert_eq!(d["card_updated"], true, "{d}");
    for node in 0..2 {
        assert_eq!(card_content(&c, node, &token, &message).await, answer["card"]["data"], "node {node}");
    }
    // The client got the click once.
    assert!(!client.gets_a_frame_within(Duration::from_millis(500)).await, "a second frame after one click");

    // Not acked: after 3 s node 1 says so as for a connection of its own, and nothing changes.
    let start = Instant::now();
    let (r, _) = tokio::join!(c.call(1, reqwest::Method::POST, &path, ADMIN, Some(click.clone())), async {
        let (v, _, _) = client.event().await;
        assert_eq!(v["header"]["event_type"], "card.action.trigger");
    });
    let took = start.elapsed();
    assert_eq!(r["code"], 0, "{r}");
    assert_eq!(r["data"]["error"], "no ack within 3000 ms", "{r}");
    assert_eq!((r["data"]["card_updated"].clone(), r["data"]["toast"].clone()), (json!(false), Value::Null));
    assert!(took >= Duration::from_millis(2900) && took < Duration::from_millis(4000), "{took:?}");
    assert_eq!(card_content(&c, 1, &token, &message).await, answer["card"]["data"]);

    // Node 0 dies holding the connection (its slot outlives it in Redis): no connection, at once.
    c.nodes[0].take().unwrap().kill9();
    let start = Instant::now();
    let r = c.call(1, reqwest::Method::POST, &path, ADMIN, Some(click)).await;
    assert_eq!(r["data"]["error"], "the app has no callback_url and no long connection", "{r}");
    assert!(start.elapsed() < Duration::from_secs(1), "{:?}", start.elapsed());
}

/// Any node lists every node's connections and closes any of them: node 1 closes what node 0
/// holds (one by id, then the app's), and the clients see the close.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multinode_connections_are_listed_and_closed_through_any_node() {
    use crate::longconn::Client;
    use std::time::Duration;
    let c = Cluster::start(2, None, &[]);
    let app = &demo_directory()["apps"].as_array().unwrap().iter().find(|a| a["key"] == "demo-bot").unwrap().clone();
    let (id, secret) = (app["app_id"].as_str().unwrap(), app["app_secret"].as_str().unwrap());
    let mut first = Client::open(&c.url(0, ""), id, secret).await.unwrap();
    let mut second = Client::open(&c.url(0, ""), id, secret).await.unwrap();
    let on1 = Client::open(&c.url(1, ""), id, secret).await.unwrap();
    let node = |n: usize| {
        let c = &c;
        async move { c.call(n, reqwest::Method::GET, "/_larkstack/connections", ADMIN, None).await["data"].clone() }
    };
    let (node0, node1) = (node(0).await["node"].clone(), node(1).await["node"].clone());
    assert_ne!(node0, node1);
    for n in 0..2 {
        let listed = node(n).await;
        let mut held: Vec<(String, Value)> =
            listed["items"].as_array().unwrap().iter().map(|i| (i["conn_id"].as_str().unwrap().to_string(), i["node"].clone())).collect();
        held.sort_by(|a, b| a.0.cmp(&b.0));
        let mut want = vec![(first.conn_id.clone(), node0.clone()), (second.conn_id.clone(), node0.clone()), (on1.conn_id.clone(), node1.clone())];
        want.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(held, want, "node {n}: {listed}");
        assert_eq!(listed["counts"][id], 3);
        assert_eq!(listed["unanswered"], json!([]));
    }

    let r = c.call(1, reqwest::Method::DELETE, &format!("/_larkstack/connections/{}", first.conn_id), ADMIN, None).await;
    assert_eq!(r["code"], 0, "{r}");
    assert_eq!(r["data"], json!({"closed": [first.conn_id], "node": node0}));
    assert_eq!(first.close_code_within(Duration::from_secs(5)).await, 1000);
    let r = c.call(1, reqwest::Method::DELETE, "/_larkstack/connections/1234567890123456789", ADMIN, None).await;
    assert_eq!(r["code"], 404, "{r}");

    // The app's connections, on both nodes.
    let r = c.call(1, reqwest::Method::DELETE, &format!("/_larkstack/connections?app_id={id}"), ADMIN, None).await;
    assert_eq!(r["code"], 0, "{r}");
    assert_eq!(r["data"]["closed"], 2, "{r}");
    assert_eq!(r["data"]["nodes"], json!({node0.as_str().unwrap(): 1, node1.as_str().unwrap(): 1}), "{r}");
    assert_eq!(second.close_code_within(Duration::from_secs(5)).await, 1000);
    let mut on1 = on1;
    assert_eq!(on1.close_code_within(Duration::from_secs(5)).await, 1000);
    for _ in 0..200 {
        if node(1).await["items"] == json!([]) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the closed connections are still listed: {}", node(1).await);
}
