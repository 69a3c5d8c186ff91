//! AG-UI's messages and tools (a `RunAgentInput`'s) as chat messages and
//! tools (protocol.md §9), and a run's input back as AG-UI messages for
//! a `MESSAGES_SNAPSHOT`.
//!
//! `user`, `system` and `developer` (as `system`) messages keep their text
//! (a list of content parts: its text parts; other media is refused);
//! `assistant` messages their text and `toolCalls` (as `tool_calls`
//! `{id, name, arguments}`); `tool` messages their content (or `error`) and
//! `toolCallId`. Every message keeps its `id`, so a snapshot gives the
//! client back the ids it sent. `activity` and `reasoning` messages are the
//! client's own display state, not conversation: they are skipped.
//! Malformed ones are a 400 naming the field, e.g. `messages[1].toolCalls[0].id`.

use serde_json::{json, Value};

use super::{invalid, text_field, Invalid};

/// The chat messages of a `RunAgentInput`'s `messages`.
pub fn ag_ui_to_chat(messages: &Value) -> Result<Vec<Value>, Invalid> {
    let items = messages
        .as_array()
        .ok_or_else(|| invalid("messages", "must be an array of AG-UI messages"))?;
    let mut out = Vec::with_capacity(items.len());
    for (i, m) in items.iter().enumerate() {
        let at = format!("messages[{i}]");
        if !m.is_object() {
            return Err(invalid(&at, "must be an object"));
        }
        let id = text_field(m, &at, "id")?;
        let message = match text_field(m, &at, "role")? {
            role @ ("user" | "system" | "developer") => {
                let role = if role == "developer" { "system" } else { role };
                json!({"role": role, "content": content(&m["content"], &at)?, "id": id})
            }
            "assistant" => {
                let text = match &m["content"] {
                    Value::Null => String::new(),
                    c => content(c, &at)?,
                };
                let mut out = json!({"role": "assistant", "content": text, "id": id});
                if !m["toolCalls"].is_null() {
                    out["tool_calls"] = tool_calls(&m["toolCalls"], &at)?;
                }
                out
            }
            "tool" => {
                let mut text = content(&m["content"], &at)?;
                if text.is_empty() {
                    text = m["error"].as_str().unwrap_or_default().to_owned();
                }
                let call = text_field(m, &at, "toolCallId")?;
                json!({"role": "tool", "content": text, "tool_call_id": call, "id": id})
            }
            "activity" | "reasoning" => continue,
            _ => {
                return Err(invalid(
                    &format!("{at}.role"),
                    "must be user, system, developer, assistant, tool, activity or reasoning",
                ))
            }
        };
        out.push(message);
    }
    Ok(out)
}

/// A message's text: a string, or the text of its content parts.
fn content(c: &Value, at: &str) -> Result<String, Invalid> {
    match c {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut text = String::new();
            for (j, p) in parts.iter().enumerate() {
                let at = format!("{at}.content[{j}]");
                match p["type"].as_str() {
                    Some("text") => text.push_str(text_field(p, &at, "text")?),
                    Some(_) => return Err(invalid(&at, "only text content parts are supported")),
                    None => return Err(invalid(&format!("{at}.type"), "must be a string")),
                }
            }
            Ok(text)
        }
        _ => Err(invalid(
            &format!("{at}.content"),
            "must be a string or a list of content parts",
        )),
    }
}

fn tool_calls(calls: &Value, at: &str) -> Result<Value, Invalid> {
    let items = calls
        .as_array()
        .ok_or_else(|| invalid(&format!("{at}.toolCalls"), "must be an array"))?;
    let mut out = Vec::with_capacity(items.len());
    for (k, c) in items.iter().enumerate() {
        let at = format!("{at}.toolCalls[{k}]");
        let id = text_field(c, &at, "id")?;
        let f = &c["function"];
        if !f.is_object() {
            return Err(invalid(&format!("{at}.function"), "must be an object"));
        }
        let fat = format!("{at}.function");
        let name = text_field(f, &fat, "name")?;
        let arguments = text_field(f, &fat, "arguments")?;
        out.push(json!({"id": id, "name": name, "arguments": arguments}));
    }
    Ok(Value::Array(out))
}

/// The tools of a `RunAgentInput` (`{name, description, parameters?}`) as
/// weir's (`{name, description?, parameters?}`).
pub fn ag_ui_tools(tools: &Value) -> Result<Vec<Value>, Invalid> {
    let items = match tools {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        _ => return Err(invalid("tools", "must be an array")),
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, t) in items.iter().enumerate() {
        let at = format!("tools[{i}]");
        let mut tool = json!({"name": text_field(t, &at, "name")?});
        if let Some(d) = t["description"].as_str() {
            tool["description"] = d.into();
        }
        match &t["parameters"] {
            Value::Null => {}
            p @ Value::Object(_) => tool["parameters"] = p.clone(),
            _ => {
                return Err(invalid(
                    &format!("{at}.parameters"),
                    "must be a JSON Schema object",
                ))
            }
        }
        out.push(tool);
    }
    Ok(out)
}

