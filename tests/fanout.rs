//! Fan-out from the log in bounded memory: 500 subscribers of one 20,000-event
//! session join at staggered cursors (all behind the ring, so all fed from the
//! log), on one edge with real NATS. Every subscriber must get exactly the
//! log's events after its cursor, in order, and the edge's RSS must grow by
//! no more than the session's page and frame caches (`--log-cache`,
//! `--frame-cache`) plus the connections' own buffers: subscribers share the
//! pages they read and the frames built from them instead of each holding
//! its own copy.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use weir_bus::{BusConfig, Fence};
use weir_protocol::{EndReason, Event, RawEvent, SessionId};

const EVENTS: u64 = 20_000;
const SUBSCRIBERS: u64 = 500;
const LOG_CACHE: u64 = 2 << 20;
const CONN_BUFFER: u64 = 256;
/// Bytes of JSON of one event here (< 100) and of one bus message (256 events).
const EVENT_JSON: u64 = 100;
const MESSAGE: u64 = 256 * EVENT_JSON;
/// Most bytes of event JSON in one frame (`--max-frame-bytes`).
const FRAME_BYTES: u64 = 16 << 10;
/// What one connection may hold besides the shared caches, whatever its
/// cursor and however long the session: its buffer of `CONN_BUFFER` events
/// as batches of shared blocks (32 bytes a batch, at worst one per event)
/// and the blocks those pin once evicted from the cache (at most two bus
/// messages' bytes and two pages' event structs), the frame in flight (at
/// most `FRAME_BYTES`; the socket keeps no copy of it: the edge writes a
/// shared frame's bytes as they are), and an idle connection's cost
/// (BENCHMARKS.md: 8–26 KiB over the rounds); half as much again for the
/// allocator's slack. The frame cache (`--frame-cache`) is counted with the
/// log cache. Measured (debug build): +19 MiB (+26 MiB while tungstenite
/// kept a write buffer per connection), against +91 to +99 MiB
/// before frames and batches were shared and histogram samples were folded
/// every 250 ms. Before pages were shared, each log-fed subscriber held up to
/// the whole session (~3 MiB here).
const PER_CONNECTION: u64 =
    (CONN_BUFFER * 32 + 2 * MESSAGE + 2 * 256 * 48 + FRAME_BYTES + 26 * 1024) * 3 / 2;
const FRAME_CACHE: u64 = 1 << 20;

fn event(seq: u64) -> RawEvent {
    if seq > EVENTS {
        return Event::end(seq, EndReason::Completed, None).to_raw();
    }
    Event::new(
        seq,
        "token",
        Some("mock"),
        json!({ "text": format!("t{seq}") }),
    )
    .to_raw()
}

/// Publishes the whole session as an outside producer, in batches of 256
/// events per message (as producers do).
async fn publish(nats_url: String, id: &str) {
    let bus = weir_bus::Bus::nats(&[nats_url], "fanout-test", BusConfig::default())
        .await
        .expect("bus");
    let session = SessionId::parse(id).expect("session id");
    let mut fence = Fence(0);
    let mut seq = 1;
    while seq <= EVENTS + 1 {
        let batch: Vec<RawEvent> = (seq..=(seq + 255).min(EVENTS + 1)).map(event).collect();
        seq += batch.len() as u64;
        fence = bus.log.append(&session, &batch, fence).await.unwrap().fence;
    }
}

#[derive(serde::Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    events: Vec<Ev>,
}

#[derive(serde::Deserialize)]
struct Ev {
    seq: u64,
    kind: String,
    #[serde(default)]
    data: serde_json::Value,
}

