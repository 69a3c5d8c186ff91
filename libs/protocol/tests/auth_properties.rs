//! Property tests of session ids and session tokens (the stable-toolchain
//! counterpart of `fuzz/`'s session_id and session_token targets): HS256
//! under the secrets, and RS256 / ES256 / EdDSA under a JWK set's keys.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use proptest::prelude::*;
use weir_protocol::{PublicKeys, SessionId, TokenError, TokenKey};

const SECRET: &[u8] = b"property-test-secret-of-32-bytes";
const OTHER: &[u8] = b"another-property-test-secret-xyz";

fn key() -> TokenKey {
    TokenKey::new(SECRET).unwrap()
}

fn provider() -> PublicKeys {
    PublicKeys::parse("https://idp/jwks", include_bytes!("keys/jwks.json")).unwrap()
}

/// The test keys of tests/keys/, with their algorithm and kid.
fn signers() -> Vec<(Algorithm, &'static str, EncodingKey)> {
    vec![
        (
            Algorithm::RS256,
            "rsa-1",
            EncodingKey::from_rsa_pem(include_bytes!("keys/rsa.pem")).unwrap(),
        ),
        (
            Algorithm::ES256,
            "ec-1",
            EncodingKey::from_ec_pem(include_bytes!("keys/ec.pem")).unwrap(),
        ),
        (
            Algorithm::EdDSA,
            "ed-1",
            EncodingKey::from_ed_pem(include_bytes!("keys/ed.pem")).unwrap(),
        ),
    ]
}

/// A provider's token for `sub` until `exp`, by signer `which` (0..3).
fn provider_token(which: usize, sub: &str, exp: u64) -> String {
    static SIGNERS: std::sync::OnceLock<Vec<(Algorithm, &'static str, EncodingKey)>> =
        std::sync::OnceLock::new();
    let (alg, kid, signer) = &SIGNERS.get_or_init(signers)[which];
    let mut header = Header::new(*alg);
    header.kid = Some((*kid).into());
    jsonwebtoken::encode(
        &header,
        &serde_json::json!({"sub": sub, "exp": exp}),
        signer,
    )
    .unwrap()
}

const ID_RULE: &str = "^[A-Za-z0-9_-]{1,64}$";

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn valid_id() -> impl Strategy<Value = SessionId> {
    "[A-Za-z0-9_-]{1,64}".prop_map(|s| SessionId::parse(&s).unwrap())
}

/// Two different valid ids.
fn two_ids() -> impl Strategy<Value = (SessionId, SessionId)> {
    (valid_id(), valid_id()).prop_filter("different ids", |(a, b)| a != b)
}

proptest! {
    #[test]
    fn a_session_id_is_accepted_exactly_when_it_matches_the_rule(
        s in prop_oneof!["[A-Za-z0-9_-]{0,70}", "[ -~]{0,70}", any::<String>()],
    ) {
        let rule = regex::Regex::new(ID_RULE).unwrap();
        let parsed = SessionId::parse(&s);
        prop_assert_eq!(parsed.is_ok(), rule.is_match(&s), "{:?}", s);
        let through_serde = serde_json::from_value::<SessionId>(serde_json::Value::String(s.clone()));
        prop_assert_eq!(through_serde.ok(), parsed.clone().ok());
        if let Ok(id) = parsed {
            prop_assert_eq!(id.as_str(), &s);
            prop_assert_eq!(id.events_subject().split('.').count(), 3);
        } else {
            prop_assert!(!parsed.unwrap_err().to_string().is_empty());
        }
    }

    #[test]
    fn a_token_opens_its_session_and_no_other((a, b) in two_ids(), ttl in 2u64..1 << 30) {
        let key = key();
        let token = key.issue(&a, ttl);
        prop_assert_eq!(key.verify(&token, &a), Ok(()));
        prop_assert_eq!(key.verify(&token, &b), Err(TokenError::WrongSession));
        let other = TokenKey::new(OTHER).unwrap();
        prop_assert!(matches!(other.verify(&token, &a), Err(TokenError::Invalid(_))));
        let rotating = TokenKey::from_secrets([OTHER, SECRET]).unwrap();
        prop_assert_eq!(rotating.verify(&token, &a), Ok(()));
    }

    #[test]
    fn an_expired_token_is_refused(id in valid_id(), ago in 1u64..1 << 30) {
        let key = key();
        let token = key.issue_until(&id, unix_now().saturating_sub(ago));
        prop_assert_eq!(key.verify(&token, &id), Err(TokenError::Expired));
    }

    #[test]
    fn a_changed_token_is_refused(
        id in valid_id(), at in any::<prop::sample::Index>(), byte in 0u8..128,
    ) {
        let key = key();
        let token = key.issue(&id, 3600);
        let mut bytes = token.clone().into_bytes();
        bytes[at.index(token.len())] = byte;
        let changed = String::from_utf8(bytes).unwrap();
        prop_assume!(changed != token);
        prop_assert!(key.verify(&changed, &id).is_err(), "{} accepted", changed);
    }

    #[test]
    fn any_string_is_refused_as_a_token(
        id in valid_id(), token in prop_oneof!["[A-Za-z0-9_.-]{0,200}", any::<String>()],
    ) {
        let result = key().verify_subject(&token, id.as_str(), Some(&provider()));
        prop_assert!(
            matches!(result, Err(TokenError::Invalid(_) | TokenError::Expired | TokenError::UnknownKey { .. })),
            "{:?}", result
        );
    }
}

// Asymmetric signatures are slow in a debug build: fewer cases, which
// still cover every algorithm many times over.
proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn a_provider_token_opens_its_session_and_no_other(
        (a, b) in two_ids(), ttl in 2u64..1 << 30, which in 0usize..3,
    ) {
        let token = provider_token(which, a.as_str(), unix_now() + ttl);
        let (key, p) = (key(), provider());
        prop_assert_eq!(key.verify_subject(&token, a.as_str(), Some(&p)), Ok(()));
        prop_assert_eq!(key.verify_subject(&token, b.as_str(), Some(&p)), Err(TokenError::WrongSession));
        // Never with the secrets alone, nor under another provider's set.
        prop_assert!(key.verify(&token, &a).is_err());
        prop_assert!(key.verify_subject(&token, a.as_str(), Some(&PublicKeys::empty("https://other/jwks"))).is_err());
    }

    #[test]
    fn a_changed_provider_token_is_refused(
        id in valid_id(), which in 0usize..3, at in any::<prop::sample::Index>(), byte in 0u8..128,
    ) {
        let token = provider_token(which, id.as_str(), unix_now() + 3600);
        let mut bytes = token.clone().into_bytes();
        bytes[at.index(token.len())] = byte;
        let changed = String::from_utf8(bytes).unwrap();
        prop_assume!(changed != token);
        let result = key().verify_subject(&changed, id.as_str(), Some(&provider()));
        prop_assert!(result.is_err(), "{} accepted", changed);
    }

    #[test]
    fn an_expired_provider_token_is_refused(id in valid_id(), ago in 1u64..1 << 30, which in 0usize..3) {
        let token = provider_token(which, id.as_str(), unix_now().saturating_sub(ago));
        let result = key().verify_subject(&token, id.as_str(), Some(&provider()));
        prop_assert_eq!(result, Err(TokenError::Expired));
    }
}
