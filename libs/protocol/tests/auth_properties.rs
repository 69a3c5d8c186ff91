//! Property tests of session ids and session tokens (the stable-toolchain
//! counterpart of `fuzz/`'s session_id and session_token targets).

use proptest::prelude::*;
use weir_protocol::{SessionId, TokenError, TokenKey};

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
        let key = TokenKey::new(b"secret");
        let token = key.issue(&a, ttl);
        prop_assert_eq!(key.verify(&token, &a), Ok(()));
        prop_assert_eq!(key.verify(&token, &b), Err(TokenError::WrongSession));
        prop_assert_eq!(TokenKey::new(b"other").verify(&token, &a), Err(TokenError::Invalid));
    }

    #[test]
    fn an_expired_token_is_refused(id in valid_id(), ago in 1u64..1 << 30) {
        let key = TokenKey::new(b"secret");
        let token = key.issue_until(&id, unix_now().saturating_sub(ago));
        prop_assert_eq!(key.verify(&token, &id), Err(TokenError::Expired));
    }

    #[test]
    fn a_changed_token_is_refused(
        id in valid_id(), at in any::<prop::sample::Index>(), byte in 0u8..128,
    ) {
        let key = TokenKey::new(b"secret");
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
        let key = TokenKey::new(b"secret");
        let result = key.verify(&token, &id);
        prop_assert!(matches!(result, Err(TokenError::Invalid | TokenError::Expired)), "{:?}", result);
    }
}
