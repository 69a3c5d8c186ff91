//! The edge's configuration: `--flags` mirrored by `WEIR_*` variables.

use std::net::SocketAddr;
use std::time::Duration;

use weir_cluster::ClusterConfig;
use weir_protocol::{KeyError, TokenKey};
use weir_telemetry::LogFormat;

/// The keys of session tokens (protocol.md §4 "Keys"), the same on every
/// edge; `weir dev` takes them too.
#[derive(Clone, clap::Args)]
pub struct KeysConfig {
    /// HS256 secrets, comma-separated, each at least 32 bytes: the first
    /// signs the tokens this edge issues, every one verifies. To rotate: add
    /// the new secret after the old one on every edge, then put it first,
    /// then drop the old one once its tokens have expired (README "Keys").
    #[arg(
        long,
        env = "WEIR_SECRET",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub secret: Vec<String>,
    /// JWK set of an identity provider whose RS256 / ES256 / EdDSA tokens
    /// open sessions too (the key named by the token's `kid`).
    #[arg(long, env = "WEIR_JWKS_URL")]
    pub jwks_url: Option<String>,
    /// How often the JWK set is fetched again.
    #[arg(long, env = "WEIR_JWKS_REFRESH", default_value = "5m", value_parser = humantime::parse_duration)]
    pub jwks_refresh: Duration,
    /// A token naming a `kid` the set lacks fetches the set at once, but at
    /// most this often (and this often while the provider is down).
    #[arg(long, env = "WEIR_JWKS_MIN_REFRESH", default_value = "10s", value_parser = humantime::parse_duration)]
    pub jwks_min_refresh: Duration,
    /// When set, every token needs `iss` = this.
    #[arg(long, env = "WEIR_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// When set, every token's `aud` must name this.
    #[arg(long, env = "WEIR_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
}

/// The secrets never reach a log.
impl std::fmt::Debug for KeysConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeysConfig")
            .field("secret", &format!("<{} redacted>", self.secret.len()))
            .field("jwks_url", &self.jwks_url)
            .field("jwks_refresh", &self.jwks_refresh)
            .field("jwks_min_refresh", &self.jwks_min_refresh)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_audience", &self.jwt_audience)
            .finish()
    }
}

impl KeysConfig {
    /// One secret, no provider.
    pub fn secret(secret: &str) -> KeysConfig {
        KeysConfig {
            secret: vec![secret.to_owned()],
            jwks_url: None,
            jwks_refresh: Duration::from_secs(300),
            jwks_min_refresh: Duration::from_secs(10),
            jwt_issuer: None,
            jwt_audience: None,
        }
    }

    /// The secrets and required claims, ready to sign and verify.
    pub fn token_key(&self) -> Result<TokenKey, KeyError> {
        Ok(TokenKey::from_secrets(&self.secret)?
            .with_issuer(self.jwt_issuer.clone())
            .with_audience(self.jwt_audience.clone()))
    }

