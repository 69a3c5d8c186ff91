//! The bus in one process, with the semantics of the NATS one: an ordered log
//! per session with retention by age and replay, deduplication by message id
//! within a window, fenced appends, at-most-once control, and a run queue
//! that offers an unacknowledged run again after the ack wait.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::{broadcast, Notify};
use tokio_stream::wrappers::BroadcastStream;
use weir_protocol::{ControlOp, RawEvent, RunRequest, SessionId};

use crate::{
    msg_id, operators::node_key, Appended, BusConfig, BusError, ControlChannel, EventLog,
    EventStream, Fence, LastEvent, LogReader, NodeEntry, NodeRegistry, Notice, NoticeChannel,
    RunAck, RunQueue, RunTicket,
};

/// Live followers of one session get at most this many messages ahead
/// before they are told they lagged (and re-read from the log).
const FOLLOW_CAPACITY: usize = 4096;
/// Notices a slow subscriber may fall behind by before it misses some.
const NOTICE_CAPACITY: usize = 256;

struct Message {
    events: Arc<[RawEvent]>,
    fence: u64,
    at: Instant,
}

struct SessionLog {
    messages: VecDeque<Message>,
    live: broadcast::Sender<Arc<[RawEvent]>>,
}

struct Dedup {
    fence: u64,
    at: Instant,
    events: Arc<[RawEvent]>,
}

#[derive(Default)]
struct LogState {
    sessions: HashMap<SessionId, SessionLog>,
    /// msg id → (fence of the stored message, when it was stored, its events)
    dedup: HashMap<String, Dedup>,
    next_fence: u64,
    last_sweep: Option<Instant>,
}

struct PendingRun {
    request: RunRequest,
    /// When a taken run is offered again if not acknowledged.
    taken_until: Option<Instant>,
    id: u64,
}

#[derive(Default)]
struct RunState {
    queue: VecDeque<PendingRun>,
    seen: HashMap<String, Instant>,
    next_id: u64,
}

pub struct MemoryBus {
    config: BusConfig,
    log: Arc<Mutex<LogState>>,
    control: Mutex<HashMap<SessionId, broadcast::Sender<ControlOp>>>,
    runs: Arc<Mutex<RunState>>,
    runs_ready: Arc<Notify>,
    notices: broadcast::Sender<Notice>,
    nodes: Mutex<HashMap<String, (NodeEntry, Instant)>>,
}

impl MemoryBus {
    pub fn new(config: BusConfig) -> MemoryBus {
        MemoryBus {
            config,
            log: Arc::default(),
            control: Mutex::default(),
            runs: Arc::default(),
            runs_ready: Arc::default(),
            notices: broadcast::channel(NOTICE_CAPACITY).0,
            nodes: Mutex::default(),
        }
    }
}

impl LogState {
    /// Drops messages older than the retention and forgets old message ids.
    fn sweep(&mut self, config: &BusConfig, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|t| now.duration_since(t) < Duration::from_millis(250))
        {
            return;
        }
        self.last_sweep = Some(now);
        self.sessions.retain(|_, log| {
            while log
                .messages
                .front()
                .is_some_and(|m| now.duration_since(m.at) >= config.retention)
            {
                log.messages.pop_front();
            }
            !log.messages.is_empty() || log.live.receiver_count() > 0
        });
        self.dedup
            .retain(|_, d| now.duration_since(d.at) < config.duplicate_window);
    }
}

#[async_trait]
impl EventLog for MemoryBus {
    async fn append(
        &self,
        session: &SessionId,
        events: &[RawEvent],
        fence: Fence,
    ) -> Result<Appended, BusError> {
        let now = Instant::now();
        let id = msg_id(session, events);
        let mut state = self.log.lock().expect("log lock");
        state.sweep(&self.config, now);
        // As on NATS, where the server deduplicates by id alone and the
        // writer then compares what is stored: a message of another writer
        // with the same seqs (a reaper's end where the old producer's
        // tokens went) is not this one, and the append is fenced.
        if let Some(stored) = state.dedup.get(&id) {
            return if *stored.events == *events {
                Ok(Appended {
                    fence: Fence(stored.fence),
                    duplicate: true,
                })
            } else {
                Err(BusError::Fenced)
            };
        }
        let last = state.sessions.get(session).and_then(|l| l.messages.back());
        if last.map_or(0, |m| m.fence) != fence.0 {
            // As on NATS: a retry of the last stored message, after the
            // duplicate window, is recognised by its id.
            return match last {
                Some(m) if *m.events == *events => Ok(Appended {
                    fence: Fence(m.fence),
                    duplicate: true,
                }),
                _ => Err(BusError::Fenced),
            };
        }
        state.next_fence += 1;
        let new_fence = state.next_fence;
        let events: Arc<[RawEvent]> = events.into();
        state.dedup.insert(
            id,
            Dedup {
                fence: new_fence,
                at: now,
                events: events.clone(),
            },
        );
        let log = state
            .sessions
            .entry(session.clone())
            .or_insert_with(|| SessionLog {
                messages: VecDeque::new(),
                live: broadcast::channel(FOLLOW_CAPACITY).0,
            });
        log.messages.push_back(Message {
            events: events.clone(),
            fence: new_fence,
            at: now,
        });
        let _ = log.live.send(events);
        Ok(Appended {
            fence: Fence(new_fence),
            duplicate: false,
        })
    }

