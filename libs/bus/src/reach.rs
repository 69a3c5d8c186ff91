//! Network partitions (protocol.md §6): how fast a node notices that its
//! NATS server cannot reach the cluster, what bounds a session's pause, and
//! whether the node can reach the log at all. The NATS connection's
//! watchdog (`nats::watchdog`) applies these timings; the edge tells its
//! clients to reconnect elsewhere while its [`Reach`] says it is cut off.

use std::time::Duration;

use tokio::sync::watch;

/// The longest a JetStream election takes after a server is lost:
/// nats-server's Raft followers wait 4–9 s for a lost leader
/// (`minElectionTimeoutDefault`..`maxElectionTimeoutDefault`) and campaign
/// for up to 0.8 s. A server setting, not weir's.
pub const ELECTION: Duration = Duration::from_secs(10);

/// The partition timings, all derived from `--nats-ping-interval` (`p`) and
/// `--nats-timeout` (`t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// How often JetStream is probed: `p / 2`.
    pub probe_every: Duration,
    /// A server whose JetStream answered no probe for this long is left:
    /// `1.5 p`.
    pub stall: Duration,
    /// A server that stored no probe for this long is left even though it
    /// answers (a cut-off meta leader answers the account info until it
    /// steps down): a server with its cluster stores one once the election
    /// is over. `max(ELECTION − p / 2, 1.5 p)`.
    pub unstored: Duration,
    /// A node no server answered for this long is cut off: `2 p + t` (it
    /// left its server, and the next did not answer within the timeout).
    pub cut_off_after: Duration,
    /// Longest wait for an answer from NATS: `t`.
    pub request_timeout: Duration,
}

impl Timings {
    pub fn new(ping_interval: Duration, request_timeout: Duration) -> Timings {
        Timings {
            probe_every: ping_interval / 2,
            stall: ping_interval * 3 / 2,
            unstored: ELECTION
                .saturating_sub(ping_interval / 2)
                .max(ping_interval * 3 / 2),
            cut_off_after: ping_interval * 2 + request_timeout,
            request_timeout,
        }
    }

    /// At most this after a partition, a node has left a server that lost
    /// its cluster (or stopped answering): `2 p` (4 s by default); one
    /// that answers without storing, `max(ELECTION, 2 p)`.
    pub fn notice(&self) -> Duration {
        self.stall + self.probe_every
    }

    /// The longest pause a partition may cause a session: the election or
    /// the time to notice, whichever is longer (they run at once), plus one
    /// timeout for a request or a connection attempt that was under way on
    /// the lost path: `max(2 p, 10 s) + t` (15 s by default).
    pub fn pause_bound(&self) -> Duration {
        self.notice().max(ELECTION) + self.request_timeout
    }
}

/// Whether this node can reach the log. Cut off once the NATS watchdog has
/// had no answer from JetStream on any server for
/// [`Timings::cut_off_after`]; reachable again at the first answer. The
/// in-memory bus is never cut off.
#[derive(Debug, Clone, Default)]
pub struct Reach(watch::Sender<bool>);

impl Reach {
    pub fn is_cut_off(&self) -> bool {
        *self.0.borrow()
    }

    /// Says whether the node is cut off (the NATS watchdog does).
    pub fn set_cut_off(&self, cut_off: bool) {
        let changed = self
            .0
            .send_if_modified(|now| std::mem::replace(now, cut_off) != cut_off);
        if changed && cut_off {
            tracing::warn!(
                "no NATS server answers for JetStream: this node is cut off from the log"
            );
        } else if changed {
            tracing::info!("JetStream answers again: this node reaches the log");
        }
    }

    /// Every change from now on.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_settings_bound_a_partition_pause_at_15_s() {
        let t = Timings::new(Duration::from_secs(2), Duration::from_secs(5));
        assert_eq!(t.probe_every, Duration::from_secs(1));
        assert_eq!(t.stall, Duration::from_secs(3));
        assert_eq!(t.unstored, Duration::from_secs(9));
        assert_eq!(t.notice(), Duration::from_secs(4));
        assert_eq!(t.cut_off_after, Duration::from_secs(9));
        assert_eq!(t.pause_bound(), Duration::from_secs(15));
        let slow = Timings::new(Duration::from_secs(10), Duration::from_secs(5));
        assert_eq!(slow.unstored, Duration::from_secs(15));
        assert_eq!(slow.pause_bound(), Duration::from_secs(25));
    }

    #[tokio::test]
    async fn a_subscriber_sees_the_node_cut_off_and_reaching_the_log_again() {
        let reach = Reach::default();
        let mut rx = reach.subscribe();
        reach.set_cut_off(true);
        reach.set_cut_off(true);
        assert!(rx.has_changed().unwrap());
        assert!(*rx.borrow_and_update());
        assert!(!rx.has_changed().unwrap(), "no change, no wake-up");
        reach.set_cut_off(false);
        assert!(!*rx.borrow_and_update());
        assert!(!reach.is_cut_off());
    }
}
