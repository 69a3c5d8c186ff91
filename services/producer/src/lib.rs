//! `weir-producer`: takes run requests from the `WEIR_RUNS` work queue (the
//! queue of each agent it hosts), runs the agent for each (up to
//! `concurrency` at once), and publishes the session's events to its log.
//!
//! - [`config`]: flags and environment.
//! - [`agents`]: the `Agent` trait and the agents (`mock`, `openai`).
//! - [`run`]: one run — lease, seqs, batching, fenced publishing, control;
//!   [`ask`]: its questions for a person and their answers.
//! - [`record`]: a run's session state, written off the publish path.
//! - [`taker`]: takes each agent's run requests while there is room.
//! - [`reaper`] (tests): the cluster's reaper (`weir_cluster::reaper`),
//!   which every producer runs, with this worker's runs.
//!
//! [`run`](fn@run) is what the binary and the tests call.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::{http::StatusCode, routing::get, Router};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use weir_bus::Bus;
use weir_store::SessionStore;

pub mod agents;
mod ask;
pub mod config;
#[cfg(test)]
mod creation;
#[cfg(test)]
mod outage;
mod progress;
mod publish;
#[cfg(test)]
mod reaper;
pub mod record;
pub mod run;
pub mod status;
mod taker;
#[cfg(test)]
mod testing;

pub use agents::Registry;
pub use config::ProducerConfig;

/// What every run of this worker shares.
pub struct Ctx {
    pub bus: Bus,
    pub store: Arc<dyn SessionStore>,
    pub agents: Registry,
    pub node: String,
    pub config: ProducerConfig,
    pub started: std::time::Instant,
    /// The sessions whose runs this node has claimed and not finished.
    pub running: std::sync::Mutex<std::collections::HashSet<weir_protocol::SessionId>>,
}

impl Ctx {
    pub fn running(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashSet<weir_protocol::SessionId>> {
        self.running.lock().expect("running lock")
    }
}

/// Runs the worker until `shutdown`, then drains: no new runs are taken,
/// running ones get `drain_grace` to finish, the rest end `failed`.
pub async fn run(
    config: ProducerConfig,
    bus: Bus,
    store: Arc<dyn SessionStore>,
    agents: Registry,
    listener: Option<TcpListener>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let node = config.node_id();
    let ctx = Arc::new(Ctx {
        bus,
        store,
        agents,
        node: node.clone(),
        config,
        started: std::time::Instant::now(),
        running: Default::default(),
    });
    let tasks = TaskTracker::new();
    let hard_stop = CancellationToken::new();
    if let Some(listener) = listener {
        tasks.spawn(serve_metrics(ctx.clone(), listener, hard_stop.clone()));
    }
    let reaper = ctx.config.cluster.reaper(&ctx.bus, &ctx.store, &node);
    tasks.spawn(reaper.run(shutdown.clone()));
    tasks.spawn(weir_cluster::watch_store(
        ctx.store.clone(),
        ctx.config.cluster.reap_interval,
        shutdown.clone(),
    ));
    tasks.spawn(status::announce(ctx.clone(), hard_stop.clone()));
    tracing::info!(%node, agents = ?ctx.agents.names(), "producer running");
    let (lease, safe) = (
        ctx.config.cluster.lease_ttl,
        ctx.config.cluster.shortest_safe_lease(),
    );
    if lease < safe {
        tracing::warn!(
            ?lease,
            ?safe,
            "--lease-ttl is shorter than a producer needs to move off a NATS server cut off \
             from its cluster: its runs may be ended failed by a partition it would survive"
        );
    }

    let permits = Arc::new(Semaphore::new(ctx.config.concurrency.max(1)));
    let runs = TaskTracker::new();
    // One taker per agent, each reading its agent's queue; they share the
    // run permits, so the worker never runs more than its concurrency
    // ([`taker`]).
    let takers = TaskTracker::new();
    for agent in ctx.agents.names() {
        let taker = taker::Taker {
            ctx: ctx.clone(),
            agent,
            permits: permits.clone(),
            runs: runs.clone(),
            hard_stop: hard_stop.clone(),
            wait: Duration::from_secs(5),
        };
        takers.spawn(taker.run(shutdown.clone()));
    }
    takers.close();
    takers.wait().await;
    runs.close();
    tracing::info!(active = runs.len(), grace = ?ctx.config.drain_grace, "draining");
    if tokio::time::timeout(ctx.config.drain_grace, runs.wait())
        .await
        .is_err()
    {
        hard_stop.cancel();
        runs.wait().await;
    }
    hard_stop.cancel();
    tasks.close();
    tasks.wait().await;
    Ok(())
}

async fn serve_metrics(ctx: Arc<Ctx>, listener: TcpListener, stop: CancellationToken) {
    let app = Router::new()
        .route(
            "/metrics",
            get(|| async {
                weir_telemetry::render_with_tasks(weir_telemetry::names::PRODUCER_TASKS)
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/status", get(status::status))
        .route(
            "/readyz",
            get(|State(ctx): State<Arc<Ctx>>| async move {
                match (ctx.bus.log.ping().await, ctx.store.ping().await) {
                    (Ok(()), Ok(())) => (StatusCode::OK, "ready".to_owned()),
                    (b, s) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("bus: {b:?}, store: {s:?}"),
                    ),
                }
            }),
        )
        .with_state(ctx);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "metrics server failed");
    }
}

/// The `weir-producer` process: logs, connections, metrics listener,
/// signals, [`run`](fn@run).
pub async fn main(config: ProducerConfig) -> anyhow::Result<()> {
    weir_telemetry::init_tracing(config.log_format);
    weir_telemetry::prometheus();
    weir_telemetry::names::zero(weir_telemetry::names::Role::Producer);
    let node = config.node_id();
    // A taken address fails at once, before waiting for NATS.
    let listener = weir_cluster::bind(
        config.metrics_listen,
        "--metrics-listen / WEIR_METRICS_LISTEN",
    )
    .await?;
    let (bus, store) = weir_cluster::connect(&config.cluster, &node).await?;
    let shutdown = weir_telemetry::shutdown_on_signal();
    let agents = Registry::standard(&config);
    run(config, bus, store, agents, Some(listener), shutdown).await
}
