//! Front-end protocols (protocol.md §8): the session as a Vercel AI SDK UI
//! message stream ([`ui_stream`]) and as AG-UI events ([`ag_ui`]).
//!
//! Both are encoders over the one delivery path: [`stream::serve`] reads the
//! same [`crate::subscription::Subscription`] as WebSocket and SSE (ring or
//! log by seq, pacing, one batch held at a time) and hands each batch to an
//! [`stream::Encoder`]. Under both encoders sits [`Reader`], a pure function
//! of the events that says what they mean to a chat UI ([`Op`]): runs of
//! tokens become text parts, AutoGen-shaped `tool_call` / `tool_result`
//! become tool calls and results, usage is summed. Every id it hands out is
//! a seq, so the same log gives the same bytes on any edge.

use axum::routing::{get, post, MethodRouter};
use serde_json::{Map, Value};
use weir_protocol::event::kind;
use weir_protocol::input::{INPUT, INPUT_REQUEST};
use weir_protocol::{EndReason, Event};

pub mod ag_ui;
pub mod chat;
pub mod stream;
pub mod ui_messages;
pub mod ui_stream;

/// A session's `…/ui-stream` (GET and POST) and `…/ag-ui` (POST); a
/// thread's AI SDK chat (`/v1/chat`, `/v1/chat/{t}/stream`) and AG-UI
/// endpoints. The bodies that carry a conversation (the chat's, AG-UI's)
/// may be as large as [`ag_ui::body_limit`].
pub fn routes(config: &crate::EdgeConfig) -> Vec<(&'static str, MethodRouter<crate::AppState>)> {
    let ui_stream = get(ui_stream::handler).post(ui_stream::handler);
    let ag_ui = post(ag_ui::handler).layer(ag_ui::body_limit(config));
    let chat = post(chat::send).layer(ag_ui::body_limit(config));
    vec![
        ("/v1/sessions/{id}/ui-stream", ui_stream),
        ("/v1/sessions/{id}/ag-ui", ag_ui),
        ("/v1/chat", chat),
        ("/v1/chat/{t}/stream", get(chat::resume)),
        (
            "/v1/threads/{t}/ag-ui",
            post(ag_ui::thread::handler).layer(ag_ui::body_limit(config)),
        ),
    ]
}

/// A 400 naming the field of a front end's request that is wrong.
pub fn invalid(field: &str, what: &str) -> crate::error::ApiError {
    crate::error::ApiError::BadRequest(format!("{field}: {what}"))
}

