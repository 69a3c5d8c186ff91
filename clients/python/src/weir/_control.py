"""The control side of a :class:`weir.Publisher`: ``{"op": "pause"|"resume"|"cancel"}`` on
``weir.ctl.<session>`` (docs/protocol.md §2), the state it sets and the callbacks it runs.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from typing import Any, Awaitable, Callable, Dict, List, Optional, Union

from nats.aio.msg import Msg

log = logging.getLogger("weir")

CONTROL_OPS = ("pause", "resume", "cancel")

Callback = Callable[[], Union[None, Awaitable[None]]]


class Control:
    """Pause, resume and cancel for one session; :class:`weir.Publisher` is one."""

    # Set by the publisher.
    _sid: str
    _paused: bool
    _cancelled: bool
    _closed: bool
    _end_claimed: bool
    _failure: Optional[BaseException]
    _gate: asyncio.Event
    _cancel_ev: asyncio.Event
    _halt_ev: asyncio.Event
    _listeners: Dict[str, List[Callback]]
    _bg: set[asyncio.Task[Any]]

    def _status_now(self, state: str) -> None:
        """Queues the ``status`` event of a pause or resume at once (the publisher's)."""
        raise NotImplementedError

    def on(self, op: str, callback: Callback) -> Callable[[], None]:
        """Call ``callback()`` (sync or async) when control ``op`` (pause/resume/cancel) takes effect.

        Returns a function that removes the callback.
        """
        if op not in CONTROL_OPS:
            raise ValueError(f"op must be one of {CONTROL_OPS}")
        self._listeners[op].append(callback)

        def remove() -> None:
            try:
                self._listeners[op].remove(callback)
            except ValueError:
                pass

        return remove

    async def wait_if_paused(self) -> bool:
        """Return at once unless paused; else wait for resume (or cancel).

        Returns False when the run should stop (cancelled, or the publisher failed).
        """
        while self._paused and not self._cancelled and self._failure is None and not self._closed:
            await self._gate.wait()
        return not self._cancelled and self._failure is None

    async def wait_cancelled(self) -> None:
        """Wait until a ``cancel`` arrives on the control channel."""
        await self._cancel_ev.wait()

    async def _wait_halt(self) -> None:
        """Wait until cancelled or failed (used by adapters to stop a run promptly)."""
        await self._halt_ev.wait()

    def apply_control(self, op: str) -> bool:
        """Apply a control op as if it came from ``weir.ctl.<session>``; True if it changed state."""
        if self._end_claimed or self._failure is not None:
            return False
        if op == "pause":
            if self._paused or self._cancelled:
                return False
            # The status takes its seq now, before anything that is held by the pause.
            self._paused = True
            self._gate.clear()
            self._status_now("paused")
        elif op == "resume":
            if not self._paused or self._cancelled:
                return False
            # The status takes its seq now, before the held emits are let through.
            self._status_now("resumed")
            self._paused = False
            self._gate.set()
        elif op == "cancel":
            if self._cancelled:
                return False
            self._cancelled = True
            self._cancel_ev.set()
            self._halt_ev.set()
            self._gate.set()
        else:
            log.warning("session %s: unknown control op %r ignored", self._sid, op)
            return False
        log.info("session %s: %s", self._sid, op)
        for cb in list(self._listeners[op]):
            try:
                r = cb()
                if inspect.isawaitable(r):
                    t = asyncio.ensure_future(r)
                    self._bg.add(t)
                    t.add_done_callback(self._bg_done)
            except Exception:  # noqa: BLE001
                log.exception("control callback for %s failed", op)
        return True

    def _bg_done(self, t: "asyncio.Future[Any]") -> None:
        self._bg.discard(t)  # type: ignore[arg-type]
        if not t.cancelled() and t.exception() is not None:
            log.error("control callback failed: %r", t.exception())

    async def _on_control(self, msg: Msg) -> None:
        try:
            body = json.loads(msg.data)
            op = body.get("op") if isinstance(body, dict) else None
        except ValueError:
            op = None
        if not isinstance(op, str):
            log.warning("session %s: malformed control message %r ignored", self._sid, msg.data[:200])
            return
        changed = self.apply_control(op)
        if msg.reply:
            try:
                await msg.respond(json.dumps({"ok": True, "op": op, "changed": changed}).encode())
            except Exception:  # noqa: BLE001
                pass
