//! Session ids, statuses, run requests and control operations.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A session id: `[A-Za-z0-9_-]{1,64}`. It becomes a NATS subject token and a
/// Redis key, so nothing else is allowed in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SessionId(String);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("session ids are 1 to 64 characters of A-Z a-z 0-9 _ -")]
pub struct SessionIdError;

impl SessionId {
    pub fn parse(s: &str) -> Result<SessionId, SessionIdError> {
        if valid_id(s) {
            Ok(SessionId(s.to_owned()))
        } else {
            Err(SessionIdError)
        }
    }

    /// A fresh random id (22 characters: 128 bits, URL-safe).
    pub fn random() -> SessionId {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut bits = uuid_bits();
        let s: String = (0..22)
            .map(|_| {
                let c = ALPHABET[(bits & 63) as usize] as char;
                bits >>= 6;
                c
            })
            .collect();
        SessionId(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `weir.ev.<session>`
    pub fn events_subject(&self) -> String {
        format!("weir.ev.{}", self.0)
    }

    /// `weir.ctl.<session>`
    pub fn control_subject(&self) -> String {
        format!("weir.ctl.{}", self.0)
    }
}

/// The rule of session and thread ids: `[A-Za-z0-9_-]{1,64}`.
pub(crate) fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// 128 random bits from the standard library's per-process random hasher
/// keys mixed with the clock: ids need to be unique, not secret.
fn uuid_bits() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let mut out = 0u128;
    for half in 0..2u64 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(nanos);
        h.write_u64(n);
        h.write_u64(half);
        out = (out << 64) | h.finish() as u128;
    }
    out
}

impl TryFrom<String> for SessionId {
    type Error = SessionIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        SessionId::parse(&s)
    }
}

impl From<SessionId> for String {
    fn from(id: SessionId) -> String {
        id.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A session's lifecycle (protocol.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    Streaming,
    Paused,
    /// Waiting for a person's answer to an `input_request` (protocol.md §9).
    InputRequired,
    Completed,
    Cancelled,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Streaming => "streaming",
            Status::Paused => "paused",
            Status::InputRequired => "input_required",
            Status::Completed => "completed",
            Status::Cancelled => "cancelled",
            Status::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "queued" => Status::Queued,
            "streaming" => Status::Streaming,
            "paused" => Status::Paused,
            "input_required" => Status::InputRequired,
            "completed" => Status::Completed,
            "cancelled" => Status::Cancelled,
            "failed" => Status::Failed,
            _ => return None,
        })
    }

    pub fn is_ended(self) -> bool {
        matches!(self, Status::Completed | Status::Cancelled | Status::Failed)
    }
}

/// Why a session ended: `data.reason` of its `end` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    Completed,
    Cancelled,
    Failed,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Completed => "completed",
            EndReason::Cancelled => "cancelled",
            EndReason::Failed => "failed",
        }
    }

    pub fn status(self) -> Status {
        match self {
            EndReason::Completed => Status::Completed,
            EndReason::Cancelled => Status::Cancelled,
            EndReason::Failed => Status::Failed,
        }
    }

    pub fn parse(s: &str) -> Option<EndReason> {
        Some(match s {
            "completed" => EndReason::Completed,
            "cancelled" => EndReason::Cancelled,
            "failed" => EndReason::Failed,
            _ => return None,
        })
    }
}

/// The agent of a session that an outside producer fills (protocol.md §4):
/// no run request is queued for it.
pub const EXTERNAL_AGENT: &str = "external";

