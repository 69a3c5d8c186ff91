//! Events: one JSON object per item of a session's output (protocol.md §1).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

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
        let mut raw = write_events(self.seq, [self.parts()]);
        raw.pop().expect("one event in, one out")
    }

    pub fn parts(&self) -> EventParts<'_> {
        EventParts {
            kind: &self.kind,
            ts: self.ts,
            source: self.source.as_deref(),
            data: &self.data,
        }
    }
}

/// An event before it has a seq, borrowed from wherever the producer keeps it.
#[derive(Debug, Clone, Copy)]
pub struct EventParts<'a> {
    pub kind: &'a str,
    pub ts: f64,
    pub source: Option<&'a str>,
    pub data: &'a serde_json::Value,
}

/// Writes events with seqs from `first_seq` on, byte for byte as serialising
/// [`Event`]s would, into one buffer that the returned events share (one
/// allocation for a whole batch).
pub fn write_events<'a>(
    first_seq: u64,
    parts: impl IntoIterator<Item = EventParts<'a>>,
) -> Vec<RawEvent> {
    let mut buf = Vec::with_capacity(128);
    let mut heads = Vec::new();
    for (seq, p) in (first_seq..).zip(parts) {
        let start = buf.len();
        write_event(&mut buf, seq, &p);
        heads.push((start, buf.len(), seq, p.ts, p.kind == kind::END));
    }
    let bytes = Bytes::from(buf);
    heads
        .into_iter()
        .map(|(start, end, seq, ts, is_end)| RawEvent {
            seq,
            ts,
            end: is_end,
            json: bytes.slice(start..end),
        })
        .collect()
}

fn write_event(out: &mut Vec<u8>, seq: u64, p: &EventParts<'_>) {
    put(out, b"{\"seq\":", &seq);
    put(out, b",\"kind\":", p.kind);
    put(out, b",\"ts\":", &p.ts);
    if let Some(source) = p.source {
        put(out, b",\"source\":", source);
    }
    put(out, b",\"data\":", p.data);
    out.push(b'}');
}

fn put<T: Serialize + ?Sized>(out: &mut Vec<u8>, name: &[u8], value: &T) {
    out.extend_from_slice(name);
    // Writing to a Vec cannot fail, and a JSON value always serialises.
    serde_json::to_writer(&mut *out, value).expect("JSON values always serialise");
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
    kind: std::borrow::Cow<'a, str>,
    #[serde(default)]
    ts: f64,
}

impl Head<'_> {
    /// `(seq, ts, end)` of a valid event.
    fn fields(&self) -> Result<(u64, f64, bool), EventError> {
        if self.seq == 0 {
            return Err(EventError::ZeroSeq);
        }
        Ok((self.seq, self.ts, self.kind == kind::END))
    }
}

impl RawEvent {
    /// Parses one event object, keeping a copy of its bytes.
    pub fn parse(json: &[u8]) -> Result<RawEvent, EventError> {
        check_text(json)?;
        if json.get(skip_ws(json, 0)) != Some(&b'{') {
            return Err(EventError::Json("an event is a JSON object".into()));
        }
        let head: Head<'_> =
            serde_json::from_slice(json).map_err(|e| EventError::Json(e.to_string()))?;
        let (seq, ts, end) = head.fields()?;
        let json = Bytes::copy_from_slice(json);
        Ok(RawEvent { seq, ts, end, json })
    }

    /// Parses a bus message: one event object, or an array of events with
    /// contiguous seqs (protocol.md §2). One pass over the bytes; the events
    /// share one copy of the payload (so they never pin the buffer the
    /// message was read into).
    pub fn parse_message(payload: &[u8]) -> Result<Vec<RawEvent>, EventError> {
        let start = skip_ws(payload, 0);
        if payload.get(start) != Some(&b'[') {
            return Ok(vec![RawEvent::parse(payload)?]);
        }
        check_text(payload)?;
        let bytes = Bytes::copy_from_slice(payload);
        let mut out: Vec<RawEvent> = Vec::new();
        let mut pos = skip_ws(&bytes, start + 1);
        if bytes.get(pos) == Some(&b']') {
            return match skip_ws(&bytes, pos + 1) == bytes.len() {
                true => Err(EventError::Empty),
                false => Err(EventError::Json(
                    "trailing characters after the array".into(),
                )),
            };
        }
        loop {
            // Serde reads a struct from an array too; an event is an object.
            if bytes.get(pos) != Some(&b'{') {
                return Err(EventError::Json("an event is a JSON object".into()));
            }
            let mut items =
                serde_json::Deserializer::from_slice(&bytes[pos..]).into_iter::<Head<'_>>();
            let head = match items.next() {
                Some(Ok(h)) => h,
                Some(Err(e)) => return Err(EventError::Json(e.to_string())),
                None => return Err(EventError::Json("unterminated array".into())),
            };
            let end = pos + items.byte_offset();
            let (seq, ts, is_end) = head.fields()?;
            let ev = RawEvent {
                seq,
                ts,
                end: is_end,
                json: bytes.slice(pos..end),
            };
            if let Some(prev) = out.last() {
                if prev.seq.checked_add(1) != Some(ev.seq) {
                    return Err(EventError::NotContiguous {
                        prev: prev.seq,
                        next: ev.seq,
                    });
                }
            }
            out.push(ev);
            pos = skip_ws(&bytes, end);
            match bytes.get(pos) {
                Some(b',') => pos = skip_ws(&bytes, pos + 1),
                Some(b']') if skip_ws(&bytes, pos + 1) == bytes.len() => return Ok(out),
                _ => return Err(EventError::Json("malformed array of events".into())),
            }
        }
    }