/// What an event means to a chat UI. Ids are seqs; encoders format them.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// A text part starts at event `seq` (the first token of a run, or a
    /// complete `message` that was not streamed).
    TextStart {
        seq: u64,
    },
    TextDelta {
        seq: u64,
        delta: String,
    },
    TextEnd {
        seq: u64,
    },
    /// One call of the `tool_call` event at `seq`.
    ToolCall {
        seq: u64,
        call: ToolCall,
    },
    /// One result of the `tool_result` event at `seq` (`index`: its place).
    ToolResult {
        seq: u64,
        index: usize,
        result: ToolResult,
    },
    /// The agent asks a person (`input_request`, protocol.md §9) and waits.
    InputRequest {
        seq: u64,
        request: InputRequest,
    },
    /// The answer to request `request`, as the producer received it.
    Input {
        request: String,
    },
    /// The session's usage so far (sums of every `usage` event).
    Usage(Map<String, Value>),
    Error {
        code: String,
        message: String,
    },
    End {
        reason: EndReason,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The JSON text the model wrote.
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolResult {
    pub call_id: String,
    pub name: String,
    pub content: String,
    pub is_error: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InputRequest {
    pub id: String,
    pub prompt: String,
    /// The JSON Schema the answer must match, when the agent gave one.
    pub schema: Option<Value>,
}

/// Usage fields that are summed across `usage` events (AutoGen's and the
/// openai agent's names); others are left out.
const USAGE_FIELDS: [&str; 3] = ["prompt_tokens", "completion_tokens", "total_tokens"];

/// Reads a session's events in seq order and says what they mean ([`Op`]).
/// Holds O(1) state: the open text run and the usage sums.
#[derive(Debug)]
pub struct Reader {
    session: String,
    /// The open text run: (first seq, source).
    open: Option<(u64, Option<String>)>,
    /// Tokens were streamed since the last `message`: the next `message` of
    /// that source is their summary (AutoGen and the openai agent send the
    /// whole text again), not new text.
    streamed: Option<Option<String>>,
    usage: Map<String, Value>,
}

impl Reader {
    pub fn new(session: &str) -> Reader {
        Reader {
            session: session.to_owned(),
            open: None,
            streamed: None,
            usage: Map::new(),
        }
    }

    /// The ops of one event, appended to `out`. Events that are not JSON,
    /// and kinds a chat UI has no place for (`status`, pass-through kinds),
    /// give none.
    pub fn read(&mut self, json: &[u8], out: &mut Vec<Op>) {
        let Ok(e) = serde_json::from_slice::<Event>(json) else {
            return;
        };
        match e.kind.as_str() {
            kind::TOKEN => self.token(&e, out),
            kind::MESSAGE => self.message(&e, out),
            kind::TOOL_CALL => {
                self.close(out);
                out.extend(tool_calls(&self.session, &e));
            }
            kind::TOOL_RESULT => {
                self.close(out);
                out.extend(tool_results(&e));
            }
            kind::USAGE => self.add_usage(&e.data, out),
            INPUT_REQUEST => {
                self.close(out);
                let Some(id) = e.data["id"].as_str() else {
                    return;
                };
                out.push(Op::InputRequest {
                    seq: e.seq,
                    request: InputRequest {
                        id: id.to_owned(),
                        prompt: as_text(&e.data["prompt"]),
                        schema: Some(e.data["schema"].clone()).filter(Value::is_object),
                    },
                });
            }
            INPUT => {
                if let Some(request) = e.data["request"].as_str() {
                    out.push(Op::Input {
                        request: request.to_owned(),
                    });
                }
            }
            kind::ERROR => {
                self.close(out);
                let field = |f: &str| e.data[f].as_str().unwrap_or_default().to_owned();
                out.push(Op::Error {
                    code: field("code"),
                    message: field("message"),
                });
            }
            kind::END => {
                self.close(out);
                let reason = e.data["reason"].as_str().and_then(EndReason::parse);
                out.push(Op::End {
                    reason: reason.unwrap_or(EndReason::Completed),
                });
            }
            _ => {}
        }
    }

    fn token(&mut self, e: &Event, out: &mut Vec<Op>) {
        let Some(text) = e.data["text"].as_str().filter(|t| !t.is_empty()) else {
            return;
        };
        // Another agent of a team speaking starts another part.
        if self.open.as_ref().is_some_and(|(_, s)| *s != e.source) {
            self.close(out);
        }
        let seq = match &self.open {
            Some((seq, _)) => *seq,
            None => {
                self.open = Some((e.seq, e.source.clone()));
                out.push(Op::TextStart { seq: e.seq });
                e.seq
            }
        };
        self.streamed = Some(e.source.clone());
        out.push(Op::TextDelta {
            seq,
            delta: text.to_owned(),
        });
    }

    /// A complete chat message: the summary of tokens already streamed, the
    /// user's task (already in the UI), a tool-call summary (already shown
    /// as tool results), or else new text.
    fn message(&mut self, e: &Event, out: &mut Vec<Op>) {
        let from_user = e.source.as_deref() == Some("user") || e.data["role"] == "user";
        if from_user {
            return;
        }
        self.close(out);
        let summary = self.streamed.take().is_some_and(|s| s == e.source);
        if summary || e.data["type"] == "ToolCallSummaryMessage" {
            return;
        }
        let text = message_text(&e.data["content"]);
        if text.is_empty() {
            return;
        }
        out.push(Op::TextStart { seq: e.seq });
        out.push(Op::TextDelta {
            seq: e.seq,
            delta: text,
        });
        out.push(Op::TextEnd { seq: e.seq });
    }

    fn add_usage(&mut self, data: &Value, out: &mut Vec<Op>) {
        let mut any = false;
        for f in USAGE_FIELDS {
            if let Some(n) = data[f].as_u64() {
                let sum = self.usage.get(f).and_then(Value::as_u64).unwrap_or(0) + n;
                self.usage.insert(f.to_owned(), sum.into());
                any = true;
            }
        }
        if any {
            out.push(Op::Usage(self.usage.clone()));
        }
    }

    /// Ends the open text run, if any.
    fn close(&mut self, out: &mut Vec<Op>) {
        if let Some((seq, _)) = self.open.take() {
            out.push(Op::TextEnd { seq });
        }
    }
}

/// The text of a message's `content`: a string, or the strings of a
/// multi-modal list (AutoGen puts image placeholders there as objects).
fn message_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// A JSON value as text: strings as they are, anything else serialised.
fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `ToolCallRequestEvent`: `content: [{id, name, arguments}]`. A call
/// without an id gets `<session>-call-<seq>-<index>`.
fn tool_calls(session: &str, e: &Event) -> Vec<Op> {
    let items = e.data["content"].as_array().map(Vec::as_slice);
    items
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let id = c["id"].as_str().filter(|s| !s.is_empty());
            Op::ToolCall {
                seq: e.seq,
                call: ToolCall {
                    id: id.map_or_else(|| format!("{session}-call-{}-{i}", e.seq), str::to_owned),
                    name: as_text(&c["name"]),
                    arguments: as_text(&c["arguments"]),
                },
            }
        })
        .collect()
}

