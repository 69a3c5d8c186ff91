"""End to end: nats-server + redis-server + a real weir edge (the Rust binary) + a real AutoGen run
published through weir.autogen, read by a WebSocket client as a browser would.

The edge binary is ``target/debug/weir`` at the repository root, or ``$WEIR_BIN``. Without it these
tests are skipped, unless ``WEIR_E2E_REQUIRED=1`` (CI), where a missing binary is a failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import httpx
import nats
import pytest
import websockets
from websockets.asyncio.client import connect as ws_connect

import weir
from agents import FINAL_ANSWER, long_answer, weather_agent
from conftest import REDIS_SERVER, NatsServer, assert_contiguous, events_of, free_port, read_log, stop_process, wait_port
from weir.autogen import stream_to_weir

REPO_ROOT = Path(__file__).resolve().parents[3]
WEIR_BIN = os.environ.get("WEIR_BIN") or str(REPO_ROOT / "target" / "debug" / "weir")
SECRET = "python-test-secret-0123456789abcdef"


def _tail(path: Path, n: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


class Cluster:
    def __init__(self, base: str, nats_url: str, edge_log: Path, edge_cmd: List[str]) -> None:
        self.base = base
        self.nats_url = nats_url
        self.edge_log = edge_log
        self.edge_cmd = edge_cmd

    def logs(self) -> str:
        return f"edge command: {' '.join(self.edge_cmd)}\n--- edge log ({self.edge_log}) ---\n{_tail(self.edge_log)}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if not (os.path.isfile(WEIR_BIN) and os.access(WEIR_BIN, os.X_OK)):
        msg = f"weir binary not found at {WEIR_BIN} (build it, or set WEIR_BIN)"
        if os.environ.get("WEIR_E2E_REQUIRED") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    if not os.path.exists(REDIS_SERVER):
        msg = f"redis-server not found ({REDIS_SERVER})"
        if os.environ.get("WEIR_E2E_REQUIRED") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    tmp = tmp_path_factory.mktemp("e2e")
    nats_srv = NatsServer(tmp / "js", tmp / "nats.log")
    redis_proc: Optional[subprocess.Popen] = None
    edge_proc: Optional[subprocess.Popen] = None
    logs = []
    try:
        nats_srv.start()
        redis_port = free_port()
        redis_log = open(tmp / "redis.log", "wb")
        logs.append(redis_log)
        redis_proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=redis_log, stderr=subprocess.STDOUT,
        )
        wait_port(redis_port, proc=redis_proc)
        edge_port = free_port()
        edge_cmd = [
            WEIR_BIN, "edge",
            "--listen", f"127.0.0.1:{edge_port}",
            "--nats-url", nats_srv.url,
            "--redis-url", f"redis://127.0.0.1:{redis_port}",
            "--node-id", "edge-a",
            "--secret", SECRET,
        ]
        edge_log_path = tmp / "edge.log"
        edge_log = open(edge_log_path, "wb")
        logs.append(edge_log)
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info"), NO_COLOR="1")
        edge_proc = subprocess.Popen(edge_cmd, stdout=edge_log, stderr=subprocess.STDOUT, env=env)
        base = f"http://127.0.0.1:{edge_port}"
        deadline = time.monotonic() + 60
        while True:
            if edge_proc.poll() is not None:
                pytest.fail(f"edge exited with {edge_proc.returncode}\n{_tail(edge_log_path)}")
            try:
                with urllib.request.urlopen(base + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"edge not ready after 60s\n{_tail(edge_log_path)}")
            time.sleep(0.1)
        yield Cluster(base, nats_srv.url, edge_log_path, edge_cmd)
    finally:
        stop_process(edge_proc, timeout=20)
        stop_process(redis_proc)
        nats_srv.stop()
        for f in logs:
            f.close()


class WsClient:
    """Reads frames from a session's WebSocket until the server closes it."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.frames: List[Dict[str, Any]] = []
        self.events: List[Dict[str, Any]] = []
        self.new_frame = asyncio.Event()
        self.close_code: Optional[int] = None
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                self.frames.append(frame)
                if frame.get("type") == "events":
                    self.events.extend(frame["events"])
                self.new_frame.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code
            self.new_frame.set()

    async def wait_until(self, pred, timeout: float = 20.0) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not pred(self):
            if self.task.done():
                raise AssertionError(f"websocket closed ({self.close_code}) before the condition; frames: {self.frames[-5:]}")
            left = end - loop.time()
            if left <= 0:
                raise TimeoutError(f"condition not met; last frames: {self.frames[-5:]}")
            self.new_frame.clear()
            try:
                await asyncio.wait_for(self.new_frame.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def send(self, obj: Dict[str, Any]) -> None:
        await self.ws.send(json.dumps(obj))

    async def finish(self, timeout: float = 20.0) -> Tuple[List[Dict[str, Any]], Optional[int]]:
        await asyncio.wait_for(self.task, timeout)
        return self.frames, self.close_code


async def open_ws(url: str) -> WsClient:
    ws = await ws_connect(url, open_timeout=10, max_size=16 * 1024 * 1024)
    client = WsClient(ws)
    await client.wait_until(lambda c: len(c.frames) >= 1, 10)
    return client


def kinds(evs: List[Dict[str, Any]]) -> List[str]:
    return [e["kind"] for e in evs]


async def get_state(cluster: Cluster, session: Dict[str, Any]) -> Dict[str, Any]:
    async with httpx.AsyncClient(base_url=cluster.base, timeout=10) as http:
        r = await http.get(f"/v1/sessions/{session['id']}", headers={"Authorization": f"Bearer {session['token']}"})
        assert r.status_code == 200, f"GET /v1/sessions/{session['id']} -> {r.status_code} {r.text}"
        return r.json()


async def wait_state(cluster: Cluster, session: Dict[str, Any], pred, timeout: float = 10.0) -> Dict[str, Any]:
    """Session state as the edge reports it, once `pred` holds (the edge may update it asynchronously)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        st = await get_state(cluster, session)
        if pred(st) or loop.time() > end:
            return st
        await asyncio.sleep(0.1)


async def test_autogen_run_streams_to_websocket(cluster: Cluster):
    session = await weir.create_session(cluster.base)
    assert {"id", "token", "ws_url", "events_url"} <= set(session), session
    ws = await open_ws(session["ws_url"])
    hello = ws.frames[0]
    assert hello["type"] == "hello", hello
    assert hello["session"] == session["id"] and hello["node"] == "edge-a" and hello["after"] == 0, hello

    async with weir.Publisher(session, nats_url=cluster.nats_url) as pub:
        outcome = await stream_to_weir(pub, weather_agent(), task="What is the weather in Paris?")
    assert outcome.reason == "completed"

    frames, code = await ws.finish()
    assert code == 1000, f"close code {code}\n{cluster.logs()}"
    assert all(f["type"] in ("hello", "events", "heartbeat") for f in frames), frames
    evs = ws.events
    assert_contiguous(evs)
    n_tokens = kinds(evs).count("token")
    assert kinds(evs) == ["message", "thought", "tool_call", "usage", "tool_result"] + ["token"] * n_tokens + [
        "message", "usage", "end"], kinds(evs)
    assert "".join(e["data"]["text"] for e in evs if e["kind"] == "token") == FINAL_ANSWER
    assert evs[2]["data"]["content"][0]["name"] == "get_weather"
    assert evs[-1]["data"] == {"reason": "completed"}

    # What the browser got is exactly what is in the log.
    nc = await nats.connect(cluster.nats_url)
    try:
        assert events_of(await read_log(nc, session["id"])) == evs
    finally:
        await nc.close()

    # The edge derives the state of an external session from the log.
    st = await wait_state(cluster, session, lambda s: s.get("status") == "completed")
    assert st["status"] == "completed", f"{st}\n{cluster.logs()}"
    assert st["last_seq"] == evs[-1]["seq"], st
    assert st.get("end_reason") == "completed", st
    assert st.get("agent") == "external", st

    # History and a late WebSocket (replay from the log, resuming after a seq).
    async with httpx.AsyncClient(base_url=cluster.base, timeout=10) as http:
        r = await http.get(f"/v1/sessions/{session['id']}/history", params={"after": 0, "limit": 1000, "token": session["token"]})
        assert r.status_code == 200, r.text
        assert r.json()["events"] == evs
    late = await open_ws(session["ws_url"] + "&after=5")
    _, code = await late.finish()
    assert code == 1000
    assert late.events == evs[5:]


async def test_websocket_cancel_stops_the_autogen_run(cluster: Cluster):
    session = await weir.create_session(cluster.base)
    ws = await open_ws(session["ws_url"])
    agent = weather_agent(delay=0.05, final=long_answer(400))
    client = agent._model_client
    async with weir.Publisher(session, nats_url=cluster.nats_url) as pub:
        run = asyncio.create_task(stream_to_weir(pub, agent, task="weather?"))
        await ws.wait_until(lambda c: "token" in kinds(c.events))
        await ws.send({"type": "cancel"})
        outcome = await asyncio.wait_for(run, 10)
        streamed = client.chunks_streamed
    assert outcome.reason == "cancelled", f"{outcome}\n{cluster.logs()}"
    _, code = await ws.finish()
    assert code == 1000
    evs = ws.events
    assert_contiguous(evs)
    assert evs[-1]["kind"] == "end" and evs[-1]["data"]["reason"] == "cancelled", evs[-3:]
    assert kinds(evs).count("end") == 1
    await asyncio.sleep(0.3)
    assert client.chunks_streamed == streamed < 100  # generation stopped, well before 400 tokens
    st = await wait_state(cluster, session, lambda s: s.get("status") == "cancelled")
    assert st["status"] == "cancelled" and st["last_seq"] == evs[-1]["seq"], st


async def test_websocket_pause_resume_reaches_the_run(cluster: Cluster):
    session = await weir.create_session(cluster.base)
    ws = await open_ws(session["ws_url"])
    agent = weather_agent(delay=0.02, final=long_answer(80))
    client = agent._model_client
    async with weir.Publisher(session, nats_url=cluster.nats_url) as pub:
        run = asyncio.create_task(stream_to_weir(pub, agent, task="weather?"))
        await ws.wait_until(lambda c: "token" in kinds(c.events))
        await ws.send({"type": "pause"})
        await ws.wait_until(lambda c: "status" in kinds(c.events))
        paused_ev = next(e for e in ws.events if e["kind"] == "status")
        assert paused_ev["data"] == {"state": "paused"}
        held_at = client.chunks_streamed
        n_events = len(ws.events)
        await asyncio.sleep(0.5)
        assert client.chunks_streamed <= held_at + 1  # generation stopped, not just delivery
        assert len(ws.events) == n_events
        await ws.send({"type": "resume"})
        outcome = await asyncio.wait_for(run, 20)
    assert outcome.reason == "completed"
    _, code = await ws.finish()
    assert code == 1000
    evs = ws.events
    assert_contiguous(evs)
    statuses = [e["data"]["state"] for e in evs if e["kind"] == "status"]
    assert statuses == ["paused", "resumed"]
    assert kinds(evs).count("token") == 80 and evs[-1]["data"]["reason"] == "completed"
    st = await wait_state(cluster, session, lambda s: s.get("status") == "completed")
    assert st["status"] == "completed", st


async def test_http_cancel_and_409_after_end(cluster: Cluster):
    session = await weir.create_session(cluster.base)
    agent = weather_agent(delay=0.05, final=long_answer(400))
    auth = {"Authorization": f"Bearer {session['token']}"}
    async with weir.Publisher(session, nats_url=cluster.nats_url) as pub:
        run = asyncio.create_task(stream_to_weir(pub, agent, task="weather?"))
        for _ in range(500):
            if agent._model_client.chunks_streamed >= 2:
                break
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=cluster.base, timeout=10) as http:
            r = await http.post(f"/v1/sessions/{session['id']}/cancel", headers=auth)
            assert r.status_code == 202, r.text
            outcome = await asyncio.wait_for(run, 10)
            assert outcome.reason == "cancelled"
            await wait_state(cluster, session, lambda s: s.get("status") == "cancelled")
            r = await http.post(f"/v1/sessions/{session['id']}/cancel", headers=auth)
            assert r.status_code == 409, f"cancel after end -> {r.status_code} {r.text}"


async def test_edge_reports_paused_external_session(cluster: Cluster):
    session = await weir.create_session(cluster.base)
    async with weir.Publisher(session, nats_url=cluster.nats_url) as pub:
        await pub.emit("token", {"text": "a"})
        async with httpx.AsyncClient(base_url=cluster.base, timeout=10) as http:
            auth = {"Authorization": f"Bearer {session['token']}"}
            r = await http.post(f"/v1/sessions/{session['id']}/pause", headers=auth)
            assert r.status_code == 202, r.text
            for _ in range(500):
                if pub.paused:
                    break
                await asyncio.sleep(0.01)
            assert pub.paused
            await pub.flush()  # the log now ends with status paused
            st = await wait_state(cluster, session, lambda s: s.get("status") == "paused", timeout=3)
            try:
                assert st["status"] == "paused", st
            finally:
                await http.post(f"/v1/sessions/{session['id']}/resume", headers=auth)


async def test_cancel_before_the_outside_producer_starts_ends_the_session(cluster: Cluster):
    # The producer reads no state, so the edge ends an unstarted external
    # session itself; a producer that starts afterwards finds it ended.
    session = await weir.create_session(cluster.base)
    async with httpx.AsyncClient(base_url=cluster.base, timeout=10) as http:
        auth = {"Authorization": f"Bearer {session['token']}"}
        r = await http.post(f"/v1/sessions/{session['id']}/cancel", headers=auth)
        assert r.status_code == 202, r.text
        st = await wait_state(cluster, session, lambda s: s.get("status") == "cancelled", timeout=3)
        assert st["end_reason"] == "cancelled"
    with pytest.raises(weir.SessionEndedError):
        async with weir.Publisher(session, nats_url=cluster.nats_url) as pub:
            await pub.emit("token", {"text": "too late"})


async def test_tokens_minted_by_a_back_end_with_pyjwt_open_their_session(cluster: Cluster):
    # An application's back end signs its own session tokens with a standard JWT
    # library: HS256, `sub` and `exp` only (PyJWT adds no `iat` unless asked).
    import jwt

    session = await weir.create_session(cluster.base)
    sid = session["id"]
    exp = int(time.time()) + 300
    bare = jwt.encode({"sub": sid, "exp": exp}, SECRET, algorithm="HS256")
    rich = jwt.encode({"sub": sid, "exp": exp, "iat": int(time.time()), "aud": "chat-app", "uid": 42},
                      SECRET, algorithm="HS256")
    async with weir.Publisher(session, nats_url=cluster.nats_url) as pub:
        await pub.emit("token", {"text": "hi"})
        await pub.end("completed")
    async with httpx.AsyncClient(base_url=cluster.base, timeout=10) as http:
        for token in (bare, rich):
            r = await http.get(f"/v1/sessions/{sid}/history", params={"token": token})
            assert r.status_code == 200, r.text
            assert kinds(r.json()["events"]) == ["token", "end"]
            r = await http.get(f"/v1/sessions/{sid}", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200, r.text
        ws = await open_ws(f"{cluster.base.replace('http', 'ws', 1)}/v1/sessions/{sid}/ws?token={bare}")
        _, code = await ws.finish()
        assert code == 1000 and kinds(ws.events) == ["token", "end"]

        # Wrong secret, expired, or another session's token: 401 / 4001.
        other = await weir.create_session(cluster.base)
        refused = [
            jwt.encode({"sub": sid, "exp": exp}, "not-the-secret-0123456789abcdef-0123", algorithm="HS256"),
            jwt.encode({"sub": sid, "exp": int(time.time()) - 5}, SECRET, algorithm="HS256"),
            jwt.encode({"sub": other["id"], "exp": exp}, SECRET, algorithm="HS256"),
            jwt.encode({"sub": sid}, SECRET, algorithm="HS256"),
        ]
        for token in refused:
            r = await http.get(f"/v1/sessions/{sid}/history", params={"token": token})
            assert r.status_code == 401, (jwt.decode(token, options={"verify_signature": False}), r.text)
            assert r.json()["error"]["code"] == "unauthorized"
        ws = await ws_connect(f"{cluster.base.replace('http', 'ws', 1)}/v1/sessions/{sid}/ws?token={refused[0]}")
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await ws.recv()
        assert closed.value.rcvd.code == 4001
