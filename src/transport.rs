//! The HTTP transport's guards, below the router: which `Host` names are served (DNS rebinding),
//! replies hyper would otherwise send bare (malformed request line, 414, 431) and the over-capacity
//! refusal as Feishu envelopes, unread request bodies drained so a client that writes its whole
//! body before reading still sees the reply, and the file-descriptor limit.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::http::{HeaderValue, Request};
use axum::response::{IntoResponse, Response};
use axum::body::Bytes;
use futures_util::FutureExt;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::clock::Clock;
use crate::envelope::{new_log_id, ApiError, LOG_ID};
use crate::error::{FeishuError, TransportErr};

/// Connections served at once when `--max-connections` is not given (and the fd limit allows).
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// File descriptors kept back from the connection cap for the store, Redis, files and refusals.
const FD_RESERVE: u64 = 256;
/// Default `--header-read-timeout`.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(20);
/// The largest request head (request line and headers) read before answering 431.
pub const MAX_HEAD_BYTES: usize = 128 * 1024;
/// How much of an unread request body is read and discarded after the reply, and for how long.
pub const DRAIN_MAX_BYTES: usize = 16 * 1024 * 1024;
pub const DRAIN_MAX_TIME: Duration = Duration::from_secs(10);
/// Over-capacity refusals that may linger at once (write the reply, read what the client sent).
pub const MAX_LINGERING_REFUSALS: usize = 256;

// ---------------------------------------------------------------------------------------------
// Host names

/// One accepted `Host`: a name or IP literal (`[…]` for IPv6), optionally `*.`-prefixed to
/// accept every subdomain, optionally with the one port it is accepted on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostPattern {
    host: String,
    subdomains: bool,
    port: Option<u16>,
}

impl HostPattern {
    fn parse(entry: &str) -> Option<HostPattern> {
        let (host, port) = split_host_port(entry)?;
        let host = host.to_ascii_lowercase();
        match host.strip_prefix("*.") {
            Some(rest) if !rest.is_empty() => Some(HostPattern { host: rest.to_string(), subdomains: true, port }),
            _ => Some(HostPattern { host, subdomains: false, port }),
        }
    }

    /// Whether `host` (any case) and `port` are accepted.
    fn matches(&self, host: &str, port: Option<u16>) -> bool {
        if self.port.is_some() && self.port != port {
            return false;
        }
        let (host, name) = (host.as_bytes(), self.host.as_bytes());
        if self.subdomains {
            host.len() > name.len() + 1
                && host[host.len() - name.len()..].eq_ignore_ascii_case(name)
                && host[host.len() - name.len() - 1] == b'.'
        } else {
            host.eq_ignore_ascii_case(name)
        }
    }
}

