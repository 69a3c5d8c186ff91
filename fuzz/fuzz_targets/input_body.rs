//! Answers to input requests, as the edge reads them (`POST
//! /v1/sessions/{id}/input`'s body and the WebSocket `input` frame's fields:
//! `AnswerBody`, then its check and the request's schema): any bytes are an
//! answer or an error the client is told, never a panic; an accepted answer
//! has a valid request id and an object, and matches the mock's schema
//! exactly when its `text` is a string.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_protocol::input::schema_mismatches;
use weir_protocol::{AnswerBody, RequestId};

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<AnswerBody>(data) else {
        return;
    };
    match body.check() {
        Ok((request, answer)) => {
            assert_eq!(RequestId::parse(request.as_str()), Ok(request.clone()));
            let schema = serde_json::json!({
                "type": "object",
                "properties": {"text": {"type": "string"}},
                "required": ["text"]
            });
            let mismatches = schema_mismatches(&schema, &answer).expect("the mock's schema compiles");
            assert_eq!(mismatches.is_empty(), answer.get("text").is_some_and(|t| t.is_string()));
        }
        Err(message) => assert!(!message.is_empty()),
    }
});
