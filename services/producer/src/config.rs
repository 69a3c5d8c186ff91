//! The producer's configuration: `--flags` mirrored by `WEIR_*` variables.

use std::net::SocketAddr;
use std::time::Duration;

use weir_telemetry::LogFormat;

#[derive(Debug, Clone, clap::Args)]
pub struct ProducerConfig {
    /// NATS server(s) with JetStream.
    #[arg(long, env = "WEIR_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// Redis holding session state and leases.
    #[arg(long, env = "WEIR_REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// This worker's id, shown as the session's `producer` (default: producer-<host>-<pid>).
    #[arg(long, env = "WEIR_NODE_ID")]
    pub node_id: Option<String>,
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, env = "WEIR_METRICS_LISTEN", default_value = "127.0.0.1:9091")]
    pub metrics_listen: SocketAddr,
    /// Runs this worker executes at once.
    #[arg(long, env = "WEIR_CONCURRENCY", default_value_t = 256)]
    pub concurrency: usize,
    /// Lease on a run: a producer that stops renewing it for this long is
    /// presumed dead and its session ends `failed`.
    #[arg(long, env = "WEIR_LEASE_TTL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub lease_ttl: Duration,
    /// How often to look for runs of dead producers.
    #[arg(long, env = "WEIR_REAP_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub reap_interval: Duration,
    /// How long events and session state are kept.
    #[arg(long, env = "WEIR_RETENTION", default_value = "1h", value_parser = humantime::parse_duration)]
    pub retention: Duration,
    /// Most events in one bus message (only what is already waiting is batched).
    #[arg(long, env = "WEIR_MAX_BATCH", default_value_t = 256)]
    pub max_batch: usize,
    /// Events an agent may produce ahead of what is published, per run.
    #[arg(long, env = "WEIR_RUN_BUFFER", default_value_t = 1024)]
    pub run_buffer: usize,
    /// On SIGTERM, how long running sessions may take to finish before they
    /// are ended `failed` with code `producer_shutdown`.
    #[arg(long, env = "WEIR_DRAIN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain_grace: Duration,
    /// Log format: human or json.
    #[arg(long, env = "WEIR_LOG_FORMAT", default_value = "human")]
    pub log_format: LogFormat,
}

impl ProducerConfig {
    /// Defaults, for tests and the embedded mode.
    pub fn local() -> ProducerConfig {
        ProducerConfig {
            nats_url: "nats://127.0.0.1:4222".into(),
            redis_url: "redis://127.0.0.1:6379".into(),
            node_id: None,
            metrics_listen: ([127, 0, 0, 1], 9091).into(),
            concurrency: 256,
            lease_ttl: Duration::from_secs(5),
            reap_interval: Duration::from_secs(1),
            retention: Duration::from_secs(3600),
            max_batch: 256,
            run_buffer: 1024,
            drain_grace: Duration::from_secs(10),
            log_format: LogFormat::Human,
        }
    }

    pub fn node_id(&self) -> String {
        self.node_id.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
            format!("producer-{host}-{}", std::process::id())
        })
    }
}
