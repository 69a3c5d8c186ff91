//! A continued assistant message restated from a run's input (protocol.md
//! §9): the SDK replaces a resumed message by id, so the replay of a run
//! that continues a message first gives that message's earlier parts, which
//! [`weir_protocol::frontend::ui_to_chat`] put in the run's input with the
//! message's id.

use serde_json::{Map, Value};

use super::ui_stream::Chunk;

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
    use serde_json::json;
    use weir_protocol::frontend::ui_to_chat;

    #[test]
    fn a_continued_message_is_restated_from_the_run_input_in_its_steps() {
        let ui = json!([
            {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "/tool f {}"}]},
            {"id": "s1", "role": "assistant", "parts": [
                {"type": "text", "text": "calling"},
                {"type": "dynamic-tool", "toolName": "f", "toolCallId": "call_1", "state": "output-available",
                 "input": {"x": 1}, "output": "done"}]}]);
        let input = ui_to_chat(&ui).unwrap();
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
