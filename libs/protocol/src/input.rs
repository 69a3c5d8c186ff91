//! Asking a person mid-run (protocol.md §9): the id of a request, the data
//! of the `input_request` event an agent publishes to ask, and of the
//! `input` event it publishes once it has the answer.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::session::valid_id;

/// Kind of the event an agent publishes when it waits for a person.
pub const INPUT_REQUEST: &str = "input_request";
/// Kind of the event that carries the answer, as the producer received it.
pub const INPUT: &str = "input";

/// A request id: `[A-Za-z0-9_-]{1,64}`, since it becomes part of a
/// key-value key (`<session>.<request>` in `WEIR_INPUTS`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RequestId(String);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("request ids are 1 to 64 characters of A-Z a-z 0-9 _ -")]
pub struct RequestIdError;

impl RequestId {
    pub fn parse(s: &str) -> Result<RequestId, RequestIdError> {
        if valid_id(s) {
            Ok(RequestId(s.to_owned()))
        } else {
            Err(RequestIdError)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RequestId {
    type Error = RequestIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        RequestId::parse(&s)
    }
}

impl From<RequestId> for String {
    fn from(id: RequestId) -> String {
        id.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `data` of an `input_request` event: `{"id", "prompt", "schema"?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputRequest {
    pub id: RequestId,
    #[serde(default)]
    pub prompt: String,
    /// A JSON Schema the answer's `data` must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
}

/// `data` of an `input` event: `{"request", "data"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub request: RequestId,
    pub data: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_follow_the_key_rules() {
        assert!(RequestId::parse("ask_12").is_ok());
        assert!(RequestId::parse(&"r".repeat(64)).is_ok());
        for bad in ["", "a.b", "a b", "a*", "a>", "é", &"r".repeat(65)] {
            assert!(RequestId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_event_data_serialise_as_documented() {
        let ask = InputRequest {
            id: RequestId::parse("ask_3").unwrap(),
            prompt: "name?".into(),
            schema: None,
        };
        assert_eq!(
            serde_json::to_string(&ask).unwrap(),
            r#"{"id":"ask_3","prompt":"name?"}"#
        );
        let answer: Answer =
            serde_json::from_str(r#"{"request":"ask_3","data":{"text":"Ada"}}"#).unwrap();
        assert_eq!(answer.data["text"], "Ada");
        assert!(serde_json::from_str::<Answer>(r#"{"request":"a.b","data":{}}"#).is_err());
        assert!(serde_json::from_str::<Answer>(r#"{"request":"r","data":[1]}"#).is_err());
    }
}
