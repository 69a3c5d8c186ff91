//! The body of a thread's run (`POST /v1/threads/{t}/runs`, and the runs the
//! front ends start): `check_messages` and `check_tools` never panic, name
//! the field they refuse (`messages[i]…`, `tools[i]…`), and accept only
//! what the agents rely on — a known role, string content (or none beside
//! tool calls), a tool message's `tool_call_id`, tools with valid names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use weir_protocol::{check_messages, check_tools};

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Some(messages) = body.get("messages").and_then(Value::as_array) {
        match check_messages(messages) {
            Err(e) => assert!(e.starts_with("messages["), "{e}"),
            Ok(()) => {
                for m in messages {
                    let role = m["role"].as_str().expect("a role");
                    assert!(["system", "user", "assistant", "tool"].contains(&role));
                    assert!(m["content"].is_string() || m.get("tool_calls").is_some());
                    if role == "tool" {
                        assert!(m["tool_call_id"].is_string());
                    }
                }
            }
        }
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        match check_tools(tools) {
            Err(e) => assert!(e.starts_with("tools["), "{e}"),
            Ok(()) => {
                for t in tools {
                    let name = t["name"].as_str().expect("a name");
                    assert!((1..=64).contains(&name.len()));
                }
            }
        }
    }
});
