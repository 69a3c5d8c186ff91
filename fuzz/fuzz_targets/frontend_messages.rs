//! Conversations as `POST /v1/chat` (the AI SDK's UI messages) and
//! `POST /v1/threads/{t}/ag-ui` (AG-UI's messages and tools) send them, as
//! the edge converts them (`weir_protocol::frontend`): any JSON is chat
//! messages or a refusal naming the field, and AG-UI's messages survive the
//! round trip of a snapshot (a run's input given back as AG-UI messages
//! converts to the same chat messages).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use weir_protocol::frontend::{ag_ui_to_chat, ag_ui_tools, chat_to_ag_ui, ui_to_chat};

/// Every chat message has a role the agents know and text content.
fn check_chat(messages: &[Value]) {
    for m in messages {
        let role = m["role"].as_str().expect("a role");
        assert!(["system", "user", "assistant", "tool"].contains(&role), "{m}");
        assert!(m["content"].is_string(), "{m}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let messages = &body["messages"];
    match ui_to_chat(messages) {
        Ok(chat) => check_chat(&chat),
        Err(e) => assert!(e.starts_with("messages"), "{e}"),
    }
    match ag_ui_to_chat(messages) {
        Ok(chat) => {
            check_chat(&chat);
            let back = chat_to_ag_ui("s", &chat);
            let again = ag_ui_to_chat(&Value::Array(back)).expect("a snapshot converts");
            assert_eq!(again, chat);
        }
        Err(e) => assert!(e.starts_with("messages"), "{e}"),
    }
    if let Err(e) = ag_ui_tools(&body["tools"]) {
        assert!(e.starts_with("tools"), "{e}");
    }
});
