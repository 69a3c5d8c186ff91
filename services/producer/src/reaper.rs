//! The cluster's reaper (`weir_cluster::reaper`) over the in-memory bus and
//! a store a test takes down: lapsed leases, unclaimed `external` sessions,
//! outside producers' state, and Redis outages.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use weir_bus::{Fence, Lease, LeaseEntry};
use weir_protocol::{Event, SessionId, Status};
use weir_store::{SessionState, SessionStore};

use crate::testing::{ctx, memory_bus, sid, Flaky, Mode};
use crate::Ctx;

const WITHIN: Duration = Duration::from_secs(10);

/// A streaming session with three events in its log, its lease held by
/// `owner` (who records its own state when `records`).
async fn running(ctx: &Ctx, id: &SessionId, owner: &str, records: bool) -> Lease {
    let mut state = SessionState::new(id.clone(), "mock");
    state.status = Status::Streaming;
    ctx.store.create(&state).await.unwrap();
    let events: Vec<_> = (1..=3)
        .map(|s| Event::new(s, "token", None, serde_json::json!({"text": "x"})).to_raw())
        .collect();
    ctx.bus.log.append(id, &events, Fence(0)).await.unwrap();
    let entry = LeaseEntry::new(owner, ctx.config.cluster.lease_ttl, records);
    ctx.bus.leases.acquire(id, entry).await.unwrap().unwrap()
}

/// The kinds of the session's events, in order.
async fn kinds(ctx: &Ctx, id: &SessionId) -> Vec<String> {
    let mut reader = ctx.bus.log.reader(id, 0).await.unwrap();
    let events = reader.next_page(1000).await.unwrap();
    events
        .iter()
        .map(|e| serde_json::from_slice::<Event>(&e.json).unwrap().kind)
        .collect()
}

fn reaper(ctx: &Arc<Ctx>) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = CancellationToken::new();
    let r = ctx.config.cluster.reaper(&ctx.bus, &ctx.store, &ctx.node);
    let task = tokio::spawn(r.run(stop.clone()));
    (stop, task)
}

