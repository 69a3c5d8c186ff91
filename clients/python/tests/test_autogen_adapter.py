"""weir.autogen.stream_to_weir with real AutoGen agents/teams, publishing to a real nats-server."""

from __future__ import annotations

import asyncio

import nats
import pytest
from autogen_agentchat.conditions import MaxMessageTermination
from autogen_agentchat.teams import RoundRobinGroupChat
from autogen_core import CancellationToken
from autogen_ext.models.replay import ReplayChatCompletionClient

import weir
from agents import FINAL_ANSWER, MODEL_INFO, long_answer, weather_agent
from autogen_agentchat.agents import AssistantAgent
from conftest import assert_contiguous, create_events_stream, events_of, new_session_id, read_log
from weir.autogen import stream_to_weir


@pytest.fixture
async def nc(nats_server):
    conn = await nats.connect(nats_server.url)
    await create_events_stream(conn)
    try:
        yield conn
    finally:
        await conn.close()


async def _ctl(nc, sid: str, op: str) -> None:
    await nc.publish(f"weir.ctl.{sid}", ('{"op":"%s"}' % op).encode())
    await nc.flush()


async def _wait_for(pred, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.01)


async def test_agent_run_is_published_in_order(nats_server, nc):
    sid = new_session_id()
    async with weir.Publisher(sid, nats_url=nats_server.url) as pub:
        outcome = await stream_to_weir(pub, weather_agent(), task="What is the weather in Paris?")
    assert outcome.reason == "completed" and outcome.result is not None and outcome.error is None
    evs = events_of(await read_log(nc, sid))
    assert_contiguous(evs)
    kinds = [e["kind"] for e in evs]
    n_tokens = kinds.count("token")
    assert kinds == ["message", "thought", "tool_call", "usage", "tool_result"] + ["token"] * n_tokens + [
        "message", "usage", "end"]
    assert n_tokens == len(FINAL_ANSWER.split())
    assert evs[0]["source"] == "user" and evs[0]["data"]["content"] == "What is the weather in Paris?"
    assert evs[2]["data"]["content"][0]["name"] == "get_weather"
    assert evs[4]["data"]["content"][0]["content"] == "sunny, 21 degrees in Paris"
    tokens = [e for e in evs if e["kind"] == "token"]
    final = evs[-3]
    assert "".join(t["data"]["text"] for t in tokens) == FINAL_ANSWER == final["data"]["content"]
    assert {t["data"]["full_message_id"] for t in tokens} == {final["data"]["id"]}
    assert all(e["source"] == "assistant" for e in evs[1:-1])
    assert evs[-1]["data"] == {"reason": "completed"}
    assert outcome.end_seq == evs[-1]["seq"]


async def test_team_stop_reason(nats_server, nc):
    sid = new_session_id()
    a1 = AssistantAgent("alice", model_client=ReplayChatCompletionClient(["hi bob", "bye"], model_info=MODEL_INFO),
                        model_client_stream=True)
    a2 = AssistantAgent("bob", model_client=ReplayChatCompletionClient(["hi alice"], model_info=MODEL_INFO),
                        model_client_stream=True)
    team = RoundRobinGroupChat([a1, a2], termination_condition=MaxMessageTermination(3))
    async with weir.Publisher(sid, nats_url=nats_server.url) as pub:
        outcome = await stream_to_weir(pub, team, task="Say hi")
    evs = events_of(await read_log(nc, sid))
    assert_contiguous(evs)
    msgs = [(e["source"], e["data"]["content"]) for e in evs if e["kind"] == "message"]
    assert msgs == [("user", "Say hi"), ("alice", "hi bob"), ("bob", "hi alice")]
    assert evs[-1]["kind"] == "end" and evs[-1]["data"]["reason"] == "completed"
    assert "Maximum number of messages 3 reached" in evs[-1]["data"]["stop_reason"]
    assert outcome.stop_reason == evs[-1]["data"]["stop_reason"]


async def test_started_stream_with_users_token(nats_server, nc):
    sid = new_session_id()
    token = CancellationToken()
    agent = weather_agent()
    async with weir.Publisher(sid, nats_url=nats_server.url) as pub:
        stream = agent.run_stream(task="weather?", cancellation_token=token)
        outcome = await stream_to_weir(pub, stream, cancellation_token=token)
    assert outcome.reason == "completed"
    evs = events_of(await read_log(nc, sid))
    assert evs[-1]["kind"] == "end" and evs[-1]["data"]["reason"] == "completed"


async def test_exception_gives_error_and_failed_end(nats_server, nc):
    sid = new_session_id()
    broken = AssistantAgent("assistant", model_client=ReplayChatCompletionClient([], model_info=MODEL_INFO),
                            model_client_stream=True)
    async with weir.Publisher(sid, nats_url=nats_server.url) as pub:
        outcome = await stream_to_weir(pub, broken, task="hello")
    assert outcome.reason == "failed" and isinstance(outcome.error, ValueError)
    evs = events_of(await read_log(nc, sid))
    assert_contiguous(evs)
    assert [e["kind"] for e in evs] == ["message", "error", "end"]
    assert evs[1]["data"]["code"] == "agent_error"
    assert "No more mock responses available" in evs[1]["data"]["message"]
    assert evs[2]["data"] == {"reason": "failed"}


