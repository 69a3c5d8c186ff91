"""Publish a session's events to weir's event log (NATS JetStream), see docs/protocol.md §1–2.

One :class:`Publisher` owns one session: it assigns seqs 1, 2, 3, … (continuing after whatever
the log already holds), publishes them to ``weir.ev.<session>`` in stream ``WEIR_EVENTS`` and
listens for control messages on ``weir.ctl.<session>``.

Delivery rules kept here:

* every message carries ``Nats-Msg-Id`` (``<session>:<seq>`` or ``<session>:<first>-<last>``)
  and ``Weir-Seq`` (last seq in the message), so a retried publish is stored once;
* every message carries ``Nats-Expected-Last-Subject-Sequence`` = the stream sequence of this
  publisher's previous message on the subject (the *fence*): if anything else was published to
  the session in between, the server refuses and this publisher raises :class:`FencedError`
  and stops;
* a retry (after a timeout or a lost connection) resends the very same bytes with the same
  headers, with exponential backoff;
* at most ``max_in_flight`` events are queued or unacknowledged; :meth:`Publisher.emit` waits
  when the window is full;
* the sender batches only what is already waiting: an event is never held back to fill a batch;
* it holds the session's lease (``WEIR_LEASES``, see :mod:`weir._lease`) from :meth:`start` until
  its end is stored, renewing it every third of ``lease_ttl``: if the process dies, a weir node
  ends the session ``failed`` within the lease time; if another took the lease over, this
  publisher stops (:class:`FencedError`) without publishing more.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import re
import time
from typing import Any, Deque, Dict, List, Mapping, Optional, Tuple, Union

import nats
from nats.aio.client import Client as NATS

from ._errors import (
    EventTooLargeError,
    FencedError,
    SessionEndedError,
    WeirError,
)
from ._lease import Lease, default_node_id
from ._control import CONTROL_OPS, Callback, Control
from ._log import EVENTS_PREFIX, SessionLog

log = logging.getLogger("weir")

STREAM = "WEIR_EVENTS"
CONTROL_PREFIX = "weir.ctl."
SESSION_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
END_REASONS = ("completed", "cancelled", "failed")

# Room kept in a NATS message for headers and the array brackets.
_HEADER_ROOM = 1024

SessionLike = Union[str, Mapping[str, Any]]


def now_ms() -> float:
    """Wall clock in Unix milliseconds with microsecond precision (the events' ``ts``)."""
    return round(time.time_ns() / 1_000_000, 3)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def session_id_of(session: SessionLike) -> str:
    """The session id of a ``POST /v1/sessions`` answer (a mapping with ``id``) or of an id."""
    sid = session if isinstance(session, str) else session.get("id")
    if not isinstance(sid, str) or not SESSION_ID_RE.match(sid):
        raise ValueError(f"not a weir session id: {sid!r} (must match [A-Za-z0-9_-]{{1,64}})")
    return sid


class Publisher(Control):
    """Publishes one session's events to weir and follows its control channel.

    ``session`` is the JSON answer of ``POST /v1/sessions {"agent": "external"}`` on an edge
    (or just its ``id``). Use it as an async context manager, or call :meth:`start` and
    :meth:`close`::

        async with Publisher(session, nats_url="nats://127.0.0.1:4222") as pub:
            await pub.emit("token", {"text": "Hel"}, source="assistant")
            await pub.end("completed")

    Leaving the ``async with`` block without :meth:`end` publishes ``end`` for you: reason
    ``completed`` on a normal exit, ``cancelled`` on ``asyncio.CancelledError``, and
    ``error`` + ``end`` ``failed`` on any other exception (unless ``auto_end=False``).

    Control (``{"op": "pause"|"resume"|"cancel"}`` on ``weir.ctl.<session>``) sets
    :attr:`paused` / :attr:`cancelled`, wakes :meth:`wait_if_paused`, runs the callbacks
    registered with :meth:`on` (or ``on_pause=`` … in the constructor) and, for pause and
    resume, publishes a ``status`` event ``{"state": "paused"|"resumed"}`` at once. While
    paused, :meth:`emit` holds its caller (``hold_while_paused=True``), so ``status paused``
    is the session's last event until ``status resumed``: generation stops, not just
    delivery, and anyone reading the log sees that the session is paused. Cancel does not end
    the session by itself: the producer stops its run and calls ``end("cancelled")``
    (cancel also releases a paused :meth:`emit`).
    """

    def __init__(
        self,
        session: SessionLike,
        *,
        nats_url: Union[str, List[str]] = "nats://127.0.0.1:4222",
        nc: Optional[NATS] = None,
        stream: str = STREAM,
        max_in_flight: int = 1024,
        max_batch: int = 256,
        max_batch_bytes: int = 256 * 1024,
        ack_timeout: float = 2.0,
        retry_deadline: float = 60.0,
        backoff_initial: float = 0.05,
        backoff_max: float = 2.0,
        publish_status: bool = True,
        hold_while_paused: bool = True,
        auto_end: bool = True,
        on_pause: Optional[Callback] = None,
        on_resume: Optional[Callback] = None,
        on_cancel: Optional[Callback] = None,
        connect_options: Optional[Dict[str, Any]] = None,
        node_id: Optional[str] = None,
        lease_ttl: float = 10.0,
    ) -> None:
        if max_in_flight < 1 or max_batch < 1:
            raise ValueError("max_in_flight and max_batch must be >= 1")
        if lease_ttl <= 0:
            raise ValueError("lease_ttl must be > 0")
        self._node_id = node_id or default_node_id("publisher")
        self._lease_ttl = lease_ttl
        self._lease: Optional[Lease] = None
        self._sid = session_id_of(session)
        self._subject = EVENTS_PREFIX + self._sid
        self._ctl_subject = CONTROL_PREFIX + self._sid
        self._nats_url = nats_url
        self._nc = nc
        self._own_nc = nc is None
        self._connect_options = dict(connect_options or {})
        self._stream = stream
        self._max_in_flight = max_in_flight
        self._max_batch = max_batch
        self._max_batch_bytes = max_batch_bytes
        self._ack_timeout = ack_timeout
        self._retry_deadline = retry_deadline
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._publish_status = publish_status
        self._hold_while_paused = hold_while_paused
        self._auto_end = auto_end

        self._js: Any = None
        self._log: Any = None  # SessionLog, once started
        # The least number a default request id (``ask_<n>``) may take: ids never repeat.
        self._ask_next = 1
        self._ctl_sub: Any = None
        self._max_payload = 1024 * 1024
        self._started = False
        self._closed = False

        # Seq bookkeeping.
        self._next_seq = 1  # next seq to assign
        self._acked_seq = 0  # every seq <= this is stored in the log
        self._fence = 0  # stream seq of the last message on the subject that we know of
        self._in_flight = 0  # events queued or awaiting their ack
        self._queue: Deque[Tuple[int, bytes]] = collections.deque()
        self._queue_ev = asyncio.Event()
        self._space_ev = asyncio.Event()
        self._progress_ev = asyncio.Event()
        self._end_claimed = False
        self._end_seq: Optional[int] = None
        self._failure: Optional[BaseException] = None
        self._sender_task: Optional[asyncio.Task[None]] = None

        # Control state.
        self._paused = False
        self._cancelled = False
        self._gate = asyncio.Event()
        self._gate.set()
        self._cancel_ev = asyncio.Event()
        self._halt_ev = asyncio.Event()  # cancelled or failed
        self._listeners: Dict[str, List[Callback]] = {op: [] for op in CONTROL_OPS}
        self._bg: set[asyncio.Task[Any]] = set()
        for op, cb in (("pause", on_pause), ("resume", on_resume), ("cancel", on_cancel)):
            if cb is not None:
                self.on(op, cb)

    # ------------------------------------------------------------------ properties

    @property
    def session_id(self) -> str:
        return self._sid

    @property
    def subject(self) -> str:
        return self._subject

    @property
    def paused(self) -> bool:
        """True between a ``pause`` and the next ``resume`` (control channel)."""
        return self._paused

    @property
    def cancelled(self) -> bool:
        """True once a ``cancel`` arrived on the control channel."""
        return self._cancelled

    @property
    def ended(self) -> bool:
        """True once :meth:`end` has been called."""
        return self._end_claimed

    @property
    def last_seq(self) -> int:
        """The last seq assigned (published or still in flight); 0 before the first."""
        return self._next_seq - 1

    @property
    def acked_seq(self) -> int:
        """Every seq up to this one is stored in the log."""
        return self._acked_seq

    @property
    def fence(self) -> int:
        """Stream sequence of the last message on the session's subject that this publisher knows."""
        return self._fence

    @property
    def failure(self) -> Optional[BaseException]:
        """The error that stopped this publisher (e.g. :class:`FencedError`), if any."""
        return self._failure

    @property
    def nc(self) -> Optional[NATS]:
        return self._nc

    @property
    def node_id(self) -> str:
        """The id this publisher holds the session's lease as (the session's ``producer``)."""
        return self._node_id

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> "Publisher":
        await self.start()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if self._auto_end and not self._end_claimed and self._failure is None and self._started:
                if exc is None:
                    await self.end("completed")
                elif isinstance(exc, asyncio.CancelledError):
                    await self.end("cancelled")
                elif not isinstance(exc, WeirError):
                    await self.emit("error", {"code": "producer_error", "message": f"{type(exc).__name__}: {exc}"})
                    await self.end("failed")
        finally:
            await self.close()

    async def start(self) -> "Publisher":
        """Connect (unless given ``nc``), find where the session's log ends, follow control."""
        if self._started:
            return self
        if self._nc is None:
            opts: Dict[str, Any] = {
                "name": f"weir-publisher:{self._sid}",
                "max_reconnect_attempts": -1,
                "reconnect_time_wait": 0.25,
            }
            opts.update(self._connect_options)
            self._nc = await nats.connect(servers=self._nats_url, **opts)
        self._js = self._nc.jetstream()
        if self._nc.max_payload:
            self._max_payload = int(self._nc.max_payload)
        try:
            self._log = SessionLog(
                self._js,
                self._sid,
                self._stream,
                ack_timeout=self._ack_timeout,
                retry_deadline=self._retry_deadline,
                backoff_initial=self._backoff_initial,
                backoff_max=self._backoff_max,
            )
            last_seq, fence, last_kind = await self._log.last()
            if last_kind == "end":
                raise SessionEndedError(f"session {self._sid!r} already ended (seq {last_seq} is its end event)")
            self._next_seq = last_seq + 1
            self._acked_seq = last_seq
            self._fence = fence
            self._lease = await Lease.acquire(self._js, self._sid, self._node_id, self._lease_ttl)
            self._ctl_sub = await self._nc.subscribe(self._ctl_subject, cb=self._on_control)
            # Make sure the server has the subscription before anyone relies on it. Twice: nats-py
            # (2.16) writes a flush's PING straight to the socket, possibly ahead of the SUB still
            # queued for its flusher task, so only the second PONG proves the SUB was processed.
            await self._nc.flush(timeout=self._ack_timeout)
            await self._nc.flush(timeout=self._ack_timeout)
        except BaseException:
            if self._own_nc:
                await self._nc.close()
            raise
        self._sender_task = asyncio.create_task(self._sender(), name=f"weir-sender-{self._sid}")
        if self._lease is not None:
            keeper = asyncio.create_task(self._lease.keep(self._lease_lost), name=f"weir-lease-{self._sid}")
            self._bg.add(keeper)
            keeper.add_done_callback(self._bg_done)
        self._started = True
        log.debug("publisher %s starts after seq %d (fence %d)", self._sid, self._acked_seq, self._fence)
        return self

    async def close(self) -> None:
        """Wait until everything emitted is stored, then stop (and close the NATS connection if owned)."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._started and self._failure is None:
                await self.flush()
        finally:
            for t in (self._sender_task, *self._bg):
                if t is not None and not t.done():
                    t.cancel()
            for t in (self._sender_task, *self._bg):
                if t is not None:
                    try:
                        await t
                    except BaseException:  # noqa: BLE001 - shutting down
                        pass
            if self._ctl_sub is not None:
                try:
                    await self._ctl_sub.unsubscribe()
                except Exception:  # noqa: BLE001
                    pass
            # Released only once the end is stored; otherwise it lapses and a weir node ends
            # the session `failed`.
            if self._lease is not None and self._end_seq is not None and self._acked_seq >= self._end_seq:
                try:
                    await self._lease.release()
                except Exception as e:  # noqa: BLE001 - it lapses instead
                    log.warning("lease of session %s not released (it will lapse): %s", self._sid, e)
            if self._own_nc and self._nc is not None and not self._nc.is_closed:
                await self._nc.close()
            self._halt_ev.set()
            self._gate.set()

    # ------------------------------------------------------------------ publishing

    async def emit(
        self,
        kind: str,
        data: Optional[Mapping[str, Any]] = None,
        *,
        source: Optional[str] = None,
        ts: Optional[float] = None,
    ) -> int:
        """Queue one event and return its seq. Waits while the in-flight window is full, and
        while the session is paused (unless ``hold_while_paused=False``): so ``status``
        ``paused`` stays the last event in the log until ``resume``.

        ``data`` must be JSON-serialisable. Raises the publisher's failure (e.g.
        :class:`FencedError`) if it has stopped, and :class:`SessionEndedError` after
        :meth:`end`.
        """
        if kind == "end":
            raise ValueError("publish the end event with end()")
        return await self._emit(kind, data, source, ts)

    async def end(self, reason: str = "completed", *, stop_reason: Optional[str] = None, **extra: Any) -> int:
        """Publish the session's ``end`` event (exactly once, last) and wait until it is stored."""
        if reason not in END_REASONS:
            raise ValueError(f"end reason must be one of {END_REASONS}, not {reason!r}")
        if self._end_claimed:
            raise SessionEndedError(f"session {self._sid!r}: end was already published")
        data: Dict[str, Any] = {"reason": reason}
        if stop_reason is not None:
            data["stop_reason"] = stop_reason
        data.update(extra)
        self._end_claimed = True
        try:
            seq = await self._emit("end", data, None, None, is_end=True)
        except BaseException:
            if self._end_seq is None:
                self._end_claimed = False
            raise
        await self.flush()
        return seq

    async def flush(self) -> None:
        """Wait until every event emitted so far is stored in the log."""
        target = self._next_seq - 1
        while self._acked_seq < target:
            if self._failure is not None:
                raise self._failure
            self._progress_ev.clear()
            await self._progress_ev.wait()

    async def ask(
        self,
        prompt: str,
        schema: Optional[Mapping[str, Any]] = None,
        *,
        request: Optional[str] = None,
        source: Optional[str] = None,
    ) -> Dict[str, Any]:
        """Ask a person and wait for the answer (docs/protocol.md §9): publishes ``input_request``
        ``{"id", "prompt", "schema"?}`` (``id`` = ``request``, default ``ask_<its seq>``), waits
        for the answer in NATS KV ``WEIR_INPUTS`` (given by anyone holding the session's token:
        ``POST /v1/sessions/{id}/input`` or the WebSocket ``input`` frame, checked against
        ``schema`` by the edge), publishes ``input`` ``{"request", "data"}`` once and returns
        ``data``. The session's status is ``input_required`` meanwhile and the lease is renewed:
        the wait is bounded only by the retention. An answer given while paused is published
        after ``resume``; a ``cancel`` while waiting raises :class:`asyncio.CancelledError`.
        """
        from ._ask import ask

        return await ask(self, prompt, schema, request=request, source=source)

    async def _emit(
        self,
        kind: str,
        data: Optional[Mapping[str, Any]],
        source: Optional[str],
        ts: Optional[float],
        *,
        is_end: bool = False,
    ) -> int:
        self._check_usable(is_end)
        if not isinstance(kind, str) or not kind:
            raise ValueError("kind must be a non-empty string")
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise TypeError(f"event data must be a mapping (JSON object), not {type(data).__name__}")
        # Serialise before a seq is assigned: a bad event must not leave a gap.
        try:
            data_json = _dumps(data)
        except (TypeError, ValueError) as e:
            raise TypeError(f"event data is not JSON-serialisable: {e}") from e
        head_extra = "" if source is None else ',"source":' + _dumps(str(source))
        size = len(data_json.encode("utf-8")) + len(head_extra.encode("utf-8")) + len(kind.encode("utf-8")) + 100
        if size > self._max_payload - _HEADER_ROOM:
            raise EventTooLargeError(
                f"{kind} event of about {size} bytes does not fit in a NATS message "
                f"(max_payload {self._max_payload})"
            )
        hold = self._hold_while_paused and not is_end
        while True:
            if hold:
                await self._wait_gate()
            await self._reserve()
            if self._end_claimed and not is_end:
                self._release(1)
                raise SessionEndedError(f"session {self._sid!r} has ended")
            if hold and self._paused and not self._cancelled:
                self._release(1)  # paused while we waited for room: hold again
                continue
            break
        seq = self._enqueue(kind, data_json, head_extra, ts)
        if is_end:
            self._end_seq = seq
        return seq

    def _enqueue(self, kind: str, data_json: str, head_extra: str, ts: Optional[float]) -> int:
        """Assign the next seq and queue the event (its window slot is already taken)."""
        seq = self._next_seq
        self._next_seq += 1
        ev_ts = now_ms() if ts is None else float(ts)
        ev = '{"seq":%d,"kind":%s,"ts":%s%s,"data":%s}' % (seq, _dumps(kind), _dumps(ev_ts), head_extra, data_json)
        self._queue.append((seq, ev.encode("utf-8")))
        self._queue_ev.set()
        return seq

    async def _wait_gate(self) -> None:
        while self._paused and not self._cancelled and self._failure is None and not self._closed:
            await self._gate.wait()
        if self._failure is not None:
            raise self._failure

    def _check_usable(self, is_end: bool) -> None:
        if self._failure is not None:
            raise self._failure
        if not self._started:
            raise WeirError("publisher not started: use `async with Publisher(...)` or `await pub.start()`")
        if self._closed:
            raise WeirError("publisher is closed")
        if self._end_claimed and not is_end:
            raise SessionEndedError(f"session {self._sid!r} has ended")

    async def _reserve(self) -> None:
        while True:
            if self._failure is not None:
                raise self._failure
            if self._in_flight < self._max_in_flight:
                self._in_flight += 1
                return
            self._space_ev.clear()
            await self._space_ev.wait()

    def _release(self, n: int) -> None:
        self._in_flight -= n
        self._space_ev.set()

    def _lease_lost(self, owner: str) -> None:
        self._fail(FencedError(self._sid, self._fence, f"its lease was taken over by {owner!r}"))
        if self._sender_task is not None:
            self._sender_task.cancel()

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
            log.error("weir publisher for session %s stopped: %s", self._sid, exc)
        for ev in (self._space_ev, self._progress_ev, self._gate, self._halt_ev):
            ev.set()

    async def _sender(self) -> None:
        try:
            limit = max(1, min(self._max_batch_bytes, self._max_payload - _HEADER_ROOM))
            while True:
                while not self._queue:
                    self._queue_ev.clear()
                    await self._queue_ev.wait()
                first, body = self._queue.popleft()
                items = [body]
                last = first
                size = len(body) + 2
                # Batch only what is already waiting.
                while self._queue and len(items) < self._max_batch:
                    seq, nxt = self._queue[0]
                    if size + len(nxt) + 1 > limit:
                        break
                    self._queue.popleft()
                    items.append(nxt)
                    size += len(nxt) + 1
                    last = seq
                payload = items[0] if len(items) == 1 else b"[" + b",".join(items) + b"]"
                self._fence = await self._log.store(first, last, payload, self._fence)
                self._acked_seq = last
                self._release(len(items))
                self._progress_ev.set()
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # noqa: BLE001 - reported to every caller
            self._fail(e)

    def _status_now(self, state: str) -> None:
        """Queue a ``status`` event at once. It takes a window slot without waiting for one (a
        control message must not wait behind the run), within a hard bound of twice the window."""
        if not self._publish_status or not self._started or self._closed:
            return
        if self._end_claimed or self._failure is not None:
            return
        if self._in_flight >= 2 * self._max_in_flight:
            log.warning("session %s: status %s not published: too much in flight", self._sid, state)
            return
        self._in_flight += 1
        self._enqueue("status", _dumps({"state": state}), "", None)
