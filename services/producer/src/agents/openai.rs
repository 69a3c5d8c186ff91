//! The `openai` agent: one chat completion, streamed from an OpenAI-compatible
//! `POST {base_url}/chat/completions` (OpenAI, Azure-style proxies, vLLM,
//! llama.cpp, Ollama, LiteLLM, …).
//!
//! Input: `messages` (the chat) or `prompt` (one user message), optionally
//! `model` and the request options in [`OPTIONS`]; the URL and the key are the
//! worker's ([`OpenAiConfig`]), never the session's. Output: `token` per text
//! delta, `tool_call` per assembled call once the choice finishes, then a
//! `message` with the whole text and `usage`; `finish_reason` becomes the
//! end's `stop_reason`. A thread's run (protocol.md §9) sends its
//! conversation and its front-end tools as function tools ([`thread`]); a
//! call of one ends the run with `stop_reason: "tool_calls"`.
//!
//! The body is read one network chunk at a time and only after the previous
//! chunk's events were emitted, so a paused run stops reading and the
//! upstream server feels the backpressure; an aborted run drops the request.

use async_trait::async_trait;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{json, Map, Value};
use tokio::time::{timeout_at, Instant};

use super::sse::SseDecoder;
use super::{Agent, AgentError, Emitter, Finish};
use crate::config::OpenAiConfig;
use turn::Turn;

mod thread;
mod turn;

/// The `source` of every event this agent emits (AutoGen's default agent name).
const SOURCE: &str = "assistant";

/// Request options a session may pass through to the endpoint.
pub const OPTIONS: &[&str] = &[
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "reasoning_effort",
    "user",
];

/// How much of an error body goes into the error message.
const EXCERPT_BYTES: usize = 512;

pub struct OpenAiAgent {
    client: reqwest::Client,
    url: String,
    config: OpenAiConfig,
}

impl OpenAiAgent {
    pub fn new(config: OpenAiConfig) -> Result<OpenAiAgent, reqwest::Error> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("weir-producer/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let url = format!("{}/chat/completions", config.base_url.trim_end_matches('/'));
        Ok(OpenAiAgent {
            client,
            url,
            config,
        })
    }

    /// Sends the request; a response that is not an event stream is an error.
    async fn send(&self, body: &Value, deadline: Instant) -> Result<reqwest::Response, AgentError> {
        let mut request = self
            .client
            .post(&self.url)
            .header(ACCEPT, "text/event-stream")
            .json(body);
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key);
        }
        let response = match timeout_at(deadline, request.send()).await {
            Err(_) => return Err(self.timeout(false)),
            Ok(Err(e)) => return Err(failed("upstream_unavailable", error_chain(&e))),
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        let json = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !status.is_success() || json {
            let excerpt = excerpt(response, Instant::now() + self.config.idle_timeout).await;
            let what = if status.is_success() {
                "expected an event stream, got "
            } else {
                ""
            };
            return Err(failed(
                "upstream_error",
                format!("{status}: {what}{excerpt}"),
            ));
        }
        Ok(response)
    }

    /// The next piece of the body, `None` at its end.
    async fn next_chunk(
        &self,
        response: &mut reqwest::Response,
        deadline: Instant,
        started: bool,
    ) -> Result<Option<bytes::Bytes>, AgentError> {
        match timeout_at(deadline, response.chunk()).await {
            Err(_) => Err(self.timeout(started)),
            Ok(Err(e)) => Err(failed("upstream_unavailable", error_chain(&e))),
            Ok(Ok(chunk)) => Ok(chunk),
        }
    }

    fn timeout(&self, started: bool) -> AgentError {
        let message = if started {
            format!(
                "the stream stalled: nothing for {:?}",
                self.config.idle_timeout
            )
        } else {
            format!(
                "no chunk within {:?} of the request",
                self.config.first_token_timeout
            )
        };
        failed("upstream_timeout", message)
    }
}

#[async_trait]
impl Agent for OpenAiAgent {
    async fn run(&self, input: Value, out: &mut Emitter) -> Result<Finish, AgentError> {
        let body = request_body(&input, &self.config.model)?;
        tracing::debug!(model = %body["model"], url = %self.url, "chat completion requested");
        let mut deadline = Instant::now() + self.config.first_token_timeout;
        let mut response = self.send(&body, deadline).await?;
        let mut decoder = SseDecoder::new(self.config.max_event_bytes);
        let mut turn = Turn::default();
        let (mut events, mut outputs) = (Vec::new(), Vec::new());
        loop {
            let chunk = self
                .next_chunk(&mut response, deadline, turn.started)
                .await?;
            let ended = match chunk {
                Some(bytes) => {
                    decoder
                        .push(&bytes, &mut events)
                        .map_err(|e| failed("upstream_error", e.to_string()))?;
                    false
                }
                None => {
                    events.extend(decoder.finish());
                    true
                }
            };
            let got_events = !events.is_empty();
            for data in events.drain(..) {
                let done = turn.apply(&data, &mut outputs)?;
                emit_all(out, &mut outputs).await?;
                if done {
                    return finish(turn, out).await;
                }
            }
            if ended {
                if !turn.started {
                    return Err(failed("upstream_error", "the stream ended without a chunk"));
                }
                return finish(turn, out).await;
            }
            // Restarted after the emits, so time spent paused does not count.
            if got_events {
                deadline = Instant::now() + self.config.idle_timeout;
            }
        }
    }
}

