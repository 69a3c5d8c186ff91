//! The AI SDK's chat endpoints for a thread (protocol.md §9): what
//! `useChat` with `new DefaultChatTransport({api: '<edge>/v1/chat',
//! headers})` and `id` = the thread id calls, with no other wiring.
//!
//! - `POST /v1/chat` (send): useChat's body `{id, messages, trigger,
//!   messageId?}` plus `tools` / `input` from the transport's `body` option.
//!   The UI messages become the run's chat messages
//!   ([`weir_protocol::frontend::ui_to_chat`]), the
//!   thread's next run starts ([`threads::start_run`]) and its UI message
//!   stream is the response: one request from send to first token. When
//!   the request continues the last message, an assistant one (`sendMessage()`
//!   after `addToolOutput`), the run keeps that message id and its stream
//!   starts with it, so the page goes on with the same message.
//! - `GET /v1/chat/{t}/stream` (resume): the active run's stream from its
//!   first event, or 204 when none is active. A run that continues a
//!   message restates that message's earlier parts from the run's input
//!   first ([`ui_messages::restate`]): the SDK replaces a resumed message
//!   by id, so the replay must hold all of it.
//!
//! Both are [`UiStream`] encoders over the one delivery path
//! ([`stream::serve_in`]), like `…/ui-stream`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value};
use weir_protocol::ThreadId;

use super::stream;
use super::ui_stream::UiStream;
use super::{invalid, ui_messages};
use crate::access::{ThreadAuth, ThreadBearer};
use crate::delivery;
use crate::error::ApiError;
use crate::request::JsonObject;
use crate::threads::{self, RunStart};
use crate::AppState;

/// The transport label of both endpoints: they are the UI message stream.
const TRANSPORT: &str = "ui-stream";
const HEADERS: &[(&str, &str)] = &[("x-vercel-ai-ui-message-stream", "v1")];

/// useChat's body. `messages` and `tools` are read by hand, to name the
/// field that is wrong.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatRequest {
    id: Value,
    #[serde(default)]
    messages: Value,
    #[serde(default)]
    trigger: Option<String>,
    #[serde(default)]
    message_id: Option<String>,
    #[serde(default)]
    tools: Value,
    #[serde(default)]
    input: Option<Map<String, Value>>,
}

/// What a checked send asks for.
#[derive(Debug)]
pub struct Send {
    pub thread: ThreadId,
    pub run: RunStart,
}

/// Checks a send and converts its messages: 400 naming the field.
pub fn read(req: ChatRequest) -> Result<Send, ApiError> {
    let thread = req
        .id
        .as_str()
        .ok_or_else(|| invalid("id", "must be the thread id (a string)"))?;
    let thread = ThreadId::parse(thread).map_err(|e| invalid("id", &e.to_string()))?;
    let messages =
        weir_protocol::frontend::ui_to_chat(&req.messages).map_err(ApiError::BadRequest)?;
    let tools = match req.tools {
        Value::Null => Vec::new(),
        Value::Array(tools) => tools,
        _ => return Err(invalid("tools", "must be an array")),
    };
    let trigger = req.trigger.as_deref().unwrap_or("submit-message");
    if !matches!(trigger, "submit-message" | "regenerate-message") {
        return Err(invalid(
            "trigger",
            "must be submit-message or regenerate-message",
        ));
    }
    // useChat's sendMessage() after addToolOutput: the last message, an
    // assistant one, goes on.
    let last = req.messages.as_array().and_then(|m| m.last());
    let continues = trigger == "submit-message"
        && last.is_some_and(|m| m["role"] == "assistant")
        && req
            .message_id
            .as_deref()
            .is_some_and(|id| last.is_some_and(|m| m["id"] == id));
    Ok(Send {
        thread,
        run: RunStart {
            messages,
            tools,
            input: req.input.unwrap_or_default(),
            message_id: req.message_id.filter(|_| continues),
            alias: None,
        },
    })
}

