//! The producer's configuration: `--flags` mirrored by `WEIR_*` variables.

use std::net::SocketAddr;
use std::time::Duration;

use weir_cluster::ClusterConfig;
use weir_telemetry::LogFormat;

#[derive(Debug, Clone, clap::Args)]
pub struct ProducerConfig {
    /// NATS, Redis, node id, retention: what every node shares.
    #[command(flatten)]
    pub cluster: ClusterConfig,
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, env = "WEIR_METRICS_LISTEN", default_value = "127.0.0.1:9091")]
    pub metrics_listen: SocketAddr,
    /// Runs this worker executes at once.
    #[arg(long, env = "WEIR_CONCURRENCY", default_value_t = 256)]
    pub concurrency: usize,
    /// Most events in one bus message (only what is already waiting is batched).
    #[arg(long, env = "WEIR_MAX_BATCH", default_value_t = 256)]
    pub max_batch: usize,
    /// Events an agent may produce ahead of what is published, per run.
    #[arg(long, env = "WEIR_RUN_BUFFER", default_value_t = 1024)]
    pub run_buffer: usize,
    /// On SIGTERM, how long running sessions may take to finish before they
    /// are ended `failed` with code `producer_shutdown`.
    #[arg(long, env = "WEIR_DRAIN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain_grace: Duration,
    /// Log format: human or json.
    #[arg(long, env = "WEIR_LOG_FORMAT", default_value = "human")]
    pub log_format: LogFormat,
    /// The LLM endpoint of the `openai` agent.
    #[command(flatten)]
    pub openai: OpenAiConfig,
}

/// Where the `openai` agent sends its requests. Per worker only: a session
/// chooses its model and options, never the URL or the key.
#[derive(Clone, clap::Args)]
pub struct OpenAiConfig {
    /// Base URL of an OpenAI-compatible API; requests go to `{base}/chat/completions`.
    #[arg(
        id = "openai_base_url",
        value_name = "URL",
        long = "openai-base-url",
        env = "WEIR_OPENAI_BASE_URL",
        default_value = "https://api.openai.com/v1"
    )]
    pub base_url: String,
    /// Sent as `Authorization: Bearer <key>` when set.
    #[arg(
        id = "openai_api_key",
        value_name = "KEY",
        long = "openai-api-key",
        env = "WEIR_OPENAI_API_KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
    /// Model used when the session's input names none.
    #[arg(
        id = "openai_model",
        value_name = "MODEL",
        long = "openai-model",
        env = "WEIR_OPENAI_MODEL",
        default_value = "gpt-4o-mini"
    )]
    pub model: String,
    /// Longest wait from sending the request to the first streamed chunk.
    #[arg(
        id = "openai_first_token_timeout",
        value_name = "DURATION",
        long = "openai-first-token-timeout",
        env = "WEIR_OPENAI_FIRST_TOKEN_TIMEOUT",
        default_value = "30s",
        value_parser = humantime::parse_duration,
    )]
    pub first_token_timeout: Duration,
    /// Longest wait between two streamed chunks (time spent paused does not count).
    #[arg(
        id = "openai_idle_timeout",
        value_name = "DURATION",
        long = "openai-idle-timeout",
        env = "WEIR_OPENAI_IDLE_TIMEOUT",
        default_value = "30s",
        value_parser = humantime::parse_duration,
    )]
    pub idle_timeout: Duration,
    /// Largest single server-sent event accepted from the endpoint.
    #[arg(
        id = "openai_max_event_bytes",
        value_name = "BYTES",
        long = "openai-max-event-bytes",
        env = "WEIR_OPENAI_MAX_EVENT_BYTES",
        default_value_t = 1 << 20,
    )]
    pub max_event_bytes: usize,
}

impl OpenAiConfig {
    /// The defaults: OpenAI's API, `gpt-4o-mini`, no key.
    pub fn local() -> OpenAiConfig {
        OpenAiConfig {
            base_url: "https://api.openai.com/v1".into(),
            api_key: None,
            model: "gpt-4o-mini".into(),
            first_token_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            max_event_bytes: 1 << 20,
        }
    }
}

/// Leaves the key out, so that logging a config never leaks it.
impl std::fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("model", &self.model)
            .field("first_token_timeout", &self.first_token_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_event_bytes", &self.max_event_bytes)
            .finish()
    }
}

impl ProducerConfig {
    /// Defaults, for tests and the embedded mode.
    pub fn local() -> ProducerConfig {
        ProducerConfig {
            cluster: ClusterConfig::local(),
            metrics_listen: ([127, 0, 0, 1], 9091).into(),
            concurrency: 256,
            max_batch: 256,
            run_buffer: 1024,
            drain_grace: Duration::from_secs(10),
            log_format: LogFormat::Human,
            openai: OpenAiConfig::local(),
        }
    }

    /// This worker's id, shown as the session's `producer` (default: producer-<host>-<pid>).
    pub fn node_id(&self) -> String {
        self.cluster.node_id("producer")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Args, Command, FromArgMatches};

    #[test]
    fn openai_flags_parse_and_the_key_stays_out_of_debug() {
        let cmd = ProducerConfig::augment_args(Command::new("weir-producer"));
        cmd.clone().debug_assert();
        let matches = cmd
            .try_get_matches_from([
                "weir-producer",
                "--openai-base-url",
                "http://127.0.0.1:8000/v1",
                "--openai-api-key",
                "sk-secret",
                "--openai-model",
                "llama3",
                "--openai-first-token-timeout",
                "2m",
                "--openai-idle-timeout",
                "5s",
            ])
            .unwrap();
        let config = ProducerConfig::from_arg_matches(&matches).unwrap();
        let openai = &config.openai;
        assert_eq!(openai.base_url, "http://127.0.0.1:8000/v1");
        assert_eq!(openai.api_key.as_deref(), Some("sk-secret"));
        assert_eq!(openai.model, "llama3");
        assert_eq!(openai.first_token_timeout, Duration::from_secs(120));
        assert_eq!(openai.idle_timeout, Duration::from_secs(5));
        assert!(!format!("{config:?}").contains("sk-secret"));
    }
}
