"""weir.Publisher against a real nats-server (the WEIR_EVENTS stream made here as an edge would)."""

from __future__ import annotations

import asyncio
import json

import nats
import nats.errors
import pytest

import weir
from conftest import assert_contiguous, create_events_stream, events_of, new_session_id, read_log


@pytest.fixture
async def nc(nats_server):
    conn = await nats.connect(nats_server.url)
    await create_events_stream(conn)
    try:
        yield conn
    finally:
        await conn.close()


def _gate_publish(pub: weir.Publisher):
    """Hold the publisher's JetStream publishes until the returned event is set; record calls."""
    gate = asyncio.Event()
    calls = []
    real = pub._js.publish

    async def held(subject, payload=b"", timeout=None, stream=None, headers=None, **kw):
        calls.append(dict(headers or {}))
        await gate.wait()
        return await real(subject, payload, timeout=timeout, stream=stream, headers=headers, **kw)

    pub._js.publish = held
    return gate, calls


async def test_contiguous_seqs_headers_and_end(nats_server, nc):
    sid = new_session_id()
    async with weir.Publisher({"id": sid, "token": "x"}, nats_url=nats_server.url) as pub:
        assert pub.last_seq == 0
        for i in range(5):
            assert await pub.emit("token", {"text": f"t{i}"}, source="assistant") == i + 1
        await pub.flush()
        assert pub.acked_seq == 5
        assert await pub.end("completed", stop_reason="done") == 6
        with pytest.raises(weir.SessionEndedError):
            await pub.emit("token", {"text": "late"})
        with pytest.raises(weir.SessionEndedError):
            await pub.end()
    log = await read_log(nc, sid)
    evs = events_of(log)
    assert_contiguous(evs)
    assert [e["kind"] for e in evs] == ["token"] * 5 + ["end"]
    assert evs[0]["source"] == "assistant" and evs[0]["data"] == {"text": "t0"}
    assert isinstance(evs[0]["ts"], float) and evs[0]["ts"] > 1.7e12
    assert evs[-1]["data"] == {"reason": "completed", "stop_reason": "done"}
    assert "source" not in evs[-1]
    prev_stream_seq = 0
    for m in log:
        body = m["body"]
        first, last = (body[0]["seq"], body[-1]["seq"]) if isinstance(body, list) else (body["seq"], body["seq"])
        want_id = f"{sid}:{first}" if first == last else f"{sid}:{first}-{last}"
        assert m["headers"]["Nats-Msg-Id"] == want_id
        assert m["headers"]["Weir-Seq"] == str(last)
        assert m["headers"]["Nats-Expected-Last-Subject-Sequence"] == str(prev_stream_seq)
        prev_stream_seq = m["stream_seq"]


async def test_continues_after_last_seq_in_log(nats_server, nc):
    sid = new_session_id()
    async with weir.Publisher(sid, nats_url=nats_server.url, auto_end=False) as a:
        for i in range(3):
            await a.emit("token", {"text": str(i)})
    # A second producer (e.g. after a restart) picks up at seq 4 and its fence is the log's end.
    async with weir.Publisher(sid, nats_url=nats_server.url) as b:
        assert b.last_seq == 3 and b.acked_seq == 3
        assert await b.emit("token", {"text": "3"}) == 4
    evs = events_of(await read_log(nc, sid))
    assert_contiguous(evs)
    assert [e["kind"] for e in evs] == ["token"] * 4 + ["end"]
    # An ended session takes no more events.
    with pytest.raises(weir.SessionEndedError):
        await weir.Publisher(sid, nats_url=nats_server.url).start()


