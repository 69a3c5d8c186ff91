"""Stream a Microsoft Agent Framework (``agent-framework-core`` 1.x) run to weir.

:func:`stream_to_weir` runs ``agent.run(task, stream=True)`` (an ``agent_framework.Agent``) or
``workflow.run(task, stream=True)`` and publishes what AutoGen's adapter publishes for the same
thing, so that a front end cannot tell the frameworks apart (docs/protocol.md §1):

==========================================  ======================================================
Agent Framework                              weir event(s)
==========================================  ======================================================
``text`` content                             ``token`` ``{"text", "full_message_id"}``
``text_reasoning`` content                   ``reasoning`` ``{"text", "full_message_id"}``: its own
                                             kind, so reasoning never mixes into the answer's text
``function_call`` fragments                  one ``tool_call`` ``{"type": "ToolCallRequestEvent",
                                             "id", "content": [{"id", "name", "arguments"}]}`` per
                                             model turn, once its fragments are complete
``function_result`` contents                 ``tool_result`` ``{"type": "ToolCallExecutionEvent",
                                             "id", "content": [{"call_id", "name", "content",
                                             "is_error"}]}`` (``is_error``: the tool raised)
``usage`` content                            ``usage`` ``{"prompt_tokens", "completion_tokens",
                                             "total_tokens"}``: this call's own counts (Agent
                                             Framework's running totals are turned into steps, so
                                             the sum of the events is the run's total)
other contents (data, uri, hosted tools, …)  kind = the content type (``af_`` before a protocol
                                             kind), data = the content's ``to_dict()``
the final response's messages                ``message`` ``{"type": "TextMessage", "id",
                                             "content"}`` for each message with text
workflow ``warning`` / ``error`` events      ``warning`` ``{"level", "message"}``
workflow ``request_info``                    ``request_info`` ``{"request_id", "source_executor_id",
                                             "data"}``
a function approval request (:func:`handler`) ``input_request`` ``{"id", "prompt", "schema":
                                             {"approved": boolean}}``, then ``input`` with the answer;
                                             the agent goes on with the approval (or refusal)
the end of the run                           ``end`` ``{"reason": "completed", "stop_reason": <the
                                             last finish reason>}``
an exception, a workflow ``failed`` event    ``error`` ``{"code", "message"}`` + ``end`` ``failed``
cancel on the control channel                the task running the stream is cancelled; a tool call
                                             whose fragments were incomplete is never published, one
                                             published without its result gets a ``tool_result``
                                             with ``is_error`` and content ``"cancelled"``; ``end``
                                             ``cancelled``
==========================================  ======================================================

``source`` is the update's ``author_name`` (the agent's name), or the workflow executor's id.
"""

from __future__ import annotations

import json
import re
import uuid
import inspect
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, List, Mapping, Optional

try:
    from agent_framework import AgentResponse, AgentResponseUpdate, ChatResponseUpdate, WorkflowEvent
except ImportError as e:  # pragma: no cover - depends on the installation
    raise ImportError(
        "weir.agent_framework needs agent-framework-core 1.x: pip install 'weir-producer[agent-framework]'"
    ) from e

from ._ask import APPROVAL_SCHEMA
from ._publisher import SESSION_ID_RE as _ID_RE
from ._publisher import Publisher
from ._pump import RESERVED_KINDS, RunOutcome, WeirEventSpec, conversation_of, pump, takes_argument

__all__ = ["stream_to_weir", "handler", "approve", "approval_prompt", "AgentFrameworkMapping", "RunOutcome"]

_USAGE_KEYS = (
    ("prompt_tokens", "input_token_count"),
    ("completion_tokens", "output_token_count"),
    ("total_tokens", "total_token_count"),
)


class WorkflowFailed(Exception):
    """A workflow's ``failed`` event, raised so that the session ends ``failed``."""


def _plain(obj: Any, depth: int = 0) -> Any:
    """A JSON-serialisable copy of a value from Agent Framework."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if depth > 32:
        return str(obj)
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        try:
            return _plain(obj.to_dict(), depth + 1)
        except Exception:  # noqa: BLE001 - a value that will not serialise is shown as text
            return str(obj)
    if isinstance(obj, dict):
        return {str(k): _plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v, depth + 1) for v in obj]
    return str(obj)


def _reason(value: Any) -> Optional[str]:
    if value is None:
        return None
    return str(getattr(value, "value", value))


class _Source:
    """What one agent's stream has open: tool-call fragments, published calls, usage totals."""

    def __init__(self) -> None:
        self.pending: List[Dict[str, Any]] = []  # [{"id", "name", "arguments": [str]}]
        self.open_calls: Dict[str, str] = {}  # call id -> name, published without a result
        self.usage_total = {k: 0 for k, _ in _USAGE_KEYS}
        self.usage_replaced = False


