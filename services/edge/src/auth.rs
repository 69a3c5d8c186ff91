//! Who may read or control a session: a token checked by the one rule of
//! protocol.md §4 ("Auth", "Keys") — the cluster's secrets for HS256, the
//! identity provider's cached keys for RS256 / ES256 / EdDSA.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use weir_protocol::{SessionId, TokenError, TokenKey};

use crate::config::KeysConfig;
use crate::jwks::Jwks;

pub struct Auth {
    /// The secrets (the first signs what this edge issues) and required claims.
    pub keys: TokenKey,
    /// The provider's set, when `--jwks-url` is given.
    pub jwks: Option<Arc<Jwks>>,
    refresh: std::time::Duration,
}

impl Auth {
    /// From validated config ([`KeysConfig::validate`]).
    pub fn new(config: &KeysConfig) -> anyhow::Result<Auth> {
        let keys = config.token_key()?;
        let jwks = match &config.jwks_url {
            Some(url) => Some(Arc::new(Jwks::new(url, config.jwks_min_refresh)?)),
            None => None,
        };
        Ok(Auth {
            keys,
            jwks,
            refresh: config.jwks_refresh,
        })
    }

    /// Starts fetching the provider's set (at once, then periodically).
    pub fn start(&self, cancel: CancellationToken) {
        if let Some(jwks) = &self.jwks {
            tokio::spawn(jwks.clone().run(self.refresh, cancel));
        }
    }

    /// A token for `session`.
    pub async fn session(&self, token: &str, session: &SessionId) -> Result<(), TokenError> {
        self.verify(token, session.as_str()).await
    }

    /// Any token weir reads, for the subject it must name.
    pub async fn verify(&self, token: &str, subject: &str) -> Result<(), TokenError> {
        if self.subject(token).await? != subject {
            return Err(TokenError::WrongSession);
        }
        Ok(())
    }

    /// The `sub` of a valid token (a session's id, or `thread:<T>`), after
    /// every other check. Waits on the network only for a `kid` the cached
    /// set lacks (one rate-limited fetch).
    pub async fn subject(&self, token: &str) -> Result<String, TokenError> {
        let first = self.check(token);
        match (&first, &self.jwks) {
            (Err(TokenError::UnknownKey { kid }), Some(jwks)) => {
                jwks.refresh_for(kid).await;
                self.check(token)
            }
            _ => first,
        }
    }

    fn check(&self, token: &str) -> Result<String, TokenError> {
        let provider = self.jwks.as_ref().map(|j| j.keys());
        self.keys.verified_subject(token, provider.as_deref())
    }
}