async def test_fence_stops_second_producer(nats_server, nc):
    sid = new_session_id()
    a = await weir.Publisher(sid, nats_url=nats_server.url).start()
    b = await weir.Publisher(sid, nats_url=nats_server.url).start()
    try:
        await a.emit("token", {"text": "a1"})
        await a.flush()
        # b believes the log is empty; its first publish must be refused (same msg id, other content).
        await b.emit("token", {"text": "b1"})
        with pytest.raises(weir.FencedError):
            await b.flush()
        with pytest.raises(weir.FencedError):
            await b.emit("token", {"text": "b2"})
        assert isinstance(b.failure, weir.FencedError)
        # b's wait_if_paused tells the run to stop.
        assert await b.wait_if_paused() is False
        # a goes on; then a third producer that starts now and publishes blocks a.
        await a.emit("token", {"text": "a2"})
        await a.flush()
        c = await weir.Publisher(sid, nats_url=nats_server.url).start()
        assert c.last_seq == 2
        await c.emit("token", {"text": "c3"})
        await c.flush()
        await a.emit("token", {"text": "a3"})  # seq 3 again, fence = a's old last: refused
        with pytest.raises(weir.FencedError):
            await a.flush()
        await c.end()
        await c.close()
    finally:
        await a.close()
        await b.close()
    evs = events_of(await read_log(nc, sid))
    assert_contiguous(evs)
    assert [e["data"].get("text") for e in evs[:3]] == ["a1", "a2", "c3"]
    assert evs[-1]["kind"] == "end" and len(evs) == 4


async def test_fence_with_other_msg_ids(nats_server, nc):
    """A foreign message on the subject (whatever its id) makes the next publish fail."""
    sid = new_session_id()
    async with weir.Publisher(sid, nats_url=nats_server.url, auto_end=False) as pub:
        await pub.emit("token", {"text": "1"})
        await pub.flush()
        await nc.jetstream().publish(
            f"weir.ev.{sid}", json.dumps({"seq": 2, "kind": "token", "ts": 1.0, "data": {}}).encode(),
            headers={"Nats-Msg-Id": f"intruder:{sid}"},
        )
        await pub.emit("token", {"text": "2"})
        with pytest.raises(weir.FencedError):
            await pub.flush()


async def test_retry_after_lost_ack_is_stored_once(nats_server, nc):
    sid = new_session_id()
    pub = await weir.Publisher(sid, nats_url=nats_server.url, backoff_initial=0.01).start()
    real = pub._js.publish
    sent = []

    async def lossy(subject, payload=b"", timeout=None, stream=None, headers=None, **kw):
        first_try = all(h["Nats-Msg-Id"] != headers["Nats-Msg-Id"] for _, h in sent)
        sent.append((payload, dict(headers)))
        ack = await real(subject, payload, timeout=timeout, stream=stream, headers=headers, **kw)
        if first_try:  # stored, but the ack is "lost"
            raise nats.errors.TimeoutError
        return ack

    pub._js.publish = lossy
    try:
        await pub.emit("token", {"text": "a"})
        await pub.flush()
        await pub.emit("token", {"text": "b"})
        await pub.end()
    finally:
        await pub.close()
    # Every try of a message resent the same bytes with the same msg id and
    # the same fence. (The server answers the retry with a duplicate ack, or,
    # as 2.15 does, refuses its stale fence: then the publisher finds its own
    # message stored. Either way it is stored once.)
    tries = {}
    for payload, headers in sent:
        tries.setdefault(headers["Nats-Msg-Id"], []).append((payload, headers))
    assert list(tries) == [f"{sid}:1", f"{sid}:2-3"]  # b and end were both waiting: one batch
    for attempts in tries.values():
        assert len(attempts) >= 2, "a lost ack was not retried"
        assert all(a == attempts[0] for a in attempts)
    log = await read_log(nc, sid)
    evs = events_of(log)
    assert_contiguous(evs)
    assert [e["kind"] for e in evs] == ["token", "token", "end"]
    assert len(log) == 2


