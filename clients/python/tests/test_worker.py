"""weir.Worker against a real nats-server (no edge): run requests on weir.runs.<agent>, the
session's lease in WEIR_LEASES, the node registry, control, errors, drain, concurrency, and
the AutoGen / Agent Framework handlers on scripted model clients."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import nats
import pytest
from nats.js.api import KeyValueConfig, RetentionPolicy, StreamConfig

import weir
import weir.agent_framework
import weir.autogen
from conftest import create_events_stream, events_of, new_session_id, read_log

WITHIN = 15.0


async def create_weir_streams(nc: Any) -> None:
    """What a weir node makes at start-up: WEIR_EVENTS, WEIR_RUNS (weir.runs.>, a work queue),
    and the WEIR_LEASES and WEIR_NODES buckets."""
    await create_events_stream(nc)
    js = nc.jetstream()
    await js.add_stream(
        StreamConfig(name="WEIR_RUNS", subjects=["weir.runs.>"], retention=RetentionPolicy.WORK_QUEUE, max_age=3600.0)
    )
    await js.create_key_value(KeyValueConfig(bucket="WEIR_LEASES", history=1, ttl=3600.0))
    await js.create_key_value(KeyValueConfig(bucket="WEIR_NODES", history=1, ttl=10.0))


async def enqueue(nc: Any, agent: str, input: Dict[str, Any] | None = None) -> str:
    """Queues a run as an edge does; returns its session id."""
    sid = new_session_id()
    body = json.dumps({"session": sid, "agent": agent, "input": input or {}}).encode()
    await nc.jetstream().publish(f"weir.runs.{agent}", body, headers={"Nats-Msg-Id": f"run:{sid}"})
    return sid


async def wait_for(pred, what: str, timeout: float = WITHIN):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = await pred()
        if got:
            return got
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def ended_log(nc: Any, sid: str) -> List[Dict[str, Any]]:
    async def ended():
        evs = events_of(await read_log(nc, sid))
        return evs if evs and evs[-1]["kind"] == "end" else None

    return await wait_for(ended, f"the end of {sid}")


async def lease_of(nc: Any, sid: str):
    kv = await nc.jetstream().key_value("WEIR_LEASES")
    try:
        return json.loads((await kv.get(sid)).value)
    except nats.js.errors.KeyNotFoundError:
        return None


@pytest.fixture
async def nc(nats_server):
    conn = await nats.connect(nats_server.url)
    await create_weir_streams(conn)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def serve(nats_server):
    """Starts workers on the test's NATS; stops them (draining) at the end."""
    running: List[tuple] = []

    async def start(handlers, **options) -> weir.Worker:
        options.setdefault("lease_ttl", 1.0)
        worker = weir.Worker(handlers, nats_url=nats_server.url, **options)
        running.append((worker, asyncio.create_task(worker.run())))
        return worker

    yield start
    for worker, task in running:
        worker.stop()
    await asyncio.wait_for(asyncio.gather(*(t for _, t in running), return_exceptions=True), WITHIN)


async def test_a_handler_that_returns_ends_its_session_completed_and_releases_the_lease(nc, serve):
    seen: Dict[str, Any] = {}

    async def echo(run: weir.Run) -> None:
        seen["input"], seen["agent"] = run.input, run.agent
        seen["lease"] = await lease_of(nc, run.session_id)
        for word in run.input["words"]:
            await run.emit("token", {"text": word}, source="echo")

    await serve({"echo": echo}, node_id="py-1")
    sid = await enqueue(nc, "echo", {"words": ["a", "b", "c"]})
    evs = await ended_log(nc, sid)
    assert [(e["kind"], e["data"].get("text")) for e in evs] == [("token", "a"), ("token", "b"), ("token", "c"), ("end", None)]
    assert evs[-1]["data"]["reason"] == "completed"
    assert seen["agent"] == "echo" and seen["input"] == {"words": ["a", "b", "c"]}
    assert seen["lease"]["owner"] == "py-1" and seen["lease"]["records"] is False
    await wait_for(lambda: _none(lease_of(nc, sid)), "the lease to be released")


async def _none(coro):
    return (await coro) is None


async def test_a_handler_that_raises_ends_its_session_with_error_and_failed(nc, serve):
    async def broken(run: weir.Run) -> None:
        await run.emit("token", {"text": "so far"})
        raise RuntimeError("the model went away")

    await serve({"broken": broken})
    sid = await enqueue(nc, "broken")
    evs = await ended_log(nc, sid)
    assert [e["kind"] for e in evs] == ["token", "error", "end"]
    assert evs[1]["data"]["code"] == "handler_error"
    assert "the model went away" in evs[1]["data"]["message"]
    assert evs[2]["data"]["reason"] == "failed"


async def test_a_cancel_stops_the_handler_and_ends_the_session_cancelled(nc, serve):
    started = asyncio.Event()

    async def forever(run: weir.Run) -> None:
        started.set()
        while True:
            await run.emit("token", {"text": "."})
            await asyncio.sleep(0.02)

    await serve({"forever": forever}, cancel_grace=0.5)
    sid = await enqueue(nc, "forever")
    await asyncio.wait_for(started.wait(), WITHIN)
    await wait_for(lambda: _count(nc, sid, 3), "a few tokens")
    await nc.publish(f"weir.ctl.{sid}", b'{"op":"cancel"}')
    evs = await ended_log(nc, sid)
    assert evs[-1]["data"]["reason"] == "cancelled"
    assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1))


