//! The router and the HTTP/1 server (title-case response headers, as the Python SDK's
//! case-sensitive header lookups need).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::api::{apaas, auth, bot, contact, custom_bot, im, longconn};
use crate::clock::Clock;
use crate::control;
use crate::metrics;
use crate::openapi;
use crate::envelope::{new_log_id, ApiError, LOG_ID};
use crate::error::{ServerErr, TransportErr};
use crate::state::AppState;
use crate::transport::{self, HostPolicy};

/// Every operation, registered once: the router and the OpenAPI document (with /coverage, built
/// from it) both come from here. Handlers sharing a path are registered together.
pub fn routes(state: Arc<AppState>) -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(openapi::with_trailing_slash(routes!(auth::tenant_access_token_internal)))
        .routes(openapi::with_trailing_slash(routes!(auth::app_access_token_internal)))
        .routes(routes!(auth::tenant_access_token))
        .routes(routes!(auth::app_access_token))
        .routes(routes!(auth::app_ticket_resend))
        .routes(routes!(im::chats::create, im::chats::list))
        .routes(routes!(im::chats::search))
        .routes(routes!(im::chats::get, im::chats::update, im::chats::delete))
        .routes(routes!(im::members::add, im::members::remove, im::members::list))
        .routes(routes!(im::members::is_in_chat))
        .routes(routes!(im::members::me_join))
        .routes(routes!(im::members::add_managers))
        .routes(routes!(im::members::delete_managers))
        .routes(routes!(im::messages::send, im::messages::list))
        .routes(routes!(im::media::upload_image))
        .routes(routes!(im::media::upload_file))
        .routes(routes!(im::media::download_image))
        .routes(routes!(im::media::download_file))
        .routes(routes!(im::media::message_resource))
        .routes(routes!(im::message_ops::get, im::message_ops::update, im::message_ops::patch, im::message_ops::delete))
        .routes(routes!(im::message_ops::reply))
        .routes(routes!(im::message_ops::forward))
        .routes(routes!(im::message_ops::read_users))
        .routes(routes!(im::reactions::create, im::reactions::list))
        .routes(routes!(im::reactions::delete))
        .routes(routes!(im::cards::update))
        .routes(routes!(bot::info))
        .routes(routes!(bot::application))
        .routes(routes!(contact::get))
        .routes(routes!(contact::batch))
        .routes(routes!(contact::batch_get_id))
        .routes(routes!(custom_bot::hook))
        .routes(routes!(apaas::chat_group))
        .routes(routes!(apaas::query))
        .routes(routes!(longconn::endpoint))
        .routes(routes!(longconn::connect))
        .routes(routes!(control::healthz))
        .routes(routes!(control::metrics))
        .merge(control::routes(state))
}

/// The whole HTTP surface; usable in-process from tests.
pub fn app(state: Arc<AppState>) -> Router {
    let weak = Arc::downgrade(&state);
    let delivery = crate::delivery::Ctx {
        store: state.store.clone(),
        clock: state.clock.clone(),
        metrics: state.metrics.clone(),
        directory: Arc::new(move || weak.upgrade().map(|s| s.directory())),
        outbox_bytes: state.outbox_bytes,
        longconn: state.longconn.clone(),
    };
    state.deliveries.start(delivery.clone());
    state.tickets.start(delivery, Arc::downgrade(&state.deliveries));
    // Events waiting for a long-connection app go as soon as one of its clients connects.
    let engine = Arc::downgrade(&state.deliveries);
    state.longconn.on_connect(Arc::new(move || {
        if let Some(e) = engine.upgrade() {
            e.wake();
        }
    }));
    // Other nodes reach this one's long connections (card clicks, closes, lists) through Redis.
    state.longconn.serve_peers();
    let (api, doc) = routes(state.clone()).split_for_parts();
    api.merge(openapi::publish(&doc))
        .merge(control::console::router())
        // Inside `track`, so a panicking handler is counted (code 1) like any other reply.
        .route_layer(tower_http::catch_panic::CatchPanicLayer::custom(panic_reply))
        .route_layer(middleware::from_fn_with_state(state.metrics.clone(), metrics::track))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panic_reply))
        .layer(middleware::from_fn_with_state(state.clone(), control::intercept::intercept))
        .layer(middleware::from_fn_with_state(state.clone(), log_id_layer))
        .with_state(state)
}

/// Gives every request a log id, visible to the handler and returned as `X-Tt-Logid`.
async fn log_id_layer(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let log_id = new_log_id(state.clock.now_ms());
    let mut resp = LOG_ID.scope(log_id.clone(), next.run(req)).await;
    if let Ok(v) = HeaderValue::from_str(&log_id) {
        resp.headers_mut().insert("x-tt-logid", v);
    }
    resp
}

