//! Whether a run is making progress (protocol.md §6, network partitions):
//! its publishes are being stored, or it has none waiting. A run keeps its
//! lease only while it is; one whose publish has not been stored for the
//! longest pause a partition may cause (`Timings::pause_bound`) stops
//! renewing, so that a reaper that can reach the cluster ends the session
//! (`failed`, fenced) instead of it waiting on a producer that cannot write.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone)]
pub(crate) struct Progress {
    /// Since when a publish has been waiting to be stored.
    waiting_since: Arc<Mutex<Option<Instant>>>,
    stuck_after: Duration,
}

impl Progress {
    pub(crate) fn new(stuck_after: Duration) -> Progress {
        Progress {
            waiting_since: Arc::default(),
            stuck_after,
        }
    }

    /// A publish failed and will be retried.
    pub(crate) fn waiting(&self) {
        self.since().get_or_insert_with(Instant::now);
    }

    /// A publish was stored.
    pub(crate) fn stored(&self) {
        *self.since() = None;
    }

    /// True unless a publish has been waiting for longer than allowed.
    pub(crate) fn holds(&self) -> bool {
        self.since()
            .is_none_or(|since| since.elapsed() < self.stuck_after)
    }

    fn since(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.waiting_since.lock().expect("progress lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_stuck_only_while_a_publish_waits_past_the_bound() {
        let p = Progress::new(Duration::from_millis(50));
        assert!(p.holds());
        p.waiting();
        assert!(p.holds(), "waiting, but not for long");
        std::thread::sleep(Duration::from_millis(60));
        p.waiting();
        assert!(!p.holds(), "a retry does not restart the clock");
        p.stored();
        assert!(p.holds());
    }
}
