//! Every bad input gets the status or close code of protocol.md, with a
//! JSON error, and the node keeps serving everyone else.

mod common;

use std::time::Duration;

use common::*;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;
use weir_protocol::{SessionId, TokenKey};

const MINUTE: Duration = Duration::from_secs(60);
const API_KEY: &str = "the-api-key";

async fn expect_error(r: reqwest::Response, status: u16, code: &str) {
    assert_eq!(r.status().as_u16(), status);
    let body: Value = r.json().await.expect("error bodies are JSON");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}

async fn create_keyed(edge: &Node, body: Value) -> Session {
    create_with_key(edge, body, Some(API_KEY)).await
}

/// Connects and reads until close; returns the close code and error frames.
async fn ws_refused(url: String) -> Received {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("upgrade");
    read(&mut ws, Stop::Close, MINUTE).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_others_stream_on() {
    let c = Cluster::start_with("bad-input", 1, 1, &["--api-key", API_KEY], &[]);
    let edge = c.edge(0);
    let base = edge.http();
    // A healthy session streams through all of this.
    let healthy = create_keyed(
        edge,
        json!({"agent": "mock", "input": {"tokens": 400, "rate": 100}}),
    )
    .await;
    let mut healthy_ws = ws_connect(edge, &healthy.id, &healthy.token, 0).await;
    let healthy_reader =
        tokio::spawn(async move { read(&mut healthy_ws, Stop::Close, MINUTE).await });

    // --- creating sessions
    let post = |body: &'static str, key: Option<&'static str>| {
        let mut req = http()
            .post(format!("{base}/v1/sessions"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        req.send()
    };
    expect_error(
        post(r#"{"agent":"mock"}"#, None).await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    expect_error(
        post(r#"{"agent":"mock"}"#, Some("wrong")).await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    expect_error(
        post(r#"{"agent": "mock""#, Some(API_KEY)).await.unwrap(),
        400,
        "bad_request",
    )
    .await;
    expect_error(
        post(r#"{"input": {}}"#, Some(API_KEY)).await.unwrap(),
        400,
        "bad_request",
    )
    .await;
    expect_error(
        post(r#"{"agent":"nope"}"#, Some(API_KEY)).await.unwrap(),
        400,
        "bad_request",
    )
    .await;
    expect_error(
        post(r#"{"agent":"mock","input":{"tokens":-5}}"#, Some(API_KEY))
            .await
            .unwrap(),
        400,
        "bad_request",
    )
    .await;
    expect_error(
        post(r#"{"agent":"mock","input":[1]}"#, Some(API_KEY))
            .await
            .unwrap(),
        400,
        "bad_request",
    )
    .await;
    // A struct's sequence form (serde would read `["mock"]` as {"agent": "mock"}).
    expect_error(
        post(r#"["mock"]"#, Some(API_KEY)).await.unwrap(),
        400,
        "bad_request",
    )
    .await;
    let array_broadcast = http()
        .post(format!("{base}/v1/broadcast"))
        .bearer_auth(API_KEY)
        .header("content-type", "application/json")
        .body(r#"[{"x":1}]"#)
        .send()
        .await
        .unwrap();
    expect_error(array_broadcast, 400, "bad_request").await;
    expect_error(
        post(r#"{"agent":"mock","id":"no.dots"}"#, Some(API_KEY))
            .await
            .unwrap(),
        400,
        "bad_request",
    )
    .await;
    let big = format!(
        r#"{{"agent":"mock","input":{{"x":"{}"}}}}"#,
        "a".repeat(70_000)
    );
    let r = http()
        .post(format!("{base}/v1/sessions"))
        .bearer_auth(API_KEY)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    expect_error(r, 413, "too_large").await;
    // A chosen id is taken once.
    create_keyed(
        edge,
        json!({"agent": "mock", "id": "chosen-id", "input": {"tokens": 1}}),
    )
    .await;
    expect_error(
        post(r#"{"agent":"mock","id":"chosen-id"}"#, Some(API_KEY))
            .await
            .unwrap(),
        409,
        "conflict",
    )
    .await;

    // --- reading sessions
    let key = TokenKey::new(SECRET.as_bytes()).unwrap();
    let ghost = SessionId::parse("ghost-session").unwrap();
    let ghost_token = key.issue(&ghost, 60);
    let expired = key.issue_until(&SessionId::parse(&healthy.id).unwrap(), 1);
    let foreign = ghost_token.clone();
    let get = |path: String| http().get(format!("{base}{path}")).send();
    let h = &healthy;
    expect_error(
        get(format!("/v1/sessions/{}", h.id)).await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    expect_error(
        get(format!("/v1/sessions/{}?token=garbage", h.id))
            .await
            .unwrap(),
        401,
        "unauthorized",
    )
    .await;
    expect_error(
        get(format!("/v1/sessions/{}?token={expired}", h.id))
            .await
            .unwrap(),
        401,
        "unauthorized",
    )
    .await;
    expect_error(
        get(format!("/v1/sessions/{}?token={foreign}", h.id))
            .await
            .unwrap(),
        401,
        "unauthorized",
    )
    .await;
    expect_error(
        get(format!("/v1/sessions/ghost-session?token={ghost_token}"))
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    expect_error(
        get(format!("/v1/sessions/bad.id?token={ghost_token}"))
            .await
            .unwrap(),
        400,
        "bad_request",
    )
    .await;
    expect_error(
        get(format!(
            "/v1/sessions/{}/history?limit=0&token={}",
            h.id, h.token
        ))
        .await
        .unwrap(),
        400,
        "bad_request",
    )
    .await;
    expect_error(
        get(format!(
            "/v1/sessions/{}/history?after=abc&token={}",
            h.id, h.token
        ))
        .await
        .unwrap(),
        400,
        "bad_request",
    )
    .await;
    expect_error(
        get(format!(
            "/v1/sessions/{}/history?after=999999&token={}",
            h.id, h.token
        ))
        .await
        .unwrap(),
        400,
        "bad_request",
    )
    .await;
    let non_ascii_last_event_id = http()
        .get(format!(
            "{base}/v1/sessions/{}/events?token={}",
            h.id, h.token
        ))
        .header(
            "last-event-id",
            reqwest::header::HeaderValue::from_bytes(b"\xc3\xa912").unwrap(),
        )
        .send()
        .await
        .unwrap();
    expect_error(non_ascii_last_event_id, 400, "bad_request").await;
    let array_run_input = http()
        .post(format!(
            "{base}/v1/sessions/{}/ag-ui?token={}",
            h.id, h.token
        ))
        .header("content-type", "application/json")
        .body("[]")
        .send()
        .await
        .unwrap();
    expect_error(array_run_input, 400, "bad_request").await;
    expect_error(
        get(format!(
            "/v1/sessions/{}/events?after=-1&token={}",
            h.id, h.token
        ))
        .await
        .unwrap(),
        400,
        "bad_request",
    )
    .await;
    expect_error(
        get(format!(
            "/v1/sessions/ghost-session/events?token={ghost_token}"
        ))
        .await
        .unwrap(),
        404,
        "not_found",
    )
    .await;
    expect_error(
        get("/v1/nothing-here".into()).await.unwrap(),
        404,
        "not_found",
    )
    .await;
    let r = http()
        .post(format!("{base}/v1/sessions/{}/pause?token={foreign}", h.id))
        .send()
        .await
        .unwrap();
    expect_error(r, 401, "unauthorized").await;
    let r = http()
        .post(format!(
            "{base}/v1/sessions/ghost-session/cancel?token={ghost_token}"
        ))
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "not_found").await;

    // --- Unknown paths and methods say so.
    let r = http()
        .get(format!("{base}/v2/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    assert_eq!(body["error"]["message"], "no route GET /v2/nothing");
    let r = http()
        .delete(format!("{base}/v1/broadcast"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("DELETE"),
        "{body}"
    );

    // --- WebSocket refusals: close code + error frame, before any event
    let ws = edge.ws();
    for (url, code) in [
        (format!("{ws}/v1/sessions/{}/ws", h.id), 4001),
        (format!("{ws}/v1/sessions/{}/ws?token=garbage", h.id), 4001),
        (
            format!("{ws}/v1/sessions/{}/ws?token={expired}", h.id),
            4001,
        ),
        (
            format!("{ws}/v1/sessions/{}/ws?token={foreign}", h.id),
            4001,
        ),
        (
            format!("{ws}/v1/sessions/ghost-session/ws?token={ghost_token}"),
            4004,
        ),
        (
            format!("{ws}/v1/sessions/bad.id/ws?token={ghost_token}"),
            4004,
        ),
        (
            format!("{ws}/v1/sessions/{}/ws?token={}&after=xyz", h.id, h.token),
            1008,
        ),
        (
            format!(
                "{ws}/v1/sessions/{}/ws?token={}&after=999999",
                h.id, h.token
            ),
            1008,
        ),
    ] {
        let got = ws_refused(url.clone()).await;
        assert_eq!(got.close, Some(code), "{url}");
        assert!(
            got.hello.is_none() && got.events.is_empty(),
            "{url} sent events"
        );
        assert_eq!(
            got.errors.len(),
            1,
            "{url}: one error frame before the close"
        );
    }

    // --- bad client frames on an open stream (long enough to outlast them)
    let s = create_keyed(
        edge,
        json!({"agent": "mock", "input": {"tokens": 600, "rate": 100}}),
    )
    .await;
    let mut conn = ws_connect(edge, &s.id, &s.token, 0).await;
    let mut events = read(&mut conn, Stop::After(5), MINUTE).await.events;
    send(&mut conn, json!("not an object")).await;
    conn.send(Message::Text("{not json".into())).await.unwrap();
    send(&mut conn, json!({"type": "dance"})).await;
    send(&mut conn, json!({"type": "ack", "seq": "five"})).await;
    conn.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    send(&mut conn, json!({"type": "ack", "seq": 5})).await;
    let mut errors = Vec::new();
    while errors.len() < 5 {
        let got = read(&mut conn, Stop::After(events.len() + 1), MINUTE).await;
        errors.extend(got.errors);
        events.extend(got.events);
    }
    assert!(
        errors.iter().all(|e| e["code"] == "bad_request"),
        "{errors:?}"
    );
    // The stream went on; now an oversized frame closes it with 1009.
    conn.send(Message::Text("x".repeat(70_000).into()))
        .await
        .unwrap();
    let tail = read(&mut conn, Stop::Close, MINUTE).await;
    assert_eq!(tail.close, Some(1009));
    events.extend(tail.events);

    // A ping is answered with its payload; a frame that breaks RFC 6455
    // (a reserved bit, here) gets an error frame and close 1002.
    let after = events.last().unwrap()["seq"].as_u64().unwrap();
    let mut conn = ws_connect(edge, &s.id, &s.token, after).await;
    conn.send(Message::Ping(b"still there?".to_vec().into()))
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(MINUTE, conn.next()).await {
            Ok(Some(Ok(Message::Pong(p)))) => break assert_eq!(&p[..], b"still there?"),
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                events.extend(v["events"].as_array().into_iter().flatten().cloned());
            }
            other => panic!("expected a pong, got {other:?}"),
        }
    }
    let mut bad = Frame::message(b"{}".to_vec(), OpCode::Data(Data::Text), true);
    bad.header_mut().rsv1 = true;
    conn.send(Message::Frame(bad)).await.unwrap();
    let tail = read(&mut conn, Stop::Close, MINUTE).await;
    assert_eq!(tail.close, Some(1002));
    assert_eq!(tail.errors.len(), 1, "{:?}", tail.errors);
    assert_eq!(tail.errors[0]["code"], "bad_request");
    events.extend(tail.events);
    let after = events.last().unwrap()["seq"].as_u64().unwrap();
    let (rest, _) = read_resuming_from(&[edge], &s, after, MINUTE).await;
    events.extend(rest);
    assert_complete(&events, "completed");
    assert!(state(edge, &s).await["acked"].as_u64().unwrap() >= 5);

    // The healthy stream was not disturbed.
    let healthy_got = healthy_reader.await.unwrap();
    assert_eq!(healthy_got.close, Some(1000));
    assert_complete(&healthy_got.events, "completed");
    assert_eq!(healthy_got.events, history(edge, &healthy).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_history_gets_410_and_4010() {
    let retention = ["--retention", "2s"];
    let c = Cluster::start_with("expired", 1, 1, &retention, &retention);
    let edge = c.edge(0);
    // 6 s of tokens: by the end, the first seconds are gone from the log.
    let s = create_mock(edge, 60, 10.0, 1).await;
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let r = http()
        .get(format!(
            "{}/v1/sessions/{}/history?after=0&token={}",
            edge.http(),
            s.id,
            s.token
        ))
        .send()
        .await
        .unwrap();
    expect_error(r, 410, "history_expired").await;
    let got = ws_refused(format!(
        "{}/v1/sessions/{}/ws?token={}&after=0",
        edge.ws(),
        s.id,
        s.token
    ))
    .await;
    assert_eq!(got.close, Some(4010));
    assert_eq!(got.errors[0]["code"], "history_expired");
    // A client that is recent enough still resumes.
    let last = state(edge, &s).await["last_seq"].as_u64().unwrap();
    let mut ws = ws_connect(edge, &s.id, &s.token, last - 2).await;
    let tail = read(&mut ws, Stop::Close, MINUTE).await;
    assert_eq!(tail.close, Some(1000));
    assert_eq!(tail.events.first().unwrap()["seq"], last - 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_creates_over_the_rate_limit_gets_429_with_retry_after() {
    let limits = ["--create-rate", "1", "--create-burst", "3"];
    let c = Cluster::start_with("create-rate", 1, 1, &limits, &[]);
    let url = format!("{}/v1/sessions", c.edge(0).http());
    let body = json!({"agent": "mock", "input": {"tokens": 5}});
    // Twenty at once: three fit the burst (plus one a second while they
    // are answered), the rest are told to wait.
    let started = std::time::Instant::now();
    let answers =
        futures::future::join_all((0..20).map(|_| http().post(&url).json(&body).send())).await;
    let mut created = 0;
    for r in answers {
        let r = r.unwrap();
        match r.status().as_u16() {
            201 => created += 1,
            429 => {
                let retry: u64 = r.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=20).contains(&retry), "Retry-After {retry}");
                expect_error(r, 429, "rate_limited").await;
            }
            other => panic!("a burst got {other}: {}", r.text().await.unwrap()),
        }
    }
    let refilled = started.elapsed().as_secs_f64().floor() as usize;
    assert!((3..=3 + refilled).contains(&created), "{created} created");
    // After the wait it names, creating works again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let s = create_mock(c.edge(0), 5, 0.0, 1).await;
    let (events, _) = read_all_resuming(&[c.edge(0)], &s, Duration::from_secs(30)).await;
    assert_complete(&events, "completed");
}
