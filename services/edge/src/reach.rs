//! When a client should go to another edge (protocol.md §5, §6): the node
//! drains, or it cannot reach the log — no NATS server has answered it for
//! JetStream for the cut-off time (`weir_bus::Timings::cut_off_after`), so
//! its feeds cannot move. Either way the client gets `reconnect` (a
//! WebSocket frame then close 1012, or the SSE event `reconnect`) and
//! resumes on any edge with its last seq. A connection made while the node
//! is cut off is told at once; once the node reaches the log again, new
//! connections stay.

use std::sync::Mutex;

use tokio_util::sync::CancellationToken;
use weir_bus::Reach;

/// Why a client is told to reconnect; the text is the frame's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    Draining,
    CutOff,
}

impl Why {
    pub fn reason(self) -> &'static str {
        match self {
            Why::Draining => "node draining",
            Why::CutOff => "log unreachable",
        }
    }

    /// The `reconnect` frame's JSON.
    pub fn frame_json(self) -> String {
        format!(r#"{{"type":"reconnect","reason":"{}"}}"#, self.reason())
    }
}

/// One connection's signals to leave.
#[derive(Clone, Default)]
pub struct Leave {
    drain: CancellationToken,
    cut_off: CancellationToken,
}

impl Leave {
    /// Told to leave only when the node drains.
    pub fn on_drain(drain: CancellationToken) -> Leave {
        Leave {
            drain,
            cut_off: CancellationToken::new(),
        }
    }

    /// Why to leave, if it is time.
    pub fn now(&self) -> Option<Why> {
        if self.drain.is_cancelled() {
            Some(Why::Draining)
        } else if self.cut_off.is_cancelled() {
            Some(Why::CutOff)
        } else {
            None
        }
    }

    /// Waits until it is time to leave (cancel-safe).
    pub async fn wait(&self) -> Why {
        tokio::select! {
            biased;
            _ = self.drain.cancelled() => Why::Draining,
            _ = self.cut_off.cancelled() => Why::CutOff,
        }
    }
}

/// The node's cut-off signal: one token per period of reaching the log,
/// cancelled when the node is cut off.
#[derive(Default)]
pub struct CutOff {
    current: Mutex<CancellationToken>,
}

impl CutOff {
    /// The signals of a connection starting now.
    pub fn leave(&self, drain: &CancellationToken) -> Leave {
        Leave {
            drain: drain.clone(),
            cut_off: self.current.lock().expect("cut-off lock").clone(),
        }
    }

    /// Follows `reach` until `stop`: cancels the current token when the
    /// node is cut off, and starts a fresh one when it reaches the log.
    pub async fn follow(&self, reach: Reach, stop: CancellationToken) {
        let mut rx = reach.subscribe();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                r = rx.wait_for(|cut| *cut) => if r.is_err() { return },
            }
            tracing::warn!(
                "cut off from the log: telling this node's clients to reconnect elsewhere"
            );
            self.current.lock().expect("cut-off lock").cancel();
            tokio::select! {
                _ = stop.cancelled() => return,
                r = rx.wait_for(|cut| !*cut) => if r.is_err() { return },
            }
            *self.current.lock().expect("cut-off lock") = CancellationToken::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn connections_are_told_to_leave_when_the_node_is_cut_off_and_new_ones_stay_once_it_reaches_the_log(
    ) {
        let (reach, cut_off, stop) = (
            Reach::default(),
            std::sync::Arc::new(CutOff::default()),
            CancellationToken::new(),
        );
        let follower = tokio::spawn({
            let (cut_off, reach, stop) = (cut_off.clone(), reach.clone(), stop.clone());
            async move { cut_off.follow(reach, stop).await }
        });
        let drain = CancellationToken::new();
        let before = cut_off.leave(&drain);
        assert_eq!(before.now(), None);
        reach.set_cut_off(true);
        let why = tokio::time::timeout(Duration::from_secs(5), before.wait()).await;
        assert_eq!(why.expect("told to leave"), Why::CutOff);
        // Made while cut off: told at once.
        let during = cut_off.leave(&drain);
        assert_eq!(during.now(), Some(Why::CutOff));
        reach.set_cut_off(false);
        tokio::time::timeout(Duration::from_secs(5), async {
            while cut_off.leave(&drain).now().is_some() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("new connections stay once the log is reached");
        let after = cut_off.leave(&drain);
        drain.cancel();
        assert_eq!(after.now(), Some(Why::Draining));
        assert_eq!(
            Why::CutOff.frame_json(),
            r#"{"type":"reconnect","reason":"log unreachable"}"#
        );
        stop.cancel();
        follower.await.unwrap();
    }
}
