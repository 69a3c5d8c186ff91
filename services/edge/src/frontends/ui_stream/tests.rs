//! The UI message stream encoder's chunks, exactly.

use super::*;
use crate::frontends::tests::{autogen_session, read_all};

fn encode(session: &str, events: &[Vec<u8>]) -> Vec<String> {
    let mut enc = UiStream::new(session, None, Vec::new());
    let mut chunks = enc.start();
    for op in read_all(session, events) {
        enc.chunks(op, &mut chunks);
    }
    to_json(chunks)
}

#[test]
fn an_autogen_session_becomes_these_chunks_exactly() {
    let got = encode("s1", &autogen_session());
    let want = [
        r#"{"type":"start","messageId":"s1"}"#,
        r#"{"type":"start-step"}"#,
        r#"{"type":"text-start","id":"t2"}"#,
        r#"{"type":"text-delta","id":"t2","delta":"Let me "}"#,
        r#"{"type":"text-delta","id":"t2","delta":"check."}"#,
        r#"{"type":"text-end","id":"t2"}"#,
        r#"{"type":"tool-input-available","toolCallId":"call_1","toolName":"get_weather","input":{"city":"Paris"},"dynamic":true}"#,
        r#"{"type":"message-metadata","messageMetadata":{"usage":{"completion_tokens":3,"prompt_tokens":10}}}"#,
        r#"{"type":"tool-output-available","toolCallId":"call_1","output":"sunny","dynamic":true}"#,
        r#"{"type":"finish-step"}"#,
        r#"{"type":"start-step"}"#,
        r#"{"type":"text-start","id":"t7"}"#,
        r#"{"type":"text-delta","id":"t7","delta":"It is sunny."}"#,
        r#"{"type":"text-end","id":"t7"}"#,
        r#"{"type":"message-metadata","messageMetadata":{"usage":{"completion_tokens":7,"prompt_tokens":30}}}"#,
        r#"{"type":"finish-step"}"#,
        r#"{"type":"finish"}"#,
    ];
    assert_eq!(got, want);
    // The same events give the same bytes (nothing random or clock-based).
    assert_eq!(encode("s1", &autogen_session()), got);
}

/// Every chunk's fields, checked against the fields that the strict
/// releases (5.0.0, 7.0.0–7.0.31) define for its type.
#[test]
fn chunks_carry_only_the_fields_of_the_strict_schemas() {
    let allowed: &[(&str, &[&str])] = &[
        ("start", &["messageId", "messageMetadata"]),
        ("start-step", &[]),
        ("finish-step", &[]),
        ("text-start", &["id", "providerMetadata"]),
        ("text-delta", &["id", "delta", "providerMetadata"]),
        ("text-end", &["id", "providerMetadata"]),
        (
            "tool-input-available",
            &[
                "toolCallId",
                "toolName",
                "input",
                "providerExecuted",
                "providerMetadata",
                "dynamic",
            ],
        ),
        (
            "tool-output-available",
            &["toolCallId", "output", "providerExecuted", "dynamic"],
        ),
        (
            "tool-output-error",
            &["toolCallId", "errorText", "providerExecuted", "dynamic"],
        ),
        ("message-metadata", &["messageMetadata"]),
        ("error", &["errorText"]),
        ("finish", &["messageMetadata"]),
        ("abort", &[]),
    ];
    let mut enc = UiStream::new("s", None, Vec::new());
    let mut chunks = enc.start();
    let ops = [
        Op::ToolResult {
            seq: 3,
            index: 0,
            result: super::super::ToolResult {
                call_id: "c".into(),
                name: "f".into(),
                content: "bad".into(),
                is_error: true,
            },
        },
        Op::Error {
            code: "x".into(),
            message: "boom".into(),
        },
        Op::End {
            reason: EndReason::Failed,
        },
    ];
    for op in read_all("s", &autogen_session()).into_iter().chain(ops) {
        enc.chunks(op, &mut chunks);
    }
    enc.chunks(
        Op::End {
            reason: EndReason::Cancelled,
        },
        &mut chunks,
    );
    for c in to_json(chunks) {
        let v: Value = serde_json::from_str(&c).unwrap();
        let ty = v["type"].as_str().unwrap();
        let fields = allowed.iter().find(|(t, _)| *t == ty).map(|(_, f)| *f);
        let fields = fields.unwrap_or_else(|| panic!("unexpected chunk {c}"));
        for key in v.as_object().unwrap().keys().filter(|k| *k != "type") {
            assert!(fields.contains(&key.as_str()), "{key} not in {ty}: {c}");
        }
    }
}

