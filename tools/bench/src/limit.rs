//! `weir-bench limit`: what this machine's NATS can do with weir's event
//! size, measured the way weir uses it, so that weir's numbers can be
//! quoted as ratios of the same box's raw limits:
//!
//! - core NATS pub → sub at full speed (events/s, loss) and paced at a
//!   steady rate (latency from the event's `ts`, as weir's clients measure);
//! - JetStream publish to a file stream like `WEIR_EVENTS`, one event per
//!   message and batches, with a window of publishes awaiting acks;
//! - JetStream paced like weir's steady load (one event per message over
//!   many subjects, each subject's next publish after its ack): latency
//!   from `ts` to the stream's republish reaching a core subscriber. That is
//!   the floor of weir's live path: an edge delivers what the stream stored
//!   and republished, never earlier. Its publishes carry weir's headers
//!   (message id, last seq, the subject-sequence fence), so the server does
//!   the work it does for weir's producers.
//!
//! With `--watch name=pid` (the nats-server) each row also gives the CPU
//! time every watched process, and the tool itself, spent per event: what
//! the thinnest publisher and subscriber cost next to what weir's cost.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::external::event_json;
use super::procinfo::{CpuWindow, Watched};
use super::stats::{histogram, Percentiles};

#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// NATS server(s) with JetStream, comma-separated.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Events per second of the paced latency run.
    #[arg(long, default_value_t = 10_000.0)]
    pub paced_rate: f64,
    /// Events per JetStream message in the batched run.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// JetStream publishes awaiting their ack at once.
    #[arg(long, default_value_t = 256)]
    pub in_flight: usize,
    /// Subjects (sessions) of the paced JetStream run; 0 skips it.
    #[arg(long, default_value_t = 200)]
    pub subjects: usize,
    /// A process whose CPU time per event each row reports (`name=pid`,
    /// repeatable); the tool's own is always reported.
    #[arg(long = "watch")]
    pub watch: Vec<Watched>,
    /// Print the rows as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl LimitArgs {
    /// The flags' defaults.
    pub fn defaults() -> LimitArgs {
        LimitArgs {
            nats_url: "nats://127.0.0.1:4222".into(),
            seconds: 3.0,
            paced_rate: 10_000.0,
            batch: 256,
            in_flight: 256,
            subjects: 200,
            watch: Vec::new(),
            json: false,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LimitRow {
    pub what: String,
    pub events_per_s: f64,
    pub msgs_per_s: f64,
    pub mb_per_s: f64,
    /// Events published but not received (core NATS drops slow subscribers).
    pub lost: u64,
    pub latency_ms: Option<Percentiles>,
    /// CPU time per event received (published, where nothing is received)
    /// of each watched process and of the tool, in µs.
    #[serde(default)]
    pub cpu_us_per_event: Vec<ProcessCpu>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProcessCpu {
    pub name: String,
    pub us: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LimitReport {
    pub event_bytes: usize,
    pub rows: Vec<LimitRow>,
}

impl LimitReport {
    pub fn row(&self, prefix: &str) -> Option<&LimitRow> {
        self.rows.iter().find(|r| r.what.starts_with(prefix))
    }
}

pub async fn run(a: &LimitArgs) -> anyhow::Result<LimitReport> {
    let connect = || async {
        async_nats::ConnectOptions::new()
            .name("weir-bench-limit")
            .connect(super::external::nats_addrs(&a.nats_url)?)
            .await
            .with_context(|| format!("connect to {}", a.nats_url))
    };
    let (pubc, subc) = (connect().await?, connect().await?);
    let secs = Duration::from_secs_f64(a.seconds);
    let event_bytes = event_json(1, 1_000_000, u64::MAX).len();
    let w = &a.watch;
    let mut rows = vec![
        with_cpu(w, core(&pubc, &subc, secs, None)).await?,
        with_cpu(w, core(&pubc, &subc, secs, Some(a.paced_rate))).await?,
        with_cpu(w, jetstream(&pubc, secs, 1, a.in_flight)).await?,
        with_cpu(w, jetstream(&pubc, secs, a.batch, a.in_flight)).await?,
    ];
    if a.subjects > 0 {
        let row = republished(&pubc, &subc, secs, a.paced_rate, a.subjects);
        rows.push(with_cpu(w, row).await?);
    }
    Ok(LimitReport { event_bytes, rows })
}

/// Runs one measurement and adds the CPU time each watched process (and
/// the tool) spent on it per event.
async fn with_cpu(
    watched: &[Watched],
    row: impl std::future::Future<Output = anyhow::Result<(LimitRow, u64)>>,
) -> anyhow::Result<LimitRow> {
    let cpu = CpuWindow::start(watched);
    let (mut row, events) = row.await?;
    row.cpu_us_per_event = cpu
        .spent()
        .into_iter()
        .map(|(name, secs)| ProcessCpu {
            name,
            us: secs * 1e6 / events.max(1) as f64,
        })
        .collect();
    Ok(row)
}

#[derive(Deserialize)]
struct Ts {
    ts: f64,
}

/// Core pub → sub, full speed (`rate` None) or paced.
async fn core(
    pubc: &async_nats::Client,
    subc: &async_nats::Client,
    secs: Duration,
    rate: Option<f64>,
) -> anyhow::Result<(LimitRow, u64)> {
    let subject = format!("weir.bench.core.{}", rate.is_some());
    let sub = subc.subscribe(subject.clone()).await?;
    subc.flush().await?;
    let started = Instant::now();
    let reader = tokio::spawn(read_latency(sub, started));
    let mut sent = 0u64;
    let mut seq = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    while started.elapsed() < secs {
        let n = match rate {
            Some(r) => {
                tick.tick().await;
                let due = (started.elapsed().as_secs_f64() * r) as u64;
                due.saturating_sub(sent)
            }
            None => 256,
        };
        for _ in 0..n {
            seq += 1;
            pubc.publish(subject.clone(), Bytes::from(event_json(1, seq, u64::MAX)))
                .await?;
        }
        sent += n;
    }
    pubc.flush().await?;
    let got = reader.await?;
    let window = got.last.duration_since(started).as_secs_f64().max(1e-3);
    let row = LimitRow {
        what: match rate {
            None => "nats core pub→sub, full speed".into(),
            Some(r) => format!("nats core pub→sub, paced {r:.0}/s"),
        },
        events_per_s: got.count as f64 / window,
        msgs_per_s: got.count as f64 / window,
        mb_per_s: got.bytes as f64 / window / 1e6,
        lost: sent.saturating_sub(got.count),
        latency_ms: Some(Percentiles::of(&got.latency)),
        cpu_us_per_event: Vec::new(),
    };
    Ok((row, got.count))
}

/// What a subscriber received, with the latency from each event's `ts`.
struct Received {
    latency: hdrhistogram::Histogram<u64>,
    count: u64,
    bytes: u64,
    /// When the last message arrived.
    last: Instant,
}

/// Reads `sub` until it is quiet for a second.
async fn read_latency(mut sub: async_nats::Subscriber, started: Instant) -> Received {
    let mut got = Received {
        latency: histogram(),
        count: 0,
        bytes: 0,
        last: started,
    };
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(1), sub.next()).await {
        got.last = Instant::now();
        let now = weir_protocol::now_ms();
        if let Ok(t) = serde_json::from_slice::<Ts>(&m.payload) {
            got.latency
                .saturating_record((((now - t.ts) * 1000.0).max(1.0)) as u64);
        }
        got.count += 1;
        got.bytes += m.payload.len() as u64;
    }
    got
}

/// JetStream publishes of `batch` events per message to a file stream.
async fn jetstream(
    client: &async_nats::Client,
    secs: Duration,
    batch: usize,
    in_flight: usize,
) -> anyhow::Result<(LimitRow, u64)> {
    let js = jetstream::new(client.clone());
    limit_stream(&js, false).await?;
    let mut acks = VecDeque::new();
    let started = Instant::now();
    let (mut msgs, mut events, mut bytes, mut seq) = (0u64, 0u64, 0u64, 0u64);
    while started.elapsed() < secs {
        let evs: Vec<String> = (0..batch)
            .map(|_| {
                seq += 1;
                event_json(1, seq, u64::MAX)
            })
            .collect();
        let payload = if batch == 1 {
            evs.concat()
        } else {
            format!("[{}]", evs.join(","))
        };
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("bench:{seq}").as_str());
        headers.insert(weir_bus::nats::SEQ_HEADER, seq.to_string().as_str());
        bytes += payload.len() as u64;
        acks.push_back(
            js.publish_with_headers("weir.bench.js.s", headers, Bytes::from(payload))
                .await?,
        );
        while acks.len() >= in_flight.max(1) {
            acks.pop_front().expect("non-empty").await?;
        }
        msgs += 1;
        events += batch as u64;
    }
    for a in acks {
        a.await?;
    }
    let window = started.elapsed().as_secs_f64();
    let _ = js.delete_stream(LIMIT_STREAM).await;
    let row = LimitRow {
        what: format!("jetstream publish, {batch} event(s)/msg, {in_flight} in flight"),
        events_per_s: events as f64 / window,
        msgs_per_s: msgs as f64 / window,
        mb_per_s: bytes as f64 / window / 1e6,
        lost: 0,
        latency_ms: None,
        cpu_us_per_event: Vec::new(),
    };
    Ok((row, events))
}

const LIMIT_STREAM: &str = "WEIR_BENCH_LIMIT";

/// A fresh file stream on `weir.bench.js.*`, like `WEIR_EVENTS`; with
/// `republish`, stored messages go on to `weir.bench.live.*`.
/// Its replica count is `WEIR_EVENTS`'s when that exists (1 otherwise), so
/// the floor is measured on the same replication as weir's log.
async fn limit_stream(js: &jetstream::Context, republish: bool) -> anyhow::Result<()> {
    let _ = js.delete_stream(LIMIT_STREAM).await;
    let replicas = match js.get_stream(weir_bus::nats::EVENTS_STREAM).await {
        Ok(mut s) => s.info().await.map_or(1, |i| i.config.num_replicas.max(1)),
        Err(_) => 1,
    };
    js.create_stream(stream::Config {
        name: LIMIT_STREAM.into(),
        num_replicas: replicas,
        subjects: vec!["weir.bench.js.*".into()],
        storage: stream::StorageType::File,
        max_age: Duration::from_secs(600),
        allow_direct: true,
        republish: republish.then(|| stream::Republish {
            source: "weir.bench.js.*".into(),
            destination: "weir.bench.live.{{wildcard(1)}}".into(),
            headers_only: false,
        }),
        ..Default::default()
    })
    .await
    .context("create the limit stream")?;
    until_reachable(js).await
}

/// Waits until a publish on the limit stream's subjects reaches it: in a
/// cluster, the stream's interest can reach the client's server a moment
/// after the stream is created (its publishes answered "no responders").
/// The probe expects a last sequence the stream cannot have, so it is
/// refused, never stored or republished.
async fn until_reachable(js: &jetstream::Context) -> anyhow::Result<()> {
    use async_nats::jetstream::context::PublishErrorKind;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_EXPECTED_LAST_SEQUENCE,
            u64::MAX.to_string().as_str(),
        );
        let ack = js
            .publish_with_headers("weir.bench.js.probe", headers, Bytes::new())
            .await?
            .await;
        match ack.map_err(|e| e.kind()) {
            Err(PublishErrorKind::StreamNotFound) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(PublishErrorKind::StreamNotFound) => {
                anyhow::bail!("the limit stream was created but no publish reached it in 10 s")
            }
            Ok(_) | Err(PublishErrorKind::WrongLastSequence) => return Ok(()),
            Err(kind) => anyhow::bail!("probing the limit stream: {kind}"),
        }
    }
}

