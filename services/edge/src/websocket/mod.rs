//! Everything WebSocket on the edge: the endpoint, the connection that
//! serves a subscription to one client, and the RFC 6455 codec under it.
//!
//! The edge frames its own sockets instead of handing them to tungstenite's
//! `WebSocketStream`, for one reason: tungstenite copies every frame into a
//! per-connection write buffer and keeps that buffer at the size of the
//! largest frame it ever wrote. With one session watched by 10,000 clients
//! that buffer was half of the edge's memory. Here a frame's bytes go from
//! the session's shared frame to the socket in one vectored write, and an
//! idle connection holds neither a read nor a write buffer.
//!
//! - [`endpoint`]: `GET /v1/sessions/{id}/ws`: checks, then the upgraded
//!   socket handed to [`connection::serve`].
//! - [`upgrade`]: the [`upgrade::Upgrade`] extractor (checks the request,
//!   answers 101) and [`upgrade::split`], the socket as the codec's two
//!   halves.
//! - [`connection`]: a client's connection: buffer, watermarks (hysteresis),
//!   coalescing, heartbeats, write timeout, drain; generic over its sink and
//!   stream so that unit tests drive it with channels.
//! - [`writer`]: the connection's write half ([`Outgoing`], what it writes),
//!   driven by the connection's own task.
//! - [`read`]: client frames to [`connection::Incoming`]
//!   ([`read::FrameStream`]).
//! - [`write`]: [`Outgoing`] as server frames ([`FrameSink`]).
//!
//! No extension (permessage-deflate) and no subprotocol is negotiated.

pub(crate) mod connection;
pub(crate) mod endpoint;
pub(crate) mod read;
pub(crate) mod upgrade;
pub(crate) mod write;
pub(crate) mod writer;

// What the benches write with (benches/websocket.rs).
pub use write::FrameSink;
pub use writer::Outgoing;

#[cfg(test)]
mod tests;
