//! Setting up the bus on NATS: the connection (a list of cluster URLs,
//! fast failure detection, unlimited reconnects, waiting for a server that
//! is not up yet), the server version check, and the streams with their
//! replica count.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, context::CreateStreamErrorKind, stream};
use async_nats::{Client, ServerAddr};

use super::{EVENTS_STREAM, LIVE_PREFIX};
use crate::{BusConfig, BusError};

/// The oldest nats-server release weir runs on. Older ones have clustered
/// fence and dedup defects that break exactly-once (protocol.md §2).
pub const MIN_SERVER: (u64, u64) = (2, 11);

/// How long a node waits for JetStream to accept the streams (a cluster
/// that is still electing its meta leader refuses them for a while).
const STREAMS_WAIT: Duration = Duration::from_secs(30);

/// Parses the URLs of one cluster.
pub fn server_addrs(urls: &[String]) -> Result<Vec<ServerAddr>, BusError> {
    let addrs = urls
        .iter()
        .map(|u| u.trim())
        .filter(|u| !u.is_empty())
        .map(|u| {
            u.parse::<ServerAddr>()
                .map_err(|e| BusError::Unsupported(format!("bad NATS URL {u:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if addrs.is_empty() {
        return Err(BusError::Unsupported("no NATS URL given".into()));
    }
    Ok(addrs)
}

/// Connects, retrying until a server answers, and checks its version.
pub async fn connect(
    urls: &[String],
    name: &str,
    config: &BusConfig,
    reconnects: tokio::sync::watch::Sender<u64>,
    watchdog: Arc<super::watchdog::Watchdog>,
) -> Result<Client, BusError> {
    let addrs = server_addrs(urls)?;
    // The event callback moves the connection off a server that enters
    // lame duck mode; it needs the client, which exists only afterwards.
    let this: Arc<OnceLock<Client>> = Arc::default();
    let callback_client = this.clone();
    let chooser = watchdog.clone();
    let client = async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .ping_interval(config.ping_interval)
        .connection_timeout(config.request_timeout)
        .request_timeout(Some(config.request_timeout))
        // The watchdog picks the server: not one it just left.
        .reconnect_to_server_callback(move |pool, _| {
            let pick = chooser.choose(pool);
            async move { pick }
        })
        .event_callback(move |event| {
            let (reconnects, client) = (reconnects.clone(), callback_client.clone());
            let watchdog = watchdog.clone();
            async move { on_event(event, &reconnects, &client, &watchdog) }
        })
        .connect(addrs)
        .await
        .map_err(BusError::unavailable)?;
    let _ = this.set(client.clone());
    // The first connection is made in the background: a flush returns once
    // a server has answered, and then its INFO (with the version) is known.
    let started = Instant::now();
    while tokio::time::timeout(Duration::from_secs(5), client.flush())
        .await
        .is_err()
    {
        tracing::warn!(urls = ?urls, waited = ?started.elapsed(), "waiting for a NATS server");
    }
    check_version(&client.server_info().version)?;
    Ok(client)
}

fn on_event(
    event: async_nats::Event,
    reconnects: &tokio::sync::watch::Sender<u64>,
    client: &OnceLock<Client>,
    watchdog: &super::watchdog::Watchdog,
) {
    match event {
        async_nats::Event::Disconnected => {
            tracing::warn!("NATS disconnected");
            watchdog.disconnected();
            metrics::counter!(weir_telemetry::names::BUS_DISCONNECTS).increment(1);
        }
        async_nats::Event::Connected => {
            let server = watchdog.connected();
            tracing::info!(server = server.as_deref().unwrap_or("?"), "NATS connected");
            reconnects.send_modify(|n| *n += 1);
            if *reconnects.borrow() > 1 {
                metrics::counter!(weir_telemetry::names::BUS_RECONNECTS).increment(1);
            }
        }
        async_nats::Event::LameDuckMode => {
            // A planned restart: leave now for another server of the
            // cluster rather than wait to be evicted.
            tracing::info!("NATS server entering lame duck mode; moving to another");
            if let Some(client) = client.get().cloned() {
                tokio::spawn(async move {
                    if let Err(e) = client.force_reconnect().await {
                        tracing::warn!(error = %e, "could not leave the lame duck server");
                    }
                });
            }
        }
        other => tracing::debug!(event = %other, "NATS event"),
    }
}

/// Refuses servers older than [`MIN_SERVER`], naming the version.
pub fn check_version(version: &str) -> Result<(), BusError> {
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u64>().ok());
    let (major, minor) = match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor),
        _ => {
            return Err(BusError::Unsupported(format!(
                "the NATS server reports version {version:?}, which weir cannot read; \
                 weir needs nats-server {}.{} or later",
                MIN_SERVER.0, MIN_SERVER.1
            )))
        }
    };
    if (major, minor) < MIN_SERVER {
        return Err(BusError::Unsupported(format!(
            "the NATS server is version {version}; weir needs nats-server {}.{} or later \
             (older releases have clustered fence and dedup defects that break exactly-once)",
            MIN_SERVER.0, MIN_SERVER.1
        )));
    }
    Ok(())
}

/// `WEIR_EVENTS`: every session's log, kept by age, republished live.
pub fn events_config(config: &BusConfig) -> stream::Config {
    stream::Config {
        name: EVENTS_STREAM.into(),
        subjects: vec!["weir.ev.*".into()],
        max_age: config.retention,
        duplicate_window: config.duplicate_window.min(config.retention),
        storage: stream::StorageType::File,
        num_replicas: config.replicas.into(),
        allow_direct: true,
        republish: Some(stream::Republish {
            source: "weir.ev.*".into(),
            destination: format!("{LIVE_PREFIX}{{{{wildcard(1)}}}}"),
            headers_only: false,
        }),
        ..Default::default()
    }
}

/// Creates the stream, or takes the existing one: its replica count and
/// live republish are brought to what this node asks for (JetStream moves
/// the replicas itself), and a change the server refuses stops the node
/// with the reason. Other settings are the first node's; changing them is
/// an operator's act.
pub async fn ensure_stream(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<stream::Stream, BusError> {
    let started = Instant::now();
    let mut backoff = Duration::from_millis(100);
    loop {
        let err = match js.get_or_create_stream(config.clone()).await {
            Ok(s) => return reconcile(js, s, &config).await,
            Err(e) => e,
        };
        if permanent(err.kind()) || started.elapsed() >= STREAMS_WAIT {
            return Err(BusError::Unsupported(format!(
                "cannot create stream {} with {} replica(s): {err}",
                config.name, config.num_replicas
            )));
        }
        // Nodes starting together race to create it; a forming cluster
        // has no meta leader yet. Both pass.
        tracing::debug!(stream = %config.name, error = %err, "stream not ready; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

async fn reconcile(
    js: &jetstream::Context,
    s: stream::Stream,
    want: &stream::Config,
) -> Result<stream::Stream, BusError> {
    let have = s.cached_info().config.clone();
    let replicas = |c: &stream::Config| c.num_replicas.max(1);
    if replicas(&have) == replicas(want) && have.republish == want.republish {
        return Ok(s);
    }
    tracing::info!(
        stream = %want.name,
        from = replicas(&have),
        to = replicas(want),
        "updating the stream's replicas and live republish"
    );
    let mut updated = have.clone();
    updated.num_replicas = want.num_replicas;
    updated.republish = want.republish.clone();
    js.update_stream(updated).await.map_err(|e| {
        BusError::Unsupported(format!(
            "stream {} has {} replica(s) and this node asks for {} (--replicas / WEIR_REPLICAS); \
             the server refused the change: {e}",
            want.name,
            replicas(&have),
            replicas(want)
        ))
    })?;
    js.get_stream(&want.name)
        .await
        .map_err(BusError::unavailable)
}

/// Errors that waiting will not cure: a configuration the server refuses.
fn permanent(kind: CreateStreamErrorKind) -> bool {
    match kind {
        CreateStreamErrorKind::JetStream(e) => {
            // 10058: another node created it first (the next try gets it);
            // 10074: replicas > 1 on a server that is not clustered.
            let code = e.error_code().0;
            code != 10058 && (e.code() == 400 || code == 10074)
        }
        CreateStreamErrorKind::EmptyStreamName
        | CreateStreamErrorKind::InvalidStreamName
        | CreateStreamErrorKind::DomainAndExternalSet => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_older_than_2_11_are_refused_by_version() {
        for ok in [
            "2.11.0",
            "2.11.9",
            "2.12.1",
            "2.15.1",
            "3.0.0",
            "2.14.0-RC.2",
        ] {
            assert!(check_version(ok).is_ok(), "{ok} refused");
        }
        for old in ["2.10.29", "2.9.10", "1.4.1", "2.2.0-beta"] {
            let e = check_version(old).unwrap_err().to_string();
            assert!(e.contains(old) && e.contains("2.11"), "{e}");
        }
        assert!(check_version("").is_err());
        assert!(check_version("nightly").is_err());
    }

    /// A server that speaks just enough of the NATS protocol to be
    /// connected to, announcing `version`.
    async fn fake_server(version: &'static str) -> String {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (read, mut write) = sock.into_split();
                    let info = format!(
                        "INFO {{\"server_id\":\"fake\",\"version\":\"{version}\",\"proto\":1,\
                         \"host\":\"127.0.0.1\",\"port\":{},\"max_payload\":1048576,\
                         \"headers\":true,\"jetstream\":true}}\r\n",
                        addr.port()
                    );
                    write.write_all(info.as_bytes()).await.unwrap();
                    let mut lines = BufReader::new(read).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        if line.starts_with("PING") {
                            let _ = write.write_all(b"PONG\r\n").await;
                        }
                    }
                });
            }
        });
        format!("nats://{addr}")
    }

    fn dog(config: &BusConfig) -> Arc<crate::nats::watchdog::Watchdog> {
        let reach = crate::Reach::default();
        Arc::new(crate::nats::watchdog::Watchdog::new(
            config.timings(),
            reach,
        ))
    }

    #[tokio::test]
    async fn a_node_connected_to_an_old_server_refuses_to_start() {
        let url = fake_server("2.9.10").await;
        let config = BusConfig::default();
        let e = connect(
            &[url],
            "test",
            &config,
            tokio::sync::watch::Sender::new(0),
            dog(&config),
        )
        .await
        .unwrap_err();
        let line = e.to_string();
        assert!(matches!(e, BusError::Unsupported(_)), "{line}");
        assert!(line.contains("2.9.10") && line.contains("2.11"), "{line}");
        let url = fake_server("2.15.1").await;
        assert!(connect(
            &[url],
            "test",
            &config,
            tokio::sync::watch::Sender::new(0),
            dog(&config)
        )
        .await
        .is_ok());
    }

    #[test]
    fn a_url_list_is_parsed_and_a_bad_url_named() {
        let urls = |s: &[&str]| s.iter().map(|u| u.to_string()).collect::<Vec<_>>();
        let addrs = server_addrs(&urls(&["nats://a:4222", " nats://b:4223 "])).unwrap();
        assert_eq!(addrs.len(), 2);
        let e = server_addrs(&urls(&["nats://a:notaport"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nats://a:notaport"), "{e}");
        assert!(server_addrs(&urls(&["", " "])).is_err());
    }
}
