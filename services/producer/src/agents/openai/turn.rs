//! One streamed completion, chunk by chunk: text deltas become `token`
//! events, tool-call fragments are put together by `index` and go out as
//! one `tool_call` event when the choice finishes (or the stream ends), and the
//! end brings the whole text as a `message` and the last `usage` seen.
//! Servers differ in what they leave out; every field here may be missing
//! or null.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

use super::{cut, failed};
use crate::agents::{AgentError, Finish};

/// One streamed chunk (`chat.completion.chunk`), as loosely as servers send it.
#[derive(Deserialize)]
struct Chunk {
    id: Option<String>,
    choices: Option<Vec<Choice>>,
    usage: Option<Usage>,
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Choice {
    index: Option<u32>,
    delta: Option<Delta>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    content: Option<String>,
    tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Deserialize)]
struct ToolCallDelta {
    index: Option<u32>,
    id: Option<String>,
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    name: Option<String>,
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    total_tokens: Option<u64>,
}

#[derive(Default)]
struct ToolCall {
    id: String,
    name: String,
    arguments: String,
}

/// What the completion has said so far; turns chunks into events.
#[derive(Default)]
pub(super) struct Turn {
    /// A chunk arrived (the first-token timeout no longer applies).
    pub(super) started: bool,
    id: Option<String>,
    text: String,
    calls: BTreeMap<u32, ToolCall>,
    last_call: Option<u32>,
    usage: Option<Usage>,
    finish_reason: Option<String>,
}

impl Turn {
    /// Applies one event's data; true when the stream says it is done.
    pub(super) fn apply(
        &mut self,
        data: &str,
        out: &mut Vec<(&'static str, Value)>,
    ) -> Result<bool, AgentError> {
        let data = data.trim();
        if data.is_empty() {
            return Ok(false);
        }
        self.started = true;
        if data == "[DONE]" {
            return Ok(true);
        }
        let chunk: Chunk = serde_json::from_str(data).map_err(|e| {
            failed(
                "upstream_error",
                format!("unreadable chunk ({e}): {}", cut(data)),
            )
        })?;
        if let Some(error) = chunk.error {
            return Err(failed("upstream_error", error_message(&error)));
        }
        if self.id.is_none() {
            self.id = chunk.id;
        }
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        // Only the first choice: `n` is not among the options.
        for choice in chunk.choices.into_iter().flatten() {
            if choice.index.unwrap_or(0) != 0 {
                continue;
            }
            if let Some(delta) = choice.delta {
                if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                    self.text.push_str(&text);
                    out.push(("token", json!({ "text": text })));
                }
                for fragment in delta.tool_calls.into_iter().flatten() {
                    self.add_fragment(fragment);
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.flush_calls(out);
                self.finish_reason = Some(reason);
            }
        }
        Ok(false)
    }

    /// Adds a piece of a tool call: the first piece of a call carries its
    /// `id` and name, later ones more of its arguments.
    fn add_fragment(&mut self, fragment: ToolCallDelta) {
        // Servers that leave the index out send calls one after another.
        let index = fragment
            .index
            .unwrap_or_else(|| match (self.last_call, &fragment.id) {
                (Some(last), Some(id)) if self.calls.get(&last).is_some_and(|c| c.id != *id) => {
                    last + 1
                }
                (Some(last), _) => last,
                (None, _) => 0,
            });
        self.last_call = Some(index);
        let call = self.calls.entry(index).or_default();
        if let Some(id) = fragment.id.filter(|_| call.id.is_empty()) {
            call.id = id;
        }
        let Some(function) = fragment.function else {
            return;
        };
        // Some servers repeat the name in every piece.
        if let Some(name) = function.name.filter(|n| *n != call.name) {
            call.name.push_str(&name);
        }
        if let Some(arguments) = function.arguments {
            call.arguments.push_str(&arguments);
        }
    }

    /// One `tool_call` event for all the calls of the choice, shaped like
    /// AutoGen's `ToolCallRequestEvent` (as the Python adapter publishes it).
    fn flush_calls(&mut self, out: &mut Vec<(&'static str, Value)>) {
        self.last_call = None;
        let calls: Vec<Value> = std::mem::take(&mut self.calls)
            .into_values()
            .map(|c| json!({"id": c.id, "name": c.name, "arguments": c.arguments}))
            .collect();
        if !calls.is_empty() {
            let mut data = json!({"type": "ToolCallRequestEvent", "content": calls});
            if let Some(id) = &self.id {
                data["id"] = Value::String(id.clone());
            }
            out.push(("tool_call", data));
        }
    }

    /// The closing events: calls not yet out, the whole text, the usage.
    pub(super) fn finish(mut self, out: &mut Vec<(&'static str, Value)>) -> Finish {
        self.flush_calls(out);
        if !self.text.is_empty() {
            let mut message =
                json!({"type": "TextMessage", "content": self.text, "role": "assistant"});
            if let Some(id) = self.id {
                message["id"] = Value::String(id);
            }
            out.push(("message", message));
        }
        if let Some(u) = self.usage {
            let (prompt, completion) = (
                u.prompt_tokens.unwrap_or(0),
                u.completion_tokens.unwrap_or(0),
            );
            let total = u.total_tokens.unwrap_or(prompt + completion);
            out.push((
                "usage",
                json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}),
            ));
        }
        Finish {
            stop_reason: self.finish_reason,
        }
    }
}

/// `error.message` of an OpenAI error object, else the object itself.
fn error_message(error: &Value) -> String {
    match error.get("message").and_then(Value::as_str) {
        Some(m) => m.to_owned(),
        None => match error.as_str() {
            Some(s) => s.to_owned(),
            None => cut(&error.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply_all(chunks: &[&str]) -> (Vec<(&'static str, Value)>, Finish) {
        let mut turn = Turn::default();
        let mut out = Vec::new();
        for c in chunks {
            turn.apply(c, &mut out).unwrap();
        }
        let finish = turn.finish(&mut out);
        (out, finish)
    }

    #[test]
    fn calls_without_an_index_are_told_apart_by_id() {
        let (out, finish) = apply_all(&[
            r#"{"choices":[{"delta":{"tool_calls":[{"id":"a","function":{"name":"f","arguments":"{\"x\""}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"function":{"name":"f","arguments":":1}"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"id":"b","function":{"name":"g","arguments":"{}"}}]}}]}"#,
        ]);
        assert_eq!(
            out,
            [(
                "tool_call",
                json!({"type": "ToolCallRequestEvent", "content": [
                    {"id": "a", "name": "f", "arguments": "{\"x\":1}"},
                    {"id": "b", "name": "g", "arguments": "{}"},
                ]})
            )]
        );
        assert_eq!(finish.stop_reason, None);
    }

    #[test]
    fn other_choices_and_empty_deltas_are_ignored() {
        let (out, finish) = apply_all(&[
            r#"{"choices":[{"index":1,"delta":{"content":"no"}},{"index":0,"delta":{"content":"yes"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":""}},{"index":0}]}"#,
            r#"{"choices":[{"index":0,"delta":null,"finish_reason":"length"}],"usage":null}"#,
        ]);
        assert_eq!(
            out,
            [
                ("token", json!({"text": "yes"})),
                (
                    "message",
                    json!({"type": "TextMessage", "content": "yes", "role": "assistant"})
                ),
            ]
        );
        assert_eq!(finish.stop_reason.as_deref(), Some("length"));
    }
}
