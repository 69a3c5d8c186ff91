//! A run's life on the in-memory bus: what reaches the log when the agent
//! fails, and when the run cannot start.

use std::time::Duration;

use weir_protocol::SessionId;
use weir_store::SessionState;

use async_trait::async_trait;
use serde_json::json;

use super::*;
use crate::agents::Agent;
use crate::testing::{ctx, memory_bus, sid, Flaky};

/// Says two tokens, then panics.
struct Panics;

#[async_trait]
impl Agent for Panics {
    async fn run(&self, _: serde_json::Value, out: &mut Emitter) -> Result<Finish, AgentError> {
        out.emit("token", None, json!({"text": "a"})).await?;
        out.emit("token", None, json!({"text": "b"})).await?;
        panic!("the model went away");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_panics_ends_its_session_failed_after_what_it_said() {
    let (bus, store) = (memory_bus(), Flaky::new());
    let mut c = Arc::into_inner(ctx("p1", &bus, store, Duration::from_secs(5))).unwrap();
    c.agents.insert("panics", Arc::new(Panics));
    let ctx = Arc::new(c);
    let id = sid("panicky");
    let s = SessionState::new(id.clone(), "panics");
    assert!(ctx.store.create(&s).await.unwrap());
    let req = RunRequest::new(id.clone(), "panics", json!({}));
    ctx.bus.runs.enqueue(&req).await.unwrap();
    let ticket = ctx
        .bus
        .runs
        .take("panics", 1, Duration::from_secs(5))
        .await
        .unwrap();
    let ticket = ticket.into_iter().next().expect("the queued run");
    let run = execute(ctx.clone(), ticket, CancellationToken::new());
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the run ended");
    let mut reader = ctx.bus.log.reader(&id, 0).await.unwrap();
    let events = reader.next_page(100).await.unwrap();
    let events: Vec<serde_json::Value> = events
        .iter()
        .map(|e| serde_json::from_slice(&e.json).unwrap())
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["token", "token", "error", "end"]);
    let error = &events[2];
    assert_eq!(error["data"]["code"], "agent_panicked", "{error}");
    let said = error["data"]["message"].as_str().unwrap();
    assert!(said.contains("the model went away"), "{error}");
    assert_eq!(events[3]["data"]["reason"], "failed");
}

/// Control whose first subscription fails, as one does while the NATS
/// connection moves to another server.
struct FailsOnce {
    inner: Arc<dyn weir_bus::ControlChannel>,
    failed: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl weir_bus::ControlChannel for FailsOnce {
    async fn send(&self, session: &SessionId, op: ControlOp) -> Result<(), weir_bus::BusError> {
        self.inner.send(session, op).await
    }

    async fn subscribe(
        &self,
        session: &SessionId,
    ) -> Result<BoxStream<'static, ControlOp>, weir_bus::BusError> {
        if !self.failed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Err(weir_bus::BusError::Unavailable(
                "the NATS connection moved; retry".into(),
            ));
        }
        self.inner.subscribe(session).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_control_subscription_fails_is_offered_again_and_completes() {
    let mut bus = memory_bus(); // the ack wait is 30 s: far longer than this test waits
    bus.control = Arc::new(FailsOnce {
        inner: bus.control.clone(),
        failed: Default::default(),
    });
    let ctx = ctx("p1", &bus, Flaky::new(), Duration::from_secs(5));
    let id = sid("deaf-at-start");
    assert!(ctx
        .store
        .create(&SessionState::new(id.clone(), "mock"))
        .await
        .unwrap());
    let req = RunRequest::new(id.clone(), "mock", json!({"tokens": 3, "rate": 1000.0}));
    ctx.bus.runs.enqueue(&req).await.unwrap();
    for attempt in ["fails to start", "runs"] {
        let mut taken = ctx
            .bus
            .runs
            .take("mock", 1, START_AGAIN_AFTER * 3)
            .await
            .unwrap();
        let ticket = taken
            .pop()
            .unwrap_or_else(|| panic!("{attempt}: not offered"));
        let run = execute(ctx.clone(), ticket, CancellationToken::new());
        tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("the run ended");
        if attempt == "fails to start" {
            let state = ctx.store.get(&id).await.unwrap().unwrap();
            assert!(
                !state.status.is_ended(),
                "ended at a failed start: {state:?}"
            );
            assert!(ctx.bus.log.last(&id).await.unwrap().is_none());
        }
    }
    assert_eq!(end_reason(&ctx, &id).await, "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_fence_is_refused_while_it_holds_the_lease_leaves_it_to_lapse() {
    let (bus, store) = (memory_bus(), Flaky::new());
    let ctx = ctx("p1", &bus, store, Duration::from_secs(5));
    let id = sid("fenced-out");
    let ticket = queued(&ctx, &id, json!({"tokens": 200, "rate": 20.0})).await;
    let run = tokio::spawn(execute(ctx.clone(), ticket, CancellationToken::new()));
    let last = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(last) = ctx.bus.log.last(&id).await.unwrap() {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the run published");
    // Something the run did not write takes the next seqs (two events: a
    // message of its own, not one the run's next could be taken for).
    let n = last.event.seq;
    let foreign: Vec<_> = (n + 1..=n + 2)
        .map(|seq| Event::new(seq, "token", Some("elsewhere"), json!({})).to_raw())
        .collect();
    ctx.bus.log.append(&id, &foreign, last.fence).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the run stopped")
        .unwrap();
    let log = ctx.bus.log.last(&id).await.unwrap().unwrap();
    assert_eq!(log.event.seq, n + 2, "the run went on writing");
    // The recorder releases a lease after the run, off its path: give it
    // the time it takes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = ctx.bus.leases.get(&id).await.unwrap();
    assert_eq!(
        held.map(|l| l.entry.owner),
        Some("p1".to_owned()),
        "the lease was released: no reaper would end the session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_an_earlier_start_here_left_behind_is_taken_back() {
    let (bus, store) = (memory_bus(), Flaky::new());
    let ctx = ctx("p1", &bus, store, Duration::from_secs(5));
    let id = sid("left-behind");
    assert!(ctx
        .store
        .create(&SessionState::new(id.clone(), "mock"))
        .await
        .unwrap());
    // An earlier start here stored its lease, but its answer was lost.
    let earlier = LeaseEntry::new("p1", Duration::from_secs(5), true);
    assert!(ctx
        .bus
        .leases
        .acquire(&id, earlier)
        .await
        .unwrap()
        .is_some());
    let ticket = take_run(&ctx, &id, json!({"tokens": 3, "rate": 1000.0})).await;
    tokio::time::timeout(
        Duration::from_secs(10),
        execute(ctx.clone(), ticket, CancellationToken::new()),
    )
    .await
    .expect("the run ended");
    assert_eq!(end_reason(&ctx, &id).await, "completed");
}

/// A mock session `id` with its state written, its run queued and taken.
async fn queued(ctx: &Arc<Ctx>, id: &SessionId, input: serde_json::Value) -> RunTicket {
    assert!(ctx
        .store
        .create(&SessionState::new(id.clone(), "mock"))
        .await
        .unwrap());
    take_run(ctx, id, input).await
}

/// Queues a mock run of `id` and takes it.
async fn take_run(ctx: &Arc<Ctx>, id: &SessionId, input: serde_json::Value) -> RunTicket {
    ctx.bus
        .runs
        .enqueue(&RunRequest::new(id.clone(), "mock", input))
        .await
        .unwrap();
    ctx.bus
        .runs
        .take("mock", 1, Duration::from_secs(5))
        .await
        .unwrap()
        .pop()
        .expect("the queued run")
}

/// The reason of the session's `end`, the last event of its log.
async fn end_reason(ctx: &Arc<Ctx>, id: &SessionId) -> String {
    let last = ctx
        .bus
        .log
        .last(id)
        .await
        .unwrap()
        .expect("the run's events");
    let end: serde_json::Value = serde_json::from_slice(&last.event.json).unwrap();
    assert_eq!(end["kind"], "end", "{end}");
    end["data"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}
