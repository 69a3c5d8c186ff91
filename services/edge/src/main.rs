use clap::Parser;

/// weir edge node: HTTP API, WebSocket and SSE for agent sessions.
#[derive(Parser)]
#[command(name = "weir-edge", version)]
struct Cli {
    #[command(flatten)]
    config: weir_edge::EdgeConfig,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    weir_telemetry::exit(weir_edge::main(Cli::parse().config).await)
}