    async fn last(&self, session: &SessionId) -> Result<Option<LastEvent>, BusError> {
        let mut state = self.log.lock().expect("log lock");
        state.sweep(&self.config, Instant::now());
        Ok(state
            .sessions
            .get(session)
            .and_then(|l| l.messages.back())
            .and_then(|m| {
                Some(LastEvent {
                    event: m.events.last()?.clone(),
                    fence: Fence(m.fence),
                })
            }))
    }

    async fn reader(
        &self,
        session: &SessionId,
        after: u64,
    ) -> Result<Box<dyn LogReader>, BusError> {
        Ok(Box::new(MemoryReader {
            log: self.log.clone(),
            config: self.config.clone(),
            session: session.clone(),
            cursor: after,
        }))
    }

    async fn follow(&self, session: &SessionId) -> Result<EventStream, BusError> {
        let mut state = self.log.lock().expect("log lock");
        let log = state
            .sessions
            .entry(session.clone())
            .or_insert_with(|| SessionLog {
                messages: VecDeque::new(),
                live: broadcast::channel(FOLLOW_CAPACITY).0,
            });
        let rx = log.live.subscribe();
        let first: Vec<Vec<RawEvent>> = log
            .messages
            .back()
            .map(|m| m.events.to_vec())
            .into_iter()
            .collect();
        // A lagged follower skips ahead; the caller sees the seq gap and
        // fills it from the log, as with NATS.
        let live =
            BroadcastStream::new(rx).filter_map(|r| async move { r.ok().map(|e| Ok(e.to_vec())) });
        Ok(stream::iter(first.into_iter().map(Ok)).chain(live).boxed())
    }

    async fn ping(&self) -> Result<(), BusError> {
        Ok(())
    }
}

struct MemoryReader {
    log: Arc<Mutex<LogState>>,
    config: BusConfig,
    session: SessionId,
    cursor: u64,
}

#[async_trait]
impl LogReader for MemoryReader {
    async fn next_page(&mut self, max: usize) -> Result<Vec<RawEvent>, BusError> {
        let mut state = self.log.lock().expect("log lock");
        state.sweep(&self.config, Instant::now());
        let Some(log) = state.sessions.get(&self.session) else {
            return Ok(Vec::new());
        };
        let page: Vec<RawEvent> = log
            .messages
            .iter()
            .flat_map(|m| m.events.iter())
            .filter(|e| e.seq > self.cursor)
            .take(max.max(1))
            .cloned()
            .collect();
        if let Some(last) = page.last() {
            self.cursor = last.seq;
        }
        Ok(page)
    }
}

#[async_trait]
impl ControlChannel for MemoryBus {
    async fn send(&self, session: &SessionId, op: ControlOp) -> Result<(), BusError> {
        let mut subs = self.control.lock().expect("control lock");
        if let Some(tx) = subs.get(session) {
            if tx.send(op).is_err() {
                subs.remove(session);
            }
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        session: &SessionId,
    ) -> Result<BoxStream<'static, ControlOp>, BusError> {
        let mut subs = self.control.lock().expect("control lock");
        subs.retain(|_, tx| tx.receiver_count() > 0);
        let rx = subs
            .entry(session.clone())
            .or_insert_with(|| broadcast::channel(64).0)
            .subscribe();
        Ok(BroadcastStream::new(rx)
            .filter_map(|r| async move { r.ok() })
            .boxed())
    }
}

struct MemoryAck {
    runs: Arc<Mutex<RunState>>,
    ready: Arc<Notify>,
    id: u64,
}

