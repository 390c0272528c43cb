//! The HTTP transport of the real binary, over raw TCP: Host check, console headers, hyper's
//! parse-error replies as envelopes, 413 to a client that writes its whole body first, the
//! connection cap and the header-read timeout.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

/// Generous: only a server that never answers reaches it.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

struct Raw {
    status: u16,
    head: String,
    body: Value,
}

impl Raw {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    fn assert_envelope(&self, status: u16) {
        assert_eq!(self.status, status, "{}\n{}", self.head, self.body);
        assert_eq!(self.header("content-type").as_deref(), Some("application/json; charset=utf-8"), "{}", self.head);
        assert_eq!(self.body["code"], status as i64, "{}", self.body);
        assert!(self.body["msg"].as_str().is_some_and(|m| !m.is_empty()), "{}", self.body);
        let log_id = self.body["error"]["log_id"].as_str().unwrap_or_default().to_string();
        assert_eq!(log_id.len(), 34, "{}", self.body);
        assert_eq!(self.header("x-tt-logid"), Some(log_id));
    }
}

fn addr(server: &Server) -> String {
    server.base.trim_start_matches("http://").to_string()
}

fn connect(server: &Server) -> TcpStream {
    let s = TcpStream::connect(addr(server)).unwrap();
    s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    s
}

/// Reads one reply: the head, then a `Content-Length` body (or up to EOF).
fn read_reply(s: &mut TcpStream) -> Raw {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).expect("reply");
        assert!(n > 0, "connection closed before a reply; got {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
    let mut raw = Raw { status, head, body: Value::Null };
    let mut body = buf[head_end..].to_vec();
    match raw.header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        Some(len) => {
            while body.len() < len {
                let n = s.read(&mut chunk).expect("body");
                assert!(n > 0, "connection closed inside the body");
                body.extend_from_slice(&chunk[..n]);
            }
            body.truncate(len);
        }
        None => {
            let _ = s.read_to_end(&mut body);
        }
    }
    raw.body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    raw
}

fn exchange(server: &Server, request: &[u8]) -> Raw {
    let mut s = connect(server);
    s.write_all(request).unwrap();
    read_reply(&mut s)
}

fn get_with_host(server: &Server, host: Option<&str>) -> Raw {
    get_path_with_host(server, "/healthz", host)
}

fn get_path_with_host(server: &Server, path: &str, host: Option<&str>) -> Raw {
    let req = match host {
        Some(h) => format!("GET {path} HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n"),
        None => format!("GET {path} HTTP/1.0\r\n\r\n"),
    };
    exchange(server, req.as_bytes())
}

/// GET /healthz until it answers 200; 503s (connection cap) are retried, up to a generous bound.
fn healthz_eventually(server: &Server) -> Raw {
    let deadline = Instant::now() + READ_TIMEOUT;
    loop {
        let r = get_with_host(server, Some("127.0.0.1"));
        if r.status != 503 || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn only_configured_hosts_are_answered() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::spawn(data.path(), None, &[]);
    let port = addr(&server).rsplit_once(':').unwrap().1.to_string();
    let coverage = |host: Option<&str>| get_path_with_host(&server, "/coverage", host);
    for ok in ["127.0.0.1", &format!("127.0.0.1:{port}"), "localhost:8080", "LocalHost", "[::1]:9", "console.localhost"] {
        assert_eq!(coverage(Some(ok)).status, 200, "{ok}");
    }
    // HTTP/1.0 without Host: no browser sends that, so it cannot be a rebound page.
    assert_eq!(coverage(None).status, 200);
    for bad in ["evil.example", &format!("evil.example:{port}"), "localhost.evil.example", "10.1.2.3"] {
        let r = coverage(Some(bad));
        r.assert_envelope(421);
        assert!(r.body["msg"].as_str().unwrap().contains("--public-host"), "{}", r.body);
    }
    // The console, the control API and the Feishu API are behind the same check.
    for path in ["/", "/console/app.js", "/_larkstack/directory", "/open-apis/im/v1/chats", "/metrics"] {
        get_path_with_host(&server, path, Some("evil.example")).assert_envelope(421);
    }
    // An absolute-form target names the host too.
    let r = exchange(&server, b"GET http://evil.example/coverage HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    r.assert_envelope(421);
    // Load balancers probe /healthz by the node's address: it says nothing but "up".
    assert_eq!(get_with_host(&server, Some("10.1.2.3:8080")).status, 200);
    drop(server);

    let data = tempfile::tempdir().unwrap();
    let server = Server::spawn(data.path(), None, &["--public-host", "lark.example.com,*.corp.test"]);
    let coverage = |host: Option<&str>| get_path_with_host(&server, "/coverage", host);
    assert_eq!(coverage(Some("lark.example.com:443")).status, 200);
    assert_eq!(coverage(Some("a.corp.test")).status, 200);
    assert_eq!(coverage(Some("localhost")).status, 200);
    coverage(Some("evil.example")).assert_envelope(421);
    drop(server);

    let data = tempfile::tempdir().unwrap();
    let server = Server::spawn(data.path(), None, &["--public-host", "*"]);
    assert_eq!(get_path_with_host(&server, "/coverage", Some("evil.example")).status, 200);
}

#[tokio::test]
async fn console_forbids_framing_and_foreign_content() {
    let app = TestApp::demo().await;
    for path in ["/", "/console/app.js", "/console/style.css"] {
        let req = axum::http::Request::get(path).body(axum::body::Body::empty()).unwrap();
        let r = tower::ServiceExt::oneshot(app.router.clone(), req).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let headers = r.headers();
        let csp = headers["content-security-policy"].to_str().unwrap();
        for directive in ["default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "object-src 'none'"] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["referrer-policy"], "no-referrer");
    }
    // The strict policy holds only if the console has no inline script or style.
    let html = include_str!("../../console/index.html");
    assert!(!html.contains("<script>") && !html.contains("<style") && !html.contains(" style="));
    assert!(!include_str!("../../console/app.js").contains("style: '"));
}

#[test]
fn unparsable_requests_get_envelopes() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::spawn(data.path(), None, &[]);
    exchange(&server, b"NOT AN HTTP REQUEST\r\n\r\n").assert_envelope(400);
    exchange(&server, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header Name: x\r\n\r\n").assert_envelope(400);
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "a".repeat(70_000));
    exchange(&server, long_uri.as_bytes()).assert_envelope(414);
    let big_header = format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {}\r\n\r\n", "a".repeat(200_000));
    exchange(&server, big_header.as_bytes()).assert_envelope(431);
    let mut many = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n".to_string();
    for i in 0..150 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    exchange(&server, many.as_bytes()).assert_envelope(431);
    // The server is fine afterwards.
    assert_eq!(get_with_host(&server, Some("127.0.0.1")).status, 200);
}

/// Like Python's `urllib`: the whole (oversized) body goes out before the reply is read.
#[test]
fn oversized_body_written_in_full_still_reads_the_413() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::spawn(data.path(), None, &[]);
    let body = vec![b'x'; 5 * 1024 * 1024];
    for path in ["/open-apis/im/v1/chats", "/open-apis/im/v1/messages?receive_id_type=chat_id"] {
        // Content-Length over the limit: refused before reading a byte.
        let mut s = connect(&server);
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer t-nope\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&body).expect("the server reads the body it refused");
        read_reply(&mut s).assert_envelope(413);

        // Chunked: refused once the limit is passed.
        let mut s = connect(&server);
        let head = format!("POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
        s.write_all(head.as_bytes()).unwrap();
        for chunk in body.chunks(64 * 1024) {
            s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).unwrap();
            s.write_all(chunk).expect("the server reads the body it refused");
            s.write_all(b"\r\n").unwrap();
        }
        s.write_all(b"0\r\n\r\n").unwrap();
        read_reply(&mut s).assert_envelope(413);
    }
    // Keep-alive: once the refused body is drained, the connection serves the next request.
    let mut s = connect(&server);
    let head = format!("POST /open-apis/im/v1/chats HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n", body.len());
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body).unwrap();
    read_reply(&mut s).assert_envelope(413);
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    assert_eq!(read_reply(&mut s).status, 200);
}