#[test]
fn a_failed_session_ends_with_one_error_then_finish_and_a_cancelled_one_aborts() {
    let mut enc = UiStream::new("s", None, Vec::new());
    let mut out = Vec::new();
    enc.chunks(
        Op::End {
            reason: EndReason::Failed,
        },
        &mut out,
    );
    assert_eq!(
        to_json(out),
        [
            r#"{"type":"finish-step"}"#,
            r#"{"type":"error","errorText":"the session failed"}"#,
            r#"{"type":"finish"}"#
        ]
    );
    let mut enc = UiStream::new("s", None, Vec::new());
    let mut out = Vec::new();
    enc.chunks(
        Op::End {
            reason: EndReason::Cancelled,
        },
        &mut out,
    );
    assert_eq!(
        to_json(out),
        [r#"{"type":"finish-step"}"#, r#"{"type":"abort"}"#]
    );
    let end = weir_protocol::Event::end(1, EndReason::Completed, None).to_raw();
    let mut enc = UiStream::new("s", None, Vec::new());
    assert_eq!(
        enc.events(&[end]).last().map(String::as_str),
        Some("[DONE]")
    );
    assert!(enc.done());
}

#[test]
fn a_result_without_its_call_gets_a_tool_part_first() {
    let mut enc = UiStream::new("s", None, Vec::new());
    let mut out = Vec::new();
    let result = super::super::ToolResult {
        call_id: "c9".into(),
        name: "f".into(),
        content: "ok".into(),
        is_error: false,
    };
    enc.chunks(
        Op::ToolResult {
            seq: 1,
            index: 0,
            result,
        },
        &mut out,
    );
    assert_eq!(
        to_json(out),
        [
            r#"{"type":"tool-input-available","toolCallId":"c9","toolName":"f","input":{},"dynamic":true}"#,
            r#"{"type":"tool-output-available","toolCallId":"c9","output":"ok","dynamic":true}"#
        ]
    );
}

/// The encoder's payloads for these events, as a connection gets them.
fn stream(mut enc: UiStream, events: &[serde_json::Value]) -> Vec<String> {
    let raw: Vec<RawEvent> = events
        .iter()
        .map(|e| {
            serde_json::from_value::<weir_protocol::Event>(e.clone())
                .unwrap()
                .to_raw()
        })
        .collect();
    let mut out = enc.open();
    out.extend(enc.events(&raw));
    out
}

#[test]
fn a_front_end_tool_call_ends_the_stream_right_after_its_tool_input_available() {
    let events = [
        serde_json::json!({"seq":1,"kind":"tool_call","ts":1.0,"data":{"content":[{"id":"call_1","name":"pick","arguments":"{\"n\":3}"}]}}),
        serde_json::json!({"seq":2,"kind":"end","ts":2.0,"data":{"reason":"completed","stop_reason":"tool_calls"}}),
    ];
    assert_eq!(
        stream(UiStream::new("s", None, Vec::new()), &events),
        [
            r#"{"type":"start","messageId":"s"}"#,
            r#"{"type":"start-step"}"#,
            r#"{"type":"tool-input-available","toolCallId":"call_1","toolName":"pick","input":{"n":3},"dynamic":true}"#,
            r#"{"type":"finish-step"}"#,
            r#"{"type":"finish"}"#,
            "[DONE]",
        ]
    );
}

#[test]
fn an_input_request_is_a_data_input_request_chunk_and_its_answer_adds_none() {
    let schema = serde_json::json!({"type":"object","properties":{"text":{"type":"string"}},"required":["text"]});
    let events = [
        serde_json::json!({"seq":1,"kind":"token","ts":1.0,"data":{"text":"hm"}}),
        serde_json::json!({"seq":2,"kind":"input_request","ts":1.0,"data":{"id":"ask_2","prompt":"your name?","schema":schema}}),
        serde_json::json!({"seq":3,"kind":"input","ts":1.0,"data":{"request":"ask_2","data":{"text":"Ada"}}}),
        serde_json::json!({"seq":4,"kind":"input_request","ts":1.0,"data":{"id":"ask_4","prompt":"sure?"}}),
    ];
    let got = stream(UiStream::new("s", None, Vec::new()), &events);
    assert_eq!(
        got[2..],
        [
            r#"{"type":"text-start","id":"t1"}"#,
            r#"{"type":"text-delta","id":"t1","delta":"hm"}"#,
            r#"{"type":"text-end","id":"t1"}"#,
            &format!(
                r#"{{"type":"data-input-request","id":"ask_2","data":{{"prompt":"your name?","schema":{schema}}}}}"#
            ),
            r#"{"type":"data-input-request","id":"ask_4","data":{"prompt":"sure?"}}"#,
        ]
    );
}

#[test]
fn a_continued_message_starts_with_its_id_and_restates_its_earlier_parts_first() {
    let restated = vec![
        Chunk::ToolInputAvailable {
            tool_call_id: "call_1".into(),
            tool_name: "pick".into(),
            input: serde_json::json!({}),
            dynamic: true,
        },
        Chunk::FinishStep,
        Chunk::StartStep,
    ];
    let events = [serde_json::json!({"seq":1,"kind":"token","ts":1.0,"data":{"text":"ok"}})];
    let got = stream(UiStream::new("s2", Some("s1"), restated), &events);
    assert_eq!(
        got,
        [
            r#"{"type":"start","messageId":"s1"}"#,
            r#"{"type":"start-step"}"#,
            r#"{"type":"tool-input-available","toolCallId":"call_1","toolName":"pick","input":{},"dynamic":true}"#,
            r#"{"type":"finish-step"}"#,
            r#"{"type":"start-step"}"#,
            r#"{"type":"text-start","id":"t1"}"#,
            r#"{"type":"text-delta","id":"t1","delta":"ok"}"#,
        ]
    );
}
