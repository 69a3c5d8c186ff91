//! Telemetry shared by every weir service: tracing set-up (human or JSON
//! logs), the Prometheus exporter, the name of every metric ([`names`]) and
//! one table of what each one is, histogram buckets included ([`catalog`]).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub mod catalog;
pub mod names;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "human" => Ok(LogFormat::Human),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("log format is human or json, not {s:?}")),
        }
    }
}

/// Installs the global tracing subscriber (filter from `RUST_LOG`, default
/// [`DEFAULT_LOG_FILTER`]). Calling it twice is harmless.
pub fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// `info`, but only errors from the `redis` crate: its cluster client
/// warns several times a second for each node it cannot reach while a
/// master is down (measured: ~30 lines per node in a 2.5 s failover),
/// where the store logs the outage once.
pub const DEFAULT_LOG_FILTER: &str = "info,redis=error";

/// The process's Prometheus recorder, installed on first use.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let mut builder = PrometheusBuilder::new();
        for (name, buckets) in names::histograms() {
            builder = builder
                .set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)
                .expect("bucket lists are not empty");
        }
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (several services in one
        // test process); then this handle renders an empty registry.
        let installed = metrics::set_global_recorder(recorder).is_ok();
        names::describe();
        if installed {
            keep_up(handle.clone());
        }
        handle
    })
}

/// How often histogram samples are folded into their buckets. What the
/// recorder holds between two upkeeps is 8 bytes (and its block) per
/// sample: at 2.5M deliveries/s a 250 ms interval held ~29 MiB at the peak
/// of a 2,000-subscriber fan-out (heaptrack); 50 ms holds a fifth of it
/// for 20 wake-ups a second of one thread.
const UPKEEP: std::time::Duration = std::time::Duration::from_millis(50);

/// Folds histogram samples into their buckets every [`UPKEEP`]. The recorder
/// keeps every sample until upkeep runs, and without this it ran only when
/// `/metrics` was scraped: an edge delivering 2M events/s to a fan-out held
/// 8 bytes per delivered event (80 MB for 10M deliveries) until a scrape.
fn keep_up(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP);
            handle.run_upkeep();
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no metrics upkeep thread: histograms grow until scraped");
    }
}

/// Renders the metrics in the Prometheus text format.
pub fn render() -> String {
    let handle = prometheus();
    handle.run_upkeep();
    handle.render()
}

/// [`render`], after setting the gauge `tasks` ([`names::EDGE_TASKS`],
/// [`names::PRODUCER_TASKS`]) to the number of tasks alive on the calling
/// tokio runtime: what a soak watches for a leak of tasks. Several services
/// in one process (`weir dev`, tests) count each other's tasks too.
pub fn render_with_tasks(tasks: &'static str) -> String {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        metrics::gauge!(tasks).set(runtime.metrics().num_alive_tasks() as f64);
    }
    render()
}

/// A token cancelled on the first SIGINT or SIGTERM: the one shutdown signal
/// every service drains on.
pub fn shutdown_on_signal() -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown signal received");
        cancel.cancel();
    });
    token
}

/// A node id for a service that was given none: `<role>-<host>-<pid>`.
pub fn default_node_id(role: &str) -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
    format!("{role}-{host}-{}", std::process::id())
}

/// A service's exit: on an error, one line on stderr (`error: <cause>:
/// <cause>…`, no backtrace) and exit code 1.
pub fn exit<E: std::fmt::Display>(result: Result<(), E>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