class AgentFrameworkMapping:
    """Agent Framework updates and workflow events to weir events (see the module's table)."""

    def __init__(self, default_source: Optional[str] = None) -> None:
        self.default_source = default_source
        self.finish_reason: Optional[str] = None
        self._sources: Dict[Optional[str], _Source] = {}
        self._answered: set = set()  # executors whose AgentResponse was published as their output

    # ------------------------------------------------------------------ the items of a run

    def feed(self, item: Any) -> List[WeirEventSpec]:
        if isinstance(item, (AgentResponseUpdate, ChatResponseUpdate)):
            return self._update(item, item.author_name or self.default_source)
        if isinstance(item, WorkflowEvent):
            return self._workflow_event(item)
        if isinstance(item, AgentResponse):  # the agent's final response: the run is complete
            out = self._flush_all() + self._messages(item, self.default_source)
            return out + [self._end(_reason(item.finish_reason))]
        if hasattr(item, "get_final_state"):  # WorkflowRunResult
            return self._flush_all() + [self._end(None)]
        return [("af_" + type(item).__name__.lower(), {"type": type(item).__name__, "content": _plain(item)},
                 self.default_source)]

    def on_cancel(self) -> List[WeirEventSpec]:
        out: List[WeirEventSpec] = []
        for source, st in self._sources.items():
            st.pending.clear()  # incomplete fragments are never published
            if st.open_calls:
                results = [{"call_id": cid, "name": name, "content": "cancelled", "is_error": True}
                           for cid, name in st.open_calls.items()]
                st.open_calls.clear()
                out.append(("tool_result", self._event("ToolCallExecutionEvent", results), source))
        return out

    def _end(self, finish_reason: Optional[str]) -> WeirEventSpec:
        data: Dict[str, Any] = {"reason": "completed"}
        stop = finish_reason or self.finish_reason
        if stop is not None:
            data["stop_reason"] = stop
        return ("end", data, None)

    # ------------------------------------------------------------------ one streamed update

    def _state(self, source: Optional[str]) -> _Source:
        st = self._sources.get(source)
        if st is None:
            st = self._sources[source] = _Source()
        return st

    def _update(self, u: Any, source: Optional[str]) -> List[WeirEventSpec]:
        st = self._state(source)
        out: List[WeirEventSpec] = []
        results: List[Dict[str, Any]] = []
        for c in u.contents or ():
            t = getattr(c, "type", None)
            if t == "function_call":
                self._fragment(st, c)
                continue
            out += self._flush(st, source)
            if t in ("text", "text_reasoning"):
                if c.text:
                    kind = "token" if t == "text" else "reasoning"
                    out.append((kind, {"text": c.text, "full_message_id": u.message_id}, source))
            elif t == "function_result":
                results.append(self._result(st, c))
            elif t == "usage":
                out += self._usage(st, c, source)
            else:
                kind = str(t)
                kind = "af_" + kind if kind in RESERVED_KINDS else re.sub(r"[^a-z0-9_]+", "_", kind.lower())
                out.append((kind, _plain(c), source))
        if results:
            out.append(("tool_result", self._event("ToolCallExecutionEvent", results), source))
        if u.finish_reason is not None:
            out += self._flush(st, source)
            self.finish_reason = _reason(u.finish_reason)
        return out

    def _fragment(self, st: _Source, c: Any) -> None:
        """Add one fragment: a new call id starts a call, an empty one continues the last."""
        cid = c.call_id or ""
        call = next((p for p in st.pending if cid and p["id"] == cid), None)
        if call is None and (cid == "" and st.pending):
            call = st.pending[-1]
        if call is None:
            call = {"id": cid, "name": "", "arguments": []}
            st.pending.append(call)
        if c.name and not call["name"]:
            call["name"] = c.name
        args = c.arguments
        if isinstance(args, str):
            call["arguments"].append(args)
        elif args is not None:  # a provider that gives the arguments whole, as a mapping
            call["arguments"] = [json.dumps(_plain(args))]

    def _flush(self, st: _Source, source: Optional[str]) -> List[WeirEventSpec]:
        if not st.pending:
            return []
        calls = [{"id": p["id"], "name": p["name"], "arguments": "".join(p["arguments"]) or "{}"}
                 for p in st.pending]
        st.pending = []
        for call in calls:
            st.open_calls[call["id"]] = call["name"]
        return [("tool_call", self._event("ToolCallRequestEvent", calls), source)]

    def _flush_all(self) -> List[WeirEventSpec]:
        out: List[WeirEventSpec] = []
        for source, st in self._sources.items():
            out += self._flush(st, source)
        return out

    def _result(self, st: _Source, c: Any) -> Dict[str, Any]:
        cid = c.call_id or ""
        name = st.open_calls.pop(cid, "")
        content = c.result if isinstance(c.result, str) else json.dumps(_plain(c.result))
        return {"call_id": cid, "name": name, "content": content, "is_error": c.exception is not None}

    def _usage(self, st: _Source, c: Any, source: Optional[str]) -> List[WeirEventSpec]:
        """This model call's counts. A ``replace`` content is the running total of the agent's
        function-invocation loop; an ``append`` after one starts a new loop."""
        details = c.usage_details or {}
        counts = {k: int(details.get(af) or 0) for k, af in _USAGE_KEYS}
        if c.merge_mode == "replace":
            step = {k: counts[k] - st.usage_total[k] for k in counts}
            st.usage_total = counts
            st.usage_replaced = True
        else:
            if st.usage_replaced:
                st.usage_total = {k: 0 for k in counts}
                st.usage_replaced = False
            step = counts
            st.usage_total = {k: st.usage_total[k] + counts[k] for k in counts}
        if not any(step.values()):
            return []
        return [("usage", step, source)]

    @staticmethod
    def _event(type_name: str, content: List[Dict[str, Any]]) -> Dict[str, Any]:
        return {"type": type_name, "id": str(uuid.uuid4()), "content": content}

    # ------------------------------------------------------------------ messages, workflows

    def _messages(self, response: Any, source: Optional[str]) -> List[WeirEventSpec]:
        out: List[WeirEventSpec] = []
        for m in getattr(response, "messages", None) or ():
            text = "".join(c.text for c in m.contents if c.type == "text" and c.text)
            if not text:
                continue  # only calls, results, reasoning or usage: published as they streamed
            data = {"type": "TextMessage", "id": m.message_id or str(uuid.uuid4()), "content": text}
            out.append(("message", data, m.author_name or source))
        return out

    def _workflow_event(self, ev: Any) -> List[WeirEventSpec]:
        t, source, data = ev.type, getattr(ev, "executor_id", None), ev.data
        if t in ("output", "intermediate", "data"):
            if isinstance(data, (AgentResponseUpdate, ChatResponseUpdate)):
                return self._update(data, data.author_name or source)
            if isinstance(data, AgentResponse):
                self._answered.add(source)
                return self._messages(data, source)
            if isinstance(data, str):
                return [("message", {"type": "TextMessage", "id": str(uuid.uuid4()), "content": data}, source)]
            return [("message", {"type": type(data).__name__, "id": str(uuid.uuid4()), "content": _plain(data)},
                     source)]
        if t == "executor_invoked":
            self._answered.discard(source)
        elif t == "executor_completed" and source not in self._answered:
            out = self._flush(self._state(source), source) if source in self._sources else []
            for r in data if isinstance(data, list) else [data]:
                response = getattr(r, "agent_response", None)
                if response is not None:
                    out += self._messages(response, source)
            return out
        elif t in ("warning", "error"):
            return [("warning", {"level": t, "message": str(data)}, source)]
        elif t == "request_info":
            return [("request_info", {"request_id": getattr(ev, "request_id", None),
                                      "source_executor_id": getattr(ev, "source_executor_id", None),
                                      "data": _plain(data)}, source)]
        elif t == "failed":
            details = getattr(ev, "details", None)
            raise WorkflowFailed(getattr(details, "message", None) or str(details))
        return []


