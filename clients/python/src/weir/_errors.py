"""Errors raised by the weir publisher."""

from __future__ import annotations


class WeirError(Exception):
    """Base class of every error raised by this package."""


class FencedError(WeirError):
    """Another producer published to the session since this publisher's last message.

    The session belongs to that producer now; this publisher stops and publishes nothing more.
    """

    def __init__(self, session: str, expected_last: int, detail: str = "") -> None:
        self.session = session
        self.expected_last = expected_last
        msg = (
            f"session {session!r} is owned by another producer "
            f"(expected last stream seq {expected_last} on weir.ev.{session})"
        )
        if detail:
            msg += f": {detail}"
        super().__init__(msg)


class SessionEndedError(WeirError):
    """The session already has its `end` event; nothing can be published after it."""


class PublishError(WeirError):
    """A publish could not be stored (retries exhausted or the server refused it)."""


class EventTooLargeError(WeirError, ValueError):
    """One event does not fit in a NATS message (the server's max_payload)."""


class LeaseHeldError(WeirError):
    """Another producer holds the session's lease: it runs the session, this one must not."""

    def __init__(self, session: str, owner: str) -> None:
        self.session = session
        self.owner = owner
        super().__init__(f"session {session!r} is run by {owner!r}")
