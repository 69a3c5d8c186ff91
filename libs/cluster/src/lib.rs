//! The cluster settings every weir node shares — NATS URLs, stream
//! replicas, Redis, node id, retention, failure-detection timings — as one
//! flag set (`--flags` mirrored by `WEIR_*` variables) flattened into the
//! edge's and the producer's configuration, and [`connect`], which opens
//! the bus and the store with them. One copy, so both services always read
//! the same variables the same way. [`reaper`] ends the runs of dead
//! producers; every node runs one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use weir_bus::{Bus, BusConfig, BusError};

pub mod reaper;
mod watch;

pub use watch::watch_store;
use weir_store::{RedisStore, SessionStore, StoreError};

/// Where the cluster is and how a node talks to it.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterConfig {
    /// NATS server(s) with JetStream: one URL or the cluster's URLs, comma-separated.
    #[arg(
        long,
        env = "WEIR_NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        value_delimiter = ','
    )]
    pub nats_url: Vec<String>,
    /// Replicas of the `WEIR_EVENTS` and `WEIR_RUNS` streams (3 on a 3-node cluster).
    #[arg(long, env = "WEIR_REPLICAS", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=5))]
    pub replicas: u8,
    /// Redis holding session state: one server
    /// (`redis://`, `rediss://`), Sentinel (`redis+sentinel://h1:p1,h2:p2/<master>`)
    /// or Cluster (`redis+cluster://h1:p1,h2:p2`).
    /// Checked by [`connect`] before anything connects.
    #[arg(long, env = "WEIR_REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// This node's id (default: <role>-<host>-<pid>).
    #[arg(long, env = "WEIR_NODE_ID")]
    pub node_id: Option<String>,
    /// How long events and session state are kept.
    #[arg(long, env = "WEIR_RETENTION", default_value = "1h", value_parser = humantime::parse_duration)]
    pub retention: Duration,
    /// How often a node pings its NATS server: a dead server is noticed
    /// within about two intervals, and the node moves to another.
    #[arg(long, env = "WEIR_NATS_PING_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub nats_ping_interval: Duration,
    /// A node that stops announcing itself leaves `GET /v1/nodes` after this.
    #[arg(long, env = "WEIR_NODE_TTL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub node_ttl: Duration,
    /// Longest wait for an answer from NATS (a publish acknowledgement, a
    /// read); a publish that times out is retried with the same message id.
    #[arg(long, env = "WEIR_NATS_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub nats_timeout: Duration,
    /// Lease on a run: a producer that stops renewing it for this long is
    /// presumed dead and its session ends `failed` (the time of this node's
    /// own leases; each producer states its own). It must outlast the time
    /// a producer needs to leave a NATS server cut off from its cluster and
    /// renew through another (`2 × --nats-ping-interval`, plus the renewal
    /// cadence of a third of the lease): 10 s with the defaults.
    #[arg(long, env = "WEIR_LEASE_TTL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub lease_ttl: Duration,
    /// How often this node looks for runs of dead producers.
    #[arg(long, env = "WEIR_REAP_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub reap_interval: Duration,
}

impl ClusterConfig {
    /// The defaults: one local NATS and Redis, one replica.
    pub fn local() -> ClusterConfig {
        ClusterConfig {
            nats_url: vec!["nats://127.0.0.1:4222".into()],
            replicas: 1,
            redis_url: "redis://127.0.0.1:6379".into(),
            node_id: None,
            retention: Duration::from_secs(3600),
            nats_ping_interval: Duration::from_secs(2),
            node_ttl: Duration::from_secs(10),
            nats_timeout: Duration::from_secs(5),
            lease_ttl: Duration::from_secs(10),
            reap_interval: Duration::from_secs(1),
        }
    }

    /// The shortest lease a producer keeps through a partition: it renews
    /// every third of the lease, retries a tenth later, and needs the time
    /// to notice a cut-off server and move (`Timings::notice`) between two
    /// renewals; so `notice < lease × (1 − 1/3 − 1/10)`.
    pub fn shortest_safe_lease(&self) -> Duration {
        self.bus().timings().notice() * 30 / 17
    }

    /// This node's reaper.
    pub fn reaper(&self, bus: &Bus, store: &Arc<dyn SessionStore>, node: &str) -> reaper::Reaper {
        reaper::Reaper {
            bus: bus.clone(),
            store: store.clone(),
            node: node.to_owned(),
            lease_ttl: self.lease_ttl,
            interval: self.reap_interval,
        }
    }

    /// The configured node id, or `<role>-<host>-<pid>`.
    pub fn node_id(&self, role: &str) -> String {
        self.node_id
            .clone()
            .unwrap_or_else(|| weir_telemetry::default_node_id(role))
    }

