//! The behaviour every bus implementation must have. Each check takes a bus
//! and a fresh session prefix and panics on a violation; the memory bus runs
//! them in this crate's tests, the NATS bus in the end-to-end tests against
//! a real `nats-server`.

use std::time::Duration;

use futures::StreamExt;
use weir_protocol::{ControlOp, Event, RawEvent, SessionId};

use crate::{Bus, BusError, Fence};

mod runs;
pub use runs::*;

fn session(prefix: &str, name: &str) -> SessionId {
    SessionId::parse(&format!("{prefix}{name}")).expect("valid test session id")
}

/// Token events with these seqs, the same bytes each time (a retry resends
/// the very message it tried).
fn events(seqs: std::ops::RangeInclusive<u64>) -> Vec<RawEvent> {
    seqs.map(|s| {
        let mut e = Event::new(
            s,
            "token",
            Some("t"),
            serde_json::json!({ "text": format!("t{s}") }),
        );
        e.ts = 1_800_000_000_000.0 + s as f64;
        e.to_raw()
    })
    .collect()
}

async fn read_all(bus: &Bus, s: &SessionId, after: u64, page: usize) -> Vec<u64> {
    let mut reader = bus.log.reader(s, after).await.expect("reader");
    let mut out = Vec::new();
    loop {
        let p = reader.next_page(page).await.expect("page");
        if p.is_empty() {
            return out;
        }
        assert!(p.len() <= page.max(1), "page larger than asked");
        out.extend(p.iter().map(|e| e.seq));
    }
}

/// Runs every check.
pub async fn all(bus: &Bus, prefix: &str) {
    append_read_and_fence(bus, prefix).await;
    retried_appends_are_stored_once(bus, prefix).await;
    another_writers_message_with_the_same_seqs_is_fenced_not_a_duplicate(bus, prefix).await;
    long_logs_are_read_from_any_seq(bus, prefix).await;
    follow_starts_at_the_last_message(bus, prefix).await;
    control_reaches_subscribers(bus, prefix).await;
    runs_are_taken_once_and_redelivered_until_acked(bus, prefix).await;
    a_run_offered_back_is_offered_again_before_the_ack_wait(bus, prefix).await;
    runs_go_to_their_agents_workers_only(bus, prefix).await;
    leases_are_taken_once_and_written_by_compare_and_set(bus, prefix).await;
    crate::input::conformance::answers_are_kept_once_and_delivered_to_a_later_wait(bus, prefix)
        .await;
}

/// Leases: one holder at a time, an unclaimed lease claimed once, every
/// write a compare-and-set on the revision, and a watch that sees it all.
pub async fn leases_are_taken_once_and_written_by_compare_and_set(bus: &Bus, prefix: &str) {
    use crate::{LeaseChange, LeaseEntry};
    let ttl = Duration::from_secs(5);
    let s = session(prefix, "lease");
    let mut watch = bus.leases.watch().await.unwrap();
    bus.leases
        .probe("node a")
        .await
        .expect("a writable table takes probes");
    let a = bus
        .leases
        .acquire(&s, LeaseEntry::new("a", ttl, true))
        .await
        .unwrap()
        .expect("a free lease");
    let b = bus
        .leases
        .acquire(&s, LeaseEntry::new("b", ttl, true))
        .await;
    assert!(b.unwrap().is_none(), "lease taken twice");
    let renewed = bus.leases.replace(&a, a.entry.clone()).await.unwrap();
    let renewed = renewed.expect("the holder renews");
    assert!(renewed.revision > a.revision);
    // A reaper that saw the old revision loses to the renewal.
    let stale = bus.leases.replace(&a, LeaseEntry::new("reaper", ttl, true));
    assert!(stale.await.unwrap().is_none(), "a stale take-over won");
    let taken = bus
        .leases
        .replace(&renewed, LeaseEntry::new("reaper", ttl, true))
        .await
        .unwrap()
        .expect("a take-over at the current revision");
    assert!(bus
        .leases
        .replace(&renewed, renewed.entry.clone())
        .await
        .unwrap()
        .is_none());
    bus.leases.release(&renewed).await.unwrap(); // not the holder's revision: no effect
    assert_eq!(bus.leases.get(&s).await.unwrap(), Some(taken.clone()));
    bus.leases.release(&taken).await.unwrap();
    assert_eq!(bus.leases.get(&s).await.unwrap(), None);
    // An external session's unclaimed lease is claimed by one producer.
    let e = session(prefix, "lease-ext");
    let unclaimed = LeaseEntry::unclaimed(ttl);
    bus.leases.acquire(&e, unclaimed).await.unwrap().unwrap();
    let p1 = bus
        .leases
        .acquire(&e, LeaseEntry::new("p1", ttl, false))
        .await;
    assert_eq!(p1.unwrap().unwrap().entry.owner, "p1");
    let p2 = bus
        .leases
        .acquire(&e, LeaseEntry::new("p2", ttl, false))
        .await;
    assert!(p2.unwrap().is_none(), "a claimed lease claimed again");
    // The watch saw every write of `s`, in order, and its release.
    let mut owners = Vec::new();
    while owners.last().map(String::as_str) != Some("released") {
        let change = tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .expect("the watch stalled")
            .expect("the watch ended")
            .unwrap();
        match change {
            LeaseChange::Written(l) if l.session == s => owners.push(l.entry.owner),
            LeaseChange::Released(id) if id == s => owners.push("released".into()),
            _ => {}
        }
    }
    assert_eq!(owners, ["a", "a", "reaper", "released"]);
}

