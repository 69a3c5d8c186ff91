//! Unit tests of [`super::TokenKey`]: secrets, rotation, the provider's
//! keys, and every refusal of protocol.md §4 "Keys".

use super::*;
use serde_json::{json, Value};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const OLD: &[u8] = b"an-older-secret-of-at-least-32-bytes";
const SET: &str = include_str!("../tests/keys/jwks.json");
const RSA: &str = include_str!("../tests/keys/rsa.pem");
const RSA_PUBLIC: &str = include_str!("../tests/keys/rsa.pub.pem");
const EC: &str = include_str!("../tests/keys/ec.pem");
const ED: &str = include_str!("../tests/keys/ed.pem");
const FORGER: &str = include_str!("../tests/keys/rsa-forger.pem");

fn provider() -> PublicKeys {
    PublicKeys::parse("https://idp.example/jwks", SET.as_bytes()).unwrap()
}

fn exp() -> u64 {
    unix_now() + 60
}

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "exp": exp()})
}

/// Signs `claims` as any JWT library would, with `alg` and `kid`.
fn signed(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn hs(claims: &Value, secret: &[u8]) -> String {
    signed(
        Algorithm::HS256,
        None,
        claims,
        &EncodingKey::from_secret(secret),
    )
}

fn rsa() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA.as_bytes()).unwrap()
}

fn id(s: &str) -> SessionId {
    SessionId::parse(s).unwrap()
}

#[test]
fn tokens_open_exactly_their_session() {
    let key = TokenKey::new(SECRET).unwrap();
    let (a, b) = (id("a"), id("b"));
    let t = key.issue(&a, 60);
    assert_eq!(key.verify(&t, &a), Ok(()));
    assert_eq!(key.verify(&t, &b), Err(TokenError::WrongSession));
    let other = TokenKey::new(OLD).unwrap();
    assert!(matches!(other.verify(&t, &a), Err(TokenError::Invalid(_))));
    assert!(matches!(
        key.verify("garbage", &a),
        Err(TokenError::Invalid(_))
    ));
    let old = key.issue_until(&a, unix_now() - 10);
    assert_eq!(key.verify(&old, &a), Err(TokenError::Expired));
}

#[test]
fn a_secret_shorter_than_32_bytes_is_refused_naming_the_minimum() {
    let e = TokenKey::new(&SECRET[..16]).unwrap_err();
    assert_eq!(
        e,
        KeyError::SecretTooShort {
            position: 1,
            len: 16
        }
    );
    assert!(e.to_string().contains("at least 32 bytes"), "{e}");
    let second = TokenKey::from_secrets([SECRET, &OLD[..31]]).unwrap_err();
    assert_eq!(
        second,
        KeyError::SecretTooShort {
            position: 2,
            len: 31
        }
    );
    assert_eq!(
        TokenKey::from_secrets(Vec::<&[u8]>::new()).unwrap_err(),
        KeyError::NoSecret
    );
    assert!(TokenKey::new(&SECRET[..32]).is_ok());
}

#[test]
fn during_a_rotation_the_first_secret_signs_and_every_one_verifies() {
    let rotating = TokenKey::from_secrets([SECRET, OLD]).unwrap();
    let a = id("a");
    let by_old = TokenKey::new(OLD).unwrap().issue(&a, 60);
    assert_eq!(rotating.verify(&by_old, &a), Ok(()));
    let by_new = rotating.issue(&a, 60);
    assert_eq!(TokenKey::new(SECRET).unwrap().verify(&by_new, &a), Ok(()));
    assert!(TokenKey::new(OLD).unwrap().verify(&by_new, &a).is_err());
    // An expired token under the second secret says so, not "invalid".
    let expired = hs(&json!({"sub": "a", "exp": unix_now() - 5}), OLD);
    assert_eq!(rotating.verify(&expired, &a), Err(TokenError::Expired));
}

