"""Workers: serve agents from weir's run queues (docs/protocol.md §2, "Workers and liveness").

A :class:`Worker` serves one or more agents. A session created with ``"agent": "<name>"`` is
queued on ``weir.runs.<name>`` in stream ``WEIR_RUNS``; every worker of that agent (Python or
weir's own) reads the agent's durable consumer ``weir-runs-<name>``, so runs go to whichever
worker is free. For each run the worker takes the session's lease, hands the handler a
:class:`Run` — a :class:`~weir.Publisher` of the session plus ``run.input`` — and ends the
session: ``completed`` when the handler returns, ``error`` + ``end`` ``failed`` when it raises,
``cancelled`` on a cancel. It announces itself (agents, load) in the node registry that
``GET /v1/nodes`` shows, so edges accept its agents.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import signal
import time
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Union

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig

from ._errors import LeaseHeldError, SessionEndedError, WeirError
from ._lease import default_node_id
from ._publisher import Publisher, session_id_of

log = logging.getLogger("weir")

RUNS_STREAM = "WEIR_RUNS"
RUNS_PREFIX = "weir.runs."
CONSUMER_PREFIX = "weir-runs-"
NODES_BUCKET = "WEIR_NODES"
AGENT_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")

Handler = Callable[["Run"], Awaitable[Any]]


class Run(Publisher):
    """One run of an agent: a :class:`~weir.Publisher` of the run's session, plus what the
    session was created with (``input``) and the agent's name."""

    def __init__(self, session: str, *, agent: str, input: Mapping[str, Any], **publisher_options: Any) -> None:
        super().__init__(session, **publisher_options)
        self.agent = agent
        self.input: Dict[str, Any] = dict(input or {})


def check_agent_name(name: str) -> str:
    if not (1 <= len(name) <= 64) or not set(name) <= AGENT_NAME_CHARS:
        raise ValueError(f"agent name {name!r} must match [A-Za-z0-9_-]{{1,64}}")
    return name


