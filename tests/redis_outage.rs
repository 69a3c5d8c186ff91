//! Redis killed (SIGKILL) mid-stream, then back empty on the same port
//! (protocol.md §6): sessions in progress stream to their `end`; WebSocket
//! resumes, SSE, history and session state are served from the log while it
//! is down; only creating sessions is refused (503); when it is back
//! everything recovers without a restart and old sessions' state is rebuilt
//! from the log. Each node logs the outage once.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures::future::join_all;
use futures::StreamExt;
use serde_json::{json, Value};
use weir_protocol::SessionId;
use weir_store::{RedisStore, SessionState, SessionStore};

const MINUTE: Duration = Duration::from_secs(60);
/// Bound on any one stream: sessions take 8 s.
const WITHIN: Duration = Duration::from_secs(30);
const TOKENS: u64 = 400;
/// Longer than the producers' lease (2 s): runs must outlive their leases.
const DOWN_FOR: Duration = Duration::from_secs(4);
const NODES: [&str; 4] = ["edge-0", "edge-1", "producer-0", "producer-1"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_stream_through_a_redis_outage_and_all_recovers_when_it_is_back_empty() {
    let lease = ["--lease-ttl", "2s", "--reap-interval", "250ms"];
    let mut c = Cluster::start_with("redis-outage", 2, 2, &[], &lease);
    let done = create_mock(c.edge(0), 20, 0.0, 99).await;
    wait_ended(c.edge(0), &done, MINUTE).await;
    let sessions: Vec<Session> =
        join_all((0..5).map(|i| create_mock(&c.edges[i % 2], TOKENS, 50.0, i as u64))).await;
    let doomed = create_mock(c.edge(1), 2000, 50.0, 7).await;

    let dir = c.dir.clone();
    let Cluster { redis, edges, .. } = &mut c;
    let edges: Vec<&Node> = edges.iter().collect();
    // Clients alternate edges, and reconnect to the other one if dropped.
    let readers = join_all(sessions.iter().enumerate().map(|(i, s)| {
        let order = [edges[i % 2], edges[(i + 1) % 2]];
        async move { read_all_resuming(&order, s, WITHIN).await }
    }));
    // Killed 2 s in, back (empty) after DOWN_FOR: the runs outlive their
    // leases, and go on after Redis is back.
    let outage = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        tokio::task::block_in_place(|| redis.kill9());
        let killed = Instant::now();
        let checks = async {
            while_down(&edges, &sessions, &done, &doomed).await;
            tokio::time::sleep(DOWN_FOR.saturating_sub(killed.elapsed())).await;
            tokio::task::block_in_place(|| redis.restart_empty(&dir));
        };
        // Connected while Redis is down, read to the end after it is back.
        tokio::join!(
            resumed_elsewhere(edges[1], &sessions[0]),
            sse_to_the_end(edges[0], &sessions[4]),
            checks
        );
    };
    let (results, ()) = tokio::join!(readers, outage);

    // Every client got exactly the log's events, ending `completed`.
    for ((events, _), s) in results.iter().zip(&sessions) {
        assert_complete(events, "completed");
        assert_eq!(events.len() as u64, TOKENS + 1, "session {}", s.id);
        assert_eq!(*events, history(edges[1], s).await);
    }
    assert_complete(&wait_history_end(edges[0], &doomed).await, "cancelled");
    back_empty(&c, &sessions, &done).await;
}

