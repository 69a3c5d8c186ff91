"""Stream an AutoGen (autogen-agentchat 0.7) run to weir.

:func:`stream_to_weir` consumes ``team.run_stream(...)`` / ``agent.run_stream(...)`` and
publishes every item through a :class:`weir.Publisher`; :func:`to_weir_events` is the pure
mapping from one AutoGen item to weir events (docs/protocol.md §1):

=====================================  ==========================================================
AutoGen item                           weir event(s)
=====================================  ==========================================================
ModelClientStreamingChunkEvent         ``token`` ``{"text", "full_message_id"}``
TextMessage, MultiModalMessage,        ``message`` ``{"type", "id", "content", …}`` (``type`` =
HandoffMessage, ToolCallSummaryMessage, AutoGen type name; images become placeholders; extra
StructuredMessage, StopMessage, other  fields such as ``target``, ``tool_calls``, ``results``)
chat messages
ToolCallRequestEvent                   ``tool_call`` ``{"type", "id", "content": [{"id","name","arguments"}]}``
ToolCallExecutionEvent                 ``tool_result`` ``{"type", "id", "content": [{"call_id","name","content","is_error"}]}``
ThoughtEvent and every other event     kind = snake_case of its type without ``Event``
                                       (``thought``, ``select_speaker``, ``code_execution``, …),
                                       data ``{"type", "id", "content", …}``
``models_usage`` on any of the above   an extra ``usage`` ``{"prompt_tokens", "completion_tokens", …}``
TaskResult                             ``end`` ``{"reason": "completed", "stop_reason"}``
an exception                           ``error`` ``{"code", "message"}`` + ``end`` ``failed``
cancel on the control channel          AutoGen's CancellationToken is cancelled, ``end`` ``cancelled``
a UserProxyAgent's :func:`input_func`  ``input_request`` ``{"id", "prompt", "schema"}``, then ``input``
                                       ``{"request", "data": {"text"}}`` once a person answered
=====================================  ==========================================================

Every event's ``source`` is the AutoGen ``source``. Control, errors and ``end`` are handled by the
shared loop in :mod:`weir._pump`, the same for every framework.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import math
import re
import inspect
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, List, Mapping, Optional

try:
    from autogen_agentchat.base import Response, TaskResult
except ImportError as e:  # pragma: no cover - depends on the installation
    raise ImportError(
        "weir.autogen needs autogen-agentchat 0.7: pip install 'weir-producer[autogen]'"
    ) from e
from autogen_agentchat.messages import (
    BaseAgentEvent,
    BaseChatMessage,
    ModelClientStreamingChunkEvent,
    MultiModalMessage,
    StructuredMessage,
    TextMessage,
    ToolCallExecutionEvent,
    ToolCallRequestEvent,
)
from autogen_core import CancellationToken, Image
from pydantic import BaseModel

from ._ask import TEXT_SCHEMA
from ._publisher import Publisher
from ._pump import RESERVED_KINDS, RunOutcome, WeirEventSpec, conversation_of, pump, takes_argument


__all__ = ["stream_to_weir", "input_func", "to_weir_events", "json_safe", "kind_for_type", "RunOutcome", "WeirEventSpec", "RESERVED_KINDS"]

# Fields shown as data.type/id/content or left out (bulky or internal) when copying extras.
_COMMON_FIELDS = frozenset({"id", "source", "models_usage", "metadata", "created_at", "type", "content", "context"})

_MAX_DEPTH = 32


# --------------------------------------------------------------------------- JSON-safe values


def _image_placeholder(img: Image) -> Dict[str, Any]:
    try:
        w, h = img.image.size
        fmt = getattr(img.image, "format", None)
    except Exception:  # noqa: BLE001
        w = h = None
        fmt = None
    desc = f"image {w}x{h}" if w is not None else "image"
    if fmt:
        desc += f" ({fmt})"
    out: Dict[str, Any] = {"type": "image", "description": desc}
    if w is not None:
        out["width"], out["height"] = w, h
    return out


def json_safe(obj: Any, _depth: int = 0) -> Any:
    """A JSON-serialisable copy of ``obj``: models and dataclasses become objects, images a
    placeholder description (never their pixels), bytes their length, NaN/∞ null."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if _depth > _MAX_DEPTH:
        return str(obj)
    d = _depth + 1
    if isinstance(obj, Image):
        return _image_placeholder(obj)
    if isinstance(obj, BaseModel):
        return {name: json_safe(getattr(obj, name, None), d) for name in type(obj).model_fields}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: json_safe(getattr(obj, f.name, None), d) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): json_safe(v, d) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [json_safe(v, d) for v in obj]
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return {"type": "bytes", "length": len(obj)}
    if isinstance(obj, (datetime.datetime, datetime.date, datetime.time)):
        return obj.isoformat()
    if isinstance(obj, enum.Enum):
        return json_safe(obj.value, d)
    if isinstance(obj, BaseException):
        return f"{type(obj).__name__}: {obj}"
    if hasattr(obj, "items") and callable(obj.items):  # other mappings
        try:
            return {str(k): json_safe(v, d) for k, v in obj.items()}
        except Exception:  # noqa: BLE001
            pass
    return str(obj)