async def _count(nc, sid, n):
    return len(events_of(await read_log(nc, sid))) >= n


async def test_a_pause_holds_the_handler_until_resume(nc, serve):
    async def counter(run: weir.Run) -> None:
        for i in range(40):
            await run.emit("token", {"text": str(i)})
            await asyncio.sleep(0.02)

    await serve({"counter": counter})
    sid = await enqueue(nc, "counter")
    await wait_for(lambda: _count(nc, sid, 3), "a few tokens")
    await nc.publish(f"weir.ctl.{sid}", b'{"op":"pause"}')

    async def paused_last():
        evs = events_of(await read_log(nc, sid))
        return evs and evs[-1]["kind"] == "status" and evs[-1]["data"]["state"] == "paused" and evs

    at_pause = await wait_for(paused_last, "the paused notice")
    await asyncio.sleep(0.5)
    assert events_of(await read_log(nc, sid)) == at_pause, "the handler went on while paused"
    await nc.publish(f"weir.ctl.{sid}", b'{"op":"resume"}')
    evs = await ended_log(nc, sid)
    tokens = [e["data"]["text"] for e in evs if e["kind"] == "token"]
    assert tokens == [str(i) for i in range(40)]
    assert evs[-1]["data"]["reason"] == "completed"


async def test_no_more_runs_than_the_concurrency_run_at_once(nc, serve):
    running, most = 0, 0
    release = asyncio.Event()

    async def slow(run: weir.Run) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            await release.wait()
        finally:
            running -= 1

    await serve({"slow": slow}, concurrency=2)
    sids = [await enqueue(nc, "slow") for _ in range(5)]
    await wait_for(lambda: _true(running == 2), "two runs")
    await asyncio.sleep(0.5)
    assert running == 2
    release.set()
    for sid in sids:
        assert (await ended_log(nc, sid))[-1]["data"]["reason"] == "completed"
    assert most == 2


async def _true(v):
    return v


async def test_an_agent_with_an_empty_queue_leaves_the_room_to_the_busy_one(nc, serve, monkeypatch):
    # Each pull waits as long as the test: a taker that kept its slot while it waited would
    # keep it to the end.
    monkeypatch.setattr(weir.Worker, "_FETCH_WAIT", 3600.0)
    running = 0
    release = asyncio.Event()

    async def busy(run: weir.Run) -> None:
        nonlocal running
        running += 1
        try:
            await release.wait()
        finally:
            running -= 1

    await serve({"busy": busy, "idle": _noop}, concurrency=2)
    sids = [await enqueue(nc, "busy") for _ in range(2)]
    await wait_for(lambda: _true(running == 2), "the busy agent's two runs at once")
    release.set()
    for sid in sids:
        assert (await ended_log(nc, sid))[-1]["data"]["reason"] == "completed"


async def test_requests_taken_without_room_go_back_and_each_runs_once(nc, serve):
    running, most = 0, 0

    async def one(run: weir.Run) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            await asyncio.sleep(0.05)
            await run.emit("token", {"text": run.agent})
        finally:
            running -= 1

    await serve({"a": one, "b": one}, concurrency=1)
    sids = [await enqueue(nc, "a" if n % 2 == 0 else "b") for n in range(6)]
    for sid in sids:
        evs = await ended_log(nc, sid)
        assert [e["kind"] for e in evs] == ["token", "end"], evs
    assert most == 1


async def test_stopping_drains_then_ends_what_is_left_failed(nc, serve):
    async def quick(run: weir.Run) -> None:
        await asyncio.sleep(0.3)
        await run.emit("token", {"text": "done"})

    async def endless(run: weir.Run) -> None:
        await asyncio.Event().wait()

    worker = await serve({"quick": quick, "endless": endless}, drain_grace=1.0)
    a, b = await enqueue(nc, "quick"), await enqueue(nc, "endless")
    await wait_for(lambda: _true(worker.active == 2), "both runs")
    worker.stop()
    assert (await ended_log(nc, a))[-1]["data"]["reason"] == "completed"
    evs = await ended_log(nc, b)
    assert [e["kind"] for e in evs] == ["error", "end"]
    assert evs[0]["data"]["code"] == "producer_shutdown" and evs[1]["data"]["reason"] == "failed"


async def test_a_worker_announces_its_agents_in_the_node_registry(nc, serve):
    await serve({"alpha": _noop, "beta": _noop}, node_id="py-reg", concurrency=3)
    kv = await nc.jetstream().key_value("WEIR_NODES")

    async def entry():
        try:
            return json.loads((await kv.get("py-reg")).value)
        except nats.js.errors.KeyNotFoundError:
            return None

    e = await wait_for(entry, "the worker's entry")
    assert (e["role"], e["agents"], e["concurrency"], e["runtime"]) == ("producer", ["alpha", "beta"], 3, "python")


