//! `POST /v1/threads/{t}/ag-ui`: AG-UI's agent endpoint for a thread
//! (protocol.md §9), what `new HttpAgent({url: '<edge>/v1/threads/<t>/ag-ui',
//! headers})` and CopilotKit call with a `RunAgentInput`.
//!
//! - `resume` entries answer the thread's active run: `resolved` answers
//!   its open input request with `payload` ([`inputs::answer`]), `cancelled`
//!   cancels the run; the call then streams that run under its own `runId`:
//!   a snapshot of the conversation so far, then the rest live.
//! - Otherwise a `runId` the thread knows rejoins that run (snapshot, then
//!   live), and any other starts the thread's next run with the messages and
//!   tools (converted by [`weir_protocol::frontend`]), the `runId` kept as
//!   its alias.
//!
//! Every call is an [`AgUi`] encoder over the one delivery path. A run that
//! waits for a person ends the call with the whole conversation and the
//! `interrupt` outcome; `state`, `context` and `forwardedProps` are accepted
//! and not used.

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value};
use weir_protocol::{ControlOp, SessionId};

use super::encoder::{AgUi, Call};
use crate::access::ThreadAuth;
use crate::delivery;
use crate::error::ApiError;
use crate::frontends::invalid;
use crate::frontends::stream;
use crate::request::JsonObject;
use crate::threads::{self, RunStart};
use crate::{inputs, sessions, AppState};
use weir_protocol::frontend;

const TRANSPORT: &str = "ag-ui";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreadRunInput {
    #[serde(default)]
    thread_id: Value,
    #[serde(default)]
    run_id: Value,
    #[serde(default)]
    messages: Value,
    #[serde(default)]
    tools: Value,
    #[serde(default)]
    resume: Value,
}

/// What a checked call asks for.
#[derive(Debug, PartialEq)]
pub struct Checked {
    pub run_id: String,
    pub messages: Vec<Value>,
    pub tools: Vec<Value>,
    pub resume: Vec<Resume>,
}

/// One `resume` entry.
#[derive(Debug, PartialEq)]
pub enum Resume {
    Resolved { request: String, payload: Value },
    Cancelled { request: String },
}

impl Resume {
    fn request(&self) -> &str {
        match self {
            Resume::Resolved { request, .. } | Resume::Cancelled { request } => request,
        }
    }
}

/// Checks a `RunAgentInput` for thread `thread`: 400 naming the field.
pub fn read(thread: &str, input: ThreadRunInput) -> Result<Checked, ApiError> {
    match &input.thread_id {
        Value::Null => {}
        Value::String(t) if t == thread => {}
        _ => return Err(invalid("threadId", "must be the thread's id (or absent)")),
    }
    let run_id = input
        .run_id
        .as_str()
        .filter(|r| !r.is_empty())
        .ok_or_else(|| invalid("runId", "must be a non-empty string"))?
        .to_owned();
    let messages = match input.messages {
        Value::Null => Vec::new(),
        m => frontend::ag_ui_to_chat(&m).map_err(ApiError::BadRequest)?,
    };
    let tools = frontend::ag_ui_tools(&input.tools).map_err(ApiError::BadRequest)?;
    let entries = match &input.resume {
        Value::Null => &[][..],
        Value::Array(e) => e.as_slice(),
        _ => return Err(invalid("resume", "must be an array")),
    };
    let mut resume = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let at = format!("resume[{i}]");
        let request = e["interruptId"]
            .as_str()
            .ok_or_else(|| invalid(&format!("{at}.interruptId"), "must be a string"))?
            .to_owned();
        resume.push(match e["status"].as_str() {
            Some("resolved") => {
                let payload = match &e["payload"] {
                    Value::Null => Value::Object(Map::new()),
                    p @ Value::Object(_) => p.clone(),
                    _ => return Err(invalid(&format!("{at}.payload"), "must be an object")),
                };
                Resume::Resolved { request, payload }
            }
            Some("cancelled") => Resume::Cancelled { request },
            _ => {
                return Err(invalid(
                    &format!("{at}.status"),
                    "must be resolved or cancelled",
                ))
            }
        });
    }
    Ok(Checked {
        run_id,
        messages,
        tools,
        resume,
    })
}

