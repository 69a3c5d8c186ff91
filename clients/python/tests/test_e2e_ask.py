"""End to end: asking a person mid-run (docs/protocol.md §9) from Python, against a real
nats-server, redis-server and weir edge (the ``cluster`` fixture of test_e2e_edge): the answer
posted to the edge reaches :meth:`weir.Publisher.ask`, an answer given before anyone waits is
kept, a cancel ends the wait, and an AutoGen ``UserProxyAgent`` served by a :class:`weir.Worker`
asks through weir.
"""

from __future__ import annotations

import asyncio
from typing import Any, Dict, List

import httpx
import nats
import pytest
from autogen_agentchat.agents import AssistantAgent, UserProxyAgent
from autogen_agentchat.teams import RoundRobinGroupChat
from autogen_ext.models.replay import ReplayChatCompletionClient

import weir
import weir.autogen
from weir._ask import TEXT_SCHEMA, wait_answer
from agents import MODEL_INFO
from conftest import events_of, read_log
from test_e2e_edge import Cluster, cluster, get_state, wait_state  # noqa: F401 - the fixture

pytestmark = pytest.mark.asyncio


async def post_input(cluster: Cluster, session: Dict[str, Any], body: Dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=cluster.base, timeout=10) as http:
        auth = {"Authorization": f"Bearer {session['token']}"}
        return await http.post(f"/v1/sessions/{session['id']}/input", json=body, headers=auth)


async def open_request(cluster: Cluster, session: Dict[str, Any]) -> str:
    """The id of the session's last ``input_request``, once the log has one."""
    auth = {"Authorization": f"Bearer {session['token']}"}
    async with httpx.AsyncClient(base_url=cluster.base, timeout=10) as http:
        for _ in range(400):
            r = await http.get(f"/v1/sessions/{session['id']}/history", params={"limit": 1000}, headers=auth)
            asks = [e for e in r.json()["events"] if e["kind"] == "input_request"]
            if asks:
                return asks[-1]["data"]["id"]
            await asyncio.sleep(0.05)
    raise AssertionError(f"no input_request in {session['id']}")


async def log_of(cluster: Cluster, sid: str) -> List[Dict[str, Any]]:
    nc = await nats.connect(cluster.nats_url)
    try:
        return events_of(await read_log(nc, sid))
    finally:
        await nc.close()


async def test_an_answer_posted_to_the_edge_is_what_ask_returns_and_is_published_once(cluster: Cluster):
    session = await weir.create_session(cluster.base)
    async with weir.Publisher(session, nats_url=cluster.nats_url) as pub:
        await pub.emit("token", {"text": "Before I go on: "})
        asking = asyncio.ensure_future(pub.ask("Your name?", TEXT_SCHEMA))
        request = await open_request(cluster, session)
        # The log ends with the question: the edge says the session waits for a person.
        st = await wait_state(cluster, session, lambda s: s.get("status") == "input_required")
        assert st["status"] == "input_required", st
        refused = await post_input(cluster, session, {"request": request, "data": {"text": 7}})
        assert refused.status_code == 400, refused.text
        r = await post_input(cluster, session, {"request": request, "data": {"text": "Ada"}})
        assert r.status_code == 202, r.text
        assert await asyncio.wait_for(asking, 20) == {"text": "Ada"}
        again = await post_input(cluster, session, {"request": request, "data": {"text": "Bob"}})
        assert again.status_code == 409, again.text
    evs = await log_of(cluster, session["id"])
    kinds = [e["kind"] for e in evs]
    assert kinds == ["token", "input_request", "input", "end"], kinds
    assert evs[1]["data"] == {"id": request, "prompt": "Your name?", "schema": TEXT_SCHEMA}
    assert request == f"ask_{evs[1]['seq']}"
    assert evs[2]["data"] == {"request": request, "data": {"text": "Ada"}}


async def test_an_answer_given_before_anyone_waits_is_kept_and_found(cluster: Cluster):
    session = await weir.create_session(cluster.base)
    async with weir.Publisher(session, nats_url=cluster.nats_url) as pub:
        await pub.emit("input_request", {"id": "approve_1", "prompt": "Deploy?"})
        await pub.flush()
        r = await post_input(cluster, session, {"request": "approve_1", "data": {"approved": True}})
        assert r.status_code == 202, r.text
        # Nobody waited when it came: a wait that starts now finds it.
        nc = await nats.connect(cluster.nats_url)
        try:
            found = await asyncio.wait_for(wait_answer(nc.jetstream(), session["id"], "approve_1"), 20)
        finally:
            await nc.close()
        assert found == {"approved": True}


async def test_a_cancel_while_asking_ends_the_wait_and_the_session_cancelled(cluster: Cluster):
    session = await weir.create_session(cluster.base)
    async with weir.Publisher(session, nats_url=cluster.nats_url) as pub:
        asking = asyncio.ensure_future(pub.ask("Still there?"))
        await open_request(cluster, session)
        async with httpx.AsyncClient(base_url=cluster.base, timeout=10) as http:
            auth = {"Authorization": f"Bearer {session['token']}"}
            r = await http.post(f"/v1/sessions/{session['id']}/cancel", headers=auth)
            assert r.status_code == 202, r.text
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(asking, 20)
        await pub.end("cancelled")
    st = await wait_state(cluster, session, lambda s: s.get("status") == "cancelled")
    assert st["status"] == "cancelled", st


async def test_a_user_proxy_agent_of_a_worker_asks_a_person_through_weir(cluster: Cluster):
    def make_team(run: weir.Run) -> RoundRobinGroupChat:
        model = ReplayChatCompletionClient(["Which city do you mean?"], model_info=MODEL_INFO)
        assistant = AssistantAgent("assistant", model_client=model)
        user = UserProxyAgent("user", input_func=weir.autogen.input_func(run))
        return RoundRobinGroupChat([assistant, user], max_turns=2)

    worker = weir.Worker({"py-ask": weir.autogen.handler(make_team)}, nats_url=cluster.nats_url, node_id="py-ask-worker")
    serving = asyncio.ensure_future(worker.run())
    try:
        async with httpx.AsyncClient(base_url=cluster.base, timeout=10) as http:
            body = {"agent": "py-ask", "input": {"messages": [{"role": "user", "content": "Weather?"}]}}
            for _ in range(100):  # until the edge has seen the worker announce its agent
                r = await http.post("/v1/sessions", json=body)
                if r.status_code == 201:
                    break
                await asyncio.sleep(0.2)
            assert r.status_code == 201, r.text
            session = r.json()
        request = await open_request(cluster, session)
        r = await post_input(cluster, session, {"request": request, "data": {"text": "Lyon"}})
        assert r.status_code == 202, r.text
        st = await wait_state(cluster, session, lambda s: s.get("status") == "completed", timeout=20)
        assert st["status"] == "completed", st
        evs = await log_of(cluster, session["id"])
        answered = [e for e in evs if e["kind"] == "input"]
        assert [e["data"] for e in answered] == [{"request": request, "data": {"text": "Lyon"}}]
        said = [e["data"].get("content") for e in evs if e["kind"] == "message" and e.get("source") == "user"]
        assert "Lyon" in said, evs
        first = next(e for e in evs if e["kind"] == "message")
        assert first["data"]["content"] == "Weather?", first
    finally:
        worker.stop()
        await asyncio.wait_for(serving, 30)
