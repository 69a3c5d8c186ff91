//! A stored JetStream message as edges and readers parse it
//! (`RawEvent::parse_message`): one event object or a batch (an array of
//! events with contiguous seqs). Whatever is accepted must be what the
//! contract says and survive re-encoding; the edge forwards it to clients.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_protocol::event::encode_message;
use weir_protocol::frame::events_frame;
use weir_protocol::RawEvent;

fuzz_target!(|data: &[u8]| {
    let Ok(events) = RawEvent::parse_message(data) else {
        return;
    };
    assert!(!events.is_empty(), "an accepted message has events");
    assert!(events[0].seq >= 1);
    for pair in events.windows(2) {
        assert_eq!(Some(pair[1].seq), pair[0].seq.checked_add(1), "contiguous");
    }
    for ev in &events {
        assert_eq!(RawEvent::parse(&ev.json).as_ref(), Ok(ev), "parses alone");
    }
    // A retry or a copy publishes the re-encoded message.
    assert_eq!(
        RawEvent::parse_message(&encode_message(&events)),
        Ok(events.clone())
    );
    // What a client receives: a JSON frame whose events are objects with their seqs.
    let frame: serde_json::Value =
        serde_json::from_str(&events_frame(&events)).expect("an events frame is JSON");
    let sent = frame["events"].as_array().expect("events is an array");
    assert_eq!(sent.len(), events.len());
    for (json, ev) in sent.iter().zip(&events) {
        assert!(json.is_object(), "an event is an object: {json}");
        assert_eq!(json["seq"].as_u64(), Some(ev.seq));
    }
});
