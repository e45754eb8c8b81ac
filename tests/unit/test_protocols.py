"""The stream protocols: line parsing alone, and the TGI and TorchServe (JSON lines) ones against hand-written
servers on 127.0.0.1.

Fakes check the parsers' edge cases only; the TorchServe plugin is measured for real by the perf suite,
and TGI's image is not present on this machine (its plugin says so)."""

import asyncio
import json

from aiohttp import web

from perfsuite.loadgen import Endpoint, Load, run_load
from perfsuite.protocols import DONE, EMPTY, REASONING, TOKEN, EventKind, OpenAIProtocol, StreamEvent, StreamProtocol
from perfsuite.workloads import RequestSpec
from perfsuite_plugins.tgi import TGIChatProtocol, TGIProtocol
from perfsuite_plugins.torchserve import JSONLinesProtocol


def drive(path: str, protocol, chunks_for):
    """Serve `chunks_for(body)` (a list of byte strings, written one by one) at `path`; run 2 requests."""
    seen = []

    async def handler(request):
        body = await request.json()
        seen.append(body)
        resp = web.StreamResponse()
        await resp.prepare(request)
        for chunk in chunks_for(body):
            await resp.write(chunk)
            await asyncio.sleep(0.005)
        await resp.write_eof()
        return resp

    async def main():
        app = web.Application()
        app.router.add_post(path, handler)
        runner = web.AppRunner(app, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            specs = [RequestSpec("hello", 5, 3), RequestSpec("world", 5, 3)]
            load = Load.closed(2, requests=2, warmup_requests=0, request_timeout_s=10)
            return await asyncio.wait_for(run_load(Endpoint(url, "m"), protocol, specs, load), 30)
        finally:
            await runner.cleanup()

    return asyncio.run(main()).records, seen


def tgi_event(obj) -> bytes:
    return b"data:" + json.dumps(obj).encode() + b"\n\n"  # TGI writes no space after the colon


def tgi_tokens(n: int, generated: int | None = None, split: bool = False) -> list[bytes]:
    events = [
        tgi_event({"token": {"id": i, "text": f" t{i}"}, "generated_text": None, "details": None}) for i in range(n)
    ]
    last = {"token": {"id": 9, "text": "."}, "generated_text": "x", "details": {"generated_tokens": generated or n}}
    events[-1] = tgi_event(last)
    if split:  # events cut across network writes
        joined = b"".join(events)
        return [joined[i : i + 7] for i in range(0, len(joined), 7)]
    return events


def test_tgi_stream_counts_tokens_from_details_and_sends_native_parameters():
    records, seen = drive("/generate_stream", TGIProtocol(), lambda body: tgi_tokens(3))
    assert all(r.ok for r in records), [r.error for r in records]
    assert [r.output_tokens for r in records] == [3, 3]
    assert all(len(r.chunk_times) == 3 and r.first_token == r.chunk_times[0] for r in records)
    assert seen[0]["parameters"] == {"max_new_tokens": 3, "details": True, "do_sample": False}
    assert seen[0]["inputs"] in ("hello", "world")


def test_tgi_events_split_across_writes_parse_the_same():
    records, _ = drive("/generate_stream", TGIProtocol(), lambda body: tgi_tokens(3, split=True))
    assert all(r.ok for r in records), [r.error for r in records]
    assert [len(r.chunk_times) for r in records] == [3, 3]


def test_tgi_early_eos_is_taken_as_reported_not_an_error():
    records, _ = drive("/generate_stream", TGIProtocol(), lambda body: tgi_tokens(2, generated=2))
    assert all(r.ok for r in records)
    assert [r.output_tokens for r in records] == [2, 2]


def test_tgi_in_stream_error_fails_the_request_with_its_type():
    def chunks(body):
        return [tgi_tokens(1)[0], tgi_event({"error": "Request failed during generation", "error_type": "generation"})]

    records, _ = drive("/generate_stream", TGIProtocol(), chunks)
    assert all(not r.ok for r in records)
    assert "generation" in records[0].error and "Request failed" in records[0].error


def line(obj) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def test_json_lines_stream_takes_usage_from_the_last_line():
    def chunks(body):
        return [line({"text": " a"}), line({"text": " b"}), line({"text": " c"}), line({"usage": usage(5, 3)})]

    records, seen = drive("/predictions/m", JSONLinesProtocol("/predictions/m"), chunks)
    assert all(r.ok for r in records), [r.error for r in records]
    assert [(r.prompt_tokens, r.output_tokens, len(r.chunk_times)) for r in records] == [(5, 3, 3)] * 2
    assert seen[0] == {"max_tokens": 3, "prompt": seen[0]["prompt"]}


def usage(p, c):
    return {"prompt_tokens": p, "completion_tokens": c}


def test_json_lines_count_mismatch_and_errors_fail_the_request():
    short = drive("/p", JSONLinesProtocol("/p"), lambda b: [line({"text": "a"}), line({"usage": usage(5, 1)})])[0]
    assert all("token counts differ" in r.error for r in short)
    broken = drive("/p", JSONLinesProtocol("/p"), lambda b: [line({"text": "a"}), line({"error": "bad request: x"})])[0]
    assert all("bad request: x" in r.error for r in broken)


def test_json_lines_chat_sends_messages():
    spec = RequestSpec("hi", 5, 1, [{"role": "user", "content": "hi"}])
    proto = JSONLinesProtocol("/p", "chat")
    assert proto.payload("m", spec) == {"max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}


def test_every_protocol_is_a_stream_protocol():
    for proto in (OpenAIProtocol(), OpenAIProtocol("chat"), TGIProtocol(), TGIChatProtocol("chat")):
        assert isinstance(proto, StreamProtocol)
    assert isinstance(JSONLinesProtocol("/p"), StreamProtocol)
    assert [p.exact_lengths for p in (OpenAIProtocol(), JSONLinesProtocol("/p"), TGIProtocol(), TGIChatProtocol())] == [
        True,
        True,
        False,
        False,
    ]


def test_openai_lines_parse_to_events():
    p = OpenAIProtocol()
    assert p.parse(b"") is None and p.parse(b": ping") is None and p.parse(b"event: message") is None
    assert p.parse(b'data: {"choices":[{"text":" a"}]}\r') is TOKEN
    assert p.parse(b'data: {"choices":[{"text":""}]}\r') is EMPTY and EMPTY.kind is EventKind.TOKEN  # still a chunk
    assert p.parse(b'data:{"choices":[]}') is None
    assert p.parse(b"data: [DONE]") is DONE
    usage = b'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3}}'
    assert p.parse(usage) == StreamEvent(EventKind.USAGE, 5, 3)
    both = b'data: {"choices":[{"text":"x"}],"usage":{"prompt_tokens":5,"completion_tokens":1}}'
    assert p.parse(both) == StreamEvent(EventKind.TOKEN, 5, 1)  # a token that also carries the counts
    err = p.parse(b'data: {"error":{"message":"boom"}}')
    assert err.kind is EventKind.ERROR and "boom" in err.message


def chat_line(delta: dict, **choice) -> bytes:
    """A chat chunk as vLLM writes it (pydantic's compact JSON, unset fields left out)."""
    event = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    event["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None, **choice}]
    return b"data: " + json.dumps(event, separators=(",", ":")).encode()


def test_openai_chat_tells_answer_reasoning_and_empty_chunks_apart():
    p = OpenAIProtocol("chat")
    assert p.parse(chat_line({"role": "assistant", "content": ""})) is EMPTY
    assert p.parse(chat_line({"reasoning_content": " Okay"})) is REASONING  # vLLM before the rename
    assert p.parse(chat_line({"reasoning": " Okay"})) is REASONING  # newer vLLM, OpenRouter
    assert p.parse(chat_line({"content": "Paris"})) is TOKEN
    assert p.parse(chat_line({"reasoning": "so", "content": "Paris"})) is TOKEN  # answer text: an answer chunk
    # SGLang writes every field, null where unset: null reasoning is no reasoning
    assert p.parse(chat_line({"role": None, "content": "Paris", "reasoning_content": None})) is TOKEN
    assert p.parse(chat_line({"role": None, "content": None, "reasoning_content": None})) is EMPTY
    assert p.parse(chat_line({"reasoning_content": ""})) is EMPTY
    assert p.parse(chat_line({}, finish_reason="length")) is EMPTY  # a bare finish chunk
    assert p.parse(chat_line(None)) is EMPTY  # a null delta does not crash the parser


def test_openai_completions_reasoning_sits_on_the_choice():
    p = OpenAIProtocol("completions")
    assert p.parse(b'data: {"choices":[{"index":0,"text":"","reasoning_content":"hm"}]}') is REASONING
    assert p.parse(b'data: {"choices":[{"index":0,"text":" 4"}]}') is TOKEN
    assert p.parse(b'data: {"choices":[{"index":0,"content":" 4"}]}') is EMPTY  # completions answer in `text`


def test_openai_usage_gives_the_reasoning_tokens_where_the_server_counts_them():
    p = OpenAIProtocol("chat")
    details = (
        b'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":9,'
        b'"completion_tokens_details":{"reasoning_tokens":6}}}'
    )
    assert p.parse(details) == StreamEvent(EventKind.USAGE, 5, 9, reasoning_tokens=6)
    top = b'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":9,"reasoning_tokens":4}}'
    assert p.parse(top).reasoning_tokens == 4  # SGLang's place for it
    nulls = b'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":9,"completion_tokens_details":null}}'
    assert p.parse(nulls) == StreamEvent(EventKind.USAGE, 5, 9)
    # vLLM's continuous usage stats: every chunk carries the counts, and still says what it is
    thinking = json.loads(chat_line({"reasoning": "hm"})[6:]) | {"usage": usage(5, 1)}
    event = p.parse(b"data: " + json.dumps(thinking).encode())
    assert event == StreamEvent(EventKind.TOKEN, 5, 1, answer=False, reasoning=True)
    role = json.loads(chat_line({"role": "assistant", "content": ""})[6:]) | {"usage": usage(5, 0)}
    assert p.parse(b"data: " + json.dumps(role).encode()) == StreamEvent(EventKind.TOKEN, 5, 0, answer=False)


def test_tgi_last_event_is_a_token_with_the_output_count():
    p = TGIProtocol()
    assert p.parse(tgi_event({"token": {"id": 1, "text": "a"}, "details": None}).rstrip()) is TOKEN
    last = p.parse(tgi_event({"token": {"id": 2, "text": "."}, "details": {"generated_tokens": 2}}).rstrip())
    assert last == StreamEvent(EventKind.TOKEN, None, 2)
    assert p.parse(b"") is None


def test_json_lines_parse_to_events():
    p = JSONLinesProtocol("/p")
    assert p.parse(b"  ") is None
    assert p.parse(line({"text": ""}).rstrip()) is TOKEN
    assert p.parse(line({"usage": usage(5, 3)}).rstrip()) == StreamEvent(EventKind.USAGE, 5, 3)
    assert p.parse(line({"error": "bad"}).rstrip()) == StreamEvent(EventKind.ERROR, message="bad")
