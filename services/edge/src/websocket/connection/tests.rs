//! The connection's tests: the delivery loop driven with channels.

use std::sync::{Arc, Mutex};

use futures::channel::mpsc as fmpsc;
use futures::SinkExt;
use weir_bus::{Bus, BusConfig, Fence};
use weir_protocol::{Event, SessionId};

use super::*;
use crate::hub::Hub;
use crate::subscription::Subscription;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Recorder {
    acks: Mutex<Vec<u64>>,
    answers: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl ClientActions for Recorder {
    async fn ack(&self, seq: u64) {
        self.acks.lock().unwrap().push(seq);
    }
    async fn control(&self, _op: ControlOp) -> Result<(), (String, String)> {
        Ok(())
    }
    /// Takes answers to `open`, refuses others as the edge does.
    async fn input(&self, request: String, _: serde_json::Value) -> Result<(), (String, String)> {
        if request != "open" {
            return Err(("not_found".into(), format!("no open request {request}")));
        }
        self.answers.lock().unwrap().push(request);
        Ok(())
    }
}

fn limits(buffer: usize, high: usize, low: usize) -> Limits {
    Limits {
        buffer,
        high,
        low,
        max_frame_events: 10,
        max_frame_bytes: 1 << 20,
        heartbeat: Duration::from_secs(60),
        write_timeout: Duration::from_secs(5),
    }
}

/// A session of `n` tokens and `end`, already in a memory log.
async fn session(n: u64) -> (Bus, Hub, SessionId) {
    let bus = Bus::memory(BusConfig::default());
    let id = SessionId::parse("s").unwrap();
    let mut events: Vec<_> = (1..=n)
        .map(|s| Event::new(s, "token", None, serde_json::json!({"text": "x"})).to_raw())
        .collect();
    events.push(Event::end(n + 1, weir_protocol::EndReason::Completed, None).to_raw());
    let mut fence = Fence(0);
    for chunk in events.chunks(7) {
        fence = bus.log.append(&id, chunk, fence).await.unwrap().fence;
    }
    let hub = Hub::new(bus.log.clone(), 16, 4);
    (bus, hub, id)
}

async fn subscription(bus: &Bus, hub: &Hub, id: &SessionId) -> Subscription {
    Subscription::new(id.clone(), hub.feed(id).await, bus.log.clone(), 0)
}

fn hello() -> ServerFrame {
    ServerFrame::Heartbeat { ts: 0.0 }
}

fn events_in(frame: &Outgoing) -> Vec<u64> {
    let Outgoing::Text(t) = frame else {
        return Vec::new();
    };
    let v: serde_json::Value = serde_json::from_str(t).unwrap();
    if v["type"] != "events" {
        return Vec::new();
    }
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn a_slow_reader_gets_coalesced_frames_within_the_watermarks() {
    let (bus, hub, id) = session(1000).await;
    let sub = subscription(&bus, &hub, &id).await;
    let (sink, mut frames) = fmpsc::channel::<Outgoing>(0);
    let (_client, incoming) = fmpsc::channel::<Incoming>(1);
    let actions = Recorder::default();
    let reader = tokio::spawn(async move {
        let mut seqs = Vec::new();
        let mut sizes = Vec::new();
        let mut close = None;
        while let Some(f) = frames.next().await {
            // A slow client: every frame takes a while to read.
            tokio::time::sleep(Duration::from_micros(300)).await;
            let s = events_in(&f);
            if !s.is_empty() {
                sizes.push(s.len());
            }
            seqs.extend(s);
            if let Outgoing::Close(code, _) = f {
                close = Some(code);
            }
        }
        (seqs, sizes, close)
    });
    let stats = serve(
        sink,
        incoming,
        futures::stream::pending(),
        sub,
        hello(),
        limits(100, 80, 30),
        &actions,
        Leave::default(),
    )
    .await;
    let (seqs, sizes, close) = reader.await.unwrap();
    assert_eq!(seqs, (1..=1001).collect::<Vec<_>>());
    assert_eq!(close, Some(close::DONE));
    assert!(
        sizes.iter().all(|n| *n <= 10),
        "a frame over max_frame_events"
    );
    assert!(
        sizes.iter().any(|n| *n > 1),
        "nothing was coalesced: {sizes:?}"
    );
    assert!(
        stats.max_buffered <= 100,
        "buffer bound broken: {}",
        stats.max_buffered
    );
    assert!(
        stats.backpressure_pauses > 0,
        "never reached the high watermark"
    );
    assert_eq!((stats.events, stats.close_code), (1001, Some(close::DONE)));
}

/// Serves a whole session to one client that reads at once; its frames.
async fn read_all(bus: &Bus, hub: &Hub, id: &SessionId) -> Vec<Outgoing> {
    let sub = subscription(bus, hub, id).await;
    let (sink, frames) = fmpsc::channel::<Outgoing>(0);
    let (_client, incoming) = fmpsc::channel::<Incoming>(1);
    let reader = tokio::spawn(frames.collect::<Vec<_>>());
    let notices = futures::stream::pending();
    let actions = Recorder::default();
    let l = limits(100, 80, 30);
    serve(
        sink,
        incoming,
        notices,
        sub,
        hello(),
        l,
        &actions,
        Leave::default(),
    )
    .await;
    reader.await.unwrap()
}

#[tokio::test]
async fn subscribers_at_one_position_write_the_same_frame_bytes() {
    let (bus, hub, id) = session(300).await;
    // The feed (and its frames) lives while someone holds it: here, for
    // both, as for subscribers connected at the same time; and a third
    // subscriber holds the frames all along (a lone one keeps none).
    let feed = hub.feed(&id).await;
    let _third = feed.frames();
    let first = read_all(&bus, &hub, &id).await;
    let second = read_all(&bus, &hub, &id).await;
    let texts = |frames: &[Outgoing]| -> Vec<(usize, String)> {
        frames
            .iter()
            .filter(|f| !events_in(f).is_empty())
            .map(|f| match f {
                Outgoing::Text(t) => (t.as_ptr() as usize, t.to_string()),
                Outgoing::Pong(_) | Outgoing::Close(..) => {
                    unreachable!("control frames hold no events")
                }
            })
            .collect()
    };
    let (a, b) = (texts(&first), texts(&second));
    let seqs: Vec<u64> = first.iter().flat_map(events_in).collect();
    assert_eq!(seqs, (1..=301).collect::<Vec<_>>());
    // Cut at multiples of max_frame_events (10), so both cut alike...
    assert!(a
        .iter()
        .all(|(_, t)| t.matches("\"seq\"").count() == 10 || t.contains("end")));
    assert_eq!(a.len(), b.len());
    for ((pa, ta), (pb, tb)) in a.iter().zip(&b) {
        assert_eq!(ta, tb);
        // ...and the second writes the bytes the first one's frame was
        // built in, not a copy.
        assert_eq!(pa, pb, "a frame built twice");
    }
}

#[tokio::test]
async fn a_client_that_never_reads_is_closed_with_4008() {
    let (bus, hub, id) = session(100).await;
    let sub = subscription(&bus, &hub, &id).await;
    let (sink, frames) = fmpsc::channel::<Outgoing>(0);
    let (_client, incoming) = fmpsc::channel::<Incoming>(1);
    let mut l = limits(50, 40, 10);
    l.write_timeout = Duration::from_millis(200);
    let stats = serve(
        sink,
        incoming,
        futures::stream::pending(),
        sub,
        hello(),
        l,
        &Recorder::default(),
        Leave::default(),
    )
    .await;
    assert_eq!(stats.close_code, Some(close::SLOW_CONSUMER));
    drop(frames);
}

#[tokio::test]
async fn idle_connections_get_heartbeats_acks_are_recorded_and_drain_says_reconnect() {
    let bus = Bus::memory(BusConfig::default());
    let hub = Hub::new(bus.log.clone(), 16, 4);
    let id = SessionId::parse("idle").unwrap();
    let sub = subscription(&bus, &hub, &id).await;
    let (sink, mut frames) = fmpsc::channel::<Outgoing>(8);
    let (mut client, incoming) = fmpsc::channel::<Incoming>(4);
    let mut l = limits(50, 40, 10);
    l.heartbeat = Duration::from_millis(50);
    let drain = CancellationToken::new();
    let actions = Arc::new(Recorder::default());
    let conn = {
        let (drain, actions) = (drain.clone(), actions.clone());
        tokio::spawn(async move {
            let notices = futures::stream::pending();
            serve(
                sink,
                incoming,
                notices,
                sub,
                hello(),
                l,
                actions.as_ref(),
                Leave::on_drain(drain),
            )
            .await
        })
    };
    let mut kinds = Vec::new();
    while kinds.iter().filter(|k| *k == "heartbeat").count() < 3 {
        let Some(Outgoing::Text(t)) = frames.next().await else {
            panic!("closed early")
        };
        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
        kinds.push(v["type"].as_str().unwrap().to_owned());
    }
    client
        .send(Incoming::Text(r#"{"type":"ack","seq":3}"#.into()))
        .await
        .unwrap();
    client
        .send(Incoming::Text("nonsense".into()))
        .await
        .unwrap();
    let error = loop {
        let Some(Outgoing::Text(t)) = frames.next().await else {
            panic!("closed early")
        };
        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
        if v["type"] == "error" {
            break v;
        }
    };
    assert_eq!(error["code"], "bad_request");
    assert_eq!(*actions.acks.lock().unwrap(), vec![3]);
    drain.cancel();
    let mut rest = Vec::new();
    while let Some(f) = frames.next().await {
        rest.push(f);
    }
    let Outgoing::Text(reconnect) = &rest[rest.len() - 2] else {
        panic!("{rest:?}")
    };
    assert!(reconnect.contains(r#""type":"reconnect""#));
    assert!(matches!(rest.last(), Some(Outgoing::Close(1012, _))));
    assert_eq!(conn.await.unwrap().close_code, Some(close::DRAINING));
}

#[tokio::test]
async fn an_input_frame_is_answered_and_a_refused_one_gets_an_error_frame_while_the_stream_goes_on()
{
    let bus = Bus::memory(BusConfig::default());
    let hub = Hub::new(bus.log.clone(), 16, 4);
    let id = SessionId::parse("answers").unwrap();
    let sub = subscription(&bus, &hub, &id).await;
    let (sink, mut frames) = fmpsc::channel::<Outgoing>(8);
    let (mut client, incoming) = fmpsc::channel::<Incoming>(4);
    let actions = Arc::new(Recorder::default());
    let conn = {
        let actions = actions.clone();
        tokio::spawn(async move {
            let l = limits(50, 40, 10);
            let notices = futures::stream::pending();
            serve(
                sink,
                incoming,
                notices,
                sub,
                hello(),
                l,
                actions.as_ref(),
                Leave::default(),
            )
            .await
        })
    };
    // Frames are handled in order: once "closed" is refused, "open" was taken.
    for request in ["open", "closed"] {
        let frame = format!(r#"{{"type":"input","request":"{request}","data":{{"text":"hi"}}}}"#);
        client.send(Incoming::Text(frame)).await.unwrap();
    }
    let error = loop {
        let Some(Outgoing::Text(t)) = frames.next().await else {
            panic!("closed early")
        };
        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
        if v["type"] == "error" {
            break v;
        }
    };
    assert_eq!(error["code"], "not_found");
    // The stream goes on: the session's events still arrive.
    let events = [Event::new(1, "token", None, serde_json::json!({"text": "x"})).to_raw()];
    bus.log.append(&id, &events, Fence(0)).await.unwrap();
    let delivered = loop {
        let Some(Outgoing::Text(t)) = frames.next().await else {
            panic!("closed early")
        };
        if t.contains(r#""type":"events""#) {
            break t;
        }
    };
    assert!(delivered.contains(r#""seq":1"#), "{delivered}");
    assert_eq!(*actions.answers.lock().unwrap(), ["open"]);
    drop(client);
    assert_eq!(conn.await.unwrap().close_code, None);
}

#[tokio::test]
async fn pings_are_answered_in_order_and_a_protocol_error_closes_with_its_code() {
    let bus = Bus::memory(BusConfig::default());
    let hub = Hub::new(bus.log.clone(), 16, 4);
    let id = SessionId::parse("pings").unwrap();
    let sub = subscription(&bus, &hub, &id).await;
    let (sink, frames) = fmpsc::channel::<Outgoing>(8);
    let (mut client, incoming) = fmpsc::channel::<Incoming>(4);
    let conn = tokio::spawn(async move {
        let notices = futures::stream::pending();
        let actions = Recorder::default();
        let drain = CancellationToken::new();
        let l = limits(50, 40, 10);
        serve(
            sink,
            incoming,
            notices,
            sub,
            hello(),
            l,
            &actions,
            Leave::on_drain(drain),
        )
        .await
    });
    client
        .send(Incoming::Ping(Bytes::from_static(b"1")))
        .await
        .unwrap();
    client
        .send(Incoming::Ping(Bytes::from_static(b"2")))
        .await
        .unwrap();
    client
        .send(Incoming::Invalid(1007, "text frame is not UTF-8"))
        .await
        .unwrap();
    let frames: Vec<Outgoing> = frames.collect().await;
    let pongs: Vec<_> = frames
        .iter()
        .filter_map(|f| match f {
            Outgoing::Pong(p) => Some(p.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(pongs, [Bytes::from_static(b"1"), Bytes::from_static(b"2")]);
    let n = frames.len();
    let Outgoing::Text(error) = &frames[n - 2] else {
        panic!("{frames:?}")
    };
    assert!(error.contains(r#""code":"bad_request""#), "{error}");
    assert!(matches!(&frames[n - 1], Outgoing::Close(1007, _)));
    assert_eq!(conn.await.unwrap().close_code, Some(1007));
}

/// A source that has every event ready at once and records each pull: how
/// much room the connection asked for (buffer − fill at that moment) and
/// how many events it got.
struct Recording {
    events: std::collections::VecDeque<weir_protocol::RawEvent>,
    chunk: usize,
    cursor: u64,
    frames: Arc<Frames>,
    pulls: Arc<Mutex<Vec<(usize, usize)>>>,
}

impl crate::subscription::Source for Recording {
    fn next(
        &mut self,
        max: usize,
    ) -> impl std::future::Future<Output = Result<Batch, DeliveryError>> + Send {
        let n = max.min(self.chunk).min(self.events.len());
        let batch: Vec<_> = self.events.drain(..n).collect();
        self.cursor += n as u64;
        self.pulls.lock().unwrap().push((max, n));
        async move {
            if batch.is_empty() {
                std::future::pending::<()>().await;
            }
            Ok(Batch::new(batch))
        }
    }
    fn cursor(&self) -> u64 {
        self.cursor
    }
    fn frames(&self) -> Arc<Frames> {
        self.frames.clone()
    }
}

/// protocol.md §6: once the buffer reaches the high watermark the
/// connection pulls nothing until the client has read it down to the low
/// one. Every pull is recorded with the fill at that moment, so a
/// connection without hysteresis (pulling whenever there is room) fails.
#[tokio::test]
async fn no_pull_between_reaching_the_high_watermark_and_falling_to_the_low_one() {
    let (buffer, high, low) = (100, 80, 30);
    let mut events: std::collections::VecDeque<_> = (1..=600u64)
        .map(|s| Event::new(s, "token", None, serde_json::json!({"text": "x"})).to_raw())
        .collect();
    events.push_back(Event::end(601, weir_protocol::EndReason::Completed, None).to_raw());
    let pulls = Arc::new(Mutex::new(Vec::new()));
    let source = Recording {
        events,
        chunk: 7,
        cursor: 0,
        frames: Arc::new(Frames::new(64)),
        pulls: pulls.clone(),
    };
    let (sink, mut frames) = fmpsc::channel::<Outgoing>(0);
    let (_client, incoming) = fmpsc::channel::<Incoming>(1);
    let reader = tokio::spawn(async move {
        let mut seqs = Vec::new();
        while let Some(f) = frames.next().await {
            // A slow client: the connection's pulls outrun its reads.
            tokio::time::sleep(Duration::from_micros(200)).await;
            seqs.extend(events_in(&f));
        }
        seqs
    });
    let actions = Recorder::default();
    let stats = serve(
        sink,
        incoming,
        futures::stream::pending(),
        source,
        hello(),
        limits(buffer, high, low),
        &actions,
        Leave::default(),
    )
    .await;
    assert_eq!(reader.await.unwrap(), (1..=601).collect::<Vec<_>>());
    assert_eq!(stats.close_code, Some(close::DONE));

    // The fill before each pull is what the room asked for leaves.
    let pulls = pulls.lock().unwrap().clone();
    let mut throttles = 0;
    for (k, pair) in pulls.windows(2).enumerate() {
        let ((room, got), (next_room, _)) = (pair[0], pair[1]);
        let after = buffer - room + got;
        let before_next = buffer - next_room;
        assert!(after <= buffer, "pull {k} overfilled the buffer: {after}");
        if after >= high {
            throttles += 1;
            assert!(
                before_next <= low,
                "pull {} came at fill {before_next}, after pull {k} had filled it to {after} \
                 (high {high}, low {low})",
                k + 1
            );
        }
    }
    assert!(
        throttles > 0,
        "the buffer never reached the high watermark: {pulls:?}"
    );
}
