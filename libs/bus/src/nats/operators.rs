//! Notices over core NATS (`weir.notice`: every edge subscribes once, so
//! each gets a notice at most once, and nothing is stored) and the node
//! registry in the JetStream key-value bucket `WEIR_NODES`, whose entries
//! expire a TTL after their last write.

use async_nats::jetstream::{self, kv};
use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};

use super::NatsBus;
use crate::operators::node_key;
use crate::{BusConfig, BusError, NodeEntry, NodeRegistry, Notice, NoticeChannel};

pub const NOTICE_SUBJECT: &str = "weir.notice";
pub const NODES_BUCKET: &str = "WEIR_NODES";

/// The registry's bucket: one entry per node, gone `node_ttl` after its
/// last announcement, replicated like the streams.
pub(super) async fn nodes_bucket(
    js: &jetstream::Context,
    config: &BusConfig,
) -> Result<kv::Store, BusError> {
    let want = kv::Config {
        bucket: NODES_BUCKET.into(),
        description: "weir: live edges and producers".into(),
        history: 1,
        max_age: config.node_ttl,
        storage: jetstream::stream::StorageType::Memory,
        num_replicas: config.replicas.into(),
        ..Default::default()
    };
    match js.get_key_value(NODES_BUCKET).await {
        Ok(store) => Ok(store),
        Err(_) => match js.create_key_value(want).await {
            Ok(store) => Ok(store),
            // Another node created it first.
            Err(_) => js
                .get_key_value(NODES_BUCKET)
                .await
                .map_err(BusError::unavailable),
        },
    }
}

#[async_trait]
impl NoticeChannel for NatsBus {
    async fn broadcast(&self, notice: &Notice) -> Result<(), BusError> {
        let payload = serde_json::to_vec(notice).expect("notices serialise");
        self.publish_now(NOTICE_SUBJECT.into(), payload).await
    }

    async fn subscribe(&self) -> Result<BoxStream<'static, Notice>, BusError> {
        let sub = self
            .client
            .subscribe(NOTICE_SUBJECT)
            .await
            .map_err(BusError::unavailable)?;
        Ok(sub
            .filter_map(|m| async move {
                let notice = serde_json::from_slice::<Notice>(&m.payload);
                if notice.is_err() {
                    tracing::warn!("ignored a malformed notice");
                }
                notice.ok()
            })
            .boxed())
    }
}

#[async_trait]
impl NodeRegistry for NatsBus {
    async fn announce(&self, node: &NodeEntry) -> Result<(), BusError> {
        let value = serde_json::to_vec(node).expect("node entries serialise");
        self.nodes
            .put(node_key(&node.id), value.into())
            .await
            .map_err(BusError::unavailable)?;
        Ok(())
    }

    async fn withdraw(&self, id: &str) -> Result<(), BusError> {
        self.nodes
            .purge(node_key(id))
            .await
            .map_err(BusError::unavailable)
    }

    async fn list(&self) -> Result<Vec<NodeEntry>, BusError> {
        let mut keys = self.nodes.keys().await.map_err(BusError::unavailable)?;
        let mut out = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(BusError::unavailable)?;
            let Some(value) = self.nodes.get(key).await.map_err(BusError::unavailable)? else {
                continue;
            };
            match serde_json::from_slice::<NodeEntry>(&value) {
                Ok(n) => out.push(n),
                Err(e) => tracing::warn!(error = %e, "ignored a malformed node entry"),
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}
