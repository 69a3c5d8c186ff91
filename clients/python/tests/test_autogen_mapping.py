"""Unit tests of the AutoGen → weir event mapping (no server needed)."""

from __future__ import annotations

import json
from typing import Any, List

from autogen_agentchat.base import Response, TaskResult
from autogen_agentchat.messages import (
    BaseAgentEvent,
    CodeExecutionEvent,
    CodeGenerationEvent,
    HandoffMessage,
    MemoryQueryEvent,
    ModelClientStreamingChunkEvent,
    MultiModalMessage,
    SelectorEvent,
    SelectSpeakerEvent,
    StopMessage,
    StructuredMessage,
    TextMessage,
    ThoughtEvent,
    ToolCallExecutionEvent,
    ToolCallRequestEvent,
    ToolCallSummaryMessage,
    UserInputRequestedEvent,
)
from autogen_core import FunctionCall, Image
from autogen_core.code_executor import CodeBlock, CodeResult
from autogen_core.memory import MemoryContent, MemoryMimeType
from autogen_core.models import AssistantMessage, FunctionExecutionResult, RequestUsage
from PIL import Image as PILImage
from pydantic import BaseModel

from weir.autogen import json_safe, kind_for_type, to_weir_events


def _json_roundtrip(specs: List[Any]) -> None:
    for kind, data, source in specs:
        json.dumps(data, allow_nan=False)  # must never raise
        assert isinstance(kind, str) and isinstance(data, dict)
        assert source is None or isinstance(source, str)


def one(item: Any, **kw: Any):
    specs = to_weir_events(item, **kw)
    _json_roundtrip(specs)
    return specs


def test_streaming_chunk_is_token():
    ev = ModelClientStreamingChunkEvent(content="Hel", source="assistant", full_message_id="m-1")
    assert one(ev) == [("token", {"text": "Hel", "full_message_id": "m-1"}, "assistant")]
    ev2 = ModelClientStreamingChunkEvent(content="lo", source="assistant")
    assert one(ev2) == [("token", {"text": "lo", "full_message_id": None}, "assistant")]


def test_text_message_and_usage():
    msg = TextMessage(
        content="Hello there", source="assistant", models_usage=RequestUsage(prompt_tokens=12, completion_tokens=3)
    )
    specs = one(msg)
    assert specs[0] == ("message", {"type": "TextMessage", "id": msg.id, "content": "Hello there"}, "assistant")
    assert specs[1] == (
        "usage",
        {"prompt_tokens": 12, "completion_tokens": 3, "message_id": msg.id, "message_type": "TextMessage"},
        "assistant",
    )
    assert one(msg, usage=False) == specs[:1]


def test_metadata_is_kept():
    msg = TextMessage(content="x", source="user", metadata={"k": "v"})
    assert one(msg)[0][1]["metadata"] == {"k": "v"}


def test_multimodal_images_become_placeholders():
    img = Image(PILImage.new("RGB", (64, 32), color="red"))
    msg = MultiModalMessage(content=["Look:", img, "done"], source="user")
    kind, data, source = one(msg)[0]
    assert kind == "message" and source == "user"
    assert data["type"] == "MultiModalMessage"
    assert data["content"][0] == "Look:" and data["content"][2] == "done"
    ph = data["content"][1]
    assert ph["type"] == "image" and ph["width"] == 64 and ph["height"] == 32
    assert "64x32" in ph["description"]
    assert len(json.dumps(data)) < 500  # no pixels


def test_handoff_message():
    msg = HandoffMessage(
        content="Over to you", target="planner", source="assistant",
        context=[AssistantMessage(content="internal", source="assistant")],
    )
    kind, data, _ = one(msg)[0]
    assert kind == "message"
    assert data["type"] == "HandoffMessage" and data["target"] == "planner" and data["content"] == "Over to you"
    assert "context" not in data


def test_tool_call_summary_message():
    call = FunctionCall(id="c1", name="get_weather", arguments='{"city": "Paris"}')
    res = FunctionExecutionResult(call_id="c1", name="get_weather", content="sunny", is_error=False)
    msg = ToolCallSummaryMessage(content="sunny", source="assistant", tool_calls=[call], results=[res])
    kind, data, _ = one(msg)[0]
    assert kind == "message" and data["type"] == "ToolCallSummaryMessage"
    assert data["tool_calls"] == [{"id": "c1", "arguments": '{"city": "Paris"}', "name": "get_weather"}]
    assert data["results"] == [{"content": "sunny", "name": "get_weather", "call_id": "c1", "is_error": False}]


class Weather(BaseModel):
    city: str
    temp_c: float


def test_structured_message():
    msg = StructuredMessage[Weather](content=Weather(city="Oslo", temp_c=-3.5), source="assistant")
    kind, data, _ = one(msg)[0]
    assert kind == "message"
    assert data["type"] == "StructuredMessage"
    assert data["content"] == {"city": "Oslo", "temp_c": -3.5}
    assert data["content_type"] == "Weather"
    assert json.loads(data["text"]) == {"city": "Oslo", "temp_c": -3.5}
    fmt = StructuredMessage[Weather](content=Weather(city="Oslo", temp_c=1), source="a", format_string="{city}: {temp_c}")
    d2 = one(fmt)[0][1]
    assert d2["text"] == "Oslo: 1.0" and d2["format_string"] == "{city}: {temp_c}"


def test_stop_message():
    msg = StopMessage(content="TERMINATE", source="assistant")
    assert one(msg) == [("message", {"type": "StopMessage", "id": msg.id, "content": "TERMINATE"}, "assistant")]


