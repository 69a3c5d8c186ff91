//! `weir-bench connections`: N idle, subscribed WebSocket connections on one
//! edge (each on a live outside-producer session that publishes nothing),
//! and what they cost the edge in resident memory.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::stream::{self, StreamExt};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::api::{self, Session};
use super::client::{Client, ClientConfig};
use super::procinfo::{self, CpuWindow, Watched};
use super::report::{Report, Verify};
use super::stats::{Live, Percentiles};
use super::Output;

#[derive(Debug, Clone, clap::Args)]
pub struct ConnArgs {
    /// The edge, `http://host:port`.
    #[arg(long)]
    pub edge: String,
    /// The edge's pid (default: the process listening on its port).
    #[arg(long)]
    pub edge_pid: Option<u32>,
    /// Connections to open.
    #[arg(long, default_value_t = 10_000)]
    pub connections: u64,
    /// Sessions they subscribe to (default: one per connection).
    #[arg(long)]
    pub sessions: Option<u64>,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// How long to hold every connection open before measuring.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub hold: Duration,
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Report the CPU use of these processes over the run: `name=pid`.
    #[arg(long = "watch")]
    pub watch: Vec<Watched>,
    #[command(flatten)]
    pub output: Output,
}

pub async fn run(a: ConnArgs) -> anyhow::Result<Report> {
    let edge = a.edge.trim_end_matches('/').to_owned();
    let port: u16 = edge
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .context("--edge needs an explicit port")?;
    let pid = match a.edge_pid {
        Some(p) => p,
        None => procinfo::pid_listening_on(port)
            .context("no process listens on the edge's port; pass --edge-pid")?,
    };
    let http = api::http_client();
    let n_sessions = a.sessions.unwrap_or(a.connections).max(1);
    let deadline = Instant::now() + a.timeout;
    let sessions: Vec<Arc<Session>> = stream::iter(0..n_sessions)
        .map(|i| {
            let (http, edge) = (&http, &edge);
            async move {
                let mut s = api::create(http, edge, &json!({"agent": "external"})).await?;
                s.seed = i;
                anyhow::Ok(Arc::new(s))
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;

    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = procinfo::rss_kib(pid).context("edge RSS")?;
    let live = Arc::new(Live::new());
    let bar = super::progress_bar(&a.output, a.connections, "connections");
    let progress = super::spawn_progress(bar.clone(), live.clone(), true);
    let cpu = CpuWindow::start(&a.watch);
    let stop = CancellationToken::new();
    let opening = Arc::new(Semaphore::new(a.connect_concurrency.max(1)));
    let (hello_tx, mut hello_rx) = tokio::sync::mpsc::channel::<()>(1024);
    let edges = Arc::new(vec![edge.replacen("http", "ws", 1)]);
    let started = Instant::now();
    let released = Arc::new(std::sync::OnceLock::new());
    let mut clients = Vec::new();
    let mut subscribed = 0u64;
    for i in 0..a.connections {
        // A permit per connection being opened, given back at its hello.
        loop {
            tokio::select! {
                permit = opening.acquire() => { permit?.forget(); break; }
                h = hello_rx.recv() => if h.is_some() { subscribed += 1; opening.add_permits(1); },
            }
        }
        let session = sessions[(i % n_sessions) as usize].clone();
        let config = ClientConfig {
            edges: edges.clone(),
            first_edge: 0,
            check_mock_text: false,
            deadline,
            released: released.clone(),
            drop_after: None,
            created_ms: None,
        };
        let client = Client::new(session, config, live.clone(), i as usize, Instant::now());
        clients.push(tokio::spawn(
            client.run(stop.clone(), Some(hello_tx.clone())),
        ));
    }
    drop(hello_tx);
    while subscribed < a.connections {
        match tokio::time::timeout_at(deadline.into(), hello_rx.recv()).await {
            Ok(Some(())) => subscribed += 1,
            _ => break,
        }
    }
    let open_in = started.elapsed();
    tokio::time::sleep(a.hold).await;
    let rss_after = procinfo::rss_kib(pid).context("edge RSS")?;
    let hwm = procinfo::status_kib(pid, "VmHWM").unwrap_or(0);
    let still_connected = live.connected.load(Ordering::Relaxed);
    let cpu = cpu.finish();
    stop.cancel();
    let mut errors = Vec::new();
    for c in clients {
        if let Some(e) = c.await?.error {
            if errors.len() < 10 {
                errors.push(e);
            }
        }
    }
    progress.abort();
    bar.finish_and_clear();

    let per_conn = (rss_after.saturating_sub(rss_before)) as f64 / a.connections.max(1) as f64;
    let mut extra = serde_json::Map::new();
    extra.insert("edge_pid".into(), json!(pid));
    extra.insert("subscribed".into(), json!(subscribed));
    extra.insert("connected_at_measurement".into(), json!(still_connected));
    extra.insert("opened_in_s".into(), json!(open_in.as_secs_f64()));
    extra.insert("edge_rss_before_kib".into(), json!(rss_before));
    extra.insert("edge_rss_after_kib".into(), json!(rss_after));
    extra.insert("edge_rss_peak_kib".into(), json!(hwm));
    extra.insert(
        "edge_rss_per_connection_kib".into(),
        json!((per_conn * 100.0).round() / 100.0),
    );
    extra.insert(
        "bench_rss_kib".into(),
        json!(procinfo::rss_kib(std::process::id()).unwrap_or(0)),
    );
    let report = Report {
        scenario: "connections".into(),
        settings: json!({"connections": a.connections, "sessions": n_sessions, "hold_s": a.hold.as_secs_f64()}),
        sessions: n_sessions,
        clients: a.connections,
        seconds: started.elapsed().as_secs_f64(),
        reconnects: live.get(&live.reconnects),
        first_event_ms: Percentiles::default(),
        verify: Verify {
            against: "connected".into(),
            clients: a.connections,
            clients_ok: still_connected,
            errors,
            ..Verify::default()
        },
        cpu,
        extra,
        ..Report::default()
    };
    super::emit(&a.output, &report, &[])?;
    Ok(report)
}
