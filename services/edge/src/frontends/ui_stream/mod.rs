//! `GET|POST /v1/sessions/{id}/ui-stream`: the session as a Vercel AI SDK UI
//! message stream — SSE `data: <chunk>` lines, `data: [DONE]` last, header
//! `x-vercel-ai-ui-message-stream: v1` — for `useChat` and
//! `readUIMessageStream`.
//!
//! One assistant message, id = the session id: `start`, `start-step`, a text
//! part per run of tokens (`text-start` / `text-delta` / `text-end`, part id
//! `t<seq of its first token>`), a dynamic tool part per call
//! (`tool-input-available`, then `tool-output-available` or
//! `tool-output-error`), a new step after tool results, usage as
//! `message-metadata` `{"usage": {…}}`, and at `end`: `finish-step`, then
//! `finish` (completed), `abort` (cancelled) or `error` + `finish` (failed).
//!
//! [`Chunk`] has exactly the fields that every release of the AI SDK from
//! 5.0.0 on accepts: the releases with strict chunk schemas reject any other
//! field (so no `finishReason`, no `abort.reason`, both newer).

use std::collections::HashSet;

use axum::extract::State;
use axum::response::Response;
use serde::Serialize;
use serde_json::{Map, Value};
use weir_protocol::{EndReason, RawEvent};

use super::stream::{self, Encoder};
use super::{Op, Reader};
use crate::access::SessionAuth;
use crate::error::ApiError;
use crate::subscription::DeliveryError;
use crate::AppState;

/// Tool call ids remembered per connection, to give a result whose call was
/// never published a tool part to land in (the AI SDK rejects the stream
/// otherwise). Past this many, results are trusted to have their call.
const MAX_KNOWN_CALLS: usize = 4096;

/// One UI message chunk. Field names are the AI SDK's (camelCase).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(
    tag = "type",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum Chunk {
    Start {
        message_id: String,
    },
    StartStep,
    FinishStep,
    TextStart {
        id: String,
    },
    TextDelta {
        id: String,
        delta: String,
    },
    TextEnd {
        id: String,
    },
    /// `dynamic`: the client did not declare weir's tools, so their parts
    /// are `dynamic-tool` parts rather than typed `tool-<name>` ones.
    ToolInputAvailable {
        tool_call_id: String,
        tool_name: String,
        input: Value,
        dynamic: bool,
    },
    ToolOutputAvailable {
        tool_call_id: String,
        output: Value,
        dynamic: bool,
    },
    ToolOutputError {
        tool_call_id: String,
        error_text: String,
        dynamic: bool,
    },
    MessageMetadata {
        message_metadata: Value,
    },
    /// An `input_request` (protocol.md §9): `id` = the request's id, `data`
    /// = `{prompt, schema}`.
    #[serde(rename = "data-input-request")]
    DataInputRequest {
        id: String,
        data: Value,
    },
    Error {
        error_text: String,
    },
    Finish,
    Abort,
}

/// The encoder: [`Reader`]'s ops as chunks, for one connection.
pub struct UiStream {
    /// The assistant message's id: the session id, or the message the run
    /// continues.
    message_id: String,
    /// The continued message's earlier parts, restated after `start`.
    restated: Vec<Chunk>,
    reader: Reader,
    /// A tool result was the last content: the next content starts a step.
    after_tools: bool,
    errored: bool,
    known_calls: HashSet<String>,
    done: bool,
}

impl UiStream {
    /// The stream of session `session` as message `message_id` (the
    /// session id unless the run continues a message), whose earlier parts
    /// `restated` repeats first.
    pub fn new(session: &str, message_id: Option<&str>, restated: Vec<Chunk>) -> UiStream {
        UiStream {
            message_id: message_id.unwrap_or(session).to_owned(),
            restated,
            reader: Reader::new(session),
            after_tools: false,
            errored: false,
            known_calls: HashSet::new(),
            done: false,
        }
    }

    pub fn start(&mut self) -> Vec<Chunk> {
        let mut out = vec![
            Chunk::Start {
                message_id: self.message_id.clone(),
            },
            Chunk::StartStep,
        ];
        out.append(&mut self.restated);
        out
    }

