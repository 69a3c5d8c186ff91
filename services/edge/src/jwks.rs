//! The identity provider's JWK set (protocol.md §4 "Keys"), as this edge
//! holds it: fetched at start, cached, refreshed every `--jwks-refresh`, and
//! fetched at once when a token names a `kid` the set lacks — at most once
//! per `--jwks-min-refresh`, so a flood of made-up `kid`s cannot hammer the
//! provider. A request verifies against the cached set and never waits on
//! the network, except a token with an unknown `kid`, which waits for that
//! one fetch (bounded by [`FETCH_TIMEOUT`]).
//!
//! While the provider cannot be reached the edge keeps serving: HS256
//! tokens as always, and provider tokens with the keys it last fetched (none
//! when it never could). It says so in its log, in `GET /v1/status` and in
//! `weir_edge_jwks_up`.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::Mutex as AsyncMutex;
use tokio_util::sync::CancellationToken;
use weir_protocol::PublicKeys;
use weir_telemetry::names;

/// Longest wait for the provider's answer.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JWK set accepted (real ones are a few KiB).
pub const MAX_SET_BYTES: usize = 1 << 20;

/// What `GET /v1/status` says about the provider.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Health {
    pub url: String,
    /// `pending` before the first fetch ends, then `ok` or `down`.
    pub state: &'static str,
    /// Usable keys in the cached set.
    pub keys: usize,
    /// When the set was last fetched, in Unix milliseconds.
    pub fetched: Option<u64>,
    /// Why the last fetch failed, while it is failing.
    pub error: Option<String>,
}

pub struct Jwks {
    url: String,
    client: reqwest::Client,
    min_refresh: Duration,
    keys: RwLock<Arc<PublicKeys>>,
    health: Mutex<Health>,
    /// Held while fetching; holds when the last fetch started.
    fetching: AsyncMutex<Option<Instant>>,
}

#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("answered {0}")]
    Status(reqwest::StatusCode),
    #[error("the set is over {MAX_SET_BYTES} bytes")]
    TooLarge,
    #[error(transparent)]
    Parse(#[from] weir_protocol::JwksError),
}

impl Jwks {
    pub fn new(url: &str, min_refresh: Duration) -> anyhow::Result<Jwks> {
        let client = reqwest::Client::builder().timeout(FETCH_TIMEOUT).build()?;
        Ok(Jwks {
            url: url.to_owned(),
            client,
            min_refresh,
            keys: RwLock::new(Arc::new(PublicKeys::empty(url))),
            health: Mutex::new(Health {
                url: url.to_owned(),
                state: "pending",
                keys: 0,
                fetched: None,
                error: None,
            }),
            fetching: AsyncMutex::new(None),
        })
    }

    /// The cached set: what requests verify against.
    pub fn keys(&self) -> Arc<PublicKeys> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn health(&self) -> Health {
        self.health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// For a token naming `kid`, which the cached set lacks: fetches the set
    /// unless another request just did (then its result is used) or the
    /// last fetch started less than `--jwks-min-refresh` ago.
    pub async fn refresh_for(&self, kid: &str) {
        let mut last = self.fetching.lock().await;
        if self.keys().get(kid).is_some() {
            return;
        }
        if last.is_some_and(|t| t.elapsed() < self.min_refresh) {
            metrics::counter!(names::JWKS_REFRESHES_LIMITED).increment(1);
            return;
        }
        *last = Some(Instant::now());
        tracing::debug!(kid, url = %self.url, "token names a key the set lacks: fetching the set");
        self.fetch().await;
    }

    /// Fetches now, then every `period` (every `--jwks-min-refresh` while
    /// the provider fails), until `cancel`.
    pub async fn run(self: Arc<Self>, period: Duration, cancel: CancellationToken) {
        loop {
            let ok = {
                let mut last = self.fetching.lock().await;
                *last = Some(Instant::now());
                self.fetch().await
            };
            let wait = if ok {
                period
            } else {
                self.min_refresh.min(period)
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One fetch; the cached set is replaced only by a good one, so a
    /// provider that is briefly down logs nobody out. The log line comes
    /// first: whoever sees the new state can find it in the log.
    async fn fetch(&self) -> bool {
        match self.get().await {
            Ok(set) => {
                let (count, skipped) = (set.len(), set.skipped());
                if self.health().state != "ok" || skipped > 0 {
                    tracing::info!(url = %self.url, keys = count, skipped, "JWK set loaded");
                }
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
                self.update_health(Ok(count));
                metrics::counter!(names::JWKS_FETCHES, "result" => "ok").increment(1);
                metrics::gauge!(names::JWKS_UP).set(1.0);
                metrics::gauge!(names::JWKS_KEYS).set(count as f64);
                true
            }
            Err(e) => {
                tracing::warn!(
                    url = %self.url, error = %e,
                    "JWK set unreachable: tokens of the identity provider are checked against the \
                     keys last fetched (none before the first success); HS256 tokens are served"
                );
                self.update_health(Err(e.to_string()));
                metrics::counter!(names::JWKS_FETCHES, "result" => "error").increment(1);
                metrics::gauge!(names::JWKS_UP).set(0.0);
                false
            }
        }
    }

    async fn get(&self) -> Result<PublicKeys, FetchError> {
        let mut response = self.client.get(&self.url).send().await?;
        if !response.status().is_success() {
            return Err(FetchError::Status(response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > MAX_SET_BYTES {
                return Err(FetchError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(PublicKeys::parse(&self.url, &body)?)
    }

    /// Records a fetch's outcome.
    fn update_health(&self, outcome: Result<usize, String>) {
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        match outcome {
            Ok(keys) => {
                h.state = "ok";
                h.keys = keys;
                h.fetched = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_millis() as u64);
                h.error = None;
            }
            Err(e) => {
                h.state = "down";
                h.error = Some(e);
            }
        }
    }
}
