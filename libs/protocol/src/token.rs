//! Session tokens: HS256 JWTs with `sub` = session id and `exp`, signed with
//! the cluster's shared secret (protocol.md §4). A token opens one session.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::SessionId;

/// The claims weir reads. Only `sub` and `exp` are required: a token
/// minted by an application's back end with any JWT library carries what
/// that library puts in (`iat`, `nbf`, `aud`, custom claims, or nothing
/// more), and all of it is optional here.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TokenError {
    #[error("missing session token")]
    Missing,
    #[error("session token has expired")]
    Expired,
    #[error("session token is for another session")]
    WrongSession,
    #[error("invalid session token")]
    Invalid,
}

/// The shared secret, ready to sign and verify.
#[derive(Clone)]
pub struct TokenKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl TokenKey {
    pub fn new(secret: &[u8]) -> TokenKey {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        // An `aud` the minting back end chose is its own business: weir
        // has no audience to check it against.
        validation.validate_aud = false;
        // A `nbf` in the future, when present, is honoured.
        validation.validate_nbf = true;
        TokenKey {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// A token for `session` valid for `ttl_secs` from now.
    pub fn issue(&self, session: &SessionId, ttl_secs: u64) -> String {
        self.issue_until(session, unix_now() + ttl_secs)
    }

    /// A token for `session` that expires at `exp` (Unix seconds).
    pub fn issue_until(&self, session: &SessionId, exp: u64) -> String {
        let claims = Claims {
            sub: session.as_str().to_owned(),
            exp,
            iat: Some(unix_now()),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing does not fail")
    }

    /// Checks signature, expiry and that the token names `session`.
    pub fn verify(&self, token: &str, session: &SessionId) -> Result<(), TokenError> {
        use jsonwebtoken::errors::ErrorKind;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        if data.claims.sub != session.as_str() {
            return Err(TokenError::WrongSession);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_open_exactly_their_session() {
        let key = TokenKey::new(b"secret");
        let a = SessionId::parse("a").unwrap();
        let b = SessionId::parse("b").unwrap();
        let t = key.issue(&a, 60);
        assert_eq!(key.verify(&t, &a), Ok(()));
        assert_eq!(key.verify(&t, &b), Err(TokenError::WrongSession));
        assert_eq!(
            TokenKey::new(b"other").verify(&t, &a),
            Err(TokenError::Invalid)
        );
        assert_eq!(key.verify("garbage", &a), Err(TokenError::Invalid));
        let old = key.issue_until(&a, unix_now() - 10);
        assert_eq!(key.verify(&old, &a), Err(TokenError::Expired));
    }

    /// Signs `claims` as any JWT library would: the header and claims as
    /// JSON, base64url, HMAC-SHA256 over both (here by the jsonwebtoken
    /// crate directly, not through `TokenKey::issue`).
    fn minted(claims: serde_json::Value, secret: &[u8]) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    #[test]
    fn any_hs256_jwt_with_sub_and_exp_opens_its_session() {
        let key = TokenKey::new(b"secret");
        let a = SessionId::parse("a").unwrap();
        let exp = unix_now() + 60;
        let bare = minted(serde_json::json!({"sub": "a", "exp": exp}), b"secret");
        assert_eq!(key.verify(&bare, &a), Ok(()));
        let rich = minted(
            serde_json::json!({"sub": "a", "exp": exp, "iat": 1, "nbf": 1,
                               "aud": "app", "iss": "backend", "role": ["x"]}),
            b"secret",
        );
        assert_eq!(key.verify(&rich, &a), Ok(()));
        let early = minted(
            serde_json::json!({"sub": "a", "exp": exp, "nbf": exp}),
            b"secret",
        );
        assert_eq!(key.verify(&early, &a), Err(TokenError::Invalid));
        for missing in [
            serde_json::json!({"exp": exp}),
            serde_json::json!({"sub": "a"}),
        ] {
            let t = minted(missing, b"secret");
            assert_eq!(key.verify(&t, &a), Err(TokenError::Invalid));
        }
    }
}
