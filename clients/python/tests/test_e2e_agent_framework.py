"""End to end: a real Agent Framework agent (and workflow) on a scripted chat client, published
through weir.agent_framework to a real NATS, served by a real weir edge, read over WebSocket.

Uses the edge cluster of test_e2e_edge (``$WEIR_BIN``, skipped without it unless
``WEIR_E2E_REQUIRED=1``).
"""

from __future__ import annotations

import asyncio
import json

import nats
from agent_framework import WorkflowBuilder

import weir
from af_agents import FINAL_ANSWER, long_answer, slow_lookup, talker, tool_calls_made, weather_agent
from conftest import assert_contiguous, events_of, read_log
from test_e2e_edge import Cluster, cluster, kinds, open_ws, wait_state  # noqa: F401 - cluster is a fixture
from weir.agent_framework import stream_to_weir


async def _log_of(cluster: Cluster, sid: str):
    nc = await nats.connect(cluster.nats_url)
    try:
        return events_of(await read_log(nc, sid))
    finally:
        await nc.close()


async def test_agent_run_streams_to_websocket_exactly_once(cluster: Cluster):
    session = await weir.create_session(cluster.base)
    ws = await open_ws(session["ws_url"])
    tool_calls_made.clear()
    async with weir.Publisher(session, nats_url=cluster.nats_url) as pub:
        outcome = await stream_to_weir(pub, weather_agent(), task="What is the weather in Paris?")
    assert outcome.reason == "completed" and outcome.error is None, outcome
    assert tool_calls_made == ["Paris"]  # Agent Framework called the tool from the joined fragments

    _, code = await ws.finish()
    assert code == 1000, f"close code {code}\n{cluster.logs()}"
    evs = ws.events
    assert_contiguous(evs)
    n_tokens = len(FINAL_ANSWER.split())
    assert kinds(evs) == ["reasoning", "tool_call", "usage", "tool_result"] + ["token"] * n_tokens + [
        "usage", "message", "end"], kinds(evs)
    assert all(e["source"] == "assistant" for e in evs[:-1])
    assert evs[0]["data"]["text"] == "I should look up the weather."
    call = evs[1]["data"]
    assert call["type"] == "ToolCallRequestEvent"
    assert call["content"] == [{"id": "call-1", "name": "get_weather", "arguments": '{"city": "Paris"}'}]
    assert json.loads(call["content"][0]["arguments"]) == {"city": "Paris"}
    assert evs[2]["data"] == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    result = evs[3]["data"]
    assert result["type"] == "ToolCallExecutionEvent"
    assert result["content"] == [
        {"call_id": "call-1", "name": "get_weather", "content": "sunny, 21 degrees in Paris", "is_error": False}]
    tokens = [e for e in evs if e["kind"] == "token"]
    assert "".join(t["data"]["text"] for t in tokens) == FINAL_ANSWER
    assert {t["data"]["full_message_id"] for t in tokens} == {"m-2"}
    # The second call's own counts (Agent Framework streams the loop's running total).
    assert evs[-3]["data"] == {"prompt_tokens": 20, "completion_tokens": n_tokens, "total_tokens": 20 + n_tokens}
    assert evs[-2]["data"] == {"type": "TextMessage", "id": "m-2", "content": FINAL_ANSWER}
    assert evs[-1]["data"] == {"reason": "completed", "stop_reason": "stop"}
    assert outcome.end_seq == evs[-1]["seq"] and outcome.stop_reason == "stop"
    total = outcome.result.usage_details
    assert sum(e["data"]["total_tokens"] for e in evs if e["kind"] == "usage") == total["total_token_count"]

    # Exactly once, in order: what the browser got is what is in the log.
    assert await _log_of(cluster, session["id"]) == evs
    st = await wait_state(cluster, session, lambda s: s.get("status") == "completed")
    assert st["status"] == "completed" and st["last_seq"] == evs[-1]["seq"], st


async def test_websocket_cancel_ends_the_agent_run_within_a_second(cluster: Cluster):
    session = await weir.create_session(cluster.base)
    ws = await open_ws(session["ws_url"])
    agent = weather_agent(delay=0.02, final=long_answer(400))
    client = agent.client
    loop = asyncio.get_running_loop()
    async with weir.Publisher(session, nats_url=cluster.nats_url) as pub:
        run = asyncio.create_task(stream_to_weir(pub, agent, task="weather?"))
        await ws.wait_until(lambda c: kinds(c.events).count("token") >= 3)
        sent = loop.time()
        await ws.send({"type": "cancel"})
        await ws.wait_until(lambda c: "end" in kinds(c.events), timeout=1.0)
        assert loop.time() - sent < 1.0
        outcome = await asyncio.wait_for(run, 1)
        streamed = client.updates_streamed
    assert outcome.reason == "cancelled", outcome
    _, code = await ws.finish()
    assert code == 1000
    evs = ws.events
    assert_contiguous(evs)
    assert evs[-1]["kind"] == "end" and evs[-1]["data"] == {"reason": "cancelled"}, evs[-3:]
    assert kinds(evs).count("end") == 1
    await asyncio.sleep(0.3)
    assert client.updates_streamed == streamed < 100  # the model stream stopped, not just delivery
    assert await _log_of(cluster, session["id"]) == evs
    st = await wait_state(cluster, session, lambda s: s.get("status") == "cancelled")
    assert st["status"] == "cancelled" and st["last_seq"] == evs[-1]["seq"], st


