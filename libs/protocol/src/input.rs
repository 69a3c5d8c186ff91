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

/// An answer as a client sends it: the body of `POST /v1/sessions/{id}/input`
/// and the fields of the WebSocket `input` frame.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerBody {
    pub request: String,
    /// Checked by [`AnswerBody::check`], which names what is wrong with it.
    #[serde(default)]
    pub data: Value,
}

impl AnswerBody {
    /// The request answered and the answer's data, or what is wrong with them.
    pub fn check(self) -> Result<(RequestId, Map<String, Value>), String> {
        let request = RequestId::parse(&self.request).map_err(|e| format!("request: {e}"))?;
        match self.data {
            Value::Object(data) => Ok((request, data)),
            _ => Err("data must be a JSON object (the answer)".into()),
        }
    }
}

/// How `data` fails to match `schema`, one line per mismatch (empty when it
/// matches); `Err` when the schema cannot be compiled (remote `$ref`s are
/// never fetched).
pub fn schema_mismatches(schema: &Value, data: &Map<String, Value>) -> Result<Vec<String>, String> {
    let validator = jsonschema::validator_for(schema).map_err(|e| e.to_string())?;
    let instance = Value::Object(data.clone());
    Ok(validator
        .iter_errors(&instance)
        .map(|e| {
            let at = e.instance_path().to_string();
            if at.is_empty() {
                e.to_string()
            } else {
                format!("{at}: {e}")
            }
        })
        .collect())
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

    #[test]
    fn an_answer_body_is_a_valid_request_id_and_an_object() {
        let body = |s: &str| serde_json::from_str::<AnswerBody>(s).unwrap().check();
        let (request, data) = body(r#"{"request":"ask_1","data":{"text":"hi"}}"#).unwrap();
        assert_eq!(
            (request.as_str(), &data["text"]),
            ("ask_1", &serde_json::json!("hi"))
        );
        assert!(body(r#"{"request":"a.b","data":{}}"#)
            .unwrap_err()
            .contains("request"));
        assert!(body(r#"{"request":"r","data":"hi"}"#)
            .unwrap_err()
            .contains("object"));
        assert!(body(r#"{"request":"r"}"#).unwrap_err().contains("object"));
        assert!(serde_json::from_str::<AnswerBody>(r#"{"request":"r","data":{},"x":1}"#).is_err());
    }

    #[test]
    fn mismatches_with_the_schema_are_named_by_their_place() {
        let schema = serde_json::json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]});
        let data = |v: Value| v.as_object().unwrap().clone();
        assert!(
            schema_mismatches(&schema, &data(serde_json::json!({"text": "a"})))
                .unwrap()
                .is_empty()
        );
        let wrong = schema_mismatches(&schema, &data(serde_json::json!({"text": 7}))).unwrap();
        assert!(
            wrong.len() == 1 && wrong[0].starts_with("/text: "),
            "{wrong:?}"
        );
        assert_eq!(schema_mismatches(&schema, &Map::new()).unwrap().len(), 1);
        let unusable = serde_json::json!({"type": "no such type"});
        assert!(schema_mismatches(&unusable, &Map::new()).is_err());
    }
}