/// Half-open connections (a partial request line) up to the cap; the next connection gets a
/// JSON refusal, and the server answers again as soon as one is gone.
#[test]
fn connections_over_the_cap_are_refused_with_an_envelope() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::spawn(data.path(), None, &["--max-connections", "4", "--header-read-timeout", "600"]);
    let mut half_open: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = connect(&server);
            s.write_all(b"GET /heal").unwrap();
            s
        })
        .collect();
    let r = get_with_host(&server, Some("127.0.0.1"));
    r.assert_envelope(503);
    assert!(r.body["msg"].as_str().unwrap().contains("--max-connections"), "{}", r.body);
    // Over the cap even without sending anything: the refusal comes unasked.
    let mut silent = connect(&server);
    read_reply(&mut silent).assert_envelope(503);

    half_open.pop();
    assert_eq!(healthz_eventually(&server).status, 200);
}

/// A connection that never finishes its request head is closed after `--header-read-timeout`,
/// which frees its slot.
#[test]
fn half_open_connections_are_closed_after_the_header_read_timeout() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::spawn(data.path(), None, &["--max-connections", "4", "--header-read-timeout", "1"]);
    let mut half_open: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = connect(&server);
            s.write_all(b"POST /open-apis/im/v1/chats HTTP/1.1\r\nHost: 127.0.0.1\r\n").unwrap();
            s
        })
        .collect();
    for s in &mut half_open {
        let mut rest = Vec::new();
        // EOF (Ok) rather than the read timeout (Err): the server closed it.
        s.read_to_end(&mut rest).expect("the server closes a half-open connection");
    }
    assert_eq!(healthz_eventually(&server).status, 200);
    // An idle keep-alive connection is closed the same way.
    let mut s = connect(&server);
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    assert_eq!(read_reply(&mut s).status, 200);
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).expect("the server closes an idle connection");
    assert!(rest.is_empty());
}

/// The case: started with a soft `RLIMIT_NOFILE` of 256 (below the hard limit), the
/// server raises it, so 300 half-open connections leave `/healthz` answering at once.
#[cfg(target_os = "linux")]
#[test]
fn soft_fd_limit_is_raised_so_half_open_connections_do_not_starve_the_server() {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;

    let data = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_larkstack"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(data.path());
    // SAFETY: only getrlimit/setrlimit between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
            lim.rlim_cur = lim.rlim_max.min(256);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            Ok(())
        });
    }
    let mut child = cmd.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let base = lines
        .find_map(|l| l.unwrap().strip_prefix("larkstack listening on ").map(|u| u.trim().to_string()))
        .expect("server exited before listening");
    std::thread::spawn(move || for _ in lines {});
    let server = Server { child, base };

    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.child.id())).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert!(fields[4] == "unlimited" || fields[4].parse::<u64>().unwrap() > 512, "hard limit too low to tell: {line}");
    assert_eq!(fields[3], fields[4], "{line}");

    let _half_open: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut s = connect(&server);
            s.write_all(b"GET /heal").unwrap();
            s
        })
        .collect();
    assert_eq!(get_with_host(&server, Some("127.0.0.1")).status, 200);
}
