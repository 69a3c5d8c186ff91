//! `weir-bench`: the load tool. It measures weir the way users see it —
//! sessions created through the HTTP API (or published by an outside
//! producer), read over WebSocket from one or more edges — and reports
//! delivered events/s and frames/s, latency from each event's `ts` to its
//! receipt (HDR histogram), time to first event, reconnects and
//! reconnect → resume time, and a check of every client against the log.
//!
//! - [`load`]: steady, burst, saturation, fan-out and failover (one runner,
//!   presets).
//! - [`chat`] (its report in `chat/report.rs`): time to first token of chats started at once, by one
//!   request (`POST /v1/chat`), by create-then-connect and by a baseline.
//! - [`connections`]: idle subscribed connections and the edge's RSS;
//!   [`memory`]: the edge's RSS over a streaming run, per subscriber.
//! - [`limit`]: raw NATS core and JetStream numbers, for ratios.
//! - [`soak`]: long steady load with churn; [`soak_series`]: its samples and verdict.
//! - [`relay`]: a TCP relay that delays what it forwards, standing in for the
//!   network between zones (`scripts/bench-cluster.sh zones`).
//! - [`client`]: one resuming WebSocket client; [`api`]: the HTTP API;
//!   [`external`]: publishing as an outside producer.
//! - [`verify`]: every client checked against its session's log.
//! - [`stats`], [`report`], [`procinfo`]: measuring and reporting.

use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

pub mod api;
pub mod chat;
pub mod client;
pub mod connections;
pub mod external;
pub mod limit;
pub mod load;
pub mod memory;
pub mod procinfo;
pub mod relay;
pub mod report;
pub mod soak;
pub mod soak_series;
pub mod stats;
pub mod verify;

use load::{LoadArgs, Preset};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Debug, clap::Subcommand)]
pub enum Scenario {
    /// Many sessions at a fixed rate, one client each (default 200 × 50 tokens/s for 30 s).
    Steady(LoadArgs),
    /// Many sessions created at once (default 200 × 50 tokens/s for 10 s), each
    /// client connecting as soon as its own create returns: the first events'
    /// latency apart from the rest, and time to first event.
    Burst(LoadArgs),
    /// Sessions producing as fast as they can (default 20 × 50,000 tokens).
    Saturation(LoadArgs),
    /// One session, many subscribers on one edge (default 2,000 × 20,000 tokens, gated).
    Fanout(LoadArgs),
    /// Steady load over two or more edges while one is killed (--kill-pid, --kill-after).
    Failover(LoadArgs),
    /// Chats sending at once (default 200 over the edges given): time from
    /// the user's request to the first token, by `POST /v1/chat`, by
    /// create-then-connect, and by a resumable-stream server (--baseline).
    Chat(chat::ChatArgs),
    /// Idle subscribed connections on one edge: the edge's RSS per connection.
    Connections(connections::ConnArgs),
    /// Raw NATS core pub→sub and JetStream publish throughput and latency.
    Limit(limit::LimitArgs),
    /// Steady load for a long while (default 40 sessions at once for 10 min,
    /// clients reconnecting): RSS, fds, tasks and NATS subscriptions sampled
    /// and judged flat or growing.
    Soak(soak::SoakArgs),
    /// A TCP relay that forwards each connection with a delay (± jitter) per
    /// chunk, each direction, in order: the network between zones, on one
    /// machine. Runs until SIGINT or SIGTERM.
    Relay(relay::RelayArgs),
}

/// Output flags shared by every scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct Output {
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report to this file.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
    /// Write the latency distribution as an SVG plot to this file.
    #[arg(long)]
    pub plot: Option<std::path::PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

pub async fn main(args: BenchArgs) -> anyhow::Result<()> {
    let secs = Duration::from_secs;
    let preset = |name, sessions, rate, duration, tokens, subscribers, gate| Preset {
        name,
        sessions,
        rate,
        duration,
        tokens,
        subscribers,
        gate,
        all_at_once: false,
    };
    match args.scenario {
        Scenario::Steady(a) => {
            load::run(a, preset("steady", 200, 50.0, secs(30), 0, 1, false)).await?;
        }
        Scenario::Burst(a) => {
            let burst = Preset {
                all_at_once: true,
                ..preset("burst", 200, 50.0, secs(10), 0, 1, false)
            };
            load::run(a, burst).await?;
        }
        Scenario::Saturation(a) => {
            load::run(a, preset("saturation", 20, 0.0, secs(0), 50_000, 1, false)).await?;
        }
        Scenario::Fanout(a) => {
            load::run(a, preset("fanout", 1, 0.0, secs(0), 20_000, 2000, true)).await?;
        }
        Scenario::Failover(a) => {
            anyhow::ensure!(a.edges.len() >= 2, "failover needs two or more --edge");
            anyhow::ensure!(a.kill_pid.is_some(), "failover needs --kill-pid");
            load::run(a, preset("failover", 200, 50.0, secs(30), 0, 1, false)).await?;
        }
        Scenario::Chat(a) => {
            chat::run(a).await?;
        }
        Scenario::Connections(a) => {
            connections::run(a).await?;
        }
        Scenario::Soak(a) => {
            soak::run(a).await?;
        }
        Scenario::Relay(a) => {
            relay::run(a).await?;
        }
        Scenario::Limit(a) => {
            let l = limit::run(&a).await?;
            match a.json {
                true => println!("{}", serde_json::to_string_pretty(&l)?),
                false => println!("{}", report::limit_table(&l)),
            }
        }
    }
    Ok(())
}

pub(crate) fn progress_bar(out: &Output, len: u64, unit: &str) -> ProgressBar {
    if out.quiet || out.json {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{elapsed_precise}} [{{bar:40}}] {{pos}}/{{len}} {unit} · {{msg}}"
        ))
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar
}

/// Updates the bar from the live counters every 200 ms.
pub(crate) fn spawn_progress(
    bar: ProgressBar,
    live: Arc<stats::Live>,
    count_connections: bool,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut last = (0u64, std::time::Instant::now());
        loop {
            tick.tick().await;
            let events = live.get(&live.events);
            let connected = live.get(&live.connected);
            let rate = (events - last.0) as f64 / last.1.elapsed().as_secs_f64().max(1e-3);
            last = (events, std::time::Instant::now());
            bar.set_position(if count_connections { connected } else { events });
            bar.set_message(format!(
                "{rate:.0} events/s · {connected} connected · {} reconnects",
                live.get(&live.reconnects)
            ));
        }
    })
}

/// Prints the report (table or JSON), and writes the JSON and plot files.
pub(crate) fn emit(
    out: &Output,
    report: &report::Report,
    latency: &[(f64, f64)],
) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(report)?;
    if out.json {
        println!("{json}");
    } else {
        println!("{}", report.table());
    }
    if let Some(path) = &out.out {
        std::fs::write(path, &json)?;
    }
    if let Some(path) = &out.plot {
        let title = format!(
            "weir-bench {}: latency from event ts to receipt ({} events)",
            report.scenario, report.latency_ms.count
        );
        std::fs::write(path, report::svg(&title, latency))?;
    }
    Ok(())
}
