//! An edge and a producer embedded in the test process, on the memory bus
//! and store, as `weir dev` runs them: `weir_edge::run` on a free port. For
//! the cases that need neither NATS nor Redis; it starts in milliseconds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use weir_bus::Bus;
use weir_edge::EdgeConfig;
use weir_producer::{ProducerConfig, Registry};
use weir_store::{MemoryStore, SessionStore};

use super::cluster::Endpoint;

/// Stops the edge and the producer on drop.
pub struct Embedded {
    pub base: String,
    pub bus: Bus,
    pub store: Arc<dyn SessionStore>,
    stop: CancellationToken,
}

impl Embedded {
    /// `edge` and a producer with `ProducerConfig::local()`, sharing the
    /// edge's cluster settings (retention included); returns once the edge
    /// answers `/healthz`.
    pub async fn start(edge: EdgeConfig) -> Embedded {
        let embedded = Embedded::edge_only(edge.clone()).await;
        let mut producer = ProducerConfig::local();
        producer.cluster = edge.cluster;
        let agents = Registry::standard(&producer);
        tokio::spawn(weir_producer::run(
            producer,
            embedded.bus.clone(),
            embedded.store.clone(),
            agents,
            None,
            embedded.stop.clone(),
        ));
        embedded
    }

    /// `edge` alone, with no producer: a run it starts stays queued until the
    /// test writes its log itself. Returns once the edge answers `/healthz`.
    pub async fn edge_only(edge: EdgeConfig) -> Embedded {
        let bus = Bus::memory(edge.cluster.bus());
        let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new(edge.cluster.retention));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        tokio::spawn(weir_edge::run(
            edge,
            bus.clone(),
            store.clone(),
            listener,
            stop.clone(),
        ));
        let embedded = Embedded {
            base,
            bus,
            store,
            stop,
        };
        embedded.wait_healthy().await;
        embedded
    }

    async fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = format!("{}/healthz", self.base);
        loop {
            let r = super::http().get(&url).send().await;
            if r.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the embedded edge never answered {url}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Endpoint for Embedded {
    fn http(&self) -> String {
        self.base.clone()
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
