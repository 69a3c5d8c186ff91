//! `weir-bench relay`: a TCP relay that holds every chunk it forwards for a
//! delay (± jitter), each direction, so that a cluster on one machine can be
//! measured as if its nodes sat in different zones. This kernel has no
//! `netem`; the relay stands in for the network between zones.
//!
//! Each direction of an accepted connection is read by one thread and
//! written by another. A chunk read at `arrival` leaves at
//! `max(arrival + delay ± jitter, the previous chunk's departure)`, so bytes
//! keep their order within a connection. The chunks held per direction are
//! bounded (`--max-chunks`): when they are all waiting, the relay stops
//! reading and the sender feels TCP's backpressure. Threads and
//! `std::thread::sleep` rather than tokio tasks: tokio's timer ticks in
//! milliseconds and would round a 1 ms delay up to 1–2 ms, and its
//! `AsyncFd` (for a `timerfd`) now needs `unsafe`. The delay actually applied
//! (read to written) is printed every `--report-every`.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::Rng;

#[derive(Debug, Clone, clap::Args)]
pub struct RelayArgs {
    /// Address to accept connections on.
    #[arg(long)]
    pub listen: SocketAddr,
    /// Address every accepted connection is forwarded to.
    #[arg(long)]
    pub to: SocketAddr,
    #[command(flatten)]
    pub shape: Shape,
    /// How often to print the delay applied so far (to stderr).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub report_every: Duration,
}

/// What the relay does to each direction of a connection.
#[derive(Debug, Clone, clap::Args)]
pub struct Shape {
    /// One-way delay of every chunk, each direction (e.g. 1ms).
    #[arg(long, default_value = "1ms", value_parser = humantime::parse_duration)]
    pub delay: Duration,
    /// Each chunk's delay is drawn uniformly from delay ± jitter (e.g. 500us);
    /// at most the delay.
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    pub jitter: Duration,
    /// Chunks held per direction of a connection before the relay stops
    /// reading from its sender.
    #[arg(long, default_value_t = 256)]
    pub max_chunks: usize,
    /// Largest chunk read at once, in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    pub chunk_bytes: usize,
}

impl Shape {
    /// The shape as given, or why it cannot be applied.
    pub fn validated(self) -> anyhow::Result<Self> {
        anyhow::ensure!(
            self.jitter <= self.delay,
            "--jitter {:?} is larger than --delay {:?}: a chunk cannot leave before it arrives",
            self.jitter,
            self.delay
        );
        anyhow::ensure!(self.max_chunks > 0, "--max-chunks must be at least 1");
        anyhow::ensure!(self.chunk_bytes > 0, "--chunk-bytes must be at least 1");
        Ok(self)
    }

    /// One chunk's delay: uniform in delay ± jitter.
    fn sample(&self) -> Duration {
        if self.jitter.is_zero() {
            return self.delay;
        }
        let jitter = self.jitter.as_nanos() as i64;
        let offset = rand::rng().random_range(-jitter..=jitter);
        Duration::from_nanos((self.delay.as_nanos() as i64 + offset).max(0) as u64)
    }
}

/// What the relay has forwarded: connections, chunks, bytes, and the delay
/// each chunk actually got (read to written, in microseconds).
pub struct Stats {
    connections: AtomicU64,
    bytes: AtomicU64,
    delay_us: Mutex<Histogram<u64>>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            connections: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            delay_us: Mutex::new(
                Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds"),
            ),
        }
    }
}

impl Stats {
    fn record(&self, applied: Duration, bytes: usize) {
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        let us = (applied.as_micros() as u64).clamp(1, 60_000_000);
        self.delay_us
            .lock()
            .expect("stats lock")
            .saturating_record(us);
    }

    /// One line: connections, chunks, bytes and the applied delay's
    /// median, 99th percentile and maximum.
    pub fn line(&self) -> String {
        let h = self.delay_us.lock().expect("stats lock");
        let ms = |us: u64| us as f64 / 1000.0;
        format!(
            "{} connections, {} chunks, {} bytes, applied delay ms: mean {:.3} p50 {:.3} p99 {:.3} max {:.3}",
            self.connections.load(Ordering::Relaxed),
            h.len(),
            self.bytes.load(Ordering::Relaxed),
            h.mean() / 1000.0,
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max()),
        )
    }
}