async fn wait_status(store: &Flaky, id: &SessionId, status: Status) -> SessionState {
    tokio::time::timeout(WITHIN, async {
        loop {
            if let Ok(Some(s)) = store.get(id).await {
                if s.status == status {
                    return s;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{id} never became {status:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_nobody_renews_is_ended_failed_once_however_many_reapers_watch() {
    let ttl = Duration::from_millis(300);
    let (bus, store) = (memory_bus(), Flaky::new());
    let (a, b) = (
        ctx("reaper-a", &bus, store.clone(), ttl),
        ctx("reaper-b", &bus, store.clone(), ttl),
    );
    let id = sid("dead");
    running(&a, &id, "dead-owner", true).await;
    let (stop_a, task_a) = reaper(&a);
    let (stop_b, task_b) = reaper(&b);
    let s = wait_status(&store, &id, Status::Failed).await;
    assert_eq!(s.last_seq, 5);
    // Both reapers had time to try again: still one end.
    tokio::time::sleep(3 * ttl).await;
    assert_eq!(
        kinds(&a, &id).await,
        ["token", "token", "token", "error", "end"]
    );
    assert!(bus.leases.get(&id).await.unwrap().is_none(), "lease kept");
    for (stop, task) in [(stop_a, task_a), (stop_b, task_b)] {
        stop.cancel();
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_lease_is_never_reaped_even_while_redis_is_down() {
    let ttl = Duration::from_millis(300);
    let (bus, store) = (memory_bus(), Flaky::new());
    let c = ctx("reaper", &bus, store.clone(), ttl);
    let (live, dead) = (sid("live"), sid("dead-in-outage"));
    let lease = running(&c, &live, "owner", true).await;
    running(&c, &dead, "dead-owner", true).await;
    let keep = CancellationToken::new();
    let renewer = {
        let (leases, keep) = (bus.leases.clone(), keep.clone());
        tokio::spawn(
            async move { weir_bus::lease::keep(leases.as_ref(), lease, &keep, &|| true).await },
        )
    };
    store.set(Mode::Down);
    let (stop, task) = reaper(&c);
    // The dead run is ended in the log during the outage; its state is
    // written once Redis is back.
    tokio::time::timeout(WITHIN, async {
        while kinds(&c, &dead).await.len() < 5 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the dead run was not ended during the outage");
    tokio::time::sleep(3 * ttl).await;
    store.set(Mode::Up);
    wait_status(&store, &dead, Status::Failed).await;
    assert_eq!(kinds(&c, &live).await.len(), 3, "reaped a live run");
    assert!(!renewer.is_finished(), "the live run lost its lease");
    keep.cancel();
    assert!(renewer.await.unwrap().is_some());
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_session_nobody_claims_ends_failed_as_unclaimed() {
    let ttl = Duration::from_millis(300);
    let (bus, store) = (memory_bus(), Flaky::new());
    let c = ctx("reaper", &bus, store.clone(), ttl);
    let id = sid("unclaimed");
    store
        .create(&SessionState::new(id.clone(), "external"))
        .await
        .unwrap();
    let unclaimed = LeaseEntry::unclaimed(Duration::from_millis(400));
    bus.leases.acquire(&id, unclaimed).await.unwrap().unwrap();
    let (stop, task) = reaper(&c);
    let s = wait_status(&store, &id, Status::Failed).await;
    assert_eq!(s.last_seq, 2);
    let mut reader = bus.log.reader(&id, 0).await.unwrap();
    let error = reader.next_page(10).await.unwrap().remove(0);
    let error: Event = serde_json::from_slice(&error.json).unwrap();
    assert_eq!(
        (error.kind.as_str(), &error.data["code"]),
        ("error", &serde_json::json!("unclaimed"))
    );
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outside_producer_that_claims_and_releases_has_its_state_recorded() {
    let ttl = Duration::from_millis(300);
    let (bus, store) = (memory_bus(), Flaky::new());
    let c = ctx("reaper", &bus, store.clone(), ttl);
    let id = sid("outside");
    store
        .create(&SessionState::new(id.clone(), "external"))
        .await
        .unwrap();
    let placeholder = LeaseEntry::unclaimed(Duration::from_secs(60));
    bus.leases.acquire(&id, placeholder).await.unwrap().unwrap();
    let (stop, task) = reaper(&c);
    let mine = LeaseEntry::new("py-worker-1", Duration::from_secs(60), false);
    let lease = bus
        .leases
        .acquire(&id, mine)
        .await
        .unwrap()
        .expect("claimed");
    let s = wait_status(&store, &id, Status::Streaming).await;
    assert_eq!(s.producer.as_deref(), Some("py-worker-1"));
    let end = Event::end(1, weir_protocol::EndReason::Completed, None).to_raw();
    bus.log.append(&id, &[end], Fence(0)).await.unwrap();
    bus.leases.release(&lease).await.unwrap();
    let s = wait_status(&store, &id, Status::Completed).await;
    assert_eq!((s.last_seq, s.producer), (1, None));
    stop.cancel();
    task.await.unwrap();
}

/// The memory lease table behind a switch: while it is off, a write waits
/// and then fails when it is back on, as a write does through a leader
/// election of the table (it times out once a leader answers again).
struct Switched {
    inner: Arc<dyn weir_bus::LeaseTable>,
    off: std::sync::atomic::AtomicBool,
}

impl Switched {
    async fn check(&self) -> Result<(), weir_bus::BusError> {
        let off = || self.off.load(std::sync::atomic::Ordering::Relaxed);
        if !off() {
            return Ok(());
        }
        while off() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Err(weir_bus::BusError::Unavailable(
            "timed out in an election".into(),
        ))
    }
}

#[async_trait::async_trait]
impl weir_bus::LeaseTable for Switched {
    async fn acquire(
        &self,
        s: &SessionId,
        e: LeaseEntry,
    ) -> Result<Option<Lease>, weir_bus::BusError> {
        self.check().await?;
        self.inner.acquire(s, e).await
    }
    async fn replace(&self, l: &Lease, e: LeaseEntry) -> Result<Option<Lease>, weir_bus::BusError> {
        self.check().await?;
        self.inner.replace(l, e).await
    }
    async fn release(&self, l: &Lease) -> Result<(), weir_bus::BusError> {
        self.check().await?;
        self.inner.release(l).await
    }
    async fn get(&self, s: &SessionId) -> Result<Option<Lease>, weir_bus::BusError> {
        self.inner.get(s).await
    }
    async fn watch(
        &self,
    ) -> Result<
        futures::stream::BoxStream<'static, Result<weir_bus::LeaseChange, weir_bus::BusError>>,
        weir_bus::BusError,
    > {
        self.inner.watch().await
    }
    async fn probe(&self, node: &str) -> Result<(), weir_bus::BusError> {
        self.check().await?;
        self.inner.probe(node).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_nobody_could_renew_while_the_table_took_no_writes_are_not_reaped() {
    let ttl = Duration::from_millis(400);
    let mut bus = memory_bus();
    let table = Arc::new(Switched {
        inner: bus.leases.clone(),
        off: false.into(),
    });
    bus.leases = table.clone();
    let store = Flaky::new();
    let c = ctx("reaper", &bus, store.clone(), ttl);
    let (live, dead) = (sid("live-election"), sid("dead-election"));
    let lease = running(&c, &live, "owner", true).await;
    running(&c, &dead, "dead-owner", true).await;
    let keep = CancellationToken::new();
    let renewer = {
        let (leases, keep) = (bus.leases.clone(), keep.clone());
        tokio::spawn(
            async move { weir_bus::lease::keep(leases.as_ref(), lease, &keep, &|| true).await },
        )
    };
    let (stop, task) = reaper(&c);
    // The table takes no writes for several lease times: nobody renews.
    table.off.store(true, std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(4 * ttl).await;
    table.off.store(false, std::sync::atomic::Ordering::Relaxed);
    // The dead run is reaped once the table has been writable for a lease
    // time; the live one renewed meanwhile and is left alone.
    wait_status(&store, &dead, Status::Failed).await;
    tokio::time::sleep(2 * ttl).await;
    assert_eq!(
        kinds(&c, &live).await.len(),
        3,
        "reaped a live run after the election"
    );
    assert!(!renewer.is_finished(), "the live run lost its lease");
    keep.cancel();
    stop.cancel();
    task.await.unwrap();
}
