//! The read half: client frames (RFC 6455 §5) to [`Incoming`].
//!
//! Headers are parsed by tungstenite's [`FrameHeader`]; this file checks what
//! a server must (masked, no reserved bits, control frames final and short,
//! continuations only inside a fragmented message), unmasks, reassembles
//! fragments up to the size limit and checks that text is UTF-8. A client
//! that breaks the protocol gets [`Incoming::Invalid`] with the close code to
//! send; after that, and after a close or the end of the socket, the stream
//! ends.

use std::io::Cursor;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use futures::Stream;
use tokio::io::{AsyncRead, ReadBuf};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

use weir_protocol::frame::close::{INVALID_DATA, PROTOCOL_ERROR};

use crate::websocket::connection::Incoming;

/// How much one read takes from the socket.
const READ_CHUNK: usize = 4096;

/// Longest control payload (RFC 6455 §5.5).
const MAX_CONTROL: u64 = 125;

/// Client frames of one connection, read from `io`.
pub struct FrameStream<R> {
    io: R,
    /// What was read and not yet taken; empty (no allocation) between frames,
    /// so an idle connection holds no read buffer.
    buf: BytesMut,
    /// Longest message (and so longest frame) taken from the client.
    max_message: usize,
    /// A fragmented message being put together: its opcode and payload.
    partial: Option<(Data, BytesMut)>,
    done: bool,
}

impl<R: AsyncRead + Unpin> FrameStream<R> {
    pub fn new(io: R, max_message: usize) -> FrameStream<R> {
        FrameStream {
            io,
            buf: BytesMut::new(),
            max_message,
            partial: None,
            done: false,
        }
    }

    /// The next complete frame in `buf`, if one is there, as what the
    /// connection is told; `Ok(None)` for a frame it need not see.
    fn parse(&mut self) -> Result<Option<Option<Incoming>>, Incoming> {
        let mut cursor = Cursor::new(&self.buf[..]);
        let (header, len) = match FrameHeader::parse(&mut cursor) {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(None),
            Err(_) => return Err(invalid(PROTOCOL_ERROR, "reserved opcode")),
        };
        let head = cursor.position() as usize;
        self.check(&header, len)?;
        let len = len as usize;
        if self.buf.len() < head + len {
            self.buf.reserve(head + len - self.buf.len());
            return Ok(None);
        }
        let mut payload = self.buf.split_to(head + len);
        payload.advance(head);
        if let Some(mask) = header.mask {
            unmask(&mut payload, mask);
        }
        self.on_frame(header, payload).map(Some)
    }

    /// What a server must refuse in a client frame's header.
    fn check(&self, header: &FrameHeader, len: u64) -> Result<(), Incoming> {
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(invalid(PROTOCOL_ERROR, "reserved bits set"));
        }
        if header.mask.is_none() {
            return Err(invalid(PROTOCOL_ERROR, "client frames must be masked"));
        }
        match header.opcode {
            OpCode::Control(_) if !header.is_final || len > MAX_CONTROL => {
                Err(invalid(PROTOCOL_ERROR, "bad control frame"))
            }
            OpCode::Data(_) => {
                let held = self.partial.as_ref().map_or(0, |(_, p)| p.len());
                if len.saturating_add(held as u64) > self.max_message as u64 {
                    Err(Incoming::TooLarge)
                } else {
                    Ok(())
                }
            }
            OpCode::Control(_) => Ok(()),
        }
    }

    fn on_frame(
        &mut self,
        header: FrameHeader,
        payload: BytesMut,
    ) -> Result<Option<Incoming>, Incoming> {
        let data = match header.opcode {
            OpCode::Control(Control::Ping) => return Ok(Some(Incoming::Ping(payload.freeze()))),
            OpCode::Control(Control::Close) => return Err(Incoming::Closed),
            OpCode::Control(_) => return Ok(None),
            OpCode::Data(Data::Continue) => match self.partial.as_mut() {
                Some((_, held)) => {
                    held.extend_from_slice(&payload);
                    if !header.is_final {
                        return Ok(None);
                    }
                    self.partial.take().expect("just matched")
                }
                None => return Err(invalid(PROTOCOL_ERROR, "continuation without a message")),
            },
            OpCode::Data(_) if self.partial.is_some() => {
                return Err(invalid(
                    PROTOCOL_ERROR,
                    "new message inside a fragmented one",
                ))
            }
            OpCode::Data(d) if !header.is_final => {
                self.partial = Some((d, payload));
                return Ok(None);
            }
            OpCode::Data(d) => (d, payload),
        };
        message(data.0, data.1.freeze()).map(Some)
    }
}

/// A complete data message.
fn message(kind: Data, payload: Bytes) -> Result<Incoming, Incoming> {
    match kind {
        Data::Text => match String::from_utf8(payload.into()) {
            Ok(text) => Ok(Incoming::Text(text)),
            Err(_) => Err(invalid(INVALID_DATA, "text frame is not UTF-8")),
        },
        _ => Ok(Incoming::Binary),
    }
}

fn invalid(code: u16, reason: &'static str) -> Incoming {
    Incoming::Invalid(code, reason)
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

impl<R: AsyncRead + Unpin> Stream for FrameStream<R> {
    type Item = Incoming;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Incoming>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match this.parse() {
                Ok(Some(Some(incoming))) => return Poll::Ready(Some(incoming)),
                Ok(Some(None)) => continue,
                Ok(None) => {}
                Err(last) => {
                    this.done = true;
                    return Poll::Ready(Some(last));
                }
            }
            if this.buf.is_empty() {
                // Let go of the last frame's allocation.
                this.buf = BytesMut::new();
            }
            // Read into the stack: a pending read holds no buffer.
            let mut chunk = [0u8; READ_CHUNK];
            let mut read = ReadBuf::new(&mut chunk);
            match ready!(Pin::new(&mut this.io).poll_read(cx, &mut read)) {
                Ok(()) if !read.filled().is_empty() => this.buf.extend_from_slice(read.filled()),
                _ => {
                    this.done = true;
                    return Poll::Ready(Some(Incoming::Closed));
                }
            }
        }
    }
}
