//! Launching a session on the memory bus and store, with a producer that
//! takes its request before the edge's write lands, deterministically.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use weir_bus::{Bus, BusConfig};
use weir_protocol::{ControlOp, SessionId, Status, ThreadId};
use weir_store::{
    MemoryStore, Page, RunRecord, SessionStore, Started, Thread, ThreadRecord, ThreadStore,
};

use super::*;

const WAIT: Duration = Duration::from_secs(5);

/// A memory store in which a producer wins every race: before a session's
/// state is written, the producer takes its run request off the bus and
/// writes the state from it, as the producer's `recreate` does.
struct ProducerFirst {
    inner: MemoryStore,
    bus: Bus,
}

#[async_trait]
impl SessionStore for ProducerFirst {
    async fn create(&self, state: &SessionState) -> Result<bool, StoreError> {
        let mut taken = self.bus.runs.take(&state.agent, 1, WAIT).await.unwrap();
        let request = taken.pop().expect("the run request queued with the write");
        self.inner
            .create(&SessionState::of_request(&request.request))
            .await?;
        request.ack.ack().await.unwrap();
        self.inner.create(state).await
    }
    async fn get(&self, id: &SessionId) -> Result<Option<SessionState>, StoreError> {
        self.inner.get(id).await
    }
    async fn list(&self, s: Option<Status>, n: usize, c: Option<&str>) -> Result<Page, StoreError> {
        self.inner.list(s, n, c).await
    }
    async fn update(&self, id: &SessionId, update: Update) -> Result<bool, StoreError> {
        self.inner.update(id, update).await
    }
    async fn ack(&self, id: &SessionId, seq: u64) -> Result<(), StoreError> {
        self.inner.ack(id, seq).await
    }
    async fn request_control(&self, id: &SessionId, op: ControlOp) -> Result<(), StoreError> {
        self.inner.request_control(id, op).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    fn up_since(&self) -> Option<Instant> {
        self.inner.up_since()
    }
}

#[async_trait]
impl ThreadStore for ProducerFirst {
    async fn create_thread(&self, thread: &Thread) -> Result<bool, StoreError> {
        self.inner.create_thread(thread).await
    }
    async fn get_thread(&self, id: &ThreadId) -> Result<Option<ThreadRecord>, StoreError> {
        self.inner.get_thread(id).await
    }
    async fn start_run(
        &self,
        thread: &ThreadId,
        after: Option<&SessionId>,
        run: &RunRecord,
        alias: Option<&str>,
    ) -> Result<Started, StoreError> {
        self.inner.start_run(thread, after, run, alias).await
    }
    async fn withdraw_run(&self, thread: &ThreadId, run: &SessionId) -> Result<bool, StoreError> {
        self.inner.withdraw_run(thread, run).await
    }
    async fn get_run(
        &self,
        t: &ThreadId,
        run: &SessionId,
    ) -> Result<Option<RunRecord>, StoreError> {
        self.inner.get_run(t, run).await
    }
    async fn add_alias(
        &self,
        t: &ThreadId,
        alias: &str,
        run: &SessionId,
    ) -> Result<bool, StoreError> {
        self.inner.add_alias(t, alias, run).await
    }
    async fn find_alias(&self, t: &ThreadId, alias: &str) -> Result<Option<SessionId>, StoreError> {
        self.inner.find_alias(t, alias).await
    }
}

fn edge(store: impl FnOnce(&Bus) -> Arc<dyn SessionStore>) -> AppState {
    let bus = Bus::memory(BusConfig::default());
    let store = store(&bus);
    let config = crate::EdgeConfig::local("launch-unit-test-secret-of-32-bytes");
    AppState::new(config, bus, store).unwrap()
}

fn memory_edge() -> AppState {
    edge(|_| Arc::new(MemoryStore::new(Duration::from_secs(60))))
}

/// A paced run of a thread: all that only the edge knows.
fn new_session(id: &str) -> SessionState {
    let mut new = SessionState::new(SessionId::parse(id).unwrap(), "mock");
    new.pace = Some(7);
    new.thread = Some(ThreadId::parse("t1").unwrap());
    new
}

async fn queued(state: &AppState) -> Vec<RunRequest> {
    let taken = state.bus.runs.take("mock", 10, Duration::from_millis(200));
    taken
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.request)
        .collect()
}

#[tokio::test]
async fn a_producer_that_takes_the_request_first_writes_the_state_the_edge_would() {
    let state = edge(|bus| {
        Arc::new(ProducerFirst {
            inner: MemoryStore::new(Duration::from_secs(60)),
            bus: bus.clone(),
        })
    });
    let new = new_session("raced");
    launch(&state, &new, serde_json::json!({}), Id::Random)
        .await
        .expect("taken by its own request: created");
    let stored = state.store.get(&new.id).await.unwrap().unwrap();
    assert!(stored.nonce.is_some());
    let edge_would = SessionState {
        nonce: stored.nonce.clone(),
        ..new
    };
    assert_eq!(stored, edge_would);
}

#[tokio::test]
async fn a_random_id_launches_its_state_and_request_together() {
    let state = memory_edge();
    let new = new_session("together");
    let input = serde_json::json!({"tokens": 2});
    launch(&state, &new, input.clone(), Id::Random)
        .await
        .unwrap();
    let stored = state.store.get(&new.id).await.unwrap().unwrap();
    let requests = queued(&state).await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0], stored.run_request(input));
    assert_eq!(SessionState::of_request(&requests[0]), stored);
}

#[tokio::test]
async fn an_id_of_another_creation_is_refused_and_its_request_names_another_creation() {
    let state = memory_edge();
    let new = new_session("collided");
    let mut other = new.clone();
    other.nonce = Some(creation_nonce());
    assert!(state.store.create(&other).await.unwrap());
    let launched = launch(&state, &new, serde_json::json!({}), Id::Random).await;
    assert!(
        matches!(launched, Err(ApiError::Conflict(_))),
        "{launched:?}"
    );
    let stored = state.store.get(&new.id).await.unwrap().unwrap();
    assert_eq!(stored, other, "the other session's state is untouched");
    for request in queued(&state).await {
        assert!(
            stored.is_other_creation(&request),
            "a producer would run it"
        );
    }
}

#[tokio::test]
async fn a_taken_chosen_id_is_refused_and_no_run_is_queued_for_it() {
    let state = memory_edge();
    let new = new_session("taken");
    assert!(state.store.create(&new).await.unwrap());
    let launched = launch(&state, &new, serde_json::json!({}), Id::Chosen).await;
    assert!(
        matches!(launched, Err(ApiError::Conflict(_))),
        "{launched:?}"
    );
    assert!(queued(&state).await.is_empty());
}

#[tokio::test]
async fn a_request_that_cannot_be_queued_leaves_its_session_failed_and_ended_in_the_log() {
    let state = memory_edge();
    // The bus refuses agent names that are no subject token.
    let new = SessionState::new(SessionId::parse("unqueued").unwrap(), "no.dots");
    let launched = launch(&state, &new, serde_json::json!({}), Id::Random).await;
    assert!(
        matches!(launched, Err(ApiError::Unavailable(_))),
        "{launched:?}"
    );
    let stored = state.store.get(&new.id).await.unwrap().unwrap();
    assert_eq!(stored.status, Status::Failed);
    let last = state.bus.log.last(&new.id).await.unwrap().unwrap();
    assert!(last.event.end, "a producer that took it would run it");
}
