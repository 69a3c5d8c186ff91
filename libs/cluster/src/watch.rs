//! Keeps the store watched. Sessions are read from the log and leases live
//! on NATS, so an idle node may go a long while without calling Redis; a
//! PING every interval means an outage is noticed (logged once, counted in
//! `weir_store_errors_total`, which the `WeirStoreErrors` alert reads, and
//! shown by `/readyz`) whether or not anything else needs the store.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use weir_store::SessionStore;

/// PINGs `store` every `every` until `stop`.
pub async fn watch_store(store: Arc<dyn SessionStore>, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        // The store's health notes the outage (and its end) itself.
        if let Err(e) = store.ping().await {
            tracing::debug!(error = %e, "store ping failed");
        }
    }
}
