//! Session ids (`SessionId::parse`, for every id in a URL, a run request or
//! a broadcast): accepted exactly when they match `[A-Za-z0-9_-]{1,64}`,
//! the same through serde, and then a single NATS subject token.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_protocol::SessionId;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let expected = (1..=64).contains(&s.chars().count()) && s.chars().all(allowed);
    let parsed = SessionId::parse(s);
    assert_eq!(parsed.is_ok(), expected, "{s:?}");
    let from_json = serde_json::from_value::<SessionId>(serde_json::Value::String(s.into()));
    assert_eq!(from_json.ok(), parsed.clone().ok());
    if let Ok(id) = parsed {
        assert_eq!(id.as_str(), s);
        assert_eq!(
            id.events_subject().split('.').collect::<Vec<_>>(),
            ["weir", "ev", s]
        );
    }
});
