//! The per-session ring of an edge (`weir_edge::ring::Ring`): pushing bus
//! batches and reading a subscriber's next events after its cursor. Run
//! with `cargo bench --bench ring`.

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use weir_edge::ring::Ring;
use weir_protocol::{Event, RawEvent};

fn tokens(from: u64, n: u64) -> Vec<RawEvent> {
    (from..from + n)
        .map(|seq| {
            Event::new(
                seq,
                "token",
                Some("mock"),
                serde_json::json!({"text": " x"}),
            )
            .to_raw()
        })
        .collect()
}

/// A full ring of `cap` events, seqs 1..=cap.
fn full(cap: usize) -> Ring {
    let mut r = Ring::new(cap);
    r.push(tokens(1, cap as u64));
    r
}

fn push(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring_push");
    for batch in [1u64, 256] {
        g.throughput(Throughput::Elements(batch));
        g.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
            let next = tokens(1025, batch);
            b.iter_batched(
                || (full(1024), next.clone()),
                |(mut ring, evs)| {
                    ring.push(evs);
                    ring
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn after(c: &mut Criterion) {
    let ring = full(1024);
    let mut g = c.benchmark_group("ring_after");
    for max in [1usize, 256] {
        g.throughput(Throughput::Elements(max as u64));
        g.bench_with_input(BenchmarkId::new("caught_up_minus", max), &max, |b, &max| {
            b.iter(|| ring.after(black_box(1024 - max as u64), max))
        });
    }
    g.bench_function("nothing", |b| b.iter(|| ring.after(black_box(1024), 256)));
    // A live session: one event per bus message, so 1,024 one-event blocks;
    // a live reader wants the newest, a loaded one is a few behind, a reader
    // behind one in the middle.
    let mut live = Ring::new(1024);
    for seq in 1..=1024 {
        live.push(tokens(seq, 1));
    }
    for (name, cursor) in [
        ("live_newest", 1023u64),
        ("live_behind_8", 1016),
        ("live_middle", 512),
    ] {
        g.bench_function(name, |b| b.iter(|| live.after(black_box(cursor), 256)));
    }
    g.finish();
}

criterion_group!(benches, push, after);
criterion_main!(benches);
