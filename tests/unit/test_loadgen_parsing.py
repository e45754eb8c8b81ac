"""The load generator's SSE parser and schedulers against a hand-written server on 127.0.0.1.

These fakes test the parser and the scheduler only; real serving is measured by the perf suite.
"""

import asyncio
import contextlib
import itertools
import json
import math
import time

import pytest
from aiohttp import web

from perfsuite.loadgen import Endpoint, Load, run_load
from perfsuite.metrics import summarize
from perfsuite.partition import _arrival_gaps
from perfsuite.protocols import OpenAIProtocol
from perfsuite.workloads import RequestSpec


@pytest.fixture(autouse=True, params=["http1", "aiohttp"])
def transport(request, monkeypatch):
    """Every case runs on both transports (perfsuite.http1): they must read the same streams alike."""
    monkeypatch.setenv("PERFSUITE_TRANSPORT", request.param)
    return request.param


# ---------------------------------------------------------------- a tiny scripted server


def data(obj) -> str:
    return f"data: {json.dumps(obj)}\n\n"


def text_chunk(text: str) -> str:
    return data(
        {"id": "cmpl-1", "object": "text_completion", "choices": [{"index": 0, "text": text, "finish_reason": None}]}
    )


def chat_chunk(delta: dict) -> str:
    return data({"id": "chat-1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]})


def usage(prompt: int, completion: int) -> str:
    return data(
        {
            "id": "cmpl-1",
            "choices": [],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        }
    )


DONE = "data: [DONE]\n\n"


def spec(n_in: int = 5, n_out: int = 3, chat: bool = False) -> RequestSpec:
    prompt = f"in={n_in}"
    return RequestSpec(prompt, n_in, n_out, [{"role": "user", "content": prompt}] if chat else None)


def asked(body: dict) -> tuple[int, int]:
    """(input, output) tokens the request asks for; the fake reads the input count from the prompt text."""
    text = body["messages"][0]["content"] if "messages" in body else body["prompt"]
    return int(text.split("=")[1]), body["max_tokens"]


class FakeServer:
    """Routes both OpenAI paths to `handler(server, request, body)`; records what it saw and when it wrote."""

    def __init__(self, handler):
        self.handler = handler
        self.bodies: list[dict] = []
        self.paths: list[str] = []
        self.writes: list[tuple[float, str]] = []  # (perf_counter, what) for every event written
        self.in_flight = 0
        self.max_in_flight = 0
        self.release = asyncio.Event()  # stalled handlers wait on it; set at teardown

    async def _route(self, request: web.Request):
        body = await request.json()
        self.bodies.append(body)
        self.paths.append(request.path)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self.handler(self, request, body)
        finally:
            self.in_flight -= 1

    async def stream(self, request, events):
        """Write `events` (strings; a number means: wait that long; None means: stall until released)."""
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for ev in events:
            if ev is None:
                await self.release.wait()
                return resp
            if isinstance(ev, (int, float)):
                await asyncio.sleep(ev)
                continue
            await resp.write(ev.encode())
            self.writes.append((time.perf_counter(), ev))
        await resp.write_eof()
        return resp

    @contextlib.asynccontextmanager
    async def running(self):
        app = web.Application()
        app.router.add_post("/v1/completions", self._route)
        app.router.add_post("/v1/chat/completions", self._route)
        runner = web.AppRunner(app, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            self.release.set()
            await runner.cleanup()


def drive(handler, specs, load, api="completions", repetition=0):
    """Run the load against a fake server; return (records, wall seconds, the server)."""
    server = FakeServer(handler)

    async def main():
        async with server.running() as url:
            run = run_load(Endpoint(url, "m"), OpenAIProtocol(api), specs, load, repetition=repetition)
            return await asyncio.wait_for(run, 60)

    run = asyncio.run(main())
    return run.records, run.wall_s, server


def closed(n: int, timeout_s: float = 10.0) -> Load:
    return Load.closed(2, requests=n, warmup_requests=0, request_timeout_s=timeout_s)


async def good(server, request, body):
    """A well-behaved completions stream: one chunk per token, a usage event, [DONE]."""
    n_in, n_out = asked(body)
    return await server.stream(request, [*(text_chunk(f" t{i}") for i in range(n_out)), usage(n_in, n_out), DONE])


# ---------------------------------------------------------------- parsing


def test_normal_stream():
    records, wall, server = drive(good, [spec(5, 3), spec(7, 4)], closed(2))
    assert len(records) == 2 and wall > 0
    assert all(r.ok for r in records), [r.error for r in records]
    by_in = {r.expected_input: r for r in records}
    r = by_in[5]
    assert (r.prompt_tokens, r.output_tokens) == (5, 3)
    assert len(r.chunk_times) == 3  # the usage event has no choices: not a token chunk
    assert r.send <= r.first_token == r.chunk_times[0] <= r.chunk_times[-1] == r.end
    assert r.chunk_times == sorted(r.chunk_times)
    assert (by_in[7].prompt_tokens, by_in[7].output_tokens, len(by_in[7].chunk_times)) == (7, 4, 4)
    # what was asked of the server
    assert set(server.paths) == {"/v1/completions"}
    body = next(b for b in server.bodies if b["prompt"] == "in=5")
    assert body["model"] == "m" and body["stream"] is True
    assert body["max_tokens"] == body["min_tokens"] == 3 and body["ignore_eos"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert "messages" not in body


def test_empty_text_chunks_count_and_time_the_first_token():
    async def handler(server, request, body):
        return await server.stream(
            request, [text_chunk(""), 0.3, text_chunk("Hello"), text_chunk(""), text_chunk(" world"), usage(5, 4), DONE]
        )

    records, _, server = drive(handler, [spec(5, 4)], closed(1))
    [r] = records
    assert r.ok, r.error
    assert len(r.chunk_times) == 4  # empty text, non-empty choices: a token chunk
    assert r.first_token == r.chunk_times[0]
    first_text_written = next(t for t, ev in server.writes if "Hello" in ev)
    assert r.first_token < first_text_written  # TTFT ends at the empty chunk, not at the first text


def test_comments_blank_lines_and_crlf_are_ignored():
    async def handler(server, request, body):
        return await server.stream(
            request,
            [
                ": ping\n\n",
                "\n\n",
                text_chunk("a"),
                ": ping - 2024-01-01 00:00:00\n\n",
                "event: message\n",
                text_chunk("b").replace("\n\n", "\r\n\r\n"),
                "\r\n",
                'data:{"choices":[{"index":0,"text":"c"}]}\n\n',
                ": ping\n\n",
                usage(5, 3),
                DONE,
                ": trailing comment\n\n",
            ],
        )

    [r], _, _ = drive(handler, [spec(5, 3)], closed(1))
    assert r.ok, r.error
    assert len(r.chunk_times) == 3
    assert (r.prompt_tokens, r.output_tokens) == (5, 3)


def test_events_after_done_are_not_read():
    async def handler(server, request, body):
        return await server.stream(
            request,
            [text_chunk("a"), text_chunk("b"), text_chunk("c"), usage(5, 3), DONE, text_chunk("late"), usage(9, 9)],
        )

    [r], _, _ = drive(handler, [spec(5, 3)], closed(1))
    assert r.ok, r.error
    assert len(r.chunk_times) == 3 and r.output_tokens == 3


def test_error_event_in_stream():
    async def handler(server, request, body):
        return await server.stream(
            request, [text_chunk("a"), data({"error": {"message": "KV cache exhausted", "code": 500}}), DONE]
        )

    [r], _, _ = drive(handler, [spec(5, 3)], closed(1))
    assert not r.ok
    assert "KV cache exhausted" in r.error
    assert r.end is not None


def test_http_error_status():
    async def handler(server, request, body):
        return web.Response(status=500, text="engine core died")

    records, _, _ = drive(handler, [spec(), spec()], closed(2))
    assert len(records) == 2
    for r in records:
        assert not r.ok
        assert "HTTP 500" in r.error and "engine core died" in r.error
        assert r.end is not None and r.end >= r.send


def test_stream_without_usage_is_an_error():
    async def handler(server, request, body):
        return await server.stream(request, [text_chunk("a"), text_chunk("b"), text_chunk("c"), DONE])

    [r] = drive(handler, [spec(5, 3)], closed(1))[0]
    assert not r.ok
    assert "usage" in r.error


def test_stream_without_tokens_is_an_error():
    async def handler(server, request, body):
        return await server.stream(request, [usage(5, 3), DONE])

    [r] = drive(handler, [spec(5, 3)], closed(1))[0]
    assert not r.ok
    assert "no tokens" in r.error


@pytest.mark.parametrize("counted, fragments", [((5, 2), ("3 out", "2 out")), ((6, 3), ("5 in", "6 in"))])
def test_token_count_mismatch_names_both_counts(counted, fragments):
    async def handler(server, request, body):
        return await server.stream(request, [*(text_chunk("x") for _ in range(counted[1])), usage(*counted), DONE])

    [r] = drive(handler, [spec(5, 3)], closed(1))[0]
    assert not r.ok
    assert "token counts differ" in r.error
    for f in fragments:
        assert f in r.error


def test_invalid_json_event_is_an_error_not_a_crash():
    async def handler(server, request, body):
        return await server.stream(request, [text_chunk("a"), "data: {not json\n\n", DONE])

    [r] = drive(handler, [spec(5, 3)], closed(1))[0]
    assert not r.ok and "JSONDecodeError" in r.error


@pytest.mark.parametrize("before_headers", [False, True])
def test_stalled_server_times_out(before_headers):
    async def handler(server, request, body):
        if before_headers:
            await server.release.wait()
            return web.Response(status=503)
        return await server.stream(request, [text_chunk("a"), None])

    records, _, _ = drive(handler, [spec(5, 3), spec(5, 3)], closed(2, timeout_s=0.5))
    assert len(records) == 2
    for r in records:
        assert not r.ok
        assert r.error.startswith("timeout"), r.error
        assert r.end is not None


def test_chat_stream():
    async def handler(server, request, body):
        n_in, n_out = asked(body)
        return await server.stream(
            request,
            [
                chat_chunk({"role": "assistant", "content": ""}),
                *(chat_chunk({"content": f"w{i} "}) for i in range(n_out)),
                data(
                    {
                        "id": "chat-1",
                        "object": "chat.completion.chunk",
                        "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],
                    }
                ),
                usage(n_in, n_out),
                DONE,
            ],
        )

    [r], _, server = drive(handler, [spec(12, 3, chat=True)], closed(1), api="chat")
    assert r.ok, r.error
    assert (r.prompt_tokens, r.output_tokens) == (12, 3)
    assert len(r.chunk_times) == 5  # role chunk, three content chunks, the finish chunk: all carry choices
    assert r.first_token == r.chunk_times[0]
    assert server.paths == ["/v1/chat/completions"]
    [body] = server.bodies
    assert body["messages"] == [{"role": "user", "content": "in=12"}]
    assert "prompt" not in body


# ---------------------------------------------------------------- reasoning models


def vllm_event(choices: list, **extra) -> str:
    """An event as vLLM writes it: pydantic's compact JSON, unset fields left out."""
    head = {"id": "chatcmpl-7f3a", "object": "chat.completion.chunk", "created": 1718000000, "model": "Qwen/Qwen3-0.6B"}
    return f"data: {json.dumps(head | {'choices': choices} | extra, separators=(',', ':'))}\n\n"


def vllm_chunk(delta: dict, finish: str | None = None, **extra) -> str:
    return vllm_event([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra)


def vllm_usage(prompt: int, completion: int, reasoning: int | None = None) -> dict:
    u = {"prompt_tokens": prompt, "total_tokens": prompt + completion, "completion_tokens": completion}
    return u if reasoning is None else u | {"completion_tokens_details": {"reasoning_tokens": reasoning}}


THOUGHTS = ["Okay", ",", " the", " user", " asks"]


def thinking(n_in, thoughts, answer, field="reasoning_content", reasoning_tokens=None, pause=0.2):
    """vLLM with --reasoning-parser: the role chunk, one chunk per thought token, the end-of-thinking token
    (the parser swallows it: a token, no chunk), one chunk per answer token (the last with the finish
    reason), the usage event, [DONE]. Returns (events, completion tokens)."""
    events = [vllm_chunk({"role": "assistant", "content": ""}), *(vllm_chunk({field: t}) for t in thoughts)]
    if answer:
        events += [
            pause,
            *(vllm_chunk({"content": t}) for t in answer[:-1]),
            vllm_chunk({"content": answer[-1]}, "length"),
        ]
    completion = len(thoughts) + (len(answer) + 1 if answer else 0)
    return [*events, vllm_event([], usage=vllm_usage(n_in, completion, reasoning_tokens)), DONE], completion


def think_then_answer(**kw):
    async def handler(server, request, body):
        return await server.stream(request, thinking(asked(body)[0], THOUGHTS, ["Paris", "."], **kw)[0])

    return handler


@pytest.mark.parametrize(
    "field, reported, thought, answered",
    [("reasoning_content", None, 5, 3), ("reasoning", None, 5, 3), ("reasoning", 6, 6, 2)],
    ids=["reasoning_content", "reasoning", "usage-details"],
)
def test_reasoning_stream_times_the_first_answer_and_counts_thinking(field, reported, thought, answered):
    [r], wall, _ = drive(
        think_then_answer(field=field, reasoning_tokens=reported), [spec(12, 8, True)], closed(1), "chat"
    )
    assert r.ok, r.error  # exact lengths: 5 thoughts + the end of thinking + 2 answer tokens = the 8 asked for
    assert (r.prompt_tokens, r.output_tokens, len(r.chunk_times)) == (12, 8, 8)  # role + 5 thoughts + 2 answers
    assert r.first_token == r.chunk_times[0]  # TTFT: the role chunk, as before
    assert r.first_answer == r.chunk_times[6]  # TTFAT: "Paris"
    assert r.first_answer - r.chunk_times[5] >= 0.15  # after the server's pause, not at the last thought
    assert (r.reasoning_chunks, r.reasoning_tokens, r.reasoned) == (5, reported, True)
    # the server's count where it gives one (the end-of-thinking token included), else the chunks
    assert (r.reasoning_output_tokens, r.answer_output_tokens) == (thought, answered)
    assert r.reasoning_output_tokens + r.answer_output_tokens == r.output_tokens
    out = summarize([r], wall)
    assert out["ttfat_p50_ms"] == pytest.approx((r.first_answer - r.send) * 1e3)
    assert out["ttfat_p50_ms"] >= out["ttft_p50_ms"] + 150
    assert (out["mean_reasoning_tokens"], out["mean_answer_tokens"]) == (thought, answered)


@pytest.mark.parametrize("finish_alone", [False, True], ids=["last-thought-finishes", "bare-finish-chunk"])
def test_stream_that_never_leaves_reasoning_has_no_first_answer(finish_alone):
    async def handler(server, request, body):
        n_in, n_out = asked(body)
        thoughts = [vllm_chunk({"reasoning": f" t{i}"}) for i in range(n_out)]
        if finish_alone:  # the last token was the end of thinking: swallowed, vLLM sends an empty delta
            thoughts[-1] = vllm_chunk({}, "length")
        else:
            thoughts[-1] = vllm_chunk({"reasoning": " last"}, "length")
        role = vllm_chunk({"role": "assistant", "content": ""})
        return await server.stream(request, [role, *thoughts, vllm_event([], usage=vllm_usage(n_in, n_out)), DONE])

    [r], wall, _ = drive(handler, [spec(5, 6, True)], closed(1), "chat")
    assert r.ok, r.error
    assert r.first_answer is None and r.first_token == r.chunk_times[0] and len(r.chunk_times) == 7
    thought = 5 if finish_alone else 6
    assert (r.reasoning_chunks, r.reasoning_output_tokens, r.answer_output_tokens) == (thought, thought, 6 - thought)
    out = summarize([r], wall)
    assert all(math.isnan(out[f"ttfat_p{p}_ms"]) for p in (50, 90, 99))  # reported (it reasoned), but none answered
    assert out["mean_reasoning_tokens"] == thought


def test_plain_chat_stream_has_a_first_answer_but_no_reasoning_metrics():
    async def handler(server, request, body):
        n_in, n_out = asked(body)
        answer = [vllm_chunk({"content": f" w{i}"}) for i in range(n_out)]
        role = vllm_chunk({"role": "assistant", "content": ""})
        return await server.stream(request, [role, *answer, vllm_event([], usage=vllm_usage(n_in, n_out)), DONE])

    [r], wall, _ = drive(handler, [spec(5, 3, True)], closed(1), "chat")
    assert r.ok, r.error
    assert len(r.chunk_times) == 4 and r.first_token == r.chunk_times[0] and r.first_answer == r.chunk_times[1]
    assert (r.reasoning_chunks, r.reasoning_tokens, r.reasoned) == (0, None, False)
    assert (r.reasoning_output_tokens, r.answer_output_tokens) == (0, 3)
    out = summarize([r], wall)
    assert not [k for k in out if k.startswith("ttfat") or k in ("mean_reasoning_tokens", "mean_answer_tokens")]


def test_completions_run_mixing_reasoning_and_plain_requests():
    def choice(text: str, **more) -> dict:
        return {"index": 0, "text": text, "logprobs": None, "finish_reason": None, **more}

    async def handler(server, request, body):
        n_in, n_out = asked(body)
        if n_in == 5:  # thinks for 2 tokens, then answers 2 (and the end-of-thinking token)
            events = [vllm_event([choice("", reasoning_content=t)]) for t in ("hm", " ok")]
            events += [0.1, vllm_event([choice(" 4")]), vllm_event([choice(".")])]
        else:
            events = [vllm_event([choice(f" t{i}")]) for i in range(n_out)]
        return await server.stream(request, [*events, vllm_event([], usage=vllm_usage(n_in, n_out)), DONE])

    records, wall, server = drive(handler, [spec(5, 5), spec(7, 3)], closed(2))
    assert all(r.ok for r in records), [r.error for r in records]
    assert set(server.paths) == {"/v1/completions"}
    by_in = {r.expected_input: r for r in records}
    thinker, plain = by_in[5], by_in[7]
    assert thinker.first_answer == thinker.chunk_times[2] and thinker.first_answer - thinker.first_token >= 0.08
    assert plain.first_answer == plain.first_token  # no thinking: the first answer token is the first token
    assert [(r.reasoning_output_tokens, r.answer_output_tokens) for r in (thinker, plain)] == [(2, 3), (0, 3)]
    out = summarize(records, wall)
    ttfat = sorted((r.first_answer - r.send) * 1e3 for r in records)
    assert out["ttfat_p50_ms"] == pytest.approx(sum(ttfat) / 2)  # over every request that answered
    assert (out["mean_reasoning_tokens"], out["mean_answer_tokens"]) == (1.0, 3.0)


def test_continuous_usage_stats_keep_the_reasoning_apart():
    """vLLM's stream_options.continuous_usage_stats: every chunk carries the counts so far."""

    async def handler(server, request, body):
        n_in, _ = asked(body)
        deltas = [{"role": "assistant", "content": ""}, {"reasoning": "a"}, {"reasoning": "b"}, {"content": "c"}]
        counts = [0, 1, 2, 4]  # the end of thinking counted, not streamed
        events = [vllm_chunk(d, usage=vllm_usage(n_in, c)) for d, c in zip(deltas, counts)]
        return await server.stream(request, [*events, vllm_event([], usage=vllm_usage(n_in, 4)), DONE])

    [r], _, _ = drive(handler, [spec(5, 4, True)], closed(1), "chat")
    assert r.ok, r.error
    assert (len(r.chunk_times), r.first_answer, r.reasoning_chunks) == (4, r.chunk_times[3], 2)
    assert (r.output_tokens, r.reasoning_output_tokens, r.answer_output_tokens) == (4, 2, 2)


def test_reasoning_stream_with_a_wrong_total_still_fails_the_exact_length_check():
    async def handler(server, request, body):
        events, completion = thinking(asked(body)[0], THOUGHTS, ["Paris", "."], pause=0)
        return await server.stream(
            request,
            [
                e.replace(f'"completion_tokens":{completion}', '"completion_tokens":7')
                for e in events
                if isinstance(e, str)
            ],
        )

    [r] = drive(handler, [spec(12, 8, True)], closed(1), "chat")[0]
    assert not r.ok and "token counts differ" in r.error and "7 out" in r.error


# ---------------------------------------------------------------- scheduling


async def slow_good(server, request, body):
    n_in, n_out = asked(body)
    return await server.stream(request, [0.05, *(text_chunk("x") for _ in range(n_out)), usage(n_in, n_out), DONE])


def test_closed_loop_keeps_concurrency_and_warms_up():
    specs = [spec(i, 2) for i in range(1, 9)]
    records, _, server = drive(slow_good, specs, Load.closed(2, requests=6, warmup_requests=2))
    assert len(server.bodies) == 8  # 2 warm-up + 6 measured
    assert len(records) == 6
    assert sorted(r.expected_input for r in records) == [3, 4, 5, 6, 7, 8]  # warm-up ones are not recorded
    assert all(r.ok for r in records)
    assert server.max_in_flight == 2


@pytest.mark.parametrize(
    "load",
    [
        Load.poisson(50.0, requests=10, warmup_requests=0, seed=3),
        Load.constant(100.0, requests=7, warmup_requests=0),
        Load.poisson(200.0, requests=8, concurrency=2, warmup_requests=0, seed=1),
    ],
)
def test_open_arrivals_send_the_requested_count(load):
    specs = [spec(i, 2) for i in range(1, 21)]
    records, _, server = drive(slow_good, specs, load)
    assert len(records) == load.requests
    assert len(server.bodies) == load.requests
    assert all(r.ok for r in records), [r.error for r in records]
    assert sorted(r.expected_input for r in records) == list(range(1, load.requests + 1))
    if load.concurrency:
        assert server.max_in_flight <= load.concurrency


def test_poisson_gaps_are_fresh_for_each_repetition_and_repeat_for_the_same_one():
    load = Load.poisson(25.0, requests=6, warmup_requests=0, seed=3)
    specs = [spec(i, 1) for i in range(1, 7)]

    def offsets(repetition):
        records = drive(good, specs, load, repetition=repetition)[0]
        sends = sorted(r.send for r in records)
        return [t - sends[0] for t in sends]

    first, again, second = offsets(0), offsets(0), offsets(1)
    assert max(abs(a - b) for a, b in zip(first, again)) < 0.02  # same schedule, a few ms of jitter
    assert max(abs(a - b) for a, b in zip(first, second)) > 0.05  # another repetition, other gaps


def test_time_queued_for_a_concurrency_slot_counts_toward_latency():
    async def slow(server, request, body):
        n_in, n_out = asked(body)
        return await server.stream(request, [0.2, *(text_chunk("x") for _ in range(n_out)), usage(n_in, n_out), DONE])

    load = Load.constant(50.0, concurrency=1, requests=3, warmup_requests=0)
    records, _, server = drive(slow, [spec(i, 1) for i in range(1, 4)], load)
    assert all(r.ok for r in records), [r.error for r in records]
    assert server.max_in_flight == 1
    sends = sorted(r.send for r in records)
    assert sends[-1] - sends[0] < 0.1  # sent on schedule (20 ms apart), though the one slot was busy
    last = max(records, key=lambda r: r.first_token)
    assert last.first_token - last.send > 0.5  # waited for the two before it (0.2 s each), then its own 0.2 s


def test_poisson_schedule_is_seeded():
    load = Load.poisson(4.0, requests=10, seed=3)
    a = list(itertools.islice(_arrival_gaps(load, 2), 50))
    b = list(itertools.islice(_arrival_gaps(load, 2), 50))
    assert a == b and all(g >= 0 for g in a) and len(set(a)) == 50
    const = list(itertools.islice(_arrival_gaps(Load.constant(4.0), 2), 5))
    assert const == [0.25] * 5


@pytest.mark.parametrize(
    "load",
    [
        Load.closed(2, requests=None, duration_s=0.5, warmup_requests=0),
        Load.poisson(40.0, requests=None, duration_s=0.5, warmup_requests=0),
    ],
)
def test_duration_mode_stops_by_itself(load):
    specs = [spec(1, 2), spec(2, 2), spec(3, 2)]
    records, wall, _ = drive(good, specs, load)  # drive() fails the test if this does not return
    assert len(records) >= 1
    assert all(r.ok for r in records), [r.error for r in records]
    assert {r.expected_input for r in records} <= {1, 2, 3}  # the specs are cycled
    if load.arrival == "closed":
        assert len(records) >= 2  # both users started
        assert wall >= 0.5  # users keep sending until the duration is over
