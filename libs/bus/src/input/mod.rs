//! Answers to `input_request`s (protocol.md §9): where a person's answer
//! waits for the producer that asked. Like control, an answer is recorded
//! first and then delivered, so an answer given while no producer is
//! attached (it restarts, or has not started waiting yet) is kept until it
//! is taken.
//!
//! The box needs nothing but the bus, so an outside producer (the Python
//! package) reads it with NATS alone: on NATS it is the key-value bucket
//! `WEIR_INPUTS`, key `<session>.<request>`, value the answer's `data` as
//! JSON. An answer is written with the bucket's `create`, which fails when
//! the key exists: across every edge, exactly one answer to a request wins
//! and a second is refused. Entries live for the retention (an answer
//! outlives no log).

use async_trait::async_trait;
use serde_json::{Map, Value};
use weir_protocol::{RequestId, SessionId};

use crate::BusError;

pub mod conformance;
pub mod memory;

/// An answer's data, as stored.
pub type AnswerData = Map<String, Value>;

/// Whether [`InputBox::put`] stored the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Stored,
    /// The request was answered before: the first answer stands.
    AlreadyAnswered,
}

#[async_trait]
pub trait InputBox: Send + Sync + 'static {
    /// Records the answer to `request`, unless one is recorded already.
    async fn put(
        &self,
        session: &SessionId,
        request: &RequestId,
        data: &AnswerData,
    ) -> Result<Put, BusError>;

    /// The recorded answer, if any.
    async fn get(
        &self,
        session: &SessionId,
        request: &RequestId,
    ) -> Result<Option<AnswerData>, BusError>;

    /// Waits until the request is answered and returns the answer (at once
    /// when it already is). Rides out a bus that cannot be reached for a
    /// while; callers stop waiting by dropping the future.
    async fn wait(&self, session: &SessionId, request: &RequestId) -> Result<AnswerData, BusError>;
}

/// The key of an answer: `<session>.<request>` (both are single tokens).
pub fn key(session: &SessionId, request: &RequestId) -> String {
    format!("{session}.{request}")
}

/// Parses a stored answer; an outside writer may have stored anything.
pub fn decode(key: &str, value: &[u8]) -> Result<AnswerData, BusError> {
    serde_json::from_slice::<AnswerData>(value).map_err(|e| {
        BusError::Unsupported(format!(
            "the answer stored at {key} is not a JSON object: {e}"
        ))
    })
}