/// Reads the session from `after` to its end and checks every event
/// against what was published.
async fn subscriber(edge: String, id: String, token: String, after: u64) {
    let url = format!("{edge}/v1/sessions/{id}/ws?token={token}&after={after}");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
    let mut next = after + 1;
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(t) = msg else { continue };
        let frame: Frame = serde_json::from_str(&t).expect("JSON frame");
        if frame.kind != "events" {
            continue;
        }
        for ev in frame.events {
            assert_eq!(ev.seq, next, "subscriber from {after}: seq out of order");
            if next > EVENTS {
                assert_eq!(ev.kind, "end");
            } else {
                assert_eq!(
                    (ev.kind.as_str(), &ev.data["text"]),
                    ("token", &json!(format!("t{next}")))
                );
            }
            next += 1;
        }
    }
    assert_eq!(next, EVENTS + 2, "subscriber from {after} stopped early");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_subscribers_behind_the_ring_share_one_bounded_cache() {
    let cache = LOG_CACHE.to_string();
    let buffer = CONN_BUFFER.to_string();
    let (frame_bytes, frame_cache) = (FRAME_BYTES.to_string(), FRAME_CACHE.to_string());
    let args = [
        "--log-cache",
        &cache,
        "--frame-cache",
        &frame_cache,
        "--max-frame-bytes",
        &frame_bytes,
        "--conn-buffer",
        &buffer,
        "--session-ring",
        "1024",
    ];
    let c = Cluster::start_with("fanout", 1, 0, &args, &[]);
    let edge = c.edge(0);
    let s = create(edge, json!({"agent": "external"})).await;
    publish(c.nats.url(), &s.id).await;

    // Idle: the session published, nobody reading it yet.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = edge.proc.rss_kib();
    let peak = Arc::new(AtomicU64::new(idle));
    let pid = edge.proc.pid();
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                let rss = rss_kib_of(pid);
                peak.fetch_max(rss, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    let started = std::time::Instant::now();
    let mut clients = Vec::new();
    for i in 0..SUBSCRIBERS {
        let after = i * (EVENTS / SUBSCRIBERS); // 0, 40, 80, …, 19,960
        let task = subscriber(edge.ws(), s.id.clone(), s.token.clone(), after);
        clients.push(tokio::spawn(task));
    }
    for c in clients {
        tokio::time::timeout(Duration::from_secs(90), c)
            .await
            .expect("every subscriber reaches `end`")
            .expect("every subscriber is exact");
    }
    sampler.abort();
    let peak = peak.load(Ordering::Relaxed).max(edge.proc.rss_kib());
    let growth = peak.saturating_sub(idle);
    let bound = (LOG_CACHE + FRAME_CACHE + SUBSCRIBERS * PER_CONNECTION) / 1024;
    eprintln!(
        "fanout: {SUBSCRIBERS} subscribers exact in {:.1?}; edge RSS {idle} → {peak} KiB \
         (+{growth} KiB, bound {bound} KiB)",
        started.elapsed()
    );
    assert!(
        growth < bound,
        "edge RSS grew by {growth} KiB, over the cache bound plus connection buffers ({bound} KiB)"
    );
}

fn rss_kib_of(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A log reader's pulls are bounded in bytes; a message larger than the
/// bound alone (a batch of big events) is still read, by itself, between
/// small ones, and a reader started inside the log finds its place.
#[tokio::test]
async fn a_message_over_the_pull_byte_bound_is_read_alone() {
    let dir = scratch("fanout-big");
    let nats = Nats::start(&dir);
    let bus = weir_bus::Bus::nats(&[nats.url()], "fanout-big", BusConfig::default())
        .await
        .expect("bus");
    let session = SessionId::parse("fanout-big-1").expect("session id");
    let big = "x".repeat(2048);
    let ev = |seq: u64, text: &str| {
        Event::new(
            seq,
            "token",
            None,
            json!({ "text": format!("{seq}{text}") }),
        )
        .to_raw()
    };
    // 1..=10 small, 11..=110 in one ~200 KiB message, 111..=120 small.
    let mut fence = Fence(0);
    let batches: Vec<Vec<RawEvent>> = vec![
        (1..=10).map(|s| ev(s, "")).collect(),
        (11..=110).map(|s| ev(s, &big)).collect(),
        (111..=120).map(|s| ev(s, "")).collect(),
    ];
    for b in &batches {
        fence = bus.log.append(&session, b, fence).await.unwrap().fence;
    }
    for after in [0, 5, 10, 50, 110] {
        let mut reader = bus.log.reader(&session, after).await.unwrap();
        let mut got = Vec::new();
        loop {
            let page = reader.next_page(256).await.unwrap();
            if page.is_empty() {
                break;
            }
            got.extend(page.iter().map(|e| e.seq));
        }
        assert_eq!(got, (after + 1..=120).collect::<Vec<_>>(), "from {after}");
    }
}
