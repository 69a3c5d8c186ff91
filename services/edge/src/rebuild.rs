//! A session's state built from its log alone: while the store cannot be
//! reached, and when it lost the state (Redis came back empty).
//!
//! The log knows the status (from its last event: `end` and its reason, a
//! `paused` notice, an `input_request`, or streaming), the last seq and the times of the events;
//! it does not know the agent, the owner of a live run, the client's
//! acknowledged seq or a control op asked for. Those are named in
//! [`SessionState::unknown`], so that a reader sees the state is partial.

use weir_bus::{BusError, EventLog, LastEvent};
use weir_protocol::{EndReason, Event, RawEvent, SessionId, Status};
use weir_store::SessionState;

/// Fields a state built from the log never knows.
const NEVER_IN_THE_LOG: [&str; 3] = ["agent", "acked", "control"];

/// The reason of an `end` event (`completed` when it names none).
pub fn end_reason(end: &RawEvent) -> EndReason {
    serde_json::from_slice::<Event>(&end.json)
        .ok()
        .and_then(|e| e.data["reason"].as_str().and_then(EndReason::parse))
        .unwrap_or(EndReason::Completed)
}

/// The status the log's last event implies for a session not yet ended:
/// `paused` after the `paused` notice, `input_required` after an
/// `input_request` (protocol.md §9), else `streaming`.
pub fn live_status(last: &RawEvent) -> Status {
    match serde_json::from_slice::<Event>(&last.json) {
        Ok(e) if e.kind == "status" && e.data["state"] == "paused" => Status::Paused,
        Ok(e) if e.kind == weir_protocol::input::INPUT_REQUEST => Status::InputRequired,
        _ => Status::Streaming,
    }
}

/// True for the `resumed` notice a producer publishes when a pause ends.
pub fn is_resumed_notice(last: &RawEvent) -> bool {
    serde_json::from_slice::<Event>(&last.json)
        .is_ok_and(|e| e.kind == "status" && e.data["state"] == "resumed")
}

/// The state the log shows, `None` when it holds nothing of the session.
/// With `times`, the first event is read for `created` (one more read).
pub async fn from_log(
    log: &dyn EventLog,
    id: &SessionId,
    times: bool,
) -> Result<Option<SessionState>, BusError> {
    let Some(LastEvent { event: last, .. }) = log.last(id).await? else {
        return Ok(None);
    };
    let mut s = SessionState::new(id.clone(), "");
    s.unknown = NEVER_IN_THE_LOG.map(str::to_owned).to_vec();
    s.last_seq = last.seq;
    s.updated = last.ts as u64;
    if last.end {
        let reason = end_reason(&last);
        s.status = reason.status();
        s.end_reason = Some(reason);
    } else {
        s.status = live_status(&last);
        // A live run's owner is not in the log.
        s.unknown.push("producer".into());
    }
    match first_ts(log, id, times).await? {
        Some(ts) => s.created = ts,
        None => {
            s.created = s.updated;
            s.unknown.push("created".into());
        }
    }
    Ok(Some(s))
}

/// The time of seq 1, if asked for and still stored.
async fn first_ts(
    log: &dyn EventLog,
    id: &SessionId,
    times: bool,
) -> Result<Option<u64>, BusError> {
    if !times {
        return Ok(None);
    }
    let first = log.reader(id, 0).await?.next_page(1).await?;
    Ok(first.first().filter(|e| e.seq == 1).map(|e| e.ts as u64))
}

/// A session whose log is still empty while the store cannot say anything
/// about it (its token proves it was created): queued, as far as anyone
/// can tell, and every field a guess.
pub fn unstarted(id: &SessionId) -> SessionState {
    let mut s = SessionState::new(id.clone(), "");
    s.unknown = [
        "status", "agent", "created", "updated", "acked", "control", "producer",
    ]
    .map(str::to_owned)
    .to_vec();
    s
}

#[cfg(test)]
mod tests {
    use weir_bus::{Bus, BusConfig, Fence};

    use super::*;

    async fn log_of(events: Vec<Event>) -> (Bus, SessionId) {
        let bus = Bus::memory(BusConfig::default());
        let id = SessionId::parse("s").unwrap();
        let raw: Vec<_> = events.into_iter().map(|e| e.to_raw()).collect();
        bus.log.append(&id, &raw, Fence(0)).await.unwrap();
        (bus, id)
    }

    fn token(seq: u64) -> Event {
        Event::new(seq, "token", None, serde_json::json!({"text": "x"}))
    }

    #[tokio::test]
    async fn an_ended_session_is_rebuilt_with_its_reason_and_times() {
        let mut events: Vec<_> = (1..=4).map(token).collect();
        events.push(Event::end(5, EndReason::Cancelled, None));
        let first_ts = events[0].ts as u64;
        let (bus, id) = log_of(events).await;
        let s = from_log(bus.log.as_ref(), &id, true)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(s.status, Status::Cancelled);
        assert_eq!(s.end_reason, Some(EndReason::Cancelled));
        assert_eq!((s.last_seq, s.producer.as_deref()), (5, None));
        assert_eq!(s.created, first_ts);
        assert_eq!(s.unknown, ["agent", "acked", "control"]);
        // Without the extra read, `created` is a guess and says so.
        let s = from_log(bus.log.as_ref(), &id, false)
            .await
            .unwrap()
            .unwrap();
        assert!(s.unknown.contains(&"created".to_owned()));
    }

    #[tokio::test]
    async fn a_live_session_is_streaming_or_paused_with_its_owner_unknown() {
        let mut events: Vec<_> = (1..=2).map(token).collect();
        events.push(Event::new(
            3,
            "status",
            None,
            serde_json::json!({"state": "paused"}),
        ));
        let (bus, id) = log_of(events).await;
        let s = from_log(bus.log.as_ref(), &id, true)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((s.status, s.last_seq), (Status::Paused, 3));
        assert!(s.unknown.contains(&"producer".to_owned()));
        let (bus, id) = log_of(vec![token(1)]).await;
        let s = from_log(bus.log.as_ref(), &id, false)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(s.status, Status::Streaming);
        let empty = Bus::memory(BusConfig::default());
        assert!(from_log(empty.log.as_ref(), &id, true)
            .await
            .unwrap()
            .is_none());
        assert!(unstarted(&id).unknown.contains(&"status".to_owned()));
    }
}
