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