pub async fn handler(
    State(state): State<AppState>,
    ThreadAuth(thread): ThreadAuth,
    body: Result<JsonObject<ThreadRunInput>, ApiError>,
) -> Result<Response, ApiError> {
    let JsonObject(input) = body?;
    let call = read(thread.as_str(), input)?;
    let guard = delivery::admit(&state, TRANSPORT)?;
    let mut resolved = None;
    let (session, live_input) = if !call.resume.is_empty() {
        let session = threads::active_run(&state, &thread).await?.ok_or_else(|| {
            ApiError::Conflict("no run of this thread is waiting to be resumed".into())
        })?;
        for r in &call.resume {
            match r {
                Resume::Resolved { request, payload } => {
                    inputs::answer(&state, &session, request, payload.clone()).await?
                }
                Resume::Cancelled { .. } => {
                    sessions::control(&state, &session, ControlOp::Cancel).await?
                }
            }
            resolved = Some(r.request().to_owned());
        }
        // The new runId names this run from now on: a reconnect rejoins it.
        threads::add_alias(&state, &thread, &call.run_id, &session).await?;
        (session, None)
    } else if let Some(session) = threads::find_alias(&state, &thread, &call.run_id).await? {
        (session, None)
    } else {
        let run = RunStart {
            messages: call.messages.clone(),
            tools: call.tools,
            input: Map::new(),
            message_id: None,
            alias: Some(call.run_id.clone()),
        };
        let started = threads::start_run(&state, &thread, run).await?;
        (started.session, Some(call.messages))
    };
    // A new run streams live; any other call snapshots what is stored first.
    let (prefix, snapshot_at) = match live_input {
        Some(input) => (frontend::chat_to_ag_ui(session.as_str(), &input), None),
        None => (
            run_input(&state, &session).await?,
            Some(cut(&state, &session).await?),
        ),
    };
    let call = Call {
        thread_id: thread.as_str().to_owned(),
        run_id: call.run_id,
        prefix,
        snapshot_at,
        interrupts: true,
        resolved,
    };
    let encoder = AgUi::new(session.as_str(), call, state.config.max_snapshot);
    let req = stream::Request {
        id: session,
        transport: TRANSPORT,
        headers: &[],
    };
    stream::serve_in(&state, guard, req, encoder).await
}

/// The run's input messages as AG-UI messages.
async fn run_input(state: &AppState, session: &SessionId) -> Result<Vec<Value>, ApiError> {
    let spec = threads::run_spec(state, session).await?;
    let input = spec.map(|s| s.messages).unwrap_or_default();
    Ok(frontend::chat_to_ag_ui(session.as_str(), &input))
}

/// The last seq stored.
async fn cut(state: &AppState, session: &SessionId) -> Result<u64, ApiError> {
    Ok(state
        .bus
        .log
        .last(session)
        .await?
        .map_or(0, |l| l.event.seq))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(body: Value) -> Result<Checked, String> {
        let input: ThreadRunInput = serde_json::from_value(body).unwrap();
        read("t1", input).map_err(|e| e.to_string())
    }

    #[test]
    fn a_run_agent_input_gives_its_run_id_messages_tools_and_resume_entries() {
        let got = check(json!({"threadId": "t1", "runId": "r2",
            "messages": [{"id": "u1", "role": "user", "content": "hi"}],
            "tools": [{"name": "pick", "description": "picks", "parameters": {"type": "object"}}],
            "resume": [{"interruptId": "ask_2", "status": "resolved", "payload": {"text": "Ada"}},
                       {"interruptId": "ask_3", "status": "cancelled"}],
            "state": {}, "context": [], "forwardedProps": {}}))
        .unwrap();
        assert_eq!(got.run_id, "r2");
        assert_eq!(
            got.messages,
            [json!({"role": "user", "content": "hi", "id": "u1"})]
        );
        assert_eq!(got.tools[0]["name"], "pick");
        assert_eq!(
            got.resume,
            [
                Resume::Resolved {
                    request: "ask_2".into(),
                    payload: json!({"text": "Ada"})
                },
                Resume::Cancelled {
                    request: "ask_3".into()
                }
            ]
        );
    }

    #[test]
    fn a_malformed_run_agent_input_is_refused_naming_the_field() {
        let err = |b| check(b).unwrap_err();
        assert_eq!(
            err(json!({"threadId": "t2", "runId": "r"})),
            "threadId: must be the thread's id (or absent)"
        );
        assert_eq!(
            err(json!({"messages": []})),
            "runId: must be a non-empty string"
        );
        assert_eq!(
            err(json!({"runId": "r", "messages": [{"id": "u", "role": "user", "content": 1}]})),
            "messages[0].content: must be a string or a list of content parts"
        );
        assert_eq!(
            err(json!({"runId": "r", "tools": [{}]})),
            "tools[0].name: must be a string"
        );
        assert_eq!(
            err(json!({"runId": "r", "resume": [{"interruptId": "a", "status": "maybe"}]})),
            "resume[0].status: must be resolved or cancelled"
        );
        assert_eq!(
            err(
                json!({"runId": "r", "resume": [{"interruptId": "a", "status": "resolved", "payload": "x"}]})
            ),
            "resume[0].payload: must be an object"
        );
        assert_eq!(
            err(json!({"runId": "r", "resume": [{"status": "resolved"}]})),
            "resume[0].interruptId: must be a string"
        );
    }
}
