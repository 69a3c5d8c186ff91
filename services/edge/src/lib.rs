//! `weir-edge`: the HTTP API, WebSocket and SSE in front of the bus. Edges
//! are stateless — any edge serves any session at any time — so a client
//! that loses its node reconnects to another with its last seq.
//!
//! - [`config`]: flags and environment.
//! - [`api`], [`sse`]: the endpoints; [`error`]: their error type.
//! - [`auth`]: session tokens, checked with the secrets and [`jwks`], the
//!   identity provider's cached key set.
//! - [`sessions`]: auth, session view, resume checks and control;
//!   [`inputs`]: answers to a session's open `input_request`;
//!   [`rebuild`]: a session's state from its log alone.
//! - [`hub`]: one upstream feed per session per node, fanned out.
//! - [`pages`]: a session's shared, byte-bounded cache of log pages.
//! - [`subscription`]: a subscriber's cursor over ring, cache and log.
//! - [`websocket`]: the WebSocket endpoint; a connection (buffer,
//!   watermarks, coalescing, heartbeats, write timeout, drain); the upgrade
//!   and the frame codec, writing shared frames without a copy.
//! - [`frontends`]: the AI SDK UI message stream and AG-UI, encoders over
//!   the same subscription.
//! - [`threads`]: threads of runs (protocol.md §9) and what the front ends
//!   call to start and find a thread's runs; [`launch`]: a new session's
//!   state write and warm feed, then its run request.
//!
//! - [`serve`]: the HTTP/1 server under the router: header and socket
//!   write timeouts, client addresses, graceful shutdown.
//!
//! [`run`] is what the binary and the tests call.

// The crate's docs describe its private modules (its layout) too.
#![allow(rustdoc::private_intra_doc_links)]

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use weir_bus::Bus;
use weir_protocol::ControlOp;
use weir_store::SessionStore;
use weir_telemetry::names;

mod access;
pub mod api;
pub(crate) mod auth;
pub mod config;
mod delivery;
pub(crate) mod error;
mod expiry;
pub mod frames;
pub(crate) mod frontends;
pub(crate) mod hub;
pub(crate) mod inputs;
pub(crate) mod jwks;
pub(crate) mod launch;
pub(crate) mod limits;
pub(crate) mod operators;
pub mod pages;
pub mod reach;
pub(crate) mod rebuild;
mod request;
pub mod ring;
pub(crate) mod serve;
pub(crate) mod sessions;
pub(crate) mod sse;
pub(crate) mod subscription;
pub(crate) mod threads;
pub mod websocket;

pub use config::EdgeConfig;

/// Everything a request handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: EdgeConfig,
    pub node: String,
    pub bus: Bus,
    pub store: Arc<dyn SessionStore>,
    pub hub: hub::Hub,
    pub auth: auth::Auth,
    pub permits: Arc<Semaphore>,
    /// Cancelled when the node starts draining.
    pub drain: CancellationToken,
    /// Cancelled while the node is cut off from the log.
    pub cut_off: reach::CutOff,
    /// Operators' notices, relayed from the bus to this node's connections.
    pub notices: tokio::sync::broadcast::Sender<operators::Relayed>,
    pub started: std::time::Instant,
    pub create_limits: Option<limits::CreateLimits>,
    /// The agents live workers announced, as last listed, and when.
    pub announced: std::sync::Mutex<Option<(std::time::Instant, Vec<String>)>>,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// From validated config ([`EdgeConfig::validate`]).
    pub fn new(
        config: EdgeConfig,
        bus: Bus,
        store: Arc<dyn SessionStore>,
    ) -> anyhow::Result<AppState> {
        Ok(AppState(Arc::new(Inner {
            node: config.node_id(),
            hub: hub::Hub::new(bus.log.clone(), config.session_ring, config.max_log_readers)
                .with_log_cache(config.log_cache)
                .with_frame_cache(config.frame_cache),
            auth: auth::Auth::new(&config.keys)?,
            permits: Arc::new(Semaphore::new(config.max_connections)),
            drain: CancellationToken::new(),
            cut_off: reach::CutOff::default(),
            notices: operators::notice_channel(),
            started: std::time::Instant::now(),
            create_limits: limits::CreateLimits::new(config.create_rate, config.create_burst),
            announced: std::sync::Mutex::default(),
            config,
            bus,
            store,
        })))
    }

    /// The signals that tell a connection starting now to go to another
    /// node: the drain, and the node being cut off from the log.
    pub fn leave(&self) -> reach::Leave {
        self.cut_off.leave(&self.drain)
    }

    pub(crate) fn limits(&self) -> websocket::connection::Limits {
        let (high, low) = self.config.watermarks();
        websocket::connection::Limits {
            buffer: self.config.conn_buffer,
            high,
            low,
            max_frame_events: self.config.max_frame_events,
            max_frame_bytes: self.config.max_frame_bytes,
            heartbeat: self.config.heartbeat,
            write_timeout: self.config.write_timeout,
        }
    }
}