async fn not_found(State(state): State<Arc<AppState>>, req: Request) -> Response {
    state.metrics.observe("unmatched", req.method().as_str(), 404, 0.0);
    let path = req.uri().path().to_string();
    let msg = if path.starts_with("/open-apis/") {
        format!("{} {path} is not implemented by larkstack", req.method())
    } else {
        format!("404 page not found: {path}")
    };
    ApiError::Feishu(TransportErr::NotFound.with_msg(msg)).into_response()
}

async fn method_not_allowed(State(state): State<Arc<AppState>>, req: Request) -> Response {
    state.metrics.observe("unmatched", req.method().as_str(), 405, 0.0);
    let msg = format!("method {} is not allowed on {}", req.method(), req.uri().path());
    ApiError::Feishu(TransportErr::MethodNotAllowed.with_msg(msg)).into_response()
}

fn panic_reply(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    ApiError::Feishu(ServerErr::Internal.err()).into_response()
}

#[derive(Debug)]
struct FaultDrop;

impl std::fmt::Display for FaultDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by a larkstack fault")
    }
}

impl std::error::Error for FaultDrop {}

/// How the HTTP transport guards itself (see `transport`).
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// For the log ids of replies made outside the router.
    pub clock: Arc<Clock>,
    /// The `Host` names answered (DNS-rebinding guard).
    pub hosts: HostPolicy,
    /// Connections served at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// A connection that does not deliver a whole request head this long after it opened or
    /// went idle (keep-alive) is closed: the header-read and the idle timeout.
    pub header_read_timeout: Duration,
}

impl ServeOptions {
    /// No host check, the default cap and timeout.
    pub fn new(clock: Arc<Clock>) -> Self {
        ServeOptions {
            clock,
            hosts: HostPolicy::any(),
            max_connections: transport::DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: transport::DEFAULT_HEADER_READ_TIMEOUT,
        }
    }
}

/// Serves `router` on `listener` until the process ends.
pub async fn serve(listener: TcpListener, router: Router, options: ServeOptions) -> std::io::Result<()> {
    let ServeOptions { clock, hosts, max_connections, header_read_timeout } = options;
    let hosts = Arc::new(hosts);
    let connections = Arc::new(Semaphore::new(max_connections));
    let refusals = Arc::new(Semaphore::new(transport::MAX_LINGERING_REFUSALS));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .title_case_headers(true)
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(transport::MAX_HEAD_BYTES)
        // Flattened writes: see `transport::EnvelopeErrors`.
        .writev(false);
    let builder = Arc::new(builder);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            // Over the cap: a clear refusal rather than a connection left waiting.
            let reply = transport::raw_reply(&clock, transport::over_capacity(max_connections));
            match refusals.clone().try_acquire_owned() {
                Ok(lingering) => {
                    tokio::spawn(async move {
                        transport::refuse(stream, reply).await;
                        drop(lingering);
                    });
                }
                Err(_) => {
                    let _ = stream.try_write(&reply);
                }
            }
            continue;
        };
        let router = router.clone();
        let (clock, hosts) = (clock.clone(), hosts.clone());
        let io_clock = clock.clone();
        // A reply marked `DropConnection` (fault injection) closes the connection unanswered.
        let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let (router, clock, hosts) = (router.clone(), clock.clone(), hosts.clone());
            let mut req = req;
            // The peer's address, for the long-connection listing.
            req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            async move {
                if let Some(host) = hosts.refused(&req) {
                    return Ok(transport::transport_error(&clock, transport::host_refusal(&host)));
                }
                // A client waiting for `100 Continue` sends no body unless asked: nothing to drain.
                let expects_continue = req.headers().contains_key(axum::http::header::EXPECT);
                let leftover = transport::Leftover::default();
                let mut req = req.map(|b| axum::body::Body::new(transport::TrackedBody::new(b, leftover.clone())));
                req.extensions_mut().insert(transport::PeerAddr(peer));
                let resp = match tower::ServiceExt::oneshot(router, req).await {
                    Ok(resp) => resp,
                    Err(never) => match never {},
                };
                if resp.extensions().get::<control::intercept::DropConnection>().is_some() {
                    return Err(FaultDrop);
                }
                let unread = leftover.lock().take();
                if let Some(body) = unread.filter(|_| !expects_continue) {
                    tokio::spawn(transport::drain(body));
                }
                Ok(resp)
            }
        });
        let builder = builder.clone();
        tokio::spawn(async move {
            let io = transport::EnvelopeErrors::new(stream, io_clock);
            // With upgrades: the long connection's WebSocket takes the connection over (and
            // leaves the connection cap, its own caps apply: `longconn::MAX_CONNECTIONS`).
            let _ = builder.serve_connection(TokioIo::new(io), service).with_upgrades().await;
            drop(permit);
        });
    }
}