#[test]
fn any_hs256_jwt_with_sub_and_exp_opens_its_session() {
    let key = TokenKey::new(SECRET).unwrap();
    let a = id("a");
    assert_eq!(key.verify(&hs(&claims("a"), SECRET), &a), Ok(()));
    let rich = json!({"sub": "a", "exp": exp(), "iat": 1, "nbf": 1,
                      "aud": ["app", "x"], "iss": "backend", "role": ["x"]});
    assert_eq!(key.verify(&hs(&rich, SECRET), &a), Ok(()));
    let early = json!({"sub": "a", "exp": exp(), "nbf": exp()});
    assert!(key.verify(&hs(&early, SECRET), &a).is_err());
    for missing in [json!({"exp": exp()}), json!({"sub": "a"})] {
        let t = hs(&missing, SECRET);
        assert!(
            matches!(key.verify(&t, &a), Err(TokenError::Invalid(_))),
            "{missing}"
        );
    }
}

#[test]
fn provider_tokens_open_their_session_with_the_key_their_kid_names() {
    let key = TokenKey::new(SECRET).unwrap();
    let p = provider();
    let ec = EncodingKey::from_ec_pem(EC.as_bytes()).unwrap();
    let ed = EncodingKey::from_ed_pem(ED.as_bytes()).unwrap();
    for (alg, kid, signer) in [
        (Algorithm::RS256, "rsa-1", rsa()),
        (Algorithm::ES256, "ec-1", ec),
        (Algorithm::EdDSA, "ed-1", ed),
    ] {
        let t = signed(alg, Some(kid), &claims("a"), &signer);
        assert_eq!(key.verify_subject(&t, "a", Some(&p)), Ok(()), "{alg:?}");
        assert_eq!(
            key.verify_subject(&t, "b", Some(&p)),
            Err(TokenError::WrongSession)
        );
        // Without a provider, no asymmetric token opens anything.
        assert!(matches!(
            key.verify_subject(&t, "a", None),
            Err(TokenError::Invalid(_))
        ));
    }
}

#[test]
fn every_refusal_of_the_contract_is_refused() {
    let key = TokenKey::new(SECRET).unwrap();
    let p = provider();
    let c = claims("a");
    let forger = EncodingKey::from_rsa_pem(FORGER.as_bytes()).unwrap();
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&c)
    );
    let none_kid = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "kid": "rsa-1"})),
        b64(&c)
    );
    let rows: Vec<(&str, String, TokenError)> = vec![
        (
            "forged RS256 signature",
            signed(Algorithm::RS256, Some("rsa-1"), &c, &forger),
            TokenError::Invalid("signature does not verify"),
        ),
        (
            "alg none",
            none,
            TokenError::Invalid("not a JWT with a known algorithm"),
        ),
        (
            "alg none naming a key",
            none_kid,
            TokenError::Invalid("not a JWT with a known algorithm"),
        ),
        (
            "RS256 naming the EC key",
            signed(Algorithm::RS256, Some("ec-1"), &c, &rsa()),
            TokenError::Invalid("algorithm does not match its key"),
        ),
        (
            "HS256 signed with the RSA public key",
            signed(
                Algorithm::HS256,
                Some("rsa-1"),
                &c,
                &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
            ),
            TokenError::Invalid("signature does not verify"),
        ),
        (
            "HS512 under the secret",
            signed(
                Algorithm::HS512,
                None,
                &c,
                &EncodingKey::from_secret(SECRET),
            ),
            TokenError::Invalid("algorithm not accepted"),
        ),
        (
            "RS512 under the RSA key",
            signed(Algorithm::RS512, Some("rsa-1"), &c, &rsa()),
            TokenError::Invalid("algorithm not accepted"),
        ),
        (
            "RS256 without kid",
            signed(Algorithm::RS256, None, &c, &rsa()),
            TokenError::Invalid("token names no key (kid)"),
        ),
        (
            "RS256 with an unknown kid",
            signed(Algorithm::RS256, Some("rsa-2"), &c, &rsa()),
            TokenError::UnknownKey {
                kid: "rsa-2".into(),
            },
        ),
        (
            "expired RS256",
            signed(
                Algorithm::RS256,
                Some("rsa-1"),
                &json!({"sub": "a", "exp": unix_now() - 5}),
                &rsa(),
            ),
            TokenError::Expired,
        ),
    ];
    let failed: Vec<String> = rows
        .iter()
        .filter_map(|(name, token, want)| {
            let got = key.verify_subject(token, "a", Some(&p));
            (got.as_ref() != Err(want)).then(|| format!("{name}: {got:?}, wanted {want:?}"))
        })
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
}

