//! AG-UI's events as weir writes them (the `type` tag and camelCase
//! fields of `@ag-ui/core`), and their JSON lines.

use serde::Serialize;
use serde_json::{Map, Value};

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
        /// `interrupt` (a thread's run waits for a person) or `cancelled`.
        #[serde(skip_serializing_if = "Option::is_none")]
        outcome: Option<Value>,
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
    pub fn from_sums(u: &Map<String, Value>) -> TokenUsage {
        let n = |f: &str| u.get(f).and_then(Value::as_u64);
        TokenUsage {
            input_tokens: n("prompt_tokens"),
            output_tokens: n("completion_tokens"),
            total_tokens: n("total_tokens"),
        }
    }
}

pub fn to_json(events: Vec<AgUiEvent>) -> Vec<String> {
    events
        .iter()
        .map(|e| serde_json::to_string(e).expect("events always serialise"))
        .collect()
}
