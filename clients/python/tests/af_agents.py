"""Real agent_framework agents on an offline scripted chat client (no model, no network).

Agent Framework ships no replay client; as its custom-client sample does, ScriptedChatClient
subclasses BaseChatClient and puts the function-invocation layer on top, so tools are called
by Agent Framework itself from the function calls the script streams.
"""

from __future__ import annotations

import asyncio
from typing import Any, List, Optional, Sequence

from agent_framework import (
    Agent,
    BaseChatClient,
    ChatResponse,
    ChatResponseUpdate,
    Content,
    FunctionInvocationLayer,
    ResponseStream,
    tool,
)

FINAL_ANSWER = "The weather in Paris is sunny and 21 degrees today."


class _ScriptedBase(BaseChatClient):
    """Each model call streams the next turn of the script, one update per `delay`."""

    def __init__(self, *, turns: Sequence[List[ChatResponseUpdate]], delay: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.turns = list(turns)
        self.delay = delay
        self.updates_streamed = 0

    def _inner_get_response(self, *, messages: Any, stream: bool = False, options: Any, **kwargs: Any) -> Any:
        if not self.turns:
            raise RuntimeError("the script has no more turns")
        turn = self.turns.pop(0)

        async def updates():
            for update in turn:
                if self.delay > 0:
                    await asyncio.sleep(self.delay)
                self.updates_streamed += 1
                yield update

        if not stream:
            async def response() -> ChatResponse:
                return ChatResponse.from_updates(turn)
            return response()
        return ResponseStream(updates(), finalizer=ChatResponse.from_updates)


class ScriptedChatClient(FunctionInvocationLayer, _ScriptedBase):
    """The scripted client with Agent Framework's function-invocation layer."""


tool_calls_made: List[str] = []


@tool
async def get_weather(city: str) -> str:
    """Get the weather for a city."""
    tool_calls_made.append(city)
    return f"sunny, 21 degrees in {city}"


@tool
async def slow_lookup(city: str) -> str:
    """A tool that takes a long time."""
    await asyncio.sleep(30)
    return "never"


def _text_turn(words: List[str], message_id: str, usage: Optional[tuple] = None) -> List[ChatResponseUpdate]:
    turn = [ChatResponseUpdate(contents=[Content.from_text(w)], role="assistant", message_id=message_id) for w in words]
    p, c = usage or (20, len(words))
    turn.append(ChatResponseUpdate(
        contents=[Content.from_usage({"input_token_count": p, "output_token_count": c, "total_token_count": p + c})],
        role="assistant", message_id=message_id, finish_reason="stop"))
    return turn


def _tool_turn(tool_name: str) -> List[ChatResponseUpdate]:
    """Reasoning, then a call whose arguments arrive in two fragments (the second without a call id)."""
    return [
        ChatResponseUpdate(contents=[Content.from_text_reasoning(text="I should look up the weather.")],
                           role="assistant", message_id="m-1"),
        ChatResponseUpdate(contents=[Content.from_function_call("call-1", tool_name, arguments='{"city": ')],
                           role="assistant", message_id="m-1"),
        ChatResponseUpdate(contents=[Content.from_function_call("", "", arguments='"Paris"}')],
                           role="assistant", message_id="m-1"),
        ChatResponseUpdate(
            contents=[Content.from_usage({"input_token_count": 10, "output_token_count": 5, "total_token_count": 15})],
            role="assistant", message_id="m-1", finish_reason="tool_calls"),
    ]


def answer_words(text: str) -> List[str]:
    words = text.split(" ")
    return [w + " " for w in words[:-1]] + [words[-1]]


def weather_agent(*, delay: float = 0.0, final: str = FINAL_ANSWER, name: str = "assistant",
                  tool_fn: Any = get_weather) -> Agent:
    """An Agent that reasons, calls a tool (arguments in two fragments), then streams its answer."""
    client = ScriptedChatClient(
        turns=[_tool_turn(tool_fn.name), _text_turn(answer_words(final), "m-2")], delay=delay)
    return Agent(client=client, name=name, tools=[tool_fn])


def talker(name: str, text: str) -> Agent:
    return Agent(client=ScriptedChatClient(turns=[_text_turn(answer_words(text), f"{name}-1", (5, 2))]), name=name)


def long_answer(n: int) -> str:
    return " ".join(f"word{i}" for i in range(n))
