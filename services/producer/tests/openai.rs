//! The `openai` agent against a local server that speaks the OpenAI streaming
//! wire format ([`upstream`]): recorded chunk streams written a few bytes at
//! a time, error statuses with their JSON bodies, stalls and silences; the
//! request the agent sends; pause (the body stops being read) and cancel
//! (the request is dropped). A thread's runs: tests/openai_threads.rs.

mod upstream;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{mpsc, watch};
use upstream::*;
use weir_producer::agents::openai::OpenAiAgent;
use weir_producer::agents::{Agent, AgentError, Emitter, Gate};
use weir_producer::config::OpenAiConfig;
#[tokio::test]
async fn text_deltas_become_tokens_then_the_message_and_usage() {
    let (result, events) = run_fixture("text.sse").await;
    assert_eq!(result, stopped_by("stop"));
    let text = "Grüß dich! 👋 Wie kann ich helfen?";
    let mut want = tokens(&[
        "Grüß", " dich", "! 👋", " Wie", " kann", " ich", " helfen", "?",
    ]);
    want.push(ev(
        "message",
        json!({"type": "TextMessage", "content": text, "role": "assistant",
               "id": "chatcmpl-BgQ2w9lYHc0aSXP8nq1rK3tUvW4xY"}),
    ));
    want.push(ev(
        "usage",
        json!({"prompt_tokens": 19, "completion_tokens": 9, "total_tokens": 28}),
    ));
    assert_eq!(events, want);
}

const TOOL_COMPLETION_ID: &str = "chatcmpl-BgQ4kTn0XbQ1e8ZfJm2cVrD7pLs3A";

#[tokio::test]
async fn parallel_tool_calls_are_assembled_from_their_fragments() {
    let (result, events) = run_fixture("tool_calls.sse").await;
    assert_eq!(result, stopped_by("tool_calls"));
    assert_eq!(
        events,
        [
            ev(
                "tool_call",
                json!({"type": "ToolCallRequestEvent", "id": TOOL_COMPLETION_ID, "content": [
                    {"id": "call_Xq3rUaY2bBqTl0hPzJt8vM1c", "name": "get_weather",
                     "arguments": "{\"location\": \"Paris, France\", \"unit\": \"celsius\"}"},
                    {"id": "call_7Hn2QmWcYb5kEoR1tGz9sLxP", "name": "get_time",
                     "arguments": "{\"tz\": \"Europe/Paris\"}"},
                ]})
            ),
            ev(
                "usage",
                json!({"prompt_tokens": 84, "completion_tokens": 51, "total_tokens": 135})
            ),
        ]
    );
}

#[tokio::test]
async fn null_choices_comments_crlf_and_no_usage_or_done_are_tolerated() {
    let (result, events) = run_fixture("choices_null.sse").await;
    assert_eq!(result, stopped_by("stop"));
    let mut want = tokens(&["Bonjour", " à", " vous !"]);
    want.push(ev(
        "message",
        json!({"type": "TextMessage", "content": "Bonjour à vous !", "role": "assistant",
               "id": "gen-1749485411-kTq8WvXn2YbR5mZs"}),
    ));
    assert_eq!(events, want);
}

#[tokio::test]
async fn an_error_object_mid_stream_fails_the_run_after_its_tokens() {
    let (result, events) = run_fixture("error_midstream.sse").await;
    assert_eq!(
        failure(result),
        (
            "upstream_error".into(),
            "The server had an error while processing your request. Sorry about that!".into()
        )
    );
    assert_eq!(events, tokens(&["Once", " upon"]));
}

#[tokio::test]
async fn error_statuses_fail_with_the_status_and_the_body() {
    for (status, fixture, head, detail) in [
        (
            429,
            "rate_limit_429.json",
            "429 Too Many Requests: {",
            "\"code\": \"rate_limit_exceeded\"",
        ),
        (
            500,
            "server_error_500.json",
            "500 Internal Server Error: {",
            "Sorry about that!",
        ),
    ] {
        let up = Upstream::start(Reply::Status(status, fixture)).await;
        let (result, events) = run(up.config(), json!({"prompt": "hi"})).await;
        let (code, message) = failure(result);
        assert_eq!(code, "upstream_error");
        assert!(message.starts_with(head), "{message}");
        assert!(message.contains(detail), "{message}");
        assert!(!message.contains('\n'), "{message}");
        assert!(events.is_empty());
    }
}

#[tokio::test]
async fn a_stalled_stream_times_out_after_its_tokens() {
    let up = Upstream::start(Reply::Sse {
        fixture: "stall.sse",
        hold: true,
    })
    .await;
    let config = OpenAiConfig {
        idle_timeout: Duration::from_millis(300),
        ..up.config()
    };
    let started = Instant::now();
    let (result, events) = run(config, json!({"prompt": "hi"})).await;
    let (code, message) = failure(result);
    assert_eq!(code, "upstream_timeout");
    assert!(message.contains("stalled"), "{message}");
    assert_eq!(events, tokens(&["Hel", "lo"]));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[tokio::test]
async fn no_first_chunk_in_time_is_a_timeout() {
    let silent = Upstream::start(Reply::Silent).await;
    let comments = Upstream::start(Reply::Sse {
        fixture: "comments_only.sse",
        hold: true,
    })
    .await;
    for up in [silent, comments] {
        let config = OpenAiConfig {
            first_token_timeout: Duration::from_millis(300),
            ..up.config()
        };
        let (result, events) = run(config, json!({"prompt": "hi"})).await;
        let (code, message) = failure(result);
        assert_eq!(code, "upstream_timeout");
        assert!(message.contains("no chunk within"), "{message}");
        assert!(events.is_empty());
    }
}

#[tokio::test]
async fn an_unreachable_endpoint_is_unavailable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let config = OpenAiConfig {
        base_url: format!("http://127.0.0.1:{port}/v1"),
        ..OpenAiConfig::local()
    };
    let (result, _) = run(config, json!({"prompt": "hi"})).await;
    assert_eq!(failure(result).0, "upstream_unavailable");
}

