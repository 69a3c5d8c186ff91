"""The lease of a session, held with NATS alone (docs/protocol.md §2, "Workers and liveness").

Whoever publishes a session's events holds its lease in the JetStream key-value bucket
``WEIR_LEASES`` (key = session id, value = ``{"owner", "ttl_ms", "records"}``) and writes it
again every third of its time. Every write names the revision it replaces
(``Nats-Expected-Last-Subject-Sequence``), exactly as weir's own producers do: a weir node that
has seen no new revision for ``ttl_ms`` takes the lease over the same way and ends the session
``failed``, and the holder's next renewal is refused. An ``external`` session starts with an
*unclaimed* lease (empty owner) that its producer claims.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from typing import Any, Callable, Optional

import nats.js.errors

from ._errors import LeaseHeldError

log = logging.getLogger("weir")

BUCKET = "WEIR_LEASES"


def default_node_id(role: str) -> str:
    """``<role>-<host>-<pid>``, as weir's nodes name themselves."""
    return f"{role}-{socket.gethostname()}-{os.getpid()}"


class Lease:
    """One session's lease, held by ``owner`` while the session runs."""

    def __init__(self, kv: Any, session: str, owner: str, ttl: float, revision: int) -> None:
        self._kv = kv
        self.session = session
        self.owner = owner
        self.ttl = ttl
        self.revision = revision
        self.lost = False
        self._value = _encode(owner, ttl)

    @classmethod
    async def acquire(cls, js: Any, session: str, owner: str, ttl: float) -> Optional["Lease"]:
        """Takes the session's lease: when there is none, when it is unclaimed, or when it is
        already ``owner``'s (a producer taking its session back). Raises
        :class:`LeaseHeldError` when another holds it; ``None`` when no weir node has created
        the bucket on this NATS (then nobody reaps either)."""
        try:
            kv = await js.key_value(BUCKET)
        except nats.js.errors.BucketNotFoundError:
            log.warning("no weir node has created %s on this NATS: session %s runs without a lease", BUCKET, session)
            return None
        value = _encode(owner, ttl)
        try:
            revision = await kv.create(session, value)
            return cls(kv, session, owner, ttl, revision)
        except nats.js.errors.KeyWrongLastSequenceError:
            pass
        entry = await kv.get(session)
        held = _decode(entry.value)
        if held.get("owner") and held.get("owner") != owner:
            raise LeaseHeldError(session, str(held.get("owner")))
        try:
            revision = await kv.update(session, value, last=entry.revision)
        except nats.js.errors.KeyWrongLastSequenceError:
            # Claimed by another at the same moment.
            latest = _decode((await kv.get(session)).value)
            raise LeaseHeldError(session, str(latest.get("owner"))) from None
        return cls(kv, session, owner, ttl, revision)

    async def renew(self) -> bool:
        """Writes the lease again; False when another took it over (the session is lost)."""
        try:
            self.revision = await self._kv.update(self.session, self._value, last=self.revision)
            return True
        except nats.js.errors.KeyWrongLastSequenceError:
            pass
        except nats.js.errors.KeyNotFoundError:
            pass
        # A renewal whose answer was lost was stored all the same.
        try:
            entry = await self._kv.get(self.session)
        except nats.js.errors.KeyNotFoundError:
            self.lost = True
            return False
        if entry.value == self._value:
            self.revision = entry.revision
            return True
        self.lost = True
        return False

    async def keep(self, on_lost: Callable[[str], None]) -> None:
        """Renews every third of the lease time until cancelled; calls ``on_lost`` with the new
        holder when the lease was taken over. A NATS that cannot be reached is ridden out:
        nobody can take the lease then either, and the log's fence stops a late writer."""
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                if not await self.renew():
                    owner = "?"
                    try:
                        owner = str(_decode((await self._kv.get(self.session)).value).get("owner"))
                    except Exception:  # noqa: BLE001 - only for the message
                        pass
                    on_lost(owner)
                    return
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - retried at the next renewal
                log.debug("lease of %s not renewed: %s", self.session, e)

    async def release(self) -> None:
        """Gives the lease up (after the session's end is stored)."""
        if self.lost:
            return
        try:
            await self._kv.delete(self.session, last=self.revision)
        except nats.js.errors.KeyWrongLastSequenceError:
            pass
        except nats.js.errors.APIError as e:
            if e.err_code not in (10071, 10164):
                raise


def _encode(owner: str, ttl: float) -> bytes:
    return json.dumps({"owner": owner, "ttl_ms": int(ttl * 1000), "records": False}, separators=(",", ":")).encode()


def _decode(value: Optional[bytes]) -> dict:
    try:
        obj = json.loads(value or b"{}")
        return obj if isinstance(obj, dict) else {}
    except ValueError:
        return {}
