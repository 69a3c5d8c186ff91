//! The AI SDK's UI messages (what `useChat` posts to `POST /v1/chat`) as
//! weir's chat messages (protocol.md §9), and back: the chunks that restate
//! a continued assistant message from a run's input.
//!
//! A `user` or `system` message becomes one message whose `content` is its
//! text parts. An `assistant` message becomes, per step, an `assistant`
//! message (its text, and `tool_calls` for every tool part that has its
//! output) followed by one `tool` message per answered call: the shape a
//! chat model expects. A tool part still waiting for its output was never
//! answered, so it is left out (a call without a result is refused by
//! models). Every message made from UI message `M` has `"id": M`, which is
//! how [`restate`] finds a continued message's earlier parts in a run's
//! input. Parts with no place in a conversation (reasoning, files, sources,
//! data, step boundaries) are skipped; malformed ones are a 400 naming the
//! field, e.g. `messages[2].parts[0].text`.

use serde_json::{json, Map, Value};

use super::ui_stream::Chunk;
use crate::error::ApiError;

/// A 400 naming the field.
pub fn invalid(field: &str, what: &str) -> ApiError {
    ApiError::BadRequest(format!("{field}: {what}"))
}

/// A string field of `object`, or a 400 naming it.
pub fn text_field<'a>(object: &'a Value, at: &str, name: &str) -> Result<&'a str, ApiError> {
    object[name]
        .as_str()
        .ok_or_else(|| invalid(&format!("{at}.{name}"), "must be a string"))
}

/// The chat messages of useChat's `messages`.
pub fn to_chat(messages: &Value) -> Result<Vec<Value>, ApiError> {
    let items = messages
        .as_array()
        .ok_or_else(|| invalid("messages", "must be an array of UI messages"))?;
    let mut out = Vec::new();
    for (i, m) in items.iter().enumerate() {
        let at = format!("messages[{i}]");
        if !m.is_object() {
            return Err(invalid(&at, "must be an object"));
        }
        let id = text_field(m, &at, "id")?;
        let parts = m["parts"]
            .as_array()
            .ok_or_else(|| invalid(&format!("{at}.parts"), "must be an array"))?;
        match text_field(m, &at, "role")? {
            role @ ("user" | "system") => {
                let mut text = String::new();
                for (j, p) in parts.iter().enumerate() {
                    if let Part::Text(t) = part(p, &format!("{at}.parts[{j}]"))? {
                        text.push_str(t);
                    }
                }
                out.push(json!({"role": role, "content": text, "id": id}));
            }
            "assistant" => assistant(id, parts, &at, &mut out)?,
            _ => {
                return Err(invalid(
                    &format!("{at}.role"),
                    "must be user, system or assistant",
                ))
            }
        }
    }
    Ok(out)
}

/// One part, as far as a conversation cares.
enum Part<'a> {
    Text(&'a str),
    /// A tool call and its output (`None`: not answered yet).
    Tool {
        id: &'a str,
        name: &'a str,
        input: &'a Value,
        output: Option<String>,
    },
    Other,
}

fn part<'a>(p: &'a Value, at: &str) -> Result<Part<'a>, ApiError> {
    if !p.is_object() {
        return Err(invalid(at, "must be an object"));
    }
    let ty = text_field(p, at, "type")?;
    if ty == "text" {
        return Ok(Part::Text(text_field(p, at, "text")?));
    }
    let name = match ty.strip_prefix("tool-") {
        Some(name) => name,
        None if ty == "dynamic-tool" => text_field(p, at, "toolName")?,
        None => return Ok(Part::Other),
    };
    let id = text_field(p, at, "toolCallId")?;
    let output = match text_field(p, at, "state")? {
        "output-available" => Some(match &p["output"] {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        }),
        "output-error" => Some(text_field(p, at, "errorText")?.to_owned()),
        _ => None,
    };
    Ok(Part::Tool {
        id,
        name,
        input: &p["input"],
        output,
    })
}

