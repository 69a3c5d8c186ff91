//! Events: one JSON object per item of a session's output (protocol.md §1).

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The kinds this crate names; any other kind is passed through untouched.
pub mod kind {
    pub const TOKEN: &str = "token";
    pub const MESSAGE: &str = "message";
    pub const TOOL_CALL: &str = "tool_call";
    pub const TOOL_RESULT: &str = "tool_result";
    pub const USAGE: &str = "usage";
    pub const STATUS: &str = "status";
    pub const ERROR: &str = "error";
    pub const END: &str = "end";
}

/// An event as a producer builds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub kind: String,
    pub ts: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default)]
    pub data: serde_json::Value,
}

impl Event {
    pub fn new(seq: u64, kind: &str, source: Option<&str>, data: serde_json::Value) -> Self {
        Event {
            seq,
            kind: kind.to_owned(),
            ts: crate::now_ms(),
            source: source.map(str::to_owned),
            data,
        }
    }

    /// The `end` event with its reason (`completed`, `cancelled`, `failed`).
    pub fn end(seq: u64, reason: crate::EndReason, stop_reason: Option<&str>) -> Self {
        let mut data = serde_json::json!({ "reason": reason.as_str() });
        if let Some(stop) = stop_reason {
            data["stop_reason"] = stop.into();
        }
        Event::new(seq, kind::END, None, data)
    }

    /// An `error` event: `{code, message}`.
    pub fn error(seq: u64, code: &str, message: &str) -> Self {
        Event::new(
            seq,
            kind::ERROR,
            None,
            serde_json::json!({ "code": code, "message": message }),
        )
    }

    pub fn to_raw(&self) -> RawEvent {
        let bytes = serde_json::to_vec(self).expect("an Event always serialises");
        RawEvent {
            seq: self.seq,
            ts: self.ts,
            end: self.kind == kind::END,
            json: Bytes::from(bytes),
        }
    }
}

/// An event kept as the exact JSON the producer wrote, with the few fields an
/// edge needs parsed out. Cloning is cheap (the bytes are shared).
#[derive(Debug, Clone, PartialEq)]
pub struct RawEvent {
    pub seq: u64,
    pub ts: f64,
    /// True for the `end` event, the last of every session.
    pub end: bool,
    pub json: Bytes,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EventError {
    #[error("not a JSON event or array of events: {0}")]
    Json(String),
    #[error("event seq must be >= 1")]
    ZeroSeq,
    #[error("events of one message must have contiguous seqs: {prev} then {next}")]
    NotContiguous { prev: u64, next: u64 },
    #[error("an empty batch carries no events")]
    Empty,
}

#[derive(Deserialize)]
struct Head<'a> {
    seq: u64,
    #[serde(borrow)]
    kind: &'a str,
    #[serde(default)]
    ts: f64,
}

impl RawEvent {
    /// Parses one event object, keeping its bytes.
    pub fn parse(json: &[u8]) -> Result<RawEvent, EventError> {
        Self::parse_bytes(Bytes::copy_from_slice(json))
    }

    fn parse_bytes(json: Bytes) -> Result<RawEvent, EventError> {
        let head: Head<'_> =
            serde_json::from_slice(&json).map_err(|e| EventError::Json(e.to_string()))?;
        if head.seq == 0 {
            return Err(EventError::ZeroSeq);
        }
        Ok(RawEvent {
            seq: head.seq,
            ts: head.ts,
            end: head.kind == kind::END,
            json: json.clone(),
        })
    }

    /// Parses a bus message: one event object, or an array of events with
    /// contiguous seqs (protocol.md §2).
    pub fn parse_message(payload: &[u8]) -> Result<Vec<RawEvent>, EventError> {
        let first = payload.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'[') {
            return Ok(vec![RawEvent::parse(payload)?]);
        }
        let items: Vec<&RawValue> =
            serde_json::from_slice(payload).map_err(|e| EventError::Json(e.to_string()))?;
        if items.is_empty() {
            return Err(EventError::Empty);
        }
        let mut out: Vec<RawEvent> = Vec::with_capacity(items.len());
        for item in items {
            let ev = RawEvent::parse(item.get().as_bytes())?;
            if let Some(prev) = out.last() {
                if ev.seq != prev.seq + 1 {
                    return Err(EventError::NotContiguous {
                        prev: prev.seq,
                        next: ev.seq,
                    });
                }
            }
            out.push(ev);
        }
        Ok(out)
    }

    /// The kind of this event, read from its JSON (only needed off the hot path).
    pub fn kind(&self) -> String {
        serde_json::from_slice::<Head<'_>>(&self.json)
            .map(|h| h.kind.to_owned())
            .unwrap_or_default()
    }
}

/// Encodes a batch of events as one bus message: a single object for one
/// event, an array for several.
pub fn encode_message(events: &[RawEvent]) -> Bytes {
    if let [one] = events {
        return one.json.clone();
    }
    let mut out = Vec::with_capacity(events.iter().map(|e| e.json.len() + 1).sum::<usize>() + 2);
    out.push(b'[');
    for (i, ev) in events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&ev.json);
    }
    out.push(b']');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_and_batch_messages() {
        let one = br#"{"seq":3,"kind":"token","ts":1.5,"data":{"text":"a"}}"#;
        let evs = RawEvent::parse_message(one).unwrap();
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].seq, 3);
        assert_eq!(&evs[0].json[..], &one[..]);

        let batch = br#"[{"seq":4,"kind":"token","ts":1,"data":{}}, {"seq":5,"kind":"end","ts":2,"data":{"reason":"completed"}}]"#;
        let evs = RawEvent::parse_message(batch).unwrap();
        assert_eq!(evs.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![4, 5]);
        assert!(evs[1].end && !evs[0].end);
        assert_eq!(
            &evs[1].json[..],
            br#"{"seq":5,"kind":"end","ts":2,"data":{"reason":"completed"}}"#
        );
    }

    #[test]
    fn rejects_gaps_zero_seq_and_garbage() {
        let gap = br#"[{"seq":4,"kind":"token","ts":1},{"seq":6,"kind":"token","ts":1}]"#;
        assert_eq!(
            RawEvent::parse_message(gap),
            Err(EventError::NotContiguous { prev: 4, next: 6 })
        );
        assert_eq!(
            RawEvent::parse_message(br#"{"seq":0,"kind":"x"}"#),
            Err(EventError::ZeroSeq)
        );
        assert_eq!(RawEvent::parse_message(b"[]"), Err(EventError::Empty));
        assert!(matches!(
            RawEvent::parse_message(b"nope"),
            Err(EventError::Json(_))
        ));
    }

    #[test]
    fn encode_round_trips() {
        let evs: Vec<RawEvent> = (1..=3)
            .map(|s| {
                Event::new(s, kind::TOKEN, Some("a"), serde_json::json!({"text": "x"})).to_raw()
            })
            .collect();
        assert_eq!(RawEvent::parse_message(&encode_message(&evs)).unwrap(), evs);
        assert_eq!(
            RawEvent::parse_message(&encode_message(&evs[..1])).unwrap(),
            evs[..1]
        );
    }

    #[test]
    fn unknown_kinds_and_fields_pass_through() {
        let j = br#"{"seq":1,"kind":"thought","ts":1,"data":{"x":1},"extra":true}"#;
        let ev = RawEvent::parse(j).unwrap();
        assert_eq!(&ev.json[..], &j[..]);
        assert_eq!(ev.kind(), "thought");
    }
}