pub async fn append_read_and_fence(bus: &Bus, prefix: &str) {
    let s = session(prefix, "log");
    assert!(bus.log.last(&s).await.unwrap().is_none());
    assert!(bus.log.latest(&s).await.unwrap().is_none());
    let a = bus.log.append(&s, &events(1..=1), Fence(0)).await.unwrap();
    assert!(!a.duplicate);
    let b = bus.log.append(&s, &events(2..=5), a.fence).await.unwrap();
    // A writer holding the old fence is refused.
    let stale = bus.log.append(&s, &events(6..=6), a.fence).await;
    assert!(
        matches!(stale, Err(BusError::Fenced)),
        "stale fence accepted"
    );
    bus.log.append(&s, &events(6..=9), b.fence).await.unwrap();
    let last = bus.log.last(&s).await.unwrap().expect("last");
    assert_eq!(last.event.seq, 9);
    // Any replica's answer, once the append is acknowledged everywhere:
    // the same event and fence as the leader's.
    let latest = bus.log.latest(&s).await.unwrap().expect("latest");
    assert_eq!((latest.event.seq, latest.fence), (9, last.fence));
    assert_eq!(read_all(bus, &s, 0, 3).await, (1..=9).collect::<Vec<_>>());
    // Reading from the middle of a batch starts right after the cursor.
    assert_eq!(read_all(bus, &s, 3, 100).await, (4..=9).collect::<Vec<_>>());
    assert!(read_all(bus, &s, 9, 10).await.is_empty());
    // Sessions do not see each other's events.
    let other = session(prefix, "other");
    assert!(read_all(bus, &other, 0, 10).await.is_empty());
}

pub async fn long_logs_are_read_from_any_seq(bus: &Bus, prefix: &str) {
    let (s, noise) = (session(prefix, "long"), session(prefix, "noise"));
    let (mut fence, mut noise_fence) = (Fence(0), Fence(0));
    let mut seq = 0;
    // Messages of one to three events, interleaved with another session's.
    while seq < 300 {
        let n = 1 + seq % 3;
        fence = bus
            .log
            .append(&s, &events(seq + 1..=seq + n), fence)
            .await
            .unwrap()
            .fence;
        seq += n;
        noise_fence = bus
            .log
            .append(&noise, &events(seq..=seq), noise_fence)
            .await
            .unwrap()
            .fence;
    }
    for after in [0, 1, 2, 150, 151, 152, 298, 299, seq - 1, seq] {
        let got = read_all(bus, &s, after, 64).await;
        assert_eq!(
            got,
            (after + 1..=seq).collect::<Vec<_>>(),
            "read after {after}"
        );
    }
}

pub async fn retried_appends_are_stored_once(bus: &Bus, prefix: &str) {
    let s = session(prefix, "dup");
    let first = bus.log.append(&s, &events(1..=3), Fence(0)).await.unwrap();
    let again = bus.log.append(&s, &events(1..=3), Fence(0)).await.unwrap();
    assert!(again.duplicate, "retry not recognised");
    assert_eq!(again.fence, first.fence);
    assert_eq!(read_all(bus, &s, 0, 10).await, vec![1, 2, 3]);
}