/// `ToolCallExecutionEvent`: `content: [{call_id, name, content, is_error}]`.
fn tool_results(e: &Event) -> Vec<Op> {
    let items = e.data["content"].as_array().map(Vec::as_slice);
    items
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter_map(|(index, r)| {
            let call_id = r["call_id"].as_str().filter(|s| !s.is_empty())?;
            Some(Op::ToolResult {
                seq: e.seq,
                index,
                result: ToolResult {
                    call_id: call_id.to_owned(),
                    name: as_text(&r["name"]),
                    content: as_text(&r["content"]),
                    is_error: r["is_error"].as_bool().unwrap_or(false),
                },
            })
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// An AutoGen-shaped session: the user's task, streamed text, a tool
    /// call and its result, more text, its summary, usage twice, end.
    pub(crate) fn autogen_session() -> Vec<Vec<u8>> {
        let evs = [
            json!({"seq":1,"kind":"message","ts":1.0,"source":"user","data":{"type":"TextMessage","content":"weather?"}}),
            json!({"seq":2,"kind":"token","ts":2.0,"source":"assistant","data":{"text":"Let me "}}),
            json!({"seq":3,"kind":"token","ts":3.0,"source":"assistant","data":{"text":"check."}}),
            json!({"seq":4,"kind":"tool_call","ts":4.0,"source":"assistant","data":{"type":"ToolCallRequestEvent","content":[{"id":"call_1","name":"get_weather","arguments":"{\"city\":\"Paris\"}"}]}}),
            json!({"seq":5,"kind":"usage","ts":5.0,"data":{"prompt_tokens":10,"completion_tokens":3}}),
            json!({"seq":6,"kind":"tool_result","ts":6.0,"source":"assistant","data":{"type":"ToolCallExecutionEvent","content":[{"call_id":"call_1","name":"get_weather","content":"sunny","is_error":false}]}}),
            json!({"seq":7,"kind":"token","ts":7.0,"source":"assistant","data":{"text":"It is sunny."}}),
            json!({"seq":8,"kind":"message","ts":8.0,"source":"assistant","data":{"type":"TextMessage","content":"It is sunny."}}),
            json!({"seq":9,"kind":"usage","ts":9.0,"data":{"prompt_tokens":20,"completion_tokens":4}}),
            json!({"seq":10,"kind":"end","ts":10.0,"data":{"reason":"completed"}}),
        ];
        evs.iter().map(|e| serde_json::to_vec(e).unwrap()).collect()
    }

    pub(crate) fn read_all(session: &str, events: &[Vec<u8>]) -> Vec<Op> {
        let mut r = Reader::new(session);
        let mut out = Vec::new();
        for e in events {
            r.read(e, &mut out);
        }
        out
    }

    #[test]
    fn an_autogen_session_reads_as_text_tool_call_result_text() {
        let ops = read_all("s1", &autogen_session());
        let delta = |seq, d: &str| Op::TextDelta {
            seq,
            delta: d.into(),
        };
        let usage = |p: u64, c: u64| {
            Op::Usage(
                json!({"prompt_tokens": p, "completion_tokens": c})
                    .as_object()
                    .unwrap()
                    .clone(),
            )
        };
        assert_eq!(
            ops,
            vec![
                Op::TextStart { seq: 2 },
                delta(2, "Let me "),
                delta(2, "check."),
                Op::TextEnd { seq: 2 },
                Op::ToolCall {
                    seq: 4,
                    call: ToolCall {
                        id: "call_1".into(),
                        name: "get_weather".into(),
                        arguments: r#"{"city":"Paris"}"#.into()
                    }
                },
                usage(10, 3),
                Op::ToolResult {
                    seq: 6,
                    index: 0,
                    result: ToolResult {
                        call_id: "call_1".into(),
                        name: "get_weather".into(),
                        content: "sunny".into(),
                        is_error: false
                    }
                },
                Op::TextStart { seq: 7 },
                delta(7, "It is sunny."),
                Op::TextEnd { seq: 7 },
                usage(30, 7),
                Op::End {
                    reason: EndReason::Completed
                },
            ]
        );
    }

    #[test]
    fn a_message_that_was_not_streamed_is_text_and_calls_without_ids_get_one() {
        let evs = [
            json!({"seq":1,"kind":"message","ts":1.0,"source":"a","data":{"type":"TextMessage","content":"hi"}}),
            json!({"seq":2,"kind":"tool_call","ts":1.0,"data":{"content":[{"name":"f","arguments":{"x":1}}]}}),
            json!({"seq":3,"kind":"message","ts":1.0,"source":"a","data":{"type":"ToolCallSummaryMessage","content":"r"}}),
            json!({"seq":4,"kind":"status","ts":1.0,"data":{"state":"paused"}}),
            json!({"seq":5,"kind":"error","ts":1.0,"data":{"code":"agent_failed","message":"boom"}}),
            json!({"seq":6,"kind":"end","ts":1.0,"data":{"reason":"failed"}}),
        ];
        let evs: Vec<Vec<u8>> = evs.iter().map(|e| serde_json::to_vec(e).unwrap()).collect();
        let ops = read_all("s", &evs);
        assert_eq!(ops[..3].to_vec(), {
            let d = Op::TextDelta {
                seq: 1,
                delta: "hi".into(),
            };
            vec![Op::TextStart { seq: 1 }, d, Op::TextEnd { seq: 1 }]
        });
        let Op::ToolCall { call, .. } = &ops[3] else {
            panic!("{ops:?}")
        };
        assert_eq!(call.id, "s-call-2-0");
        assert_eq!(call.arguments, r#"{"x":1}"#);
        assert_eq!(
            ops[4..].to_vec(),
            vec![
                Op::Error {
                    code: "agent_failed".into(),
                    message: "boom".into()
                },
                Op::End {
                    reason: EndReason::Failed
                }
            ]
        );
    }

    #[test]
    fn tokens_of_another_source_start_another_part() {
        let evs = [
            json!({"seq":1,"kind":"token","ts":1.0,"source":"a","data":{"text":"x"}}),
            json!({"seq":2,"kind":"token","ts":1.0,"source":"b","data":{"text":"y"}}),
            json!({"seq":3,"kind":"token","ts":1.0,"source":"b","data":{"text":""}}),
        ];
        let evs: Vec<Vec<u8>> = evs.iter().map(|e| serde_json::to_vec(e).unwrap()).collect();
        let starts: Vec<Op> = read_all("s", &evs)
            .into_iter()
            .filter(|o| matches!(o, Op::TextStart { .. } | Op::TextEnd { .. }))
            .collect();
        assert_eq!(
            starts,
            vec![
                Op::TextStart { seq: 1 },
                Op::TextEnd { seq: 1 },
                Op::TextStart { seq: 2 }
            ]
        );
    }
}
