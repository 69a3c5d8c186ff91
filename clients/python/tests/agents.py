"""Real autogen-agentchat agents on autogen-ext's ReplayChatCompletionClient (no model, no network)."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncGenerator, List, Union

from autogen_agentchat.agents import AssistantAgent
from autogen_core import FunctionCall
from autogen_core.models import CreateResult, ModelFamily, ModelInfo, RequestUsage
from autogen_ext.models.replay import ReplayChatCompletionClient

MODEL_INFO = ModelInfo(
    vision=False, function_calling=True, json_output=False, family=ModelFamily.UNKNOWN, structured_output=False
)

FINAL_ANSWER = "The weather in Paris is sunny and 21 degrees today."


class SlowReplayClient(ReplayChatCompletionClient):
    """Replay, with a pause before each streamed chunk (a model that takes its time).

    Like the real model clients it honours the CancellationToken (its waits are linked to it),
    unless ``honour_token=False``.
    """

    def __init__(
        self, chat_completions: List[Union[str, CreateResult]], delay: float, honour_token: bool = True
    ) -> None:
        super().__init__(chat_completions, model_info=MODEL_INFO)
        self.delay = delay
        self.honour_token = honour_token
        self.chunks_streamed = 0

    async def create_stream(self, *args: Any, **kwargs: Any) -> AsyncGenerator[Union[str, CreateResult], None]:
        token = kwargs.get("cancellation_token")
        async for chunk in super().create_stream(*args, **kwargs):
            if isinstance(chunk, str) and self.delay > 0:
                wait = asyncio.ensure_future(asyncio.sleep(self.delay))
                if token is not None and self.honour_token:
                    token.link_future(wait)
                await wait
                self.chunks_streamed += 1
            yield chunk


tool_calls_made: List[str] = []


async def get_weather(city: str) -> str:
    """Get the weather for a city."""
    tool_calls_made.append(city)
    return f"sunny, 21 degrees in {city}"


def weather_agent(
    *, delay: float = 0.0, final: str = FINAL_ANSWER, name: str = "assistant", honour_token: bool = True
) -> AssistantAgent:
    """An AssistantAgent that thinks, calls get_weather, then streams its answer."""
    client = SlowReplayClient(
        [
            CreateResult(
                finish_reason="function_calls",
                content=[FunctionCall(id="call-1", name="get_weather", arguments='{"city": "Paris"}')],
                usage=RequestUsage(prompt_tokens=10, completion_tokens=5),
                cached=False,
                thought="I should look up the weather.",
            ),
            final,
        ],
        delay=delay,
        honour_token=honour_token,
    )
    return AssistantAgent(
        name,
        model_client=client,
        tools=[get_weather],
        reflect_on_tool_use=True,
        model_client_stream=True,
    )


def long_answer(n: int) -> str:
    return " ".join(f"word{i}" for i in range(n))
