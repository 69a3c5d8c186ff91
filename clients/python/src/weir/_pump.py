"""The one loop that streams an agent framework's run to weir, shared by every adapter.

An adapter is two things: a *mapping* (``feed(item) -> [(kind, data, source)]``, pure
except for the state a framework's stream needs, such as argument fragments of a tool call)
and the run's stream of items. :func:`pump` owns everything else and does it the same way for
every framework: pause (no item is pulled while paused), cancel (nothing more of the run is
published once it arrives; the run is stopped and the session ends ``cancelled``), errors of the
run (``error`` + ``end`` ``failed``, returned, not raised), errors of the publisher (the run is
stopped and the error raised) and the single ``end``.

A mapping returns ``("end", {"reason": "completed", "stop_reason": …}, None)`` for the item
that completes the run (AutoGen's ``TaskResult``, Agent Framework's final response).
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import sys
from typing import Any, AsyncIterator, Callable, Dict, List, Optional, Protocol, Tuple

from ._errors import WeirError
from ._publisher import Publisher

log = logging.getLogger("weir")

# (kind, data, source)
WeirEventSpec = Tuple[str, Dict[str, Any], Optional[str]]

#: Kinds with a meaning in the weir protocol; a pass-through item never takes one of them.
RESERVED_KINDS = frozenset(
    {"token", "message", "tool_call", "tool_result", "usage", "status", "input_request", "input", "error", "end"}
)


class Mapping(Protocol):
    """What a framework adapter provides to :func:`pump`."""

    def feed(self, item: Any) -> List[WeirEventSpec]:
        """The weir events for one item of the run's stream."""

    def on_cancel(self) -> List[WeirEventSpec]:
        """Events that close what the cancelled run left open (published before ``end``)."""


@dataclasses.dataclass
class RunOutcome:
    """How a run streamed by ``stream_to_weir`` ended."""

    reason: str  # completed | cancelled | failed
    stop_reason: Optional[str] = None
    result: Optional[Any] = None  # the framework's final result (AutoGen TaskResult, Agent Framework response)
    error: Optional[BaseException] = None  # the run's exception when it failed
    end_seq: Optional[int] = None  # seq of the end event (None with end=False)


def error_data(exc: BaseException) -> Dict[str, Any]:
    msg = str(exc) or type(exc).__name__
    return {"code": "agent_error", "message": f"{type(exc).__name__}: {msg}"[:4000], "exception": type(exc).__name__}


async def aclose(agen: Any, timeout: float) -> None:
    """Close a run's stream, within ``timeout`` (on Python 3.11+), swallowing its errors."""
    close = getattr(agen, "aclose", None)
    if close is None:
        return
    try:
        if sys.version_info >= (3, 11):  # stays in this task (contextvars of the run stay consistent)
            async with asyncio.timeout(timeout):
                await close()
        else:
            await close()
    except (Exception, asyncio.CancelledError) as e:  # noqa: BLE001 - the run is being stopped anyway
        log.debug("closing the run's stream: %r", e)


