use clap::{Parser, Subcommand};

/// weir: stream AI agent output to browsers, resumable on any node.
#[derive(Parser)]
#[command(name = "weir", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One process: edge + producer on the in-memory bus and store, demo page at /.
    Dev(weir::dev::DevConfig),
    /// An edge node (same as `weir-edge`).
    Edge(Box<weir_edge::EdgeConfig>),
    /// A producer worker (same as `weir-producer`).
    Producer(weir_producer::ProducerConfig),
}

/// jemalloc instead of glibc's malloc: glibc spent a quarter of the edge's
/// and producer's CPU per event allocating and freeing (BENCHMARKS.md,
/// "jemalloc, and a memory test that measures what it says").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let result = match Cli::parse().command {
        Command::Dev(config) => dev(config).await,
        Command::Edge(config) => weir_edge::main(*config).await,
        Command::Producer(config) => weir_producer::main(config).await,
    };
    weir_telemetry::exit(result)
}

async fn dev(config: weir::dev::DevConfig) -> anyhow::Result<()> {
    weir_telemetry::init_tracing(weir_telemetry::LogFormat::Human);
    weir_telemetry::prometheus();
    let listener = weir_cluster::bind(config.listen, "--listen / WEIR_LISTEN").await?;
    weir::dev::run(config, listener, weir_telemetry::shutdown_on_signal()).await
}
