//! Whether the events a client asks for are gone: the one rule behind every
//! `history_expired` (WebSocket 4010, HTTP 410) that WebSocket, SSE,
//! history and the front-end streams give.
//!
//! The log is the only witness. Events after `after` have expired when the
//! log's first stored event of the session after `after` is later than
//! `after + 1` ([`check_first`], applied to the first page read), or when
//! the log (its leader) holds nothing of a session older than the
//! retention ([`at_open`]). The session's state in the store is never
//! evidence of expiry: the store can be ahead of what a read of the log
//! sees — a producer records its progress right after a publish, which a
//! log read issued at the same moment may not see; a replica answers a
//! moment behind; a state is rebuilt or written back — and a log behind the
//! store means "wait for it", so the client is streamed from `after`.

use std::time::Duration;

use weir_bus::LastEvent;

use crate::error::ApiError;

/// Where a subscriber asking for events after `after` stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Stream from `after` (the events may still be on their way to the log).
    Stream,
    /// The client already holds the whole session, `end` included.
    Complete,
}

/// What the session's state says, which can only loosen the log's answer
/// (a log behind it is waited for), never turn a client away as expired.
#[derive(Debug, Clone, Copy)]
pub struct Known {
    /// The highest seq the store has recorded (0 when it has none).
    pub last_seq: u64,
    /// When the session was created (Unix ms), if the store knows.
    pub created_ms: Option<u64>,
}

/// Events after `from - 1` up to `to` are gone from the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("events {from} to {to} are no longer stored")]
pub struct Gap {
    pub from: u64,
    pub to: u64,
}

impl From<Gap> for ApiError {
    fn from(g: Gap) -> ApiError {
        ApiError::Expired(g.to_string())
    }
}

/// A resume from `after` against the log's last event (as the leader has
/// it, where the answer refuses the client) and what the store knows.
pub fn at_open(
    after: u64,
    last: Option<&LastEvent>,
    known: Known,
    retention: Duration,
    now_ms: u64,
) -> Result<Resume, ApiError> {
    let beyond = |last_seq: u64| {
        ApiError::BadRequest(format!(
            "after={after} is beyond the session's last seq {last_seq}"
        ))
    };
    match last {
        Some(l) if l.event.end && after == l.event.seq => Ok(Resume::Complete),
        Some(l) if l.event.end && after > l.event.seq => Err(beyond(l.event.seq)),
        Some(l) if after <= l.event.seq => Ok(Resume::Stream),
        // The client holds more than this read of the log: the store saw
        // it too, so the log is behind (wait for it) or the client is wrong.
        Some(_) if after <= known.last_seq => Ok(Resume::Stream),
        Some(l) => Err(beyond(l.event.seq)),
        None if after > known.last_seq => Err(beyond(known.last_seq)),
        None if known.last_seq > after && outlived(known, retention, now_ms) => {
            Err(ApiError::Expired(format!(
                "events after {after} are no longer stored (the session is older than the {} retention)",
                humantime::format_duration(retention)
            )))
        }
        None => Ok(Resume::Stream),
    }
}

/// Whether every event the session ever had would have expired by now.
fn outlived(known: Known, retention: Duration, now_ms: u64) -> bool {
    known
        .created_ms
        .is_some_and(|created| now_ms.saturating_sub(created) >= retention.as_millis() as u64)
}

/// The first event read after `after` must be `after + 1`; a later one
/// means the events between have expired from the log.
pub fn check_first(after: u64, first_seq: u64) -> Result<(), Gap> {
    if first_seq == after + 1 {
        Ok(())
    } else {
        Err(Gap {
            from: after + 1,
            to: first_seq.saturating_sub(1),
        })
    }
}

#[cfg(test)]
mod tests {
    use weir_bus::Fence;
    use weir_protocol::{EndReason, Event};

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);
    const NOW: u64 = 10 * 3_600_000;

    fn token(seq: u64) -> LastEvent {
        LastEvent {
            event: Event::new(seq, "token", None, serde_json::json!({})).to_raw(),
            fence: Fence(seq),
        }
    }

    fn end(seq: u64) -> LastEvent {
        LastEvent {
            event: Event::end(seq, EndReason::Completed, None).to_raw(),
            fence: Fence(seq),
        }
    }

    fn known(last_seq: u64, age: Duration) -> Known {
        Known {
            last_seq,
            created_ms: Some(NOW - age.as_millis() as u64),
        }
    }

    /// Outcome names, so that a failing row prints what it got.
    fn outcome(r: Result<Resume, ApiError>) -> &'static str {
        match r {
            Ok(Resume::Stream) => "stream",
            Ok(Resume::Complete) => "complete",
            Err(ApiError::Expired(_)) => "expired",
            Err(ApiError::BadRequest(_)) => "beyond",
            Err(_) => "other",
        }
    }

    #[test]
    fn every_resume_decision_follows_the_log_never_the_store_alone() {
        let young = Duration::from_secs(5);
        let old = 2 * HOUR;
        let rows: [(&str, u64, Option<LastEvent>, Known, &str); 12] = [
            (
                "a new session, nothing anywhere",
                0,
                None,
                known(0, young),
                "stream",
            ),
            // Issue 28: the store recorded the producer's progress, the
            // log read saw nothing yet.
            (
                "a new session whose log is behind the store",
                0,
                None,
                known(3, young),
                "stream",
            ),
            (
                "a resume whose log is behind the store",
                2,
                None,
                known(3, young),
                "stream",
            ),
            (
                "a log a few events behind the client",
                5,
                Some(token(3)),
                known(6, young),
                "stream",
            ),
            (
                "a live session",
                2,
                Some(token(3)),
                known(3, young),
                "stream",
            ),
            (
                "a client holding everything but the end",
                3,
                Some(token(3)),
                known(3, young),
                "stream",
            ),
            (
                "a client holding the end",
                4,
                Some(end(4)),
                known(4, young),
                "complete",
            ),
            (
                "after beyond an ended session",
                5,
                Some(end(4)),
                known(9, young),
                "beyond",
            ),
            (
                "after beyond the log and the store",
                7,
                Some(token(3)),
                known(6, young),
                "beyond",
            ),
            (
                "after beyond an empty log and the store",
                1,
                None,
                known(0, young),
                "beyond",
            ),
            (
                "an old session whose log is gone",
                0,
                None,
                known(9, old),
                "expired",
            ),
            (
                "an old session that never published",
                0,
                None,
                known(0, old),
                "stream",
            ),
        ];
        for (name, after, last, known, want) in rows {
            let got = outcome(at_open(after, last.as_ref(), known, HOUR, NOW));
            assert_eq!(got, want, "row {name:?}");
        }
    }

    #[test]
    fn a_session_of_unknown_age_whose_log_is_empty_is_waited_for() {
        let unknown = Known {
            last_seq: 9,
            created_ms: None,
        };
        assert_eq!(outcome(at_open(0, None, unknown, HOUR, NOW)), "stream");
    }

    #[test]
    fn a_first_event_later_than_the_next_seq_is_a_gap() {
        assert_eq!(check_first(4, 5), Ok(()));
        assert_eq!(check_first(0, 1), Ok(()));
        assert_eq!(check_first(4, 9), Err(Gap { from: 5, to: 8 }));
    }
}
