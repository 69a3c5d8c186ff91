//! The write half of a WebSocket connection, driven by the connection's own
//! task (no writer task, no channel: one wake-up less per frame and a task
//! less per idle connection).
//!
//! One frame is in flight at a time. [`Writer::poll_write`] is cancel-safe:
//! a frame handed to the sink is never handed again, so the connection can
//! poll it inside `select!` beside its other work. Each frame has the write
//! timeout to reach the socket; past it the client is a slow consumer.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Sink, SinkExt};
use tokio::time::Instant;
use weir_protocol::frame::close;

use crate::delivery::metrics::DeliveryMetrics;

/// What the connection writes.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    /// A text frame; its bytes may be shared with other connections.
    Text(tungstenite::Utf8Bytes),
    /// The answer to a client's ping, with its payload.
    Pong(bytes::Bytes),
    Close(u16, String),
}

/// A frame to write, with the `ts` of each event in it (for the delivery
/// latency once it is written).
pub struct Frame {
    pub out: Outgoing,
    pub ts: Vec<f64>,
}

impl Frame {
    pub fn control(out: Outgoing) -> Frame {
        Frame {
            out,
            ts: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WriteError {
    /// The frame did not reach the socket within the write timeout.
    Slow,
    /// The socket failed or the client is gone.
    Gone,
}

pub struct Writer<S> {
    sink: S,
    timeout: Duration,
    /// The frame in flight, until the sink has taken it.
    unsent: Option<Outgoing>,
    /// The frame in flight's event timestamps and size.
    sent: Option<(Vec<f64>, usize)>,
    /// When the frame in flight must be written by; `None` when idle.
    deadline: Option<Instant>,
    metrics: DeliveryMetrics,
}

impl<S: Sink<Outgoing> + Unpin> Writer<S> {
    pub fn new(sink: S, timeout: Duration) -> Writer<S> {
        Writer {
            sink,
            timeout,
            unsent: None,
            sent: None,
            deadline: None,
            metrics: DeliveryMetrics::new("ws"),
        }
    }

    /// A frame is in flight.
    pub fn is_busy(&self) -> bool {
        self.deadline.is_some()
    }

    /// When the frame in flight must be written by.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Puts `frame` in flight; the writer must be idle.
    pub fn start(&mut self, frame: Frame) {
        debug_assert!(!self.is_busy(), "one frame in flight at a time");
        let bytes = match &frame.out {
            Outgoing::Text(t) => t.len(),
            Outgoing::Pong(_) | Outgoing::Close(..) => 0,
        };
        self.unsent = Some(frame.out);
        self.sent = Some((frame.ts, bytes));
        self.deadline = Some(Instant::now() + self.timeout);
    }

    /// Drives the frame in flight; ready once it is written (or failed).
    pub fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WriteError>> {
        if let Some(item) = self.unsent.take() {
            match Pin::new(&mut self.sink).poll_ready(cx) {
                Poll::Pending => {
                    self.unsent = Some(item);
                    return Poll::Pending;
                }
                Poll::Ready(Err(_)) => return Poll::Ready(Err(WriteError::Gone)),
                Poll::Ready(Ok(())) => {
                    if Pin::new(&mut self.sink).start_send(item).is_err() {
                        return Poll::Ready(Err(WriteError::Gone));
                    }
                }
            }
        }
        match Pin::new(&mut self.sink).poll_flush(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(_)) => Poll::Ready(Err(WriteError::Gone)),
            Poll::Ready(Ok(())) => {
                self.deadline = None;
                if let Some((ts, bytes)) = self.sent.take() {
                    if !ts.is_empty() {
                        self.metrics.record(&ts, bytes);
                    }
                }
                Poll::Ready(Ok(()))
            }
        }
    }

    /// Finishes the frame in flight, if any, within its deadline.
    pub async fn finish(&mut self) -> Result<(), WriteError> {
        let Some(deadline) = self.deadline else {
            return Ok(());
        };
        match tokio::time::timeout_at(deadline, poll_fn(|cx| self.poll_write(cx))).await {
            Ok(r) => r,
            Err(_) => Err(WriteError::Slow),
        }
    }

    /// Writes `frame` after the one in flight.
    pub async fn write(&mut self, frame: Frame) -> Result<(), WriteError> {
        self.finish().await?;
        self.start(frame);
        self.finish().await
    }

    /// Closes the sink (best effort, bounded).
    pub async fn close(&mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.sink.close()).await;
    }

    /// After a write timed out: tells the client why and closes, if the
    /// socket takes the close frame within a second. Otherwise the socket
    /// just goes, without a close frame (clients take that for a dropped
    /// connection and resume); closing the sink then would send the 1000 of
    /// a normal end instead, once the client read again.
    pub async fn close_slow(&mut self) {
        self.unsent = None;
        self.sent = None;
        self.deadline = None;
        let frame = Outgoing::Close(close::SLOW_CONSUMER, "slow consumer".into());
        let sink = &mut self.sink;
        let closed = async move {
            sink.send(frame).await?;
            sink.close().await
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), closed).await;
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    use tokio_tungstenite::tungstenite::{protocol::Role, Message};

    use super::*;
    use crate::websocket::write::FrameSink;

    /// A client that stops reading for longer than the write timeout and
    /// the close frame's second, then reads again: it finds the frames that
    /// were written and the end of the stream, never a normal close (1000)
    /// that would tell it the session is over.
    #[tokio::test(start_paused = true)]
    async fn a_slow_consumer_never_gets_a_normal_close() {
        let (server, client) = tokio::io::duplex(4096);
        let mut writer = Writer::new(FrameSink::new(server), Duration::from_secs(2));
        let frame = "x".repeat(1000);
        let slow = loop {
            let out = Outgoing::Text(frame.as_str().into());
            if let Err(e) = writer.write(Frame::control(out)).await {
                break e;
            }
        };
        assert_eq!(slow, WriteError::Slow);
        let reader = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let mut client =
                tokio_tungstenite::WebSocketStream::from_raw_socket(client, Role::Client, None)
                    .await;
            let mut closes = Vec::new();
            while let Some(Ok(m)) = client.next().await {
                if let Message::Close(f) = m {
                    closes.push(f.map(|f| u16::from(f.code)));
                }
            }
            let _ = client.get_mut().shutdown().await;
            closes
        });
        writer.close_slow().await;
        drop(writer);
        let closes = reader.await.unwrap();
        assert!(
            closes.iter().all(|c| *c == Some(close::SLOW_CONSUMER)),
            "closes seen: {closes:?}"
        );
    }
}
