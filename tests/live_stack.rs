//! Every dashboard and alert query on a live stack: a real Prometheus
//! scrapes a running edge and producer while sessions stream; every
//! expression answers, the alerts stay quiet while the stack is healthy and
//! fire when a node, NATS or Redis goes away. The main overview panels are
//! drawn from it (`tests/common/chart.rs`).
//!
//! Needs Debian's `prometheus` package; without it the test fails, it does
//! not skip. With `WEIR_DASHBOARD_PNG=<path>` it also renders the overview
//! panels to a PNG (headless Chromium), e.g.
//! `WEIR_DASHBOARD_PNG=docs/dashboard.png`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::chart::{render_overview, screenshot};
use common::files::*;
use common::metrics::*;
use common::prometheus::*;
use common::queries::*;
use common::*;
use futures::StreamExt;
use serde_json::Value;

const MINUTE: Duration = Duration::from_secs(60);

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Base names of the `weir_*` metrics a `/metrics` page shows, with the
/// value of each unlabelled one.
fn exported(page: &str, cat: &BTreeMap<String, Kind>) -> BTreeMap<String, Option<f64>> {
    let mut out = BTreeMap::new();
    for line in page.lines().filter(|l| l.starts_with("weir_")) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let name = series.split('{').next().unwrap();
        let (base, _, _) = resolve(name, cat)
            .unwrap_or_else(|| panic!("/metrics shows {name}, which names.rs does not define"));
        // Counters and gauges: the sum over their label sets.
        let entry = out.entry(base.clone()).or_insert(None);
        if name == base {
            let v: f64 = value.parse().unwrap();
            *entry = Some(entry.unwrap_or(0.0) + v);
        }
    }
    out
}

/// Sessions over WebSocket (waves of three, 1.5 s apart, one client resuming
/// mid-stream, one late joiner catching up from the log), one over SSE and
/// a refused token. Returns the events the WebSocket clients received.
async fn stream_sessions(edge: &Node, waves: u64) -> u64 {
    let waves = (0..waves).map(|w| async move {
        tokio::time::sleep(Duration::from_millis(1500 * w)).await;
        let sessions =
            futures::future::join_all((0..3).map(|i| create_mock(edge, 300, 200.0, w * 10 + i)))
                .await;
        let counts = futures::future::join_all(sessions.iter().map(|s| async move {
            let mut ws = ws_connect(edge, &s.id, &s.token, 0).await;
            let got = read(&mut ws, Stop::Close, MINUTE).await;
            assert_eq!(got.close, Some(1000));
            assert_complete(&got.events, "completed");
            got.events.len() as u64
        }))
        .await;
        counts.into_iter().sum::<u64>()
    });
    let resume = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let s = create_mock(edge, 300, 200.0, 100).await;
        let mut ws = ws_connect(edge, &s.id, &s.token, 0).await;
        let first = read(&mut ws, Stop::After(50), MINUTE).await;
        drop(ws);
        let mut ws = ws_connect(edge, &s.id, &s.token, first.last_seq()).await;
        let rest = read(&mut ws, Stop::Close, MINUTE).await;
        assert_eq!(rest.close, Some(1000));
        let all: Vec<Value> = first.events.into_iter().chain(rest.events).collect();
        assert_complete(&all, "completed");
        all.len() as u64
    };
    let sse = async {
        tokio::time::sleep(Duration::from_millis(2000)).await;
        let s = create_mock(edge, 300, 200.0, 200).await;
        let url = format!(
            "{}/v1/sessions/{}/events?token={}",
            edge.http(),
            s.id,
            s.token
        );
        let r = http().get(url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let mut body = String::new();
        let mut stream = r.bytes_stream();
        while let Some(chunk) = stream.next().await {
            body.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        }
        assert_eq!(body.lines().filter(|l| l.starts_with("id: ")).count(), 301);
    };
    let refused = async {
        let s = create_mock(edge, 5, 0.0, 300).await;
        let mut ws = ws_connect(edge, &s.id, "not-a-token", 0).await;
        let got = read(&mut ws, Stop::Close, MINUTE).await;
        assert_eq!(got.close, Some(4001));
        assert!(got.events.is_empty());
    };
    let late = async {
        // Joins a finished session: catches up from the log through a
        // buffer of 8, so it hits the high watermark and gets coalesced frames.
        let s = create_mock(edge, 10, 0.0, 400).await;
        wait_ended(edge, &s, MINUTE).await;
        let mut ws = ws_connect(edge, &s.id, &s.token, 0).await;
        let got = read(&mut ws, Stop::Close, MINUTE).await;
        assert_complete(&got.events, "completed");
        assert!(
            got.frames < got.events.len(),
            "{} frames for {} events",
            got.frames,
            got.events.len()
        );
        got.events.len() as u64
    };
    let (waves, resume, (), (), late) =
        tokio::join!(futures::future::join_all(waves), resume, sse, refused, late);
    waves.iter().sum::<u64>() + resume + late
}

