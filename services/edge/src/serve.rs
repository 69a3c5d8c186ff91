//! Accepting and serving HTTP/1 connections. `axum::serve` has no header
//! timeout, so the edge drives hyper itself, with two socket-level limits:
//!
//! - a connection must complete its request headers within the header
//!   timeout (slowloris; also how long an idle keep-alive connection lives);
//! - a write to the socket that makes no progress for the write timeout
//!   (plus [`WRITE_MARGIN`]) fails the connection: an SSE client that stops
//!   reading is cut off, as a WebSocket one is closed with 4008.
//!
//! Each request carries its client's address as `ConnectInfo` (the rate
//! limits use it); WebSocket upgrades are served; on shutdown every
//! connection is asked to finish its request and close.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_io_timeout::TimeoutStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use weir_telemetry::names;

/// How much longer than the write timeout a stalled socket write may take
/// before the socket fails: a WebSocket's own write timeout (which sends
/// 4008 if it still can) always comes first.
pub const WRITE_MARGIN: Duration = Duration::from_secs(1);

/// The socket-level limits of every connection.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header: Duration,
    pub write: Duration,
}

/// Serves `app` on `listener` until `shutdown`; then stops accepting, asks
/// every connection to close after its current request, and returns once
/// all are gone (upgraded WebSockets end on their own, through the drain).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()>,
) {
    let closing = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        let app = app.clone();
        tracker.spawn(connection(tcp, peer, app, timeouts, closing.clone()));
    }
    drop(listener);
    closing.cancel();
    tracker.close();
    tracker.wait().await;
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Router,
    timeouts: Timeouts,
    closing: CancellationToken,
) {
    // Events are small writes that must leave at once: no Nagle delay.
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY");
    }
    let mut io = TimeoutStream::new(tcp);
    io.set_write_timeout(Some(timeouts.write + WRITE_MARGIN));
    let service = app.map_request(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        req
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header);
    let conn = builder
        .serve_connection(
            TokioIo::new(Box::pin(io)),
            TowerToHyperService::new(service),
        )
        .with_upgrades();
    let mut conn = pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = closing.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        closed_by(&e, peer);
    }
}

/// Counts and logs why hyper gave up on a connection.
fn closed_by(e: &hyper::Error, peer: SocketAddr) {
    if e.is_timeout() {
        metrics::counter!(names::HEADER_TIMEOUTS).increment(1);
        tracing::debug!(%peer, "request headers not received within the header timeout");
        return;
    }
    let stalled = std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
    if stalled {
        metrics::counter!(names::WRITE_STALLS).increment(1);
        tracing::debug!(%peer, "the client took nothing for the write timeout");
    } else {
        tracing::trace!(%peer, error = %e, "connection failed");
    }
}

/// Accept errors are per connection (a reset before accept) or the process
/// being out of file descriptors; for the latter, pause so that the loop
/// does not spin while connections close.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused
    ) {
        return;
    }
    tracing::warn!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}