/// A run's input messages as AG-UI messages: the ids they came with (a
/// message without one gets `<session>-i<index>`).
pub fn chat_to_ag_ui(session: &str, messages: &[Value]) -> Vec<Value> {
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let id = m["id"]
                .as_str()
                .map_or_else(|| format!("{session}-i{i}"), str::to_owned);
            let role = m["role"].as_str().unwrap_or("user");
            let text = m["content"].as_str().unwrap_or_default();
            let mut out = json!({"id": id, "role": role, "content": text});
            match role {
                "assistant" => {
                    let calls = m["tool_calls"].as_array().map(Vec::as_slice);
                    let calls: Vec<Value> = calls
                        .unwrap_or_default()
                        .iter()
                        .map(|c| {
                            json!({"id": c["id"], "type": "function",
                                "function": {"name": c["name"], "arguments": c["arguments"]}})
                        })
                        .collect();
                    if !calls.is_empty() {
                        out["toolCalls"] = Value::Array(calls);
                    }
                }
                "tool" => out["toolCallId"] = m["tool_call_id"].clone(),
                _ => {}
            }
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(messages: Value) -> String {
        ag_ui_to_chat(&messages).unwrap_err()
    }

    #[test]
    fn ag_ui_messages_become_chat_messages_with_their_ids_and_back() {
        let agui = json!([
            {"id": "s", "role": "developer", "content": "be brief"},
            {"id": "u1", "role": "user", "content": [{"type": "text", "text": "/tool pick "}, {"type": "text", "text": "{}"}]},
            {"id": "a1", "role": "assistant", "toolCalls": [{"id": "call_1", "type": "function",
                "function": {"name": "pick", "arguments": "{}"}}]},
            {"id": "t1", "role": "tool", "toolCallId": "call_1", "content": "3"},
            {"id": "x", "role": "activity", "activityType": "plan", "content": {}},
        ]);
        let chat = ag_ui_to_chat(&agui).unwrap();
        assert_eq!(
            chat,
            [
                json!({"role": "system", "content": "be brief", "id": "s"}),
                json!({"role": "user", "content": "/tool pick {}", "id": "u1"}),
                json!({"role": "assistant", "content": "", "id": "a1",
                    "tool_calls": [{"id": "call_1", "name": "pick", "arguments": "{}"}]}),
                json!({"role": "tool", "content": "3", "tool_call_id": "call_1", "id": "t1"}),
            ]
        );
        let back = chat_to_ag_ui("sess", &chat);
        assert_eq!(back[2]["toolCalls"], agui[2]["toolCalls"]);
        assert_eq!(
            back[3],
            json!({"id": "t1", "role": "tool", "content": "3", "toolCallId": "call_1"})
        );
        assert_eq!(
            back[1],
            json!({"id": "u1", "role": "user", "content": "/tool pick {}"})
        );
    }

    #[test]
    fn a_message_without_an_id_gets_one_from_the_session_in_a_snapshot() {
        let back = chat_to_ag_ui("sess", &[json!({"role": "user", "content": "hi"})]);
        assert_eq!(
            back,
            [json!({"id": "sess-i0", "role": "user", "content": "hi"})]
        );
    }

    #[test]
    fn a_tool_message_with_only_an_error_sends_the_error() {
        let chat = ag_ui_to_chat(
            &json!([{"id": "t", "role": "tool", "toolCallId": "c", "content": "", "error": "no"}]),
        );
        assert_eq!(chat.unwrap()[0]["content"], "no");
    }

    #[test]
    fn malformed_messages_and_tools_are_refused_naming_the_field() {
        assert_eq!(
            err(json!("x")),
            "messages: must be an array of AG-UI messages"
        );
        assert_eq!(
            err(json!([{"role": "user", "content": "x"}])),
            "messages[0].id: must be a string"
        );
        assert_eq!(
            err(json!([{"id": "u", "role": "robot"}])).split(':').next(),
            Some("messages[0].role")
        );
        assert_eq!(
            err(json!([{"id": "u", "role": "user", "content": 3}])),
            "messages[0].content: must be a string or a list of content parts"
        );
        assert_eq!(
            err(json!([{"id": "u", "role": "user", "content": [{"type": "image", "url": "x"}]}])),
            "messages[0].content[0]: only text content parts are supported"
        );
        assert_eq!(
            err(
                json!([{"id": "a", "role": "assistant", "toolCalls": [{"id": "c", "function": {"name": "f"}}]}])
            ),
            "messages[0].toolCalls[0].function.arguments: must be a string"
        );
        assert_eq!(
            err(json!([{"id": "t", "role": "tool", "content": "x"}])),
            "messages[0].toolCallId: must be a string"
        );
        let tools = |t: Value| ag_ui_tools(&t).unwrap_err();
        assert_eq!(tools(json!({})), "tools: must be an array");
        assert_eq!(
            tools(json!([{"description": "d"}])),
            "tools[0].name: must be a string"
        );
        assert_eq!(
            tools(json!([{"name": "f", "parameters": 3}])),
            "tools[0].parameters: must be a JSON Schema object"
        );
        assert_eq!(
            ag_ui_tools(
                &json!([{"name": "f", "description": "d", "parameters": {"type": "object"}}])
            )
            .unwrap(),
            [json!({"name": "f", "description": "d", "parameters": {"type": "object"}})]
        );
    }
}