# --------------------------------------------------------------------------- mapping


def _type_name(obj: Any) -> str:
    # StructuredMessage[Foo] -> StructuredMessage
    return type(obj).__name__.split("[", 1)[0]


_CAMEL_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def kind_for_type(type_name: str) -> str:
    """snake_case kind for a pass-through AutoGen type: ``ThoughtEvent`` → ``thought``,
    ``SelectSpeakerEvent`` → ``select_speaker``. Never one of the protocol's own kinds
    (those get an ``autogen_`` prefix)."""
    name = type_name.split("[", 1)[0]
    if name.endswith("Event") and len(name) > len("Event"):
        name = name[: -len("Event")]
    kind = _CAMEL_RE.sub("_", name).lower() or "event"
    kind = re.sub(r"[^a-z0-9_]+", "_", kind).strip("_") or "event"
    return "autogen_" + kind if kind in RESERVED_KINDS else kind


def _extras(msg: BaseModel) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for name in type(msg).model_fields:
        if name in _COMMON_FIELDS:
            continue
        value = getattr(msg, name, None)
        if value is not None:
            out[name] = json_safe(value)
    metadata = getattr(msg, "metadata", None)
    if metadata:
        out["metadata"] = json_safe(metadata)
    return out


def _message_data(msg: BaseChatMessage) -> Dict[str, Any]:
    data: Dict[str, Any] = {"type": _type_name(msg), "id": msg.id}
    content = getattr(msg, "content", None)
    if isinstance(msg, StructuredMessage):
        data["content"] = json_safe(content)
        data["content_type"] = type(content).__name__
        try:
            data["text"] = msg.to_text()
        except Exception:  # noqa: BLE001 - a bad format_string must not lose the message
            pass
    elif isinstance(msg, MultiModalMessage):
        data["content"] = [c if isinstance(c, str) else json_safe(c) for c in msg.content]
    else:
        data["content"] = json_safe(content)
    data.update(_extras(msg))
    return data


def _event_data(ev: BaseAgentEvent) -> Dict[str, Any]:
    data: Dict[str, Any] = {"type": _type_name(ev), "id": ev.id}
    if "content" in type(ev).model_fields:
        data["content"] = json_safe(getattr(ev, "content", None))
    data.update(_extras(ev))
    return data


def _usage(item: Any, source: Optional[str]) -> List[WeirEventSpec]:
    usage = getattr(item, "models_usage", None)
    if usage is None:
        return []
    data: Dict[str, Any] = {
        "prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
        "completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0),
    }
    item_id = getattr(item, "id", None)
    if item_id is not None:
        data["message_id"] = item_id
    data["message_type"] = _type_name(item)
    return [("usage", data, source)]


def to_weir_events(item: Any, *, usage: bool = True) -> List[WeirEventSpec]:
    """Map one item of an AutoGen ``run_stream()`` to weir events ``(kind, data, source)``.

    A :class:`TaskResult` maps to ``("end", {"reason": "completed", "stop_reason": …}, None)``;
    :func:`stream_to_weir` turns that into the session's ``end``.
    """
    if isinstance(item, TaskResult):
        data: Dict[str, Any] = {"reason": "completed"}
        if item.stop_reason is not None:
            data["stop_reason"] = item.stop_reason
        return [("end", data, None)]
    if isinstance(item, Response):  # from on_messages_stream(): inner messages were streamed already
        return to_weir_events(item.chat_message, usage=usage)

    source = getattr(item, "source", None)
    source = None if source is None else str(source)
    out: List[WeirEventSpec]
    if isinstance(item, ModelClientStreamingChunkEvent):
        out = [("token", {"text": item.content, "full_message_id": item.full_message_id}, source)]
    elif isinstance(item, BaseChatMessage):
        out = [("message", _message_data(item), source)]
    elif isinstance(item, ToolCallRequestEvent):
        out = [("tool_call", _event_data(item), source)]
    elif isinstance(item, ToolCallExecutionEvent):
        out = [("tool_result", _event_data(item), source)]
    elif isinstance(item, BaseAgentEvent):
        out = [(kind_for_type(_type_name(item)), _event_data(item), source)]
    else:  # anything else a custom stream yields: passed through
        name = _type_name(item)
        content = item.model_dump(mode="json") if isinstance(item, BaseModel) else json_safe(item)
        out = [(kind_for_type(name), {"type": name, "content": content}, source)]
    if usage:
        out.extend(_usage(item, source))
    return out


# --------------------------------------------------------------------------- the adapter


class _AutoGenMapping:
    """AutoGen items to weir events, for :func:`weir._pump.pump`."""

    def __init__(self, usage: bool) -> None:
        self.usage = usage

    def feed(self, item: Any) -> List[WeirEventSpec]:
        return to_weir_events(item, usage=self.usage)

    def on_cancel(self) -> List[WeirEventSpec]:
        return []  # AutoGen stops its own tools with the CancellationToken


