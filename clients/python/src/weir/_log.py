"""One session's messages in weir's event log (stream ``WEIR_EVENTS``, subject
``weir.ev.<session>``), as a :class:`weir.Publisher` writes them, see docs/protocol.md §2.

* every message carries ``Nats-Msg-Id`` (``<session>:<seq>`` or ``<session>:<first>-<last>``),
  ``Weir-Seq`` (its last seq) and ``Nats-Expected-Last-Subject-Sequence`` (the fence);
* a retry resends the very same bytes with the same headers, with exponential backoff, until
  ``retry_deadline``;
* the id names only the seqs, and two writers can write the same seqs (a publisher whose lease
  lapsed with a publish in flight, and the weir node that ended the session): a duplicate
  acknowledgement, or a refused fence whose last message has this id, counts as stored only if
  the stored bytes are this message's, and raises :class:`FencedError` otherwise; a refused fence
  while the log's last message is still at the fence is retried (a copy of this message in
  flight), as the Rust bus does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from typing import Any, Awaitable, Callable, Mapping, Optional, Tuple

import nats.errors
import nats.js.errors

from ._errors import FencedError, PublishError, WeirError

log = logging.getLogger("weir")

EVENTS_PREFIX = "weir.ev."

# JetStream API error codes (nats-server's errors.json).
ERR_WRONG_LAST_SEQUENCE = 10071
ERR_NO_MESSAGE_FOUND = 10037
ERR_STREAM_NOT_FOUND = 10059

_RETRYABLE = (
    asyncio.TimeoutError,  # nats.errors.TimeoutError is a subclass
    nats.errors.NoRespondersError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
)


def _header(headers: Optional[Mapping[str, str]], name: str) -> Optional[str]:
    if not headers:
        return None
    lname = name.lower()
    for k, v in headers.items():
        if k.lower() == lname:
            return v
    return None


class SessionLog:
    """Fenced, deduplicated appends to one session's log, and its last message."""

    def __init__(
        self,
        js: Any,
        sid: str,
        stream: str,
        *,
        ack_timeout: float,
        retry_deadline: float,
        backoff_initial: float,
        backoff_max: float,
    ) -> None:
        self._js = js
        self._sid = sid
        self._subject = EVENTS_PREFIX + sid
        self._stream = stream
        self._ack_timeout = ack_timeout
        self._retry_deadline = retry_deadline
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max

    async def store(self, first: int, last: int, payload: bytes, fence: int) -> int:
        """Publish one message (seqs ``first``..``last``) behind ``fence`` until it is stored; return its
        stream sequence (the next fence)."""
        msg_id = f"{self._sid}:{first}" if first == last else f"{self._sid}:{first}-{last}"
        headers = {
            "Nats-Msg-Id": msg_id,
            "Weir-Seq": str(last),
            "Nats-Expected-Last-Subject-Sequence": str(fence),
        }
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._retry_deadline
        delay = self._backoff_initial
        attempt = 0
        err: BaseException
        while True:
            attempt += 1
            try:
                ack = await self._js.publish(
                    self._subject, payload, timeout=self._ack_timeout, stream=self._stream, headers=dict(headers)
                )
            except nats.js.errors.APIError as e:
                if e.err_code == ERR_WRONG_LAST_SEQUENCE:
                    seq = await self._refused(msg_id, payload, fence)
                    if seq is None:
                        raise FencedError(self._sid, fence, e.description or "wrong last sequence") from None
                    if seq > 0:
                        return seq
                    err = e
                elif not isinstance(e, _RETRYABLE):
                    raise PublishError(f"publishing {msg_id} failed: {e}") from e
                else:
                    err = e
            except _RETRYABLE as e:
                err = e
            except nats.errors.ConnectionClosedError as e:
                raise PublishError(f"publishing {msg_id} failed: the NATS connection is closed") from e
            else:
                if ack.duplicate:
                    await self._check_duplicate(msg_id, ack.seq, payload, fence)
                return int(ack.seq)
            if loop.time() + delay > deadline:
                raise PublishError(f"publishing {msg_id} failed after {attempt} attempts: {err!r}")
            log.warning("publish %s attempt %d failed (%r); retrying in %.2fs", msg_id, attempt, err, delay)
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self._backoff_max)

    async def _check_duplicate(self, msg_id: str, stream_seq: int, payload: bytes, fence: int) -> None:
        """A duplicate ack is fine only if the stored message is this very message."""
        raw = await self._with_retry(lambda: self._js.get_msg(self._stream, seq=stream_seq))
        if raw is None or raw.data != payload:
            raise FencedError(
                self._sid, fence, f"message id {msg_id} is already stored with other content (stream seq {stream_seq})"
            )

    async def _refused(self, msg_id: str, payload: bytes, fence: int) -> Optional[int]:
        """What a refused fence means, read against the session's last stored message: its stream
        sequence if that message is this one (an earlier attempt stored, its ack lost); 0 if the log
        has not moved past the fence (a copy of this message still in flight, in a new leader's log
        not yet applied when it checked this one: try again with the same id and fence); None if
        another writer's message is past the fence (or the messages behind it are gone)."""
        raw = await self._last_msg()
        if raw is None:
            return 0 if fence == 0 else None
        if _header(raw.headers, "Nats-Msg-Id") == msg_id and raw.data == payload:
            return int(raw.seq)
        return 0 if int(raw.seq) <= fence else None

    async def _with_retry(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        delay = self._backoff_initial
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._retry_deadline
        while True:
            try:
                return await fn()
            except nats.js.errors.NotFoundError as e:
                if e.err_code == ERR_STREAM_NOT_FOUND:
                    raise WeirError(
                        f"JetStream stream {self._stream} does not exist (edges create it at start-up)"
                    ) from e
                return None
            except _RETRYABLE as e:
                if loop.time() + delay > deadline:
                    raise PublishError(f"JetStream request failed: {e!r}") from e
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._backoff_max)

    async def _last_msg(self) -> Any:
        return await self._with_retry(lambda: self._js.get_last_msg(self._stream, self._subject))

    async def last(self) -> Tuple[int, int, Optional[str]]:
        """(last event seq, its stream seq, kind of the last event) of the session's log; zeros when empty."""
        raw = await self._last_msg()
        if raw is None:
            return 0, 0, None
        body: Any = None
        try:
            body = json.loads(raw.data) if raw.data else None
        except ValueError:
            body = None
        last_ev = body[-1] if isinstance(body, list) and body else body
        last_kind = last_ev.get("kind") if isinstance(last_ev, dict) else None
        hdr = _header(raw.headers, "Weir-Seq")
        if hdr is not None and hdr.strip().isdigit():
            last_seq = int(hdr)
        elif isinstance(last_ev, dict) and isinstance(last_ev.get("seq"), int):
            last_seq = int(last_ev["seq"])
        else:
            raise WeirError(f"cannot read the last seq of {self._subject} (stream seq {raw.seq})")
        return last_seq, int(raw.seq), last_kind
