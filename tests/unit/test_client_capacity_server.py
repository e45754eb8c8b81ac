"""benchmarks/client_capacity.py's stream server, started as the benchmark starts it: perfsuite's load
generator reads each of its streams with the exact counts, and refuses a count that differs."""

import asyncio
import importlib.util
import sys
import tempfile
from pathlib import Path

import pytest

from perfsuite.loadgen import Endpoint, Load, run_load
from perfsuite.protocols import OpenAIProtocol
from perfsuite.server import ServerProcess, free_port, http_ok
from perfsuite.workloads import RequestSpec

SERVER = Path(__file__).parents[2] / "benchmarks" / "_stream_server.py"


def _server_module():
    spec = importlib.util.spec_from_file_location("_stream_server", SERVER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


stream_server = _server_module()


@pytest.fixture(scope="module", params=stream_server.MODES)
def server(request):
    """The stream server in each mode on a loopback port; stopped (and checked stopped) after the test."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="perfsuite-capacity-test-") as tmp:
        proc = ServerProcess(
            f"stream server ({request.param})",
            [sys.executable, str(SERVER), "--port", str(port), "--mode", request.param, "--itl-ms", "1"],
            Path(tmp) / "server.log",
            ready=lambda: http_ok(f"http://127.0.0.1:{port}/health", timeout_s=1.0),
            start_timeout_s=15.0,
            stop_timeout_s=5.0,
        )
        with proc:
            yield Endpoint(f"http://127.0.0.1:{port}", "capacity")
        assert proc.proc.poll() is not None, "the stream server outlived its stop()"


def _run(endpoint, specs, load):
    return asyncio.run(asyncio.wait_for(run_load(endpoint, OpenAIProtocol(), specs, load), 20))


def test_the_load_generator_reads_every_stream_with_exact_counts(server):
    lengths = [(128, 16), (7, 1), (300, 40), (1, 3)]
    specs = [RequestSpec(stream_server.prompt(n_in), n_in, n_out) for n_in, n_out in lengths * 2]
    run = _run(server, specs, Load.closed(2, requests=len(specs) - 2, warmup_requests=2))
    assert [r.error for r in run.records] == [None] * len(run.records)
    measured = [(r.prompt_tokens, r.output_tokens, len(r.chunk_times)) for r in run.records]
    expected = [(n_in, n_out, n_out) for n_in, n_out in (lengths * 2)[2:]]
    assert sorted(measured) == sorted(expected)


def test_an_open_load_keeps_to_its_schedule(server):
    specs = [RequestSpec(stream_server.prompt(64), 64, 8)] * 22
    run = _run(server, specs, Load.constant(100.0, requests=20, warmup_requests=2))
    assert all(r.ok for r in run.records) and len(run.records) == 20
    assert run.client.send_lag_p99_ms < 50


def test_a_count_that_differs_from_the_request_fails_it(server):
    wrong = RequestSpec(stream_server.prompt(127), 128, 4)  # the server counts 127 prompt tokens
    run = _run(server, [wrong], Load.closed(1, requests=1, warmup_requests=0))
    assert "token counts differ" in run.records[0].error