    /// The kind of this event, read from its JSON (only needed off the hot path).
    pub fn kind(&self) -> String {
        serde_json::from_slice::<Head<'_>>(&self.json)
            .map(|h| h.kind.into_owned())
            .unwrap_or_default()
    }
}

/// Events are forwarded as they are, inside text frames and SSE lines, and
/// parsed whole by the front-end encoders: the strings serde skips over
/// here (in `data`, `source`) must be text too. Serde checks neither their
/// UTF-8 nor that a `\u` escape is a character (a lone surrogate such as
/// `"\udc00"` fits JSON's grammar but is no string, and serde refuses it
/// wherever it reads one into a string); the hex digits it does check.
fn check_text(b: &[u8]) -> Result<(), EventError> {
    if let Err(e) = std::str::from_utf8(b) {
        return Err(EventError::Json(format!("not UTF-8: {e}")));
    }
    check_numbers(b)?;
    let hex = |at: usize| {
        let digits = std::str::from_utf8(b.get(at..at + 4)?).ok()?;
        u16::from_str_radix(digits, 16).ok()
    };
    let lone = || EventError::Json("a \\u escape of a lone surrogate is not text".into());
    let mut i = 0;
    while let Some(at) = b.get(i..).and_then(|rest| memchr::memchr(b'\\', rest)) {
        let at = i + at;
        i = at + 2;
        if b.get(at + 1) != Some(&b'u') {
            continue;
        }
        match hex(at + 2) {
            Some(0xD800..=0xDBFF) => {
                let low = (b.get(at + 6..at + 8) == Some(b"\\u")).then(|| hex(at + 8));
                match low.flatten() {
                    Some(0xDC00..=0xDFFF) => i = at + 12,
                    _ => return Err(lone()),
                }
            }
            Some(0xDC00..=0xDFFF) => return Err(lone()),
            _ => i = at + 6,
        }
    }
    Ok(())
}

/// A number serde skips over (in `data`) may be beyond f64's range
/// (`1e999`, an integer of 309 digits or more): parsers that read it as a
/// number, serde_json and the front-end encoders among them, refuse it.
/// Only an exponent or a long run of digits can do that, so the message is
/// parsed whole only when it has one.
fn check_numbers(b: &[u8]) -> Result<(), EventError> {
    let exponent = memchr::memchr2_iter(b'e', b'E', b)
        .any(|at| at > 0 && (b[at - 1].is_ascii_digit() || b[at - 1] == b'.'));
    if !exponent && !has_digit_run(b, 309) {
        return Ok(());
    }
    match serde_json::from_slice::<serde_json::Value>(b) {
        Err(e) if e.to_string().starts_with("number out of range") => Err(EventError::Json(
            format!("a number beyond f64's range: {e}"),
        )),
        _ => Ok(()),
    }
}

