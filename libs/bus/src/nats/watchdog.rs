//! The health watchdog of a node's NATS connection (protocol.md §6,
//! "survives network partitions"). A connection can look alive — the TCP
//! connection is up, the server even answers pings — while the server has
//! lost its cluster: JetStream requests to it then go unanswered, or are
//! answered "JetStream unavailable" once it notices it has no meta leader.
//! The watchdog writes a probe key of its own to the lease table
//! (`WEIR_LEASES`, key `watchdog.<node>`) every half ping interval: a write
//! is stored only with a quorum behind the stream's leader, so a server
//! cut off from its cluster cannot answer it — not even one that still
//! believes it leads (a cut-off leader keeps answering reads, and the
//! account info, until it steps down). A write refused at once (the table
//! is electing a leader) says nothing against the server: then the
//! account info (`$JS.API.INFO`, answered through the meta leader) decides.
//! The node leaves the server — the same `force_reconnect` as lame duck
//! mode — when
//!
//! - no probe was answered for [`Timings::stall`] (1.5 × the ping
//!   interval), or
//! - no probe was *stored* for [`Timings::unstored`] (the election time,
//!   less half a ping interval): a server that answers only the account
//!   info that long is a cut-off meta leader, not one whose cluster is
//!   electing, or
//! - a write (an append, a lease write) got no answer in its time while the
//!   connection was up (a cut-off server that still believes it leads),
//!   and no probe was stored through the server while it waited (then its
//!   stream was electing, which the next server would wait on too).
//!
//! A dead connection (missed pongs, a host off the network) is left by the
//! client itself. Either way the server left is tried last for a while
//! ([`choose`]), so the next connection goes to a server that is not known
//! to be cut off; and before leaving, the watchdog asks the other servers
//! for their greeting ([`answering`]): one that sends none (its host off the
//! network) is tried last of all. A node whose probes have gone unanswered
//! on every server for [`Timings::cut_off_after`] is *cut off*
//! ([`crate::Reach`]): edges then tell their clients to reconnect, to an
//! edge that can reach the log.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_nats::{jetstream, Client, ReconnectToServer, Server, ServerAddr};
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use super::NatsBus;
use crate::{BusError, Reach, Timings};

mod answering;

/// A server this node left is tried last for this long.
const LEFT_FOR: Duration = Duration::from_secs(30);

pub(super) struct Watchdog {
    timings: Timings,
    state: Mutex<State>,
    /// A write timed out: look now rather than at the next probe.
    check: Notify,
    reach: Reach,
}

struct State {
    /// The server being connected to, then the one connected to.
    trying: Option<ServerAddr>,
    current: Option<ServerAddr>,
    /// Servers left because they failed, with when.
    left: HashMap<ServerAddr, Instant>,
    /// When each server last stored a probe of this node's.
    worked: HashMap<ServerAddr, Instant>,
    /// The servers the client knows (its pool when it last chose one).
    known: Vec<ServerAddr>,
    /// Servers that did not greet when this node last left on its own:
    /// for the choice that follows.
    silent: Vec<ServerAddr>,
    /// JetStream last answered a probe on this connection (or it was made).
    answered: Instant,
    /// A probe was last stored on this connection (a write: the server
    /// reaches a quorum), or the connection was made.
    stored: Instant,
    /// JetStream last answered a probe on any connection.
    reached: Instant,
    /// A write on this connection got no answer in its time.
    write_timed_out: bool,
    /// Counts connections, bumped as soon as one is given up (before the
    /// client reports it): a write's outcome counts only for the connection
    /// it was made on.
    generation: u64,
}

impl Watchdog {
    pub(super) fn new(timings: Timings, reach: Reach) -> Watchdog {
        let now = Instant::now();
        Watchdog {
            timings,
            state: Mutex::new(State {
                trying: None,
                current: None,
                left: HashMap::new(),
                worked: HashMap::new(),
                known: Vec::new(),
                silent: Vec::new(),
                answered: now,
                stored: now,
                reached: now,
                write_timed_out: false,
                generation: 0,
            }),
            check: Notify::new(),
            reach,
        }
    }

    pub(super) fn reach(&self) -> Reach {
        self.reach.clone()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("watchdog lock")
    }

