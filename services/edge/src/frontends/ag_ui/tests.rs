//! The AG-UI encoder's events, exactly.

use serde_json::json;
use weir_protocol::{EndReason, RawEvent};

use super::events::to_json;
use super::*;
use crate::frontends::stream::Encoder;
use crate::frontends::tests::{autogen_session, read_all};
use crate::frontends::{Op, Reader};

/// A call of the session endpoint of `s1` by a client holding `client`.
fn session(client: &[Value], cut: u64) -> AgUi {
    AgUi::new("s1", reconnect("s1", client, cut), 1 << 20)
}

/// The events of a call, each event of `events` its own batch.
fn encode(enc: &mut AgUi, events: &[Vec<u8>]) -> Vec<String> {
    let mut out = Vec::new();
    enc.start(&mut out);
    let mut reader = Reader::new("s1");
    for (i, e) in events.iter().enumerate() {
        let mut ops = Vec::new();
        reader.read(e, &mut ops);
        enc.event(ops, &mut out);
        enc.settle(i as u64 + 1, &mut out);
    }
    to_json(out)
}

#[test]
fn an_autogen_session_becomes_these_events_exactly() {
    let got = encode(&mut session(&[], 10), &autogen_session());
    let want = [
        r#"{"type":"RUN_STARTED","threadId":"s1","runId":"s1"}"#,
        r#"{"type":"TEXT_MESSAGE_START","messageId":"s1-m2","role":"assistant"}"#,
        r#"{"type":"TEXT_MESSAGE_CONTENT","messageId":"s1-m2","delta":"Let me "}"#,
        r#"{"type":"TEXT_MESSAGE_CONTENT","messageId":"s1-m2","delta":"check."}"#,
        r#"{"type":"TEXT_MESSAGE_END","messageId":"s1-m2"}"#,
        r#"{"type":"TOOL_CALL_START","toolCallId":"call_1","toolCallName":"get_weather","parentMessageId":"s1-m4"}"#,
        r#"{"type":"TOOL_CALL_ARGS","toolCallId":"call_1","delta":"{\"city\":\"Paris\"}"}"#,
        r#"{"type":"TOOL_CALL_END","toolCallId":"call_1"}"#,
        r#"{"type":"TOOL_CALL_RESULT","messageId":"s1-r6-0","toolCallId":"call_1","content":"sunny","role":"tool"}"#,
        r#"{"type":"TEXT_MESSAGE_START","messageId":"s1-m7","role":"assistant"}"#,
        r#"{"type":"TEXT_MESSAGE_CONTENT","messageId":"s1-m7","delta":"It is sunny."}"#,
        r#"{"type":"TEXT_MESSAGE_END","messageId":"s1-m7"}"#,
        r#"{"type":"RUN_FINISHED","threadId":"s1","runId":"s1","result":{"usage":{"completion_tokens":7,"prompt_tokens":30}},"usage":[{"inputTokens":30,"outputTokens":7}]}"#,
    ];
    assert_eq!(got, want);
}

#[test]
fn a_reconnect_mid_message_gets_a_snapshot_then_the_open_message_again() {
    let user = json!({"id": "u1", "role": "user", "content": "weather?"});
    let held = json!({"id": "s1-m2", "role": "assistant", "content": "Let"});
    let events = autogen_session();
    // The log held seqs 1..=7 when the call came in: message m7 is open.
    let mut enc = session(&[user.clone(), held], 7);
    let got = encode(&mut enc, &events);
    let snapshot: Value = serde_json::from_str(&got[1]).unwrap();
    assert_eq!(
        snapshot,
        json!({"type": "MESSAGES_SNAPSHOT", "messages": [
            user,
            {"id": "s1-m2", "role": "assistant", "content": "Let me check."},
            {"id": "s1-m4", "role": "assistant", "toolCalls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"id": "s1-r6-0", "role": "tool", "toolCallId": "call_1", "content": "sunny"},
        ]})
    );
    assert_eq!(
        got[2..],
        [
            r#"{"type":"TEXT_MESSAGE_START","messageId":"s1-m7","role":"assistant"}"#,
            r#"{"type":"TEXT_MESSAGE_CONTENT","messageId":"s1-m7","delta":"It is sunny."}"#,
            r#"{"type":"TEXT_MESSAGE_END","messageId":"s1-m7"}"#,
            r#"{"type":"RUN_FINISHED","threadId":"s1","runId":"s1","result":{"usage":{"completion_tokens":7,"prompt_tokens":30}},"usage":[{"inputTokens":30,"outputTokens":7}]}"#,
        ]
    );
    assert_eq!(got.len(), 6);
}

#[test]
fn a_reconnect_to_a_finished_session_is_one_snapshot_and_the_end() {
    let held = json!({"id": "s1-m2", "role": "assistant", "content": "Let"});
    let got = encode(&mut session(&[held], 10), &autogen_session());
    let types: Vec<String> = got
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(e).unwrap()["type"]
                .as_str()
                .unwrap()
                .into()
        })
        .collect();
    assert_eq!(types, ["RUN_STARTED", "MESSAGES_SNAPSHOT", "RUN_FINISHED"]);
    let snapshot: Value = serde_json::from_str(&got[1]).unwrap();
    assert_eq!(snapshot["messages"].as_array().unwrap().len(), 4);
}

