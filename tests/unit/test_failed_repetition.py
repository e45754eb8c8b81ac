"""A repetition whose every request failed must show in the error rate (it was the median over
repetitions: one bad repetition of three read 0% and passed). Driven through `perfsuite load` against
a hand-written OpenAI stream on 127.0.0.1 that fails the second repetition's requests: the arithmetic
under test is perfsuite's own, not a framework's."""

import asyncio
import json
import threading

import pytest
from aiohttp import web

from perfsuite.cli import main
from perfsuite.model import build_model

REQUESTS = 4  # per repetition; the second repetition's are requests 5-8


@pytest.fixture
def flaky_server():
    """An OpenAI completions stream (128 prompt tokens, max_tokens tokens) that answers HTTP 500 to the
    5th to 8th requests; its URL."""
    seen = {"n": 0}
    ready = threading.Event()
    state = {}

    async def completions(request):
        body = await request.json()
        seen["n"] += 1
        if REQUESTS < seen["n"] <= 2 * REQUESTS:
            return web.json_response({"error": "injected"}, status=500)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for _ in range(body["max_tokens"]):
            await resp.write(b'data: {"choices":[{"index":0,"text":"x"}]}\n\n')
        usage = {"prompt_tokens": 128, "completion_tokens": body["max_tokens"]}
        await resp.write(b"data: " + json.dumps({"choices": [], "usage": usage}).encode() + b"\n\ndata: [DONE]\n\n")
        return resp

    def serve():
        loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_post("/v1/completions", completions)
        runner = web.AppRunner(app)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        state.update(loop=loop, runner=runner, port=runner.addresses[0][1])
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10), "the test server did not start"
    yield f"http://127.0.0.1:{state['port']}"
    state["loop"].call_soon_threadsafe(state["loop"].stop)
    thread.join(10)


def test_one_failed_repetition_of_three_is_a_third_of_the_requests_and_fails_the_run(flaky_server, tmp_path):
    out = tmp_path / "load.json"
    argv = ["load", "--url", flaky_server, "--model", "m", "--tokenizer", str(build_model())]
    argv += ["--workload", "throughput", "--requests", str(REQUESTS), "--warmup", "0", "--repetitions", "3"]
    assert main([*argv, "--no-metrics", "--json", str(out)]) == 1
    m = json.loads(out.read_text())["measurements"][0]
    assert m["error_count"] == REQUESTS
    assert m["metrics"]["error_rate"] == pytest.approx(1 / 3)  # was the median: 0.0
    assert m["metrics"]["requests"] == 3 * REQUESTS and m["metrics"]["requests_ok"] == 2 * REQUESTS
    assert m["verdict"] == "errors" and m["failed"]
