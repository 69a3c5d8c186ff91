//! Bad client frames on an open WebSocket (protocol.md §5): a frame the
//! protocol does not know gets an error frame and the stream goes on; an
//! oversized frame closes it with 1009 and one that breaks RFC 6455 with
//! 1002; a ping is answered. After each, the client resumes and holds the
//! whole session, exactly. On an edge embedded in the test (memory bus).

mod common;

use std::time::Duration;

use common::*;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;
use weir_edge::EdgeConfig;

const MINUTE: Duration = Duration::from_secs(60);

/// An embedded edge, a session long enough to outlast the bad frames (600
/// tokens at 100/s), and a client of it that has read its first 5 events.
async fn streaming() -> (Embedded, Session, Ws, Vec<Value>) {
    let edge = Embedded::start(EdgeConfig::local(SECRET)).await;
    let s = create_mock(&edge, 600, 100.0, 1).await;
    let mut ws = ws_connect(&edge, &s.id, &s.token, 0).await;
    let events = read(&mut ws, Stop::After(5), MINUTE).await.events;
    (edge, s, ws, events)
}

/// The rest of the session after `events`, read by a client that resumes
/// after the last of them; then the whole is exactly the session.
async fn resume_and_assert_complete(edge: &Embedded, s: &Session, mut events: Vec<Value>) {
    let after = events.last().map_or(0, |e| e["seq"].as_u64().unwrap());
    let (rest, _) = read_resuming_from(&[edge], s, after, MINUTE).await;
    events.extend(rest);
    assert_complete(&events, "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_frame_the_protocol_does_not_know_gets_a_bad_request_error_and_the_stream_goes_on() {
    let (edge, s, mut ws, mut events) = streaming().await;
    let frames: [(&str, Message); 5] = [
        (
            "a JSON string, not an object",
            Message::Text(json!("not an object").to_string().into()),
        ),
        ("JSON cut short", Message::Text("{not json".into())),
        (
            "an unknown type",
            Message::Text(json!({"type": "dance"}).to_string().into()),
        ),
        (
            "an ack of a seq that is not a number",
            Message::Text(json!({"type": "ack", "seq": "five"}).to_string().into()),
        ),
        ("a binary frame", Message::Binary(vec![1, 2, 3].into())),
    ];
    let mut failed = Vec::new();
    for (case, frame) in frames {
        ws.send(frame).await.unwrap();
        // The next error frame is this one's; events keep coming meanwhile.
        let error = loop {
            let got = read(&mut ws, Stop::After(events.len() + 1), MINUTE).await;
            events.extend(got.events);
            if let Some(e) = got.errors.into_iter().next() {
                break Some(e);
            }
            if got.close.is_some() {
                break None;
            }
        };
        match error {
            Some(e) if e["code"] == "bad_request" => {}
            other => failed.push(format!("{case}: got {other:?}, wanted a bad_request error")),
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    // A good ack after them is taken: the connection still serves the client.
    send(&mut ws, json!({"type": "ack", "seq": 5})).await;
    let rest = read(&mut ws, Stop::Close, MINUTE).await;
    assert_eq!(rest.close, Some(1000), "the stream did not run to its end");
    events.extend(rest.events);
    assert_complete(&events, "completed");
    assert!(state(&edge, &s).await["acked"].as_u64().unwrap() >= 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_closes_the_stream_with_1009_and_the_client_resumes() {
    let (edge, s, mut ws, mut events) = streaming().await;
    ws.send(Message::Text("x".repeat(70_000).into()))
        .await
        .unwrap();
    let tail = read(&mut ws, Stop::Close, MINUTE).await;
    assert_eq!(tail.close, Some(1009));
    events.extend(tail.events);
    resume_and_assert_complete(&edge, &s, events).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_is_answered_with_its_payload_while_events_flow() {
    let (edge, s, mut ws, mut events) = streaming().await;
    ws.send(Message::Ping(b"still there?".to_vec().into()))
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(MINUTE, ws.next()).await {
            Ok(Some(Ok(Message::Pong(p)))) => break assert_eq!(&p[..], b"still there?"),
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                events.extend(v["events"].as_array().into_iter().flatten().cloned());
            }
            other => panic!("expected a pong, got {other:?}"),
        }
    }
    let rest = read(&mut ws, Stop::Close, MINUTE).await;
    assert_eq!(rest.close, Some(1000));
    events.extend(rest.events);
    assert_complete(&events, "completed");
    drop((edge, s));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_that_breaks_rfc_6455_gets_an_error_frame_and_close_1002() {
    let (edge, s, mut ws, mut events) = streaming().await;
    // A reserved bit set: no extension was negotiated.
    let mut bad = Frame::message(b"{}".to_vec(), OpCode::Data(Data::Text), true);
    bad.header_mut().rsv1 = true;
    ws.send(Message::Frame(bad)).await.unwrap();
    let tail = read(&mut ws, Stop::Close, MINUTE).await;
    assert_eq!(tail.close, Some(1002));
    assert_eq!(tail.errors.len(), 1, "{:?}", tail.errors);
    assert_eq!(tail.errors[0]["code"], "bad_request");
    events.extend(tail.events);
    resume_and_assert_complete(&edge, &s, events).await;
}