#[test]
fn a_failure_is_a_run_error_and_a_cancel_finishes_with_the_cancelled_outcome() {
    let mut enc = AgUi::new("s", reconnect("s", &[], 0), 1 << 20);
    let mut out = Vec::new();
    let error = Op::Error {
        code: "agent_failed".into(),
        message: "boom".into(),
    };
    let failed = Op::End {
        reason: EndReason::Failed,
    };
    enc.event(vec![error, failed], &mut out);
    assert_eq!(
        to_json(out),
        [r#"{"type":"RUN_ERROR","message":"boom","code":"agent_failed"}"#]
    );
    let mut enc = AgUi::new("s", reconnect("s", &[], 0), 1 << 20);
    let mut out = Vec::new();
    let cancelled = Op::End {
        reason: EndReason::Cancelled,
    };
    enc.event(vec![cancelled], &mut out);
    assert_eq!(
        to_json(out),
        [r#"{"type":"RUN_FINISHED","threadId":"s","runId":"s","outcome":{"type":"cancelled"}}"#]
    );
}

#[test]
fn a_reconnect_snapshot_over_the_limit_is_refused() {
    let ops = read_all("s", &autogen_session());
    let held = json!({"id": "s-m2"});
    let mut enc = AgUi::new("s", reconnect("s", &[held], 10), 4);
    let mut out = Vec::new();
    enc.event(ops, &mut out);
    let last = to_json(out).pop().unwrap();
    assert!(last.contains("snapshot_too_large"), "{last}");
    assert!(enc.done());
}

/// A thread's run `s1` (thread `t`, AG-UI run `r1`) whose input was one
/// user message.
fn thread_call(snapshot_at: Option<u64>, resolved: Option<&str>) -> AgUi {
    let call = Call {
        thread_id: "t".into(),
        run_id: "r1".into(),
        prefix: vec![json!({"id": "u1", "role": "user", "content": "/ask name?"})],
        snapshot_at,
        interrupts: true,
        resolved: resolved.map(str::to_owned),
    };
    AgUi::new("s1", call, 1 << 20)
}

/// A run that says "hi", asks, gets `Ada`, and answers.
fn asking_run() -> Vec<RawEvent> {
    let schema =
        json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]});
    [
        json!({"seq":1,"kind":"token","ts":1.0,"data":{"text":"hi"}}),
        json!({"seq":2,"kind":"input_request","ts":2.0,"data":{"id":"ask_2","prompt":"name?","schema":schema}}),
        json!({"seq":3,"kind":"input","ts":3.0,"data":{"request":"ask_2","data":{"text":"Ada"}}}),
        json!({"seq":4,"kind":"token","ts":4.0,"data":{"text":"Ada!"}}),
        json!({"seq":5,"kind":"end","ts":5.0,"data":{"reason":"completed"}}),
    ]
    .into_iter()
    .map(|e| serde_json::from_value::<weir_protocol::Event>(e).unwrap().to_raw())
    .collect()
}

