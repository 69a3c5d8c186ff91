//! The codec against tungstenite's client, over an in-memory pipe: what a
//! client sends arrives as [`Incoming`], what the server writes is read
//! back as the client's messages.

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::connection::Incoming;
use super::read::FrameStream;
use super::write::FrameSink;
use super::writer::Outgoing;

type Server = (
    FrameSink<tokio::io::WriteHalf<DuplexStream>>,
    FrameStream<tokio::io::ReadHalf<DuplexStream>>,
);

/// A server codec and a tungstenite client on two ends of a pipe of
/// `pipe` bytes (small pipes force partial writes).
async fn pair(pipe: usize, max_message: usize) -> (Server, WebSocketStream<DuplexStream>) {
    let (server, client) = tokio::io::duplex(pipe);
    let (read, write) = tokio::io::split(server);
    let config = WebSocketConfig::default().max_message_size(None);
    let client = WebSocketStream::from_raw_socket(client, Role::Client, Some(config)).await;
    (
        (FrameSink::new(write), FrameStream::new(read, max_message)),
        client,
    )
}

async fn next(stream: &mut FrameStream<tokio::io::ReadHalf<DuplexStream>>) -> Option<Incoming> {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("a frame in time")
}

#[tokio::test]
async fn server_frames_of_every_length_reach_the_client_intact() {
    let ((mut sink, _incoming), mut client) = pair(1024, 1 << 16).await;
    // 0, the 7-bit, 16-bit and 64-bit length forms; larger than the pipe.
    let texts: Vec<String> = [0, 1, 125, 126, 65_535, 65_536, 200_000]
        .iter()
        .map(|&n| "é".repeat(n / 2) + &"x".repeat(n % 2))
        .collect();
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(Ok(m)) = client.next().await {
            got.push(m);
        }
        got
    });
    for t in &texts {
        sink.send(Outgoing::Text(t.as_str().into())).await.unwrap();
    }
    sink.send(Outgoing::Close(4008, "slow consumer".into()))
        .await
        .unwrap();
    sink.close().await.unwrap();
    let got = reader.await.unwrap();
    assert_eq!(got.len(), texts.len() + 1);
    for (m, t) in got.iter().zip(&texts) {
        assert_eq!(m, &Message::Text(t.as_str().into()));
    }
    match got.last() {
        Some(Message::Close(Some(c))) => {
            assert_eq!(c.code, CloseCode::from(4008));
            assert_eq!(c.reason.as_str(), "slow consumer");
        }
        other => panic!("expected the close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn client_messages_fragmented_or_not_arrive_whole() {
    let ((_sink, mut incoming), mut client) = pair(1 << 16, 1 << 16).await;
    client
        .send(Message::Text(r#"{"type":"ack","seq":3}"#.into()))
        .await
        .unwrap();
    assert_eq!(
        next(&mut incoming).await,
        Some(Incoming::Text(r#"{"type":"ack","seq":3}"#.into()))
    );
    // "héllo" in three frames, split inside the two-byte "é".
    let bytes = "héllo".as_bytes();
    let parts = [
        Frame::message(
            Bytes::copy_from_slice(&bytes[..2]),
            OpCode::Data(Data::Text),
            false,
        ),
        Frame::message(
            Bytes::copy_from_slice(&bytes[2..4]),
            OpCode::Data(Data::Continue),
            false,
        ),
        Frame::message(
            Bytes::copy_from_slice(&bytes[4..]),
            OpCode::Data(Data::Continue),
            true,
        ),
    ];
    for part in parts {
        client.send(Message::Frame(part)).await.unwrap();
    }
    assert_eq!(
        next(&mut incoming).await,
        Some(Incoming::Text("héllo".into()))
    );
    client
        .send(Message::Binary(Bytes::from_static(b"\x00")))
        .await
        .unwrap();
    assert_eq!(next(&mut incoming).await, Some(Incoming::Binary));
}

#[tokio::test]
async fn a_ping_is_reported_and_its_pong_reaches_the_client() {
    let ((mut sink, mut incoming), mut client) = pair(1 << 16, 1 << 16).await;
    client
        .send(Message::Ping(Bytes::from_static(b"are you there")))
        .await
        .unwrap();
    let Some(Incoming::Ping(data)) = next(&mut incoming).await else {
        panic!("expected a ping");
    };
    assert_eq!(&data[..], b"are you there");
    sink.send(Outgoing::Pong(data)).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), client.next())
        .await
        .unwrap();
    assert_eq!(
        got.unwrap().unwrap(),
        Message::Pong(Bytes::from_static(b"are you there"))
    );
}

#[tokio::test]
async fn a_message_over_the_limit_is_too_large_even_in_fragments() {
    let ((_sink, mut incoming), mut client) = pair(1 << 16, 100).await;
    client
        .send(Message::Text("x".repeat(101).into()))
        .await
        .unwrap();
    assert_eq!(next(&mut incoming).await, Some(Incoming::TooLarge));
    assert_eq!(next(&mut incoming).await, None);

    let ((_sink, mut incoming), mut client) = pair(1 << 16, 100).await;
    let first = Frame::message(vec![b'x'; 60], OpCode::Data(Data::Text), false);
    let second = Frame::message(vec![b'x'; 60], OpCode::Data(Data::Continue), true);
    client.send(Message::Frame(first)).await.unwrap();
    client.send(Message::Frame(second)).await.unwrap();
    assert_eq!(next(&mut incoming).await, Some(Incoming::TooLarge));
}

/// Raw bytes from a client that does not follow the protocol.
async fn raw(bytes: &[u8]) -> (Option<Incoming>, Option<Incoming>) {
    let (server, mut client) = tokio::io::duplex(1 << 16);
    let (read, _write) = tokio::io::split(server);
    let mut incoming = FrameStream::new(read, 1 << 16);
    client.write_all(bytes).await.unwrap();
    (next(&mut incoming).await, next(&mut incoming).await)
}

/// A masked client frame: FIN + `opcode`, the mask, the masked payload.
fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1, 2, 3, 4];
    let mut out = vec![first, 0x80 | payload.len() as u8];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

#[tokio::test]
async fn protocol_errors_close_with_their_code() {
    let cases: [(&str, Vec<u8>, u16); 6] = [
        ("unmasked", vec![0x81, 0x02, b'h', b'i'], 1002),
        ("reserved bit", masked(0x81 | 0x40, b"hi"), 1002),
        ("reserved opcode", masked(0x83, b"hi"), 1002),
        ("fragmented ping", masked(0x09, b"hi"), 1002),
        ("stray continuation", masked(0x80, b"hi"), 1002),
        ("not UTF-8", masked(0x81, &[0xff, 0xfe]), 1007),
    ];
    for (what, bytes, code) in cases {
        match raw(&bytes).await {
            (Some(Incoming::Invalid(c, _)), None) => assert_eq!(c, code, "{what}"),
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_client_close_ends_the_stream_and_is_answered() {
    let ((mut sink, mut incoming), mut client) = pair(1 << 16, 1 << 16).await;
    client.close(None).await.unwrap();
    assert_eq!(next(&mut incoming).await, Some(Incoming::Closed));
    assert_eq!(next(&mut incoming).await, None);
    sink.close().await.unwrap();
    // The client saw our close and the end of the socket.
    let rest: Vec<_> = client.collect().await;
    assert!(
        rest.iter().all(|m| matches!(m, Ok(Message::Close(_)))),
        "{rest:?}"
    );
}

#[tokio::test]
async fn the_end_of_the_socket_is_a_close() {
    let (server, client) = tokio::io::duplex(64);
    let (read, _write) = tokio::io::split(server);
    let mut incoming = FrameStream::new(read, 1 << 16);
    drop(client);
    assert_eq!(next(&mut incoming).await, Some(Incoming::Closed));
    assert_eq!(next(&mut incoming).await, None);
}

#[tokio::test]
async fn server_frames_are_unmasked_and_minimal() {
    let (server, mut client) = tokio::io::duplex(1 << 16);
    let (_read, write) = tokio::io::split(server);
    let mut sink = FrameSink::new(write);
    sink.send(Outgoing::Text("hi".into())).await.unwrap();
    sink.send(Outgoing::Close(1000, String::new()))
        .await
        .unwrap();
    let mut got = [0u8; 8];
    client.read_exact(&mut got).await.unwrap();
    assert_eq!(got, [0x81, 0x02, b'h', b'i', 0x88, 0x02, 0x03, 0xe8]);
    assert!(sink.send(Outgoing::Text("late".into())).await.is_err());
}

proptest::proptest! {
    /// Any bytes at all, cut anywhere: the stream never panics, and ends
    /// after one closing item (the client's close, too large, invalid, or
    /// the end of the socket).
    #[test]
    fn any_bytes_end_the_stream_cleanly(
        chunks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..300), 0..12),
        max_message in 0usize..2048,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (server, mut client) = tokio::io::duplex(1 << 16);
            let (read, _write) = tokio::io::split(server);
            let mut incoming = FrameStream::new(read, max_message);
            let writer = tokio::spawn(async move {
                for c in chunks {
                    if client.write_all(&c).await.is_err() {
                        return;
                    }
                    tokio::task::yield_now().await;
                }
            });
            let mut items = Vec::new();
            while let Some(item) = next(&mut incoming).await {
                items.push(item);
            }
            writer.await.unwrap();
            let last = items.pop();
            assert!(
                matches!(last, Some(Incoming::Closed | Incoming::TooLarge | Incoming::Invalid(..))),
                "{last:?}"
            );
            assert!(items
                .iter()
                .all(|i| matches!(i, Incoming::Text(_) | Incoming::Binary | Incoming::Ping(_))));
        });
    }

    /// Whatever a real client sends, in any mix of messages and pings,
    /// arrives as it was sent.
    #[test]
    fn what_a_client_sends_arrives(texts in proptest::collection::vec(".{0,400}", 1..20)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let ((_sink, mut incoming), mut client) = pair(512, 1 << 16).await;
            let sent = texts.clone();
            let writer = tokio::spawn(async move {
                for (i, t) in sent.into_iter().enumerate() {
                    client.send(Message::Text(t.into())).await.unwrap();
                    if i % 3 == 0 {
                        client.send(Message::Ping(Bytes::from(i.to_string()))).await.unwrap();
                    }
                }
                client
            });
            for (i, t) in texts.iter().enumerate() {
                assert_eq!(next(&mut incoming).await, Some(Incoming::Text(t.clone())));
                if i % 3 == 0 {
                    assert_eq!(next(&mut incoming).await, Some(Incoming::Ping(Bytes::from(i.to_string()))));
                }
            }
            drop(writer.await.unwrap());
            assert_eq!(next(&mut incoming).await, Some(Incoming::Closed));
        });
    }
}
