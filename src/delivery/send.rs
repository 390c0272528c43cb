//! One HTTP POST to a request URL: HTTP/1.1 with title-cased header names (the Python SDK reads
//! `X-Lark-Signature` from a case-sensitive dict), a deadline for the whole exchange. Connections
//! are kept alive and reused per host (one TCP handshake per receiver, not per event).

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

/// The receiver's answer, or why there was none.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `None`: no HTTP answer (connection refused, timeout, bad URL).
    pub status: Option<u16>,
    /// The response body (bounded), or the error.
    pub body: String,
    pub latency_ms: u64,
}

impl Outcome {
    pub fn delivered(&self) -> bool {
        matches!(self.status, Some(s) if (200..300).contains(&s))
    }
}

/// Bound on the response body kept per attempt.
pub const MAX_RESPONSE_BYTES: usize = 4096;

/// A delivery is answered within this, else it failed.
pub const TIMEOUT: Duration = Duration::from_secs(3);

pub async fn post(url: &str, headers: &[(&'static str, String)], body: Vec<u8>, timeout: Duration) -> Outcome {
    post_keeping(url, headers, body, timeout, MAX_RESPONSE_BYTES).await
}

/// `post`, keeping up to `max_body` bytes of the answer (a card callback's answer is a card).
pub async fn post_keeping(url: &str, headers: &[(&'static str, String)], body: Vec<u8>, timeout: Duration, max_body: usize) -> Outcome {
    let start = Instant::now();
    let result = tokio::time::timeout(timeout, exchange(url, headers, body, max_body)).await;
    let latency_ms = start.elapsed().as_millis() as u64;
    match result {
        Ok(Ok((status, body))) => Outcome { status: Some(status), body, latency_ms },
        Ok(Err(e)) => Outcome { status: None, body: e, latency_ms },
        Err(_) => Outcome { status: None, body: format!("no answer within {} ms", timeout.as_millis()), latency_ms },
    }
}

/// Idle connections are dropped after this: shorter than common servers' keep-alive timeouts
/// (Node's 5 s), so a connection is not reused just as the receiver closes it.
const POOL_IDLE: Duration = Duration::from_secs(2);

/// The process's one client: its pool keeps connections to receivers alive between deliveries.
static CLIENT: LazyLock<Client<HttpConnector, Full<Bytes>>> = LazyLock::new(|| {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).http1_title_case_headers(true).pool_idle_timeout(POOL_IDLE).build(connector)
});

async fn exchange(url: &str, headers: &[(&'static str, String)], body: Vec<u8>, max_body: usize) -> Result<(u16, String), String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err("only http:// request URLs are delivered to (no TLS client)".into());
    }
    if uri.host().is_none() {
        return Err("URL has no host".into());
    }
    let mut req = hyper::Request::post(uri)
        .header("Content-Type", "application/json; charset=utf-8")
        .header("User-Agent", "Feishu-Event-Dispatcher (larkstack)");
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let req = req.body(Full::new(Bytes::from(body))).map_err(|e| format!("request: {e}"))?;
    let resp = CLIENT.request(req).await.map_err(|e| format!("send: {}", error_chain(&e)))?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut kept = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("read: {e}"))?;
        if let Some(d) = frame.data_ref() {
            let room = max_body.saturating_sub(kept.len());
            kept.extend_from_slice(&d[..d.len().min(room)]);
        }
    }
    Ok((status, String::from_utf8_lossy(&kept).into_owned()))
}

/// The error and its causes ("connect: Connection refused" rather than "client error (Connect)").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