/// `Host` value → (host without a trailing dot, in the case given; port). `None` when it is not
/// a host. Borrowed: every request's `Host` goes through here.
fn split_host_port(value: &str) -> Option<(&str, Option<u16>)> {
    let value = value.trim();
    let (host, port) = if value.starts_with('[') {
        let end = value.find(']')?;
        let (host, rest) = value.split_at(end + 1);
        match rest {
            "" => (host, None),
            _ => (host, Some(rest.strip_prefix(':')?.parse().ok()?)),
        }
    } else {
        match value.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => (host, Some(port.parse().ok()?)),
            Some(_) => return None,
            None => (value, None),
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    (!host.is_empty()).then_some((host, port))
}

/// Which `Host` names the server answers (the DNS-rebinding guard).
#[derive(Debug, Clone)]
pub struct HostPolicy {
    /// `None`: any host (`--public-host '*'`).
    allowed: Option<Vec<HostPattern>>,
}

impl HostPolicy {
    /// Loopback names (`localhost`, `*.localhost`, `127.0.0.1`, `[::1]`) on any port, the listen
    /// address's IP when it is not a wildcard, and the `--public-host` entries (`*`: any host).
    pub fn new(public_hosts: &[String], listen: SocketAddr) -> Result<HostPolicy, String> {
        let mut allowed: Vec<HostPattern> = ["localhost", "*.localhost", "127.0.0.1", "[::1]"]
            .iter()
            .filter_map(|h| HostPattern::parse(h))
            .collect();
        if !listen.ip().is_unspecified() {
            let ip = match listen.ip() {
                IpAddr::V4(ip) => ip.to_string(),
                IpAddr::V6(ip) => format!("[{ip}]"),
            };
            allowed.extend(HostPattern::parse(&ip));
        }
        for entry in public_hosts.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            if entry == "*" {
                return Ok(HostPolicy::any());
            }
            allowed.push(HostPattern::parse(entry).ok_or_else(|| format!("--public-host: {entry:?} is not a host name"))?);
        }
        Ok(HostPolicy { allowed: Some(allowed) })
    }

    /// No check at all.
    pub fn any() -> HostPolicy {
        HostPolicy { allowed: None }
    }

    pub fn checks(&self) -> bool {
        self.allowed.is_some()
    }

    fn allows(&self, value: &str) -> bool {
        let Some(allowed) = &self.allowed else { return true };
        split_host_port(value).is_some_and(|(host, port)| allowed.iter().any(|p| p.matches(host, port)))
    }

    /// The refused host of a request, if any: every `Host` header and an absolute-form target's
    /// authority must be accepted. A request without either (HTTP/1.0) passes: browsers always
    /// send `Host`, so it cannot come from a rebound web page. `/healthz` passes too: load
    /// balancers probe it by the node's IP, and it tells nothing but "up".
    pub fn refused<B>(&self, req: &Request<B>) -> Option<String> {
        if self.allowed.is_none() || req.uri().path() == "/healthz" {
            return None;
        }
        let authority = req.uri().authority().map(|a| std::borrow::Cow::Borrowed(a.as_str()));
        let headers = req.headers().get_all(axum::http::header::HOST).iter().map(|v| String::from_utf8_lossy(v.as_bytes()));
        authority.into_iter().chain(headers).find(|h| !self.allows(h)).map(std::borrow::Cow::into_owned)
    }
}

/// The reply to a refused `Host`.
pub fn host_refusal(host: &str) -> FeishuError {
    TransportErr::MisdirectedHost.with_msg(
        format!(
            "host {host:?} is not served by this larkstack: it answers loopback names and the hosts given with --public-host (LARKSTACK_PUBLIC_HOST)"
        ),
    )
}

// ---------------------------------------------------------------------------------------------
// Envelopes outside the router

/// A Feishu error envelope with its own log id (in the body and `X-Tt-Logid`), for replies made
/// before or without the router.
pub fn transport_error(clock: &Clock, err: FeishuError) -> Response {
    let log_id = new_log_id(clock.now_ms());
    let mut resp = LOG_ID.sync_scope(log_id.clone(), || ApiError::Feishu(err).into_response());
    if let Ok(v) = HeaderValue::from_str(&log_id) {
        resp.headers_mut().insert("x-tt-logid", v);
    }
    resp
}

/// `content-type` → `Content-Type`, as the server's other replies spell headers.
fn title_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper { c.to_ascii_uppercase() } else { c });
        upper = c == '-';
    }
    out
}

/// [`transport_error`] as the bytes of a whole HTTP/1.1 reply that closes the connection.
pub fn raw_reply(clock: &Clock, err: FeishuError) -> Vec<u8> {
    let (parts, body) = transport_error(clock, err).into_parts();
    let body = body
        .collect()
        .now_or_never()
        .and_then(Result::ok)
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        parts.status.as_str(),
        parts.status.canonical_reason().unwrap_or("")
    )
    .into_bytes();
    for (name, value) in &parts.headers {
        out.extend_from_slice(title_case(name.as_str()).as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(&body);
    out
}

/// The refusal of a connection over `--max-connections`.
pub fn over_capacity(max: usize) -> FeishuError {
    TransportErr::ServerBusy.with_msg(
        format!("server busy: all {max} connections are in use (--max-connections); retry later"),
    )
}

/// Answers a connection over the cap and closes it: the reply, then (lingering, bounded) what the
/// client sent, so closing does not reset the connection before the client reads the reply.
pub async fn refuse(mut stream: TcpStream, reply: Vec<u8>) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        stream.write_all(&reply).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut seen = 0;
        while seen < 64 * 1024 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => seen += n,
            }
        }
        io::Result::Ok(())
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// hyper's own error replies

