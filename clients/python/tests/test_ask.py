"""Publisher.ask against a real nats-server, with the test doing what an edge does (creating
``WEIR_INPUTS`` and storing an answer with the bucket's ``create``): the request and the answer
in the log, an answer stored before the wait, distinct default ids, cancel while waiting, and
AutoGen's ``UserProxyAgent`` input function. Through a real edge: test_e2e_ask.py."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Dict, List

import nats
import pytest
from nats.js.api import KeyValueConfig

import weir
import weir.autogen
from weir._ask import INPUTS_BUCKET, TEXT_SCHEMA, answer_key, wait_answer
from conftest import create_events_stream, events_of, new_session_id, read_log


@pytest.fixture
async def nc(nats_server):
    conn = await nats.connect(nats_server.url)
    await create_events_stream(conn)
    await conn.jetstream().create_key_value(KeyValueConfig(bucket=INPUTS_BUCKET, history=1))
    try:
        yield conn
    finally:
        await conn.close()


async def answer(nc: Any, sid: str, request: str, data: Dict[str, Any]) -> None:
    """What an edge does with POST /v1/sessions/{id}/input once it checked the request is open."""
    kv = await nc.jetstream().key_value(INPUTS_BUCKET)
    await kv.create(answer_key(sid, request), json.dumps(data).encode())


async def requests_in_log(nc: Any, sid: str, n: int = 1) -> List[Dict[str, Any]]:
    """The session's input_request events, once the log holds ``n`` of them."""
    for _ in range(2000):
        asks = [e for e in events_of(await read_log(nc, sid)) if e["kind"] == "input_request"]
        if len(asks) >= n:
            return asks
        await asyncio.sleep(0.01)
    raise AssertionError(f"fewer than {n} input_request events in the log")


async def test_ask_publishes_the_request_then_the_answer_once_and_returns_it(nats_server, nc):
    sid = new_session_id()
    async with weir.Publisher({"id": sid, "token": "x"}, nats_url=nats_server.url) as pub:
        await pub.emit("token", {"text": "One question: "})
        asking = asyncio.ensure_future(pub.ask("Your name?", TEXT_SCHEMA, source="assistant"))
        (request,) = await requests_in_log(nc, sid)
        assert request["data"] == {"id": "ask_2", "prompt": "Your name?", "schema": TEXT_SCHEMA}
        assert request["source"] == "assistant"
        await answer(nc, sid, "ask_2", {"text": "Ada"})
        assert await asyncio.wait_for(asking, 10) == {"text": "Ada"}
    evs = events_of(await read_log(nc, sid))
    assert [e["kind"] for e in evs] == ["token", "input_request", "input", "end"]
    assert evs[2]["data"] == {"request": "ask_2", "data": {"text": "Ada"}}


async def test_an_answer_stored_before_anyone_waits_is_found(nats_server, nc):
    sid = new_session_id()
    await answer(nc, sid, "approve_1", {"approved": False})
    found = await asyncio.wait_for(wait_answer(nc.jetstream(), sid, "approve_1"), 10)
    assert found == {"approved": False}


async def test_asks_in_flight_together_get_distinct_ids(nats_server, nc):
    sid = new_session_id()
    async with weir.Publisher({"id": sid, "token": "x"}, nats_url=nats_server.url) as pub:
        asks = [asyncio.ensure_future(pub.ask(f"q{i}")) for i in range(3)]
        requests = await requests_in_log(nc, sid, 3)
        ids = [r["data"]["id"] for r in requests]
        assert len(set(ids)) == 3, ids
        for i, rid in enumerate(ids):
            await answer(nc, sid, rid, {"n": i})
        got = await asyncio.wait_for(asyncio.gather(*asks), 10)
        assert sorted(a["n"] for a in got) == [0, 1, 2]


async def test_a_cancel_while_asking_raises_cancelled_error(nats_server, nc):
    sid = new_session_id()
    async with weir.Publisher({"id": sid, "token": "x"}, nats_url=nats_server.url, auto_end=False) as pub:
        asking = asyncio.ensure_future(pub.ask("Still there?"))
        await requests_in_log(nc, sid)
        pub.apply_control("cancel")
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(asking, 10)
        await pub.end("cancelled")


async def test_the_autogen_input_function_returns_the_answers_text(nats_server, nc):
    sid = new_session_id()
    async with weir.Publisher({"id": sid, "token": "x"}, nats_url=nats_server.url) as pub:
        ask_person = weir.autogen.input_func(pub, source="user")
        asking = asyncio.ensure_future(ask_person("Enter your response: ", None))
        (request,) = await requests_in_log(nc, sid)
        assert request["data"]["schema"] == TEXT_SCHEMA
        await answer(nc, sid, request["data"]["id"], {"text": "Lyon"})
        assert await asyncio.wait_for(asking, 10) == "Lyon"
