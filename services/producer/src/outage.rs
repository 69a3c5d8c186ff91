//! Runs while the store is unreachable: [`crate::run`], [`crate::record`]
//! and the lease keeper together, over the in-memory bus and a store a test
//! takes down ([`crate::testing::Flaky`]).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use weir_bus::Bus;
use weir_protocol::{RunRequest, SessionId, Status};
use weir_store::{SessionState, SessionStore};

use crate::testing::{ctx, memory_bus, sid, Flaky, Mode};
use crate::{run, Ctx};

const WITHIN: Duration = Duration::from_secs(10);

/// Queues a mock run of `tokens` at `rate`/s; with `state`, the session's
/// state is stored first (as an edge does).
async fn queue(ctx: &Ctx, id: &SessionId, tokens: u64, rate: f64, state: bool) {
    if state {
        let s = SessionState::new(id.clone(), "mock");
        assert!(ctx.store.create(&s).await.unwrap());
    }
    let input = serde_json::json!({"tokens": tokens, "rate": rate, "seed": 1});
    let req = RunRequest::new(id.clone(), "mock", input);
    ctx.bus.runs.enqueue(&req).await.unwrap();
}

/// Takes the queued run and executes it in a task.
async fn start(ctx: &Arc<Ctx>) -> tokio::task::JoinHandle<()> {
    let mut tickets = ctx.bus.runs.take("mock", 1, WITHIN).await.unwrap();
    let ticket = tickets.pop().expect("a queued run");
    let ctx = ctx.clone();
    tokio::spawn(async move { run::execute(ctx, ticket, CancellationToken::new()).await })
}

async fn log_len(bus: &Bus, id: &SessionId) -> u64 {
    bus.log.last(id).await.unwrap().map_or(0, |l| l.event.seq)
}