/// What must work while Redis is down (quick checks).
async fn while_down(edges: &[&Node], sessions: &[Session], done: &Session, doomed: &Session) {
    // Each edge finds out, and refuses to create sessions.
    join_all(edges.iter().map(|edge| async move {
        let r = http()
            .post(format!("{}/v1/sessions", edge.http()))
            .json(&json!({"agent": "mock", "input": {"tokens": 5}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
        let body: Value = r.json().await.expect("a JSON error body");
        assert_eq!(body["error"]["code"], "unavailable", "{body}");
    }))
    .await;
    completed_resumes(edges[1], done).await;
    read_and_state(edges, sessions, done).await;
    let r = http()
        .post(format!(
            "{}/v1/sessions/{}/cancel",
            edges[0].http(),
            doomed.id
        ))
        .bearer_auth(&doomed.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "cancel while Redis is down");
}

/// A live session resumed (`after=50`) on the other edge than its client's,
/// with an ack that cannot be stored: to the end, nothing lost or repeated.
async fn resumed_elsewhere(edge: &Node, s: &Session) {
    let mut ws = ws_connect(edge, &s.id, &s.token, 50).await;
    send(&mut ws, json!({"type": "ack", "seq": 50})).await;
    let got = read(&mut ws, Stop::Close, WITHIN).await;
    assert_eq!(got.close, Some(1000), "{:?}", got.errors);
    assert!(got.errors.is_empty(), "{:?}", got.errors);
    assert_eq!(got.hello.as_ref().unwrap()["status"], "streaming");
    assert_eq!(got.seqs(), (51..=TOKENS + 1).collect::<Vec<_>>());
}

/// A live session over SSE from `after=50`, to its end.
async fn sse_to_the_end(edge: &Node, s: &Session) {
    let seqs = sse_seqs(edge, s, 50).await;
    assert_eq!(seqs, (51..=TOKENS + 1).collect::<Vec<_>>());
}

/// A session that ended before the outage, resumed on the other edge.
async fn completed_resumes(edge: &Node, done: &Session) {
    let mut ws = ws_connect(edge, &done.id, &done.token, 5).await;
    let got = read(&mut ws, Stop::Close, MINUTE).await;
    assert_eq!(got.close, Some(1000), "{:?}", got.errors);
    assert_eq!(got.seqs(), (6..=21).collect::<Vec<_>>());
    let mut ws = ws_connect(edge, &done.id, &done.token, 21).await;
    let got = read(&mut ws, Stop::Close, MINUTE).await;
    assert_eq!(got.close, Some(1000));
    assert_eq!(got.hello.as_ref().unwrap()["status"], "completed");
}

/// History and `GET /v1/sessions/{id}` on both edges, from the log.
async fn read_and_state(edges: &[&Node], sessions: &[Session], done: &Session) {
    for (edge, s) in edges.iter().zip(&sessions[1..3]) {
        let events = history(edge, s).await;
        assert!(
            events.len() > 10,
            "history of {} while down: {events:?}",
            s.id
        );
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e["seq"].as_u64(), Some(i as u64 + 1));
        }
        let st = state(edge, &sessions[3]).await;
        assert_eq!(st["status"], "streaming", "{st}");
        assert!(st["last_seq"].as_u64().unwrap() > 10, "{st}");
        assert!(
            unknown(&st).contains(&"agent".to_owned()),
            "not marked partial: {st}"
        );
        let st = state(edge, done).await;
        assert_eq!(
            (st["status"].as_str(), st["last_seq"].as_u64()),
            (Some("completed"), Some(21))
        );
        assert_eq!(st["end_reason"], "completed");
    }
}

/// Redis is back, empty: new sessions work, old ones answer from the log
/// (and their rebuilt state is written back), each node logged the outage once.
async fn back_empty(c: &Cluster, sessions: &[Session], done: &Session) {
    let fresh = create_when_back(c.edge(0)).await;
    let mut ws = ws_connect(c.edge(1), &fresh.id, &fresh.token, 0).await;
    let got = read(&mut ws, Stop::Close, MINUTE).await;
    assert_complete(&got.events, "completed");
    assert_eq!(got.events.len(), 51);

    let st = state(c.edge(1), done).await;
    assert_eq!(
        (st["status"].as_str(), st["last_seq"].as_u64()),
        (Some("completed"), Some(21))
    );
    assert_eq!(st["end_reason"], "completed");
    assert!(unknown(&st).contains(&"agent".to_owned()), "{st}");
    for s in sessions {
        let st = state(c.edge(0), s).await;
        assert_eq!(st["status"], "completed", "{st}");
        assert_eq!(st["last_seq"].as_u64(), Some(TOKENS + 1), "{st}");
    }
    let store = RedisStore::connect(&c.redis.url(), MINUTE).await.unwrap();
    let stored = store
        .get(&SessionId::parse(&done.id).unwrap())
        .await
        .unwrap();
    let stored = stored.expect("the rebuilt state was not written back");
    assert_eq!(stored.last_seq, 21);

    for node in NODES {
        let log = node_log(c, node);
        let down = log.matches("session store unreachable").count();
        let back = log.matches("session store reachable again").count();
        assert_eq!(
            (down, back),
            (1, 1),
            "{node} logged the outage {down} times, its end {back}"
        );
    }
    let metrics = metrics_page(c.edge(1)).await;
    assert!(
        metrics.lines().any(|l| l == "weir_store_outages_total 1"),
        "{metrics}"
    );
}

/// Creates a 50-token session once the edge has seen Redis come back.
async fn create_when_back(edge: &Node) -> Session {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = http()
            .post(format!("{}/v1/sessions", edge.http()))
            .json(&json!({"agent": "mock", "input": {"tokens": 50, "seed": 3}}))
            .send()
            .await
            .unwrap();
        if r.status() == 201 {
            let v: Value = r.json().await.unwrap();
            let (id, token) = (v["id"].as_str().unwrap(), v["token"].as_str().unwrap());
            return Session {
                id: id.into(),
                token: token.into(),
            };
        }
        assert_eq!(r.status(), 503);
        assert!(
            Instant::now() < deadline,
            "sessions still refused after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The history of a session once it holds its `end`.
async fn wait_history_end(edge: &Node, s: &Session) -> Vec<Value> {
    let deadline = Instant::now() + WITHIN;
    loop {
        let events = history(edge, s).await;
        if events.last().is_some_and(|e| e["kind"] == "end") {
            return events;
        }
        assert!(Instant::now() < deadline, "{} never ended", s.id);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn unknown(state: &Value) -> Vec<String> {
    state["unknown"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The seqs of a session's SSE stream after `after`, read to its end.
async fn sse_seqs(edge: &Node, s: &Session, after: u64) -> Vec<u64> {
    let url = format!(
        "{}/v1/sessions/{}/events?token={}&after={after}",
        edge.http(),
        s.id,
        s.token
    );
    let r = http().get(url).timeout(WITHIN).send().await.unwrap();
    assert_eq!(r.status(), 200, "SSE refused while Redis is down");
    let mut body = String::new();
    let mut stream = r.bytes_stream();
    while let Some(chunk) = stream.next().await {
        body.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    body.lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|id| id.parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_store_fails_fast_while_redis_is_down_and_reconnects_by_itself() {
    let dir = scratch("redis-store-outage");
    let mut redis = Redis::start(&dir);
    let store = RedisStore::connect(&redis.url(), MINUTE).await.unwrap();
    let id = SessionId::parse("state-kept").unwrap();
    store
        .create(&SessionState::new(id.clone(), "mock"))
        .await
        .unwrap();

    redis.kill9();
    let t = Instant::now();
    assert!(store.get(&id).await.is_err());
    let first = t.elapsed();
    assert!(store.up_since().is_none(), "still up after a failed call");
    let t = Instant::now();
    for _ in 0..100 {
        let e = store.update(&id, progress(1)).await.unwrap_err();
        assert!(e.to_string().contains("not tried"), "Redis was tried: {e}");
    }
    eprintln!(
        "while down: first call failed after {first:?}, then 100 failed at once in {:?}",
        t.elapsed()
    );

    redis.restart_empty(&dir);
    let deadline = Instant::now() + Duration::from_secs(15);
    while store.up_since().is_none() {
        assert!(
            Instant::now() < deadline,
            "the store never saw Redis come back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        store.get(&id).await.unwrap().is_none(),
        "Redis came back with data"
    );
    assert!(
        !store.update(&id, progress(2)).await.unwrap(),
        "an update of a state Redis lost was written"
    );
    // The restarted Redis passes the store's conformance suite.
    let retention = Duration::from_secs(1);
    let again = RedisStore::connect(&redis.url(), retention).await.unwrap();
    weir_store::conformance::all(&again, "after-", retention).await;
}

fn progress(seq: u64) -> weir_store::Update {
    weir_store::Update {
        last_seq: Some(seq),
        ..Default::default()
    }
}