/// Two writers that read the same last message (the old producer, whose
/// lease lapsed with a publish in flight, and the reaper that ends the
/// session) append different events with the same seqs, so with the same
/// message id. The one stored second is fenced, never told its message is
/// stored: the old producer would go on after the reaper's `end`, or the
/// reaper would count an end the log does not hold. Inside the duplicate
/// window (after it, see [`retries_after_the_duplicate_window_are_stored_once`]).
pub async fn another_writers_message_with_the_same_seqs_is_fenced_not_a_duplicate(
    bus: &Bus,
    prefix: &str,
) {
    let s = session(prefix, "other-writer");
    let a = bus.log.append(&s, &events(1..=2), Fence(0)).await.unwrap();
    bus.log.append(&s, &events(3..=4), a.fence).await.unwrap();
    let reaper = [
        Event::error(3, "producer_lost", "lost").to_raw(),
        Event::end(4, weir_protocol::EndReason::Failed, None).to_raw(),
    ];
    let refused = bus.log.append(&s, &reaper, a.fence).await;
    assert!(matches!(refused, Err(BusError::Fenced)), "{refused:?}");
    assert_eq!(read_all(bus, &s, 0, 10).await, vec![1, 2, 3, 4]);
}

async fn next_batch(live: &mut crate::EventStream) -> Vec<RawEvent> {
    tokio::time::timeout(Duration::from_secs(5), live.next())
        .await
        .expect("follow delivered nothing")
        .expect("follow ended")
        .expect("follow error")
}

pub async fn follow_starts_at_the_last_message(bus: &Bus, prefix: &str) {
    let s = session(prefix, "follow");
    let a = bus.log.append(&s, &events(1..=2), Fence(0)).await.unwrap();
    let b = bus.log.append(&s, &events(3..=3), a.fence).await.unwrap();
    let mut live = bus.log.follow(&s).await.unwrap();
    let seqs = |b: Vec<RawEvent>| b.iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(seqs(next_batch(&mut live).await), vec![3]);
    let c = bus.log.append(&s, &events(4..=6), b.fence).await.unwrap();
    assert_eq!(seqs(next_batch(&mut live).await), vec![4, 5, 6]);
    // A refused append (a writer that lost the session) never reaches followers.
    let intruder = Event::new(7, "token", Some("intruder"), serde_json::json!({})).to_raw();
    let refused = bus.log.append(&s, &[intruder], b.fence).await;
    assert!(matches!(refused, Err(BusError::Fenced)));
    bus.log.append(&s, &events(7..=7), c.fence).await.unwrap();
    let next = next_batch(&mut live).await;
    assert_eq!(seqs(next.clone()), vec![7]);
    assert!(
        !String::from_utf8_lossy(&next[0].json).contains("intruder"),
        "a refused message was followed"
    );

    // Following a session with no events yet gets its first event.
    let empty = session(prefix, "follow-empty");
    let mut live = bus.log.follow(&empty).await.unwrap();
    bus.log
        .append(&empty, &events(1..=1), Fence(0))
        .await
        .unwrap();
    assert_eq!(seqs(next_batch(&mut live).await), vec![1]);
}

pub async fn control_reaches_subscribers(bus: &Bus, prefix: &str) {
    let s = session(prefix, "ctl");
    let mut sub = bus.control.subscribe(&s).await.unwrap();
    // Sent to nobody: dropped, like core NATS.
    bus.control
        .send(&session(prefix, "nobody"), ControlOp::Pause)
        .await
        .unwrap();
    bus.control.send(&s, ControlOp::Pause).await.unwrap();
    bus.control.send(&s, ControlOp::Cancel).await.unwrap();
    for want in [ControlOp::Pause, ControlOp::Cancel] {
        let got = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .expect("control op not delivered");
        assert_eq!(got, Some(want));
    }
}

/// A retry that comes after the duplicate window (its first try was stored
/// but not acknowledged, and the log forgot the id) is still stored once:
/// the fence refuses it and the log's last message shows it was stored.
/// `window` is the bus's duplicate window.
pub async fn retries_after_the_duplicate_window_are_stored_once(
    bus: &Bus,
    prefix: &str,
    window: Duration,
) {
    let s = session(prefix, "late-retry");
    let a = bus.log.append(&s, &events(1..=2), Fence(0)).await.unwrap();
    tokio::time::sleep(window + window / 2).await;
    let again = bus.log.append(&s, &events(1..=2), Fence(0)).await.unwrap();
    assert!(again.duplicate, "a late retry was not seen as a duplicate");
    assert_eq!(again.fence, a.fence);
    let b = bus
        .log
        .append(&s, &events(3..=3), again.fence)
        .await
        .unwrap();
    // A message that is not the last one stored is refused by the fence.
    tokio::time::sleep(window + window / 2).await;
    let stale = bus.log.append(&s, &events(1..=2), Fence(0)).await;
    assert!(matches!(stale, Err(BusError::Fenced)), "{stale:?}");
    let other = bus.log.append(&s, &events(3..=4), a.fence).await;
    assert!(matches!(other, Err(BusError::Fenced)), "{other:?}");
    // The last stored message's id, another writer's content: fenced.
    let end = Event::end(3, weir_protocol::EndReason::Failed, None).to_raw();
    let other = bus.log.append(&s, &[end], a.fence).await;
    assert!(matches!(other, Err(BusError::Fenced)), "{other:?}");
    assert_eq!(read_all(bus, &s, 0, 10).await, vec![1, 2, 3]);
    assert_eq!(bus.log.last(&s).await.unwrap().unwrap().fence, b.fence);
}

