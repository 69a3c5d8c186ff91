//! Fan-out of one page of a session to many subscribers at one cursor: the
//! shared path (a refcounted batch of the page cache's block, and the frame
//! taken from the session's shared frames, built once) against the
//! per-subscriber path the edge had before (each subscriber copies the
//! events out of the page and encodes its own frame). Run with
//! `cargo bench --bench fanout`.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use weir_edge::frames::{Encoding, Frames};
use weir_edge::pages::PageCache;
use weir_protocol::frame::events_frame;
use weir_protocol::{Event, RawEvent};

/// One log page: 256 tokens of about 100 bytes of JSON each.
fn page() -> Arc<[RawEvent]> {
    (1..=256u64)
        .map(|seq| {
            let text = format!("{seq:0>60}");
            Event::new(
                seq,
                "token",
                Some("mock"),
                serde_json::json!({ "text": text }),
            )
            .to_raw()
        })
        .collect()
}

fn fanout(c: &mut Criterion) {
    let page = page();
    let mut g = c.benchmark_group("fanout_page_to_subscribers");
    for subscribers in [1u64, 100, 1000] {
        g.throughput(Throughput::Elements(subscribers * page.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("per_subscriber", subscribers),
            &subscribers,
            |b, &n| {
                b.iter(|| {
                    let mut bytes = 0;
                    for _ in 0..n {
                        let events: Vec<RawEvent> = page[..].to_vec();
                        bytes += black_box(events_frame(&events)).len();
                    }
                    bytes
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("shared", subscribers),
            &subscribers,
            |b, &n| {
                b.iter(|| {
                    // A new cache and frames each time: the frame is built once
                    // per iteration, as it would be once per node.
                    let mut cache = PageCache::new(4 << 20);
                    cache.insert(&page);
                    let frames = Arc::new(Frames::new(1 << 20));
                    // The references the edge holds: the feed's, and one for
                    // each subscriber besides the one here.
                    let _feed = frames.clone();
                    let _others: Vec<_> = (1..n).map(|_| frames.clone()).collect();
                    let mut bytes = 0;
                    for _ in 0..n {
                        let events = cache.read(0, 256).expect("cached");
                        let frame = frames.get(Encoding::Ws, &events, |e| events_frame(e));
                        bytes += black_box(frame).len();
                    }
                    bytes
                })
            },
        );
    }
    g.finish();
}

/// A live session's frames (one event each) for its one subscriber on a
/// node: kept in the session's frames, as every frame was before a lone
/// subscriber skipped them, against built and sent without keeping.
fn lone_subscriber(c: &mut Criterion) {
    let page = page();
    let mut g = c.benchmark_group("live_frames_one_subscriber");
    g.throughput(Throughput::Elements(page.len() as u64));
    for (name, kept) in [("kept", true), ("alone", false)] {
        g.bench_function(name, |b| {
            let frames = Arc::new(Frames::new(1 << 20));
            let _feed = frames.clone();
            let _kept_by = kept.then(|| frames.clone());
            // Seqs move on every iteration, as a live session's do.
            let mut round = 0u64;
            b.iter(|| {
                round += 1;
                let mut bytes = 0;
                for e in page.iter() {
                    let mut live = e.clone();
                    live.seq += round * 256;
                    let events = [live];
                    bytes +=
                        black_box(frames.get(Encoding::Ws, &events, |e| events_frame(e))).len();
                }
                bytes
            })
        });
    }
    g.finish();
}

criterion_group!(benches, fanout, lone_subscriber);
criterion_main!(benches);