/// The status of hyper's own bare reply to a request it could not parse, when `head` is exactly
/// one: `HTTP/1.1 400|414|431 …` with only `Connection`, `Content-Length: 0` and `Date`. Every
/// reply of the router carries `Content-Type` and `X-Tt-Logid`, so none of them matches.
fn hyper_error_status(head: &[u8]) -> Option<u16> {
    if head.len() > HYPER_ERROR_MAX || !head.starts_with(HYPER_ERROR_PREFIX) {
        return None;
    }
    let text = std::str::from_utf8(head).ok()?.strip_suffix("\r\n\r\n")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next()?.strip_prefix("HTTP/1.1 ")?;
    let status: u16 = status_line.get(..3)?.parse().ok()?;
    if ![400, 414, 431].contains(&status) {
        return None;
    }
    for line in lines {
        let (name, value) = line.split_once(':')?;
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" if value.trim() == "0" => {}
            "connection" | "date" => {}
            _ => return None,
        }
    }
    Some(status)
}

const HYPER_ERROR_PREFIX: &[u8] = b"HTTP/1.1 4";
/// hyper's bare error reply is well under this (status line, three short headers).
const HYPER_ERROR_MAX: usize = 256;

/// Where in `buf` hyper's bare error reply starts (it is always the last thing written): only
/// the last [`HYPER_ERROR_MAX`] bytes are looked at, so large replies cost nothing.
fn find_hyper_error(buf: &[u8]) -> Option<(usize, u16)> {
    let from = buf.len().saturating_sub(HYPER_ERROR_MAX);
    // Only where the status line's prefix occurs: every reply's last bytes are searched.
    memchr::memmem::find_iter(&buf[from..], HYPER_ERROR_PREFIX)
        .find_map(|i| hyper_error_status(&buf[from + i..]).map(|s| (from + i, s)))
}

/// The envelope for a request hyper rejected while parsing it.
pub fn parse_error(status: u16) -> FeishuError {
    match status {
        414 => TransportErr::UriTooLong.err(),
        431 => TransportErr::HeadTooLarge.with_msg(format!("request header fields too large: the request head exceeds {MAX_HEAD_BYTES} bytes or 100 headers")),
        _ => TransportErr::MalformedRequest.err(),
    }
}

/// The connection's IO, with hyper's bare replies to unparsable requests (400, 414, 431)
/// replaced by Feishu envelopes; everything else passes through.
pub struct EnvelopeErrors<S> {
    inner: S,
    clock: Arc<Clock>,
    replacement: Option<Replacement>,
}

struct Replacement {
    bytes: Vec<u8>,
    written: usize,
    /// How much of hyper's buffer the replacement stands for.
    claims: usize,
}