/// `POST /v1/chat`: starts the thread's next run and streams it.
pub async fn send(
    State(state): State<AppState>,
    bearer: ThreadBearer,
    body: Result<JsonObject<ChatRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let JsonObject(req) = body?;
    let Send { thread, run } = read(req)?;
    bearer.opens(&thread)?;
    let guard = delivery::admit(&state, TRANSPORT)?;
    let message_id = run.message_id.clone();
    let started = threads::start_run(&state, &thread, run).await?;
    let encoder = UiStream::new(started.session.as_str(), message_id.as_deref(), Vec::new());
    let req = stream::Request {
        id: started.session,
        transport: TRANSPORT,
        headers: HEADERS,
    };
    stream::serve_in(&state, guard, req, encoder).await
}

/// `GET /v1/chat/{t}/stream`: the active run's stream, or 204.
pub async fn resume(
    State(state): State<AppState>,
    ThreadAuth(thread): ThreadAuth,
) -> Result<Response, ApiError> {
    let Some(session) = threads::active_run(&state, &thread).await? else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let spec = threads::run_spec(&state, &session).await?;
    let (message_id, restated) = match spec {
        Some(spec) => match spec.message_id {
            Some(m) => {
                let restated = ui_messages::restate(&spec.messages, &m);
                (Some(m), restated)
            }
            None => (None, Vec::new()),
        },
        None => (None, Vec::new()),
    };
    let encoder = UiStream::new(session.as_str(), message_id.as_deref(), restated);
    let req = stream::Request {
        id: session,
        transport: TRANSPORT,
        headers: HEADERS,
    };
    stream::serve(&state, req, encoder).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(body: Value) -> Result<Send, String> {
        let req: ChatRequest = serde_json::from_value(body).unwrap();
        read(req).map_err(|e| e.to_string())
    }

    fn user(id: &str, text: &str) -> Value {
        json!({"id": id, "role": "user", "parts": [{"type": "text", "text": text}]})
    }

    #[test]
    fn a_new_message_starts_a_run_with_the_conversation_and_no_message_id() {
        let send = request(json!({"id": "t1", "messages": [user("u1", "hi")],
            "trigger": "submit-message", "input": {"rate": 5}}))
        .unwrap();
        assert_eq!(send.thread.as_str(), "t1");
        assert_eq!(
            send.run.messages,
            [json!({"role": "user", "content": "hi", "id": "u1"})]
        );
        assert_eq!(send.run.message_id, None);
        assert_eq!(send.run.input, *json!({"rate": 5}).as_object().unwrap());
    }

    #[test]
    fn send_message_after_a_tool_output_continues_the_assistant_message() {
        let assistant = json!({"id": "s1", "role": "assistant", "parts": [
            {"type": "dynamic-tool", "toolName": "f", "toolCallId": "call_1", "state": "output-available",
             "input": {}, "output": "3"}]});
        let body = json!({"id": "t1", "messages": [user("u1", "/tool f {}"), assistant],
            "trigger": "submit-message", "messageId": "s1"});
        assert_eq!(
            request(body.clone()).unwrap().run.message_id.as_deref(),
            Some("s1")
        );
        // Regenerating, or naming a message that is not the last, starts afresh.
        let mut regenerate = body.clone();
        regenerate["trigger"] = "regenerate-message".into();
        assert_eq!(request(regenerate).unwrap().run.message_id, None);
        let mut other = body;
        other["messageId"] = "u1".into();
        assert_eq!(request(other).unwrap().run.message_id, None);
    }

    #[test]
    fn a_malformed_send_is_refused_naming_the_field() {
        assert_eq!(
            request(json!({"id": 3, "messages": []})).unwrap_err(),
            "id: must be the thread id (a string)"
        );
        assert_eq!(
            request(json!({"id": "t", "messages": [{"id": "u", "role": "user"}]})).unwrap_err(),
            "messages[0].parts: must be an array"
        );
        assert_eq!(
            request(json!({"id": "t", "messages": [], "tools": {}})).unwrap_err(),
            "tools: must be an array"
        );
        assert_eq!(
            request(json!({"id": "t", "messages": [], "trigger": "resume-stream"})).unwrap_err(),
            "trigger: must be submit-message or regenerate-message"
        );
    }
}