    /// The bus settings these flags give.
    pub fn bus(&self) -> BusConfig {
        BusConfig {
            retention: self.retention,
            replicas: self.replicas,
            ping_interval: self.nats_ping_interval,
            request_timeout: self.nats_timeout,
            node_ttl: self.node_ttl,
            ..BusConfig::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Not clap's own check: it would echo the URL, password included.
    #[error("--redis-url / WEIR_REDIS_URL: {0}")]
    RedisUrl(#[from] weir_store::redis::UrlError),
    #[error("NATS: {0}")]
    Bus(#[from] BusError),
    #[error("Redis at {url}: {source}")]
    Store { url: String, source: StoreError },
}

/// Connects to NATS (checking the server version and the streams) and to
/// Redis, as `node`.
pub async fn connect(
    config: &ClusterConfig,
    node: &str,
) -> Result<(Bus, Arc<dyn SessionStore>), ConnectError> {
    // A wrong Redis URL is refused at once, not after waiting for NATS.
    weir_store::redis::RedisUrl::parse(&config.redis_url)?;
    let bus = Bus::nats(&config.nats_url, node, config.bus()).await?;
    let store = RedisStore::connect(&config.redis_url, config.retention)
        .await
        .map_err(|source| ConnectError::Store {
            url: weir_store::redis::url::redact(&config.redis_url),
            source,
        })?;
    Ok((bus, Arc::new(store)))
}

/// A listen address that could not be bound, naming the flag that set it.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} (set by {flag}): {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    pub flag: &'static str,
    pub source: std::io::Error,
}

/// Binds `addr`, or says which address and which flag failed.
pub async fn bind(
    addr: SocketAddr,
    flag: &'static str,
) -> Result<tokio::net::TcpListener, BindError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, flag, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Args, Command, FromArgMatches};

    fn parse(args: &[&str]) -> Result<ClusterConfig, clap::Error> {
        let cmd = ClusterConfig::augment_args(Command::new("weir"));
        let m = cmd.try_get_matches_from(std::iter::once("weir").chain(args.iter().copied()))?;
        ClusterConfig::from_arg_matches(&m)
    }

    #[test]
    fn the_default_lease_outlasts_the_move_off_a_cut_off_server() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.lease_ttl, ClusterConfig::local().lease_ttl);
        assert!(c.lease_ttl >= c.shortest_safe_lease(), "{c:?}");
        let short = parse(&["--lease-ttl", "5s"]).unwrap();
        assert!(short.lease_ttl < short.shortest_safe_lease());
    }

    #[test]
    fn nats_urls_are_a_comma_separated_list() {
        let c = parse(&[
            "--nats-url",
            "nats://a:4222,nats://b:4222,nats://c:4222",
            "--replicas",
            "3",
        ])
        .unwrap();
        assert_eq!(
            c.nats_url,
            ["nats://a:4222", "nats://b:4222", "nats://c:4222"]
        );
        assert_eq!(c.bus().replicas, 3);
        assert_eq!(parse(&[]).unwrap().nats_url, ["nats://127.0.0.1:4222"]);
    }

    #[test]
    fn replicas_outside_what_jetstream_allows_are_refused() {
        for bad in ["0", "6", "three"] {
            assert!(parse(&["--replicas", bad]).is_err(), "{bad} accepted");
        }
    }

    #[tokio::test]
    async fn a_bad_redis_url_is_refused_before_connecting_naming_the_forms() {
        let mut config = ClusterConfig::local();
        // Nothing listens here: the URL must be refused before NATS is tried.
        config.nats_url = vec!["nats://127.0.0.1:1".into()];
        config.redis_url = "redis+sentinel://:hunter2@s1:26379".into();
        let e = connect(&config, "n").await.err().unwrap().to_string();
        assert!(e.starts_with("--redis-url / WEIR_REDIS_URL: "), "{e}");
        assert!(e.contains("no master name"), "{e}");
        assert!(e.contains("redis+cluster://"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let url = "redis+sentinel://s1:26379,s2:26379,s3:26379/mymaster?db=1";
        assert_eq!(parse(&["--redis-url", url]).unwrap().redis_url, url);
    }

    #[tokio::test]
    async fn a_taken_address_names_the_address_and_the_flag() {
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let e = bind(addr, "--listen / WEIR_LISTEN").await.unwrap_err();
        let line = e.to_string();
        assert!(line.contains(&addr.to_string()), "{line}");
        assert!(line.contains("--listen / WEIR_LISTEN"), "{line}");
        assert!(!line.contains('\n'), "{line}");
    }
}
