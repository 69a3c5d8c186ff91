"""End to end: Python workers and publishers in their own processes, SIGKILLed or stopped, on a
real cluster — nats-server, redis-server, two weir edges and one weir producer (``mock``), all
with a 2 s lease and a 3 s claim timeout. What a user sees: sessions of dead producers end
``failed`` within the lease time, exactly once, on every edge; workers of one agent share its
runs; a producer whose lease was taken over publishes nothing more.

The binary is ``target/debug/weir`` (or ``$WEIR_BIN``), as in test_e2e_edge.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import httpx
import nats
import pytest

import weir
from conftest import REDIS_SERVER, NatsServer, assert_contiguous, events_of, free_port, read_log, stop_process, wait_port
from test_e2e_edge import SECRET, WEIR_BIN, _tail, open_ws

LEASE = 2.0
REAP = 0.25
CLAIM = 3.0
# Lapse noticed within lease + reap interval; the rest is the reaper's writes and slack for a
# busy 2-core machine.
ENDS_WITHIN = LEASE + REAP + 3.0

APP = '''
import asyncio, sys, weir

async def tokens(run):
    for i in range(int(run.input.get("tokens", 100))):
        await run.emit("token", {"text": str(i), "node": run.node_id})
        await asyncio.sleep(float(run.input.get("every", 0.1)))

handlers = {"py-slow": tokens, "py-share": tokens}

async def publish(edge, n):
    session = await weir.create_session(edge)
    print(session["id"], session["token"], flush=True)
    try:
        async with weir.Publisher(session, nats_url=sys.argv[2], lease_ttl=%(lease)s) as pub:
            for i in range(n):
                await pub.emit("token", {"text": str(i)})
                await asyncio.sleep(0.1)
    except weir.FencedError as e:
        print("fenced:", e, file=sys.stderr, flush=True)
        sys.exit(3)

if __name__ == "__main__":
    asyncio.run(publish(sys.argv[1], int(sys.argv[3])))
''' % {"lease": LEASE}


class Stack:
    def __init__(self, tmp: Path, nats_url: str, edges: List[str]) -> None:
        self.tmp = tmp
        self.nats_url = nats_url
        self.edges = edges
        self.procs: List[subprocess.Popen] = []
        (tmp / "worker_app.py").write_text(APP)

    def python(self, *args: str, name: str) -> subprocess.Popen:
        src = str(Path(weir.__file__).parents[1])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, str(self.tmp)]))
        log = open(self.tmp / f"{name}.log", "wb")
        proc = subprocess.Popen([sys.executable, *args], env=env, cwd=self.tmp, stdout=subprocess.PIPE, stderr=log)
        self.procs.append(proc)
        return proc

    def worker(self, node: str, concurrency: int = 10) -> subprocess.Popen:
        return self.python(
            "-m", "weir.worker", "worker_app:handlers", "--nats-url", self.nats_url, "--node-id", node,
            "--lease-ttl", str(LEASE), "--concurrency", str(concurrency), name=node,
        )

    def publisher(self, edge: str, tokens: int, name: str) -> subprocess.Popen:
        return self.python("worker_app.py", edge, self.nats_url, str(tokens), name=name)


def _weir(tmp: Path, args: List[str], name: str, env: Dict[str, str]) -> subprocess.Popen:
    log = open(tmp / f"{name}.log", "wb")
    return subprocess.Popen([WEIR_BIN, *args], stdout=log, stderr=subprocess.STDOUT, env=env)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not (os.path.isfile(WEIR_BIN) and os.access(WEIR_BIN, os.X_OK)):
        if os.environ.get("WEIR_E2E_REQUIRED") == "1":
            pytest.fail(f"weir binary not found at {WEIR_BIN}")
        pytest.skip(f"weir binary not found at {WEIR_BIN}")
    tmp = tmp_path_factory.mktemp("e2e-workers")
    nats_srv = NatsServer(tmp / "js", tmp / "nats.log").start()
    procs: List[subprocess.Popen] = []
    stack: Optional[Stack] = None
    try:
        redis_port = free_port()
        redis = subprocess.Popen(
            [REDIS_SERVER, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        procs.append(redis)
        wait_port(redis_port, proc=redis)
        env = dict(os.environ, RUST_LOG="info", NO_COLOR="1", WEIR_SECRET=SECRET)
        common = ["--nats-url", nats_srv.url, "--redis-url", f"redis://127.0.0.1:{redis_port}",
                  "--lease-ttl", f"{LEASE}s", "--reap-interval", f"{int(REAP * 1000)}ms"]
        edges = []
        for name in ("edge-a", "edge-b"):
            port = free_port()
            procs.append(_weir(tmp, ["edge", "--listen", f"127.0.0.1:{port}", "--node-id", name,
                                     "--claim-timeout", f"{int(CLAIM)}s", *common], name, env))
            edges.append(f"http://127.0.0.1:{port}")
        procs.append(_weir(tmp, ["producer", "--node-id", "rust-1", "--metrics-listen", f"127.0.0.1:{free_port()}",
                                 *common], "rust-1", env))
        for base in edges:
            _wait_ready(base, procs, tmp)
        stack = Stack(tmp, nats_srv.url, edges)
        yield stack
    finally:
        for p in (stack.procs if stack else []) + procs[::-1]:
            stop_process(p)
        nats_srv.stop()


def _wait_ready(base: str, procs: List[subprocess.Popen], tmp: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                pytest.fail(f"{p.args[:2]} exited with {p.returncode}\n{_tail(tmp / 'edge-a.log')}")
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"{base} not ready")


async def create(edge: str, agent: str, input: Dict[str, Any]) -> Dict[str, Any]:
    """POST /v1/sessions, retried while the edge does not know the agent yet (its worker is
    still announcing itself)."""
    deadline = time.monotonic() + 15
    async with httpx.AsyncClient(timeout=10) as http:
        while True:
            r = await http.post(edge + "/v1/sessions", json={"agent": agent, "input": input})
            if r.status_code == 201:
                return r.json()
            assert r.status_code == 400 and agent in r.text, r.text
            if time.monotonic() > deadline:
                raise AssertionError(f"agent {agent} never accepted: {r.text}")
            await asyncio.sleep(0.2)


async def state(edge: str, sid: str, token: str) -> Dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.get(f"{edge}/v1/sessions/{sid}", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        return r.json()


async def log_of(nats_url: str, sid: str) -> List[Dict[str, Any]]:
    nc = await nats.connect(nats_url)
    try:
        return events_of(await read_log(nc, sid))
    finally:
        await nc.close()


async def until(pred, what: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        got = await pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def ended(nats_url: str, sid: str, timeout: float = 30.0) -> List[Dict[str, Any]]:
    async def end():
        evs = await log_of(nats_url, sid)
        return evs if evs and evs[-1]["kind"] == "end" else None

    return await until(end, f"the end of {sid}", timeout)


def assert_failed_once(evs: List[Dict[str, Any]], code: str) -> None:
    assert_contiguous(evs)
    assert [e["kind"] for e in evs].count("end") == 1
    assert [e["kind"] for e in evs[-2:]] == ["error", "end"], evs[-3:]
    assert evs[-2]["data"]["code"] == code and evs[-1]["data"]["reason"] == "failed"


async def test_a_killed_worker_and_a_killed_publisher_end_failed_once_within_the_lease(stack: Stack):
    a, b = stack.edges
    worker = stack.worker("py-kill")
    run = await create(a, "py-slow", {"tokens": 1000, "every": 0.05})
    publisher = stack.publisher(a, 1000, "app-publisher")
    line = await asyncio.to_thread(publisher.stdout.readline)
    app = dict(zip(("id", "token"), line.decode().split()))
    # Clients on the other edge.
    readers = [await open_ws(f"{b.replace('http', 'ws')}/v1/sessions/{s['id']}/ws?token={s['token']}") for s in (run, app)]
    for s in (run, app):
        await until(lambda s=s: _has(stack, s["id"], 5), f"events of {s['id']}")
    st = await state(b, run["id"], run["token"])
    assert (st["status"], st["producer"]) == ("streaming", "py-kill"), st
    assert run["id"] in await listed(b, "streaming"), "the operator listing does not show the run streaming"
    assert (await state(b, app["id"], app["token"]))["status"] == "streaming"

    worker.send_signal(signal.SIGKILL)
    publisher.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    for s in (run, app):
        evs = await ended(stack.nats_url, s["id"])
        assert_failed_once(evs, "producer_lost")
    assert time.monotonic() - killed < ENDS_WITHIN
    for s, ws in zip((run, app), readers):
        frames, code = await ws.finish()
        assert code == 1000
        assert ws.events == await log_of(stack.nats_url, s["id"]), "the client missed or repeated an event"
        st = await until(lambda s=s: _status(b, s, "failed"), "state failed")
        assert st["end_reason"] == "failed" and st["producer"] is None
    assert run["id"] in await listed(a, "failed")


async def listed(edge: str, status: str) -> List[str]:
    """The ids `GET /v1/sessions?status=` lists (the operator listing, from the store's index)."""
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.get(f"{edge}/v1/sessions", params={"status": status, "limit": 1000})
        assert r.status_code == 200, r.text
        return [s["id"] for s in r.json()["sessions"]]


async def _has(stack: Stack, sid: str, n: int) -> bool:
    return len(await log_of(stack.nats_url, sid)) >= n


async def _status(edge: str, s: Dict[str, Any], status: str):
    st = await state(edge, s["id"], s["token"])
    return st if st["status"] == status else None


async def test_two_workers_share_an_agent_and_the_survivor_takes_what_comes_after_a_kill(stack: Stack):
    a, b = stack.edges
    w1, w2 = stack.worker("py-share-1", concurrency=6), stack.worker("py-share-2", concurrency=6)
    await until(lambda: _announced(a, {"py-share-1", "py-share-2"}), "both workers announced")
    runs = [await create(a if i % 2 else b, "py-share", {"tokens": 300, "every": 0.03}) for i in range(10)]
    mocks = [await create(a, "mock", {"tokens": 200, "rate": 50}) for _ in range(3)]

    async def owners():
        got = [await state(a, s["id"], s["token"]) for s in runs]
        return got if all(g["producer"] for g in got) else None

    owner = {g["id"]: g["producer"] for g in await until(owners, "every run claimed")}
    assert set(owner.values()) == {"py-share-1", "py-share-2"}, owner
    w1.send_signal(signal.SIGKILL)
    for s in runs:
        evs = await ended(stack.nats_url, s["id"])
        if owner[s["id"]] == "py-share-1":
            assert_failed_once(evs, "producer_lost")
        else:
            assert [e["data"]["text"] for e in evs[:-1]] == [str(i) for i in range(300)]
            assert evs[-1]["data"]["reason"] == "completed"
    after = [await create(b, "py-share", {"tokens": 5, "every": 0.01}) for _ in range(5)]
    for s in after:
        evs = await ended(stack.nats_url, s["id"])
        assert evs[-1]["data"]["reason"] == "completed"
        assert {e["data"]["node"] for e in evs if e["kind"] == "token"} == {"py-share-2"}
    for s in mocks:
        evs = await ended(stack.nats_url, s["id"])
        assert len(evs) == 201 and evs[-1]["data"]["reason"] == "completed"
    w2.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(w2.wait, 20) == 0


async def _announced(edge: str, ids: set) -> bool:
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.get(edge + "/v1/nodes")
        got = {n["id"]: n for n in r.json()["nodes"]}
    return ids <= set(got) and all(got[i].get("agents") == ["py-share", "py-slow"] for i in ids)


async def test_an_unclaimed_external_session_ends_failed_after_the_claim_timeout(stack: Stack):
    a, b = stack.edges
    s = await weir.create_session(a)
    created = time.monotonic()
    evs = await ended(stack.nats_url, s["id"])
    assert_failed_once(evs, "unclaimed")
    assert CLAIM <= time.monotonic() - created + 0.5 < CLAIM + ENDS_WITHIN
    await until(lambda: _status(b, s, "failed"), "state failed")


async def test_a_stopped_publisher_whose_lease_was_taken_over_publishes_nothing_after_the_end(stack: Stack):
    a, _ = stack.edges
    publisher = stack.publisher(a, 1000, "stopped-publisher")
    line = await asyncio.to_thread(publisher.stdout.readline)
    sid = line.decode().split()[0]
    await until(lambda: _has(stack, sid, 5), "a few events")
    publisher.send_signal(signal.SIGSTOP)  # alive, but neither renewing nor publishing
    evs = await ended(stack.nats_url, sid)
    assert_failed_once(evs, "producer_lost")
    publisher.send_signal(signal.SIGCONT)
    assert await asyncio.to_thread(publisher.wait, 20) == 3, "the publisher did not stop on its refused fence"
    assert await log_of(stack.nats_url, sid) == evs, "published after the failed end"
