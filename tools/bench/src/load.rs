//! The streaming scenarios (steady, saturation, fan-out, failover): create
//! sessions through the HTTP API (or publish them as an outside producer),
//! read every one with WebSocket clients spread over the edges, optionally
//! kill an edge mid-run, then check every client against the log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::stream::{self, StreamExt};
use serde_json::json;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::api::{self, Session};
use super::client::{Client, ClientConfig, ClientResult};
use super::external::{self, Publishing};
use super::limit::{self, LimitArgs};
use super::procinfo::{CpuWindow, Watched};
use super::report::Report;
use super::stats::{distribution, Live, Percentiles};
use super::verify::{self, VerifyMode};
use super::Output;

#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Edge base URL(s), `http://host:port` (repeat or comma-separate).
    /// Sessions and clients are spread over them round-robin; a client that
    /// loses its connection moves to the next one.
    #[arg(long = "edge", required = true, value_delimiter = ',')]
    pub edges: Vec<String>,
    /// Sessions to run.
    #[arg(long)]
    pub sessions: Option<u64>,
    /// Tokens per second per session (0 = as fast as possible).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Tokens per session (default: rate × --duration).
    #[arg(long)]
    pub tokens: Option<u64>,
    /// How long each session streams at its rate (sets the default --tokens).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// WebSocket clients per session.
    #[arg(long)]
    pub subscribers: Option<u64>,
    /// Connect every client before any session produces (mock sessions are
    /// paused right after creation and resumed once every client has its hello).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub gate: Option<bool>,
    /// Clients join one after another, evenly over this long, each reading
    /// its session from the start (no gate): late joiners catch up.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub join_over: Option<Duration>,
    /// Publish the events from this tool as an outside producer (agent
    /// `external`), straight to JetStream, instead of the mock agent.
    #[arg(long)]
    pub external: bool,
    /// NATS for --external and --with-limit.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// --external at rate 0: most events per message.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// --external: publishes awaiting their ack at once, per session.
    #[arg(long, default_value_t = 4)]
    pub in_flight: usize,
    /// Sessions created at once (default 64; burst: all of them).
    #[arg(long)]
    pub create_concurrency: Option<usize>,
    /// How clients are checked at the end.
    #[arg(long, value_enum, default_value = "history")]
    pub verify: VerifyMode,
    /// Also recompute each mock token's text from the seed while reading.
    #[arg(long)]
    pub check_text: bool,
    /// Give up on the run after this long.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Kill (SIGKILL) this process during the run: an edge, for failover.
    #[arg(long)]
    pub kill_pid: Option<u32>,
    /// When to kill --kill-pid, counted from the start of streaming.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub kill_after: Duration,
    /// Report the CPU use of these processes over the run: `name=pid`.
    #[arg(long = "watch")]
    pub watch: Vec<Watched>,
    /// After the run, measure NATS's raw limits (`weir-bench limit`) and
    /// report this run as ratios of them.
    #[arg(long)]
    pub with_limit: bool,
    /// Seconds per limit measurement.
    #[arg(long, default_value_t = 3.0)]
    pub limit_seconds: f64,
    #[command(flatten)]
    pub output: Output,
}

/// Defaults a scenario gives the flags left unset.
pub struct Preset {
    pub name: &'static str,
    pub sessions: u64,
    pub rate: f64,
    pub duration: Duration,
    /// Tokens at rate 0.
    pub tokens: u64,
    pub subscribers: u64,
    pub gate: bool,
    /// Create every session at once instead of 64 at a time.
    pub all_at_once: bool,
}

/// A run's resolved settings.
struct Plan {
    sessions: u64,
    rate: f64,
    tokens: u64,
    subscribers: u64,
    gate: bool,
    /// Sessions created at once.
    creating: usize,
    join_over: Duration,
    http_edges: Vec<String>,
    ws_edges: Arc<Vec<String>>,
}

impl Plan {
    fn new(a: &LoadArgs, p: &Preset) -> Plan {
        let rate = a.rate.unwrap_or(p.rate);
        let duration = a.duration.unwrap_or(p.duration);
        let tokens = a.tokens.unwrap_or(if rate > 0.0 {
            (rate * duration.as_secs_f64()).round().max(1.0) as u64
        } else {
            p.tokens
        });
        let http_edges: Vec<String> = a
            .edges
            .iter()
            .map(|e| e.trim_end_matches('/').to_owned())
            .collect();
        let ws_edges = http_edges
            .iter()
            .map(|e| e.replacen("http", "ws", 1))
            .collect();
        let sessions = a.sessions.unwrap_or(p.sessions);
        let creating = a.create_concurrency.unwrap_or(match p.all_at_once {
            true => sessions as usize,
            false => 64,
        });
        Plan {
            sessions,
            creating: creating.max(1),
            rate,
            tokens,
            subscribers: a.subscribers.unwrap_or(p.subscribers).max(1),
            gate: a.gate.unwrap_or(p.gate) && a.join_over.is_none(),
            join_over: a.join_over.unwrap_or_default(),
            http_edges,
            ws_edges: Arc::new(ws_edges),
        }
    }

