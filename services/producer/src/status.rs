//! What a producer tells operators (protocol.md §7): `GET /v1/status` on its
//! metrics listener, and its entry in the cluster's node registry (runs in
//! progress, events published per second), refreshed every third of the TTL
//! and withdrawn when it stops.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

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
        "runs": ACTIVE.load(Ordering::Relaxed),
        "concurrency": ctx.config.concurrency,
        "bus": health(&bus),
        "store": health(&store),
    }))
}

/// Keeps this producer in the registry until `stop`, then withdraws it.
pub async fn announce(ctx: Arc<Ctx>, stop: CancellationToken) {
    let ttl = ctx.config.cluster.node_ttl;
    let started_ms = weir_store::unix_ms() - ctx.started.elapsed().as_millis() as u64;
    let mut last = (Instant::now(), PUBLISHED.load(Ordering::Relaxed));
    loop {
        let (at, published) = (Instant::now(), PUBLISHED.load(Ordering::Relaxed));
        let secs = at.duration_since(last.0).as_secs_f64().max(1e-3);
        let rate = ((published - last.1) as f64 / secs).round();
        last = (at, published);
        let mut load = serde_json::Map::new();
        load.insert("runs".into(), ACTIVE.load(Ordering::Relaxed).into());
        load.insert("concurrency".into(), ctx.config.concurrency.into());
        load.insert("events_per_s".into(), rate.into());
        let entry = NodeEntry {
            id: ctx.node.clone(),
            role: "producer".into(),
            version: VERSION.into(),
            started: started_ms,
            last_seen: weir_store::unix_ms(),
            load,
        };
        if let Err(e) = ctx.bus.nodes.announce(&entry).await {
            tracing::debug!(error = %e, "could not announce this node");
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(ttl / 3) => {}
        }
    }
    let _ = ctx.bus.nodes.withdraw(&ctx.node).await;
}
