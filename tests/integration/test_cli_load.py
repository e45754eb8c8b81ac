"""`perfsuite load` against a real vLLM server that is already running (as in a cluster deployment)."""

import json

import pytest

from perfsuite.cli import main

pytestmark = pytest.mark.perf
SECRET = "sk-perfsuite-test-0123456789"


def _load_argv(server, model, *extra):
    return ["load", "--url", server.endpoint.base_url, "--model", server.endpoint.model, "--tokenizer", model, *extra]


@pytest.fixture(scope="module")
def running_server(vllm_server):
    return vllm_server


def test_load_command_measures_an_endpoint(running_server, tmp_path, capsys, monkeypatch):
    server, model = running_server
    monkeypatch.setenv("PERFSUITE_API_KEY", SECRET)
    out = tmp_path / "load.json"
    argv = _load_argv(server, model, "--workload", "rag", "--requests", "16", "--warmup", "2", "--json", str(out))
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "request_throughput" in printed and "prefix_cache_hit_rate" in printed
    text = out.read_text()
    assert SECRET not in printed and SECRET not in text
    m = json.loads(text)["measurements"][0]
    assert m["metrics"]["requests_ok"] == 16 and m["error_count"] == 0
    assert m["metrics"]["mean_input_tokens"] > 512  # the shared 512-token document plus a question
    assert m["metrics"]["prefix_cache_hit_rate"] > 0.5  # every request shares the document
    assert 0 < m["metrics"]["efficiency"] < 1 and "efficiency" in printed  # against the physical bound
    assert m["roofline"]["requests_per_s"] > m["metrics"]["request_throughput"]


def test_load_command_poisson_arrivals(running_server, capsys):
    server, model = running_server
    argv = _load_argv(
        server,
        model,
        *[
            "--workload",
            "chat",
            "--arrival",
            "poisson",
            "--rate",
            "20",
            "--requests",
            "12",
            "--warmup",
            "0",
            "--no-metrics",
        ],
    )
    assert main(argv) == 0
    assert "ttft_p50_ms" in capsys.readouterr().out