async def test_retry_past_dedup_window_recognises_own_message(nats_server, nc):
    """Lost ack + retry after the duplicate window: the fence refuses, the log shows it is ours."""
    await nc.jetstream().delete_stream("WEIR_EVENTS")
    await create_events_stream(nc, duplicate_window=0.2)
    sid = new_session_id()
    pub = await weir.Publisher(sid, nats_url=nats_server.url, backoff_initial=0.01).start()
    real = pub._js.publish
    n = 0

    async def lossy(subject, payload=b"", timeout=None, stream=None, headers=None, **kw):
        nonlocal n
        n += 1
        ack = await real(subject, payload, timeout=timeout, stream=stream, headers=headers, **kw)
        if n == 1:
            await asyncio.sleep(0.6)
            raise nats.errors.TimeoutError
        return ack

    pub._js.publish = lossy
    try:
        await pub.emit("token", {"text": "a"})
        await pub.emit("token", {"text": "b"})
        await pub.end()
    finally:
        await pub.close()
    evs = events_of(await read_log(nc, sid))
    assert_contiguous(evs)
    assert [e["kind"] for e in evs] == ["token", "token", "end"]


async def test_timeouts_without_store_are_retried(nats_server, nc):
    sid = new_session_id()
    pub = await weir.Publisher(sid, nats_url=nats_server.url, backoff_initial=0.01).start()
    real = pub._js.publish
    n = 0

    async def flaky(subject, payload=b"", timeout=None, stream=None, headers=None, **kw):
        nonlocal n
        n += 1
        if n <= 3:
            raise nats.errors.TimeoutError
        return await real(subject, payload, timeout=timeout, stream=stream, headers=headers, **kw)

    pub._js.publish = flaky
    try:
        await pub.emit("token", {"text": "a"})
        await pub.end()
    finally:
        await pub.close()
    evs = events_of(await read_log(nc, sid))
    assert [e["kind"] for e in evs] == ["token", "end"]


async def test_retry_deadline_gives_publish_error(nats_server, nc):
    sid = new_session_id()
    pub = await weir.Publisher(sid, nats_url=nats_server.url, backoff_initial=0.01, retry_deadline=0.2).start()

    async def dead(*a, **kw):
        raise nats.errors.TimeoutError

    pub._js.publish = dead
    try:
        await pub.emit("token", {"text": "a"})
        with pytest.raises(weir.PublishError):
            await pub.flush()
        with pytest.raises(weir.PublishError):
            await pub.emit("token", {"text": "b"})
    finally:
        await pub.close()


async def test_batches_only_what_is_waiting(nats_server, nc):
    sid = new_session_id()
    pub = await weir.Publisher(sid, nats_url=nats_server.url, max_batch=4).start()
    try:
        # Nothing waits: each event goes out on its own, at once.
        await pub.emit("token", {"text": "0"})
        await asyncio.wait_for(pub.flush(), 5)
        gate, calls = _gate_publish(pub)
        await pub.emit("token", {"text": "1"})  # picked up by the sender alone, then held
        await asyncio.sleep(0.05)
        for i in range(2, 11):
            await pub.emit("token", {"text": str(i)})
        gate.set()
        await pub.flush()
        await pub.end()
    finally:
        await pub.close()
    log = await read_log(nc, sid)
    ids = [m["headers"]["Nats-Msg-Id"] for m in log]
    assert ids == [f"{sid}:1", f"{sid}:2", f"{sid}:3-6", f"{sid}:7-10", f"{sid}:11", f"{sid}:12"]
    assert [m["headers"]["Weir-Seq"] for m in log] == ["1", "2", "6", "10", "11", "12"]
    assert isinstance(log[2]["body"], list) and len(log[2]["body"]) == 4
    assert isinstance(log[1]["body"], dict)
    evs = events_of(log)
    assert_contiguous(evs)
    assert [e["data"].get("text") for e in evs[:11]] == [str(i) for i in range(11)]


