use clap::Parser;

/// weir producer worker: runs agents for queued sessions and publishes their events.
#[derive(Parser)]
#[command(name = "weir-producer", version)]
struct Cli {
    #[command(flatten)]
    config: weir_producer::ProducerConfig,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    weir_telemetry::exit(weir_producer::main(Cli::parse().config).await)
}