/// `weir-bench relay`: serves until SIGINT or SIGTERM.
pub async fn run(args: RelayArgs) -> anyhow::Result<()> {
    let shape = args.shape.validated()?;
    anyhow::ensure!(
        !args.report_every.is_zero(),
        "--report-every must be longer than zero"
    );
    let listener = TcpListener::bind(args.listen)
        .map_err(|e| anyhow::anyhow!("relay: cannot listen on {}: {e}", args.listen))?;
    let stats = Arc::new(Stats::default());
    let name = format!("relay {} → {}", listener.local_addr()?, args.to);
    eprintln!("{name}: delay {:?} ± {:?}", shape.delay, shape.jitter);
    let report = {
        let (stats, name) = (stats.clone(), name.clone());
        let mut tick = tokio::time::interval(args.report_every);
        tick.tick().await;
        tokio::spawn(async move {
            loop {
                tick.tick().await;
                eprintln!("{name}: {}", stats.line());
            }
        })
    };
    let (failed, serving) = tokio::sync::oneshot::channel();
    {
        let (to, stats) = (args.to, stats.clone());
        std::thread::Builder::new()
            .name("relay-accept".into())
            .spawn(move || failed.send(serve(listener, to, shape, stats)))?;
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let result = tokio::select! {
        r = serving => r?.map_err(anyhow::Error::from),
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = term.recv() => Ok(()),
    };
    report.abort();
    eprintln!("{name}: {}", stats.line());
    result
}

/// Accepts connections on `listener` and forwards each to `to`, shaped, on
/// threads of its own. Returns only when accepting fails.
pub fn serve(
    listener: TcpListener,
    to: SocketAddr,
    shape: Shape,
    stats: Arc<Stats>,
) -> io::Result<()> {
    let shape = Arc::new(shape);
    loop {
        let (inbound, peer) = listener.accept()?;
        if let Err(e) = relay_connection(inbound, to, &shape, &stats) {
            eprintln!("relay: connection from {peer} to {to}: {e}");
        }
    }
}

/// Connects to `to` and starts both directions.
fn relay_connection(
    inbound: TcpStream,
    to: SocketAddr,
    shape: &Arc<Shape>,
    stats: &Arc<Stats>,
) -> io::Result<()> {
    let outbound = TcpStream::connect(to)?;
    // On loopback, a connect to a port nobody listens on can pick that same
    // port as its source and connect to itself.
    if outbound.local_addr()? == outbound.peer_addr()? {
        return Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            "connected to itself: nothing listens there",
        ));
    }
    for s in [&inbound, &outbound] {
        s.set_nodelay(true)?;
    }
    stats.connections.fetch_add(1, Ordering::Relaxed);
    forward(inbound.try_clone()?, outbound.try_clone()?, shape, stats)?;
    forward(outbound, inbound, shape, stats)
}

/// One direction: a thread reads chunks as they come and stamps each with
/// its departure; another writes each at its departure, in order. Reading
/// ends when the sender closes or fails; the writer then writes the chunks
/// held and closes its side. If writing fails, the source is shut down too.
fn forward(
    from: TcpStream,
    to: TcpStream,
    shape: &Arc<Shape>,
    stats: &Arc<Stats>,
) -> io::Result<()> {
    let (tx, rx) = mpsc::sync_channel(shape.max_chunks);
    let source = from.try_clone()?;
    let read_shape = shape.clone();
    std::thread::Builder::new()
        .name("relay-read".into())
        .spawn(move || read_chunks(from, tx, &read_shape))?;
    let stats = stats.clone();
    std::thread::Builder::new()
        .name("relay-write".into())
        .spawn(move || {
            if write_chunks(&to, rx, &stats).is_err() {
                let _ = source.shutdown(Shutdown::Both);
            }
        })?;
    Ok(())
}

/// A chunk, when it was read, and when it may leave.
type Chunk = (Instant, Instant, Vec<u8>);

/// Reads chunks and stamps each with its arrival and departure, until the
/// sender closes or fails, or the writer is gone.
fn read_chunks(mut from: TcpStream, tx: mpsc::SyncSender<Chunk>, shape: &Shape) {
    let mut buf = vec![0u8; shape.chunk_bytes];
    let mut last = Instant::now();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let arrived = Instant::now();
        last = (arrived + shape.sample()).max(last);
        if tx.send((arrived, last, buf[..n].to_vec())).is_err() {
            return;
        }
    }
}