async def _noop(run: weir.Run) -> None:
    return None


async def test_a_run_whose_lease_is_taken_over_stops_publishing(nc, serve):
    async def chatty(run: weir.Run) -> None:
        while True:
            await run.emit("token", {"text": "."})
            await asyncio.sleep(0.02)

    await serve({"chatty": chatty}, lease_ttl=0.6)
    sid = await enqueue(nc, "chatty")
    await wait_for(lambda: _count(nc, sid, 3), "a few tokens")
    # A reaper takes the lease over, then ends the session behind the log's fence.
    kv = await nc.jetstream().key_value("WEIR_LEASES")
    entry = await kv.get(sid)
    await kv.update(sid, b'{"owner":"reaper","ttl_ms":60000,"records":true}', last=entry.revision)
    await asyncio.sleep(0.6)  # the worker's next renewal finds the lease taken
    before = events_of(await read_log(nc, sid))
    await asyncio.sleep(0.5)
    assert events_of(await read_log(nc, sid)) == before, "published after losing the lease"
    assert before[-1]["kind"] == "token"


async def test_the_autogen_handler_runs_a_team_on_the_task(nc, serve):
    from agents import FINAL_ANSWER, weather_agent

    await serve({"weather": weir.autogen.handler(lambda: weather_agent())})
    sid = await enqueue(nc, "weather", {"task": "What is the weather in Paris?"})
    evs = await ended_log(nc, sid)
    assert evs[-1]["data"]["reason"] == "completed"
    text = "".join(e["data"]["text"] for e in evs if e["kind"] == "token")
    assert text == FINAL_ANSWER
    assert any(e["kind"] == "tool_call" for e in evs)


async def test_the_agent_framework_handler_runs_an_agent_on_the_task(nc, serve):
    from af_agents import FINAL_ANSWER, weather_agent

    await serve({"weather": weir.agent_framework.handler(lambda run: weather_agent())})
    sid = await enqueue(nc, "weather", {"task": "What is the weather in Paris?"})
    evs = await ended_log(nc, sid)
    assert evs[-1]["data"]["reason"] == "completed"
    text = "".join(e["data"]["text"] for e in evs if e["kind"] == "token")
    assert text.strip() == FINAL_ANSWER.strip()


async def test_sigterm_drains_a_worker_run_from_the_shell(nc, nats_server, tmp_path: Path):
    app = tmp_path / "worker_app.py"
    app.write_text(
        "import asyncio\n"
        "async def slow(run):\n"
        "    for i in range(5):\n"
        "        await run.emit('token', {'text': str(i)})\n"
        "        await asyncio.sleep(0.2)\n"
        "handlers = {'slow': slow}\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(weir.__file__).parents[1]), str(tmp_path)]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "weir.worker", "worker_app:handlers", "--nats-url", nats_server.url, "--drain-grace", "10"],
        env=env, cwd=tmp_path,
    )
    try:
        sid = await enqueue(nc, "slow")
        await wait_for(lambda: _count(nc, sid, 1), "the run to start")
        proc.send_signal(signal.SIGTERM)
        evs = await ended_log(nc, sid)
        assert [e["data"].get("text") for e in evs if e["kind"] == "token"] == ["0", "1", "2", "3", "4"]
        assert evs[-1]["data"]["reason"] == "completed"
        assert await asyncio.to_thread(proc.wait, WITHIN) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_a_worker_on_a_nats_without_weirs_run_queues_says_so(nats_server):
    worker = weir.Worker({"echo": _noop}, nats_url=nats_server.url)
    with pytest.raises(weir.WeirError, match="no stream WEIR_RUNS"):
        await asyncio.wait_for(worker.run(), WITHIN)
    nc = await nats.connect(nats_server.url)
    try:
        await nc.jetstream().add_stream(StreamConfig(name="WEIR_RUNS", subjects=["weir.runs"], retention=RetentionPolicy.WORK_QUEUE))
    finally:
        await nc.close()
    with pytest.raises(weir.WeirError, match="older weir release"):
        await asyncio.wait_for(weir.Worker({"echo": _noop}, nats_url=nats_server.url).run(), WITHIN)


async def test_a_publisher_takes_its_own_lease_back_and_is_refused_a_session_another_runs(nc, nats_server):
    sid = new_session_id()
    first = weir.Publisher(sid, nats_url=nats_server.url, node_id="app-1", auto_end=False)
    await first.start()
    await first.emit("token", {"text": "a"})
    await first.close()  # no end: the lease stays, to lapse or be taken back
    assert (await lease_of(nc, sid))["owner"] == "app-1"
    with pytest.raises(weir.LeaseHeldError, match="app-1"):
        await weir.Publisher(sid, nats_url=nats_server.url, node_id="app-2").start()
    async with weir.Publisher(sid, nats_url=nats_server.url, node_id="app-1") as again:
        await again.emit("token", {"text": "b"})
    assert [e["kind"] for e in events_of(await read_log(nc, sid))] == ["token", "token", "end"]
    assert await lease_of(nc, sid) is None