async def _items(stream: Any) -> AsyncIterator[Any]:
    """The stream's updates, then its final response."""
    try:
        async for item in stream:
            yield item
        final = getattr(stream, "get_final_response", None)
        if final is not None:
            yield await final()
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()


async def stream_to_weir(
    publisher: Publisher,
    runnable: Any,
    task: Any = None,
    *,
    end: bool = True,
    close_timeout: float = 10.0,
    **run_kwargs: Any,
) -> RunOutcome:
    """Run an Agent Framework agent or workflow streaming, and publish its stream.

    ``runnable`` is an ``Agent`` or a ``Workflow`` (anything whose ``run(task, stream=True,
    **run_kwargs)`` returns a ``ResponseStream``), or such a stream already started.

    Control: ``cancel`` cancels the task consuming the stream at once (Agent Framework has no
    cancel API: the model call or tool in progress gets ``CancelledError``), publishes nothing
    more from the run and ends the session ``cancelled``; ``pause`` stops pulling updates until
    ``resume``. An exception of the run publishes ``error`` and ``end`` ``failed`` and is
    returned in :attr:`RunOutcome.error`; errors of the publisher (e.g. :class:`weir.FencedError`)
    stop the run and are raised. :attr:`RunOutcome.result` is the final ``AgentResponse`` or
    ``WorkflowRunResult``. With ``end=False`` no ``end`` is published.
    """
    if hasattr(runnable, "run") and not hasattr(runnable, "__aiter__"):
        stream = runnable.run(task, stream=True, **run_kwargs)
        source = getattr(runnable, "name", None) if not hasattr(runnable, "executors") else None
    elif hasattr(runnable, "__aiter__"):
        if task is not None or run_kwargs:
            raise TypeError("task and run arguments apply to an agent or workflow, not to a started stream")
        stream, source = runnable, None
    else:
        raise TypeError(f"expected an Agent Framework agent/workflow or its stream, got {type(runnable).__name__}")
    return await pump(
        publisher,
        _items(stream),
        AgentFrameworkMapping(source),
        close_timeout=close_timeout,
        end=end,
        name="weir-agent-framework",
    )


