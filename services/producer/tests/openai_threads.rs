//! The `openai` agent in a thread's run (protocol.md §9), against the local
//! OpenAI-compatible server of [`upstream`]: the conversation and the
//! front-end tools reach the model in OpenAI's shapes, and a call of a
//! front-end tool ends the run with `stop_reason: "tool_calls"` after its
//! `tool_call` event, for the front end to run it.

mod upstream;

use serde_json::json;
use upstream::*;

#[tokio::test]
async fn a_threads_conversation_and_front_end_tools_reach_the_model_in_openais_shape() {
    let up = Upstream::start(Reply::Sse {
        fixture: "text.sse",
        hold: false,
    })
    .await;
    // As the edge builds a thread run's input: weir's message and tool forms.
    let messages = json!([
        {"role": "user", "content": "Weather in Paris?", "id": "u1"},
        {"role": "assistant", "content": null, "id": "a1", "tool_calls": [
            {"id": "call_3", "name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}]},
        {"role": "tool", "content": "sunny", "tool_call_id": "call_3"},
    ]);
    let tools = json!([{"name": "get_weather", "description": "Today's weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}]);
    let (result, _) = run(up.config(), json!({"messages": messages, "tools": tools})).await;
    assert_eq!(result, stopped_by("stop"));
    let requests = up.requests.lock().unwrap();
    assert_eq!(
        requests[0].body["messages"],
        json!([
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_3", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}}]},
            {"role": "tool", "content": "sunny", "tool_call_id": "call_3"},
        ])
    );
    assert_eq!(
        requests[0].body["tools"],
        json!([{"type": "function", "function": {"name": "get_weather",
            "description": "Today's weather",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}])
    );
}

#[tokio::test]
async fn a_thread_run_without_front_end_tools_sends_no_tools() {
    let up = Upstream::start(Reply::Sse {
        fixture: "text.sse",
        hold: false,
    })
    .await;
    let input = json!({"messages": [{"role": "user", "content": "Hi"}], "tools": []});
    let (result, _) = run(up.config(), input).await;
    assert_eq!(result, stopped_by("stop"));
    let requests = up.requests.lock().unwrap();
    assert!(
        requests[0].body.get("tools").is_none(),
        "{}",
        requests[0].body
    );
}

#[tokio::test]
async fn a_call_of_a_front_end_tool_ends_the_run_with_tool_calls_after_the_call() {
    let up = Upstream::start(Reply::Sse {
        fixture: "tool_calls.sse",
        hold: false,
    })
    .await;
    let tools = json!([{"name": "get_weather"}, {"name": "get_time"}]);
    let input = json!({"messages": [{"role": "user", "content": "Paris?"}], "tools": tools});
    let (result, events) = run(up.config(), input).await;
    assert_eq!(result, stopped_by("tool_calls"));
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["tool_call", "usage"]);
    let names: Vec<&str> = events[0].1["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["get_weather", "get_time"]);
}
