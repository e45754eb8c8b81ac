"""A hand-written OpenAI streaming server on 127.0.0.1 for tests of perfsuite's own arithmetic and
scheduling (never the evidence that a framework works: that is tests/integration, against real servers).

`openai_stream(...)` is a context manager that serves /v1/completions and /v1/chat/completions in a
thread and yields its base URL. Every answer streams `max_tokens` one-token chunks (text "x"), then a
usage chunk whose prompt_tokens is `prompt_tokens`, then [DONE]. `token_delay_s` paces the chunks;
`seen` (if given) gets each request's JSON body; the n-th request (from 1) for which `fail(n)` is true
is answered HTTP 500 instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable

from aiohttp import web


@contextlib.contextmanager
def openai_stream(
    prompt_tokens: int = 16,
    token_delay_s: float = 0.0,
    seen: list | None = None,
    fail: Callable[[int], bool] | None = None,
):
    ready = threading.Event()
    state: dict = {"requests": 0}

    async def answer(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        state["requests"] += 1
        if seen is not None:
            seen.append(body)
        if fail is not None and fail(state["requests"]):
            return web.json_response({"error": "injected"}, status=500)
        chat = request.path.endswith("/chat/completions")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        chunk = {"choices": [{"index": 0, "delta": {"content": "x"}} if chat else {"index": 0, "text": "x"}]}
        line = b"data: " + json.dumps(chunk).encode() + b"\n\n"
        for _ in range(body["max_tokens"]):
            if token_delay_s:
                await asyncio.sleep(token_delay_s)
            await resp.write(line)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": body["max_tokens"]}
        await resp.write(b"data: " + json.dumps({"choices": [], "usage": usage}).encode() + b"\n\ndata: [DONE]\n\n")
        return resp

    def serve() -> None:
        loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_post("/v1/completions", answer)
        app.router.add_post("/v1/chat/completions", answer)
        runner = web.AppRunner(app)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        state.update(loop=loop, port=runner.addresses[0][1])
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the test stream server did not start within 10 s")
    try:
        yield f"http://127.0.0.1:{state['port']}"
    finally:
        state["loop"].call_soon_threadsafe(state["loop"].stop)
        thread.join(10)
