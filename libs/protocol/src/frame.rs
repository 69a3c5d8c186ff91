//! WebSocket frames (protocol.md §5). Every frame is one JSON text message.

use serde::{Deserialize, Serialize};

use crate::event::RawEvent;

/// Close codes the edge sends.
pub mod close {
    pub const DONE: u16 = 1000;
    /// A client frame that breaks RFC 6455 (RFC 6455 §7.4.1).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A client text frame that is not UTF-8.
    pub const INVALID_DATA: u16 = 1007;
    pub const TOO_LARGE: u16 = 1009;
    pub const DRAINING: u16 = 1012;
    pub const UNAUTHORIZED: u16 = 4001;
    pub const NO_SUCH_SESSION: u16 = 4004;
    pub const SLOW_CONSUMER: u16 = 4008;
    pub const EXPIRED: u16 = 4010;
}

/// Server → client frames other than `events` (which [`events_frame`] builds
/// from raw event bytes without re-encoding them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Hello {
        session: String,
        node: String,
        after: u64,
        status: String,
    },
    Heartbeat {
        ts: f64,
    },
    Error {
        code: String,
        message: String,
    },
    Reconnect {
        reason: String,
    },
    /// An operator's broadcast (protocol.md §7): never part of any log.
    Notice {
        data: serde_json::Value,
    },
}

impl ServerFrame {
    pub fn error(code: &str, message: impl Into<String>) -> Self {
        ServerFrame::Error {
            code: code.to_owned(),
            message: message.into(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("frames always serialise")
    }
}

/// `{"type":"events","events":[…]}` from the events' own bytes.
pub fn events_frame<'a>(events: impl IntoIterator<Item = &'a RawEvent>) -> String {
    let mut out = String::with_capacity(256);
    out.push_str(r#"{"type":"events","events":["#);
    for (i, ev) in events.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // Event bytes came from a JSON parser, so they are valid UTF-8.
        out.push_str(std::str::from_utf8(&ev.json).unwrap_or("null"));
    }
    out.push_str("]}");
    out
}

/// Client → server frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    Ack {
        seq: u64,
    },
    Pause,
    Resume,
    Cancel,
    /// The answer to the session's open `input_request` (protocol.md §9);
    /// checked like `POST /v1/sessions/{id}/input`'s body.
    Input {
        request: String,
        data: serde_json::Value,
    },
}

impl ClientFrame {
    /// Parses a client text frame; the error message is what the client is told.
    pub fn parse(text: &str) -> Result<ClientFrame, String> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("frame is not JSON: {e}"))?;
        serde_json::from_value(value).map_err(|e| format!("unknown or malformed frame: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Event;

    #[test]
    fn server_frames_match_the_contract() {
        let hello = ServerFrame::Hello {
            session: "s1".into(),
            node: "e1".into(),
            after: 4,
            status: "streaming".into(),
        };
        assert_eq!(
            hello.to_json(),
            r#"{"type":"hello","session":"s1","node":"e1","after":4,"status":"streaming"}"#
        );
        assert_eq!(
            ServerFrame::error("bad_request", "x").to_json(),
            r#"{"type":"error","code":"bad_request","message":"x"}"#
        );
    }

    #[test]
    fn events_frame_embeds_raw_events() {
        let evs: Vec<_> = (1..=2)
            .map(|s| Event::new(s, "token", None, serde_json::json!({"text":"a"})).to_raw())
            .collect();
        let v: serde_json::Value = serde_json::from_str(&events_frame(&evs)).unwrap();
        assert_eq!(v["type"], "events");
        assert_eq!(v["events"][1]["seq"], 2);
    }

    #[test]
    fn client_frames_parse_or_explain() {
        assert_eq!(
            ClientFrame::parse(r#"{"type":"ack","seq":7}"#),
            Ok(ClientFrame::Ack { seq: 7 })
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"pause"}"#),
            Ok(ClientFrame::Pause)
        );
        assert!(ClientFrame::parse("not json")
            .unwrap_err()
            .contains("not JSON"));
        assert!(ClientFrame::parse(r#"{"type":"dance"}"#).is_err());
        assert!(ClientFrame::parse(r#"{"type":"ack"}"#).is_err());
        assert!(ClientFrame::parse(r#"{"type":"ack","seq":-1}"#).is_err());
    }

    #[test]
    fn an_input_frame_carries_the_request_and_its_data() {
        assert_eq!(
            ClientFrame::parse(r#"{"type":"input","request":"ask_3","data":{"text":"hi"}}"#),
            Ok(ClientFrame::Input {
                request: "ask_3".into(),
                data: serde_json::json!({"text": "hi"}),
            })
        );
        assert!(ClientFrame::parse(r#"{"type":"input","data":{}}"#).is_err());
    }
}