def thread_task(run_input: Mapping[str, Any]) -> Any:
    """The task of a run: ``input["task"]``, or a thread run's conversation (``input["messages"]``,
    docs/protocol.md §9) as Agent Framework ``Message`` s with their roles."""
    from agent_framework import Message

    if run_input.get("task") is not None:
        return run_input["task"]
    conversation = conversation_of(run_input)
    if not conversation:
        return None
    return [Message(role=role, contents=[content]) for role, content in conversation]


def approval_prompt(request: Any) -> str:
    """What a person is asked for one of Agent Framework's function approval requests."""
    call = getattr(request, "function_call", None)
    name = getattr(call, "name", None) or "a function"
    arguments = getattr(call, "arguments", None)
    if arguments is not None and not isinstance(arguments, str):
        arguments = json.dumps(_plain(arguments))
    return f"Allow {name}({arguments or ''})?"


async def approve(run: Any, requests: List[Any]) -> Any:
    """Asks a person about each function approval request (``input_request`` with schema
    ``{"approved": boolean}``, request id ``approve_<call id>`` when the call id is a valid id)
    and returns the message of their answers, to run the agent on next."""
    from agent_framework import Message

    replies = []
    for req in requests:
        call_id = str(getattr(getattr(req, "function_call", None), "call_id", "") or "")
        request_id = f"approve_{call_id}" if _ID_RE.match(f"approve_{call_id}") and call_id else None
        data = await run.ask(approval_prompt(req), APPROVAL_SCHEMA, request=request_id)
        replies.append(req.to_function_approval_response(bool(data.get("approved"))))
    return Message(role="user", contents=replies)


def handler(make_agent: Callable[..., Any], **stream_options: Any) -> Callable[[Any], Awaitable[RunOutcome]]:
    """A :class:`weir.Worker` handler that runs an Agent Framework agent (or workflow) per run.

    ``make_agent`` builds the agent for each run: called with the run (a :class:`weir.Run`) if
    it takes an argument, else with none; it may be async. The agent runs streaming on
    :func:`thread_task` of the run's input (its ``task``, or a thread's conversation) through
    :func:`stream_to_weir`, which publishes its updates and ends the session::

        worker = weir.Worker({"writer": weir.agent_framework.handler(make_agent)})

    A tool that needs approval (``@tool(approval_mode="always_require")``) asks a person
    (docs/protocol.md §9): each function approval request of the agent's response becomes an
    ``input_request`` answered with ``{"approved": true|false}``, and the agent goes on in the
    same session of the run with the answers, until it needs no more approvals.
    """
    async def run_agent(run: Any) -> RunOutcome:
        agent = make_agent(run) if takes_argument(make_agent) else make_agent()
        if inspect.isawaitable(agent):
            agent = await agent
        task = thread_task(run.input)
        if hasattr(agent, "executors") or not hasattr(agent, "create_session"):
            return await stream_to_weir(run, agent, task, **stream_options)
        session = agent.create_session()
        while True:
            outcome = await stream_to_weir(run, agent, task, end=False, session=session, **stream_options)
            requests = [r for r in getattr(outcome.result, "user_input_requests", None) or []
                        if getattr(r, "type", None) == "function_approval_request"]
            if outcome.reason != "completed" or not requests:
                break
            task = await approve(run, requests)
        if not run.ended and run.failure is None:
            outcome.end_seq = await run.end(outcome.reason, stop_reason=outcome.stop_reason)
        return outcome

    return run_agent
