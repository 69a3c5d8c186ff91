"""weir: publish AI-agent output to weir's event log (NATS JetStream) for browsers to stream.

Core: :class:`Publisher` (one session's events, control channel, lease) and :class:`Worker`
(serves agents from weir's run queues; ``python -m weir.worker module:worker``). Adapters, on one shared loop
(:mod:`weir._pump`): :func:`weir.autogen.stream_to_weir` (needs ``autogen-agentchat`` 0.7) and
:func:`weir.agent_framework.stream_to_weir` (needs ``agent-framework-core`` 1.x).
"""

from ._errors import EventTooLargeError, FencedError, LeaseHeldError, PublishError, SessionEndedError, WeirError
from ._http import create_session
from ._publisher import CONTROL_PREFIX, EVENTS_PREFIX, STREAM, Publisher, now_ms, session_id_of
from ._worker import Run, Worker

__all__ = [
    "Publisher",
    "Worker",
    "Run",
    "LeaseHeldError",
    "create_session",
    "now_ms",
    "session_id_of",
    "WeirError",
    "FencedError",
    "SessionEndedError",
    "PublishError",
    "EventTooLargeError",
    "STREAM",
    "EVENTS_PREFIX",
    "CONTROL_PREFIX",
]

__version__ = "0.1.0"