/// A run request on `weir.runs.<agent>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRequest {
    pub session: SessionId,
    pub agent: String,
    #[serde(default)]
    pub input: serde_json::Value,
    /// The thread the session is a run of (protocol.md §9), so that a
    /// producer that rewrites lost state names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<crate::ThreadId>,
    /// The session's creation time (Unix milliseconds) as its edge records
    /// it. With [`RunRequest::nonce`], a producer that takes the request
    /// before the edge's state write lands writes the same state the edge
    /// would (the edge queues the request while it writes). Absent in
    /// requests of older edges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<u64>,
    /// The session's `pace` (events per second per client), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pace: Option<u32>,
    /// A random string naming the creation this request belongs to, stored
    /// with the session's state: an edge that finds the id taken knows by
    /// it whether this very request's producer wrote the state first, and a
    /// producer drops a request whose session another creation wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

impl RunRequest {
    /// A request for `session` of `agent` with `input`; nothing else known.
    pub fn new(session: SessionId, agent: &str, input: serde_json::Value) -> RunRequest {
        RunRequest {
            session,
            agent: agent.to_owned(),
            input,
            thread: None,
            created: None,
            pace: None,
            nonce: None,
        }
    }
}

/// A fresh creation nonce ([`RunRequest::nonce`]): 128 random bits, 22
/// URL-safe characters.
pub fn creation_nonce() -> String {
    SessionId::random().0
}

/// A control message on `weir.ctl.<session>`: `{"op": "pause"|"resume"|"cancel"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ControlOp {
    Pause,
    Resume,
    Cancel,
}

impl ControlOp {
    pub fn as_str(self) -> &'static str {
        match self {
            ControlOp::Pause => "pause",
            ControlOp::Resume => "resume",
            ControlOp::Cancel => "cancel",
        }
    }

    pub fn parse(s: &str) -> Option<ControlOp> {
        Some(match s {
            "pause" => ControlOp::Pause,
            "resume" => ControlOp::Resume,
            "cancel" => ControlOp::Cancel,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_follow_the_subject_rules() {
        assert!(SessionId::parse("abc_DEF-123").is_ok());
        assert!(SessionId::parse(&"a".repeat(64)).is_ok());
        for bad in ["", "a.b", "a b", "a*", "a>", "é", &"a".repeat(65)] {
            assert!(SessionId::parse(bad).is_err(), "{bad:?} accepted");
        }
        let r = SessionId::random();
        assert_eq!(r.as_str().len(), 22);
        assert!(SessionId::parse(r.as_str()).is_ok());
        assert_ne!(SessionId::random(), SessionId::random());
        assert_eq!(r.events_subject(), format!("weir.ev.{r}"));
    }

    #[test]
    fn control_ops_serialise_as_documented() {
        assert_eq!(
            serde_json::to_string(&ControlOp::Cancel).unwrap(),
            r#"{"op":"cancel"}"#
        );
        let run: RunRequest =
            serde_json::from_str(r#"{"session":"s1","agent":"mock","input":{"tokens":3}}"#)
                .unwrap();
        assert_eq!(run.input["tokens"], 3);
        assert!(serde_json::from_str::<RunRequest>(r#"{"session":"a.b","agent":"m"}"#).is_err());
    }

    #[test]
    fn run_requests_of_older_edges_parse_with_nothing_of_the_creation() {
        let run: RunRequest =
            serde_json::from_str(r#"{"session":"s1","agent":"mock","input":{}}"#).unwrap();
        assert_eq!((run.created, run.pace, run.nonce), (None, None, None));
    }

    #[test]
    fn a_run_request_carries_its_creation_and_omits_what_it_lacks() {
        let mut run = RunRequest::new(
            SessionId::parse("s1").unwrap(),
            "mock",
            serde_json::json!({}),
        );
        assert_eq!(
            serde_json::to_string(&run).unwrap(),
            r#"{"session":"s1","agent":"mock","input":{}}"#
        );
        run.created = Some(1_765_000_000_000);
        run.pace = Some(20);
        run.nonce = Some(creation_nonce());
        let back: RunRequest = serde_json::from_str(&serde_json::to_string(&run).unwrap()).unwrap();
        assert_eq!(back, run);
        assert_ne!(creation_nonce(), creation_nonce());
    }
}