impl<S> EnvelopeErrors<S> {
    pub fn new(inner: S, clock: Arc<Clock>) -> Self {
        EnvelopeErrors { inner, clock, replacement: None }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for EnvelopeErrors<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for EnvelopeErrors<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.replacement.is_none() {
            match find_hyper_error(buf) {
                None => return Pin::new(&mut this.inner).poll_write(cx, buf),
                Some((start, _)) if start > 0 => return Pin::new(&mut this.inner).poll_write(cx, &buf[..start]),
                Some((_, status)) => {
                    let bytes = raw_reply(&this.clock, parse_error(status));
                    this.replacement = Some(Replacement { bytes, written: 0, claims: buf.len() });
                }
            }
        }
        let r = this.replacement.as_mut().expect("set above");
        while r.written < r.bytes.len() {
            let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &r.bytes[r.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            r.written += n;
        }
        let claims = r.claims.min(buf.len());
        this.replacement = None;
        Poll::Ready(Ok(claims))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    // Not vectored: hyper then hands every reply over in one buffer, where its bare error reply
    // can be recognised.
}

// ---------------------------------------------------------------------------------------------
// Unread request bodies

/// Slot for the part of a request body the handler did not read.
pub type Leftover = Arc<Mutex<Option<Incoming>>>;

/// A request body that, when dropped unfinished, leaves the rest in its [`Leftover`] slot.
pub struct TrackedBody {
    inner: Option<Incoming>,
    leftover: Leftover,
}

impl TrackedBody {
    pub fn new(inner: Incoming, leftover: Leftover) -> Self {
        TrackedBody { inner: Some(inner), leftover }
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.inner.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map(Body::size_hint).unwrap_or_else(|| SizeHint::with_exact(0))
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        if let Some(body) = self.inner.take().filter(|b| !b.is_end_stream()) {
            *self.leftover.lock() = Some(body);
        }
    }
}

/// Reads and discards the rest of a request body after its reply, up to [`DRAIN_MAX_BYTES`] or
/// [`DRAIN_MAX_TIME`]: a client that writes the whole body before reading (Python's `urllib`)
/// then reads the reply instead of a reset connection.
pub async fn drain(mut body: Incoming) {
    let _ = tokio::time::timeout(DRAIN_MAX_TIME, async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len());
            if seen > DRAIN_MAX_BYTES {
                break;
            }
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// File descriptors

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; the soft limit in force afterwards.
#[cfg(unix)]
pub fn raise_fd_limit() -> Option<u64> {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
        #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every target
        Some(lim.rlim_cur as u64)
    }
}

#[cfg(not(unix))]
pub fn raise_fd_limit() -> Option<u64> {
    None
}

/// The connection cap when none is given: [`DEFAULT_MAX_CONNECTIONS`], or fewer when the fd
/// limit would not leave room for the store and the rest.
pub fn default_max_connections(fd_limit: Option<u64>) -> usize {
    match fd_limit {
        Some(fds) => (fds.saturating_sub(FD_RESERVE) as usize).clamp(32, DEFAULT_MAX_CONNECTIONS),
        None => DEFAULT_MAX_CONNECTIONS,
    }
}

/// The address a request's connection came from: `server::serve` puts it on every request. A
/// request that came another way (in-process tests) has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub std::net::SocketAddr);

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(public: &[&str], listen: &str) -> HostPolicy {
        HostPolicy::new(&public.iter().map(|s| s.to_string()).collect::<Vec<_>>(), listen.parse().unwrap()).unwrap()
    }

    #[test]
    fn loopback_names_on_any_port_by_default() {
        let p = policy(&[], "0.0.0.0:8080");
        for ok in ["localhost", "LOCALHOST:8080", "127.0.0.1:1", "[::1]:9", "[::1]", "app.localhost:3000", "localhost.", "App.LocalHost", "éé.localhost"] {
            assert!(p.allows(ok), "{ok}");
        }
        for bad in ["evil.com", "evil.com:8080", "localhost.evil.com", "127.0.0.2", "0.0.0.0:8080", "", "[::1", "a:b:c", "éélocalhost"] {
            assert!(!p.allows(bad), "{bad}");
        }
    }

    #[test]
    fn listen_ip_and_public_hosts() {
        let p = policy(&["Lark.Example.com", "*.CORP.test", "gw.test:8443"], "10.0.0.5:8080");
        for ok in ["10.0.0.5:8080", "lark.example.com", "a.corp.test:1", "b.a.Corp.Test", "gw.test:8443"] {
            assert!(p.allows(ok), "{ok}");
        }
        for bad in ["corp.test", "gw.test", "gw.test:80", "example.com"] {
            assert!(!p.allows(bad), "{bad}");
        }
        assert!(!policy(&["*"], "0.0.0.0:1").checks());
        assert!(HostPolicy::new(&["a:b:c".into()], "0.0.0.0:1".parse().unwrap()).is_err());
    }

    #[test]
    fn recognises_only_hypers_bare_error_replies() {
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\nDate: Sun, 29 Nov 2026 06:54:00 GMT\r\n\r\n";
        assert_eq!(find_hyper_error(bare), Some((0, 431)));
        let mut after = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec();
        after.extend_from_slice(bare);
        assert_eq!(find_hyper_error(&after), Some((after.len() - bare.len(), 431)));
        let ours = b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(find_hyper_error(ours), None);
        assert_eq!(find_hyper_error(b"HTTP/1.1 100 Continue\r\n\r\n"), None);
    }

    #[test]
    fn raw_reply_is_an_envelope() {
        let bytes = raw_reply(&Clock::default(), parse_error(414));
        let text = String::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{head}");
        assert!(head.contains("Content-Type: application/json; charset=utf-8"), "{head}");
        assert!(head.contains(&format!("Content-Length: {}", body.len())), "{head}");
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["code"], 414);
        assert_eq!(v["error"]["log_id"].as_str().unwrap().len(), 34);
    }
}
