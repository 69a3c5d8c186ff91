//! `weir dev`: one process, one edge and one producer on the in-memory bus
//! and store — the same code paths as the distributed mode, minus NATS and
//! Redis. For trying weir out and for single-node use.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use weir_bus::{Bus, BusConfig};
use weir_edge::config::KeysConfig;
use weir_edge::EdgeConfig;
use weir_producer::config::OpenAiConfig;
use weir_producer::{ProducerConfig, Registry};
use weir_store::MemoryStore;

#[derive(Debug, Clone, clap::Args)]
pub struct DevConfig {
    /// HTTP, WebSocket and SSE address (the demo page is at /).
    #[arg(long, env = "WEIR_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Secrets (default: a random one per process) and identity provider
    /// of session tokens, as on an edge.
    #[command(flatten)]
    pub keys: KeysConfig,
    /// When set, `POST /v1/sessions` needs `Authorization: Bearer <key>`.
    #[arg(long, env = "WEIR_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// How long events and session state are kept.
    #[arg(long, env = "WEIR_RETENTION", default_value = "1h", value_parser = humantime::parse_duration)]
    pub retention: Duration,
    /// The LLM endpoint of the `openai` agent.
    #[command(flatten)]
    pub openai: OpenAiConfig,
}

/// Runs the embedded node on `listener` until `shutdown`.
pub async fn run(
    config: DevConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut keys = config.keys.clone();
    if keys.secret.is_empty() {
        // 256 bits from the OS's generator, as 64 hex digits.
        let bytes: [u8; 32] = rand::random();
        keys.secret = vec![bytes.iter().map(|b| format!("{b:02x}")).collect()];
    }
    // Refused before anything starts (the edge checks again).
    keys.validate().map_err(anyhow::Error::msg)?;
    let bus = Bus::memory(BusConfig {
        retention: config.retention,
        ..BusConfig::default()
    });
    let store = Arc::new(MemoryStore::new(config.retention));
    let mut edge = EdgeConfig::local("");
    edge.keys = keys;
    edge.listen = listener.local_addr()?;
    edge.cluster.node_id = Some("dev".into());
    edge.api_key = config.api_key.clone();
    edge.cluster.retention = config.retention;
    let mut producer = ProducerConfig::local();
    producer.cluster.node_id = Some("dev-producer".into());
    producer.cluster.retention = config.retention;
    producer.openai = config.openai.clone();
    let agents = Registry::standard(&producer);
    edge.agents = agents.names();
    let producer_task = tokio::spawn(weir_producer::run(
        producer,
        bus.clone(),
        store.clone(),
        agents,
        None,
        shutdown.clone(),
    ));
    tracing::info!("weir dev: open http://{}/", edge.listen);
    weir_edge::run(edge, bus, store, listener, shutdown).await?;
    producer_task.await??;
    Ok(())
}
