//! Tokens (protocol.md §4 "Auth" and "Keys"): JWTs with `sub` and `exp`,
//! either HS256 under one of the cluster's shared secrets or RS256 / ES256 /
//! EdDSA under the key an identity provider publishes ([`crate::jwks`]).
//! [`TokenKey::verify_subject`] is the one check of every token weir reads.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::jwks::PublicKeys;
use crate::{SessionId, ThreadId};

/// RFC 7518 §3.2: an HS256 key at least as long as the hash.
pub const MIN_SECRET_BYTES: usize = 32;

/// The claims weir reads. Only `sub` and `exp` are required (and `iss` /
/// `aud` when the edge is told to require them): a token minted by an
/// application's back end or an identity provider carries what its library
/// puts in, and the rest is ignored.
/// (`iss` and `aud` are checked by `jsonwebtoken` itself, in any of the
/// shapes RFC 7519 allows.)
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
}

/// What weir puts in the tokens it issues.
#[derive(Serialize)]
struct Issued<'a> {
    sub: &'a str,
    exp: u64,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

/// A secret that cannot be used; the node does not start.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KeyError {
    #[error("WEIR_SECRET / --secret holds no secret")]
    NoSecret,
    #[error(
        "WEIR_SECRET / --secret: every secret must be at least {MIN_SECRET_BYTES} bytes \
         (secret {position} of the list has {len})"
    )]
    SecretTooShort { position: usize, len: usize },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TokenError {
    #[error("missing session token")]
    Missing,
    #[error("session token has expired")]
    Expired,
    #[error("session token is for another session")]
    WrongSession,
    /// A token that is not the thread's token (a session token, or another
    /// thread's) on a thread endpoint (protocol.md §9).
    #[error("not a token of this thread (a thread token has sub = thread:<id>)")]
    WrongThread,
    /// An asymmetric token whose `kid` the provider's set lacks: the caller
    /// may fetch the set again and retry.
    #[error(
        "session token names key {kid:?}, which the identity provider's key set does not hold"
    )]
    UnknownKey { kid: String },
    #[error("invalid session token: {0}")]
    Invalid(&'static str),
}

/// The cluster's secrets (the first signs, all verify) and the claims an
/// operator requires, ready to sign and verify.
#[derive(Clone)]
pub struct TokenKey {
    signing: EncodingKey,
    secrets: Vec<DecodingKey>,
    issuer: Option<String>,
    audience: Option<String>,
    /// One per accepted algorithm, built once.
    validations: Vec<(Algorithm, Validation)>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenKey({} secrets, ..)", self.secrets.len())
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl TokenKey {
    /// One secret.
    pub fn new(secret: &[u8]) -> Result<TokenKey, KeyError> {
        TokenKey::from_secrets([secret])
    }

    /// Several secrets, in order: the first signs, every one verifies.
    pub fn from_secrets<S: AsRef<[u8]>>(
        secrets: impl IntoIterator<Item = S>,
    ) -> Result<TokenKey, KeyError> {
        let secrets: Vec<S> = secrets.into_iter().collect();
        for (i, s) in secrets.iter().enumerate() {
            let len = s.as_ref().len();
            if len < MIN_SECRET_BYTES {
                return Err(KeyError::SecretTooShort {
                    position: i + 1,
                    len,
                });
            }
        }
        let first = secrets.first().ok_or(KeyError::NoSecret)?;
        Ok(TokenKey {
            validations: Vec::new(),
            signing: EncodingKey::from_secret(first.as_ref()),
            secrets: secrets
                .iter()
                .map(|s| DecodingKey::from_secret(s.as_ref()))
                .collect(),
            issuer: None,
            audience: None,
        }
        .with_validations())
    }

    /// Requires `iss` = `issuer` in every token (and puts it in issued ones).
    pub fn with_issuer(mut self, issuer: Option<String>) -> TokenKey {
        self.issuer = issuer;
        self.with_validations()
    }

    /// Requires `aud` to name `audience` (and puts it in issued tokens).
    pub fn with_audience(mut self, audience: Option<String>) -> TokenKey {
        self.audience = audience;
        self.with_validations()
    }

    /// A token for `session` valid for `ttl_secs` from now.
    pub fn issue(&self, session: &SessionId, ttl_secs: u64) -> String {
        self.issue_until(session, unix_now() + ttl_secs)
    }

    /// A token for `session` that expires at `exp` (Unix seconds), signed
    /// with the first secret.
    pub fn issue_until(&self, session: &SessionId, exp: u64) -> String {
        self.issue_subject(session.as_str(), exp)
    }

    /// A thread token (`sub` = `thread:<T>`, protocol.md §9) valid for
    /// `ttl_secs` from now, with the same claims as a session token.
    pub fn issue_thread(&self, thread: &ThreadId, ttl_secs: u64) -> String {
        self.issue_subject(&thread.subject(), unix_now() + ttl_secs)
    }

    fn issue_subject(&self, subject: &str, exp: u64) -> String {
        let claims = Issued {
            sub: subject,
            exp,
            iat: unix_now(),
            iss: self.issuer.as_deref(),
            aud: self.audience.as_deref(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.signing)
            .expect("HS256 signing does not fail")
    }

    /// Checks a session token with the shared secrets alone.
    pub fn verify(&self, token: &str, session: &SessionId) -> Result<(), TokenError> {
        self.verify_subject(token, session.as_str(), None)
    }

    /// The one check of every token: an accepted algorithm whose key is the
    /// one the token names, its signature, `exp` (and `nbf` when present),
    /// `iss` / `aud` when required, and `sub` = `subject`. HS256 tokens are
    /// verified with the secrets only, asymmetric ones with `provider`'s key
    /// for their `kid` only: a public key never serves as an HMAC secret,
    /// and `alg: none` is no algorithm at all.
    pub fn verify_subject(
        &self,
        token: &str,
        subject: &str,
        provider: Option<&PublicKeys>,
    ) -> Result<(), TokenError> {
        if self.verified_subject(token, provider)? != subject {
            return Err(TokenError::WrongSession);
        }
        Ok(())
    }

    /// Every check of [`TokenKey::verify_subject`] but the last: the `sub`
    /// of a valid token, for a caller that accepts more than one subject (a
    /// session's own token or its thread's).
    pub fn verified_subject(
        &self,
        token: &str,
        provider: Option<&PublicKeys>,
    ) -> Result<String, TokenError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| TokenError::Invalid("not a JWT with a known algorithm"))?;
        let claims = match header.alg {
            Algorithm::HS256 => self.verify_hs256(token)?,
            alg if crate::jwks::PUBLIC_ALGORITHMS.contains(&alg) => {
                let provider = provider.ok_or(TokenError::Invalid(
                    "asymmetric tokens need an identity provider (--jwks-url)",
                ))?;
                let kid = header
                    .kid
                    .ok_or(TokenError::Invalid("token names no key (kid)"))?;
                let key = provider
                    .get(&kid)
                    .ok_or(TokenError::UnknownKey { kid: kid.clone() })?;
                if key.algorithm != alg {
                    return Err(TokenError::Invalid("algorithm does not match its key"));
                }
                self.decode(token, &key.key, alg)?
            }
            _ => return Err(TokenError::Invalid("algorithm not accepted")),
        };
        Ok(claims.sub)
    }

