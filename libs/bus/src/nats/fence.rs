//! What a refused fence means. An append carries the stream sequence of the
//! session's last message as its fence (`Nats-Expected-Last-Subject-Sequence`),
//! and the server refuses it when the session's last message is elsewhere.
//! Read against the session's last stored message, the refusal means one
//! of three things:
//!
//! - that message is this one (same id, same bytes): an earlier try was
//!   stored and its acknowledgement lost — a duplicate;
//! - the log moved past the fence with another writer's message: fenced
//!   (another writer's message for the same seqs has the same id, hence the
//!   bytes);
//! - the log has not moved past the fence at all: nothing stored explains
//!   the refusal, a copy of this message still in flight does (an earlier
//!   try in a new leader's log, not yet applied when it checked this one;
//!   seen in the flapping-link partition runs). Not a lost fence: the
//!   caller tries again with the same id and fence, and the copy either
//!   lands (this one is then its duplicate) or does not (this one is
//!   stored).

use crate::{Appended, BusError, Fence};

/// The session's last stored message, as the leader answered.
pub(super) struct Last<'a> {
    pub sequence: u64,
    pub id: Option<&'a str>,
    pub payload: &'a [u8],
}

/// The outcome of an append of `id` (`payload`) behind `fence` that the
/// server refused, given the session's `last` stored message (`None`: the
/// session has none).
pub(super) fn refused(
    last: Option<Last<'_>>,
    fence: Fence,
    id: &str,
    payload: &[u8],
) -> Result<Appended, BusError> {
    let Some(last) = last else {
        return if fence.0 == 0 {
            Err(in_flight())
        } else {
            // The messages behind the fence are gone (expired or purged).
            Err(BusError::Fenced)
        };
    };
    if last.id == Some(id) && last.payload == payload {
        Ok(Appended {
            fence: Fence(last.sequence),
            duplicate: true,
        })
    } else if last.sequence <= fence.0 {
        Err(in_flight())
    } else {
        Err(BusError::Fenced)
    }
}

fn in_flight() -> BusError {
    BusError::Unavailable(
        "the fence was refused while the log has not moved past it (a copy of this append \
         in flight); retrying"
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "s:5-7";
    const MINE: &[u8] = b"mine";

    fn last(sequence: u64, id: &'static str, payload: &'static [u8]) -> Option<Last<'static>> {
        Some(Last {
            sequence,
            id: Some(id),
            payload,
        })
    }

    #[test]
    fn this_message_stored_last_is_a_duplicate_at_its_sequence() {
        let got = refused(last(12, ID, MINE), Fence(9), ID, MINE).unwrap();
        assert_eq!((got.fence, got.duplicate), (Fence(12), true));
    }

    #[test]
    fn another_writers_message_past_the_fence_fences_this_one() {
        let other = refused(last(12, "s:5", b"end"), Fence(9), ID, MINE);
        assert!(matches!(other, Err(BusError::Fenced)));
        // The same seqs (hence the same id), other bytes: another writer's.
        let same_id = refused(last(12, ID, b"theirs"), Fence(9), ID, MINE);
        assert!(matches!(same_id, Err(BusError::Fenced)));
    }

    #[test]
    fn a_refusal_while_the_log_is_still_at_the_fence_is_tried_again() {
        let at_fence = refused(last(9, "s:4", b"before"), Fence(9), ID, MINE);
        assert!(matches!(at_fence, Err(BusError::Unavailable(_))));
        let nothing_yet = refused(None, Fence(0), "s:1", MINE);
        assert!(matches!(nothing_yet, Err(BusError::Unavailable(_))));
    }

    #[test]
    fn a_session_whose_messages_are_gone_is_fenced() {
        assert!(matches!(
            refused(None, Fence(9), ID, MINE),
            Err(BusError::Fenced)
        ));
    }
}
