//! A thread's run (protocol.md §9) in the chat completions request: weir's
//! messages and front-end tools in the shapes the OpenAI API takes. Weir's
//! forms are flat (`tool_calls: [{id, name, arguments}]`, tools
//! `{name, description?, parameters?}`); OpenAI nests them under
//! `function` with `type: "function"`. What is already in OpenAI's shape
//! (a session that passes its own `tools` option) goes through unchanged.
//! Every call the model makes is a front-end tool's: the agent runs one
//! completion and publishes its calls, so the run ends with
//! `stop_reason: "tool_calls"` and the front end runs them.

use serde_json::{json, Map, Value};

/// A message in OpenAI's shape: its calls nested, weir's own `id` left out
/// (the API has no such field).
pub fn message(m: &Value) -> Value {
    let Value::Object(m) = m else {
        return m.clone();
    };
    let mut out: Map<String, Value> = m
        .iter()
        .filter(|(k, _)| k.as_str() != "id")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(Value::Array(calls)) = m.get("tool_calls") {
        let calls = calls.iter().map(tool_call).collect();
        out.insert("tool_calls".into(), Value::Array(calls));
    }
    Value::Object(out)
}

fn tool_call(c: &Value) -> Value {
    if c.get("function").is_some() {
        return c.clone();
    }
    json!({
        "id": c["id"],
        "type": "function",
        "function": {"name": c["name"], "arguments": c["arguments"]},
    })
}

/// A front-end tool as a function tool.
pub fn tool(t: &Value) -> Value {
    if t.get("type").is_some() {
        return t.clone();
    }
    let mut function = Map::new();
    for field in ["name", "description", "parameters"] {
        if let Some(v) = t.get(field).filter(|v| !v.is_null()) {
            function.insert(field.into(), v.clone());
        }
    }
    json!({"type": "function", "function": function})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weir_messages_become_openai_messages() {
        let call = json!({"role": "assistant", "content": null, "id": "m2",
            "tool_calls": [{"id": "call_1", "name": "weather", "arguments": "{\"city\":\"Oslo\"}"}]});
        assert_eq!(
            message(&call),
            json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]})
        );
        let result = json!({"role": "tool", "content": "sunny", "tool_call_id": "call_1"});
        assert_eq!(message(&result), result);
        assert_eq!(
            message(&json!({"role": "user", "content": "hi", "id": "m1"})),
            json!({"role": "user", "content": "hi"})
        );
    }

    #[test]
    fn front_end_tools_become_function_tools_and_openai_ones_stay() {
        assert_eq!(
            tool(&json!({"name": "weather", "parameters": {"type": "object"}})),
            json!({"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}})
        );
        let native = json!({"type": "function", "function": {"name": "f"}});
        assert_eq!(tool(&native), native);
    }
}