/// The payloads of a call fed [`asking_run`]'s events in batches, each
/// ending before the index in `ends`.
fn batches(mut enc: AgUi, ends: &[usize]) -> Vec<String> {
    let events = asking_run();
    let mut out = enc.open();
    let mut start = 0;
    for &end in ends {
        out.extend(enc.events(&events[start..end]));
        start = end;
    }
    out
}

#[test]
fn an_open_input_request_ends_a_thread_run_with_the_whole_conversation_and_the_interrupt() {
    let got = batches(thread_call(None, None), &[1, 2]);
    assert_eq!(
        got,
        [
            r#"{"type":"RUN_STARTED","threadId":"t","runId":"r1"}"#,
            r#"{"type":"TEXT_MESSAGE_START","messageId":"s1-m1","role":"assistant"}"#,
            r#"{"type":"TEXT_MESSAGE_CONTENT","messageId":"s1-m1","delta":"hi"}"#,
            r#"{"type":"TEXT_MESSAGE_END","messageId":"s1-m1"}"#,
            r#"{"type":"MESSAGES_SNAPSHOT","messages":[{"content":"/ask name?","id":"u1","role":"user"},{"content":"hi","id":"s1-m1","role":"assistant"}]}"#,
            r#"{"type":"RUN_FINISHED","threadId":"t","runId":"r1","outcome":{"interrupts":[{"id":"ask_2","message":"name?","reason":"input_required","responseSchema":{"properties":{"text":{"type":"string"}},"required":["text"],"type":"object"}}],"type":"interrupt"}}"#,
        ]
    );
}

#[test]
fn a_request_answered_in_the_same_batch_is_no_interrupt() {
    let got = batches(thread_call(None, None), &[3, 5]);
    assert!(!got.iter().any(|e| e.contains("interrupt")), "{got:?}");
    assert!(got
        .last()
        .unwrap()
        .starts_with(r#"{"type":"RUN_FINISHED","threadId":"t","runId":"r1""#));
    assert!(got.iter().any(|e| e.contains(r#""delta":"Ada!""#)));
}

#[test]
fn a_request_answered_later_in_the_stored_log_is_no_interrupt_while_catching_up() {
    // Rejoin: the log held seqs 1..=5 when the call came in; the request is
    // open at the end of the first page, answered in the next.
    let got = batches(thread_call(Some(5), None), &[2, 5]);
    let types: Vec<String> = got
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(e).unwrap()["type"]
                .as_str()
                .unwrap()
                .into()
        })
        .collect();
    assert_eq!(types, ["RUN_STARTED", "MESSAGES_SNAPSHOT", "RUN_FINISHED"]);
    let snapshot: Value = serde_json::from_str(&got[1]).unwrap();
    assert_eq!(
        snapshot["messages"].as_array().unwrap().len(),
        3,
        "{snapshot}"
    );
}

#[test]
fn a_resume_snapshots_the_run_so_far_then_streams_the_rest_live() {
    // The call answered ask_2 itself; the log held seqs 1..=2 when it came in.
    let got = batches(thread_call(Some(2), Some("ask_2")), &[2, 3, 5]);
    assert_eq!(
        got,
        [
            r#"{"type":"RUN_STARTED","threadId":"t","runId":"r1"}"#,
            r#"{"type":"MESSAGES_SNAPSHOT","messages":[{"content":"/ask name?","id":"u1","role":"user"},{"content":"hi","id":"s1-m1","role":"assistant"}]}"#,
            r#"{"type":"TEXT_MESSAGE_START","messageId":"s1-m4","role":"assistant"}"#,
            r#"{"type":"TEXT_MESSAGE_CONTENT","messageId":"s1-m4","delta":"Ada!"}"#,
            r#"{"type":"TEXT_MESSAGE_END","messageId":"s1-m4"}"#,
            r#"{"type":"RUN_FINISHED","threadId":"t","runId":"r1"}"#,
        ]
    );
}

#[test]
fn a_rejoin_of_a_run_still_waiting_ends_with_the_interrupt_again() {
    let got = batches(thread_call(Some(2), None), &[2]);
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got[1].starts_with(r#"{"type":"MESSAGES_SNAPSHOT""#));
    assert!(got[2].contains(r#""type":"interrupt""#));
}
