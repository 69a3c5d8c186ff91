//! The mock's `/ask PROMPT` in a thread (protocol.md §4; [`super::thread`]
//! says it): it asks a person for `{"text": …}` with the prompt, waits for
//! the answer, and replies `you answered: <text>`.

use serde_json::json;

use crate::agents::{AgentError, Emitter};

/// The command a `user` message starts with to make the mock ask.
pub const COMMAND: &str = "/ask ";

/// The schema of the mock's question.
pub fn schema() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"]
    })
}

/// The prompt of an `/ask PROMPT` message, if it is one.
pub fn prompt_of(message: &str) -> Option<&str> {
    message.strip_prefix(COMMAND)
}

/// Asks `prompt` and returns the reply to say.
pub async fn reply(prompt: &str, out: &mut Emitter) -> Result<String, AgentError> {
    let answer = out.ask(prompt, Some(schema())).await?;
    // The edge checked the answer against the schema: `text` is a string.
    let text = answer.get("text").and_then(|t| t.as_str()).unwrap_or("");
    Ok(format!("you answered: {text}"))
}