/// Alerts on latency, which a loaded test machine can exceed while healthy.
const LOAD_DEPENDENT: [&str; 1] = ["WeirDeliveryLatencyHigh"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_and_alert_query_answers_on_a_live_stack() {
    use weir_telemetry::names;
    let began = Instant::now();
    let cat = catalogue();
    let exprs = all_exprs();
    tool(PROMETHEUS);
    // A small per-connection buffer, so that a client catching up from the
    // log hits the watermarks.
    let mut c = Cluster::start_with("observability", 1, 1, &["--conn-buffer", "8"], &[]);
    let edge = format!("127.0.0.1:{}", c.edge(0).port);
    let producer = format!("127.0.0.1:{}", c.producers[0].port);
    // A producer that is down: nothing listens there.
    let dead = format!("127.0.0.1:{}", free_port());
    let prom = Prometheus::start(
        &c.dir,
        &scrape_config(
            std::slice::from_ref(&edge),
            &[producer.clone(), dead.clone()],
        ),
    )
    .await;
    let live = format!("{edge}|{producer}");
    prom.wait_for(
        "first scrapes",
        &format!("sum(up{{instance=~\"{live}\"}}) == 2"),
        Duration::from_secs(20),
    )
    .await;

    // Three waves; more when drawing the picture, for a longer time line.
    let render = std::env::var("WEIR_DASHBOARD_PNG").ok();
    let waves = if render.is_some() { 12 } else { 3 };
    let from = now_secs();
    let ws_events = stream_sessions(c.edge(0), waves).await;
    let traffic_end = now_secs();

    // What the processes export now, and Prometheus has scraped since.
    let edge_page = exported(&metrics_page(c.edge(0)).await, &cat);
    let producer_page = exported(&metrics_page(&c.producers[0]).await, &cat);
    let snapshot = now_secs();
    prom.wait_for(
        "scrapes after the traffic",
        &format!("min(timestamp(up{{instance=~\"{live}\"}})) > {snapshot:.3}"),
        Duration::from_secs(10),
    )
    .await;

    // Every event a WebSocket client got is counted, and Prometheus agrees.
    let delivered = edge_page[names::EVENTS_DELIVERED].unwrap();
    assert!(
        delivered >= ws_events as f64,
        "edge counts {delivered} events delivered, WebSocket clients got {ws_events}"
    );
    let scraped = prom
        .query(&format!("sum({})", names::EVENTS_DELIVERED))
        .await
        .unwrap();
    assert_eq!(scraped[0].value, delivered);

    // The activity of this test shows in the metrics it should.
    let present: BTreeSet<String> = edge_page
        .keys()
        .chain(producer_page.keys())
        .cloned()
        .collect();
    let happened = [
        names::CONNECTIONS_OPEN,
        names::CONNECTIONS_ACCEPTED,
        names::SESSIONS_SUBSCRIBED,
        names::EVENTS_DELIVERED,
        names::FRAMES_SENT,
        names::EVENTS_PER_FRAME,
        names::BYTES_SENT,
        names::DELIVERY_LATENCY,
        names::BUFFER_FILL,
        names::BACKPRESSURE_PAUSES,
        names::LOG_READS,
        names::RESUMES,
        names::CLOSES,
        names::AUTH_FAILURES,
        names::HTTP_REQUESTS,
        names::SESSIONS_CREATED,
        names::RUNS,
        names::RUNS_ACTIVE,
        names::EVENTS_PUBLISHED,
        names::PUBLISH_LATENCY,
        names::EVENTS_PER_PUBLISH,
        names::TIME_TO_FIRST_TOKEN,
    ];
    let missing: Vec<&str> = happened
        .iter()
        .filter(|n| !present.contains(**n))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "not exported after the traffic: {missing:?}"
    );

    // Every expression answers; those whose metrics exist answer with
    // numbers; alerts are quiet except for the dead producer.
    let mut problems = Vec::new();
    let mut absent = Vec::new();
    let mut answered = 0;
    for e in &exprs {
        let q = e
            .expr
            .replace("$__rate_interval", "1m")
            .replace("${instance}", &live)
            .replace("$instance", &live);
        assert!(
            !q.contains('$'),
            "{}: unknown template variable in {q}",
            e.at
        );
        let got = match prom.query(&q).await {
            Ok(got) => got,
            Err(err) => {
                problems.push(format!("{}: {err}\n    {q}", e.at));
                continue;
            }
        };
        let needed = needs(&e.expr, &cat);
        let exists = needed.iter().all(|n| present.contains(n));
        if !got.is_empty() {
            answered += 1;
        }
        match &e.origin {
            Origin::Panel if exists => {
                if got.is_empty() {
                    problems.push(format!("{}: no answer\n    {q}", e.at));
                }
                for s in &got {
                    if !(s.value.is_finite() && s.value >= 0.0) {
                        problems.push(format!("{}: {} for {:?}\n    {q}", e.at, s.value, s.labels));
                    }
                }
            }
            Origin::Panel => {
                if !got.is_empty() {
                    problems.push(format!("{}: answers without its metrics: {got:?}", e.at));
                }
                let gone: Vec<&String> = needed.difference(&present).collect();
                absent.push(format!("{} (no {gone:?} yet)", e.at));
            }
            Origin::Variable(label) => {
                let values: BTreeSet<&str> = got
                    .iter()
                    .filter_map(|s| s.labels.get(label).map(String::as_str))
                    .collect();
                if !values.contains(edge.as_str()) || !values.contains(producer.as_str()) {
                    problems.push(format!("{}: {label} values {values:?}", e.at));
                }
            }
            Origin::Alert(name) if name == "WeirTargetDown" => {
                let down: Vec<&str> = got.iter().map(|s| s.labels["instance"].as_str()).collect();
                if down != [dead.as_str()] {
                    problems.push(format!("{}: down {down:?}, expected [{dead}]", e.at));
                }
            }
            Origin::Alert(name) if LOAD_DEPENDENT.contains(&name.as_str()) => {
                // Whether it fires depends on how busy this machine is (a
                // debug build on 2 shared cores); its measure must be live.
                let (measure, _) = q.rsplit_once('>').unwrap();
                let m = prom.query(measure).await.unwrap();
                if m.len() != 1 || !m[0].value.is_finite() {
                    problems.push(format!("{}: measure {measure} = {m:?}", e.at));
                }
                eprintln!("{}: {} = {:?}", e.at, measure.trim(), m[0].value);
            }
            Origin::Alert(_) => {
                if !got.is_empty() {
                    problems.push(format!("{}: fires on a healthy stack: {got:?}", e.at));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    eprintln!(
        "{} expressions evaluated, {answered} answered; empty because nothing made their metrics:\n  {}",
        exprs.len(),
        absent.join("\n  ")
    );

    // Prometheus evaluates every rule without error; only the dead target alerts.
    let deadline = Instant::now() + Duration::from_secs(10);
    let rules = loop {
        let data = prom.api("/api/v1/rules", &[]).await.unwrap();
        let rules: Vec<Value> = data["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap().clone())
            .collect();
        if rules.iter().all(|r| r["health"] != "unknown") || Instant::now() > deadline {
            break rules;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let alerts = exprs
        .iter()
        .filter(|e| matches!(e.origin, Origin::Alert(_)));
    assert_eq!(rules.len(), alerts.count());
    for r in &rules {
        assert_eq!(r["health"], "ok", "rule {}: {}", r["name"], r["lastError"]);
    }
    let active = prom.api("/api/v1/alerts", &[]).await.unwrap();
    let active: Vec<(String, String)> = active["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["labels"]["alertname"].as_str().unwrap().to_owned(),
                a["labels"]["instance"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let active: Vec<_> = active
        .into_iter()
        .filter(|(name, _)| !LOAD_DEPENDENT.contains(&name.as_str()))
        .collect();
    assert_eq!(active, [("WeirTargetDown".to_owned(), dead.clone())]);

    let svg = render_overview(&prom, from, traffic_end + 2.0).await;
    let svg_path = c.dir.join("dashboard.svg");
    std::fs::write(&svg_path, &svg.0).unwrap();
    if let Some(png) = render {
        screenshot(&svg_path, &root().join(png), svg.1, svg.2);
    }

    let alert = |name: &str| {
        exprs
            .iter()
            .find(|e| matches!(&e.origin, Origin::Alert(n) if n == name))
            .unwrap_or_else(|| panic!("alerts.yml has no {name}"))
            .expr
            .clone()
    };
    let instances = |got: Vec<Sample>| -> BTreeSet<String> {
        got.iter().map(|s| s.labels["instance"].clone()).collect()
    };
    // NATS dies while a session streams: the producer's publishes fail and
    // are retried, both nodes count the disconnect, and the alerts fire.
    let s = create_mock(c.edge(0), 100_000, 100.0, 500).await;
    let mut ws = ws_connect(c.edge(0), &s.id, &s.token, 0).await;
    read(&mut ws, Stop::After(5), MINUTE).await;
    let t = Instant::now();
    c.nats.proc.kill9();
    let (bus_errors, bus_disconnects) = (alert("WeirBusErrors"), alert("WeirBusDisconnects"));
    let both_disconnected = format!("count({bus_disconnects}) == 2");
    let (errors, disconnects) = tokio::join!(
        prom.wait_for(
            "WeirBusErrors after NATS died",
            &bus_errors,
            Duration::from_secs(30),
        ),
        prom.wait_for(
            "WeirBusDisconnects after NATS died",
            &both_disconnected,
            Duration::from_secs(15),
        ),
    );
    assert!(instances(errors).contains(&producer));
    assert_eq!(
        prom.query(&bus_disconnects).await.map(instances).unwrap(),
        BTreeSet::from([edge.clone(), producer.clone()]),
        "{disconnects:?}"
    );
    let nats_secs = t.elapsed().as_secs_f64();
    // Redis dies too: store operations fail and the store alert fires.
    let t = Instant::now();
    c.redis.proc.kill9();
    prom.wait_for(
        "WeirStoreErrors after Redis died",
        &alert("WeirStoreErrors"),
        Duration::from_secs(20),
    )
    .await;
    let redis_secs = t.elapsed().as_secs_f64();
    drop(ws);
    // Nodes without their bus and store still report.
    let up = prom
        .query(&format!("up{{instance=~\"{live}\"}} == 1"))
        .await
        .unwrap();
    assert_eq!(up.len(), 2, "{up:?}");
    eprintln!(
        "observability: live test took {:.1} s (bus alerts {nats_secs:.1} s after NATS died, \
         store alert {redis_secs:.1} s after Redis died); dashboard drawn in {}",
        began.elapsed().as_secs_f64(),
        svg_path.display()
    );
}
