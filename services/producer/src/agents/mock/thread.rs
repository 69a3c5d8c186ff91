//! The mock agent in a thread (protocol.md §4): it answers the last message
//! of the conversation, deterministically, so that tests of threads, front
//! ends and front-end tools know every event in advance. One `match` in
//! [`reply`] decides; a new command is one arm and one function.

use std::time::Duration;

use serde_json::{json, Value};
use weir_protocol::mock::MockInput;

use crate::agents::{AgentError, Emitter, Finish, SeqId};

/// A token's text is at most this many characters.
pub const TOKEN_CHARS: usize = 8;

/// What the mock does for the last message.
#[derive(Debug, Clone, PartialEq)]
enum Turn {
    /// Stream this text.
    Say(String),
    /// Call one of the run's tools with these arguments (JSON text).
    Call { name: String, arguments: String },
    /// Ask a person this prompt, then say what they answered.
    Ask(String),
}

/// Answers the last of `messages`.
pub async fn reply(
    input: &MockInput,
    messages: &[Value],
    out: &mut Emitter,
) -> Result<Finish, AgentError> {
    match turn(messages, &input.tools)? {
        Turn::Say(text) => say(&text, input.rate, out).await,
        Turn::Call { name, arguments } => call(name, arguments, out).await,
        Turn::Ask(prompt) => {
            let text = super::ask::reply(&prompt, out).await?;
            say(&text, input.rate, out).await
        }
    }
}

fn turn(messages: &[Value], tools: &[Value]) -> Result<Turn, AgentError> {
    let last = messages
        .last()
        .ok_or_else(|| AgentError::BadInput("a thread's run needs at least one message".into()))?;
    let content = last["content"].as_str().unwrap_or_default();
    match last["role"].as_str() {
        Some("tool") => Ok(Turn::Say(format!("tool said: {content}"))),
        Some("user") => Ok(match content.strip_prefix("/tool ") {
            Some(rest) => tool_call(rest, tools).unwrap_or_else(|| echo(content)),
            None => match super::ask::prompt_of(content) {
                Some(prompt) => Turn::Ask(prompt.to_owned()),
                None => echo(content),
            },
        }),
        role => Err(AgentError::BadInput(format!(
            "the mock answers a user or tool message, and the last one is {}",
            role.unwrap_or("without a role")
        ))),
    }
}

fn echo(content: &str) -> Turn {
    Turn::Say(format!("echo: {content}"))
}

/// `NAME ARGS`, when NAME is one of `tools` and ARGS a JSON object; the
/// arguments are kept as written.
fn tool_call(rest: &str, tools: &[Value]) -> Option<Turn> {
    let (name, arguments) = rest.split_once(' ')?;
    let known = tools.iter().any(|t| t["name"].as_str() == Some(name));
    let object = serde_json::from_str::<Value>(arguments).is_ok_and(|a| a.is_object());
    (known && object).then(|| Turn::Call {
        name: name.to_owned(),
        arguments: arguments.to_owned(),
    })
}

/// Streams `text` in tokens of at most [`TOKEN_CHARS`] characters at `rate`
/// tokens/s (0 = as fast as possible).
async fn say(text: &str, rate: f64, out: &mut Emitter) -> Result<Finish, AgentError> {
    let mut tick = (rate > 0.0).then(|| {
        let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    for token in chunks(text, TOKEN_CHARS) {
        if let Some(t) = tick.as_mut() {
            t.tick().await;
        }
        out.emit("token", Some("mock"), json!({ "text": token }))
            .await?;
    }
    Ok(Finish::default())
}

/// One `tool_call` whose id is `call_<its seq>`; the run ends for the front
/// end to run the tool.
async fn call(name: String, arguments: String, out: &mut Emitter) -> Result<Finish, AgentError> {
    let data = json!({"content": [{"id": "", "name": name, "arguments": arguments}]});
    let id = SeqId {
        at: "/content/0/id",
        prefix: "call_",
    };
    out.emit_with_seq_id("tool_call", Some("mock"), data, Some(id))
        .await?;
    Ok(Finish {
        stop_reason: Some("tool_calls".into()),
    })
}

/// `text` cut into pieces of at most `n` characters (never inside one).
pub fn chunks(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(n).map(|c| c.iter().collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(text: &str) -> Value {
        json!({"role": "user", "content": text})
    }

    #[test]
    fn the_mock_answers_the_last_message_as_the_contract_says() {
        let tools = [json!({"name": "weather"})];
        let rows = [
            (vec![user("hi")], echo("hi")),
            (
                vec![user("hi"), user("/tool weather {\"city\": \"Oslo\"}")],
                Turn::Call {
                    name: "weather".into(),
                    arguments: "{\"city\": \"Oslo\"}".into(),
                },
            ),
            // Not one of the run's tools, or not an object: an echo.
            (vec![user("/tool clock {}")], echo("/tool clock {}")),
            (vec![user("/tool weather [1]")], echo("/tool weather [1]")),
            (
                vec![json!({"role": "tool", "content": "sunny", "tool_call_id": "call_1"})],
                Turn::Say("tool said: sunny".into()),
            ),
            (
                vec![user("/ask your name?")],
                Turn::Ask("your name?".into()),
            ),
        ];
        for (messages, expected) in rows {
            assert_eq!(turn(&messages, &tools).unwrap(), expected, "{messages:?}");
        }
    }

    #[test]
    fn a_conversation_ending_without_a_user_or_tool_message_is_bad_input() {
        for messages in [vec![], vec![json!({"role": "assistant", "content": "x"})]] {
            assert!(matches!(turn(&messages, &[]), Err(AgentError::BadInput(_))));
        }
    }

    #[test]
    fn tokens_hold_at_most_eight_characters_and_concatenate_to_the_reply() {
        let text = "echo: ünïcödé and more words";
        let tokens = chunks(text, TOKEN_CHARS);
        assert!(tokens.iter().all(|t| t.chars().count() <= TOKEN_CHARS));
        assert_eq!(tokens.concat(), text);
        assert_eq!(tokens[0], "echo: ün");
    }
}
