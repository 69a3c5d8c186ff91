//! Session tokens (`TokenKey::verify_subject`, what `authorize` calls for
//! every read and control request), HS256 under two secrets (a rotation)
//! and RS256 / ES256 / EdDSA under the test JWK set. The input is
//! `<session id>\n<token>`, as a client presents them: any token is
//! accepted or refused without a panic, and one that is accepted opens no
//! other session. Its first six bytes also drive a token minted here, by
//! the first secret or one of the provider's keys: it opens exactly its
//! session until it expires; a changed byte or another key is refused.
#![no_main]

use std::sync::OnceLock;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;
use weir_protocol::{PublicKeys, SessionId, TokenError, TokenKey};

/// The secrets the seed corpus's HS256 tokens are signed with.
const SECRET: &[u8] = b"fuzz-secret-0123456789abcdef-0123";
const OLD: &[u8] = b"fuzz-old-secret-0123456789abcdef-";
const OTHER: &[u8] = b"not-the-fuzz-secret-0123456789abc";
const SET: &[u8] = include_bytes!("../../libs/protocol/tests/keys/jwks.json");

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn id(s: &str) -> SessionId {
    SessionId::parse(s).expect("a valid id")
}

type Signer = (Algorithm, Option<&'static str>, EncodingKey);

/// The first secret and the provider's RSA, P-256 and Ed25519 keys, parsed once.
fn signers() -> &'static [Signer; 4] {
    static SIGNERS: OnceLock<[Signer; 4]> = OnceLock::new();
    SIGNERS.get_or_init(|| {
        [
            (Algorithm::HS256, None, EncodingKey::from_secret(SECRET)),
            (
                Algorithm::RS256,
                Some("rsa-1"),
                EncodingKey::from_rsa_pem(include_bytes!("../../libs/protocol/tests/keys/rsa.pem"))
                    .unwrap(),
            ),
            (
                Algorithm::ES256,
                Some("ec-1"),
                EncodingKey::from_ec_pem(include_bytes!("../../libs/protocol/tests/keys/ec.pem"))
                    .unwrap(),
            ),
            (
                Algorithm::EdDSA,
                Some("ed-1"),
                EncodingKey::from_ed_pem(include_bytes!("../../libs/protocol/tests/keys/ed.pem"))
                    .unwrap(),
            ),
        ]
    })
}

/// A token for `sub` until `exp`: by the provider's RSA, P-256 or Ed25519
/// key for `which` 1, 2, 3 (mod 16), else HS256 by the first secret. A
/// private-key signature costs milliseconds under the sanitizers, so most
/// inputs take the cheap one and the fuzzer keeps its pace.
fn mint(which: u8, sub: &str, exp: u64) -> String {
    let signer = match which % 16 {
        n @ 1..=3 => usize::from(n),
        _ => 0,
    };
    let (alg, kid, key) = &signers()[signer];
    let mut header = Header::new(*alg);
    header.kid = kid.map(str::to_owned);
    let claims = serde_json::json!({"sub": sub, "exp": exp});
    jsonwebtoken::encode(&header, &claims, key).expect("signing")
}

/// The verifier under test: a rotation's two secrets and the test JWK set.
fn verifier() -> &'static (TokenKey, PublicKeys) {
    static VERIFIER: OnceLock<(TokenKey, PublicKeys)> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        (
            TokenKey::from_secrets([SECRET, OLD]).unwrap(),
            PublicKeys::parse("https://idp/jwks", SET).unwrap(),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let (key, provider) = verifier();
    let verify = |token: &str, s: &SessionId| key.verify_subject(token, s.as_str(), Some(provider));
    let text = String::from_utf8_lossy(data);
    let (session, token) = text.split_once('\n').unwrap_or(("s", &text));
    let session = SessionId::parse(session).unwrap_or_else(|_| id("s"));
    let other = SessionId::parse(&format!("{session}x")).unwrap_or_else(|_| id("o"));
    if verify(token, &session).is_ok() {
        assert_eq!(verify(token, &other), Err(TokenError::WrongSession));
    }

    let [t0, t1, i0, i1, byte, which, ..] = *data else {
        return;
    };
    let ttl = i16::from_le_bytes([t0, t1]);
    // The second around now is skipped: the expiry check and this one may differ.
    let expected = match ttl {
        2.. => Ok(()),
        ..=-2 => Err(TokenError::Expired),
        _ => return,
    };
    let minted = mint(
        which,
        session.as_str(),
        (unix_now() + i64::from(ttl)).max(0) as u64,
    );
    assert_eq!(verify(&minted, &session), expected);
    if expected.is_ok() {
        assert_eq!(verify(&minted, &other), Err(TokenError::WrongSession));
        let stranger = TokenKey::new(OTHER).unwrap();
        let elsewhere = PublicKeys::empty("https://other/jwks");
        assert!(stranger
            .verify_subject(&minted, session.as_str(), Some(&elsewhere))
            .is_err());
    }
    let mut bytes = minted.clone().into_bytes();
    let at = usize::from(u16::from_le_bytes([i0, i1])) % bytes.len();
    bytes[at] = byte % 128;
    let tampered = String::from_utf8(bytes).expect("ASCII");
    if tampered != minted {
        assert!(verify(&tampered, &session).is_err(), "{tampered} accepted");
    }
});
