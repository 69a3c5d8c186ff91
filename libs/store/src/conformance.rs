//! The behaviour every [`SessionStore`] must have; the memory store runs it
//! here, the Redis store in the end-to-end tests against real `redis-server`
//! processes as one server (`tests/streaming.rs`), Sentinel and Cluster
//! (`tests/redis_ha.rs`).

use std::time::Duration;

use weir_protocol::{ControlOp, EndReason, SessionId, Status};

use crate::{SessionState, SessionStore, Update};

pub mod threads;

fn id(prefix: &str, name: &str) -> SessionId {
    SessionId::parse(&format!("{prefix}{name}")).expect("valid test id")
}

/// Runs every check. `retention` must be the store's, at most 2 s.
pub async fn all(store: &dyn SessionStore, prefix: &str, retention: Duration) {
    assert!(store.up_since().is_some(), "a reachable store is up");
    state_lifecycle(store, prefix).await;
    rebuilt_state(store, prefix).await;
    the_index_pages_newest_first_by_status(store, prefix).await;
    expiry(store, prefix, retention).await;
    threads::all(store, prefix).await;
    a_run_of_a_thread_names_it(store, prefix).await;
}

/// A session state names the thread it is a run of.
pub async fn a_run_of_a_thread_names_it(store: &dyn SessionStore, prefix: &str) {
    let s = id(prefix, "of-thread");
    let mut state = SessionState::new(s.clone(), "mock");
    state.thread = Some(weir_protocol::ThreadId::parse("conv-1").unwrap());
    assert!(store.create(&state).await.unwrap());
    assert_eq!(store.get(&s).await.unwrap().unwrap().thread, state.thread);
}

/// The index lists sessions newest first, pages exactly (no repeat, no
/// skip), follows status changes, and refuses nothing it gave as a cursor.
/// Sessions are dated in the far future so that others in the store sort
/// after them.
pub async fn the_index_pages_newest_first_by_status(store: &dyn SessionStore, prefix: &str) {
    use weir_protocol::Status;
    let base = 4_000_000_000_000 + (crate::unix_ms() % 1_000_000) * 1000;
    let ids: Vec<SessionId> = (0..7).map(|i| id(prefix, &format!("ix{i}"))).collect();
    for (i, sid) in ids.iter().enumerate() {
        let mut s = SessionState::new(sid.clone(), "mock");
        s.created = base + i as u64;
        s.pace = (i == 3).then_some(20);
        s.nonce = (i == 3).then(|| "creation-3".to_owned());
        assert!(store.create(&s).await.unwrap());
    }
    for i in [1, 4, 6] {
        store
            .update(&ids[i], Update::status(Status::Streaming))
            .await
            .unwrap();
    }
    store
        .update(
            &ids[4],
            Update::ended(weir_protocol::EndReason::Completed, 9),
        )
        .await
        .unwrap();
    // Newest first, three to a page, until the last of ours.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    while seen.len() < ids.len() {
        let page = store.list(None, 3, cursor.as_deref()).await.unwrap();
        assert!(page.sessions.len() <= 3);
        seen.extend(page.sessions.iter().map(|s| s.id.clone()));
        cursor = page.next_cursor.clone();
        assert!(
            cursor.is_some() || seen.len() >= ids.len(),
            "paging stopped early"
        );
    }
    let newest_first: Vec<SessionId> = ids.iter().rev().cloned().collect();
    assert_eq!(seen[..ids.len()], newest_first[..]);
    let paced = store.get(&ids[3]).await.unwrap().unwrap();
    assert_eq!(paced.pace, Some(20));
    assert_eq!(paced.nonce.as_deref(), Some("creation-3"));
    let plain = store.get(&ids[2]).await.unwrap().unwrap();
    assert_eq!((plain.pace, plain.nonce), (None, None));
    // By status: the index moved with each change, and ended is final.
    let status_ids = |page: crate::Page| -> Vec<SessionId> {
        page.sessions
            .into_iter()
            .map(|s| s.id)
            .filter(|i| i.as_str().starts_with(&format!("{prefix}ix")))
            .collect()
    };
    let streaming = store
        .list(Some(Status::Streaming), 100, None)
        .await
        .unwrap();
    assert_eq!(status_ids(streaming), vec![ids[6].clone(), ids[1].clone()]);
    let completed = store
        .list(Some(Status::Completed), 100, None)
        .await
        .unwrap();
    assert_eq!(status_ids(completed), vec![ids[4].clone()]);
    store
        .update(&ids[4], Update::status(Status::Streaming))
        .await
        .unwrap();
    let streaming = store
        .list(Some(Status::Streaming), 100, None)
        .await
        .unwrap();
    assert_eq!(status_ids(streaming), vec![ids[6].clone(), ids[1].clone()]);
    let queued = store.list(Some(Status::Queued), 100, None).await.unwrap();
    assert_eq!(
        status_ids(queued),
        vec![
            ids[5].clone(),
            ids[3].clone(),
            ids[2].clone(),
            ids[0].clone()
        ]
    );
    // A page of one after the newest is the next one.
    let first = store.list(None, 1, None).await.unwrap();
    assert_eq!(first.sessions[0].id, ids[6]);
    let cursor = first.next_cursor.unwrap();
    assert_eq!(crate::parse_cursor(&cursor), Ok(cursor.clone()));
    let second = store.list(None, 1, Some(&cursor)).await.unwrap();
    assert_eq!(second.sessions[0].id, ids[5]);
    // Past the oldest entry: an empty page, not an error.
    let past = store.list(None, 10, Some("0000000000000:a")).await.unwrap();
    assert!(past.sessions.is_empty() && past.next_cursor.is_none());
}