/// An assistant UI message as chat messages: per step, the text and the
/// answered calls, then their results.
fn assistant(id: &str, parts: &[Value], at: &str, out: &mut Vec<Value>) -> Result<(), ApiError> {
    let mut text = String::new();
    let mut calls: Vec<Value> = Vec::new();
    let mut results: Vec<Value> = Vec::new();
    let flush = |text: &mut String,
                 calls: &mut Vec<Value>,
                 results: &mut Vec<Value>,
                 out: &mut Vec<Value>| {
        if text.is_empty() && calls.is_empty() {
            return;
        }
        let mut m = json!({"role": "assistant", "content": std::mem::take(text), "id": id});
        if !calls.is_empty() {
            m["tool_calls"] = Value::Array(std::mem::take(calls));
        }
        out.push(m);
        out.append(results);
    };
    for (j, p) in parts.iter().enumerate() {
        match part(p, &format!("{at}.parts[{j}]"))? {
            Part::Text(t) => {
                if !calls.is_empty() {
                    flush(&mut text, &mut calls, &mut results, out);
                }
                text.push_str(t);
            }
            Part::Tool {
                id: call,
                name,
                input,
                output: Some(output),
            } => {
                let arguments = match input {
                    Value::Null => "{}".to_owned(),
                    v => v.to_string(),
                };
                calls.push(json!({"id": call, "name": name, "arguments": arguments}));
                results.push(
                    json!({"role": "tool", "content": output, "tool_call_id": call, "id": id}),
                );
            }
            Part::Tool { output: None, .. } | Part::Other => {}
        }
    }
    flush(&mut text, &mut calls, &mut results, out);
    Ok(())
}

