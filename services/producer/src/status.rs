//! What a producer tells operators (protocol.md §7): `GET /v1/status` on its
//! metrics listener, and its entry in the cluster's node registry (runs in
//! progress, events published per second), refreshed every third of the TTL
//! and withdrawn when it stops.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use tokio_util::sync::CancellationToken;
use weir_bus::NodeEntry;

use crate::run::{ACTIVE, PUBLISHED};
use crate::Ctx;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

fn health<E>(r: &Result<(), E>) -> &'static str {
    if r.is_ok() {
        "ok"
    } else {
        "down"
    }
}

/// `GET /v1/status`
pub async fn status(State(ctx): State<Arc<Ctx>>) -> Json<serde_json::Value> {
    let (bus, store) = tokio::join!(ctx.bus.log.ping(), ctx.store.ping());
    Json(serde_json::json!({
        "node": ctx.node,
        "role": "producer",
        "version": VERSION,
        "uptime_s": ctx.started.elapsed().as_secs(),
        "agents": ctx.agents.names(),
        "runs": ACTIVE.load(Ordering::Relaxed),
        "concurrency": ctx.config.concurrency,
        "bus": health(&bus),
        "store": health(&store),
    }))
}

/// Keeps this producer in the registry until `stop`, then withdraws it.
pub async fn announce(ctx: Arc<Ctx>, stop: CancellationToken) {
    let node = NodeEntry {
        id: ctx.node.clone(),
        role: "producer".into(),
        version: VERSION.into(),
        started: weir_store::unix_ms() - ctx.started.elapsed().as_millis() as u64,
        last_seen: 0,
        load: serde_json::Map::new(),
    };
    let concurrency = ctx.config.concurrency;
    let agents = ctx.agents.names();
    let load = || {
        let mut load = serde_json::Map::new();
        load.insert("agents".into(), agents.clone().into());
        load.insert("runs".into(), ACTIVE.load(Ordering::Relaxed).into());
        load.insert("concurrency".into(), concurrency.into());
        load
    };
    let (nodes, ttl) = (ctx.bus.nodes.clone(), ctx.config.cluster.node_ttl);
    weir_bus::operators::keep_announced(nodes, node, ttl, &PUBLISHED, load, stop).await;
}