    /// The chunks of one op.
    pub fn chunks(&mut self, op: Op, out: &mut Vec<Chunk>) {
        if matches!(op, Op::TextStart { .. } | Op::ToolCall { .. })
            && std::mem::take(&mut self.after_tools)
        {
            out.extend([Chunk::FinishStep, Chunk::StartStep]);
        }
        match op {
            Op::TextStart { seq } => out.push(Chunk::TextStart { id: part_id(seq) }),
            Op::TextDelta { seq, delta } => out.push(Chunk::TextDelta {
                id: part_id(seq),
                delta,
            }),
            Op::TextEnd { seq } => out.push(Chunk::TextEnd { id: part_id(seq) }),
            Op::ToolCall { call, .. } => {
                self.remember(&call.id);
                out.push(Chunk::ToolInputAvailable {
                    input: tool_input(&call.arguments),
                    tool_call_id: call.id,
                    tool_name: call.name,
                    dynamic: true,
                });
            }
            Op::ToolResult { result: r, .. } => {
                self.after_tools = true;
                if self.remember(&r.call_id) {
                    out.push(Chunk::ToolInputAvailable {
                        tool_call_id: r.call_id.clone(),
                        tool_name: r.name,
                        input: Value::Object(Map::new()),
                        dynamic: true,
                    });
                }
                out.push(if r.is_error {
                    Chunk::ToolOutputError {
                        tool_call_id: r.call_id,
                        error_text: r.content,
                        dynamic: true,
                    }
                } else {
                    Chunk::ToolOutputAvailable {
                        tool_call_id: r.call_id,
                        output: Value::String(r.content),
                        dynamic: true,
                    }
                });
            }
            Op::InputRequest { request, .. } => {
                let mut data = serde_json::json!({ "prompt": request.prompt });
                if let Some(schema) = request.schema {
                    data["schema"] = schema;
                }
                out.push(Chunk::DataInputRequest {
                    id: request.id,
                    data,
                });
            }
            Op::Input { .. } => {}
            Op::Usage(usage) => out.push(Chunk::MessageMetadata {
                message_metadata: serde_json::json!({ "usage": usage }),
            }),
            Op::Error { message, .. } => {
                self.errored = true;
                out.push(Chunk::Error {
                    error_text: message,
                });
            }
            Op::End { reason } => self.end(reason, out),
        }
    }

    fn end(&mut self, reason: EndReason, out: &mut Vec<Chunk>) {
        self.done = true;
        out.push(Chunk::FinishStep);
        match reason {
            EndReason::Completed => out.push(Chunk::Finish),
            EndReason::Cancelled => out.push(Chunk::Abort),
            EndReason::Failed => {
                if !self.errored {
                    out.push(Chunk::Error {
                        error_text: "the session failed".into(),
                    });
                }
                out.push(Chunk::Finish);
            }
        }
    }

    /// Records a call id; true if it was not known (and there is room).
    fn remember(&mut self, id: &str) -> bool {
        if self.known_calls.len() >= MAX_KNOWN_CALLS || self.known_calls.contains(id) {
            return false;
        }
        self.known_calls.insert(id.to_owned())
    }
}

/// A text part's id: unique within the message, the same on every edge.
fn part_id(seq: u64) -> String {
    format!("t{seq}")
}

/// The arguments the model wrote, parsed; kept as a string if not JSON.
fn tool_input(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return Value::Object(Map::new());
    }
    serde_json::from_str(arguments).unwrap_or_else(|_| Value::String(arguments.to_owned()))
}

fn to_json(chunks: Vec<Chunk>) -> Vec<String> {
    chunks
        .iter()
        .map(|c| serde_json::to_string(c).expect("chunks always serialise"))
        .collect()
}

impl Encoder for UiStream {
    fn open(&mut self) -> Vec<String> {
        to_json(self.start())
    }

    fn events(&mut self, events: &[RawEvent]) -> Vec<String> {
        let mut ops = Vec::new();
        for e in events {
            self.reader.read(&e.json, &mut ops);
        }
        let mut chunks = Vec::new();
        for op in ops {
            if !self.done {
                self.chunks(op, &mut chunks);
            }
        }
        let mut out = to_json(chunks);
        if self.done {
            out.push("[DONE]".into());
        }
        out
    }

    fn expired(&mut self, e: &DeliveryError) -> Vec<String> {
        self.done = true;
        let mut out = to_json(vec![Chunk::Error {
            error_text: e.to_string(),
        }]);
        out.push("[DONE]".into());
        out
    }

    fn done(&self) -> bool {
        self.done
    }
}

/// `GET|POST /v1/sessions/{id}/ui-stream` (a POST's body is ignored: it is
/// what `useChat` sends, and the session is already running).
pub async fn handler(
    State(state): State<AppState>,
    SessionAuth(id): SessionAuth,
) -> Result<Response, ApiError> {
    let encoder = UiStream::new(id.as_str(), None, Vec::new());
    let req = stream::Request {
        id,
        transport: "ui-stream",
        headers: &[("x-vercel-ai-ui-message-stream", "v1")],
    };
    stream::serve(&state, req, encoder).await
}

#[cfg(test)]
mod tests;