    /// The server to connect to next (the client's reconnect callback).
    pub(super) fn choose(&self, pool: Vec<Server>) -> Option<ReconnectToServer> {
        let mut state = self.state();
        let now = Instant::now();
        // Connecting again means the last connection failed (this runs
        // before the client reports the disconnection), or the last attempt
        // to connect did (a host off the network): both are left.
        let leaving: Vec<ServerAddr> = [state.current.take(), state.trying.take()]
            .into_iter()
            .flatten()
            .collect();
        for addr in &leaving {
            state.left.insert(addr.clone(), now);
        }
        state.generation += 1;
        state
            .left
            .retain(|_, at| now.duration_since(*at) < LEFT_FOR);
        state.known = pool.iter().map(|s| s.addr.clone()).collect();
        let silent = std::mem::take(&mut state.silent);
        let pick = choose(pool, &leaving, &silent, &state.left, &state.worked);
        state.trying = pick.as_ref().map(|p| p.addr.clone());
        pick
    }

    /// The client connected: to the server it was trying, which it names.
    pub(super) fn connected(&self) -> Option<String> {
        let mut state = self.state();
        state.current = state.trying.take();
        state.answered = Instant::now();
        state.stored = state.answered;
        state.write_timed_out = false;
        state.current.as_ref().map(|a| a.as_url_str().to_owned())
    }

    /// The connection dropped (missed pongs, the server closed it, or this
    /// node left it): the server is tried last for a while.
    pub(super) fn disconnected(&self) {
        let mut state = self.state();
        if let Some(addr) = state.current.take() {
            state.left.insert(addr, Instant::now());
        }
    }

    /// The connection writes are made on now.
    pub(super) fn generation(&self) -> u64 {
        self.state().generation
    }

    /// A write's outcome on connection `generation`, the write made at
    /// `began` and answered (or given up) after `waited`: one that timed out
    /// makes the node leave, unless the node has left that connection since;
    /// or its own limit was shorter than the stall time (a lease renewal
    /// waits a quarter of the lease: the probes judge the server then); or a
    /// probe was stored through the server while the write waited — then
    /// the server reaches its cluster, and the write waited on its stream's
    /// election, which the next server would wait on too.
    pub(super) fn wrote(&self, generation: u64, began: Instant, waited: Duration, timed_out: bool) {
        let mut state = self.state();
        if state.generation != generation {
            return;
        }
        if timed_out && waited < self.timings.stall {
            return;
        }
        if timed_out && state.stored > began {
            tracing::debug!(
                "a write timed out on a server that stores probes: its stream is electing"
            );
            return;
        }
        state.write_timed_out = timed_out;
        drop(state);
        if timed_out {
            self.check.notify_one();
        }
    }

    /// Whether to leave the server now, and why; resets the clocks when so.
    fn should_leave(&self, now: Instant) -> Option<&'static str> {
        let mut state = self.state();
        let why = if now.duration_since(state.answered) >= self.timings.stall {
            "no probe answered"
        } else if now.duration_since(state.stored) >= self.timings.unstored {
            "no probe stored"
        } else if state.write_timed_out {
            "a write got no answer"
        } else {
            return None;
        };
        state.answered = now;
        state.stored = now;
        state.write_timed_out = false;
        state.generation += 1;
        Some(why)
    }

    /// A probe was answered at `now`: `stored` when its write was (not
    /// merely the account info after a refused write).
    fn probe_answered(&self, now: Instant, stored: bool) {
        let mut state = self.state();
        state.answered = now;
        if stored {
            state.stored = now;
            if let Some(addr) = state.current.clone() {
                state.worked.insert(addr, now);
            }
        }
        state.reached = now;
    }

    fn update_reach(&self, now: Instant) {
        let since = now.duration_since(self.state().reached);
        self.reach.set_cut_off(since >= self.timings.cut_off_after);
    }

    /// Asks the cluster's other servers for their greeting; those that send
    /// none are tried last by the next choice.
    async fn find_silent(&self, client: &Client) {
        let others = {
            let state = self.state();
            let mut addrs = state.known.clone();
            // Before the first reconnect the pool is not known: the servers
            // the cluster advertised are.
            for url in client.server_info().connect_urls {
                match url.parse::<ServerAddr>() {
                    Ok(a) if !addrs.contains(&a) => addrs.push(a),
                    _ => {}
                }
            }
            addrs.retain(|a| Some(a) != state.current.as_ref());
            addrs
        };
        let silent = answering::silent(others, answering::ANSWERS_WITHIN).await;
        if !silent.is_empty() {
            let names: Vec<&str> = silent.iter().map(|a| a.as_url_str()).collect();
            tracing::warn!(servers = ?names, "NATS servers that do not answer are tried last");
        }
        self.state().silent = silent;
    }

    /// Probes JetStream and leaves failing servers until `stop`.
    pub(super) async fn run(
        &self,
        client: Client,
        js: jetstream::Context,
        table: jetstream::kv::Store,
        key: String,
        reconnects: watch::Receiver<u64>,
        stop: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(self.timings.probe_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut probes = FuturesUnordered::new();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {
                    if connected(&client) && probes.len() < 4 {
                        let (table, js) = (table.clone(), js.clone());
                        let (limit, key) = (self.timings.stall, key.clone());
                        let epoch = *reconnects.borrow();
                        probes.push(async move {
                            let write = table.put(key, bytes::Bytes::new());
                            // Answered: stored, or refused but the account info came.
                            let answered = match tokio::time::timeout(limit, write).await {
                                Ok(Ok(_)) => Some(true),
                                Err(_) => None,
                                Ok(Err(_)) => {
                                    let info = tokio::time::timeout(limit, js.query_account());
                                    matches!(info.await, Ok(Ok(_))).then_some(false)
                                }
                            };
                            (epoch, answered)
                        });
                    }
                }
                _ = self.check.notified() => {}
                Some((epoch, answered)) = probes.next() => {
                    // An answer counts for the connection it was asked on.
                    if let Some(stored) = answered.filter(|_| epoch == *reconnects.borrow()) {
                        self.probe_answered(Instant::now(), stored);
                    }
                }
            }
            let now = Instant::now();
            self.update_reach(now);
            let leave = connected(&client).then(|| self.should_leave(now)).flatten();
            if let Some(why) = leave {
                let server = self
                    .state()
                    .current
                    .as_ref()
                    .map(|a| a.as_url_str().to_owned());
                tracing::warn!(
                    server,
                    why,
                    "the NATS server stores nothing (cut off from its cluster?); moving to another"
                );
                self.find_silent(&client).await;
                if let Err(e) = client.force_reconnect().await {
                    tracing::warn!(error = %e, "could not leave the NATS server");
                }
            }
        }
    }
}

