//! Ends the runs of dead producers. A run whose lease lapsed is taken over
//! by exactly one reaper (taking the lease is atomic), which appends an
//! `error` and an `end` with reason `failed`, fenced on the log's last
//! message: if the old
//! producer was only slow and wrote meanwhile, the fence refuses the reaper,
//! and if the reaper wrote first, the fence refuses the old producer.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use weir_bus::BusError;
use weir_protocol::{EndReason, Event, SessionId};
use weir_store::Update;
use weir_telemetry::names;

use crate::Ctx;

pub async fn run(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(ctx.config.reap_interval) => {}
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