#[async_trait]
impl RunAck for MemoryAck {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        let mut runs = self.runs.lock().expect("runs lock");
        runs.queue.retain(|r| r.id != self.id);
        Ok(())
    }

    async fn retry(self: Box<Self>, after: Duration) -> Result<(), BusError> {
        {
            let mut runs = self.runs.lock().expect("runs lock");
            if let Some(run) = runs.queue.iter_mut().find(|r| r.id == self.id) {
                run.taken_until = Some(Instant::now() + after);
            }
        }
        // Takers waiting for the ack wait look again.
        self.ready.notify_waiters();
        Ok(())
    }
}

#[async_trait]
impl RunQueue for MemoryBus {
    async fn enqueue(&self, run: &RunRequest) -> Result<(), BusError> {
        crate::check_agent_name(&run.agent)?;
        let now = Instant::now();
        let mut runs = self.runs.lock().expect("runs lock");
        let window = self.config.duplicate_window;
        runs.seen.retain(|_, at| now.duration_since(*at) < window);
        if runs.seen.insert(run.session.to_string(), now).is_some() {
            return Ok(());
        }
        runs.next_id += 1;
        let id = runs.next_id;
        runs.queue.push_back(PendingRun {
            request: run.clone(),
            taken_until: None,
            id,
        });
        drop(runs);
        // Takers of other agents wake too, look, and wait again.
        self.runs_ready.notify_waiters();
        Ok(())
    }

    async fn take(
        &self,
        agent: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<RunTicket>, BusError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.runs_ready.notified();
            tokio::pin!(notified);
            // Registered now: an enqueue between the look below and the wait is not missed.
            notified.as_mut().enable();
            let next_offer = {
                let now = Instant::now();
                let mut runs = self.runs.lock().expect("runs lock");
                let ack_wait = self.config.run_ack_wait;
                let taken: Vec<RunTicket> = runs
                    .queue
                    .iter_mut()
                    .filter(|r| r.request.agent == agent)
                    .filter(|r| r.taken_until.is_none_or(|t| t <= now))
                    .take(max.max(1))
                    .map(|run| {
                        run.taken_until = Some(now + ack_wait);
                        RunTicket {
                            request: run.request.clone(),
                            ack: Box::new(MemoryAck {
                                runs: self.runs.clone(),
                                ready: self.runs_ready.clone(),
                                id: run.id,
                            }),
                        }
                    })
                    .collect();
                if !taken.is_empty() {
                    return Ok(taken);
                }
                runs.queue
                    .iter()
                    .filter(|r| r.request.agent == agent)
                    .filter_map(|r| r.taken_until)
                    .min()
            };
            let until = next_offer
                .map(|t| tokio::time::Instant::from_std(t).min(deadline))
                .unwrap_or(deadline);
            if tokio::time::timeout_at(until, notified).await.is_err()
                && tokio::time::Instant::now() >= deadline
            {
                return Ok(Vec::new());
            }
        }
    }
}

#[async_trait]
impl NoticeChannel for MemoryBus {
    async fn broadcast(&self, notice: &Notice) -> Result<(), BusError> {
        let _ = self.notices.send(notice.clone());
        Ok(())
    }

    async fn subscribe(&self) -> Result<BoxStream<'static, Notice>, BusError> {
        let rx = self.notices.subscribe();
        Ok(BroadcastStream::new(rx)
            .filter_map(|r| async move { r.ok() })
            .boxed())
    }
}

#[async_trait]
impl NodeRegistry for MemoryBus {
    async fn announce(&self, node: &NodeEntry) -> Result<(), BusError> {
        let mut nodes = self.nodes.lock().expect("nodes lock");
        nodes.insert(node_key(&node.id), (node.clone(), Instant::now()));
        Ok(())
    }

    async fn withdraw(&self, id: &str) -> Result<(), BusError> {
        self.nodes.lock().expect("nodes lock").remove(&node_key(id));
        Ok(())
    }

    async fn list(&self) -> Result<Vec<NodeEntry>, BusError> {
        let mut nodes = self.nodes.lock().expect("nodes lock");
        let ttl = self.config.node_ttl;
        nodes.retain(|_, (_, at)| at.elapsed() < ttl);
        let mut out: Vec<NodeEntry> = nodes.values().map(|(n, _)| n.clone()).collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_memory_bus_passes_the_conformance_suite() {
        let bus = crate::Bus::memory(BusConfig {
            run_ack_wait: Duration::from_secs(1),
            ..BusConfig::default()
        });
        crate::conformance::all(&bus, "m-").await;
    }
}
