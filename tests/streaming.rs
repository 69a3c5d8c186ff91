//! The core path against real NATS JetStream and Redis: a session streams
//! exactly once and in order over WebSocket and SSE, history agrees, and a
//! client resumes on any edge — also after its edge is killed.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use serde_json::Value;

const MINUTE: Duration = Duration::from_secs(60);

/// SSE events of a session, parsed from the raw `text/event-stream`.
async fn sse_events(edge: &Node, s: &Session, after: u64) -> Vec<(String, String, Value)> {
    let url = format!(
        "{}/v1/sessions/{}/events?token={}&after={after}",
        edge.http(),
        s.id,
        s.token
    );
    let r = http().get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut body = String::new();
    let mut stream = r.bytes_stream();
    while let Some(chunk) = stream.next().await {
        body.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    body.split("\n\n")
        .filter_map(|block| {
            let (mut id, mut kind, mut data) = (None, None, None);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("event: ") {
                    kind = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = Some(serde_json::from_str(v).unwrap());
                }
            }
            Some((id?, kind?, data?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_streams_exactly_once_over_ws_sse_and_history() {
    let c = Cluster::start("stream-once", 1, 1);
    let edge = c.edge(0);
    let s = create_mock(edge, 200, 0.0, 42).await;
    let mut ws = ws_connect(edge, &s.id, &s.token, 0).await;
    let got = read(&mut ws, Stop::Close, MINUTE).await;
    let hello = got.hello.as_ref().expect("hello first");
    assert_eq!(hello["session"], s.id.as_str());
    assert_eq!(hello["node"], "edge-0");
    assert_eq!(hello["after"], 0);
    assert_eq!(got.close, Some(1000));
    assert_eq!(got.events.len(), 201);
    assert_complete(&got.events, "completed");
    for (i, e) in got.events[..200].iter().enumerate() {
        assert_eq!(e["kind"], "token");
        assert_eq!(
            e["data"]["text"],
            weir_protocol::mock::token_text(42, i as u64 + 1)
        );
    }

    let hist = history(edge, &s).await;
    assert_eq!(
        hist, got.events,
        "history differs from the WebSocket stream"
    );

    let sse = sse_events(edge, &s, 0).await;
    assert_eq!(
        sse.iter().map(|(_, _, d)| d.clone()).collect::<Vec<_>>(),
        got.events
    );
    for (id, kind, data) in &sse {
        assert_eq!(id, &data["seq"].to_string());
        assert_eq!(kind, data["kind"].as_str().unwrap());
    }
    // SSE resumes after `after` / Last-Event-ID.
    let tail = sse_events(edge, &s, 190).await;
    assert_eq!(tail.first().unwrap().2["seq"], 191);
    let st = state(edge, &s).await;
    assert_eq!(
        (st["status"].as_str(), st["last_seq"].as_u64()),
        (Some("completed"), Some(201))
    );
    assert_eq!(st["end_reason"], "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_on_another_edge_exactly_where_it_left() {
    let c = Cluster::start("resume-other-edge", 2, 1);
    let (a, b) = (c.edge(0), c.edge(1));
    let s = create_mock(a, 300, 500.0, 7).await;
    let mut ws = ws_connect(a, &s.id, &s.token, 0).await;
    let first = read(&mut ws, Stop::After(60), MINUTE).await;
    drop(ws);
    let held = first.last_seq();
    assert!(held >= 60);
    let mut ws = ws_connect(b, &s.id, &s.token, held).await;
    let rest = read(&mut ws, Stop::Close, MINUTE).await;
    assert_eq!(rest.hello.as_ref().unwrap()["node"], "edge-1");
    assert_eq!(rest.hello.as_ref().unwrap()["after"], held);
    assert_eq!(rest.close, Some(1000));
    let all: Vec<Value> = first.events.into_iter().chain(rest.events).collect();
    assert_complete(&all, "completed");
    assert_eq!(all, history(b, &s).await);
    // A client that already holds everything is told so at once.
    let mut ws = ws_connect(a, &s.id, &s.token, 301).await;
    let done = read(&mut ws, Stop::Close, MINUTE).await;
    assert!(done.events.is_empty());
    assert_eq!(done.close, Some(1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_sessions_survive_their_edge_being_killed() {
    let mut c = Cluster::start("edge-kill", 2, 1);
    let sessions: Vec<Session> =
        futures::future::join_all((0..50).map(|i| create_mock(&c.edges[0], 300, 50.0, i))).await;
    // Every client reads part of its session from edge A.
    let a = &c.edges[0];
    let clients = futures::future::join_all(sessions.iter().map(|s| async move {
        let mut ws = ws_connect(a, &s.id, &s.token, 0).await;
        let got = read(&mut ws, Stop::After(10), MINUTE).await;
        (ws, got.events)
    }))
    .await;
    c.edges[0].proc.kill9();
    let b = &c.edges[1];
    let resumed = futures::future::join_all(clients.into_iter().zip(&sessions).map(
        |((mut ws, mut events), s)| async move {
            // Drain what edge A had already written, until the socket dies.
            let tail = read(&mut ws, Stop::Close, MINUTE).await;
            assert_ne!(
                tail.close,
                Some(1000),
                "edge A was killed before the sessions ended"
            );
            events.extend(tail.events);
            let after = events.last().unwrap()["seq"].as_u64().unwrap();
            let mut ws = ws_connect(b, &s.id, &s.token, after).await;
            let rest = read(&mut ws, Stop::Close, MINUTE).await;
            assert_eq!(rest.close, Some(1000));
            events.extend(rest.events);
            events
        },
    ))
    .await;
    for (events, s) in resumed.iter().zip(&sessions) {
        assert_complete(events, "completed");
        assert_eq!(
            events,
            &history(b, s).await,
            "session {} differs from its log",
            s.id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_subscribers_of_one_session_share_one_feed() {
    let c = Cluster::start("fan-out", 1, 1);
    let edge = c.edge(0);
    let s = create_mock(edge, 400, 400.0, 3).await;
    let readers = (0..40).map(|i| {
        let (id, token) = (s.id.clone(), s.token.clone());
        async move {
            // Staggered joins: some start from the ring, some from the log.
            tokio::time::sleep(Duration::from_millis(i * 15)).await;
            let mut ws = ws_connect(edge, &id, &token, 0).await;
            read(&mut ws, Stop::Close, MINUTE).await
        }
    });
    let all = futures::future::join_all(readers).await;
    let hist = history(edge, &s).await;
    for got in all {
        assert_eq!(got.close, Some(1000));
        assert_eq!(got.events, hist);
    }
    // The session was created here (its feed warmed) and read by 40
    // clients that joined over 600 ms: one upstream subscription in all.
    assert_eq!(metric_sum(edge, "weir_edge_feeds_started_total").await, 1.0);
    assert_eq!(
        metric_sum(edge, "weir_edge_events_delivered_total").await,
        40.0 * hist.len() as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nats_bus_and_redis_store_pass_the_conformance_suites() {
    let dir = scratch("conformance");
    let nats = Nats::start(&dir);
    let redis = Redis::start(&dir);
    let bus = weir_bus::Bus::nats(
        &[nats.url()],
        "conformance",
        weir_bus::BusConfig {
            run_ack_wait: Duration::from_secs(1),
            duplicate_window: Duration::from_secs(1),
            node_ttl: Duration::from_secs(1),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    weir_bus::conformance::all(&bus, "n-").await;
    weir_bus::conformance::notices_and_the_node_registry(&bus, "n-", Duration::from_secs(1)).await;
    weir_bus::conformance::retries_after_the_duplicate_window_are_stored_once(
        &bus,
        "n-",
        Duration::from_secs(1),
    )
    .await;
    let retention = Duration::from_secs(1);
    let store = weir_store::RedisStore::connect(&redis.url(), retention)
        .await
        .unwrap();
    weir_store::conformance::all(&store, "r-", retention).await;
}
