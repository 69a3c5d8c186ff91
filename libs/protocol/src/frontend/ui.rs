//! The AI SDK's UI messages (what `useChat` posts) as chat messages
//! (protocol.md §9).
//!
//! A `user` or `system` message becomes one message whose `content` is its
//! text parts. An `assistant` message becomes, per step, an `assistant`
//! message (its text, and `tool_calls` for every tool part that has its
//! output) followed by one `tool` message per answered call: the shape a
//! chat model expects. A tool part still waiting for its output was never
//! answered, so it is left out (a call without a result is refused by
//! models). Every message made from UI message `M` has `"id": M`, so the
//! edge can find a continued message's earlier parts in a run's input.
//! Parts with no place in a conversation (reasoning, files, sources, data,
//! step boundaries) are skipped; malformed ones are refused naming the
//! field, e.g. `messages[2].parts[0].text`.

use serde_json::{json, Value};

use super::{invalid, text_field, Invalid};

/// The chat messages of useChat's `messages`.
pub fn ui_to_chat(messages: &Value) -> Result<Vec<Value>, Invalid> {
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

fn part<'a>(p: &'a Value, at: &str) -> Result<Part<'a>, Invalid> {
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
fn assistant(id: &str, parts: &[Value], at: &str, out: &mut Vec<Value>) -> Result<(), Invalid> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn err(messages: Value) -> String {
        ui_to_chat(&messages).unwrap_err()
    }

    #[test]
    fn user_text_parts_become_one_message_and_other_parts_are_skipped() {
        let ui = json!([{"id": "u1", "role": "user", "parts": [
            {"type": "text", "text": "hello "}, {"type": "file", "url": "x", "mediaType": "image/png"},
            {"type": "text", "text": "there"}]}]);
        assert_eq!(
            ui_to_chat(&ui).unwrap(),
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
            ui_to_chat(&ui).unwrap(),
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
        assert_eq!(ui_to_chat(&ui).unwrap()[1]["content"], "{\"ok\":true}");
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
}