    fn settings(&self, a: &LoadArgs) -> serde_json::Value {
        json!({
            "sessions": self.sessions, "rate": self.rate, "tokens": self.tokens,
            "subscribers": self.subscribers, "gate": self.gate, "edges": self.http_edges,
            "created_at_once": self.creating,
            "join_over_s": self.join_over.as_secs_f64(),
            "producer": if a.external { "external (this tool)" } else { "mock agent" },
            "kill_pid": a.kill_pid, "kill_after_s": a.kill_pid.map(|_| a.kill_after.as_secs_f64()),
        })
    }
}

/// Everything spawned for one session.
struct Started {
    session: Arc<Session>,
    clients: Vec<tokio::task::JoinHandle<ClientResult>>,
}

pub async fn run(a: LoadArgs, preset: Preset) -> anyhow::Result<Report> {
    let plan = Plan::new(&a, &preset);
    let http = api::http_client();
    let live = Arc::new(Live::new());
    let stop = CancellationToken::new();
    let deadline = Instant::now() + a.timeout;
    let js = match a.external {
        true => Some(external::connect(&a.nats_url).await?),
        false => None,
    };
    let bar = super::progress_bar(
        &a.output,
        plan.sessions * plan.subscribers * (plan.tokens + 1),
        "events",
    );
    let progress = super::spawn_progress(bar.clone(), live.clone(), false);
    let cpu = CpuWindow::start(&a.watch);
    let rss = super::memory::RssWatch::start(&a.watch);
    let (hello_tx, mut hello_rx) = tokio::sync::mpsc::channel::<()>(1024);
    let run_started = Instant::now();
    let released = Arc::new(std::sync::OnceLock::new());

    // Create the sessions (and, ungated, start their clients at once).
    let started: Vec<anyhow::Result<Started>> = stream::iter(0..plan.sessions)
        .map(|i| {
            let (http, plan, live, stop) = (&http, &plan, live.clone(), stop.clone());
            let (hello_tx, released) = (hello_tx.clone(), released.clone());
            let external = a.external;
            let check_text = a.check_text && !plan.gate;
            async move {
                let edge = &plan.http_edges[i as usize % plan.http_edges.len()];
                let body = if external {
                    json!({"agent": "external"})
                } else {
                    json!({"agent": "mock", "input": {"tokens": plan.tokens, "rate": plan.rate, "seed": i}})
                };
                let created_at = Instant::now();
                let created_ms = weir_protocol::now_ms();
                let mut session = api::create(http, edge, &body).await?;
                live.create.record(i as usize, created_at.elapsed());
                session.seed = i;
                if plan.gate && !external {
                    api::control(http, edge, &session, "pause").await?;
                }
                let session = Arc::new(session);
                let clients = (0..plan.subscribers)
                    .map(|k| {
                        let n = i * plan.subscribers + k;
                        let config = ClientConfig {
                            edges: plan.ws_edges.clone(),
                            first_edge: n as usize,
                            check_mock_text: check_text,
                            deadline,
                            released: released.clone(),
                            drop_after: None,
                            created_ms: (!plan.gate).then_some(created_ms),
                        };
                        let join = plan.join_over.mul_f64(k as f64 / plan.subscribers as f64);
                        let (session, live) = (session.clone(), live.clone());
                        let (stop, hello_tx) = (stop.clone(), hello_tx.clone());
                        tokio::spawn(async move {
                            tokio::time::sleep(join).await;
                            let at = if join.is_zero() { created_at } else { Instant::now() };
                            let client = Client::new(session, config, live, n as usize, at);
                            client.run(stop, Some(hello_tx)).await
                        })
                    })
                    .collect();
                Ok(Started { session, clients })
            }
        })
        .buffer_unordered(plan.creating)
        .collect()
        .await;
    drop(hello_tx);
    let started: Vec<Started> = started.into_iter().collect::<anyhow::Result<_>>()?;
    let created_in = run_started.elapsed();
    let mut extra = serde_json::Map::new();
    extra.insert(
        "sessions_created_in_s".into(),
        json!(created_in.as_secs_f64()),
    );

    let mut publishers = JoinSet::new();
    let mut release = Instant::now();
    if plan.gate {
        let want = plan.sessions * plan.subscribers;
        let mut got = 0;
        while got < want {
            match tokio::time::timeout_at(deadline.into(), hello_rx.recv()).await {
                Ok(Some(())) => got += 1,
                _ => anyhow::bail!("only {got} of {want} clients subscribed before the timeout"),
            }
        }
        extra.insert(
            "subscribed_in_s".into(),
            json!(run_started.elapsed().as_secs_f64()),
        );
        release = Instant::now();
        let _ = released.set(release);
        if !a.external {
            let resumed: Vec<anyhow::Result<()>> = stream::iter(&started)
                .map(|s| {
                    let edge = &plan.http_edges[s.session.seed as usize % plan.http_edges.len()];
                    api::control(&http, edge, &s.session, "resume")
                })
                .buffer_unordered(plan.creating)
                .collect()
                .await;
            resumed.into_iter().collect::<anyhow::Result<()>>()?;
        }
    }
    if let Some(js) = &js {
        let p = Publishing {
            tokens: plan.tokens,
            rate: plan.rate,
            batch: a.batch,
            in_flight: a.in_flight,
        };
        for s in &started {
            let (js, session) = (js.clone(), s.session.clone());
            publishers.spawn(async move { external::publish_session(&js, &session, p).await });
        }
    }
    let kill = a.kill_pid.map(|pid| {
        let (at, origin) = (release + a.kill_after, run_started);
        tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            let r = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            json!({"pid": pid, "at_s": origin.elapsed().as_secs_f64(), "ok": r.is_ok()})
        })
    });

    let mut results: Vec<(Arc<Session>, Vec<ClientResult>)> = Vec::new();
    for s in started {
        let mut rs = Vec::new();
        for c in s.clients {
            rs.push(c.await.context("client task")?);
        }
        results.push((s.session, rs));
    }
    while let Some(r) = publishers.join_next().await {
        r.context("publisher task")??;
    }
    stop.cancel();
    progress.abort();
    bar.finish_and_clear();
    let cpu = cpu.finish();
    if let Some(rss) = rss {
        rss.finish(plan.sessions * plan.subscribers, &mut extra);
    }
    if let Some(k) = kill {
        if k.is_finished() {
            extra.insert("killed".into(), k.await.unwrap_or_default());
        } else {
            k.abort();
            extra.insert("killed".into(), json!("not before the run ended"));
        }
    }

    let verify = verify::check(a.verify, &plan.http_edges, &http, &results).await;
    let window = live.delivery_window().as_secs_f64().max(1e-6);
    let events = live.get(&live.events);
    let frames = live.get(&live.frames);
    let latency = live.latency.merged();
    let mut report = Report {
        scenario: preset.name.into(),
        settings: plan.settings(&a),
        sessions: plan.sessions,
        clients: plan.sessions * plan.subscribers,
        seconds: window,
        events,
        frames,
        events_per_s: events as f64 / window,
        frames_per_s: frames as f64 / window,
        events_per_frame: events as f64 / frames.max(1) as f64,
        latency_ms: Percentiles::of(&latency),
        first_events_latency_ms: Percentiles::of(&live.first_events.merged()),
        later_events_latency_ms: Percentiles::of(&live.later_events.merged()),
        first_event_ms: Percentiles::of(&live.first_event.merged()),
        create_request_ms: Percentiles::of(&live.create.merged()),
        create_to_hello_ms: Percentiles::of(&live.hello.merged()),
        create_to_first_ts_ms: Percentiles::of(&live.first_ts.merged()),
        reconnects: live.get(&live.reconnects),
        reconnect_to_resume_ms: Percentiles::of(&live.resume.merged()),
        verify,
        cpu_cores_without_tool: super::report::cores_without_tool(&cpu),
        cpu,
        extra,
        ..Report::default()
    };
    if a.with_limit {
        let l = limit::run(&LimitArgs {
            nats_url: a.nats_url.clone(),
            seconds: a.limit_seconds,
            watch: a.watch.clone(),
            ..LimitArgs::defaults()
        })
        .await?;
        report.ratios = ratios(&report, &l);
        report.limit = Some(l);
    }
    super::emit(&a.output, &report, &distribution(&latency))?;
    Ok(report)
}

/// This run's throughput and latency against the raw limits.
fn ratios(r: &Report, l: &limit::LimitReport) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    if let Some(core) = l.row("nats core pub→sub, full") {
        m.insert(
            "events/s ÷ nats core pub→sub events/s".into(),
            json!(round(r.events_per_s / core.events_per_s.max(1.0))),
        );
    }
    if let Some(js) = l.row("jetstream publish, 256") {
        m.insert(
            format!("events/s ÷ {} events/s", js.what),
            json!(round(r.events_per_s / js.events_per_s.max(1.0))),
        );
    }
    if let Some(p) = l
        .row("nats core pub→sub, paced")
        .and_then(|p| p.latency_ms.clone())
    {
        m.insert(
            "latency p99 ÷ nats core paced p99".into(),
            json!(round(r.latency_ms.p99 / p.p99.max(1e-3))),
        );
    }
    if let Some(p) = l.row("jetstream paced").and_then(|p| p.latency_ms.clone()) {
        m.insert(
            "latency p99 ÷ jetstream stored → republished p99".into(),
            json!(round(r.latency_ms.p99 / p.p99.max(1e-3))),
        );
    }
    m
}