class Worker:
    """Serves ``handlers`` (agent name → ``async def handler(run)``) until cancelled or
    :meth:`stop` (SIGTERM and SIGINT call it when :meth:`run` is given ``signals=True``).

    At most ``concurrency`` runs at once. Stopping drains: no new runs are taken, running ones
    get ``drain_grace`` seconds to finish, and the rest end ``failed`` with ``error`` code
    ``producer_shutdown``. A cancel on the session's control channel cancels the handler (after
    ``cancel_grace`` seconds, if it does not end the session itself) and ends it ``cancelled``.
    """

    # How long one pull of an agent's queue waits for a request.
    _FETCH_WAIT = 5.0

    def __init__(
        self,
        handlers: Mapping[str, Handler],
        *,
        nats_url: Union[str, List[str]] = "nats://127.0.0.1:4222",
        node_id: Optional[str] = None,
        concurrency: int = 8,
        drain_grace: float = 10.0,
        cancel_grace: float = 5.0,
        lease_ttl: float = 10.0,
        node_ttl: float = 10.0,
        ack_wait: float = 30.0,
        connect_options: Optional[Dict[str, Any]] = None,
        publisher_options: Optional[Dict[str, Any]] = None,
    ) -> None:
        if not handlers:
            raise ValueError("a worker serves at least one agent")
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        for name, handler in handlers.items():
            check_agent_name(name)
            if not callable(handler):
                raise TypeError(f"handler of agent {name!r} is not callable")
        self.handlers = dict(handlers)
        self.nats_url = nats_url
        self.node_id = node_id or default_node_id("worker")
        self.concurrency = concurrency
        self.drain_grace = drain_grace
        self.cancel_grace = cancel_grace
        self.lease_ttl = lease_ttl
        self.node_ttl = node_ttl
        self.ack_wait = ack_wait
        self._connect_options = dict(connect_options or {})
        self._publisher_options = dict(publisher_options or {})
        self._nc: Optional[NATS] = None
        self._stop = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        self._runs: Dict[str, asyncio.Task[None]] = {}
        self._handlers_running: set[asyncio.Task[Any]] = set()
        self._started_ms = int(time.time() * 1000)

    # ------------------------------------------------------------------ public

    @property
    def active(self) -> int:
        """Runs in progress."""
        return len(self._runs)

    def stop(self) -> None:
        """Starts draining: :meth:`run` returns once the running runs are over."""
        self._stop.set()

    async def run(self, *, signals: bool = False) -> None:
        """Serves until :meth:`stop` (or SIGTERM / SIGINT with ``signals=True``), then drains."""
        loop = asyncio.get_running_loop()
        if signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        opts: Dict[str, Any] = {"name": f"weir-worker:{self.node_id}", "max_reconnect_attempts": -1, "reconnect_time_wait": 0.25}
        opts.update(self._connect_options)
        self._nc = await nats.connect(servers=self.nats_url, **opts)
        js = self._nc.jetstream()
        tasks: List[asyncio.Task[None]] = []
        try:
            await _check_runs_stream(js)
            subs = {agent: await self._subscribe(js, agent) for agent in self.handlers}
            tasks.append(asyncio.create_task(self._announce(js), name="weir-announce"))
            for agent, sub in subs.items():
                tasks.append(asyncio.create_task(self._take(agent, sub), name=f"weir-take-{agent}"))
            log.info("weir worker %s serves %s", self.node_id, ", ".join(sorted(self.handlers)))
            await self._stop.wait()
            await self._drain()
        finally:
            self._stop.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._withdraw(js)
            if signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            await self._nc.close()

    # ------------------------------------------------------------------ taking runs

    async def _subscribe(self, js: Any, agent: str) -> Any:
        """The agent's durable consumer, shared with every worker of the agent."""
        name = CONSUMER_PREFIX + agent
        try:
            await js.consumer_info(RUNS_STREAM, name)
        except nats.js.errors.NotFoundError:
            config = ConsumerConfig(
                name=name,
                durable_name=name,
                filter_subject=RUNS_PREFIX + agent,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=self.ack_wait,
            )
            try:
                await js.add_consumer(RUNS_STREAM, config)
            except nats.js.errors.BadRequestError:
                pass  # another worker made it meanwhile
        return await js.pull_subscribe_bind(durable=name, stream=RUNS_STREAM)

    async def _take(self, agent: str, sub: Any) -> None:
        # Several agents share the slots. A taker waits for a free slot, then for a request
        # without keeping the slot: an agent with an empty queue holds no run's place. A request
        # taken when the slots have gone meanwhile goes back to the queue at once.
        while not self._stop.is_set():
            await self._slots.acquire()
            self._slots.release()
            try:
                msgs = await sub.fetch(1, timeout=self._FETCH_WAIT)
            except (nats.errors.TimeoutError, asyncio.TimeoutError):
                continue
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - NATS away: try again
                log.warning("could not take runs of %s: %s", agent, e)
                await asyncio.sleep(0.5)
                continue
            for m in msgs:
                if self._stop.is_set() or self._slots.locked():
                    # Taken while stopping, or with no room left: offered again at once.
                    await m.nak()
                    continue
                await self._slots.acquire()
                self._start(agent, m)
            if self._stop.is_set():
                return

    def _start(self, agent: str, msg: Any) -> None:
        task = asyncio.create_task(self._execute(agent, msg))
        key = f"{msg.reply}"
        self._runs[key] = task

        def done(_: Any) -> None:
            self._runs.pop(key, None)
            self._slots.release()

        task.add_done_callback(done)

    # ------------------------------------------------------------------ one run

    async def _execute(self, agent: str, msg: Any) -> None:
        try:
            req = json.loads(msg.data)
            session = session_id_of(req["session"])
            if req.get("agent") != agent:
                raise ValueError(f"run request for agent {req.get('agent')!r} on the queue of {agent!r}")
            run_input = req.get("input") or {}
        except (ValueError, KeyError, TypeError) as e:
            log.warning("dropped a malformed run request: %s", e)
            await msg.term()
            return
        options = dict(self._publisher_options)
        options.update(nc=self._nc, node_id=self.node_id, lease_ttl=self.lease_ttl)
        run = Run(session, agent=agent, input=run_input, **options)
        try:
            await run.start()
        except (LeaseHeldError, SessionEndedError) as e:
            log.info("run of %s dropped: %s", session, e)
            await msg.ack()
            return
        except Exception as e:  # noqa: BLE001 - offered again after the ack wait
            log.warning("could not start the run of %s (it will be offered again): %s", session, e)
            return
        # The lease is held: a request offered again finds it and is dropped.
        try:
            await msg.ack()
        except Exception as e:  # noqa: BLE001
            log.debug("run request of %s not acknowledged: %s", session, e)
        await self._drive(agent, run)

    async def _drive(self, agent: str, run: Run) -> None:
        handler = self.handlers[agent]
        work = asyncio.create_task(_call(handler, run), name=f"weir-run-{run.session_id}")
        self._handlers_running.add(work)
        work.add_done_callback(self._handlers_running.discard)
        cancelled = asyncio.create_task(run.wait_cancelled())
        try:
            await asyncio.wait({work, cancelled}, return_when=asyncio.FIRST_COMPLETED)
            if not work.done():
                # Cancelled: the handler may end the session itself (the adapters do).
                await asyncio.wait({work}, timeout=self.cancel_grace)
                if not work.done():
                    work.cancel()
            outcome: Optional[BaseException] = None
            try:
                await work
            except asyncio.CancelledError:
                outcome = asyncio.CancelledError()
            except BaseException as e:  # noqa: BLE001 - reported in the session
                outcome = e
            await self._finish(run, outcome)
        finally:
            cancelled.cancel()
            await run.close()

    async def _finish(self, run: Run, outcome: Optional[BaseException]) -> None:
        if run.ended or run.failure is not None:
            return
        try:
            if run.cancelled:
                await run.end("cancelled")
            elif isinstance(outcome, asyncio.CancelledError) and self._stop.is_set():
                await run.emit("error", {"code": "producer_shutdown", "message": "the worker shut down before the run finished"})
                await run.end("failed")
            elif outcome is None:
                await run.end("completed")
            elif isinstance(outcome, WeirError):
                log.error("run of %s stopped: %s", run.session_id, outcome)
            else:
                message = f"{type(outcome).__name__}: {outcome}"
                await run.emit("error", {"code": "handler_error", "message": message})
                await run.end("failed")
        except WeirError as e:
            log.error("could not end the run of %s: %s", run.session_id, e)

    async def _drain(self) -> None:
        running = list(self._runs.values())
        log.info("weir worker %s draining: %d run(s), grace %.1fs", self.node_id, len(running), self.drain_grace)
        if not running:
            return
        _, late = await asyncio.wait(running, timeout=self.drain_grace)
        if not late:
            return
        # Past the grace: the handlers are cancelled and their runs end `failed`.
        for work in list(self._handlers_running):
            work.cancel()
        await asyncio.wait(late)

    # ------------------------------------------------------------------ the node registry

    def _entry(self) -> bytes:
        now = int(time.time() * 1000)
        return json.dumps(
            {
                "id": self.node_id,
                "role": "producer",
                "version": _version(),
                "started": self._started_ms,
                "last_seen": now,
                "runtime": "python",
                "agents": sorted(self.handlers),
                "runs": self.active,
                "concurrency": self.concurrency,
            }
        ).encode()

    def _node_key(self) -> str:
        return "".join(c if c.isascii() and (c.isalnum() or c in "-_=") else "_" for c in self.node_id)

    async def _announce(self, js: Any) -> None:
        kv = None
        while True:
            try:
                if kv is None:
                    kv = await js.key_value(NODES_BUCKET)
                await kv.put(self._node_key(), self._entry())
            except nats.js.errors.BucketNotFoundError:
                log.warning("no weir node has created %s on this NATS: edges cannot see this worker", NODES_BUCKET)
            except Exception as e:  # noqa: BLE001 - announced again shortly
                log.debug("could not announce worker %s: %s", self.node_id, e)
            await asyncio.sleep(self.node_ttl / 3)

    async def _withdraw(self, js: Any) -> None:
        try:
            kv = await js.key_value(NODES_BUCKET)
            await kv.purge(self._node_key())
        except Exception as e:  # noqa: BLE001 - it lapses after the TTL
            log.debug("could not withdraw worker %s: %s", self.node_id, e)


async def _check_runs_stream(js: Any) -> None:
    """Refuses, saying why, a NATS where no weir node of this release has made the run queues."""
    try:
        info = await js.stream_info(RUNS_STREAM)
    except nats.js.errors.NotFoundError:
        raise WeirError(
            f"no stream {RUNS_STREAM} on this NATS: start a weir edge or producer first (they create the streams)"
        ) from None
    if RUNS_PREFIX + ">" not in (info.config.subjects or []):
        raise WeirError(
            f"stream {RUNS_STREAM} has subjects {info.config.subjects}, not per-agent queues ({RUNS_PREFIX}>): "
            "it was made by an older weir release; start a weir node of this release, which migrates it"
        )


async def _call(handler: Handler, run: Run) -> Any:
    result = handler(run)
    if inspect.isawaitable(result):
        return await result
    return result


def _version() -> str:
    from . import __version__

    return __version__
