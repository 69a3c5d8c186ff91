//! `POST /v1/sessions/{id}/ag-ui`: the session as AG-UI events over SSE,
//! for `@ag-ui/client`'s `HttpAgent` (and CopilotKit on top of it). The body
//! is a `RunAgentInput`; its `threadId`, when given, must be the session id.
//!
//! One run (`threadId` = `runId` = the session id): `RUN_STARTED`, a text
//! message per run of tokens (`TEXT_MESSAGE_START` / `_CONTENT` / `_END`, id
//! `<session>-m<seq of its first token>`), per tool call `TOOL_CALL_START` /
//! `_ARGS` / `_END` under an assistant message `<session>-m<seq>`, per
//! result `TOOL_CALL_RESULT` (message `<session>-r<seq>-<index>`), then
//! `RUN_FINISHED` (AG-UI `usage` and weir's sums as `result.usage`) or `RUN_ERROR` (failed:
//! the session's error; cancelled: code `cancelled`).
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

use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use weir_protocol::{EndReason, RawEvent};

use super::stream::{self, Encoder};
use super::{Op, Reader};
use crate::access::SessionAuth;
use crate::error::ApiError;
use crate::request::JsonObject;
use crate::subscription::DeliveryError;
use crate::AppState;

/// One AG-UI event. Field names are AG-UI's (camelCase).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(
    tag = "type",
    rename_all = "SCREAMING_SNAKE_CASE",
    rename_all_fields = "camelCase"
)]
pub enum AgUiEvent {
    RunStarted {
        thread_id: String,
        run_id: String,
    },
    MessagesSnapshot {
        messages: Vec<Value>,
    },
    TextMessageStart {
        message_id: String,
        role: &'static str,
    },
    TextMessageContent {
        message_id: String,
        delta: String,
    },
    TextMessageEnd {
        message_id: String,
    },
    ToolCallStart {
        tool_call_id: String,
        tool_call_name: String,
        parent_message_id: String,
    },
    ToolCallArgs {
        tool_call_id: String,
        delta: String,
    },
    ToolCallEnd {
        tool_call_id: String,
    },
    ToolCallResult {
        message_id: String,
        tool_call_id: String,
        content: String,
        role: &'static str,
    },
    /// Usage twice: weir's sums as `result.usage`, and AG-UI's own
    /// `usage` (one entry: the session's totals).
    RunFinished {
        thread_id: String,
        run_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        result: Option<Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        usage: Option<[TokenUsage; 1]>,
    },
    RunError {
        message: String,
        code: String,
    },
}

/// AG-UI's `TokenUsage`, from weir's usage sums.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenUsage {
    #[serde(skip_serializing_if = "Option::is_none")]
    input_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_tokens: Option<u64>,
}

impl TokenUsage {
    fn from_sums(u: &Map<String, Value>) -> TokenUsage {
        let n = |f: &str| u.get(f).and_then(Value::as_u64);
        TokenUsage {
            input_tokens: n("prompt_tokens"),
            output_tokens: n("completion_tokens"),
            total_tokens: n("total_tokens"),
        }
    }
}

/// The messages of a reconnect's `MESSAGES_SNAPSHOT`, built from the ops up
/// to the cut.
#[derive(Debug, Default)]
struct Snapshot {
    messages: Vec<Value>,
    /// The open text message: (id, its text so far).
    open: Option<(String, String)>,
    bytes: usize,
}

pub struct AgUi {
    session: String,
    reader: Reader,
    /// Reconnect: the client's own messages and the seq to snapshot up to;
    /// `None` once the snapshot is out (or on a first call).
    pending: Option<(Vec<Value>, u64)>,
    snapshot: Snapshot,
    max_snapshot: usize,
    usage: Option<Map<String, Value>>,
    error: Option<(String, String)>,
    done: bool,
}

impl AgUi {
    /// `client`: the messages of the request; `cut`: the last seq stored
    /// when the request came in.
    pub fn new(session: &str, client: &[Value], cut: u64, max_snapshot: usize) -> AgUi {
        let prefix = format!("{session}-");
        let ours = |m: &Value| m["id"].as_str().is_some_and(|id| id.starts_with(&prefix));
        let pending = client.iter().any(ours).then(|| {
            let theirs = client.iter().filter(|m| !ours(m)).cloned().collect();
            (theirs, cut)
        });
        AgUi {
            session: session.to_owned(),
            reader: Reader::new(session),
            pending,
            snapshot: Snapshot::default(),
            max_snapshot,
            usage: None,
            error: None,
            done: false,
        }
    }