/// Holds one of the node's connection slots and counts the connection open.
pub struct ConnectionGuard(#[allow(dead_code)] OwnedSemaphorePermit);

impl ConnectionGuard {
    /// A slot, unless the node is full or draining.
    pub fn try_new(state: &AppState, transport: &'static str) -> Option<ConnectionGuard> {
        let permit = state
            .permits
            .clone()
            .try_acquire_owned()
            .ok()
            .filter(|_| !state.drain.is_cancelled());
        match permit {
            Some(p) => {
                metrics::counter!(names::CONNECTIONS_ACCEPTED, "transport" => transport)
                    .increment(1);
                metrics::gauge!(names::CONNECTIONS_OPEN).increment(1.0);
                Some(ConnectionGuard(p))
            }
            None => {
                metrics::counter!(names::CONNECTIONS_REJECTED).increment(1);
                None
            }
        }
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        metrics::gauge!(names::CONNECTIONS_OPEN).decrement(1.0);
    }
}

/// Every route of the API: its path and what serves it. [`router`] serves
/// these and nothing else, and tests/openapi.rs checks them against the
/// OpenAPI document (`GET /openapi.json`).
pub fn routes(config: &EdgeConfig) -> Vec<(&'static str, MethodRouter<AppState>)> {
    let control = |op: ControlOp| move |s, who| api::control(s, who, op);
    let mut routes = vec![
        ("/", get(api::demo_page)),
        ("/ops", get(api::ops_page)),
        ("/ops/{asset}", get(api::ops_asset)),
        ("/weir-client.js", get(api::client_js)),
        ("/weir-client/{module}", get(api::client_module)),
        ("/openapi.json", get(api::openapi)),
        (
            "/v1/sessions",
            post(api::create).get(operators::list_sessions),
        ),
        ("/v1/sessions/{id}", get(api::get)),
        ("/v1/sessions/{id}/history", get(api::history)),
        ("/v1/sessions/{id}/events", get(sse::events)),
        ("/v1/sessions/{id}/ws", get(websocket::endpoint::upgrade)),
        ("/v1/sessions/{id}/pause", post(control(ControlOp::Pause))),
        ("/v1/sessions/{id}/resume", post(control(ControlOp::Resume))),
        ("/v1/sessions/{id}/cancel", post(control(ControlOp::Cancel))),
        ("/v1/sessions/{id}/input", post(inputs::post)),
        ("/v1/status", get(operators::status)),
        ("/v1/nodes", get(operators::nodes)),
        ("/v1/broadcast", post(operators::broadcast)),
        ("/healthz", get(api::healthz)),
        ("/readyz", get(api::readyz)),
        ("/metrics", get(api::metrics)),
    ];
    routes.extend(threads::http::routes());
    routes.extend(frontends::routes(config));
    routes
}

pub fn router(state: AppState) -> Router {
    routes(&state.config)
        .into_iter()
        .fold(Router::new(), |router, (path, route)| {
            router.route(path, route)
        })
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(axum::middleware::from_fn(api::count_requests))
        .layer(DefaultBodyLimit::max(state.config.max_body))
        .with_state(state)
}

/// Serves until `shutdown`, then drains: stops accepting, tells every
/// client to reconnect elsewhere (`reconnect` + 1012), and waits up to
/// `drain_grace` for connections and requests to finish.
pub async fn run(
    config: EdgeConfig,
    bus: Bus,
    store: Arc<dyn SessionStore>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    config.validate().map_err(anyhow::Error::msg)?;
    let grace = config.drain_grace;
    let max_connections = config.max_connections;
    let state = AppState::new(config, bus, store)?;
    tracing::info!(node = %state.node, addr = %listener.local_addr()?, "edge listening");
    let drain = state.drain.clone();
    let permits = state.permits.clone();
    let background = CancellationToken::new();
    state.auth.start(background.clone());
    tokio::spawn(operators::relay_notices(state.clone(), background.clone()));
    tokio::spawn({
        let (state, stop) = (state.clone(), background.clone());
        async move { state.cut_off.follow(state.bus.reach.clone(), stop).await }
    });
    tokio::spawn(operators::announce(
        state.clone(),
        state.config.cluster.node_ttl,
        background.clone(),
    ));
    // Every node ends the runs of dead producers, edges too: a cluster
    // whose only workers are outside ones still has its reapers.
    let reaper = state
        .config
        .cluster
        .reaper(&state.bus, &state.store, &state.node);
    tokio::spawn(reaper.run(background.clone()));
    tokio::spawn(weir_cluster::watch_store(
        state.store.clone(),
        state.config.cluster.reap_interval,
        background.clone(),
    ));
    let app = router(state.clone());
    let timeouts = serve::Timeouts {
        header: state.config.header_timeout,
        write: state.config.write_timeout,
    };
    let server = serve::serve(listener, app, timeouts, async move {
        shutdown.cancelled().await;
        drain.cancel();
    });
    let server = tokio::spawn(server);
    state.drain.cancelled().await;
    tracing::info!(grace = ?grace, "draining");
    // Connections hold permits; all permits back means all connections gone.
    let all_closed = async {
        let _all = permits.acquire_many(max_connections as u32).await;
    };
    let _ = tokio::time::timeout(grace, async {
        all_closed.await;
        let _ = server.await;
    })
    .await;
    background.cancel();
    tracing::info!("edge stopped");
    Ok(())
}

/// The `weir-edge` process: logs, connections, listener, signals, [`run`].
pub async fn main(config: EdgeConfig) -> anyhow::Result<()> {
    weir_telemetry::init_tracing(config.log_format);
    config.validate().map_err(anyhow::Error::msg)?;
    weir_telemetry::prometheus();
    names::zero(names::Role::Edge);
    let node = config.node_id();
    // A taken address fails at once, before waiting for NATS.
    let listener = weir_cluster::bind(config.listen, "--listen / WEIR_LISTEN").await?;
    let (bus, store) = weir_cluster::connect(&config.cluster, &node).await?;
    run(
        config,
        bus,
        store,
        listener,
        weir_telemetry::shutdown_on_signal(),
    )
    .await
}