/// The chunks that restate assistant message `message_id` from a run's
/// input (the messages [`to_chat`] made of it): text as `text-start` /
/// `-delta` / `-end` (part ids `r<n>`), each answered call as
/// `tool-input-available` + `tool-output-available`, a step boundary
/// between its steps and after the last. Empty when the input holds none.
pub fn restate(input: &[Value], message_id: &str) -> Vec<Chunk> {
    let mut out = Vec::new();
    let ours = input.iter().filter(|m| m["id"] == message_id);
    for (n, m) in ours.enumerate() {
        match m["role"].as_str() {
            Some("assistant") => {
                if !out.is_empty() {
                    out.extend([Chunk::FinishStep, Chunk::StartStep]);
                }
                let text = m["content"].as_str().unwrap_or_default();
                if !text.is_empty() {
                    let id = format!("r{n}");
                    out.push(Chunk::TextStart { id: id.clone() });
                    out.push(Chunk::TextDelta {
                        id: id.clone(),
                        delta: text.to_owned(),
                    });
                    out.push(Chunk::TextEnd { id });
                }
                for c in m["tool_calls"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                {
                    let arguments = c["arguments"].as_str().unwrap_or_default();
                    out.push(Chunk::ToolInputAvailable {
                        tool_call_id: c["id"].as_str().unwrap_or_default().to_owned(),
                        tool_name: c["name"].as_str().unwrap_or_default().to_owned(),
                        input: serde_json::from_str(arguments)
                            .unwrap_or_else(|_| Value::Object(Map::new())),
                        dynamic: true,
                    });
                }
            }
            Some("tool") => out.push(Chunk::ToolOutputAvailable {
                tool_call_id: m["tool_call_id"].as_str().unwrap_or_default().to_owned(),
                output: m["content"].clone(),
                dynamic: true,
            }),
            _ => {}
        }
    }
    if !out.is_empty() {
        out.extend([Chunk::FinishStep, Chunk::StartStep]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(messages: Value) -> String {
        to_chat(&messages).unwrap_err().to_string()
    }

    #[test]
    fn user_text_parts_become_one_message_and_other_parts_are_skipped() {
        let ui = json!([{"id": "u1", "role": "user", "parts": [
            {"type": "text", "text": "hello "}, {"type": "file", "url": "x", "mediaType": "image/png"},
            {"type": "text", "text": "there"}]}]);
        assert_eq!(
            to_chat(&ui).unwrap(),
            [json!({"role": "user", "content": "hello there", "id": "u1"})]
        );
    }

    #[test]
    fn an_answered_tool_part_becomes_a_call_and_a_tool_message_and_text_after_it_a_new_step() {
        let ui = json!([{"id": "a1", "role": "assistant", "parts": [
            {"type": "step-start"},
            {"type": "text", "text": "let me look", "state": "done"},
            {"type": "dynamic-tool", "toolName": "weather", "toolCallId": "call_3", "state": "output-available",
             "input": {"city": "Paris"}, "output": "sunny"},
            {"type": "tool-clock", "toolCallId": "call_4", "state": "output-error", "input": {}, "errorText": "no clock"},
            {"type": "tool-pending", "toolCallId": "call_5", "state": "input-available", "input": {}},
            {"type": "step-start"},
            {"type": "text", "text": "it is sunny"}]}]);
        assert_eq!(
            to_chat(&ui).unwrap(),
            [
                json!({"role": "assistant", "content": "let me look", "id": "a1", "tool_calls": [
                    {"id": "call_3", "name": "weather", "arguments": "{\"city\":\"Paris\"}"},
                    {"id": "call_4", "name": "clock", "arguments": "{}"}]}),
                json!({"role": "tool", "content": "sunny", "tool_call_id": "call_3", "id": "a1"}),
                json!({"role": "tool", "content": "no clock", "tool_call_id": "call_4", "id": "a1"}),
                json!({"role": "assistant", "content": "it is sunny", "id": "a1"}),
            ]
        );
    }

    #[test]
    fn an_object_output_is_sent_as_its_json_text() {
        let ui = json!([{"id": "a", "role": "assistant", "parts": [
            {"type": "dynamic-tool", "toolName": "f", "toolCallId": "c", "state": "output-available",
             "input": {}, "output": {"ok": true}}]}]);
        assert_eq!(to_chat(&ui).unwrap()[1]["content"], "{\"ok\":true}");
    }

    #[test]
    fn malformed_messages_are_refused_naming_the_field() {
        assert_eq!(err(json!({})), "messages: must be an array of UI messages");
        assert_eq!(err(json!([3])), "messages[0]: must be an object");
        assert_eq!(
            err(json!([{"role": "user", "parts": []}])),
            "messages[0].id: must be a string"
        );
        assert_eq!(
            err(json!([{"id": "u", "role": "tool", "parts": []}])),
            "messages[0].role: must be user, system or assistant"
        );
        assert_eq!(
            err(json!([{"id": "u", "role": "user"}])),
            "messages[0].parts: must be an array"
        );
        assert_eq!(
            err(json!([{"id": "u", "role": "user", "parts": [{"type": "text"}]}])),
            "messages[0].parts[0].text: must be a string"
        );
        assert_eq!(
            err(json!([{"id": "u", "role": "user", "parts": [{}]}])),
            "messages[0].parts[0].type: must be a string"
        );
        let no_call_id = json!([{"id": "a", "role": "assistant", "parts": [
            {"type": "dynamic-tool", "toolName": "f", "state": "output-available"}]}]);
        assert_eq!(
            err(no_call_id),
            "messages[0].parts[0].toolCallId: must be a string"
        );
    }

    #[test]
    fn a_continued_message_is_restated_from_the_run_input_in_its_steps() {
        let ui = json!([
            {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "/tool f {}"}]},
            {"id": "s1", "role": "assistant", "parts": [
                {"type": "text", "text": "calling"},
                {"type": "dynamic-tool", "toolName": "f", "toolCallId": "call_1", "state": "output-available",
                 "input": {"x": 1}, "output": "done"}]}]);
        let input = to_chat(&ui).unwrap();
        let chunks: Vec<String> = restate(&input, "s1")
            .iter()
            .map(|c| serde_json::to_string(c).unwrap())
            .collect();
        assert_eq!(
            chunks,
            [
                r#"{"type":"text-start","id":"r0"}"#,
                r#"{"type":"text-delta","id":"r0","delta":"calling"}"#,
                r#"{"type":"text-end","id":"r0"}"#,
                r#"{"type":"tool-input-available","toolCallId":"call_1","toolName":"f","input":{"x":1},"dynamic":true}"#,
                r#"{"type":"tool-output-available","toolCallId":"call_1","output":"done","dynamic":true}"#,
                r#"{"type":"finish-step"}"#,
                r#"{"type":"start-step"}"#,
            ]
        );
        assert!(restate(&input, "u9").is_empty());
    }
}