pub async fn state_lifecycle(store: &dyn SessionStore, prefix: &str) {
    let s = id(prefix, "life");
    assert!(store.get(&s).await.unwrap().is_none());
    assert!(!store
        .update(&s, Update::status(Status::Streaming))
        .await
        .unwrap());
    let new = SessionState::new(s.clone(), "mock");
    assert!(store.create(&new).await.unwrap());
    assert!(!store.create(&new).await.unwrap(), "id taken twice");
    let got = store.get(&s).await.unwrap().unwrap();
    assert_eq!(
        (got.status, got.agent.as_str(), got.last_seq),
        (Status::Queued, "mock", 0)
    );

    let streaming = Update {
        status: Some(Status::Streaming),
        last_seq: Some(10),
        producer: Some(Some("p1".into())),
        ..Update::default()
    };
    assert!(store.update(&s, streaming).await.unwrap());
    // last_seq and acked only grow.
    store
        .update(
            &s,
            Update {
                last_seq: Some(4),
                ..Update::default()
            },
        )
        .await
        .unwrap();
    store.ack(&s, 7).await.unwrap();
    store.ack(&s, 3).await.unwrap();
    store.request_control(&s, ControlOp::Pause).await.unwrap();
    let got = store.get(&s).await.unwrap().unwrap();
    assert_eq!(got.status, Status::Streaming);
    assert_eq!((got.last_seq, got.acked), (10, 7));
    assert_eq!(got.producer.as_deref(), Some("p1"));
    assert_eq!(got.control, Some(ControlOp::Pause));

    // Ended is final.
    store
        .update(&s, Update::ended(EndReason::Cancelled, 12))
        .await
        .unwrap();
    store
        .update(&s, Update::status(Status::Streaming))
        .await
        .unwrap();
    store
        .update(&s, Update::ended(EndReason::Failed, 12))
        .await
        .unwrap();
    // A late write from the run's start names no owner of an ended session.
    let late_start = Update {
        status: Some(Status::Streaming),
        producer: Some(Some("p1".into())),
        ..Update::default()
    };
    store.update(&s, late_start).await.unwrap();
    let got = store.get(&s).await.unwrap().unwrap();
    assert_eq!(got.status, Status::Cancelled);
    assert_eq!(got.end_reason, Some(EndReason::Cancelled));
    assert_eq!(got.producer, None);
    assert_eq!(got.last_seq, 12);
}

/// A state rebuilt from the log keeps what it says it does not know.
pub async fn rebuilt_state(store: &dyn SessionStore, prefix: &str) {
    let s = id(prefix, "rebuilt");
    let mut rebuilt = SessionState::new(s.clone(), "");
    rebuilt.status = Status::Completed;
    rebuilt.end_reason = Some(EndReason::Completed);
    rebuilt.last_seq = 401;
    rebuilt.unknown = vec!["agent".into(), "acked".into(), "control".into()];
    assert!(store.create(&rebuilt).await.unwrap());
    let got = store.get(&s).await.unwrap().unwrap();
    assert_eq!(got, rebuilt);
    assert!(got.is_partial());
}

pub async fn expiry(store: &dyn SessionStore, prefix: &str, retention: Duration) {
    let s = id(prefix, "expiring");
    store
        .create(&SessionState::new(s.clone(), "mock"))
        .await
        .unwrap();
    tokio::time::sleep(retention + Duration::from_millis(300)).await;
    assert!(
        store.get(&s).await.unwrap().is_none(),
        "state outlived its retention"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_store_conforms() {
        let retention = Duration::from_millis(800);
        all(&crate::MemoryStore::new(retention), "m-", retention).await;
    }
}
