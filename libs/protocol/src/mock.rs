//! Input of the deterministic `mock` agent (protocol.md §4): `tokens` token
//! events (default 100) at `rate` tokens/s (0 = as fast as possible); token
//! n's text is a function of `seed` and n, so anyone can recompute a mock
//! session's text. In a thread's run (`messages`, protocol.md §4 and §9)
//! it answers the last message instead.

use serde::Deserialize;

pub const MAX_TOKENS: u64 = 10_000_000;

const WORDS: &[&str] = &[
    "the", "river", "weir", "holds", "water", "back", "and", "lets", "it", "through", "tokens",
    "flow", "like", "a", "stream", "of", "light", "agents", "speak", "in", "small", "steps",
    "every", "word", "arrives", "once", "in", "order", "never", "lost", "resumed", "anywhere",
];

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MockInput {
    #[serde(default = "default_tokens")]
    pub tokens: u64,
    #[serde(default)]
    pub rate: f64,
    #[serde(default)]
    pub seed: u64,
    /// A thread's run (protocol.md §9): the conversation so far; the mock
    /// answers its last message (§4) instead of counting tokens.
    #[serde(default)]
    pub messages: Option<Vec<serde_json::Value>>,
    /// The run's front-end tools (`/tool NAME ARGS` calls one of them).
    #[serde(default)]
    pub tools: Vec<serde_json::Value>,
}

fn default_tokens() -> u64 {
    100
}

impl MockInput {
    /// Parses and checks an input object (`null` = all defaults).
    pub fn parse(input: &serde_json::Value) -> Result<MockInput, String> {
        if !(input.is_null() || input.is_object()) {
            return Err("mock input must be a JSON object".into());
        }
        let parsed: MockInput = if input.is_null() {
            serde_json::from_value(serde_json::json!({}))
        } else {
            serde_json::from_value(input.clone())
        }
        .map_err(|e| format!("mock input: {e}"))?;
        if parsed.tokens > MAX_TOKENS {
            return Err(format!("mock input: tokens must be at most {MAX_TOKENS}"));
        }
        if !(parsed.rate.is_finite() && parsed.rate >= 0.0) {
            return Err("mock input: rate must be a number >= 0".into());
        }
        Ok(parsed)
    }
}

/// Token `n` (1-based) of the mock stream for `seed`.
pub fn token_text(seed: u64, n: u64) -> String {
    // splitmix64: a fixed, well-mixed function of (seed, n).
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(n.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let word = WORDS[(z % WORDS.len() as u64) as usize];
    if n == 1 {
        word.to_owned()
    } else {
        format!(" {word}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_a_function_of_seed_and_index() {
        assert_eq!(token_text(7, 3), token_text(7, 3));
        let a: String = (1..=50).map(|n| token_text(1, n)).collect();
        let b: String = (1..=50).map(|n| token_text(2, n)).collect();
        assert_ne!(a, b);
        assert!(!token_text(1, 1).starts_with(' '));
        assert!(token_text(1, 2).starts_with(' '));
    }

    #[test]
    fn input_is_checked() {
        let ok = MockInput::parse(&serde_json::json!({"tokens": 5, "rate": 10, "seed": 1}));
        assert_eq!(ok.unwrap().tokens, 5);
        assert_eq!(
            MockInput::parse(&serde_json::Value::Null).unwrap().tokens,
            100
        );
        for bad in [
            serde_json::json!({"tokens": -1}),
            serde_json::json!({"tokens": "many"}),
            serde_json::json!({"rate": -2}),
            serde_json::json!({"tokens": MAX_TOKENS + 1}),
            serde_json::json!({"colour": "red"}),
            serde_json::json!([1]),
        ] {
            assert!(MockInput::parse(&bad).is_err(), "{bad} accepted");
        }
    }
}
