//! `POST /v1/sessions/{id}/ag-ui`: the session as AG-UI events over SSE,
//! for `@ag-ui/client`'s `HttpAgent` (and CopilotKit on top of it). The body
//! is a `RunAgentInput`; its `threadId`, when given, must be the session id.
//!
//! One run (`threadId` = `runId` = the session id): `RUN_STARTED`, a text
//! message per run of tokens (`TEXT_MESSAGE_START` / `_CONTENT` / `_END`, id
//! `<session>-m<seq of its first token>`), per tool call `TOOL_CALL_START` /
//! `_ARGS` / `_END` under an assistant message `<session>-m<seq>`, per
//! result `TOOL_CALL_RESULT` (message `<session>-r<seq>-<index>`), then
//! `RUN_FINISHED` (AG-UI `usage` and weir's sums as `result.usage`; for a
//! cancelled session `outcome: {"type": "cancelled"}`, AG-UI 1.0's outcome of
//! a run stopped without failing) or `RUN_ERROR` (failed: the session's error).
//!
//! **Reconnect.** AG-UI cannot resume, and replaying deltas into a client
//! that already holds them would duplicate their text. When the body's
//! `messages` include one of this session's (an id starting with
//! `<session>-`), the call is a reconnect: after `RUN_STARTED` comes one
//! `MESSAGES_SNAPSHOT` of the client's own messages (those not from the
//! session, e.g. the user's prompt, in their order) and of every session
//! message complete at the last seq stored when the call came in; a text
//! message still open at that seq is left out of the snapshot and streamed
//! again from its first token (`TEXT_MESSAGE_START` and its text so far in one
//! `TEXT_MESSAGE_CONTENT`), then the run goes on live. The snapshot replaces
//! what the client held, so every message is there once. Building it holds
//! the session's text in memory, at most `--max-snapshot` bytes; a larger
//! one ends the call with `RUN_ERROR` `snapshot_too_large`. As the client
//! sends back what it holds, this route's body limit is `--max-body` plus
//! twice that.
//!
//! [`events`] are AG-UI's events as weir writes them; [`encoder`] is the
//! encoder, for this endpoint and for a thread's ([`thread`]).

pub mod encoder;
pub mod events;
pub mod thread;

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use super::stream;
use crate::access::SessionAuth;
use crate::error::ApiError;
use crate::request::JsonObject;
use crate::AppState;
use encoder::{AgUi, Call};

/// A call of the session's endpoint: a reconnect (the client holds one of
/// the session's messages) gets a snapshot of the client's own messages and
/// the session's up to `cut`, then goes live.
pub fn reconnect(session: &str, client: &[Value], cut: u64) -> Call {
    let prefix = format!("{session}-");
    let ours = |m: &Value| m["id"].as_str().is_some_and(|id| id.starts_with(&prefix));
    let held = client.iter().any(ours);
    Call {
        thread_id: session.to_owned(),
        run_id: session.to_owned(),
        prefix: client
            .iter()
            .filter(|m| held && !ours(m))
            .cloned()
            .collect(),
        snapshot_at: held.then_some(cut),
        interrupts: false,
        resolved: None,
    }
}

/// The parts of `RunAgentInput` the edge reads; the rest (`state`, `tools`,
/// `context`, `forwardedProps`, `runId`) is accepted and ignored: the run is
/// the session's.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunAgentInput {
    #[serde(default)]
    thread_id: Option<String>,
    #[serde(default)]
    messages: Vec<Value>,
}

/// The body limit of `ag-ui`: a reconnecting client sends back every message
/// it holds, the session's text included, so the limit is the API's plus
/// twice the largest snapshot (JSON escaping can double text).
pub fn body_limit(config: &crate::EdgeConfig) -> axum::extract::DefaultBodyLimit {
    let max = config.max_snapshot.saturating_mul(2);
    axum::extract::DefaultBodyLimit::max(config.max_body.saturating_add(max))
}

pub async fn handler(
    State(state): State<AppState>,
    SessionAuth(id): SessionAuth,
    body: Result<JsonObject<RunAgentInput>, ApiError>,
) -> Result<Response, ApiError> {
    let JsonObject(input) = body?;
    if input.thread_id.as_deref().is_some_and(|t| t != id.as_str()) {
        return Err(ApiError::BadRequest(
            "threadId must be the session id (or absent)".into(),
        ));
    }
    let cut = state.bus.log.last(&id).await?.map_or(0, |l| l.event.seq);
    let encoder = AgUi::new(
        id.as_str(),
        reconnect(id.as_str(), &input.messages, cut),
        state.config.max_snapshot,
    );
    let req = stream::Request {
        id,
        transport: "ag-ui",
        headers: &[],
    };
    stream::serve(&state, req, encoder).await
}

#[cfg(test)]
mod tests;
