//! An identity provider's public keys (protocol.md §4 "Keys"): a JWK set
//! parsed into the keys weir accepts, by `kid`. Pure: the edge fetches the
//! set and hands its bytes here.
//!
//! A set belongs to the URL it came from, and a token's `kid` is looked up
//! in the set of the provider weir was pointed at, never in whichever set
//! happens to hold that `kid`: the cache key is (set URL, kid).

use std::collections::HashMap;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// The asymmetric algorithms weir accepts, one per kind of key.
pub const PUBLIC_ALGORITHMS: [Algorithm; 3] =
    [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JwksError {
    #[error("the JWK set is not JSON with a \"keys\" array: {0}")]
    NotASet(String),
}

/// One verification key and the one algorithm it verifies.
#[derive(Clone)]
pub struct PublicKey {
    pub(crate) key: DecodingKey,
    pub(crate) algorithm: Algorithm,
}

impl PublicKey {
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

/// The usable keys of one JWK set, by `kid`, and the URL it came from.
#[derive(Clone)]
pub struct PublicKeys {
    url: String,
    keys: HashMap<String, PublicKey>,
    skipped: usize,
}

impl std::fmt::Debug for PublicKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kids: Vec<_> = self.keys.keys().collect();
        kids.sort();
        f.debug_struct("PublicKeys")
            .field("url", &self.url)
            .field("kids", &kids)
            .field("skipped", &self.skipped)
            .finish()
    }
}

#[derive(serde::Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

impl PublicKeys {
    /// No keys (a provider not fetched yet).
    pub fn empty(url: &str) -> PublicKeys {
        PublicKeys {
            url: url.to_owned(),
            keys: HashMap::new(),
            skipped: 0,
        }
    }

    /// Parses the set fetched from `url`. Keys weir cannot use are skipped
    /// and counted: without a `kid`, for encryption, symmetric (`oct`: a
    /// shared secret has no business in a public set), of another curve or
    /// size, or whose `alg` is not the one weir pairs with their kind.
    pub fn parse(url: &str, body: &[u8]) -> Result<PublicKeys, JwksError> {
        let raw: RawSet =
            serde_json::from_slice(body).map_err(|e| JwksError::NotASet(e.to_string()))?;
        let mut set = PublicKeys::empty(url);
        for value in raw.keys {
            let usable = serde_json::from_value::<Jwk>(value)
                .ok()
                .and_then(|jwk| Some((jwk.common.key_id.clone()?, usable(&jwk)?)));
            match usable {
                Some((kid, key)) => {
                    set.keys.insert(kid, key);
                }
                None => set.skipped += 1,
            }
        }
        Ok(set)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn get(&self, kid: &str) -> Option<&PublicKey> {
        self.keys.get(kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Keys of the set that weir could not use.
    pub fn skipped(&self) -> usize {
        self.skipped
    }
}

/// The key and its algorithm, when weir accepts this JWK.
fn usable(jwk: &Jwk) -> Option<PublicKey> {
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    let algorithm = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        _ => return None,
    };
    if let Some(stated) = jwk.common.key_algorithm {
        if stated != KeyAlgorithm::from(algorithm) {
            return None;
        }
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(PublicKey { key, algorithm })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SET: &str = include_str!("../tests/keys/jwks.json");

    #[test]
    fn the_keys_of_a_set_are_found_by_kid_with_their_algorithm() {
        let set = PublicKeys::parse("https://idp/jwks", SET.as_bytes()).unwrap();
        assert_eq!(set.len(), 3);
        assert_eq!(set.skipped(), 0);
        assert_eq!(set.get("rsa-1").unwrap().algorithm(), Algorithm::RS256);
        assert_eq!(set.get("ec-1").unwrap().algorithm(), Algorithm::ES256);
        assert_eq!(set.get("ed-1").unwrap().algorithm(), Algorithm::EdDSA);
        assert!(set.get("nope").is_none());
        assert_eq!(set.url(), "https://idp/jwks");
    }

    #[test]
    fn keys_weir_cannot_use_are_skipped_and_counted() {
        let mut keys: Vec<serde_json::Value> = serde_json::from_str::<serde_json::Value>(SET)
            .unwrap()["keys"]
            .as_array()
            .unwrap()
            .clone();
        let rsa = keys[0].clone();
        let mut no_kid = rsa.clone();
        no_kid.as_object_mut().unwrap().remove("kid");
        let mut enc = rsa.clone();
        enc["kid"] = "enc".into();
        enc["use"] = "enc".into();
        let mut other_alg = rsa.clone();
        other_alg["kid"] = "ps".into();
        other_alg["alg"] = "PS256".into();
        let oct = serde_json::json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"});
        let junk = serde_json::json!({"kty": "RSA", "kid": "junk", "n": 1});
        let unknown = serde_json::json!({"kty": "XYZ", "kid": "xyz"});
        keys.extend([no_kid, enc, other_alg, oct, junk, unknown]);
        let body = serde_json::to_vec(&serde_json::json!({ "keys": keys })).unwrap();
        let set = PublicKeys::parse("u", &body).unwrap();
        assert_eq!((set.len(), set.skipped()), (3, 6));
        for kid in ["enc", "ps", "hmac", "junk", "xyz"] {
            assert!(set.get(kid).is_none(), "{kid}");
        }
    }

    #[test]
    fn a_body_that_is_not_a_set_is_an_error() {
        for body in [&b"<html>"[..], b"{}", b"{\"keys\": 3}", b""] {
            assert!(PublicKeys::parse("u", body).is_err(), "{body:?}");
        }
    }
}