    /// The first secret whose signature matches decides.
    fn verify_hs256(&self, token: &str) -> Result<Claims, TokenError> {
        const BAD_SIGNATURE: TokenError = TokenError::Invalid("signature does not verify");
        let mut result = Err(BAD_SIGNATURE);
        for secret in &self.secrets {
            result = self.decode(token, secret, Algorithm::HS256);
            if !matches!(&result, Err(e) if *e == BAD_SIGNATURE) {
                break;
            }
        }
        result
    }

    fn decode(&self, token: &str, key: &DecodingKey, alg: Algorithm) -> Result<Claims, TokenError> {
        use jsonwebtoken::errors::ErrorKind;
        let validation = self
            .validations
            .iter()
            .find_map(|(a, v)| (*a == alg).then_some(v))
            .ok_or(TokenError::Invalid("algorithm not accepted"))?;
        let data =
            jsonwebtoken::decode::<Claims>(token, key, validation).map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidSignature => TokenError::Invalid("signature does not verify"),
                ErrorKind::ImmatureSignature => TokenError::Invalid("not valid yet (nbf)"),
                ErrorKind::InvalidIssuer => TokenError::Invalid("wrong issuer (iss)"),
                ErrorKind::InvalidAudience => TokenError::Invalid("wrong audience (aud)"),
                ErrorKind::MissingRequiredClaim(_) => {
                    TokenError::Invalid("a required claim is missing")
                }
                _ => TokenError::Invalid("malformed"),
            })?;
        Ok(data.claims)
    }

    fn with_validations(mut self) -> TokenKey {
        let algorithms = std::iter::once(Algorithm::HS256).chain(crate::jwks::PUBLIC_ALGORITHMS);
        self.validations = algorithms.map(|a| (a, self.validation(a))).collect();
        self
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut validation = Validation::new(alg);
        validation.leeway = 0;
        let mut required = vec!["exp", "sub"];
        // A `nbf` in the future, when present, is honoured.
        validation.validate_nbf = true;
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        // Without a configured audience, an `aud` the minter chose is its
        // own business: weir has nothing to check it against.
        validation.validate_aud = self.audience.is_some();
        if let Some(aud) = &self.audience {
            validation.set_audience(&[aud]);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        validation
    }
}

#[cfg(test)]
#[path = "token_tests.rs"]
mod tests;
