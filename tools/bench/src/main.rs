use clap::Parser;

/// weir-bench: load scenarios against running edges (and NATS's raw limits,
/// for ratios); see BENCHMARKS.md for what each measures.
#[derive(Parser)]
#[command(name = "weir-bench", version)]
struct Cli {
    #[command(flatten)]
    args: weir_bench::BenchArgs,
}

/// The same allocator as the services it measures (jemalloc), so that the
/// tool's own CPU figures in BENCHMARKS.md stay comparable.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    weir_telemetry::exit(weir_bench::main(Cli::parse().args).await)
}