/// Writes each chunk at its departure, then closes the write side once the
/// reader is done.
fn write_chunks(mut to: &TcpStream, rx: mpsc::Receiver<Chunk>, stats: &Stats) -> io::Result<()> {
    // Sleeps end within a microsecond of their deadline rather than the
    // default 50 µs of timer slack (scheduling aside).
    let _ = nix::sys::prctl::set_timerslack(1_000);
    for (arrived, departure, chunk) in rx {
        let left = departure.saturating_duration_since(Instant::now());
        if !left.is_zero() {
            std::thread::sleep(left);
        }
        to.write_all(&chunk)?;
        stats.record(arrived.elapsed(), chunk.len());
    }
    to.shutdown(Shutdown::Write)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
    use tokio::net::{TcpListener, TcpStream};

    /// A relay on a free port in front of `to`, on its own thread.
    fn start_relay(to: SocketAddr, shape: Shape) -> SocketAddr {
        let relay = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let at = relay.local_addr().unwrap();
        std::thread::spawn(move || serve(relay, to, shape, Arc::new(Stats::default())));
        at
    }

    fn shape(delay_us: u64, jitter_us: u64) -> Shape {
        Shape {
            delay: Duration::from_micros(delay_us),
            jitter: Duration::from_micros(jitter_us),
            max_chunks: 4,
            chunk_bytes: 1000,
        }
    }

    /// Counting u32s: any byte lost, repeated or moved shows as a mismatch.
    fn pattern(start: u32, count: u32) -> Vec<u8> {
        (start..start + count).flat_map(u32::to_le_bytes).collect()
    }

    /// Writes `data` in pieces of varying size, then closes the write side.
    async fn write_in_pieces(mut to: OwnedWriteHalf, data: Vec<u8>) -> io::Result<()> {
        let mut at = 0;
        for size in [1usize, 7, 300, 2500, 64, 4096].iter().cycle() {
            if at == data.len() {
                break;
            }
            let end = (at + size).min(data.len());
            to.write_all(&data[at..end]).await?;
            at = end;
        }
        to.shutdown().await
    }

    async fn read_all(mut from: OwnedReadHalf) -> io::Result<Vec<u8>> {
        let mut got = Vec::new();
        from.read_to_end(&mut got).await?;
        Ok(got)
    }

    /// A relay in front of a server that reads everything it is sent while
    /// sending `reply`; returns the relay's address and what the server read.
    async fn relay_to_server(
        shape: Shape,
        reply: Vec<u8>,
    ) -> (SocketAddr, tokio::task::JoinHandle<io::Result<Vec<u8>>>) {
        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let to = server.local_addr().unwrap();
        let received = tokio::spawn(async move {
            let (socket, _) = server.accept().await?;
            let (read, write) = socket.into_split();
            let (got, sent) = tokio::join!(read_all(read), write_in_pieces(write, reply));
            sent?;
            got
        });
        (start_relay(to, shape), received)
    }

    #[tokio::test]
    async fn relayed_bytes_arrive_in_order_without_loss_or_duplication_both_ways() {
        let (there, back) = (pattern(0, 100_000), pattern(1 << 30, 60_000));
        // Jitter as large as the delay: chunks drawn to leave before their
        // predecessors must still wait for them.
        let (relay, server_got) = relay_to_server(shape(1000, 1000), back.clone()).await;
        let (read, write) = TcpStream::connect(relay).await.unwrap().into_split();
        let (client_got, sent) =
            tokio::join!(read_all(read), write_in_pieces(write, there.clone()));
        sent.unwrap();
        assert!(
            client_got.unwrap() == back,
            "the client's bytes differ from the server's"
        );
        assert!(
            server_got.await.unwrap().unwrap() == there,
            "the server's bytes differ from the client's"
        );
    }

    #[tokio::test]
    async fn relayed_bytes_arrive_intact_with_one_chunk_held_at_a_time() {
        let one_at_a_time = Shape {
            max_chunks: 1,
            ..shape(200, 100)
        };
        let there = pattern(7, 50_000);
        let (relay, server_got) = relay_to_server(one_at_a_time, Vec::new()).await;
        let (read, write) = TcpStream::connect(relay).await.unwrap().into_split();
        let (client_got, sent) =
            tokio::join!(read_all(read), write_in_pieces(write, there.clone()));
        sent.unwrap();
        assert!(client_got.unwrap().is_empty());
        assert!(
            server_got.await.unwrap().unwrap() == there,
            "the server's bytes differ from the client's"
        );
    }

    #[tokio::test]
    async fn connections_through_one_relay_keep_their_own_bytes() {
        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let to = server.local_addr().unwrap();
        // An echo server: each connection gets back exactly what it sent.
        tokio::spawn(async move {
            loop {
                let (socket, _) = server.accept().await.unwrap();
                tokio::spawn(async move {
                    let (mut read, mut write) = socket.into_split();
                    tokio::io::copy(&mut read, &mut write).await.unwrap();
                    write.shutdown().await.unwrap();
                });
            }
        });
        let at = start_relay(to, shape(500, 500));
        let clients = (0..8u32).map(|i| async move {
            let sent = pattern(i << 24, 20_000);
            let (read, write) = TcpStream::connect(at).await.unwrap().into_split();
            let (got, done) = tokio::join!(read_all(read), write_in_pieces(write, sent.clone()));
            done.unwrap();
            assert!(got.unwrap() == sent, "connection {i} got other bytes back");
        });
        futures::future::join_all(clients).await;
    }

    #[test]
    fn each_chunks_delay_is_drawn_within_delay_plus_or_minus_jitter() {
        let s = shape(1000, 500);
        for _ in 0..10_000 {
            let d = s.sample();
            assert!(
                (Duration::from_micros(500)..=Duration::from_micros(1500)).contains(&d),
                "{d:?} outside 1ms ± 0.5ms"
            );
        }
    }

    #[test]
    fn jitter_larger_than_the_delay_is_refused() {
        let err = shape(1000, 1500).validated().unwrap_err().to_string();
        assert!(err.contains("--jitter"), "{err}");
    }

    #[test]
    fn zero_chunks_held_is_refused() {
        let none = Shape {
            max_chunks: 0,
            ..shape(1000, 0)
        };
        let err = none.validated().unwrap_err().to_string();
        assert!(err.contains("--max-chunks"), "{err}");
    }
}