/// One event per message at `rate` in all, spread over `subjects`, each
/// subject publishing its next event only after the previous one's ack (as
/// a weir producer does); latency from `ts` to the republished copy.
async fn republished(
    pubc: &async_nats::Client,
    subc: &async_nats::Client,
    secs: Duration,
    rate: f64,
    subjects: usize,
) -> anyhow::Result<(LimitRow, u64)> {
    let js = jetstream::new(pubc.clone());
    limit_stream(&js, true).await?;
    let live = subc.subscribe("weir.bench.live.*").await?;
    subc.flush().await?;
    let per_subject = rate / subjects as f64;
    let started = Instant::now();
    let deadline = started + secs;
    let publishers = (0..subjects).map(|i| {
        let js = js.clone();
        async move {
            let subject = format!("weir.bench.js.s{i}");
            let period = Duration::from_secs_f64(1.0 / per_subject.max(1e-3));
            // Spread the subjects' ticks over one period.
            let first = started + period.mul_f64(i as f64 / subjects as f64);
            let mut tick = tokio::time::interval_at(first.into(), period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let (mut sent, mut bytes, mut fence) = (0u64, 0u64, 0u64);
            loop {
                tick.tick().await;
                if Instant::now() >= deadline {
                    break;
                }
                sent += 1;
                let payload = Bytes::from(event_json(1, sent, u64::MAX));
                bytes += payload.len() as u64;
                // weir's headers: what the stream checks and stores for every event.
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", format!("s{i}:{sent}").as_str());
                headers.insert(weir_bus::nats::SEQ_HEADER, sent.to_string().as_str());
                headers.insert(
                    weir_bus::nats::EXPECTED_LAST_SUBJECT_SEQ,
                    fence.to_string().as_str(),
                );
                let ack = js.publish_with_headers(subject.clone(), headers, payload);
                fence = ack.await?.await?.sequence;
            }
            anyhow::Ok((sent, bytes))
        }
    });
    let reader = tokio::spawn(read_latency(live, started));
    let mut sent = 0u64;
    let mut bytes = 0u64;
    for r in futures::future::join_all(publishers).await {
        let (s, b) = r?;
        sent += s;
        bytes += b;
    }
    let window = started.elapsed().as_secs_f64();
    let got = reader.await?;
    let _ = js.delete_stream(LIMIT_STREAM).await;
    let row = LimitRow {
        what: format!("jetstream paced {rate:.0}/s over {subjects} subjects, stored → republished"),
        events_per_s: got.count as f64 / window,
        msgs_per_s: got.count as f64 / window,
        mb_per_s: bytes as f64 / window / 1e6,
        lost: sent.saturating_sub(got.count),
        latency_ms: Some(Percentiles::of(&got.latency)),
        cpu_us_per_event: Vec::new(),
    };
    Ok((row, got.count))
}
