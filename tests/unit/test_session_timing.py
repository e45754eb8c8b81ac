"""When a multi-turn session's next message is sent: think_time_s after the last answer, with the
client's own work on it (tokenizing the history) done while the user thinks, not added to the send lag.
Driven against the hand-written stream in openai_stream.py: the timing under test is perfsuite's own."""

import asyncio
import time

from openai_stream import openai_stream

from perfsuite.loadgen import Endpoint, Load, run_load
from perfsuite.protocols import OpenAIProtocol
from perfsuite.sessions import SessionPlan, SessionScript

TOKENIZE_S = 0.06  # a slow tokenizer: what Ray Serve's proxy made of it on the client's core (CI)
THINK_S = 0.15


def _slow_count(messages: list[dict]) -> int:
    time.sleep(TOKENIZE_S)  # CPU-bound work on the event loop's thread, as tokenizing is
    return 16


def test_the_next_turn_is_built_while_the_user_thinks_and_sent_on_time():
    plan = SessionPlan([SessionScript(("a", "b", "c"), (4, 4, 4)) for _ in range(2)], _slow_count)
    load = Load.sessions_of(1, sessions=2, think_time_s=THINK_S, request_timeout_s=10)
    with openai_stream(prompt_tokens=16) as url:
        run = asyncio.run(run_load(Endpoint(url, "m"), OpenAIProtocol("chat"), plan, load))
    records = sorted(run.records, key=lambda r: r.send)
    assert len(records) == 6 and all(r.ok for r in records)
    later = records[1:]  # every request after the first is due THINK_S after the answer before it
    lags = [r.send - r.scheduled for r in later]
    assert max(lags) < TOKENIZE_S / 2, f"the tokenizer's time counted as send lag: {lags}"
    gaps = [b.send - a.end for a, b in zip(records, later)]
    assert all(THINK_S - 0.01 < g < THINK_S + TOKENIZE_S / 2 for g in gaps), gaps  # think time, not think + tokenize
