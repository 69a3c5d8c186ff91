"""Asking a person mid-run (docs/protocol.md §9, "Asking a person"), with NATS alone.

:meth:`weir.Publisher.ask` publishes ``input_request`` ``{"id", "prompt", "schema"?}``, waits for
the answer in the key-value bucket ``WEIR_INPUTS`` (key ``<session>.<request>``; edges store the
first answer given to ``POST /v1/sessions/{id}/input`` or the WebSocket ``input`` frame there),
publishes ``input`` ``{"request", "data"}`` once and returns the answer's ``data``. The lease is
renewed meanwhile: a run waiting for a person is a live run, bounded only by the retention. An
answer stored while nobody waited (this process restarted, or the answer came before the wait
began) is found, since the wait starts from the key's last value.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional

import nats.errors
import nats.js.errors

from ._errors import WeirError

if TYPE_CHECKING:  # pragma: no cover
    from ._publisher import Publisher

log = logging.getLogger("weir")

INPUTS_BUCKET = "WEIR_INPUTS"
#: How often a wait reads the key directly too (a watch can die with a reconnect).
RECHECK_S = 5.0

#: The schema of a free-text answer: ``{"text": "..."}``.
TEXT_SCHEMA: Dict[str, Any] = {
    "type": "object",
    "properties": {"text": {"type": "string"}},
    "required": ["text"],
}
#: The schema of an approval: ``{"approved": true|false}``.
APPROVAL_SCHEMA: Dict[str, Any] = {
    "type": "object",
    "properties": {"approved": {"type": "boolean"}},
    "required": ["approved"],
}


def answer_key(session: str, request: str) -> str:
    return f"{session}.{request}"


def _decode(key: str, value: Optional[bytes]) -> Optional[Dict[str, Any]]:
    if not value:
        return None
    try:
        data = json.loads(value)
    except ValueError as e:
        raise WeirError(f"the answer stored at {key} is not JSON: {e}") from e
    if not isinstance(data, dict):
        raise WeirError(f"the answer stored at {key} is not a JSON object")
    return data


async def _bucket(js: Any) -> Any:
    """The answers' bucket; edges create it when they start, so wait for one that has."""
    warned = False
    while True:
        try:
            return await js.key_value(INPUTS_BUCKET)
        except nats.js.errors.BucketNotFoundError:
            if not warned:
                log.warning("bucket %s does not exist yet (no weir edge of this release has started); waiting", INPUTS_BUCKET)
                warned = True
            await asyncio.sleep(1.0)


async def _get(kv: Any, key: str) -> Optional[Dict[str, Any]]:
    try:
        entry = await kv.get(key)
    except nats.js.errors.KeyNotFoundError:
        return None
    return _decode(key, entry.value)


async def wait_answer(js: Any, session: str, request: str) -> Dict[str, Any]:
    """The answer to ``request`` of ``session``, once one is stored (at once if it is)."""
    kv = await _bucket(js)
    key = answer_key(session, request)
    while True:
        try:
            watcher = await kv.watch(key)
        except Exception as e:  # noqa: BLE001 - NATS away: read it directly, then watch again
            log.debug("cannot watch %s yet: %s", key, e)
            try:
                found = await _get(kv, key)
            except (nats.errors.Error, asyncio.TimeoutError):
                found = None
            if found is not None:
                return found
            await asyncio.sleep(RECHECK_S / 5)
            continue
        try:
            while True:
                try:
                    entry = await watcher.updates(timeout=RECHECK_S)
                except nats.errors.TimeoutError:
                    found = await _get(kv, key)
                    if found is not None:
                        return found
                    continue
                if entry is None or entry.operation is not None:
                    continue  # the end of the initial values, or a deletion
                found = _decode(key, entry.value)
                if found is not None:
                    return found
        except (nats.errors.Error, asyncio.TimeoutError) as e:
            log.debug("watch of %s failed (%s); watching again", key, e)
        finally:
            try:
                await watcher.stop()
            except Exception:  # noqa: BLE001 - the connection may be gone
                pass


async def ask(
    publisher: "Publisher",
    prompt: str,
    schema: Optional[Mapping[str, Any]] = None,
    *,
    request: Optional[str] = None,
    source: Optional[str] = None,
) -> Dict[str, Any]:
    """See :meth:`weir.Publisher.ask`."""
    from ._publisher import SESSION_ID_RE

    if request is None:
        # The seq the request is about to take, unless another emit takes it first.
        n = max(publisher.last_seq + 1, publisher._ask_next)
        publisher._ask_next = n + 1
        request = f"ask_{n}"
    rid = request
    if not SESSION_ID_RE.match(rid):
        raise ValueError(f"request id {rid!r} must match [A-Za-z0-9_-]{{1,64}}")
    data: Dict[str, Any] = {"id": rid, "prompt": str(prompt)}
    if schema is not None:
        data["schema"] = dict(schema)
    await publisher.emit("input_request", data, source=source)
    js = publisher._js
    if js is None:
        raise WeirError("the publisher is not started")
    waiting = asyncio.ensure_future(wait_answer(js, publisher.session_id, rid))
    halted = asyncio.ensure_future(publisher._wait_halt())
    try:
        await asyncio.wait({waiting, halted}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (waiting, halted):
            if not t.done():
                t.cancel()
    if not waiting.done() or waiting.cancelled():
        if publisher.failure is not None:
            raise publisher.failure
        raise asyncio.CancelledError(f"session {publisher.session_id}: cancelled while waiting for {rid}")
    answer = waiting.result()
    # Held while paused, like every emit: the answer goes out once resumed.
    await publisher.emit("input", {"request": rid, "data": answer}, source=source)
    return answer