    pub fn validate(&self) -> Result<(), String> {
        self.token_key().map_err(|e| e.to_string())?;
        if let Some(url) = &self.jwks_url {
            let parsed = reqwest::Url::parse(url)
                .map_err(|e| format!("--jwks-url / WEIR_JWKS_URL {url:?}: {e}"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(format!("--jwks-url / WEIR_JWKS_URL {url:?}: not http(s)"));
            }
        }
        if self.jwks_refresh.is_zero() || self.jwks_min_refresh.is_zero() {
            return Err("--jwks-refresh and --jwks-min-refresh must be more than 0".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct EdgeConfig {
    /// HTTP, WebSocket and SSE address.
    #[arg(long, env = "WEIR_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// NATS, Redis, node id, retention: what every node shares.
    #[command(flatten)]
    pub cluster: ClusterConfig,
    /// Secrets and identity provider of session tokens.
    #[command(flatten)]
    pub keys: KeysConfig,
    /// When set, `POST /v1/sessions` needs `Authorization: Bearer <key>`.
    #[arg(long, env = "WEIR_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Agents sessions may ask for, besides `external` (comma-separated).
    #[arg(
        long,
        env = "WEIR_AGENTS",
        default_value = "mock",
        value_delimiter = ','
    )]
    pub agents: Vec<String>,
    /// An `external` session that no producer claims within this ends
    /// `failed` (error code `unclaimed`).
    #[arg(long, env = "WEIR_CLAIM_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub claim_timeout: Duration,
    /// Lifetime of the session tokens this edge issues.
    #[arg(long, env = "WEIR_TOKEN_TTL", default_value = "1h", value_parser = humantime::parse_duration)]
    pub token_ttl: Duration,
    /// Base URL put in `ws_url`/`events_url` (default: from the request's Host).
    #[arg(long, env = "WEIR_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Per-connection buffer: most events held for one client.
    #[arg(long, env = "WEIR_CONN_BUFFER", default_value_t = 256)]
    pub conn_buffer: usize,
    /// Stop pulling a connection's events at this fill of its buffer...
    #[arg(long, env = "WEIR_HIGH_WATERMARK", default_value_t = 0.8)]
    pub high_watermark: f64,
    /// ...and pull again once it has drained to this fill.
    #[arg(long, env = "WEIR_LOW_WATERMARK", default_value_t = 0.3)]
    pub low_watermark: f64,
    /// Most events coalesced into one frame.
    #[arg(long, env = "WEIR_MAX_FRAME_EVENTS", default_value_t = 256)]
    pub max_frame_events: usize,
    /// Most bytes of event JSON in one frame (one larger event goes alone):
    /// what a connection's socket writer holds at most.
    #[arg(long, env = "WEIR_MAX_FRAME_BYTES", default_value_t = crate::frames::DEFAULT_MAX_FRAME_BYTES)]
    pub max_frame_bytes: usize,
    /// Recent events kept per session for live fan-out; clients further
    /// behind are fed from the log.
    #[arg(long, env = "WEIR_SESSION_RING", default_value_t = 1024)]
    pub session_ring: usize,
    /// Subscribers reading the log at once on this node (the rest wait).
    #[arg(long, env = "WEIR_MAX_LOG_READERS", default_value_t = 64)]
    pub max_log_readers: usize,
    /// Bytes of log pages cached per session for the clients behind its
    /// ring, shared by all of them (0: none; each page is then re-read).
    /// Edge memory for one session is this plus the connections' buffers.
    #[arg(long, env = "WEIR_LOG_CACHE", default_value_t = crate::hub::DEFAULT_LOG_CACHE)]
    pub log_cache: usize,
    /// Bytes of encoded frames kept per session, shared by its WebSocket and
    /// SSE clients: a frame for a range of seqs is built once on the node
    /// (0: each client encodes its own).
    #[arg(long, env = "WEIR_FRAME_CACHE", default_value_t = crate::frames::DEFAULT_FRAME_CACHE)]
    pub frame_cache: usize,
    /// Events per second each client of a session receives, at most, when
    /// the session was created without a `pace` of its own (0 = as they come).
    #[arg(long, env = "WEIR_PACE", default_value_t = 0)]
    pub pace: u32,
    /// Heartbeat frame after this much idle time.
    #[arg(long, env = "WEIR_HEARTBEAT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub heartbeat: Duration,
    /// A client that does not take a frame for this long is closed with 4008.
    #[arg(long, env = "WEIR_WRITE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub write_timeout: Duration,
    /// A connection must send its complete request headers within this
    /// (slowloris); also how long an idle keep-alive connection stays open.
    #[arg(long, env = "WEIR_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,
    /// Largest client frame, in bytes; larger ones close the connection with 1009.
    #[arg(long, env = "WEIR_MAX_CLIENT_FRAME", default_value_t = 65536)]
    pub max_client_frame: usize,
    /// Most WebSocket + SSE connections on this node; more get 503.
    #[arg(long, env = "WEIR_MAX_CONNECTIONS", default_value_t = 20000)]
    pub max_connections: usize,
    /// Sessions created per second, at most, per API key and per client
    /// address (a token bucket; 0 = no limit). Over it: 429 + `Retry-After`.
    #[arg(long, env = "WEIR_CREATE_RATE", default_value_t = 0)]
    pub create_rate: u32,
    /// Creations a key or address may make at once above the rate.
    #[arg(long, env = "WEIR_CREATE_BURST", default_value_t = 20)]
    pub create_burst: u32,
    /// Largest request body, in bytes.
    #[arg(long, env = "WEIR_MAX_BODY", default_value_t = 65536)]
    pub max_body: usize,
    /// Largest AG-UI `MESSAGES_SNAPSHOT` built for a reconnect, in bytes of
    /// message text; a larger one ends the call with `RUN_ERROR`.
    #[arg(long, env = "WEIR_MAX_SNAPSHOT", default_value_t = 8 << 20)]
    pub max_snapshot: usize,
    /// On SIGTERM, how long to wait for connections to close after `reconnect`.
    #[arg(long, env = "WEIR_DRAIN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain_grace: Duration,
    /// Log format: human or json.
    #[arg(long, env = "WEIR_LOG_FORMAT", default_value = "human")]
    pub log_format: LogFormat,
}

impl EdgeConfig {
    /// Defaults, for tests and the embedded mode.
    pub fn local(secret: &str) -> EdgeConfig {
        EdgeConfig {
            listen: ([127, 0, 0, 1], 8080).into(),
            cluster: ClusterConfig::local(),
            keys: KeysConfig::secret(secret),
            api_key: None,
            agents: vec!["mock".into()],
            claim_timeout: Duration::from_secs(60),
            token_ttl: Duration::from_secs(3600),
            public_url: None,
            conn_buffer: 256,
            high_watermark: 0.8,
            low_watermark: 0.3,
            max_frame_events: 256,
            max_frame_bytes: crate::frames::DEFAULT_MAX_FRAME_BYTES,
            session_ring: 1024,
            max_log_readers: 64,
            log_cache: crate::hub::DEFAULT_LOG_CACHE,
            frame_cache: crate::frames::DEFAULT_FRAME_CACHE,
            pace: 0,
            heartbeat: Duration::from_secs(15),
            write_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            max_client_frame: 65536,
            max_connections: 20000,
            create_rate: 0,
            create_burst: 20,
            max_body: 65536,
            max_snapshot: 8 << 20,
            drain_grace: Duration::from_secs(10),
            log_format: LogFormat::Human,
        }
    }

    /// This node's id, sent in `hello` frames (default: `edge-<host>-<pid>`).
    pub fn node_id(&self) -> String {
        self.cluster.node_id("edge")
    }

    /// Checks the settings that flags alone cannot.
    pub fn validate(&self) -> Result<(), String> {
        self.keys.validate()?;
        let (lo, hi) = (self.low_watermark, self.high_watermark);
        if !(0.0 < hi && hi <= 1.0 && 0.0 <= lo && lo < hi) {
            return Err("watermarks must satisfy 0 <= low < high <= 1".into());
        }
        if self.header_timeout.is_zero() {
            return Err("--header-timeout must be more than 0".into());
        }
        if [
            self.conn_buffer,
            self.max_frame_events,
            self.max_frame_bytes,
            self.session_ring,
        ]
        .contains(&0)
        {
            return Err("buffer sizes must be at least 1".into());
        }
        for agent in &self.agents {
            weir_bus::check_agent_name(agent)
                .map_err(|e| format!("--agents / WEIR_AGENTS: {e}"))?;
        }
        Ok(())
    }

    /// Buffer fills (in events) where pulling stops and starts again.
    pub fn watermarks(&self) -> (usize, usize) {
        let cap = self.conn_buffer as f64;
        let high = ((cap * self.high_watermark).ceil() as usize).clamp(1, self.conn_buffer);
        let low = ((cap * self.low_watermark).floor() as usize).min(high - 1);
        (high, low)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        keys: KeysConfig,
    }

    const NEW: &str = "the-new-secret-0123456789abcdef-0123";
    const OLD: &str = "the-old-secret-0123456789abcdef-0123";

    fn keys(args: &[&str]) -> KeysConfig {
        Cli::try_parse_from(std::iter::once("weir").chain(args.iter().copied()))
            .unwrap()
            .keys
    }

    #[test]
    fn comma_separated_secrets_are_a_rotation_whose_first_signs() {
        let k = keys(&["--secret", &format!("{NEW},{OLD}")]);
        assert_eq!(k.secret, [NEW, OLD]);
        let key = k.token_key().unwrap();
        let id = weir_protocol::SessionId::parse("a").unwrap();
        let issued = key.issue(&id, 60);
        assert!(TokenKey::new(NEW.as_bytes())
            .unwrap()
            .verify(&issued, &id)
            .is_ok());
        assert!(TokenKey::new(OLD.as_bytes())
            .unwrap()
            .verify(&issued, &id)
            .is_err());
    }

    #[test]
    fn bad_key_settings_are_refused_with_what_to_change() {
        let short = keys(&["--secret", &format!("{NEW},short")]).validate();
        assert!(short.unwrap_err().contains("at least 32 bytes"));
        assert!(keys(&[]).validate().unwrap_err().contains("WEIR_SECRET"));
        for url in ["not a url", "ftp://idp/jwks"] {
            let e = keys(&["--secret", NEW, "--jwks-url", url])
                .validate()
                .unwrap_err();
            assert!(e.contains("--jwks-url"), "{e}");
        }
        let e = keys(&["--secret", NEW, "--jwks-min-refresh", "0s"]).validate();
        assert!(e.is_err());
        assert!(keys(&["--secret", NEW, "--jwks-url", "https://idp/jwks"])
            .validate()
            .is_ok());
    }

    #[test]
    fn secrets_are_not_in_the_debug_output() {
        let shown = format!("{:?}", keys(&["--secret", &format!("{NEW},{OLD}")]));
        assert!(!shown.contains(NEW) && !shown.contains(OLD), "{shown}");
    }

    #[test]
    fn an_agent_name_that_cannot_be_a_subject_token_is_refused_at_start() {
        let mut c = EdgeConfig::local("a-long-enough-secret-of-32-bytes-at-least");
        assert!(c.validate().is_ok());
        c.agents = vec!["mock".into(), "team.a".into()];
        let e = c.validate().unwrap_err();
        assert!(e.contains("team.a") && e.contains("--agents"), "{e}");
    }
}
