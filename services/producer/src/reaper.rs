//! Ends the runs of dead producers. A run whose lease lapsed is taken over
//! by exactly one reaper (taking the lease is atomic), which appends an
//! `error` and an `end` with reason `failed`, fenced on the log's last
//! message: if the old
//! producer was only slow and wrote meanwhile, the fence refuses the reaper,
//! and if the reaper wrote first, the fence refuses the old producer.
//!
//! Leases are trusted only once the store has been reachable for a whole
//! lease time: when Redis comes back from an outage with its data, every
//! lease that lived through it looks lapsed, because its owner could not
//! renew it; owners renew (or take back) their leases within a lease time,
//! and only what is still lapsed after that belongs to a dead producer.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use weir_bus::BusError;
use weir_protocol::{EndReason, Event, SessionId};
use weir_store::{SessionStore, Update};
use weir_telemetry::names;

use crate::Ctx;

pub async fn run(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(ctx.config.reap_interval) => {}
        }
        if !leases_trusted(ctx.store.as_ref(), ctx.config.lease_ttl) {
            continue;
        }
        match ctx.store.expired_leases(100).await {
            Ok(ids) => {
                for id in ids {
                    if let Err(e) = reap(&ctx, &id).await {
                        tracing::warn!(session = %id, error = %e, "could not end a lost run; will retry");
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "reaper could not list leases"),
        }
    }
}

/// True once the store has been reachable without a break for `lease_ttl`.
pub fn leases_trusted(store: &dyn SessionStore, lease_ttl: Duration) -> bool {
    store
        .up_since()
        .is_some_and(|since| since.elapsed() >= lease_ttl)
}

async fn reap(ctx: &Ctx, id: &SessionId) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    if !ctx
        .store
        .acquire_lease(id, &ctx.node, ctx.config.lease_ttl)
        .await?
    {
        return Ok(()); // renewed meanwhile, or another reaper has it
    }
    // On an error the lease is kept: it lapses and the session is reaped again.
    end_failed(ctx, id).await?;
    ctx.store.release_lease(id, &ctx.node).await?;
    Ok(())
}

async fn end_failed(
    ctx: &Ctx,
    id: &SessionId,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let Some(state) = ctx.store.get(id).await? else {
        ctx.store.forget_lease(id).await?;
        return Ok(());
    };
    let last = ctx.bus.log.last(id).await?;
    if let Some(l) = last.as_ref().filter(|l| l.event.end) {
        // The producer ended the session but died before recording it.
        let reason = serde_json::from_slice::<Event>(&l.event.json)
            .ok()
            .and_then(|e| e.data["reason"].as_str().and_then(EndReason::parse))
            .unwrap_or(EndReason::Failed);
        ctx.store
            .update(id, Update::ended(reason, l.event.seq))
            .await?;
        return Ok(());
    }
    if state.status.is_ended() {
        return Ok(());
    }
    let mut last = last;
    let started = std::time::Instant::now();
    let seq = loop {
        let (seq, fence) = last.map_or((0, Default::default()), |l| (l.event.seq, l.fence));
        let events = [
            Event::error(
                seq + 1,
                "producer_lost",
                "the producer running this session stopped responding",
            ),
            Event::end(seq + 2, EndReason::Failed, None),
        ]
        .map(|e| e.to_raw());
        match ctx.bus.log.append(id, &events, fence).await {
            Ok(_) => break seq,
            // The old producer wrote meanwhile; having lost its lease to us it
            // stops within a renewal period. Read the log again and retry.
            Err(BusError::Fenced) if started.elapsed() < ctx.config.lease_ttl => {
                tokio::time::sleep(ctx.config.lease_ttl / 10).await;
                last = ctx.bus.log.last(id).await?;
                if last.as_ref().is_some_and(|l| l.event.end) {
                    return Ok(());
                }
            }
            Err(e) => return Err(e.into()),
        }
    };
    ctx.store
        .update(id, Update::ended(EndReason::Failed, seq + 2))
        .await?;
    metrics::counter!(names::RUNS_REAPED).increment(1);
    tracing::warn!(session = %id, producer = ?state.producer, "ended the run of a lost producer as failed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use weir_bus::Fence;
    use weir_protocol::{Event, Status};
    use weir_store::SessionState;

    use super::*;
    use crate::testing::{ctx, memory_bus, sid, Flaky, Mode};

    async fn running(ctx: &Ctx, id: &SessionId, owner: &str) {
        let mut state = SessionState::new(id.clone(), "mock");
        state.status = Status::Streaming;
        ctx.store.create(&state).await.unwrap();
        let events: Vec<_> = (1..=3)
            .map(|s| Event::new(s, "token", None, serde_json::json!({"text": "x"})).to_raw())
            .collect();
        ctx.bus.log.append(id, &events, Fence(0)).await.unwrap();
        let ttl = ctx.config.lease_ttl;
        assert!(ctx.store.acquire_lease(id, owner, ttl).await.unwrap());
    }

    async fn ended(ctx: &Ctx, id: &SessionId) -> bool {
        let last = ctx.bus.log.last(id).await.unwrap().unwrap();
        last.event.end
    }

    #[tokio::test]
    async fn after_an_outage_only_leases_still_lapsed_a_lease_time_later_are_reaped() {
        let ttl = Duration::from_millis(400);
        let (bus, store) = (memory_bus(), Flaky::new());
        let reaper = ctx("reaper", &bus, store.clone(), ttl);
        let (live, dead) = (sid("live"), sid("dead"));
        running(&reaper, &live, "owner").await;
        running(&reaper, &dead, "dead-owner").await;
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(reaper.clone(), stop.clone()));

        // Redis goes away for longer than a lease and comes back with its
        // data: both leases look lapsed.
        store.set(Mode::Down);
        tokio::time::sleep(ttl + Duration::from_millis(200)).await;
        store.set(Mode::Up);
        assert_eq!(store.expired_leases(10).await.unwrap().len(), 2);
        // The live run's owner renews a while later (its next renewal after
        // the outage), well after several reaper rounds, then keeps renewing.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let renewer = {
            let (store, live) = (store.clone(), live.clone());
            tokio::spawn(async move {
                loop {
                    assert!(store.renew_lease(&live, "owner", ttl).await.unwrap());
                    tokio::time::sleep(ttl / 3).await;
                }
            })
        };
        tokio::time::sleep(3 * ttl).await;
        assert!(
            !ended(&reaper, &live).await,
            "reaped a live run after the outage"
        );
        assert!(ended(&reaper, &dead).await, "the dead run was not reaped");
        let dead_state = store.get(&dead).await.unwrap().unwrap();
        assert_eq!(dead_state.status, Status::Failed);
        renewer.abort();
        stop.cancel();
        task.await.unwrap();
    }

    #[test]
    fn leases_are_trusted_a_lease_time_after_the_store_is_back() {
        let store = Flaky::new();
        let ttl = Duration::from_millis(300);
        assert!(leases_trusted(store.as_ref(), ttl));
        store.set(Mode::Down);
        assert!(!leases_trusted(store.as_ref(), ttl));
        store.set(Mode::Up);
        assert!(!leases_trusted(store.as_ref(), ttl));
        std::thread::sleep(ttl);
        assert!(leases_trusted(store.as_ref(), ttl));
    }
}