async def stream_to_weir(
    publisher: Publisher,
    runnable: Any,
    task: Any = None,
    *,
    cancellation_token: Optional[CancellationToken] = None,
    end: bool = True,
    usage: bool = True,
    close_timeout: float = 10.0,
    cancel_grace: float = 5.0,
    **run_kwargs: Any,
) -> RunOutcome:
    """Run an AutoGen team or agent (anything with ``run_stream``) and publish its stream.

    ``runnable`` is a team or agent: it is started with ``run_stream(task=task,
    cancellation_token=token, **run_kwargs)``. It may also be a stream already started (the
    async generator returned by ``run_stream``); pass the ``cancellation_token`` given to that
    ``run_stream`` then, or cancel cannot reach the run's model calls and tools.

    Control: ``cancel`` cancels the token, publishes nothing more from the run, and ends the
    session with reason ``cancelled`` as soon as the run has stopped (a run that ignores the
    token is cancelled with ``asyncio`` after ``cancel_grace`` seconds, and its stream is
    closed at the next item anyway); ``pause`` stops pulling from the stream until ``resume``. An exception of
    the run publishes ``error`` and ``end`` reason ``failed`` and is returned in
    :attr:`RunOutcome.error` (not raised). Errors of the publisher itself (e.g.
    :class:`weir.FencedError`) cancel the run and are raised.

    With ``end=False`` no ``end`` is published, so that several runs can share one session;
    call ``publisher.end(...)`` yourself then.
    """
    token = cancellation_token if cancellation_token is not None else CancellationToken()
    if hasattr(runnable, "run_stream"):
        stream: Any = runnable.run_stream(task=task, cancellation_token=token, **run_kwargs)
    elif hasattr(runnable, "__anext__") or hasattr(runnable, "__aiter__"):
        if task is not None or run_kwargs:
            raise TypeError("task and run arguments apply to a team or agent, not to a started stream")
        stream = runnable
    else:
        raise TypeError(f"expected an AutoGen team/agent or its run_stream(), got {type(runnable).__name__}")
    agen: AsyncIterator[Any] = stream if hasattr(stream, "__anext__") else stream.__aiter__()
    return await pump(
        publisher,
        agen,
        _AutoGenMapping(usage),
        stop_run=token.cancel,
        stop_requested=token.is_cancelled,
        cancel_grace=cancel_grace,
        close_timeout=close_timeout,
        end=end,
        name="weir-autogen",
    )


def input_func(publisher: Publisher, *, source: Optional[str] = None) -> Callable[[str, Optional[CancellationToken]], Awaitable[str]]:
    """A ``UserProxyAgent`` input function that asks a person through weir (docs/protocol.md §9)::

        UserProxyAgent("user", input_func=weir.autogen.input_func(run))

    Each call publishes ``input_request`` ``{"id", "prompt": <AutoGen's prompt>, "schema":
    {"text": string}}``, waits for the answer (``POST /v1/sessions/{id}/input`` or the WebSocket
    ``input`` frame, on any edge), publishes ``input`` and returns the answer's ``text`` as the
    user's message. A cancel while waiting cancels the wait.
    """

    async def ask_person(prompt: str, cancellation_token: Optional[CancellationToken] = None) -> str:
        answer = await publisher.ask(prompt, TEXT_SCHEMA, source=source)
        return str(answer.get("text", ""))

    return ask_person


def thread_task(run_input: Mapping[str, Any]) -> Any:
    """The task of a run: ``input["task"]``, or a thread run's conversation (``input["messages"]``,
    docs/protocol.md §9) as AutoGen ``TextMessage`` s whose ``source`` is the message's role."""
    if run_input.get("task") is not None:
        return run_input["task"]
    conversation = conversation_of(run_input)
    if not conversation:
        return None
    return [TextMessage(content=content, source=role) for role, content in conversation]


def handler(make_team: Callable[..., Any], *, usage: bool = True, **stream_options: Any) -> Callable[[Any], Awaitable[RunOutcome]]:
    """A :class:`weir.Worker` handler that runs an AutoGen team (or agent) per run.

    ``make_team`` builds a fresh team for each run: called with the run (a :class:`weir.Run`,
    whose ``input`` the session was created with) if it takes an argument, else with none; it
    may be async. The team runs on :func:`thread_task` of the run's input (its ``task``, or a
    thread's conversation) through
    :func:`stream_to_weir`, which publishes its stream and ends the session (``failed`` with the
    error when the team raises, ``cancelled`` on a cancel)::

        worker = weir.Worker({"support-team": weir.autogen.handler(make_team)})
    """

    async def run_team(run: Any) -> RunOutcome:
        team = make_team(run) if takes_argument(make_team) else make_team()
        if inspect.isawaitable(team):
            team = await team
        return await stream_to_weir(run, team, thread_task(run.input), usage=usage, **stream_options)

    return run_team

