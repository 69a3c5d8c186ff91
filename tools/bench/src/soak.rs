//! `weir-bench soak`: steady load for a long while — sessions starting and
//! ending, some cancelled, clients dropping their connection and resuming
//! on another edge — while the processes under test are sampled (RSS, open
//! fds, tokio tasks, NATS subscriptions). The verdict: each series is flat
//! after warm-up ([`super::soak_series`]); every session was read exactly.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::api::{self, Session};
use super::client::{Client, ClientConfig};
use super::procinfo::Watched;
use super::soak_series::{Probe, Sampler, Series};
use super::stats::Live;
use super::Output;

#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// Edge base URL(s), `http://host:port` (repeat or comma-separate).
    #[arg(long = "edge", required = true, value_delimiter = ',')]
    pub edges: Vec<String>,
    /// Sessions streaming at once; each one that ends is replaced.
    #[arg(long, default_value_t = 40)]
    pub sessions: u64,
    /// Tokens per session (mock agent).
    #[arg(long, default_value_t = 200)]
    pub tokens: u64,
    /// Tokens per second per session.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// How long the load lasts.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Each client drops its connection after this many events and resumes
    /// on the next edge (0 = never).
    #[arg(long, default_value_t = 60)]
    pub reconnect_every: u64,
    /// Every n-th session is cancelled halfway through (0 = none).
    #[arg(long, default_value_t = 10)]
    pub cancel_every: u64,
    /// Time between samples.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub sample_every: Duration,
    /// A process to sample (RSS, open fds): `name=pid`; `name` is also its
    /// NATS connection name (the node id).
    #[arg(long = "watch")]
    pub watch: Vec<Watched>,
    /// A process sampled (RSS, open fds) and plotted but not judged:
    /// `name=pid` (nats-server, whose stream keeps an hour of events).
    #[arg(long = "context")]
    pub context: Vec<Watched>,
    /// A watched process's Prometheus endpoint, for its tasks gauge:
    /// `name=http://host:port/metrics`.
    #[arg(long = "metrics")]
    pub metrics: Vec<Named>,
    /// NATS monitoring base URL (`http://127.0.0.1:8222`): subscriptions.
    #[arg(long)]
    pub nats_monitor: Option<String>,
    /// Growth allowed from the middle third's mean to the last third's,
    /// as a fraction of the middle third's (each series also has a small
    /// absolute slack: 4 MiB, 8 fds, 16 tasks, 8 subscriptions).
    #[arg(long, default_value_t = 0.10)]
    pub tolerance: f64,
    /// Write every sample here as CSV.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    #[command(flatten)]
    pub output: Output,
}

/// `name=value`.
#[derive(Debug, Clone)]
pub struct Named {
    pub name: String,
    pub value: String,
}

impl std::str::FromStr for Named {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, value) = s.split_once('=').ok_or("expected name=value")?;
        Ok(Named {
            name: name.into(),
            value: value.into(),
        })
    }
}

/// How the sessions went.
#[derive(Debug, Default)]
struct Tally {
    started: AtomicU64,
    exact: AtomicU64,
    cancelled: AtomicU64,
    errors: Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, e: String) {
        let mut errors = self.errors.lock().expect("not poisoned");
        if errors.len() < 20 {
            errors.push(e);
        }
    }
}

/// What every slot shares.
struct Load {
    a: SoakArgs,
    http: reqwest::Client,
    http_edges: Vec<String>,
    ws_edges: Arc<Vec<String>>,
    live: Arc<Live>,
    tally: Tally,
    stop_at: Instant,
    deadline: Instant,
    next: AtomicU64,
}

pub async fn run(a: SoakArgs) -> anyhow::Result<()> {
    let http_edges: Vec<String> = a
        .edges
        .iter()
        .map(|e| e.trim_end_matches('/').to_owned())
        .collect();
    let ws_edges = Arc::new(
        http_edges
            .iter()
            .map(|e| e.replacen("http", "ws", 1))
            .collect(),
    );
    let session_secs = a.tokens as f64 / a.rate.max(0.1);
    let started = Instant::now();
    let load = Arc::new(Load {
        http: api::http_client(),
        http_edges,
        ws_edges,
        live: Arc::new(Live::new()),
        tally: Tally::default(),
        stop_at: started + a.duration,
        deadline: started + a.duration + Duration::from_secs_f64(session_secs * 3.0 + 60.0),
        next: AtomicU64::new(0),
        a: a.clone(),
    });
    let sampler = Sampler::new(probes(&a), load.http.clone(), a.nats_monitor.clone());
    let stop_sampling = CancellationToken::new();
    let sampling = tokio::spawn(sampler.clone().every(
        a.sample_every,
        started,
        load.live.clone(),
        stop_sampling.clone(),
    ));

    let mut slots = JoinSet::new();
    for slot in 0..a.sessions {
        // Staggered, so that sessions end (and start) all through the run.
        let delay = Duration::from_secs_f64(session_secs * slot as f64 / a.sessions as f64);
        slots.spawn(run_slot(load.clone(), slot as usize, delay));
    }
    while let Some(r) = slots.join_next().await {
        r?;
    }
    stop_sampling.cancel();
    let samples = sampling.await?;
    let series = Series::judge(
        &sampler.columns(),
        &samples,
        a.duration.as_secs_f64(),
        a.tolerance,
    );

    let t = &load.tally;
    let (started_n, exact) = (
        t.started.load(Ordering::Relaxed),
        t.exact.load(Ordering::Relaxed),
    );
    let errors = t.errors.lock().expect("not poisoned").clone();
    let report = json!({
        "scenario": "soak",
        "settings": {
            "edges": load.http_edges, "sessions_at_once": a.sessions, "tokens": a.tokens,
            "rate": a.rate, "duration_s": a.duration.as_secs_f64(),
            "reconnect_every": a.reconnect_every, "cancel_every": a.cancel_every,
            "sample_every_s": a.sample_every.as_secs_f64(), "tolerance": a.tolerance,
        },
        "seconds": started.elapsed().as_secs_f64(),
        "sessions": started_n,
        "sessions_exact": exact,
        "sessions_cancelled": t.cancelled.load(Ordering::Relaxed),
        "events": load.live.get(&load.live.events),
        "reconnects": load.live.get(&load.live.reconnects),
        "errors": errors,
        "samples": samples.len(),
        "series": series,
        "flat": series.iter().all(|s| s.flat),
    });
    if let Some(path) = &a.csv {
        std::fs::write(path, sampler.csv(&samples))?;
    }
    super::soak_series::emit(&a.output, &report, &sampler.columns(), &samples)?;
    anyhow::ensure!(
        exact == started_n,
        "{} of {started_n} sessions were not read exactly",
        started_n - exact
    );
    anyhow::ensure!(
        series.iter().all(|s| s.flat),
        "a series grew after warm-up: see the report"
    );
    Ok(())
}

