"""What SessionLog makes of a refused fence, against a scripted JetStream (no server: the case
that needs one, a copy of the message still in flight in a new leader's log, comes only from a
partition)."""

from __future__ import annotations

import nats.js.api
import nats.js.errors
import pytest

import weir
from weir._log import ERR_WRONG_LAST_SEQUENCE, SessionLog

SID = "s1"
MINE = b'{"seq":5}'


def refused() -> nats.js.errors.APIError:
    return nats.js.errors.APIError(code=400, err_code=ERR_WRONG_LAST_SEQUENCE, description="wrong last sequence")


def stored(seq: int, msg_id: str, data: bytes) -> nats.js.api.RawStreamMsg:
    return nats.js.api.RawStreamMsg(subject="weir.ev." + SID, seq=seq, data=data, headers={"Nats-Msg-Id": msg_id})


class ScriptedJetStream:
    """Answers publishes from ``answers`` in turn; the session's last message is ``last``."""

    def __init__(self, answers, last):
        self.answers = list(answers)
        self.last = last
        self.published = 0

    async def publish(self, subject, payload, timeout=None, stream=None, headers=None):
        self.published += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def get_last_msg(self, stream, subject):
        return self.last


def session_log(js) -> SessionLog:
    return SessionLog(
        js, SID, "WEIR_EVENTS", ack_timeout=1.0, retry_deadline=5.0, backoff_initial=0.001, backoff_max=0.01
    )


async def test_a_refusal_while_the_log_is_still_at_the_fence_is_tried_again():
    js = ScriptedJetStream(
        [refused(), nats.js.api.PubAck(stream="WEIR_EVENTS", seq=10)],
        last=stored(9, f"{SID}:4", b'{"seq":4}'),
    )
    assert await session_log(js).store(5, 5, MINE, fence=9) == 10
    assert js.published == 2


async def test_a_refusal_whose_last_message_is_this_one_is_a_duplicate():
    js = ScriptedJetStream([refused()], last=stored(10, f"{SID}:5", MINE))
    assert await session_log(js).store(5, 5, MINE, fence=9) == 10
    assert js.published == 1


async def test_another_writers_message_past_the_fence_raises_fenced():
    js = ScriptedJetStream([refused()], last=stored(10, f"{SID}:5", b'{"seq":5,"theirs":true}'))
    with pytest.raises(weir.FencedError):
        await session_log(js).store(5, 5, MINE, fence=9)