@pytest.mark.parametrize("honour_token", [True, False], ids=["model-honours-token", "model-ignores-token"])
async def test_cancel_stops_the_run(nats_server, nc, honour_token):
    sid = new_session_id()
    agent = weather_agent(delay=0.05, final=long_answer(400), honour_token=honour_token)
    client = agent._model_client
    async with weir.Publisher(sid, nats_url=nats_server.url) as pub:
        run = asyncio.create_task(stream_to_weir(pub, agent, task="weather?"))
        await _wait_for(lambda: client.chunks_streamed >= 3)
        await _ctl(nc, sid, "cancel")
        outcome = await asyncio.wait_for(run, 2)  # well before cancel_grace
        streamed = client.chunks_streamed
    assert outcome.reason == "cancelled"
    await asyncio.sleep(0.3)
    assert client.chunks_streamed == streamed < 50  # the model stream stopped, not just delivery
    evs = events_of(await read_log(nc, sid))
    assert_contiguous(evs)
    assert evs[-1]["kind"] == "end" and evs[-1]["data"] == {"reason": "cancelled"}
    assert [e["kind"] for e in evs].count("end") == 1


async def test_cancel_a_team(nats_server, nc):
    sid = new_session_id()
    agent = weather_agent(delay=0.05, final=long_answer(400))
    team = RoundRobinGroupChat([agent], termination_condition=MaxMessageTermination(5))
    async with weir.Publisher(sid, nats_url=nats_server.url) as pub:
        run = asyncio.create_task(stream_to_weir(pub, team, task="weather?"))
        await _wait_for(lambda: agent._model_client.chunks_streamed >= 3)
        await _ctl(nc, sid, "cancel")
        outcome = await asyncio.wait_for(run, 2)  # the team stopped by itself (before cancel_grace)
        assert not team._is_running
    assert outcome.reason == "cancelled"
    evs = events_of(await read_log(nc, sid))
    assert_contiguous(evs)
    assert evs[-1]["data"] == {"reason": "cancelled"}


async def test_cancel_before_start(nats_server, nc):
    sid = new_session_id()
    async with weir.Publisher(sid, nats_url=nats_server.url) as pub:
        pub.apply_control("cancel")
        outcome = await stream_to_weir(pub, weather_agent(), task="weather?")
    assert outcome.reason == "cancelled"
    evs = events_of(await read_log(nc, sid))
    assert [e["kind"] for e in evs] == ["end"]


async def test_pause_holds_the_run_between_events(nats_server, nc):
    sid = new_session_id()
    agent = weather_agent(delay=0.02, final=long_answer(60))
    client = agent._model_client
    async with weir.Publisher(sid, nats_url=nats_server.url) as pub:
        run = asyncio.create_task(stream_to_weir(pub, agent, task="weather?"))
        await _wait_for(lambda: client.chunks_streamed >= 5)
        await _ctl(nc, sid, "pause")
        await _wait_for(lambda: pub.paused)
        await asyncio.sleep(0.2)
        held_at = client.chunks_streamed
        await asyncio.sleep(0.5)
        assert client.chunks_streamed <= held_at + 1  # generation stopped
        assert not run.done()
        await _ctl(nc, sid, "resume")
        outcome = await asyncio.wait_for(run, 20)
    assert outcome.reason == "completed"
    evs = events_of(await read_log(nc, sid))
    assert_contiguous(evs)
    kinds = [e["kind"] for e in evs]
    assert kinds.count("token") == 60
    p = kinds.index("status")
    assert evs[p]["data"] == {"state": "paused"}
    r = kinds.index("status", p + 1)
    assert evs[r]["data"] == {"state": "resumed"}
    assert r == p + 1  # nothing is published while paused
    assert kinds[-1] == "end"


async def test_fenced_publisher_stops_the_run(nats_server, nc):
    sid = new_session_id()
    agent = weather_agent(delay=0.05, final=long_answer(400))
    pub = await weir.Publisher(sid, nats_url=nats_server.url).start()
    try:
        run = asyncio.create_task(stream_to_weir(pub, agent, task="weather?"))
        await _wait_for(lambda: agent._model_client.chunks_streamed >= 3)
        await pub.flush()
        # Another producer takes the session over.
        async with weir.Publisher(sid, nats_url=nats_server.url, auto_end=False) as other:
            await other.emit("token", {"text": "mine now"})
        with pytest.raises(weir.FencedError):
            await asyncio.wait_for(run, 10)
    finally:
        await pub.close()
    evs = events_of(await read_log(nc, sid))
    assert_contiguous(evs)
    assert evs[-1]["data"] == {"text": "mine now"}
