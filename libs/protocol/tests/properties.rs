//! Property tests of the parsers that read what the bus and clients send
//! (the stable-toolchain counterpart of the `fuzz/` targets): bus messages
//! (one event or a batch) and client frames. Session ids and tokens are in
//! `auth_properties.rs`.

use proptest::prelude::*;
use serde_json::{json, Value};
use weir_protocol::event::encode_message;
use weir_protocol::frame::events_frame;
use weir_protocol::{ClientFrame, Event, EventError, RawEvent, ServerFrame};

/// Any JSON value a producer could put in `data`.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e15f64..1e15).prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn kind() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec!["token", "message", "tool_call", "usage", "end"])
            .prop_map(str::to_owned),
        any::<String>(),
    ]
}

/// 1 to `max - 1` events with seqs from `first` on.
fn events(first: u64, max: usize) -> impl Strategy<Value = Vec<Event>> {
    let event = (
        kind(),
        0f64..2e12,
        prop::option::of(any::<String>()),
        json_value(),
    );
    prop::collection::vec(event, 1..max).prop_map(move |evs| {
        (first..)
            .zip(evs)
            .map(|(seq, (kind, ts, source, data))| Event {
                seq,
                kind,
                ts,
                source,
                data,
            })
            .collect()
    })
}

fn raw(events: &[Event]) -> Vec<RawEvent> {
    events.iter().map(Event::to_raw).collect()
}

proptest! {
    #[test]
    fn a_message_round_trips(evs in events(1, 20), first in 1u64..1 << 53) {
        let evs: Vec<Event> = evs.into_iter().enumerate()
            .map(|(i, e)| Event { seq: first + i as u64, ..e })
            .collect();
        let raws = raw(&evs);
        let parsed = RawEvent::parse_message(&encode_message(&raws)).unwrap();
        prop_assert_eq!(RawEvent::parse_message(&encode_message(&parsed)), Ok(parsed.clone()));
        prop_assert_eq!(parsed.len(), evs.len());
        for (p, e) in parsed.iter().zip(&evs) {
            prop_assert_eq!(&p.json[..], &serde_json::to_vec(e).unwrap()[..]);
            prop_assert_eq!((p.seq, p.end), (e.seq, e.kind == "end"));
            // serde_json's float parsing may be one ulp off what it wrote.
            prop_assert!((p.ts - e.ts).abs() <= e.ts * 1e-15, "{} != {}", p.ts, e.ts);
            let back: Event = serde_json::from_slice(&p.json).unwrap();
            prop_assert_eq!((&back.kind, &back.source), (&e.kind, &e.source));
        }
        // What a client receives: one frame whose events are those objects.
        let frame: Value = serde_json::from_str(&events_frame(&parsed)).unwrap();
        let sent: Vec<u64> = frame["events"].as_array().unwrap().iter()
            .map(|e| e["seq"].as_u64().unwrap()).collect();
        prop_assert_eq!(sent, parsed.iter().map(|e| e.seq).collect::<Vec<_>>());
    }

    #[test]
    fn any_bytes_parse_or_give_an_error(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        match RawEvent::parse_message(&bytes) {
            Err(e) => prop_assert!(!e.to_string().is_empty()),
            Ok(evs) => for e in evs {
                prop_assert!(serde_json::from_slice::<Value>(&e.json).is_ok());
            },
        }
    }

    #[test]
    fn a_cut_message_is_refused(evs in events(1, 6), cut in any::<prop::sample::Index>()) {
        let message = encode_message(&raw(&evs));
        let at = cut.index(message.len());
        prop_assert!(matches!(RawEvent::parse_message(&message[..at]), Err(EventError::Json(_))));
    }

    #[test]
    fn a_message_with_a_byte_that_is_not_utf8_is_refused(
        evs in events(1, 4), at in any::<prop::sample::Index>(), byte in 0x80u8..=0xff,
    ) {
        let mut message = encode_message(&raw(&evs)).to_vec();
        let at = at.index(message.len());
        message[at] = byte;
        prop_assume!(std::str::from_utf8(&message).is_err());
        prop_assert!(matches!(RawEvent::parse_message(&message), Err(EventError::Json(_))));
    }

    #[test]
    fn an_escape_is_accepted_only_if_it_is_text(
        a in prop_oneof![any::<u16>(), 0xD800u16..0xE000],
        b in prop_oneof![any::<u16>(), 0xD800u16..0xE000],
        tail in "[a-z\\\\]{0,2}",
    ) {
        let text = format!(r#""\u{a:04x}\u{b:04x}{tail}""#);
        let message = format!(r#"{{"seq":1,"kind":"token","data":{{"text":{text}}}}}"#);
        // The oracle: serde reading the string itself (as the front-end encoders do).
        let is_text = serde_json::from_str::<String>(&text).is_ok();
        prop_assert_eq!(RawEvent::parse_message(message.as_bytes()).is_ok(), is_text, "{}", text);
    }

    #[test]
    fn a_batch_is_accepted_only_with_contiguous_seqs(
        seqs in prop::collection::vec(
            prop_oneof![0u64..6, Just(u64::MAX - 1), Just(u64::MAX)], 2..6),
    ) {
        let batch: Vec<Value> = seqs.iter().map(|s| json!({"seq": s, "kind": "token", "ts": 1})).collect();
        let result = RawEvent::parse_message(Value::Array(batch).to_string().as_bytes());
        let zero = seqs.iter().position(|&s| s == 0);
        let gap = seqs.windows(2).position(|w| w[0].checked_add(1) != Some(w[1]));
        match (zero, gap) {
            (None, None) => prop_assert_eq!(
                result.unwrap().iter().map(|e| e.seq).collect::<Vec<_>>(), seqs),
            // Items are checked in order, each for a zero seq before contiguity.
            (Some(z), g) if g.is_none_or(|g| z <= g + 1) =>
                prop_assert_eq!(result, Err(EventError::ZeroSeq)),
            (_, Some(g)) => prop_assert_eq!(
                result, Err(EventError::NotContiguous { prev: seqs[g], next: seqs[g + 1] })),
            (Some(_), None) => unreachable!("a zero without a gap is the first item"),
        }
    }

    #[test]
    fn every_item_of_a_batch_is_an_object(item in json_value(), at in 0usize..3) {
        prop_assume!(!item.is_object());
        let mut items: Vec<Value> = (1..=2).map(|s| json!({"seq": s, "kind": "token"})).collect();
        items.insert(at, item);
        let result = RawEvent::parse_message(Value::Array(items).to_string().as_bytes());
        prop_assert!(matches!(result, Err(EventError::Json(_))), "{:?}", result);
    }

    #[test]
    fn client_frames_round_trip(seq in any::<u64>(), which in 0usize..4) {
        let frame = [ClientFrame::Ack { seq }, ClientFrame::Pause, ClientFrame::Resume, ClientFrame::Cancel][which].clone();
        let text = serde_json::to_string(&frame).unwrap();
        prop_assert_eq!(ClientFrame::parse(&text), Ok(frame));
    }

    #[test]
    fn any_text_is_a_frame_or_an_error_frame(text in any::<String>(), value in json_value()) {
        for text in [text, value.to_string(), json!({"type": value}).to_string()] {
            if let Err(message) = ClientFrame::parse(&text) {
                let json = ServerFrame::error("bad_request", message.clone()).to_json();
                let back: ServerFrame = serde_json::from_str(&json).unwrap();
                prop_assert_eq!(back, ServerFrame::error("bad_request", message));
            }
        }
    }
}
