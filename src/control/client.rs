//! `larkstack state export|import`: the control API's state stream from the command line, to a
//! running server. Both directions stream between the file (or stdin/stdout) and the server, so
//! a state of any size passes through in constant memory.

use std::io::{Read, Write};
use std::path::Path;

use axum::body::Bytes;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper::client::conn::http1;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;

type Result<T> = std::result::Result<T, String>;

/// Where the server is and how to get in.
pub struct Target {
    /// `http://host:port` (a path after it is ignored).
    pub url: String,
    pub admin_token: String,
}

impl Target {
    fn authority(&self) -> Result<String> {
        let rest = self
            .url
            .strip_prefix("http://")
            .ok_or_else(|| format!("--url: expected http://host:port, got {:?}", self.url))?;
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() {
            return Err(format!("--url: no host in {:?}", self.url));
        }
        Ok(if authority.contains(':') { authority.to_string() } else { format!("{authority}:80") })
    }

    async fn send<B>(&self, request: hyper::http::request::Builder, body: B) -> Result<hyper::Response<hyper::body::Incoming>>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let authority = self.authority()?;
        let stream = tokio::net::TcpStream::connect(&authority).await.map_err(|e| format!("{}: {e}", self.url))?;
        let (mut sender, connection) = http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("{}: {e}", self.url))?;
        tokio::spawn(connection);
        let request = request
            .header(HOST, authority)
            .header(AUTHORIZATION, format!("Bearer {}", self.admin_token))
            .body(body)
            .map_err(|e| e.to_string())?;
        sender.send_request(request).await.map_err(|e| format!("{}: {e}", self.url))
    }
}

/// The admin token: the one given, else the data dir's `admin-token` file.
pub fn admin_token(given: Option<String>, data_dir: &Path) -> Result<String> {
    if let Some(t) = given.filter(|t| !t.trim().is_empty()) {
        return Ok(t.trim().to_string());
    }
    let file = data_dir.join("admin-token");
    std::fs::read_to_string(&file)
        .map(|t| t.trim().to_string())
        .map_err(|e| format!("no --admin-token, and {} is unreadable ({e})", file.display()))
}

/// What an error reply says (its Feishu envelope's `msg`, else the body as text).
async fn error_of(response: hyper::Response<hyper::body::Incoming>) -> String {
    let status = response.status();
    let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let msg = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["msg"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    format!("the server answered {status}: {msg}")
}

/// `GET /_larkstack/state` into `out` (a file; stdout when `None` or `-`). Returns the bytes written.
pub async fn export(target: &Target, out: Option<&Path>) -> Result<u64> {
    let response = target.send(Request::get("/_larkstack/state"), Empty::<Bytes>::new()).await?;
    if !response.status().is_success() {
        return Err(error_of(response).await);
    }
    let mut writer: Box<dyn Write> = match out.filter(|p| p.as_os_str() != "-") {
        Some(path) => Box::new(std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut body = response.into_body();
    let mut written = 0u64;
    let mut tail: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("the export broke off: {e}"))?;
        if let Ok(data) = frame.into_data() {
            writer.write_all(&data).map_err(|e| e.to_string())?;
            written += data.len() as u64;
            tail.extend_from_slice(&data[data.len().saturating_sub(256)..]);
            tail.drain(..tail.len().saturating_sub(256));
        }
    }
    writer.flush().map_err(|e| e.to_string())?;
    let last = tail.trim_ascii_end().rsplit(|b| *b == b'\n').next().unwrap_or_default();
    if !last.starts_with(b"{\"end\":") {
        return Err("the export ended without its end line".into());
    }
    Ok(written)
}

/// `PUT /_larkstack/state` from `input` (a file; stdin when `None` or `-`). Returns the number
/// of records the server stored.
pub async fn import(target: &Target, input: Option<&Path>) -> Result<u64> {
    let mut reader: Box<dyn Read + Send> = match input.filter(|p| p.as_os_str() != "-") {
        Some(path) => Box::new(std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?),
        None => Box::new(std::io::stdin()),
    };
    let (chunks, received) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    std::thread::spawn(move || loop {
        let mut buf = vec![0u8; 256 << 10];
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                buf.truncate(n);
                if chunks.blocking_send(Ok(Bytes::from(buf))).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                let _ = chunks.blocking_send(Err(e));
                break;
            }
        }
    });
    let frames = futures_util::stream::unfold(received, |mut received| async move {
        let chunk = received.recv().await?;
        Some((chunk.map(Frame::data), received))
    });
    let request = Request::put("/_larkstack/state").header(CONTENT_TYPE, "application/x-ndjson");
    let response = target.send(request, StreamBody::new(frames)).await?;
    if !response.status().is_success() {
        return Err(error_of(response).await);
    }
    let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    let reply: serde_json::Value = serde_json::from_slice(&body).map_err(|e| format!("the server's reply: {e}"))?;
    Ok(reply["data"]["records"].as_u64().unwrap_or(0))
}
