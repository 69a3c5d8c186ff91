//! Taking run requests: one taker per agent this worker hosts, each reading
//! its agent's queue, all sharing the worker's run permits (`--concurrency`).
//!
//! A taker waits for room, then waits for requests *without* keeping the
//! room: an agent whose queue is empty holds no run's place while it waits
//! (it used to, so with two agents and `--concurrency 2` the busy one ran
//! one run at a time). A request taken when the room has gone meanwhile (the
//! other agents' runs took it) goes back to the queue at once, for any
//! worker with room; this one takes it again when it has room.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use weir_bus::RunTicket;

use crate::{run, Ctx};

/// Takes one agent's run requests while this worker has room for them.
pub(crate) struct Taker {
    pub ctx: Arc<Ctx>,
    pub agent: String,
    pub permits: Arc<Semaphore>,
    pub runs: TaskTracker,
    pub hard_stop: CancellationToken,
    /// How long one pull waits for requests.
    pub wait: Duration,
}

impl Taker {
    const MAX_TAKE: usize = 64;

    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            // Room for one run at least, not kept while the pull waits.
            tokio::select! {
                _ = shutdown.cancelled() => break,
                p = self.permits.acquire() => drop(p.expect("semaphore never closed")),
            }
            // As many runs as there is room for, in one request: a worker
            // with room for many starts them at once.
            let max = self.permits.available_permits().clamp(1, Self::MAX_TAKE);
            let tickets = tokio::select! {
                _ = shutdown.cancelled() => break,
                t = self.ctx.bus.runs.take(&self.agent, max, self.wait) => t,
            };
            match tickets {
                Ok(tickets) => self.start(tickets).await,
                Err(e) => {
                    metrics::counter!(weir_telemetry::names::BUS_ERRORS, "op" => "take")
                        .increment(1);
                    tracing::warn!(agent = %self.agent, error = %e, "could not take run requests");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// Starts each request there is room for; offers the rest back.
    async fn start(&self, tickets: Vec<RunTicket>) {
        for ticket in tickets {
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                let session = ticket.request.session.clone();
                if let Err(e) = ticket.ack.retry(Duration::ZERO).await {
                    // Offered again at the end of the ack wait instead.
                    tracing::warn!(%session, error = %e, "could not offer a run request back");
                }
                continue;
            };
            let (ctx, stop) = (self.ctx.clone(), self.hard_stop.clone());
            self.runs.spawn(async move {
                run::execute(ctx, ticket, stop).await;
                drop(permit);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use serde_json::json;
    use tokio::sync::watch;
    use weir_protocol::RunRequest;
    use weir_store::SessionState;

    use super::*;
    use crate::agents::{Agent, AgentError, Emitter, Finish};
    use crate::testing::{ctx, memory_bus, sid, Flaky};

    const WITHIN: Duration = Duration::from_secs(10);

    /// Runs in progress at once, across every [`Gated`] agent of a test.
    #[derive(Default)]
    struct Running {
        now: AtomicUsize,
        most: AtomicUsize,
    }

    /// Says a token, then waits until the gate is open.
    struct Gated {
        running: Arc<Running>,
        gate: watch::Receiver<bool>,
    }

    #[async_trait]
    impl Agent for Gated {
        async fn run(&self, _: serde_json::Value, out: &mut Emitter) -> Result<Finish, AgentError> {
            let now = self.running.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.running.most.fetch_max(now, Ordering::SeqCst);
            out.emit("token", None, json!({"text": "a"})).await?;
            let mut gate = self.gate.clone();
            let _ = gate.wait_for(|open| *open).await;
            self.running.now.fetch_sub(1, Ordering::SeqCst);
            Ok(Finish::default())
        }
    }

    /// A worker with `agents` (each [`Gated`]) and room for `concurrency`
    /// runs, whose pulls wait as long as a test lasts.
    fn worker(
        agents: &[&str],
        concurrency: usize,
        open: bool,
    ) -> (
        Arc<Ctx>,
        Arc<Running>,
        watch::Sender<bool>,
        CancellationToken,
    ) {
        let (bus, store) = (memory_bus(), Flaky::new());
        let mut c = Arc::into_inner(ctx("taker", &bus, store, Duration::from_secs(5))).unwrap();
        let running = Arc::new(Running::default());
        let (gate, rx) = watch::channel(open);
        for agent in agents {
            let gated = Gated {
                running: running.clone(),
                gate: rx.clone(),
            };
            c.agents.insert(agent, Arc::new(gated));
        }
        let ctx = Arc::new(c);
        let (permits, stop) = (
            Arc::new(Semaphore::new(concurrency)),
            CancellationToken::new(),
        );
        for agent in agents {
            let taker = Taker {
                ctx: ctx.clone(),
                agent: (*agent).to_owned(),
                permits: permits.clone(),
                runs: TaskTracker::new(),
                hard_stop: CancellationToken::new(),
                wait: Duration::from_secs(3600),
            };
            tokio::spawn(taker.run(stop.clone()));
        }
        (ctx, running, gate, stop)
    }

    async fn start_run(ctx: &Ctx, name: &str, agent: &str) -> weir_protocol::SessionId {
        let id = sid(name);
        let state = SessionState::new(id.clone(), agent);
        assert!(ctx.store.create(&state).await.unwrap());
        let request = RunRequest::new(id.clone(), agent, json!({}));
        ctx.bus.runs.enqueue(&request).await.unwrap();
        id
    }

    /// The kinds of the session's events once it has ended.
    async fn ended(ctx: &Ctx, id: &weir_protocol::SessionId) -> Vec<String> {
        tokio::time::timeout(WITHIN, async {
            loop {
                if ctx
                    .bus
                    .log
                    .last(id)
                    .await
                    .unwrap()
                    .is_some_and(|l| l.event.end)
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{id} never ended"));
        let mut reader = ctx.bus.log.reader(id, 0).await.unwrap();
        let page = reader.next_page(100).await.unwrap();
        page.iter()
            .map(|e| {
                serde_json::from_slice::<serde_json::Value>(&e.json).unwrap()["kind"].to_string()
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_agent_with_an_empty_queue_leaves_the_room_to_the_busy_one() {
        // Two places; `idle` never gets a request and waits for one.
        let (ctx, running, gate, stop) = worker(&["busy", "idle"], 2, false);
        let runs = [
            start_run(&ctx, "busy-1", "busy").await,
            start_run(&ctx, "busy-2", "busy").await,
        ];
        tokio::time::timeout(WITHIN, async {
            while running.now.load(Ordering::SeqCst) < 2 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the busy agent's two runs never ran at once: the idle agent held a place");
        gate.send_replace(true);
        for id in &runs {
            assert_eq!(ended(&ctx, id).await, ["\"token\"", "\"end\""]);
        }
        stop.cancel();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_taken_without_room_go_back_and_each_runs_once_within_the_concurrency() {
        let (ctx, running, _gate, stop) = worker(&["a", "b"], 1, true);
        let mut runs = Vec::new();
        for n in 0..6 {
            let agent = if n % 2 == 0 { "a" } else { "b" };
            runs.push(start_run(&ctx, &format!("run-{n}"), agent).await);
        }
        for id in &runs {
            assert_eq!(ended(&ctx, id).await, ["\"token\"", "\"end\""], "{id}");
        }
        assert_eq!(running.most.load(Ordering::SeqCst), 1);
        stop.cancel();
    }
}
