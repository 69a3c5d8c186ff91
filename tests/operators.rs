//! The operator API (protocol.md §7) on two edges and two producers: status,
//! the node list (a killed producer leaves it within its TTL), broadcast
//! notices (to everyone or one session, over WebSocket and SSE, on both
//! edges, once each, in no log), operator control with the API key, and the
//! API key on every operator endpoint.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "operator-key-0123";
const TTL: &[&str] = &["--node-ttl", "2s"];

fn start(name: &str) -> Cluster {
    let edge_args = ["--api-key", KEY, "--node-ttl", "2s"];
    Cluster::start_with(name, 2, 2, &edge_args, TTL)
}

async fn get(url: &str, key: Option<&str>) -> (u16, Value) {
    let mut req = http().get(url);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn post(url: &str, key: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = http().post(url).json(&body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn node_ids(edge: &Node) -> Vec<String> {
    let (status, v) = get(&format!("{}/v1/nodes", edge.http()), Some(KEY)).await;
    assert_eq!(status, 200, "{v}");
    v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_nodes_show_the_cluster_and_a_dead_producer_leaves_within_its_ttl() {
    let mut c = start("ops-nodes");
    let (status, s) = get(&format!("{}/v1/status", c.edge(0).http()), Some(KEY)).await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["node"], "edge-0");
    assert_eq!(s["role"], "edge");
    assert_eq!(
        (s["bus"].as_str(), s["store"].as_str()),
        (Some("ok"), Some("ok"))
    );
    for field in ["version", "uptime_s", "connections", "sessions_followed"] {
        assert!(!s[field].is_null(), "status lacks {field}: {s}");
    }
    let p = &c.producers[0];
    let (status, ps) = get(&format!("{}/v1/status", p.http()), None).await;
    assert_eq!(
        (status, ps["role"].as_str()),
        (200, Some("producer")),
        "{ps}"
    );
    assert_eq!(ps["node"], "producer-0");

    // Both edges list all four nodes, with their load.
    let all = ["edge-0", "edge-1", "producer-0", "producer-1"];
    for e in &c.edges {
        assert_eq!(node_ids(e).await, all);
    }
    let (_, v) = get(&format!("{}/v1/nodes", c.edge(1).http()), Some(KEY)).await;
    let edge0 = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "edge-0")
        .unwrap();
    for field in [
        "version",
        "started",
        "last_seen",
        "connections",
        "sessions_followed",
        "events_per_s",
    ] {
        assert!(!edge0[field].is_null(), "edge entry lacks {field}: {edge0}");
    }
    let prod = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "producer-1")
        .unwrap();
    assert_eq!(prod["role"], "producer");
    assert!(prod["runs"].is_u64(), "{prod}");

    // A SIGKILLed producer is gone within the TTL (2 s) plus one refresh.
    c.producers[1].proc.kill9();
    let killed = Instant::now();
    while node_ids(c.edge(0)).await.contains(&"producer-1".to_owned()) {
        assert!(
            killed.elapsed() < Duration::from_secs(4),
            "the dead producer stayed listed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "operators: dead producer left /v1/nodes after {:?}",
        killed.elapsed()
    );
    assert_eq!(
        node_ids(c.edge(1)).await,
        ["edge-0", "edge-1", "producer-0"]
    );
}

/// Reads text frames until `n` notices arrived (or `within` passed).
async fn ws_notices(ws: &mut Ws, n: usize, within: Duration) -> (Vec<Value>, Vec<u64>) {
    let (mut notices, mut seqs) = (Vec::new(), Vec::new());
    let deadline = tokio::time::Instant::now() + within;
    while notices.len() < n {
        let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout_at(deadline, ws.next()).await
        else {
            break;
        };
        let v: Value = serde_json::from_str(&t).unwrap();
        match v["type"].as_str() {
            Some("notice") => notices.push(v["data"].clone()),
            Some("events") => seqs.extend(
                v["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["seq"].as_u64().unwrap()),
            ),
            _ => {}
        }
    }
    (notices, seqs)
}

/// An SSE reader: the raw `event:`/`id:`/`data:` lines of a session.
async fn sse_lines(edge: &Node, s: &Session) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let url = format!(
        "{}/v1/sessions/{}/events?token={}",
        edge.http(),
        s.id,
        s.token
    );
    let mut body = http().get(url).send().await.unwrap().bytes_stream();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = String::new();
        while let Some(Ok(chunk)) = body.next().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(i) = buf.find('\n') {
                let line = buf[..i].to_owned();
                buf.drain(..=i);
                if tx.send(line).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_reach_every_client_once_and_no_log() {
    let c = start("ops-broadcast");
    // Two long sessions; a WebSocket client of each on each edge.
    let a = create_with_key(
        c.edge(0),
        json!({"agent":"mock","input":{"tokens":200,"rate":20}}),
        Some(KEY),
    )
    .await;
    let b = create_with_key(
        c.edge(1),
        json!({"agent":"mock","input":{"tokens":200,"rate":20}}),
        Some(KEY),
    )
    .await;
    let mut clients = Vec::new();
    for e in &c.edges {
        for s in [&a, &b] {
            let mut ws = ws_connect(e, &s.id, &s.token, 0).await;
            read(&mut ws, Stop::After(1), Duration::from_secs(10)).await;
            clients.push((s.id.clone(), ws));
        }
    }
    // Answered: the stream holds its notices' subscription.
    let mut sse = sse_lines(c.edge(1), &a).await;

    let url = format!("{}/v1/broadcast", c.edge(0).http());
    let (status, v) = post(
        &url,
        Some(KEY),
        json!({"data": {"text": "maintenance at 10:00"}}),
    )
    .await;
    assert_eq!(status, 202, "{v}");
    let (status, v) = post(
        &url,
        Some(KEY),
        json!({"data": {"text": "only a"}, "session": a.id}),
    )
    .await;
    assert_eq!(status, 202, "{v}");
    for (id, ws) in &mut clients {
        let want = if *id == a.id { 2 } else { 1 };
        let (notices, seqs) = ws_notices(ws, want + 1, Duration::from_secs(3)).await;
        assert_eq!(notices.len(), want, "session {id}: {notices:?}");
        assert_eq!(notices[0], json!({"text": "maintenance at 10:00"}));
        if want == 2 {
            assert_eq!(notices[1], json!({"text": "only a"}));
        }
        // Events go on around the notices, contiguous.
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    }
    // SSE: `event: notice` with the frame as data and no `id:` line.
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while lines
        .iter()
        .filter(|l: &&String| l.as_str() == "event: notice")
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "SSE notices missing: {lines:?}");
        if let Ok(Some(l)) = tokio::time::timeout(Duration::from_millis(200), sse.recv()).await {
            lines.push(l);
        }
    }
    let at = lines.iter().position(|l| l == "event: notice").unwrap();
    assert!(lines[at + 1].starts_with("data: "), "{lines:?}");
    let frame: Value = serde_json::from_str(&lines[at + 1]["data: ".len()..]).unwrap();
    assert_eq!(
        frame,
        json!({"type": "notice", "data": {"text": "maintenance at 10:00"}})
    );
    assert!(
        !lines[at.saturating_sub(1)..at + 3]
            .iter()
            .any(|l| l.starts_with("id:")),
        "a notice carried an id: {lines:?}"
    );
    // No session's log holds a notice.
    for s in [&a, &b] {
        wait_ended(c.edge(0), s, Duration::from_secs(30)).await;
        let log = history(c.edge(0), s).await;
        assert_complete(&log, "completed");
        assert_eq!(log.len(), 201);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operator_endpoint_needs_the_api_key_and_bad_input_is_named() {
    let c = start("ops-auth");
    let e = c.edge(0).http();
    for key in [None, Some("wrong-key")] {
        for path in ["/v1/status", "/v1/nodes"] {
            let (status, v) = get(&format!("{e}{path}"), key).await;
            assert_eq!(status, 401, "{path}: {v}");
            assert_eq!(v["error"]["code"], "unauthorized");
        }
        let (status, _) = post(&format!("{e}/v1/broadcast"), key, json!({"data": {}})).await;
        assert_eq!(status, 401);
    }
    let url = format!("{e}/v1/broadcast");
    for (body, field) in [
        (json!({"data": "not an object"}), "data"),
        (json!({"data": {}, "session": "bad id!"}), "session"),
        (json!({"data": {}, "extra": 1}), "extra"),
        (json!({}), "data"),
    ] {
        let (status, v) = post(&url, Some(KEY), body.clone()).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(field),
            "{body}: {v}"
        );
    }
    // The API key controls any session (the operator page's cancel).
    let s = create_with_key(
        c.edge(0),
        json!({"agent":"mock","input":{"tokens":2000,"rate":20}}),
        Some(KEY),
    )
    .await;
    let cancel = format!("{e}/v1/sessions/{}/cancel", s.id);
    let (status, _) = post(&cancel, Some("wrong-key"), json!({})).await;
    assert_eq!(status, 401);
    let (status, v) = post(&cancel, Some(KEY), json!({})).await;
    assert_eq!(status, 202, "{v}");
    let st = wait_ended(c.edge(1), &s, Duration::from_secs(20)).await;
    assert_eq!(st["status"], "cancelled");
}

async fn list(edge: &Node, query: &str) -> (u16, Value) {
    get(&format!("{}/v1/sessions?{query}", edge.http()), Some(KEY)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_listing_pages_newest_first_and_filters_by_status() {
    let c = start("ops-listing");
    let mut made = Vec::new();
    for i in 0..6u64 {
        // Even ones finish at once; odd ones run for a minute.
        let rate = if i % 2 == 0 { 0 } else { 2 };
        let body = json!({"agent":"mock","input":{"tokens":100,"rate":rate,"seed":i}});
        made.push(create_with_key(c.edge((i % 2) as usize), body, Some(KEY)).await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for s in made.iter().step_by(2) {
        wait_ended(c.edge(0), s, Duration::from_secs(30)).await;
    }
    let newest_first: Vec<String> = made.iter().rev().map(|s| s.id.clone()).collect();
    // Pages of 4 from either edge: exactly the sessions, newest first.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    for page in 0.. {
        let (status, v) = list(c.edge(page % 2), &format!("limit=4&cursor={cursor}")).await;
        assert_eq!(status, 200, "{v}");
        seen.extend(
            v["sessions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].as_str().unwrap().to_owned()),
        );
        match v["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, newest_first);
    let (_, v) = list(c.edge(1), "limit=100").await;
    let first = &v["sessions"][0];
    for field in [
        "id",
        "status",
        "agent",
        "producer",
        "last_seq",
        "created",
        "subscribers",
    ] {
        assert!(first.get(field).is_some(), "listing lacks {field}: {first}");
    }
    // By status.
    let ids = |v: &Value| -> Vec<String> {
        v["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, done) = list(c.edge(0), "status=completed").await;
    assert_eq!(
        ids(&done),
        [made[4].id.clone(), made[2].id.clone(), made[0].id.clone()]
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, live) = list(c.edge(1), "status=streaming").await;
        if ids(&live) == [made[5].id.clone(), made[3].id.clone(), made[1].id.clone()] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "live sessions not listed as streaming: {live}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A live session's subscribers show up once its edge announces them.
    let mut ws = ws_connect(c.edge(0), &made[5].id, &made[5].token, 0).await;
    read(&mut ws, Stop::After(1), Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, v) = list(c.edge(1), "status=streaming&limit=1").await;
        if v["sessions"][0]["subscribers"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "subscriber not counted: {v}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Bad parameters name the field; no key, no listing.
    for (query, field) in [
        ("status=done", "status"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=x", "limit"),
        ("cursor=nonsense", "cursor"),
        ("sort=asc", "sort"),
    ] {
        let (status, v) = list(c.edge(0), query).await;
        assert_eq!(status, 400, "{query}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().starts_with(field),
            "{query}: {v}"
        );
    }
    let (status, _) = get(&format!("{}/v1/sessions", c.edge(0).http()), None).await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_session_reaches_each_client_at_its_pace_and_loses_nothing() {
    let c = start("ops-pace");
    let body = json!({"agent":"mock","input":{"tokens":200,"rate":0,"seed":3},"pace":20});
    let s = create_with_key(c.edge(0), body, Some(KEY)).await;
    assert_eq!(state(c.edge(1), &s).await["pace"], 20);
    // The producer is not slowed: the log is complete long before delivery.
    wait_ended(c.edge(0), &s, Duration::from_secs(10)).await;
    let read_paced = |edge: usize| {
        let (base, id, token) = (c.edge(edge).ws(), s.id.clone(), s.token.clone());
        async move {
            let url = format!("{base}/v1/sessions/{id}/ws?token={token}&after=0");
            let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            let mut events = Vec::new();
            while let Some(Ok(m)) = ws.next().await {
                let Message::Text(t) = m else { break };
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "events" {
                    let batch = v["events"].as_array().unwrap();
                    assert_eq!(batch.len(), 1, "a paced frame held {} events", batch.len());
                    events.extend(batch.iter().cloned());
                }
            }
            events
        }
    };
    // Both edges pace the clients (one event a frame although the whole
    // session is in the log); the spacing itself is checked on tokio's
    // paused clock (subscription.rs), not against this machine's wall clock.
    let (a, b) = tokio::join!(read_paced(0), read_paced(1));
    for events in [a, b] {
        assert_complete(&events, "completed");
        assert_eq!(events.len(), 201);
    }
    let (status, v) = post(
        &format!("{}/v1/sessions", c.edge(0).http()),
        Some(KEY),
        json!({"agent":"mock","pace":100_000}),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("pace"),
        "{v}"
    );
}
