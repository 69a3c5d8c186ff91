//! What operators see and send across the cluster (protocol.md §7):
//! [`NoticeChannel`] carries broadcast notices to every edge (at most once,
//! never stored in any log), and [`NodeRegistry`] is the list of live nodes,
//! each entry refreshed by its node and gone a TTL after the node stops.

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use weir_protocol::SessionId;

use crate::BusError;

/// An operator's notice: for every client, or only the clients of `session`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionId>,
    /// The notice's payload, as the operator sent it (a JSON object).
    pub data: serde_json::Value,
}

#[async_trait]
pub trait NoticeChannel: Send + Sync + 'static {
    /// Sends a notice to every edge (each gets it once, or not at all).
    async fn broadcast(&self, notice: &Notice) -> Result<(), BusError>;
    /// Notices from now on.
    async fn subscribe(&self) -> Result<BoxStream<'static, Notice>, BusError>;
}

/// One live node as it announces itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeEntry {
    pub id: String,
    /// `edge` or `producer`.
    pub role: String,
    pub version: String,
    /// Unix milliseconds.
    pub started: u64,
    /// Unix milliseconds of this announcement.
    pub last_seen: u64,
    /// The node's load: connections and sessions followed (edges), runs
    /// (producers), events per second (both).
    #[serde(flatten)]
    pub load: serde_json::Map<String, serde_json::Value>,
}

#[async_trait]
pub trait NodeRegistry: Send + Sync + 'static {
    /// Records (or refreshes) the node; the entry lapses after the TTL.
    async fn announce(&self, node: &NodeEntry) -> Result<(), BusError>;
    /// Removes the node at once (a node that stops cleanly).
    async fn withdraw(&self, id: &str) -> Result<(), BusError>;
    /// The nodes announced within the TTL, by id.
    async fn list(&self) -> Result<Vec<NodeEntry>, BusError>;
}

/// A node id as a registry key: NATS keys allow `[-_=.a-zA-Z0-9]`.
pub fn node_key(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_=".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Keeps a node announced: every third of `ttl`, `load` gives its load and
/// the events per second it made since the last announcement are added
/// from `events` (a counter that only grows); when `stop` is cancelled the
/// node withdraws itself.
pub async fn keep_announced(
    nodes: std::sync::Arc<dyn NodeRegistry>,
    node: NodeEntry,
    ttl: std::time::Duration,
    events: &std::sync::atomic::AtomicU64,
    mut load: impl FnMut() -> serde_json::Map<String, serde_json::Value> + Send,
    stop: tokio_util::sync::CancellationToken,
) {
    use std::sync::atomic::Ordering;
    let mut last = (std::time::Instant::now(), events.load(Ordering::Relaxed));
    loop {
        let (at, count) = (std::time::Instant::now(), events.load(Ordering::Relaxed));
        let secs = at.duration_since(last.0).as_secs_f64().max(1e-3);
        let rate = ((count - last.1) as f64 / secs).round();
        last = (at, count);
        let mut entry = node.clone();
        entry.load = load();
        entry.load.insert("events_per_s".into(), rate.into());
        entry.last_seen = unix_ms();
        if let Err(e) = nodes.announce(&entry).await {
            tracing::debug!(error = %e, "could not announce this node");
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(ttl / 3) => {}
        }
    }
    let _ = nodes.withdraw(&node.id).await;
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}