async def test_batch_respects_byte_limit(nats_server, nc):
    sid = new_session_id()
    pub = await weir.Publisher(sid, nats_url=nats_server.url, max_batch_bytes=1000).start()
    try:
        gate, _ = _gate_publish(pub)
        for i in range(10):
            await pub.emit("token", {"text": "x" * 300})
        gate.set()
        await pub.end()
    finally:
        await pub.close()
    log = await read_log(nc, sid)
    for m in log:
        assert len(json.dumps(m["body"], separators=(",", ":"))) <= 1000
    assert_contiguous(events_of(log))


async def test_in_flight_window_blocks_emit(nats_server, nc):
    sid = new_session_id()
    pub = await weir.Publisher(sid, nats_url=nats_server.url, max_in_flight=3).start()
    try:
        gate, _ = _gate_publish(pub)
        for i in range(3):
            await asyncio.wait_for(pub.emit("token", {"text": str(i)}), 1)
        blocked = asyncio.create_task(pub.emit("token", {"text": "3"}))
        await asyncio.sleep(0.2)
        assert not blocked.done()
        assert pub.last_seq == 3  # no seq is handed out while waiting
        gate.set()
        assert await asyncio.wait_for(blocked, 5) == 4
        await pub.end()
    finally:
        await pub.close()
    assert_contiguous(events_of(await read_log(nc, sid)))


async def test_bad_events_take_no_seq(nats_server, nc):
    sid = new_session_id()
    async with weir.Publisher(sid, nats_url=nats_server.url) as pub:
        with pytest.raises(TypeError):
            await pub.emit("token", {"text": object()})
        with pytest.raises(TypeError):
            await pub.emit("token", {"x": float("nan")})
        with pytest.raises(weir.EventTooLargeError):
            await pub.emit("message", {"content": "x" * (2 * 1024 * 1024)})
        with pytest.raises(ValueError):
            await pub.emit("end", {"reason": "completed"})
        with pytest.raises(ValueError):
            await pub.end("finished")
        assert await pub.emit("token", {"text": "ok"}) == 1
    evs = events_of(await read_log(nc, sid))
    assert [(e["seq"], e["kind"]) for e in evs] == [(1, "token"), (2, "end")]


async def test_control_pause_resume_cancel(nats_server, nc):
    sid = new_session_id()
    seen = []

    async def on_resume():
        seen.append("resume-async")

    async with weir.Publisher(
        sid, nats_url=nats_server.url, on_pause=lambda: seen.append("pause"), on_resume=on_resume
    ) as pub:
        pub.on("cancel", lambda: seen.append("cancel"))
        await pub.emit("token", {"text": "a"})
        assert await pub.wait_if_paused() is True
        await nc.publish(f"weir.ctl.{sid}", b'{"op":"pause"}')
        await nc.flush()
        for _ in range(1000):
            if pub.paused:
                break
            await asyncio.sleep(0.01)
        assert pub.paused
        waiter = asyncio.create_task(pub.wait_if_paused())
        await asyncio.sleep(0.1)
        assert not waiter.done()
        # request/reply works too (the answer is informative only)
        reply = await nc.request(f"weir.ctl.{sid}", b'{"op":"resume"}', timeout=10)
        assert json.loads(reply.data)["op"] == "resume"
        assert await asyncio.wait_for(waiter, 10) is True
        assert not pub.paused
        await nc.publish(f"weir.ctl.{sid}", b"not json")
        await nc.publish(f"weir.ctl.{sid}", b'{"op":"explode"}')
        await nc.publish(f"weir.ctl.{sid}", b'{"op":"cancel"}')
        await asyncio.wait_for(pub.wait_cancelled(), 10)
        assert pub.cancelled
        assert await pub.wait_if_paused() is False
        await asyncio.sleep(0.05)
        await pub.end("cancelled")
    assert seen == ["pause", "resume-async", "cancel"]
    evs = events_of(await read_log(nc, sid))
    assert_contiguous(evs)
    assert [(e["kind"], e["data"]) for e in evs] == [
        ("token", {"text": "a"}),
        ("status", {"state": "paused"}),
        ("status", {"state": "resumed"}),
        ("end", {"reason": "cancelled"}),
    ]


