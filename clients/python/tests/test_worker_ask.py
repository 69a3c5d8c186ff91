"""Workers whose agents ask a person (docs/protocol.md §9), with the real frameworks on scripted
models and a real nats-server; the test answers as an edge does (``create`` in ``WEIR_INPUTS``):
an Agent Framework tool that needs approval runs only once a person approved it, and is not run
when they refuse; an AutoGen ``UserProxyAgent`` gets its message from a person. A thread run's
last message is the task."""

from __future__ import annotations

import json
from typing import Any, Dict, List

import pytest
from autogen_agentchat.agents import AssistantAgent, UserProxyAgent
from autogen_agentchat.teams import RoundRobinGroupChat
from autogen_ext.models.replay import ReplayChatCompletionClient
from nats.js.api import KeyValueConfig

import weir
import weir.agent_framework
import weir.autogen
from weir._ask import APPROVAL_SCHEMA, INPUTS_BUCKET, answer_key
from agents import MODEL_INFO
from conftest import events_of, read_log
from test_worker import ended_log, enqueue, nc, serve, wait_for  # noqa: F401 - fixtures

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def inputs(nc):  # noqa: F811 - the fixture of test_worker
    return await nc.jetstream().create_key_value(KeyValueConfig(bucket=INPUTS_BUCKET, history=1))


async def the_request(nc: Any, sid: str) -> Dict[str, Any]:
    async def asked():
        evs = events_of(await read_log(nc, sid))
        return next((e for e in evs if e["kind"] == "input_request"), None)

    try:
        return await wait_for(asked, f"an input_request in {sid}")
    except AssertionError as e:
        raise AssertionError(f"{e}: {events_of(await read_log(nc, sid))}") from None


async def answer(inputs: Any, sid: str, request: Dict[str, Any], data: Dict[str, Any]) -> None:
    await inputs.create(answer_key(sid, request["data"]["id"]), json.dumps(data).encode())


def deploy_agent(calls: List[str]) -> Any:
    from agent_framework import Agent, tool

    from af_agents import ScriptedChatClient, _text_turn, _tool_turn, answer_words

    @tool(approval_mode="always_require")
    async def deploy(city: str) -> str:
        """Deploys to a city's data centre."""
        calls.append(city)
        return f"deployed to {city}"

    client = ScriptedChatClient(turns=[_tool_turn("deploy"), _text_turn(answer_words("Done."), "m-2")])
    return Agent(client=client, name="deployer", tools=[deploy])


@pytest.mark.parametrize("approved", [True, False])
async def test_an_agent_framework_tool_that_needs_approval_runs_only_when_a_person_approves(
    nc, serve, inputs, approved: bool  # noqa: F811
):
    calls: List[str] = []
    await serve({"deployer": weir.agent_framework.handler(lambda: deploy_agent(calls))})
    sid = await enqueue(nc, "deployer", {"messages": [{"role": "user", "content": "Deploy to Paris"}]})
    request = await the_request(nc, sid)
    assert request["data"]["schema"] == APPROVAL_SCHEMA
    assert request["data"]["prompt"].startswith("Allow deploy("), request
    assert calls == [], "the tool ran before anyone approved it"
    await answer(inputs, sid, request, {"approved": approved})
    evs = await ended_log(nc, sid)
    assert evs[-1]["data"]["reason"] == "completed", evs[-1]
    assert calls == (["Paris"] if approved else [])
    inputs_published = [e["data"] for e in evs if e["kind"] == "input"]
    assert inputs_published == [{"request": request["data"]["id"], "data": {"approved": approved}}]
    assert [e["kind"] for e in evs].count("end") == 1


async def test_an_autogen_user_proxy_agent_gets_its_message_from_a_person(nc, serve, inputs):  # noqa: F811
    def make_team(run: weir.Run) -> RoundRobinGroupChat:
        model = ReplayChatCompletionClient(["Which city?"], model_info=MODEL_INFO)
        assistant = AssistantAgent("assistant", model_client=model)
        user = UserProxyAgent("user", input_func=weir.autogen.input_func(run))
        return RoundRobinGroupChat([assistant, user], max_turns=2)

    await serve({"asking-team": weir.autogen.handler(make_team)})
    sid = await enqueue(nc, "asking-team", {"messages": [{"role": "user", "content": "Weather?"}]})
    request = await the_request(nc, sid)
    await answer(inputs, sid, request, {"text": "Lyon"})
    evs = await ended_log(nc, sid)
    assert evs[-1]["data"]["reason"] == "completed", evs[-1]
    said = [(e.get("source"), e["data"].get("content")) for e in evs if e["kind"] == "message"]
    assert said[0] == ("user", "Weather?"), said
    assert ("user", "Lyon") in said, said