fn connected(client: &Client) -> bool {
    client.connection_state() == async_nats::connection::State::Connected
}

/// The server to try: never the one being left (`leaving`) while there is
/// another; one that greeted when asked before one that did not (`silent`);
/// one not left lately before one that was; of those left, the one
/// that last stored a probe (a node that left two healthy servers while a
/// stream elected goes back to them, not to the one cut off or off the
/// network), then the one left longest ago; fewer failed attempts first, at
/// random among equals (so that nodes spread over the cluster). Right away,
/// unless it failed last time (then the client's backoff).
fn choose(
    mut pool: Vec<Server>,
    leaving: &[ServerAddr],
    silent: &[ServerAddr],
    left: &HashMap<ServerAddr, Instant>,
    worked: &HashMap<ServerAddr, Instant>,
) -> Option<ReconnectToServer> {
    use rand::seq::SliceRandom;
    use std::cmp::Reverse;
    pool.shuffle(&mut rand::rng());
    pool.sort_by_key(|s| {
        (
            leaving.contains(&s.addr),
            silent.contains(&s.addr),
            left.contains_key(&s.addr),
            Reverse(worked.get(&s.addr).copied()),
            left.get(&s.addr).copied(),
            s.failed_attempts,
        )
    });
    pool.into_iter().next().map(|s| ReconnectToServer {
        delay: (s.failed_attempts == 0).then_some(Duration::ZERO),
        addr: s.addr,
    })
}

impl NatsBus {
    /// Runs a write to JetStream for at most `limit`, and not past a
    /// reconnect (its answer would never come: the caller retries on the
    /// new connection, with the same message id and fence). A write that
    /// gets no answer in time is reported to the watchdog.
    pub(super) async fn write<T, E>(
        &self,
        limit: Duration,
        write: impl std::future::Future<Output = Result<T, E>>,
        timed_out: impl Fn(&E) -> bool,
    ) -> Result<Result<T, E>, BusError> {
        let mut moved = self.reconnects.subscribe();
        let epoch = *moved.borrow_and_update();
        let generation = self.watchdog.generation();
        let began = Instant::now();
        let result = tokio::select! {
            biased;
            _ = moved.changed() => {
                return Err(BusError::Unavailable("the NATS connection moved; retry".into()))
            }
            r = tokio::time::timeout(limit, write) => r,
        };
        if *self.reconnects.borrow() != epoch {
            // Asked of the server left meanwhile: says nothing of this one.
            return Err(BusError::Unavailable(
                "the NATS connection moved; retry".into(),
            ));
        }
        match result {
            Err(_) => {
                self.watchdog
                    .wrote(generation, began, began.elapsed(), true);
                Err(BusError::Unavailable(
                    "NATS did not answer the write in time".into(),
                ))
            }
            Ok(r) => {
                let late = r.as_ref().err().is_some_and(&timed_out);
                self.watchdog
                    .wrote(generation, began, began.elapsed(), late);
                Ok(r)
            }
        }
    }
}

#[cfg(test)]
mod tests;