#[test]
fn a_required_issuer_and_audience_are_checked_in_every_token() {
    let key = TokenKey::new(SECRET)
        .unwrap()
        .with_issuer(Some("https://idp.example/".into()))
        .with_audience(Some("weir".into()));
    let p = provider();
    let ok = json!({"sub": "a", "exp": exp(), "iss": "https://idp.example/", "aud": "weir"});
    let listed =
        json!({"sub": "a", "exp": exp(), "iss": "https://idp.example/", "aud": ["x", "weir"]});
    assert_eq!(key.verify_subject(&hs(&ok, SECRET), "a", Some(&p)), Ok(()));
    assert_eq!(key.verify_subject(&hs(&listed, SECRET), "a", None), Ok(()));
    let rs = signed(Algorithm::RS256, Some("rsa-1"), &ok, &rsa());
    assert_eq!(key.verify_subject(&rs, "a", Some(&p)), Ok(()));
    for (claims, why) in [
        (
            json!({"sub": "a", "exp": exp(), "iss": "https://evil/", "aud": "weir"}),
            "wrong issuer (iss)",
        ),
        (
            json!({"sub": "a", "exp": exp(), "iss": "https://idp.example/", "aud": "other"}),
            "wrong audience (aud)",
        ),
        (
            json!({"sub": "a", "exp": exp(), "aud": "weir"}),
            "a required claim is missing",
        ),
        (
            json!({"sub": "a", "exp": exp(), "iss": "https://idp.example/"}),
            "a required claim is missing",
        ),
    ] {
        let rs = signed(Algorithm::RS256, Some("rsa-1"), &claims, &rsa());
        assert_eq!(
            key.verify_subject(&rs, "a", Some(&p)),
            Err(TokenError::Invalid(why)),
            "{claims}"
        );
        assert_eq!(
            key.verify_subject(&hs(&claims, SECRET), "a", None),
            Err(TokenError::Invalid(why))
        );
    }
    // What the edge issues carries them.
    assert_eq!(key.verify(&key.issue(&id("a"), 60), &id("a")), Ok(()));
}

fn b64(v: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

#[test]
fn a_thread_token_names_its_thread_and_opens_no_session_of_that_name() {
    let key = TokenKey::new(SECRET)
        .unwrap()
        .with_issuer(Some("weir".into()))
        .with_audience(Some("app".into()));
    let thread = ThreadId::parse("t1").unwrap();
    let t = key.issue_thread(&thread, 60);
    assert_eq!(key.verified_subject(&t, None).as_deref(), Ok("thread:t1"));
    assert_eq!(key.verify_subject(&t, "thread:t1", None), Ok(()));
    // A session called like the thread is another subject.
    assert_eq!(key.verify(&t, &id("t1")), Err(TokenError::WrongSession));
    // The session token of a session called like the thread opens no thread.
    let session = key.issue(&id("t1"), 60);
    assert_eq!(
        key.verify_subject(&session, &thread.subject(), None),
        Err(TokenError::WrongSession)
    );
}

#[test]
fn a_thread_token_from_the_identity_provider_is_verified_like_a_session_token() {
    let key = TokenKey::new(SECRET).unwrap();
    let t = signed(
        Algorithm::RS256,
        Some("rsa-1"),
        &claims("thread:t9"),
        &rsa(),
    );
    assert_eq!(
        key.verified_subject(&t, Some(&provider())).as_deref(),
        Ok("thread:t9")
    );
    assert!(key.verified_subject(&t, None).is_err());
}