#[tokio::test]
async fn the_request_has_the_model_messages_options_and_key() {
    let up = Upstream::start(Reply::Sse {
        fixture: "text.sse",
        hold: false,
    })
    .await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}]);
    let messages =
        json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]);
    let input = json!({"messages": messages, "model": "gpt-4.1-nano", "temperature": 0.3,
        "max_tokens": 64, "tools": tools, "tool_choice": "auto", "seed": 7,
        "response_format": {"type": "text"}, "stop": ["\n\n"]});
    let (result, _) = run(up.config(), input).await;
    assert_eq!(result, stopped_by("stop"));
    // The worker's default model, no key.
    let config = OpenAiConfig {
        api_key: None,
        ..up.config()
    };
    let (result, _) = run(config, json!({"prompt": "Hi"})).await;
    assert_eq!(result, stopped_by("stop"));

    let requests = up.requests.lock().unwrap();
    let [first, second] = &requests[..] else {
        panic!("{} requests", requests.len())
    };
    assert_eq!(
        first.body,
        json!({"model": "gpt-4.1-nano", "messages": messages, "temperature": 0.3,
            "max_tokens": 64, "tools": tools, "tool_choice": "auto", "seed": 7,
            "response_format": {"type": "text"}, "stop": ["\n\n"],
            "stream": true, "stream_options": {"include_usage": true}})
    );
    let header =
        |r: &Recorded, name: &str| r.headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        header(first, "authorization"),
        Some(format!("Bearer {KEY}"))
    );
    assert_eq!(
        header(first, "content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        header(first, "accept").as_deref(),
        Some("text/event-stream")
    );
    assert_eq!(
        second.body,
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}],
            "stream": true, "stream_options": {"include_usage": true}})
    );
    assert_eq!(header(second, "authorization"), None);
}

#[tokio::test]
async fn a_session_cannot_choose_the_endpoint() {
    let up = Upstream::start(Reply::Silent).await;
    for input in [
        json!({"prompt": "hi", "base_url": "http://169.254.169.254/v1"}),
        json!({"prompt": "hi", "api_key": "sk-other"}),
        json!({"model": "gpt-4o-mini"}),
    ] {
        let (result, events) = run(up.config(), input.clone()).await;
        assert!(
            matches!(result, Err(AgentError::BadInput(_))),
            "{input}: {result:?}"
        );
        assert!(events.is_empty());
    }
    assert!(up.requests.lock().unwrap().is_empty());
}

/// Waits until `value` stops changing; panics if it keeps growing.
async fn settled(value: &AtomicUsize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut last = value.load(Ordering::SeqCst);
    let mut same = 0;
    while same < 3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = value.load(Ordering::SeqCst);
        same = if now == last && now > 0 { same + 1 } else { 0 };
        last = now;
        assert!(
            Instant::now() < deadline,
            "still writing to a paused reader: {now} bytes"
        );
    }
    last
}

async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(4);
    while !cond() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn pause_stops_reading_the_body_and_cancel_drops_the_request() {
    let meter = Arc::new(Meter::default());
    let up = Upstream::start(Reply::Endless(meter.clone())).await;
    let config = OpenAiConfig {
        idle_timeout: Duration::from_millis(200),
        ..up.config()
    };
    let agent = OpenAiAgent::new(config).unwrap();
    let (tx, mut rx) = mpsc::channel(8);
    let (gate, gate_rx) = watch::channel(Gate::Paused);
    let run = tokio::spawn(async move {
        let mut out = Emitter::new(tx, gate_rx);
        agent.run(json!({"prompt": "go"}), &mut out).await
    });

    // Paused from the start: the agent holds its first token, stops reading,
    // and the server's writes back up until it cannot write any more. The
    // pause outlasts the idle timeout, which does not count paused time.
    let plateau = settled(&meter.written).await;
    assert!(plateau < 256 << 20, "{plateau} bytes");
    assert!(rx.try_recv().is_err(), "nothing is emitted while paused");

    gate.send_replace(Gate::Open);
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    let drain = tokio::spawn(async move {
        while let Some(o) = rx.recv().await {
            assert_eq!(o.kind, "token");
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    eventually("the server writes again once resumed", || {
        meter.written.load(Ordering::SeqCst) > plateau + (1 << 20)
    })
    .await;
    assert!(received.load(Ordering::SeqCst) > 0);
    assert!(!run.is_finished(), "{:?}", run.await);

    // Cancel: the producer aborts the agent's task, which drops the request.
    run.abort();
    assert!(run.await.unwrap_err().is_cancelled());
    eventually("the server sees the request dropped", || {
        meter.dropped.load(Ordering::SeqCst)
    })
    .await;
    drain.await.unwrap();
}