async def pump(
    publisher: Publisher,
    items: AsyncIterator[Any],
    mapping: Mapping,
    *,
    stop_run: Callable[[], None] = lambda: None,
    stop_requested: Callable[[], bool] = lambda: False,
    cancel_grace: float = 0.0,
    close_timeout: float = 10.0,
    end: bool = True,
    name: str = "weir-run",
) -> RunOutcome:
    """Publish ``mapping.feed(item)`` for every item of ``items`` and end the session.

    ``stop_run`` asks the run to stop by itself (AutoGen's ``CancellationToken.cancel``); it is
    called when ``cancel`` arrives and when the run must stop for another reason.
    ``stop_requested()`` says whether it was called (an exception of a run that was asked to
    stop means ``cancelled``, not ``failed``). After ``cancel_grace`` seconds a run that is
    still going is cancelled with ``asyncio`` (at once with the default 0, for frameworks that
    have no cancel API of their own).
    """
    remove = publisher.on("cancel", stop_run)
    if publisher.cancelled:
        stop_run()
    outcome = RunOutcome(reason="completed")

    async def run() -> str:
        try:
            while True:
                if not await publisher.wait_if_paused():
                    return "halted"
                try:
                    item = await items.__anext__()
                except StopAsyncIteration:
                    return "exhausted"
                for kind, data, source in mapping.feed(item):
                    if publisher.cancelled or publisher.failure is not None:
                        return "halted"  # nothing more is published once cancel arrived
                    if kind == "end":
                        outcome.result = item
                        outcome.stop_reason = data.get("stop_reason")
                        return "result"
                    await publisher.emit(kind, data, source=source)
        finally:
            await aclose(items, close_timeout)

    async def close_cancelled() -> None:
        for kind, data, source in mapping.on_cancel():
            await publisher.emit(kind, data, source=source)

    run_task = asyncio.create_task(run(), name=f"{name}-{publisher.session_id}")
    halt_task = asyncio.create_task(publisher._wait_halt())
    try:
        try:
            await asyncio.wait({run_task, halt_task}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # The caller was cancelled: stop the run and close the session as cancelled.
            stop_run()
            run_task.cancel()
            await asyncio.gather(run_task, return_exceptions=True)
            if end and not publisher.ended and publisher.failure is None:
                try:
                    await close_cancelled()
                    await publisher.end("cancelled")
                except Exception:  # noqa: BLE001
                    log.exception("publishing end(cancelled) failed")
            raise
        if not run_task.done():
            # Cancelled on the control channel, or the publisher failed: ask the run to stop
            # (AutoGen stops its model calls, tools and team runtime cleanly); nothing more is
            # published. A run still going after `cancel_grace` is cancelled hard.
            stop_run()
            await asyncio.wait({run_task}, timeout=cancel_grace)
            if not run_task.done():
                run_task.cancel()
            await asyncio.gather(run_task, return_exceptions=True)
            if publisher.failure is not None:
                raise publisher.failure
            outcome.reason = "cancelled"
        elif run_task.cancelled():
            # The run stopped itself with CancelledError: it was asked to stop.
            outcome.reason = "cancelled"
        else:
            exc = run_task.exception()
            if exc is not None:
                if isinstance(exc, WeirError) or publisher.failure is not None:
                    stop_run()
                    raise publisher.failure or exc
                if publisher.cancelled or stop_requested():
                    outcome.reason = "cancelled"
                else:
                    outcome.reason = "failed"
                    outcome.error = exc
                    log.warning("%s failed: %r", name, exc)
                    await publisher.emit("error", error_data(exc))
            elif run_task.result() == "halted":
                if publisher.failure is not None:
                    raise publisher.failure
                outcome.reason = "cancelled"
        if outcome.reason == "cancelled":
            await close_cancelled()
        if end:
            outcome.end_seq = await publisher.end(outcome.reason, stop_reason=outcome.stop_reason)
        else:
            await publisher.flush()
        return outcome
    finally:
        halt_task.cancel()
        remove()


def conversation_of(run_input: Any) -> List[Tuple[str, str]]:
    """``(role, content)`` of each message of a thread run's conversation (``input["messages"]``,
    docs/protocol.md §9) that has text; empty when the run has none."""
    messages = run_input.get("messages") if isinstance(run_input, dict) else None
    if not isinstance(messages, list):
        return []
    return [
        (str(m.get("role") or "user"), m["content"])
        for m in messages
        if isinstance(m, dict) and isinstance(m.get("content"), str)
    ]


def task_of(run_input: Any) -> Any:
    """The task of a run: ``input["task"]``, or the content of the last message of a thread's
    conversation (``input["messages"]``). The adapters' handlers give a thread's whole
    conversation to their framework instead."""
    if isinstance(run_input, dict) and run_input.get("task") is not None:
        return run_input["task"]
    conversation = conversation_of(run_input)
    return conversation[-1][1] if conversation else None


def takes_argument(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params)