async def test_cancel_during_a_tool_closes_its_call(cluster: Cluster):
    session = await weir.create_session(cluster.base)
    ws = await open_ws(session["ws_url"])
    async with weir.Publisher(session, nats_url=cluster.nats_url) as pub:
        run = asyncio.create_task(stream_to_weir(pub, weather_agent(tool_fn=slow_lookup), task="weather?"))
        await ws.wait_until(lambda c: "tool_call" in kinds(c.events))
        await asyncio.sleep(0.1)  # the tool is running
        await ws.send({"type": "cancel"})
        outcome = await asyncio.wait_for(run, 1)
    assert outcome.reason == "cancelled"
    _, code = await ws.finish()
    evs = ws.events
    assert_contiguous(evs)
    assert kinds(evs) == ["reasoning", "tool_call", "usage", "tool_result", "end"], kinds(evs)
    assert evs[3]["data"]["content"] == [
        {"call_id": "call-1", "name": "slow_lookup", "content": "cancelled", "is_error": True}]
    assert evs[-1]["data"] == {"reason": "cancelled"}


async def test_two_agent_workflow_tokens_carry_their_source(cluster: Cluster):
    session = await weir.create_session(cluster.base)
    ws = await open_ws(session["ws_url"])
    alice, bob = talker("alice", "hi bob"), talker("bob", "hi alice")
    workflow = WorkflowBuilder(start_executor=alice).add_edge(alice, bob).build()
    async with weir.Publisher(session, nats_url=cluster.nats_url) as pub:
        outcome = await stream_to_weir(pub, workflow, task="Say hi")
    assert outcome.reason == "completed", outcome
    _, code = await ws.finish()
    assert code == 1000
    evs = ws.events
    assert_contiguous(evs)
    assert [(e["kind"], e.get("source")) for e in evs] == [
        ("token", "alice"), ("token", "alice"), ("usage", "alice"), ("message", "alice"),
        ("token", "bob"), ("token", "bob"), ("usage", "bob"), ("message", "bob"), ("end", None)]
    said = {}
    for e in evs:
        if e["kind"] == "token":
            said[e["source"]] = said.get(e["source"], "") + e["data"]["text"]
    assert said == {"alice": "hi bob", "bob": "hi alice"}
    assert [e["data"]["content"] for e in evs if e["kind"] == "message"] == ["hi bob", "hi alice"]
    assert evs[-1]["data"] == {"reason": "completed", "stop_reason": "stop"}
    assert await _log_of(cluster, session["id"]) == evs


async def test_exception_gives_error_and_failed_end(cluster: Cluster):
    session = await weir.create_session(cluster.base)
    broken = talker("assistant", "unused")
    broken.client.turns.clear()  # the model call raises
    async with weir.Publisher(session, nats_url=cluster.nats_url) as pub:
        outcome = await stream_to_weir(pub, broken, task="hello")
    assert outcome.reason == "failed" and isinstance(outcome.error, RuntimeError), outcome
    evs = await _log_of(cluster, session["id"])
    assert kinds(evs) == ["error", "end"]
    assert evs[0]["data"]["code"] == "agent_error" and "no more turns" in evs[0]["data"]["message"]
    assert evs[1]["data"] == {"reason": "failed"}


async def test_pause_holds_the_agent_between_updates(cluster: Cluster):
    session = await weir.create_session(cluster.base)
    ws = await open_ws(session["ws_url"])
    agent = weather_agent(delay=0.02, final=long_answer(40))
    client = agent.client
    async with weir.Publisher(session, nats_url=cluster.nats_url) as pub:
        run = asyncio.create_task(stream_to_weir(pub, agent, task="weather?"))
        await ws.wait_until(lambda c: "token" in kinds(c.events))
        await ws.send({"type": "pause"})
        await ws.wait_until(lambda c: "status" in kinds(c.events))
        held_at, n_events = client.updates_streamed, len(ws.events)
        await asyncio.sleep(0.5)
        assert client.updates_streamed <= held_at + 1  # generation stopped, not just delivery
        assert len(ws.events) == n_events
        await ws.send({"type": "resume"})
        outcome = await asyncio.wait_for(run, 20)
    assert outcome.reason == "completed"
    _, code = await ws.finish()
    evs = ws.events
    assert_contiguous(evs)
    assert [e["data"]["state"] for e in evs if e["kind"] == "status"] == ["paused", "resumed"]
    assert kinds(evs).count("token") == 40 and evs[-1]["data"]["reason"] == "completed"
