//! Hostile clients against one edge: one that never completes its request
//! headers (slowloris) and ones that stop reading while their session streams
//! at full speed. Each is closed by its limit, the edge's memory stays within
//! what its per-connection bounds allow, and every other client is served
//! exactly.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MINUTE: Duration = Duration::from_secs(60);

/// Waits until `name` on `edge` is at least `want`.
async fn wait_metric(edge: &Node, name: &str, want: f64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = metric_sum(edge, name).await;
        if got >= want {
            return;
        }
        assert!(Instant::now() < deadline, "{name} stayed at {got}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Everything the server sends until it closes the socket.
async fn read_to_eof(mut tcp: TcpStream, within: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    tokio::time::timeout(within, tcp.read_to_end(&mut got))
        .await
        .expect("the edge did not close the connection")
        .map(|_| got)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_closed_and_others_are_served() {
    let c = Cluster::start_with("slowloris", 1, 1, &["--header-timeout", "500ms"], &[]);
    let edge = c.edge(0);
    let addr = format!("127.0.0.1:{}", edge.port);
    let mut half = TcpStream::connect(&addr).await.unwrap();
    half.write_all(b"GET /healthz HT").await.unwrap();
    let silent = TcpStream::connect(&addr).await.unwrap();

    // Meanwhile a session that streams for longer than the header timeout,
    // over WebSocket and SSE: the timeout is for headers, not responses.
    let s = create_mock(edge, 60, 30.0, 7).await;
    let mut ws = ws_connect(edge, &s.id, &s.token, 0).await;
    let sse_url = format!(
        "{}/v1/sessions/{}/events?token={}",
        edge.http(),
        s.id,
        s.token
    );
    let sse = async { http().get(sse_url).send().await.unwrap().text().await };
    let (got, sse, half, silent) = tokio::join!(
        read(&mut ws, Stop::Close, MINUTE),
        sse,
        read_to_eof(half, Duration::from_secs(10)),
        read_to_eof(silent, Duration::from_secs(10)),
    );
    assert!(half.is_empty(), "{}", String::from_utf8_lossy(&half));
    assert!(silent.is_empty());
    assert_eq!(got.close, Some(1000));
    assert_eq!(got.events.len(), 61);
    assert_complete(&got.events, "completed");
    assert_eq!(sse.unwrap().matches("\nevent: ").count() + 1, 61 + 1);
    assert_eq!(
        metric_sum(edge, "weir_edge_header_timeouts_total").await,
        2.0
    );
    let r = http()
        .get(format!("{}/healthz", edge.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_header_timeout_is_refused_at_start() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["edge", "--secret", SECRET, "--header-timeout", "0s"])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--header-timeout"), "{stderr}");
}

// Never-reading clients: the edge's settings, so the memory bound below is
// computed from the same numbers.
const CONN_BUFFER: u64 = 256;
const MAX_FRAME_EVENTS: u64 = 256;
const SESSION_RING: u64 = 1024;
const LOG_CACHE: u64 = 4 << 20;
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// The edge's socket write margin past the write timeout (serve.rs).
const WRITE_MARGIN: Duration = Duration::from_secs(1);
const TOKENS: u64 = 300_000;
/// Most bytes of JSON of one mock event here (checked below).
const EVENT_JSON: u64 = 120;
/// An event's struct besides its JSON, and a bus message of a batch.
const EVENT_STRUCT: u64 = 48;
const MESSAGE: u64 = 256 * EVENT_JSON;
/// One connection: its buffer of events (structs, and at most two bus
/// messages their bytes point into), the frame being encoded, the one in
/// flight and the socket's write buffer (each up to a frame of JSON), and an
/// idle connection's cost (BENCHMARKS.md: 15–26 KiB); half as much again
/// for the allocator's slack, as in tests/fanout.rs.
const PER_CONNECTION: u64 =
    (CONN_BUFFER * EVENT_STRUCT + 2 * MESSAGE + 3 * MAX_FRAME_EVENTS * EVENT_JSON + 26 * 1024) * 3
        / 2;
/// The session: its ring (events and the bus messages behind them) and its
/// page cache, shared by all its clients.
const SESSION: u64 = SESSION_RING * (EVENT_STRUCT + EVENT_JSON) * 3 / 2 + 2 * MESSAGE + LOG_CACHE;

/// Opens the SSE stream over a raw socket and reads its first bytes.
async fn sse_then_stall(edge: &Node, s: &Session) -> (TcpStream, Vec<u8>) {
    let mut tcp = TcpStream::connect(("127.0.0.1", edge.port)).await.unwrap();
    let req = format!(
        "GET /v1/sessions/{}/events?token={} HTTP/1.1\r\nHost: edge\r\n\r\n",
        s.id, s.token
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut got = vec![0; 4096];
    let n = tcp.read(&mut got).await.unwrap();
    got.truncate(n);
    (tcp, got)
}

/// Seqs of the complete `id:` lines of a raw SSE response, in order.
fn sse_seqs(raw: &[u8]) -> Vec<u64> {
    let text = String::from_utf8_lossy(raw);
    let complete = &text[..text.rfind("\n\n").unwrap_or(0)];
    complete
        .lines()
        .filter_map(|l| l.strip_prefix("id: ")?.parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_stop_reading_are_cut_off_with_bounded_memory_and_others_get_everything() {
    let (buffer, frame, ring, cache) = (
        CONN_BUFFER.to_string(),
        MAX_FRAME_EVENTS.to_string(),
        SESSION_RING.to_string(),
        LOG_CACHE.to_string(),
    );
    let args = [
        ["--write-timeout", "2s"],
        ["--conn-buffer", &buffer],
        ["--max-frame-events", &frame],
        ["--session-ring", &ring],
        ["--log-cache", &cache],
    ]
    .concat();
    let c = Cluster::start_with("never-reading", 1, 1, &args, &[]);
    let edge = c.edge(0);
    // The same session read to its end first, so that the baseline has the
    // runtime, a session's ring and cache, and a reader at full speed warm:
    // what the stalled clients add is what is measured. The baseline is the
    // peak of that run, not the RSS after it: an allocator that hands freed
    // pages back (jemalloc) would otherwise be charged for the second
    // session's ring, cache and reader, which glibc keeps from the first.
    let warm = create_mock(edge, TOKENS, 0.0, 1).await;
    let (events, _) = read_all_resuming(&[edge], &warm, MINUTE).await;
    assert_eq!(events.len() as u64, TOKENS + 1);
    let widest = history(edge, &warm)
        .await
        .iter()
        .map(|e| e.to_string().len())
        .max();
    assert!(
        widest.unwrap() as u64 <= EVENT_JSON,
        "mock events are {widest:?} bytes"
    );
    let baseline = edge.proc.peak_rss_kib();

    let s = create_mock(edge, TOKENS, 0.0, 2).await;
    let mut stalled_ws = ws_connect(edge, &s.id, &s.token, 0).await;
    let first_ws = read(&mut stalled_ws, Stop::After(100), MINUTE).await;
    let (stalled_sse, first_sse) = sse_then_stall(edge, &s).await;
    let (bases, id, token) = ([edge.ws()], s.id.clone(), s.token.clone());
    let reader = tokio::spawn(async move {
        read_resuming_at(&bases, &id, &token, 0, Duration::from_secs(300)).await
    });

    // Both stalled clients are cut off: 4008 for the WebSocket (counted; the
    // frame itself cannot reach a full socket), a failed write for SSE.
    tokio::time::sleep(WRITE_TIMEOUT * 2 + WRITE_MARGIN).await;
    wait_metric(
        edge,
        "weir_edge_slow_consumer_disconnects_total",
        1.0,
        MINUTE,
    )
    .await;
    wait_metric(edge, "weir_edge_write_stalls_total", 1.0, MINUTE).await;
    let peak = edge.proc.peak_rss_kib();
    let during = state(edge, &s).await["last_seq"].as_u64().unwrap();

    // What the sockets still held, then their end: no `end` event.
    let tail = read(&mut stalled_ws, Stop::Close, MINUTE).await;
    assert_ne!(
        tail.close,
        Some(1000),
        "the stalled WebSocket was not cut off"
    );
    let ws_seqs: Vec<u64> = first_ws.seqs().into_iter().chain(tail.seqs()).collect();
    assert_eq!(ws_seqs, (1..=ws_seqs.len() as u64).collect::<Vec<_>>());
    let mut raw = first_sse;
    raw.extend(read_to_eof(stalled_sse, MINUTE).await);
    let sse_seqs = sse_seqs(&raw);
    assert_eq!(sse_seqs, (1..=sse_seqs.len() as u64).collect::<Vec<_>>());
    assert!((sse_seqs.len() as u64) < TOKENS && (ws_seqs.len() as u64) < TOKENS);

    // Everyone else got everything, and the stalled ones resume exactly.
    let (events, _) = reader.await.unwrap();
    assert_eq!(events.len() as u64, TOKENS + 1);
    assert_complete(&events, "completed");
    for held in [ws_seqs.len() as u64, sse_seqs.len() as u64] {
        let (rest, _) = read_resuming_from(&[edge], &s, held, Duration::from_secs(300)).await;
        assert_eq!(rest.len() as u64, TOKENS + 1 - held);
        assert_eq!(rest[0]["seq"].as_u64(), Some(held + 1));
        assert_eq!(rest.last(), events.last());
    }

    let growth = peak.saturating_sub(baseline);
    // Twice the configured bounds: the allocator's slack under load, and the
    // live feed's subscription queue, which no edge flag bounds (async-nats's
    // default capacity). Runs grew 0–1.1 MiB under glibc and 0–2.6 MiB under
    // jemalloc; an edge given `--conn-buffer 300000` (buffering the backlog)
    // grew 16–30 MiB and failed here.
    let bound = 2 * (SESSION + 3 * PER_CONNECTION) / 1024;
    let backlog = (TOKENS - ws_seqs.len() as u64) * EVENT_JSON / 1024;
    assert!(
        bound * 2 < backlog,
        "the bound ({bound} KiB) cannot tell a backlog ({backlog} KiB)"
    );
    eprintln!(
        "never-reading: edge RSS {baseline} → {peak} KiB (+{growth} KiB, bound {bound} KiB); \
         producer at seq {during} of {TOKENS} when both were cut off; WS held {}, SSE {}",
        ws_seqs.len(),
        sse_seqs.len()
    );
    assert!(
        during > ws_seqs.len() as u64 + 10_000,
        "the producer was not far ahead"
    );
    assert!(
        growth < bound,
        "edge RSS grew by {growth} KiB, over the session's and connections' bounds ({bound} KiB)"
    );
}
