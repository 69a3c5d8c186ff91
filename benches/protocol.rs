//! Hot paths of the wire contract: parsing bus messages (one event or a
//! batch), encoding batches for the bus, and coalescing events into one
//! WebSocket frame. Run with `cargo bench --bench protocol`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use weir_protocol::event::encode_message;
use weir_protocol::frame::events_frame;
use weir_protocol::{Event, RawEvent};

/// `n` token events as the mock agent makes them.
fn tokens(n: u64) -> Vec<RawEvent> {
    (1..=n)
        .map(|seq| {
            let text = weir_protocol::mock::token_text(7, seq);
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

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse_message");
    for n in [1u64, 16, 256] {
        let msg = encode_message(&tokens(n));
        g.throughput(Throughput::Elements(n));
        g.bench_with_input(BenchmarkId::from_parameter(n), &msg, |b, msg| {
            b.iter(|| RawEvent::parse_message(black_box(msg)).unwrap())
        });
    }
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode_message");
    for n in [1u64, 16, 256] {
        let evs = tokens(n);
        g.throughput(Throughput::Elements(n));
        g.bench_with_input(BenchmarkId::from_parameter(n), &evs, |b, evs| {
            b.iter(|| encode_message(black_box(evs)))
        });
    }
    g.finish();
}

fn to_raw(c: &mut Criterion) {
    let ev = Event::new(
        1,
        "token",
        Some("mock"),
        serde_json::json!({ "text": " river" }),
    );
    c.bench_function("event_to_raw", |b| b.iter(|| black_box(&ev).to_raw()));
}

fn frames(c: &mut Criterion) {
    let mut g = c.benchmark_group("events_frame");
    for n in [1u64, 16, 256] {
        let evs = tokens(n);
        g.throughput(Throughput::Elements(n));
        g.bench_with_input(BenchmarkId::from_parameter(n), &evs, |b, evs| {
            b.iter(|| events_frame(black_box(evs)))
        });
    }
    g.finish();
}

criterion_group!(benches, parse, encode, to_raw, frames);
criterion_main!(benches);