/// Waits until the log holds at least `n` events of `id`.
async fn wait_log(bus: &Bus, id: &SessionId, n: u64) {
    tokio::time::timeout(WITHIN, async {
        while log_len(bus, id).await < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{id} never reached seq {n} in the log"));
}

/// Waits until the store holds `status` and `last_seq` for `id`.
async fn wait_state(store: &Flaky, id: &SessionId, status: Status, last_seq: u64) -> SessionState {
    let got = tokio::time::timeout(WITHIN, async {
        loop {
            if let Some(s) = store.get(id).await.unwrap() {
                if s.status == status && s.last_seq == last_seq {
                    return s;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    got.unwrap_or_else(|_| panic!("{id} never reached {status:?} at {last_seq}"))
}

/// The node holding `id`'s lease, if any.
async fn lease_owner(bus: &Bus, id: &SessionId) -> Option<String> {
    bus.leases.get(id).await.unwrap().map(|l| l.entry.owner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_streams_to_its_end_while_the_store_hangs_and_settles_when_it_is_back() {
    let (bus, store) = (memory_bus(), Flaky::new());
    let ctx = ctx("p1", &bus, store.clone(), Duration::from_millis(300));
    let id = sid("hung");
    queue(&ctx, &id, 60, 100.0, true).await;
    let run = start(&ctx).await;
    wait_log(&bus, &id, 5).await;
    // Every store call from now on waits until the store is back.
    store.set(Mode::Hung);
    tokio::time::timeout(WITHIN, run)
        .await
        .expect("the run stalled on the hung store")
        .unwrap();
    let last = bus.log.last(&id).await.unwrap().unwrap();
    assert_eq!((last.event.seq, last.event.end), (61, true));
    store.set(Mode::Up);
    let s = wait_state(&store, &id, Status::Completed, 61).await;
    assert_eq!(s.producer, None);
    tokio::time::timeout(WITHIN, async {
        while lease_owner(&bus, &id).await.is_some() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the lease was never released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_claimed_while_the_store_is_down_holds_its_lease_on_the_bus() {
    let (bus, store) = (memory_bus(), Flaky::new());
    let ttl = Duration::from_millis(300);
    let ctx = ctx("p1", &bus, store.clone(), ttl);
    let id = sid("leaseless");
    queue(&ctx, &id, 40, 20.0, true).await;
    store.set(Mode::Down);
    let run = start(&ctx).await;
    wait_log(&bus, &id, 3).await;
    assert_eq!(lease_owner(&bus, &id).await.as_deref(), Some("p1"));
    // Renewed all along: still held a few lease times later.
    tokio::time::sleep(3 * ttl).await;
    assert_eq!(lease_owner(&bus, &id).await.as_deref(), Some("p1"));
    store.set(Mode::Up);
    tokio::time::timeout(WITHIN, run).await.unwrap().unwrap();
    wait_state(&store, &id, Status::Completed, 41).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_state_the_store_lost_is_run_and_its_state_written_again() {
    let (bus, store) = (memory_bus(), Flaky::new());
    let ctx = ctx("p1", &bus, store.clone(), Duration::from_millis(300));
    let id = sid("forgotten");
    queue(&ctx, &id, 10, 0.0, false).await;
    tokio::time::timeout(WITHIN, start(&ctx).await)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(log_len(&bus, &id).await, 11);
    let s = wait_state(&store, &id, Status::Completed, 11).await;
    assert_eq!(s.agent, "mock");
    assert_eq!(s.unknown, ["created", "control"]);
}

#[tokio::test]
async fn the_lease_keeper_renews_through_a_store_outage_and_stops_only_for_another_owner() {
    let (bus, store) = (memory_bus(), Flaky::new());
    let ttl = Duration::from_millis(300);
    let ctx = ctx("p1", &bus, store.clone(), ttl);
    let id = sid("kept");
    let entry = weir_bus::LeaseEntry::new("p1", ttl, true);
    let lease = bus.leases.acquire(&id, entry).await.unwrap().unwrap();
    let lost = CancellationToken::new();
    let progress = crate::progress::Progress::new(ttl);
    let keeper = tokio::spawn(run::keep_lease(ctx.clone(), lease, lost.clone(), progress));
    store.set(Mode::Down);
    tokio::time::sleep(3 * ttl).await;
    assert!(
        !lost.is_cancelled(),
        "the run was given up during the outage"
    );
    store.set(Mode::Up);
    // Another node takes the lease over: the keeper gives the run up.
    let now = bus.leases.get(&id).await.unwrap().unwrap();
    let theirs = weir_bus::LeaseEntry::new("p2", 10 * ttl, true);
    assert!(bus.leases.replace(&now, theirs).await.unwrap().is_some());
    tokio::time::timeout(WITHIN, lost.cancelled())
        .await
        .expect("kept a lease another node holds");
    assert!(keeper.await.unwrap().is_none());
}

#[tokio::test]
async fn a_run_whose_publishes_are_not_stored_stops_renewing_its_lease_until_one_is() {
    let (bus, store) = (memory_bus(), Flaky::new());
    let ttl = Duration::from_millis(300);
    let ctx = ctx("p1", &bus, store, ttl);
    let id = sid("stuck");
    let entry = weir_bus::LeaseEntry::new("p1", ttl, true);
    let lease = bus.leases.acquire(&id, entry).await.unwrap().unwrap();
    let progress = crate::progress::Progress::new(ttl);
    let lost = CancellationToken::new();
    let keeper = tokio::spawn(run::keep_lease(
        ctx.clone(),
        lease,
        lost.clone(),
        progress.clone(),
    ));
    let revision = || async { bus.leases.get(&id).await.unwrap().unwrap().revision };
    // Renewed while publishing goes well.
    let first = revision().await;
    tokio::time::timeout(WITHIN, async {
        while revision().await == first {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("renewed");
    // A publish waits past the bound: renewals stop (several lease times).
    progress.waiting();
    tokio::time::sleep(ttl + ttl / 2).await;
    let stuck = revision().await;
    tokio::time::sleep(3 * ttl).await;
    assert_eq!(
        revision().await,
        stuck,
        "renewed a lease while making no progress"
    );
    // Stored at last: renewals resume.
    progress.stored();
    tokio::time::timeout(WITHIN, async {
        while revision().await == stuck {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("renewals resumed");
    lost.cancel();
    assert!(keeper.await.unwrap().is_some());
}