def test_tool_call_request_and_execution():
    req = ToolCallRequestEvent(
        content=[FunctionCall(id="c1", name="add", arguments='{"a": 1, "b": 2}')],
        source="assistant",
        models_usage=RequestUsage(prompt_tokens=5, completion_tokens=7),
    )
    specs = one(req)
    assert specs[0] == (
        "tool_call",
        {"type": "ToolCallRequestEvent", "id": req.id, "content": [{"id": "c1", "arguments": '{"a": 1, "b": 2}', "name": "add"}]},
        "assistant",
    )
    assert specs[1][0] == "usage" and specs[1][1]["completion_tokens"] == 7
    exe = ToolCallExecutionEvent(
        content=[FunctionExecutionResult(call_id="c1", name="add", content="3", is_error=False)], source="assistant"
    )
    assert one(exe) == [
        (
            "tool_result",
            {"type": "ToolCallExecutionEvent", "id": exe.id,
             "content": [{"content": "3", "name": "add", "call_id": "c1", "is_error": False}]},
            "assistant",
        )
    ]


def test_thought_and_other_events_pass_through():
    th = ThoughtEvent(content="Let me think", source="assistant")
    assert one(th) == [("thought", {"type": "ThoughtEvent", "id": th.id, "content": "Let me think"}, "assistant")]

    sel = SelectSpeakerEvent(content=["a", "b"], source="manager")
    assert one(sel)[0] == ("select_speaker", {"type": "SelectSpeakerEvent", "id": sel.id, "content": ["a", "b"]}, "manager")

    assert one(SelectorEvent(content="x", source="m"))[0][0] == "selector"

    uir = UserInputRequestedEvent(request_id="r1", source="user_proxy")
    k, d, _ = one(uir)[0]
    assert k == "user_input_requested" and d["request_id"] == "r1" and d["content"] == ""

    mq = MemoryQueryEvent(content=[MemoryContent(content="fact", mime_type=MemoryMimeType.TEXT)], source="assistant")
    k, d, _ = one(mq)[0]
    assert k == "memory_query" and d["content"][0]["content"] == "fact" and d["content"][0]["mime_type"] == "text/plain"

    cg = CodeGenerationEvent(retry_attempt=0, content="```py\nprint(1)\n```",
                             code_blocks=[CodeBlock(code="print(1)", language="py")], source="coder")
    k, d, _ = one(cg)[0]
    assert k == "code_generation" and d["retry_attempt"] == 0 and d["code_blocks"][0]["code"] == "print(1)"

    ce = CodeExecutionEvent(retry_attempt=1, result=CodeResult(exit_code=0, output="1\n"), source="executor")
    k, d, _ = one(ce)[0]
    assert k == "code_execution" and d["result"] == {"exit_code": 0, "output": "1\n"} and "content" not in d


class ErrorEvent(BaseAgentEvent):
    """A custom event whose natural kind would collide with the protocol's `error`."""

    content: str
    payload: bytes = b""

    def to_text(self) -> str:
        return self.content


class FancyProgressUpdate(BaseAgentEvent):
    content: float

    def to_text(self) -> str:
        return str(self.content)


def test_custom_events():
    ev = ErrorEvent(content="oops", payload=b"\x00\x01", source="x")
    k, d, _ = one(ev)[0]
    assert k == "autogen_error"
    assert d["payload"] == {"type": "bytes", "length": 2}
    k, d, _ = one(FancyProgressUpdate(content=float("nan"), source="x"))[0]
    assert k == "fancy_progress_update" and d["content"] is None


def test_task_result_is_end():
    assert one(TaskResult(messages=[], stop_reason="Maximum number of turns 1 reached.")) == [
        ("end", {"reason": "completed", "stop_reason": "Maximum number of turns 1 reached."}, None)
    ]
    assert one(TaskResult(messages=[])) == [("end", {"reason": "completed"}, None)]


def test_response_maps_its_chat_message():
    msg = TextMessage(content="hi", source="a")
    assert one(Response(chat_message=msg)) == one(msg)


def test_unknown_objects_pass_through():
    class Weird:
        def __str__(self) -> str:
            return "weird!"

    assert one(Weird()) == [("weird", {"type": "Weird", "content": "weird!"}, None)]
    assert one({"a": 1}) == [("dict", {"type": "dict", "content": {"a": 1}}, None)]


def test_kind_for_type():
    assert kind_for_type("ThoughtEvent") == "thought"
    assert kind_for_type("SelectSpeakerEvent") == "select_speaker"
    assert kind_for_type("UserInputRequestedEvent") == "user_input_requested"
    assert kind_for_type("HTTPRequestEvent") == "http_request"
    assert kind_for_type("Event") == "event"
    assert kind_for_type("EndEvent") == "autogen_end"
    assert kind_for_type("Usage") == "autogen_usage"
    assert kind_for_type("Foo[Bar]") == "foo"


def test_json_safe():
    import datetime
    import enum

    class Color(enum.Enum):
        RED = "red"

    out = json_safe({"t": datetime.datetime(2025, 1, 2, 3, 4, 5), "c": Color.RED, "s": {1}, "inf": float("inf"),
                     1: b"abc", "e": ValueError("bad"), "nested": [[[1.5]]]})
    assert out == {"t": "2025-01-02T03:04:05", "c": "red", "s": [1], "inf": None, "1": {"type": "bytes", "length": 3},
                   "e": "ValueError: bad", "nested": [[[1.5]]]}
    deep: Any = []
    cur = deep
    for _ in range(100):
        nxt: Any = []
        cur.append(nxt)
        cur = nxt
    json.dumps(json_safe(deep))
