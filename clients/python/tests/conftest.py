"""Shared helpers: real nats-server / redis-server processes on free loopback ports."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

# The pinned nats-server that scripts/setup.sh installs (Debian's 2.9 is too old for weir).
NATS_SERVER = os.environ.get("WEIR_NATS_SERVER") or str(Path(__file__).resolve().parents[3] / ".tools/bin/nats-server")
REDIS_SERVER = os.environ.get("REDIS_SERVER_BIN") or shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 15.0, proc: Optional[subprocess.Popen] = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def stop_process(proc: Optional[subprocess.Popen], timeout: float = 10.0) -> None:
    """Stop one process we started (by its own pid), SIGTERM then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


class NatsServer:
    """A JetStream-enabled nats-server on a free port with its own store dir; restartable."""

    def __init__(self, store_dir: Path, log_path: Path) -> None:
        self.port = free_port()
        self.store_dir = store_dir
        self.log_path = log_path
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> "NatsServer":
        if not os.path.exists(NATS_SERVER):
            if os.environ.get("WEIR_E2E_REQUIRED") == "1":
                pytest.fail(f"nats-server not found at {NATS_SERVER}: run scripts/setup.sh")
            pytest.skip(f"nats-server not found ({NATS_SERVER})")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [NATS_SERVER, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store_dir)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_port(self.port, proc=self.proc)
        return self

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    srv = NatsServer(tmp_path / "js", tmp_path / "nats.log").start()
    try:
        yield srv
    finally:
        srv.stop()


def new_session_id() -> str:
    return "t" + uuid.uuid4().hex[:20]


async def create_events_stream(nc: Any, *, duplicate_window: float = 120.0, name: str = "WEIR_EVENTS") -> None:
    """What an edge does at start-up (protocol §2): stream WEIR_EVENTS on weir.ev.*."""
    from nats.js.api import StreamConfig

    js = nc.jetstream()
    await js.add_stream(
        StreamConfig(name=name, subjects=["weir.ev.*"], max_age=3600.0, duplicate_window=duplicate_window)
    )


async def read_log(nc: Any, session: str, *, stream: str = "WEIR_EVENTS") -> List[Dict[str, Any]]:
    """Every stored message of weir.ev.<session>: {stream_seq, headers, body} in order."""
    import nats.js.errors

    js = nc.jetstream()
    subject = f"weir.ev.{session}"
    out: List[Dict[str, Any]] = []
    seq = 1
    while True:
        try:
            raw = await js.get_msg(stream, seq=seq, subject=subject, next=True)
        except nats.js.errors.NotFoundError:
            return out
        out.append({"stream_seq": raw.seq, "headers": dict(raw.headers or {}), "body": json.loads(raw.data)})
        seq = raw.seq + 1


def events_of(log: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    evs: List[Dict[str, Any]] = []
    for m in log:
        body = m["body"]
        evs.extend(body if isinstance(body, list) else [body])
    return evs


def assert_contiguous(evs: List[Dict[str, Any]], start: int = 1) -> None:
    assert [e["seq"] for e in evs] == list(range(start, start + len(evs))), [e["seq"] for e in evs]