/// The request body for a session's input: the worker's default model,
/// `stream` with usage, and only the options in [`OPTIONS`].
pub fn request_body(input: &Value, default_model: &str) -> Result<Value, AgentError> {
    let bad = |m: String| Err(AgentError::BadInput(m));
    let Value::Object(input) = input else {
        return bad("the openai agent's input must be an object".into());
    };
    let model = match input.get("model") {
        None | Some(Value::Null) => default_model.to_owned(),
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(_) => return bad("input.model must be a non-empty string".into()),
    };
    let messages = match (input.get("messages"), input.get("prompt")) {
        (Some(Value::Array(m)), None) if !m.is_empty() && m.iter().all(Value::is_object) => {
            Value::Array(m.iter().map(thread::message).collect())
        }
        (Some(_), None) => return bad("input.messages must be a non-empty array of objects".into()),
        (None, Some(Value::String(p))) => json!([{"role": "user", "content": p}]),
        (None, Some(_)) => return bad("input.prompt must be a string".into()),
        (Some(_), Some(_)) => return bad("give input.messages or input.prompt, not both".into()),
        (None, None) => return bad("input.messages (or input.prompt) is required".into()),
    };
    let mut body = Map::new();
    for (key, value) in input {
        match key.as_str() {
            "model" | "messages" | "prompt" => {}
            // A thread's run always has `tools`, often none: the API refuses
            // an empty list.
            "tools" => match value {
                Value::Array(tools) if tools.is_empty() => {}
                Value::Array(tools) => {
                    let tools = tools.iter().map(thread::tool).collect();
                    body.insert("tools".into(), Value::Array(tools));
                }
                _ => return bad("input.tools must be an array".into()),
            },
            k if OPTIONS.contains(&k) => {
                body.insert(k.to_owned(), value.clone());
            }
            k => {
                return bad(format!(
                    "input.{k} is not accepted by the openai agent; it takes messages or prompt, model, {}",
                    OPTIONS.join(", ")
                ))
            }
        }
    }
    body.insert("model".into(), Value::String(model));
    body.insert("messages".into(), messages);
    body.insert("stream".into(), Value::Bool(true));
    body.insert("stream_options".into(), json!({"include_usage": true}));
    Ok(Value::Object(body))
}

async fn emit_all(
    out: &mut Emitter,
    outputs: &mut Vec<(&'static str, Value)>,
) -> Result<(), AgentError> {
    for (kind, data) in outputs.drain(..) {
        out.emit(kind, Some(SOURCE), data).await?;
    }
    Ok(())
}

async fn finish(turn: Turn, out: &mut Emitter) -> Result<Finish, AgentError> {
    let mut outputs = Vec::new();
    let finish = turn.finish(&mut outputs);
    emit_all(out, &mut outputs).await?;
    Ok(finish)
}

fn failed(code: &str, message: impl Into<String>) -> AgentError {
    AgentError::Failed {
        code: code.to_owned(),
        message: message.into(),
    }
}

/// An error and its causes on one line (reqwest's own message is terse).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// The start of an error body, on one line.
async fn excerpt(mut response: reqwest::Response, deadline: Instant) -> String {
    let mut body = Vec::new();
    while body.len() < EXCERPT_BYTES {
        match timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&body);
    cut(&text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// At most [`EXCERPT_BYTES`] of `text`, cut at a character boundary.
fn cut(text: &str) -> String {
    if text.len() <= EXCERPT_BYTES {
        return text.to_owned();
    }
    let mut end = EXCERPT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_carries_only_known_options() {
        let body =
            request_body(&json!({"prompt": "hi", "temperature": 0.2, "seed": 1}), "m").unwrap();
        assert_eq!(
            body,
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                   "temperature": 0.2, "seed": 1,
                   "stream": true, "stream_options": {"include_usage": true}})
        );
        for input in [
            json!({"prompt": "hi", "base_url": "http://evil.example"}),
            json!({"prompt": "hi", "api_key": "k"}),
            json!({"prompt": "hi", "stream": false}),
            json!({"prompt": "hi", "messages": []}),
            json!({"messages": []}),
            json!({"messages": ["hi"]}),
            json!({"prompt": 3}),
            json!({"prompt": "hi", "model": 4}),
            json!({}),
            json!("hi"),
        ] {
            assert!(
                matches!(request_body(&input, "m"), Err(AgentError::BadInput(_))),
                "{input}"
            );
        }
    }

    #[test]
    fn long_excerpts_are_cut_at_a_character() {
        let long = "é".repeat(EXCERPT_BYTES);
        let cut = cut(&long);
        assert!(cut.ends_with('…'));
        assert_eq!(cut.chars().count(), EXCERPT_BYTES / 2 + 1);
    }
}