/// The sampled series: per watched process RSS, fds, tasks (with a metrics
/// URL) and NATS subscriptions (with a monitor URL); then the totals.
fn probes(a: &SoakArgs) -> Vec<(String, Probe)> {
    let mut out = Vec::new();
    for w in &a.watch {
        out.push((format!("{}_rss_mib", w.name), Probe::Rss(w.pid)));
        out.push((format!("{}_fds", w.name), Probe::Fds(w.pid)));
        if let Some(m) = a.metrics.iter().find(|m| m.name == w.name) {
            out.push((format!("{}_tasks", w.name), Probe::Tasks(m.value.clone())));
        }
        if a.nats_monitor.is_some() {
            out.push((format!("{}_nats_subs", w.name), Probe::Subs(w.name.clone())));
        }
    }
    for w in &a.context {
        out.push((
            format!("{}_rss_mib", w.name),
            Probe::Context(Box::new(Probe::Rss(w.pid))),
        ));
        out.push((
            format!("{}_fds", w.name),
            Probe::Context(Box::new(Probe::Fds(w.pid))),
        ));
    }
    if a.nats_monitor.is_some() {
        out.push(("nats_subs_total".into(), Probe::SubsTotal));
    }
    out.push(("connected_clients".into(), Probe::Connected));
    out
}

/// One slot: a session at a time, replaced when it ends, until the load stops.
async fn run_slot(load: Arc<Load>, slot: usize, delay: Duration) {
    tokio::time::sleep(delay).await;
    let a = &load.a;
    while Instant::now() < load.stop_at {
        let n = load.next.fetch_add(1, Ordering::Relaxed);
        let edge = &load.http_edges[n as usize % load.http_edges.len()];
        let body =
            json!({"agent": "mock", "input": {"tokens": a.tokens, "rate": a.rate, "seed": n}});
        let created = Instant::now();
        let session = match api::create(&load.http, edge, &body).await {
            Ok(s) => Arc::new(s),
            Err(e) => {
                load.tally.fail(format!("create: {e:#}"));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        load.tally.started.fetch_add(1, Ordering::Relaxed);
        let cancel = (a.cancel_every > 0 && n % a.cancel_every == a.cancel_every - 1)
            .then(|| tokio::spawn(cancel_halfway(load.clone(), edge.clone(), session.clone())));
        let config = ClientConfig {
            edges: load.ws_edges.clone(),
            first_edge: n as usize,
            check_mock_text: false,
            deadline: load.deadline,
            released: Arc::default(),
            drop_after: (a.reconnect_every > 0).then_some(a.reconnect_every),
            created_ms: None,
        };
        let client = Client::new(session.clone(), config, load.live.clone(), slot, created);
        let r = client.run(CancellationToken::new(), None).await;
        if let Some(c) = cancel {
            let _ = c.await;
        }
        match (r.ended, r.gaps, r.duplicates, &r.error) {
            (true, 0, 0, None) => {
                load.tally.exact.fetch_add(1, Ordering::Relaxed);
            }
            _ => load.tally.fail(format!(
                "{}: ended {} · gaps {} · duplicates {} · error {:?}",
                session.id, r.ended, r.gaps, r.duplicates, r.error
            )),
        }
    }
}

async fn cancel_halfway(load: Arc<Load>, edge: String, session: Arc<Session>) {
    let half = load.a.tokens as f64 / load.a.rate.max(0.1) / 2.0;
    tokio::time::sleep(Duration::from_secs_f64(half)).await;
    if api::control(&load.http, &edge, &session, "cancel")
        .await
        .is_ok()
    {
        load.tally.cancelled.fetch_add(1, Ordering::Relaxed);
    }
}
