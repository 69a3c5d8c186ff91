use clap::Parser;

/// weir edge node: HTTP API, WebSocket and SSE for agent sessions.
#[derive(Parser)]
#[command(name = "weir-edge", version)]
struct Cli {
    #[command(flatten)]
    config: weir_edge::EdgeConfig,
}

/// jemalloc instead of glibc's malloc: glibc spent a quarter of the edge's
/// and producer's CPU per event allocating and freeing (BENCHMARKS.md,
/// "jemalloc, and a memory test that measures what it says").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    weir_telemetry::exit(weir_edge::main(Cli::parse().config).await)
}