async def test_auto_end_on_exception(nats_server, nc):
    sid = new_session_id()
    with pytest.raises(RuntimeError):
        async with weir.Publisher(sid, nats_url=nats_server.url) as pub:
            await pub.emit("token", {"text": "a"})
            raise RuntimeError("boom")
    evs = events_of(await read_log(nc, sid))
    assert [e["kind"] for e in evs] == ["token", "error", "end"]
    assert evs[1]["data"]["code"] == "producer_error" and "boom" in evs[1]["data"]["message"]
    assert evs[2]["data"] == {"reason": "failed"}


async def test_survives_nats_restart(nats_server, nc):
    sid = new_session_id()
    pub = await weir.Publisher(sid, nats_url=nats_server.url, ack_timeout=0.5, backoff_initial=0.05).start()
    try:
        for i in range(5):
            await pub.emit("token", {"text": str(i)})
        await pub.flush()
        nats_server.stop()
        for i in range(5, 15):
            await pub.emit("token", {"text": str(i)})
        await asyncio.sleep(0.5)
        nats_server.start()  # same port, same store dir
        await asyncio.wait_for(pub.end(), 30)
    finally:
        await pub.close()
    for _ in range(100):
        if nc.is_connected:
            break
        await asyncio.sleep(0.1)
    evs = events_of(await read_log(nc, sid))
    assert_contiguous(evs)
    assert len(evs) == 16 and evs[-1]["kind"] == "end"
    assert [e["data"].get("text") for e in evs[:15]] == [str(i) for i in range(15)]


async def test_session_ids_are_checked():
    with pytest.raises(ValueError):
        weir.Publisher("bad.id")
    with pytest.raises(ValueError):
        weir.Publisher({"token": "no id"})
    with pytest.raises(ValueError):
        weir.Publisher("x" * 65)
    assert weir.Publisher({"id": "ok_ID-1"}).session_id == "ok_ID-1"


async def test_emit_holds_while_paused(nats_server, nc):
    sid = new_session_id()
    async with weir.Publisher(sid, nats_url=nats_server.url) as pub:
        await pub.emit("token", {"text": "before"})
        pub.apply_control("pause")
        held = asyncio.create_task(pub.emit("token", {"text": "held"}))
        await asyncio.sleep(0.2)
        assert not held.done()
        await pub.flush()
        # While paused, the log ends with the status: readers can tell the session is paused.
        log = await read_log(nc, sid)
        assert events_of(log)[-1]["kind"] == "status" and events_of(log)[-1]["data"] == {"state": "paused"}
        pub.apply_control("resume")
        assert await asyncio.wait_for(held, 5) == 4
        # end is never held, cancel releases held emits
        pub.apply_control("pause")
        held2 = asyncio.create_task(pub.emit("token", {"text": "held2"}))
        await asyncio.sleep(0.1)
        assert not held2.done()
        pub.apply_control("cancel")
        assert await asyncio.wait_for(held2, 5) == 6
        await pub.end("cancelled")
    evs = events_of(await read_log(nc, sid))
    assert_contiguous(evs)
    assert [(e["kind"], e["data"].get("text") or e["data"].get("state") or e["data"].get("reason")) for e in evs] == [
        ("token", "before"), ("status", "paused"), ("status", "resumed"), ("token", "held"),
        ("status", "paused"), ("token", "held2"), ("end", "cancelled"),
    ]


async def test_end_is_not_held_by_pause(nats_server, nc):
    sid = new_session_id()
    async with weir.Publisher(sid, nats_url=nats_server.url) as pub:
        pub.apply_control("pause")
        await asyncio.wait_for(pub.end("completed"), 5)
        assert pub.apply_control("resume") is False  # nothing after end
    evs = events_of(await read_log(nc, sid))
    assert [e["kind"] for e in evs] == ["status", "end"]
