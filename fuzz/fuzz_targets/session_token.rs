//! Session tokens (`TokenKey::verify`, what `authorize` calls for every
//! read and control request). The input is `<session id>\n<token>`, as a
//! client presents them: any token is accepted or refused without a panic,
//! and one that is accepted opens no other session. Its first five bytes
//! also drive a token minted here: it opens exactly its session until it
//! expires; a changed byte or another secret is refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_protocol::{SessionId, TokenError, TokenKey};

/// The secret the seed corpus's tokens are signed with.
const SECRET: &[u8] = b"fuzz-secret";

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn id(s: &str) -> SessionId {
    SessionId::parse(s).expect("a valid id")
}

fuzz_target!(|data: &[u8]| {
    let key = TokenKey::new(SECRET);
    let text = String::from_utf8_lossy(data);
    let (session, token) = text.split_once('\n').unwrap_or(("s", &text));
    let session = SessionId::parse(session).unwrap_or_else(|_| id("s"));
    let other = SessionId::parse(&format!("{session}x")).unwrap_or_else(|_| id("o"));
    if key.verify(token, &session).is_ok() {
        assert_eq!(key.verify(token, &other), Err(TokenError::WrongSession));
    }

    let [t0, t1, i0, i1, byte, ..] = *data else {
        return;
    };
    let ttl = i16::from_le_bytes([t0, t1]);
    // The second around now is skipped: the expiry check and this one may differ.
    let expected = match ttl {
        2.. => Ok(()),
        ..=-2 => Err(TokenError::Expired),
        _ => return,
    };
    let minted = key.issue_until(&session, (unix_now() + i64::from(ttl)).max(0) as u64);
    assert_eq!(key.verify(&minted, &session), expected);
    if expected.is_ok() {
        assert_eq!(key.verify(&minted, &other), Err(TokenError::WrongSession));
        assert_eq!(
            TokenKey::new(b"other").verify(&minted, &session),
            Err(TokenError::Invalid)
        );
    }
    let mut bytes = minted.clone().into_bytes();
    let at = usize::from(u16::from_le_bytes([i0, i1])) % bytes.len();
    bytes[at] = byte % 128;
    let tampered = String::from_utf8(bytes).expect("ASCII");
    if tampered != minted {
        assert!(
            key.verify(&tampered, &session).is_err(),
            "{tampered} accepted"
        );
    }
});