/// Notices reach every subscriber once and are in no log; the registry
/// lists what was announced, forgets a withdrawn node at once and a silent
/// one after `ttl` (the bus's `node_ttl`).
pub async fn notices_and_the_node_registry(bus: &Bus, prefix: &str, ttl: Duration) {
    use crate::{NodeEntry, Notice};
    let mut a = bus.notices.subscribe().await.unwrap();
    let mut b = bus.notices.subscribe().await.unwrap();
    let s = session(prefix, "noticed");
    let notice = Notice {
        session: Some(s.clone()),
        data: serde_json::json!({"text": "maintenance at 10:00"}),
    };
    bus.notices.broadcast(&notice).await.unwrap();
    for sub in [&mut a, &mut b] {
        let got = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .expect("notice within 5 s");
        assert_eq!(got.as_ref(), Some(&notice));
    }
    assert!(
        bus.log.last(&s).await.unwrap().is_none(),
        "a notice was stored"
    );

    let entry = |id: &str| NodeEntry {
        id: format!("{prefix}{id}"),
        role: "edge".into(),
        version: "test".into(),
        started: 1,
        last_seen: 2,
        load: serde_json::json!({"connections": 3})
            .as_object()
            .unwrap()
            .clone(),
    };
    bus.nodes.announce(&entry("a")).await.unwrap();
    bus.nodes.announce(&entry("b.c")).await.unwrap();
    let ids = |l: Vec<NodeEntry>| {
        l.into_iter()
            .map(|n| n.id)
            .filter(|id| id.starts_with(prefix))
            .collect::<Vec<_>>()
    };
    let listed = bus.nodes.list().await.unwrap();
    assert!(listed.contains(&entry("a")), "{listed:?}");
    assert_eq!(
        ids(listed),
        vec![format!("{prefix}a"), format!("{prefix}b.c")]
    );
    bus.nodes.withdraw(&format!("{prefix}a")).await.unwrap();
    assert_eq!(
        ids(bus.nodes.list().await.unwrap()),
        vec![format!("{prefix}b.c")]
    );
    tokio::time::sleep(ttl + ttl / 2 + Duration::from_millis(500)).await;
    assert!(
        ids(bus.nodes.list().await.unwrap()).is_empty(),
        "a silent node stayed"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BusConfig;

    #[tokio::test]
    async fn memory_bus_conforms() {
        let bus = Bus::memory(BusConfig {
            run_ack_wait: Duration::from_secs(1),
            ..BusConfig::default()
        });
        all(&bus, "m-").await;
    }

    #[tokio::test]
    async fn memory_bus_carries_notices_and_lists_nodes() {
        let ttl = Duration::from_secs(1);
        let bus = Bus::memory(BusConfig {
            node_ttl: ttl,
            ..BusConfig::default()
        });
        notices_and_the_node_registry(&bus, "m-", ttl).await;
    }

    #[tokio::test]
    async fn memory_bus_resolves_late_retries() {
        let window = Duration::from_millis(200);
        let bus = Bus::memory(BusConfig {
            duplicate_window: window,
            ..BusConfig::default()
        });
        retries_after_the_duplicate_window_are_stored_once(&bus, "m-", window).await;
    }

    #[tokio::test]
    async fn memory_log_expires_by_age() {
        let bus = Bus::memory(BusConfig {
            retention: Duration::from_millis(300),
            duplicate_window: Duration::from_millis(300),
            ..BusConfig::default()
        });
        let s = SessionId::parse("old").unwrap();
        bus.log.append(&s, &events(1..=2), Fence(0)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(bus.log.last(&s).await.unwrap().is_none());
        assert!(read_all(&bus, &s, 0, 10).await.is_empty());
    }
}
