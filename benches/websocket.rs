//! Writing one shared frame to many WebSocket connections: the edge's own
//! codec (`weir_edge::websocket::FrameSink`: the header from a small array
//! and the shared bytes in one vectored write) against tungstenite's
//! `WebSocketStream`, which the edge used before (each connection copies
//! the frame into its write buffer, and keeps that buffer at the largest
//! frame's size). Sockets are `tokio::io::sink()`, so this is the
//! per-frame cost in the process, not the kernel's. Run with
//! `cargo bench --bench websocket`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures::SinkExt;
use std::hint::black_box;
use tokio::io::{Empty, Join, Sink};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use weir_edge::websocket::{FrameSink, Outgoing};

type Socket = Join<Empty, Sink>;

fn socket() -> Socket {
    tokio::io::join(tokio::io::empty(), tokio::io::sink())
}

fn write(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("websocket_frame_to_connections");
    for bytes in [200usize, 8192] {
        let frame = Utf8Bytes::from("x".repeat(bytes));
        let connections = 1000u64;
        g.throughput(Throughput::Bytes(connections * bytes as u64));
        let mut tungstenite: Vec<WebSocketStream<Socket>> = rt.block_on(async {
            let config = WebSocketConfig::default().write_buffer_size(0);
            let mut v = Vec::new();
            for _ in 0..connections {
                v.push(
                    WebSocketStream::from_raw_socket(socket(), Role::Server, Some(config)).await,
                );
            }
            v
        });
        g.bench_with_input(BenchmarkId::new("tungstenite", bytes), &frame, |b, f| {
            b.iter(|| {
                rt.block_on(async {
                    for ws in tungstenite.iter_mut() {
                        ws.send(Message::Text(f.clone())).await.unwrap();
                    }
                })
            })
        });
        let mut own: Vec<FrameSink<Socket>> =
            (0..connections).map(|_| FrameSink::new(socket())).collect();
        g.bench_with_input(BenchmarkId::new("frame_sink", bytes), &frame, |b, f| {
            b.iter(|| {
                rt.block_on(async {
                    for ws in own.iter_mut() {
                        ws.send(Outgoing::Text(black_box(f.clone()))).await.unwrap();
                    }
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, write);
criterion_main!(benches);
