//! The weir wire contract as types: events, WebSocket frames, run requests,
//! control operations, session ids and session tokens.
//!
//! This crate is pure: no IO, no runtime. Everything that crosses a process
//! boundary (the bus, the WebSocket, SSE, history) is described here, so the
//! edge, the producer and the tests agree on one definition.
//!
//! - [`event`]: the event object, and [`RawEvent`], an event kept as its exact
//!   JSON bytes so edges forward what producers wrote without re-encoding it.
//! - [`frame`]: server → client and client → server WebSocket frames.
//! - [`frontend`]: the AI SDK's and AG-UI's messages as a thread run's chat
//!   messages (protocol.md §9).
//! - [`input`]: asking a person mid-run: request ids, `input_request` and
//!   `input` data.
//! - [`session`]: session ids, run requests, control ops, session status.
//! - [`thread`]: thread ids, thread tokens' subject, messages and tools of a
//!   thread's runs (protocol.md §9).
//! - [`token`]: session tokens (`sub` = session id, `exp`): HS256 under the
//!   cluster's secrets, or an identity provider's keys ([`jwks`]).

pub mod event;
pub mod frame;
pub mod frontend;
pub mod input;
pub mod jwks;
pub mod mock;
pub mod session;
pub mod thread;
pub mod token;

pub use event::{write_events, Event, EventError, EventParts, RawEvent};
pub use frame::{ClientFrame, ServerFrame};
pub use input::{Answer, AnswerBody, InputRequest, RequestId, RequestIdError};
pub use jwks::{JwksError, PublicKeys};
pub use session::{
    creation_nonce, ControlOp, EndReason, RunRequest, SessionId, SessionIdError, Status,
    EXTERNAL_AGENT,
};
pub use thread::{check_messages, check_tools, ThreadId, ThreadIdError};
pub use token::{KeyError, TokenError, TokenKey, MIN_SECRET_BYTES};

/// Milliseconds since the Unix epoch, with microsecond fraction, as events carry in `ts`.
pub fn now_ms() -> f64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_micros() as f64) / 1000.0
}
