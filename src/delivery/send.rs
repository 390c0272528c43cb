//! One HTTP POST to a request URL: HTTP/1.1 with title-cased header names (the Python SDK reads
//! `X-Lark-Signature` from a case-sensitive dict), a deadline for the whole exchange.

use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;

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

async fn exchange(url: &str, headers: &[(&'static str, String)], body: Vec<u8>, max_body: usize) -> Result<(u16, String), String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err("only http:// request URLs are delivered to (no TLS client)".into());
    }
    let host = uri.host().ok_or("URL has no host")?.to_string();
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(|e| format!("connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .title_case_headers(true)
        .handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let authority = uri.authority().map(|a| a.to_string()).unwrap_or(host);
    let mut req = hyper::Request::post(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header("Host", authority)
        .header("Content-Type", "application/json; charset=utf-8")
        .header("User-Agent", "Feishu-Event-Dispatcher (larkstack)");
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let req = req.body(Full::new(Bytes::from(body))).map_err(|e| format!("request: {e}"))?;
    let resp = sender.send_request(req).await.map_err(|e| format!("send: {e}"))?;
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