/// Whether `b` holds `len` digits in a row. On the path of every bus
/// message, so it looks only at every `len / 2`-th byte: a run that long
/// holds two of them next to each other, and only there is the run measured.
fn has_digit_run(b: &[u8], len: usize) -> bool {
    let stride = (len / 2).max(1);
    (stride..b.len()).step_by(stride).any(|at| {
        b[at].is_ascii_digit() && b[at - stride].is_ascii_digit() && {
            let start = b[..at]
                .iter()
                .rposition(|c| !c.is_ascii_digit())
                .map_or(0, |p| p + 1);
            let end = b[at..]
                .iter()
                .position(|c| !c.is_ascii_digit())
                .map_or(b.len(), |p| at + p);
            end - start >= len
        }
    })
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
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
        for bad in [
            &b"nope"[..],
            b"[",
            b"[{\"seq\":1,\"kind\":\"x\"}",
            b"[{\"seq\":1,\"kind\":\"x\"} {\"seq\":2,\"kind\":\"x\"}]",
            b"[{\"seq\":1,\"kind\":\"x\"}] x",
            b"[1]",
            b"[{\"seq\":1,\"kind\":\"x\"},]",
            b"[] x",
        ] {
            assert!(
                matches!(RawEvent::parse_message(bad), Err(EventError::Json(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// What `fuzz/`'s bus_message target found: serde skips over strings
    /// it does not keep without checking their UTF-8 or their escapes, reads a struct from
    /// an array, and the contiguity check overflowed at `u64::MAX`.
    #[test]
    fn a_digit_run_is_found_wherever_it_stands() {
        for (before, run, after) in [
            (0, 309, 0),
            (1, 309, 5),
            (153, 309, 0),
            (400, 308, 3),
            (7, 320, 155),
        ] {
            let b = format!(
                "{}{}{}",
                "x".repeat(before),
                "7".repeat(run),
                "y".repeat(after)
            );
            assert_eq!(
                has_digit_run(b.as_bytes(), 309),
                run >= 309,
                "{before} {run} {after}"
            );
        }
        let digits_apart = format!("1{}2", "a".repeat(153)).repeat(20);
        assert!(!has_digit_run(digits_apart.as_bytes(), 309));
    }

    #[test]
    fn rejects_bad_utf8_array_events_and_seq_overflow() {
        let bad_utf8 = b"{\"seq\":1,\"kind\":\"token\",\"data\":{\"text\":\"\xff\"}}";
        for message in [bad_utf8.to_vec(), [&b"["[..], bad_utf8, b"]"].concat()] {
            let e = RawEvent::parse_message(&message).unwrap_err();
            assert!(e.to_string().contains("not UTF-8"), "{e}");
        }
        for message in [
            &br#"[[1,"token",0]]"#[..],
            br#"[{"seq":1,"kind":"x"},[2,"x",0]]"#,
        ] {
            let e = RawEvent::parse_message(message).unwrap_err();
            assert_eq!(e, EventError::Json("an event is a JSON object".into()));
        }
        for lone in [
            r#""\udc00""#,
            r#""\ud800""#,
            r#""\ud800\u0041""#,
            r#""\\\udc00""#,
        ] {
            let message = format!(r#"{{"seq":1,"kind":"x","data":{{"text":{lone}}}}}"#);
            let e = RawEvent::parse_message(message.as_bytes()).unwrap_err();
            assert!(e.to_string().contains("lone surrogate"), "{lone}: {e}");
        }
        let huge = format!("1{}", "0".repeat(309));
        for number in ["1e999", "-2.5E+400", huge.as_str()] {
            let message = format!(r#"{{"seq":1,"kind":"x","data":{{"n":{number}}}}}"#);
            for message in [message.clone(), format!("[{message}]")] {
                let e = RawEvent::parse_message(message.as_bytes()).unwrap_err();
                assert!(
                    e.to_string().contains("beyond f64's range"),
                    "{number}: {e}"
                );
            }
        }
        let fine = format!(
            r#"{{"seq":1,"kind":"x","data":{{"n":1e300,"t":"1e999","m":{}}}}}"#,
            "9".repeat(300)
        );
        assert!(RawEvent::parse_message(fine.as_bytes()).is_ok());
        for text in [r#""\ud83d\ude00""#, r#""\\udc00""#, r#""\u00e9\n""#] {
            let message = format!(r#"{{"seq":1,"kind":"x","data":{{"text":{text}}}}}"#);
            assert!(
                RawEvent::parse_message(message.as_bytes()).is_ok(),
                "{text}"
            );
        }
        let max = format!(
            r#"[{{"seq":{},"kind":"x"}},{{"seq":1,"kind":"x"}}]"#,
            u64::MAX
        );
        assert_eq!(
            RawEvent::parse_message(max.as_bytes()),
            Err(EventError::NotContiguous {
                prev: u64::MAX,
                next: 1
            })
        );
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
    fn written_events_are_what_serde_writes_and_share_one_buffer() {
        let events = [
            Event::new(
                7,
                kind::TOKEN,
                Some("a\"b"),
                serde_json::json!({"text": "x\n"}),
            ),
            Event::new(
                8,
                kind::END,
                None,
                serde_json::json!({"reason": "completed"}),
            ),
        ];
        let raw = write_events(7, events.iter().map(Event::parts));
        for (r, e) in raw.iter().zip(&events) {
            assert_eq!(&r.json[..], &serde_json::to_vec(e).unwrap()[..]);
            assert_eq!((r.seq, r.ts, r.end), (e.seq, e.ts, e.kind == kind::END));
        }
        assert_eq!(
            raw[1].json.as_ptr(),
            raw[0].json[raw[0].json.len()..].as_ptr()
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
