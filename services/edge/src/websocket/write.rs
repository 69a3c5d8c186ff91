//! The write half: [`Outgoing`] as server frames, written without a copy.
//!
//! A server frame is a 2–10-byte header and the payload, unmasked
//! (RFC 6455 §5.1). The header is formatted into a small array and written
//! with the payload in one vectored write; the payload is the frame's
//! shared bytes (one encoding on the node for every subscriber at that
//! position), so a connection keeps no write buffer of its own.
//!
//! One frame is in flight at a time: `poll_ready` finishes it before the
//! next is taken. `poll_close` sends a close frame if none was sent (the
//! reply to a client's close), then shuts the socket's write side.

use std::io::{Cursor, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use futures::Sink;
use tokio::io::AsyncWrite;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;
use weir_protocol::frame::close;

use crate::websocket::writer::Outgoing;

/// Longest server frame header: 2 bytes, then a 64-bit length.
const MAX_HEAD: usize = 10;

/// Server frames of one connection, written to `io`.
pub struct FrameSink<W> {
    io: W,
    head: [u8; MAX_HEAD],
    head_len: usize,
    head_sent: usize,
    payload: Bytes,
    payload_sent: usize,
    /// A close frame was taken: nothing more is sent after it.
    closed: bool,
}

impl<W: AsyncWrite + Unpin> FrameSink<W> {
    pub fn new(io: W) -> FrameSink<W> {
        FrameSink {
            io,
            head: [0; MAX_HEAD],
            head_len: 0,
            head_sent: 0,
            payload: Bytes::new(),
            payload_sent: 0,
            closed: false,
        }
    }

    /// Puts one frame in flight.
    fn frame(&mut self, opcode: OpCode, payload: Bytes) {
        let header = FrameHeader {
            opcode,
            ..FrameHeader::default()
        };
        let mut out = Cursor::new(&mut self.head[..]);
        header
            .format(payload.len() as u64, &mut out)
            .expect("a server header fits in 10 bytes");
        self.head_len = out.position() as usize;
        self.head_sent = 0;
        self.payload = payload;
        self.payload_sent = 0;
    }

    /// Writes what is left of the frame in flight.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.head_sent < self.head_len || self.payload_sent < self.payload.len() {
            let bufs = [
                IoSlice::new(&self.head[self.head_sent..self.head_len]),
                IoSlice::new(&self.payload[self.payload_sent..]),
            ];
            let n = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &bufs))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            let head = n.min(self.head_len - self.head_sent);
            self.head_sent += head;
            self.payload_sent += n - head;
        }
        self.payload = Bytes::new();
        Poll::Ready(Ok(()))
    }
}

/// A close frame's payload: the code, then the reason (at most 123 bytes).
fn close_payload(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = BytesMut::with_capacity(2 + end);
    payload.put_u16(code);
    payload.put_slice(&reason.as_bytes()[..end]);
    payload.freeze()
}

impl<W: AsyncWrite + Unpin> Sink<Outgoing> for FrameSink<W> {
    type Error = std::io::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.poll_drain(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Outgoing) -> std::io::Result<()> {
        if self.closed {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        match item {
            Outgoing::Text(text) => self.frame(OpCode::Data(Data::Text), text.into()),
            Outgoing::Pong(data) => self.frame(OpCode::Control(Control::Pong), data),
            Outgoing::Close(code, reason) => {
                self.closed = true;
                self.frame(
                    OpCode::Control(Control::Close),
                    close_payload(code, &reason),
                );
            }
        }
        Ok(())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        if !self.closed {
            self.closed = true;
            let payload = close_payload(close::DONE, "");
            self.frame(OpCode::Control(Control::Close), payload);
            ready!(self.poll_drain(cx))?;
        }
        ready!(Pin::new(&mut self.io).poll_flush(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