    fn id(&self, seq: u64) -> String {
        format!("{}-m{seq}", self.session)
    }

    pub fn start(&mut self, out: &mut Vec<AgUiEvent>) {
        out.push(AgUiEvent::RunStarted {
            thread_id: self.session.clone(),
            run_id: self.session.clone(),
        });
        if matches!(self.pending, Some((_, 0))) {
            self.flush(out);
        }
    }

    /// The AG-UI events of one weir event's ops.
    pub fn event(&mut self, seq: u64, ops: Vec<Op>, out: &mut Vec<AgUiEvent>) {
        for op in ops {
            if self.done {
                return;
            }
            match (&self.pending, &op) {
                (Some(_), Op::End { .. }) => {
                    self.flush(out);
                    self.live(op, out);
                }
                (Some(_), _) => self.keep(op, out),
                (None, _) => self.live(op, out),
            }
        }
        if matches!(self.pending, Some((_, cut)) if seq >= cut) {
            self.flush(out);
        }
    }

    /// Adds an op to the snapshot being built.
    fn keep(&mut self, op: Op, out: &mut Vec<AgUiEvent>) {
        let s = &mut self.snapshot;
        match op {
            Op::TextStart { seq } => {
                s.open = Some((format!("{}-m{seq}", self.session), String::new()))
            }
            Op::TextDelta { delta, .. } => {
                s.bytes += delta.len();
                if let Some((_, text)) = &mut s.open {
                    text.push_str(&delta);
                }
            }
            Op::TextEnd { .. } => {
                if let Some((id, text)) = s.open.take() {
                    s.messages
                        .push(json!({"id": id, "role": "assistant", "content": text}));
                }
            }
            Op::ToolCall { seq, call } => {
                s.bytes += call.arguments.len() + call.name.len() + call.id.len();
                let id = format!("{}-m{seq}", self.session);
                let tc = json!({"id": call.id, "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments}});
                match s.messages.last_mut() {
                    Some(m) if m["id"] == id.as_str() => {
                        m["toolCalls"].as_array_mut().expect("set below").push(tc)
                    }
                    _ => s
                        .messages
                        .push(json!({"id": id, "role": "assistant", "toolCalls": [tc]})),
                }
            }
            Op::ToolResult { seq, index, result } => {
                s.bytes += result.content.len();
                s.messages.push(json!({
                    "id": format!("{}-r{seq}-{index}", self.session),
                    "role": "tool", "toolCallId": result.call_id, "content": result.content,
                }));
            }
            other => self.live(other, out),
        }
        if self.snapshot.bytes > self.max_snapshot {
            self.done = true;
            out.push(AgUiEvent::RunError {
                message: format!(
                    "the session's messages exceed the snapshot limit of {} bytes",
                    self.max_snapshot
                ),
                code: "snapshot_too_large".into(),
            });
        }
    }

    /// Sends the snapshot, then continues the open text message.
    fn flush(&mut self, out: &mut Vec<AgUiEvent>) {
        let Some((mut messages, _)) = self.pending.take() else {
            return;
        };
        let s = std::mem::take(&mut self.snapshot);
        messages.extend(s.messages);
        out.push(AgUiEvent::MessagesSnapshot { messages });
        if let Some((id, text)) = s.open {
            out.push(AgUiEvent::TextMessageStart {
                message_id: id.clone(),
                role: "assistant",
            });
            if !text.is_empty() {
                out.push(AgUiEvent::TextMessageContent {
                    message_id: id,
                    delta: text,
                });
            }
        }
    }

    fn live(&mut self, op: Op, out: &mut Vec<AgUiEvent>) {
        match op {
            Op::TextStart { seq } => out.push(AgUiEvent::TextMessageStart {
                message_id: self.id(seq),
                role: "assistant",
            }),
            Op::TextDelta { seq, delta } => out.push(AgUiEvent::TextMessageContent {
                message_id: self.id(seq),
                delta,
            }),
            Op::TextEnd { seq } => out.push(AgUiEvent::TextMessageEnd {
                message_id: self.id(seq),
            }),
            Op::ToolCall { seq, call } => {
                out.push(AgUiEvent::ToolCallStart {
                    tool_call_id: call.id.clone(),
                    tool_call_name: call.name,
                    parent_message_id: self.id(seq),
                });
                if !call.arguments.is_empty() {
                    out.push(AgUiEvent::ToolCallArgs {
                        tool_call_id: call.id.clone(),
                        delta: call.arguments,
                    });
                }
                out.push(AgUiEvent::ToolCallEnd {
                    tool_call_id: call.id,
                });
            }
            Op::ToolResult { seq, index, result } => out.push(AgUiEvent::ToolCallResult {
                message_id: format!("{}-r{seq}-{index}", self.session),
                tool_call_id: result.call_id,
                content: result.content,
                role: "tool",
            }),
            Op::Usage(u) => self.usage = Some(u),
            Op::Error { code, message } => self.error = Some((code, message)),
            Op::End { reason } => {
                self.done = true;
                out.push(self.end(reason));
            }
        }
    }

    fn end(&mut self, reason: EndReason) -> AgUiEvent {
        match reason {
            EndReason::Completed => AgUiEvent::RunFinished {
                thread_id: self.session.clone(),
                run_id: self.session.clone(),
                usage: self.usage.as_ref().map(|u| [TokenUsage::from_sums(u)]),
                result: self.usage.take().map(|u| json!({ "usage": u })),
            },
            EndReason::Cancelled => AgUiEvent::RunError {
                message: "the session was cancelled".into(),
                code: "cancelled".into(),
            },
            EndReason::Failed => {
                let (code, message) = self.error.take().unwrap_or_default();
                AgUiEvent::RunError {
                    message: if message.is_empty() {
                        "the session failed".into()
                    } else {
                        message
                    },
                    code: if code.is_empty() {
                        "failed".into()
                    } else {
                        code
                    },
                }
            }
        }
    }
}

fn to_json(events: Vec<AgUiEvent>) -> Vec<String> {
    events
        .iter()
        .map(|e| serde_json::to_string(e).expect("events always serialise"))
        .collect()
}

impl Encoder for AgUi {
    fn open(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        self.start(&mut out);
        to_json(out)
    }

    fn events(&mut self, events: &[RawEvent]) -> Vec<String> {
        let mut out = Vec::new();
        for e in events {
            let mut ops = Vec::new();
            self.reader.read(&e.json, &mut ops);
            self.event(e.seq, ops, &mut out);
        }
        to_json(out)
    }

    fn expired(&mut self, e: &DeliveryError) -> Vec<String> {
        self.done = true;
        to_json(vec![AgUiEvent::RunError {
            message: e.to_string(),
            code: "history_expired".into(),
        }])
    }

    fn done(&self) -> bool {
        self.done
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
    let encoder = AgUi::new(id.as_str(), &input.messages, cut, state.config.max_snapshot);
    let req = stream::Request {
        id,
        transport: "ag-ui",
        headers: &[],
    };
    stream::serve(&state, req, encoder).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontends::tests::{autogen_session, read_all};

    fn encode(enc: &mut AgUi, events: &[Vec<u8>]) -> Vec<String> {
        let mut out = Vec::new();
        enc.start(&mut out);
        let mut reader = Reader::new(&enc.session);
        for (i, e) in events.iter().enumerate() {
            let mut ops = Vec::new();
            reader.read(e, &mut ops);
            enc.event(i as u64 + 1, ops, &mut out);
        }
        to_json(out)
    }

    #[test]
    fn an_autogen_session_becomes_these_events_exactly() {
        let got = encode(&mut AgUi::new("s1", &[], 10, 1 << 20), &autogen_session());
        let want = [
            r#"{"type":"RUN_STARTED","threadId":"s1","runId":"s1"}"#,
            r#"{"type":"TEXT_MESSAGE_START","messageId":"s1-m2","role":"assistant"}"#,
            r#"{"type":"TEXT_MESSAGE_CONTENT","messageId":"s1-m2","delta":"Let me "}"#,
            r#"{"type":"TEXT_MESSAGE_CONTENT","messageId":"s1-m2","delta":"check."}"#,
            r#"{"type":"TEXT_MESSAGE_END","messageId":"s1-m2"}"#,
            r#"{"type":"TOOL_CALL_START","toolCallId":"call_1","toolCallName":"get_weather","parentMessageId":"s1-m4"}"#,
            r#"{"type":"TOOL_CALL_ARGS","toolCallId":"call_1","delta":"{\"city\":\"Paris\"}"}"#,
            r#"{"type":"TOOL_CALL_END","toolCallId":"call_1"}"#,
            r#"{"type":"TOOL_CALL_RESULT","messageId":"s1-r6-0","toolCallId":"call_1","content":"sunny","role":"tool"}"#,
            r#"{"type":"TEXT_MESSAGE_START","messageId":"s1-m7","role":"assistant"}"#,
            r#"{"type":"TEXT_MESSAGE_CONTENT","messageId":"s1-m7","delta":"It is sunny."}"#,
            r#"{"type":"TEXT_MESSAGE_END","messageId":"s1-m7"}"#,
            r#"{"type":"RUN_FINISHED","threadId":"s1","runId":"s1","result":{"usage":{"completion_tokens":7,"prompt_tokens":30}},"usage":[{"inputTokens":30,"outputTokens":7}]}"#,
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn a_reconnect_mid_message_gets_a_snapshot_then_the_open_message_again() {
        let user = json!({"id": "u1", "role": "user", "content": "weather?"});
        let held = json!({"id": "s1-m2", "role": "assistant", "content": "Let"});
        let events = autogen_session();
        // The log held seqs 1..=7 when the call came in: message m7 is open.
        let mut enc = AgUi::new("s1", &[user.clone(), held], 7, 1 << 20);
        let got = encode(&mut enc, &events);
        let snapshot: Value = serde_json::from_str(&got[1]).unwrap();
        assert_eq!(
            snapshot,
            json!({"type": "MESSAGES_SNAPSHOT", "messages": [
                user,
                {"id": "s1-m2", "role": "assistant", "content": "Let me check."},
                {"id": "s1-m4", "role": "assistant", "toolCalls": [{"id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"id": "s1-r6-0", "role": "tool", "toolCallId": "call_1", "content": "sunny"},
            ]})
        );
        assert_eq!(
            got[2..],
            [
                r#"{"type":"TEXT_MESSAGE_START","messageId":"s1-m7","role":"assistant"}"#,
                r#"{"type":"TEXT_MESSAGE_CONTENT","messageId":"s1-m7","delta":"It is sunny."}"#,
                r#"{"type":"TEXT_MESSAGE_END","messageId":"s1-m7"}"#,
                r#"{"type":"RUN_FINISHED","threadId":"s1","runId":"s1","result":{"usage":{"completion_tokens":7,"prompt_tokens":30}},"usage":[{"inputTokens":30,"outputTokens":7}]}"#,
            ]
        );
        assert_eq!(got.len(), 6);
    }

    #[test]
    fn a_reconnect_to_a_finished_session_is_one_snapshot_and_the_end() {
        let held = json!({"id": "s1-m2", "role": "assistant", "content": "Let"});
        let got = encode(
            &mut AgUi::new("s1", &[held], 10, 1 << 20),
            &autogen_session(),
        );
        let types: Vec<String> = got
            .iter()
            .map(|e| {
                serde_json::from_str::<Value>(e).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .into()
            })
            .collect();
        assert_eq!(types, ["RUN_STARTED", "MESSAGES_SNAPSHOT", "RUN_FINISHED"]);
        let snapshot: Value = serde_json::from_str(&got[1]).unwrap();
        assert_eq!(snapshot["messages"].as_array().unwrap().len(), 4);
    }

    #[test]
    fn failures_and_cancels_are_run_errors_and_a_big_snapshot_is_refused() {
        let ops = read_all("s", &autogen_session());
        let mut enc = AgUi::new("s", &[], 0, 1 << 20);
        let mut out = Vec::new();
        let error = Op::Error {
            code: "agent_failed".into(),
            message: "boom".into(),
        };
        enc.event(
            1,
            vec![
                error,
                Op::End {
                    reason: EndReason::Failed,
                },
            ],
            &mut out,
        );
        assert_eq!(
            to_json(out),
            [r#"{"type":"RUN_ERROR","message":"boom","code":"agent_failed"}"#]
        );
        let mut enc = AgUi::new("s", &[], 0, 1 << 20);
        let mut out = Vec::new();
        enc.event(
            1,
            vec![Op::End {
                reason: EndReason::Cancelled,
            }],
            &mut out,
        );
        assert_eq!(
            to_json(out),
            [r#"{"type":"RUN_ERROR","message":"the session was cancelled","code":"cancelled"}"#]
        );
        let held = json!({"id": "s-m2"});
        let mut enc = AgUi::new("s", &[held], 10, 4);
        let mut out = Vec::new();
        enc.event(1, ops, &mut out);
        let last = to_json(out).pop().unwrap();
        assert!(last.contains("snapshot_too_large"), "{last}");
        assert!(enc.done());
    }
}
