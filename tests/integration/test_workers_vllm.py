"""`perfsuite load --workers 2`, from processes on this machine and from Ray actors on a real Ray
cluster on loopback (two nodes, ray.cluster_utils.Cluster), against a real vLLM server: the server's
own counters (/metrics) say it served exactly the requests and tokens asked for, and no worker or
actor is left. Nothing of Ray runs in the pytest process: the cluster, the `perfsuite load --ray`
driver and the check for leftover actors each have a process of their own."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from marked_processes import marked_processes

from perfsuite.cli import main
from perfsuite.telemetry import parse_metrics

pytestmark = [pytest.mark.perf, pytest.mark.filterwarnings("ignore:.*load-generator workers on")]
MARK = "PERFSUITE_WORKERS_TEST"
REQUESTS, WARMUP, OUTPUT = 24, 4, 32  # per run: what the server must have counted


@pytest.fixture(scope="module")
def server(vllm_server):
    return vllm_server


@pytest.fixture(scope="module")
def ray_cluster():
    """The address of a two-node Ray cluster on this machine, held by ray_cluster_host.py in a process
    of its own; its files are in a folder of its own, removed after."""
    folder = Path(tempfile.mkdtemp(prefix="ps-ray-"))  # short: Ray's socket paths must fit in 107 bytes
    host = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("ray_cluster_host.py")), str(folder)],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=(folder / "host.log").open("wb"),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while not (folder / "address").exists():
            if host.poll() is not None or time.monotonic() > deadline:
                log = (folder / "host.log").read_text(errors="replace")[-3000:]
                pytest.fail(f"the Ray cluster did not come up within 180 s (exit {host.poll()}):\n{log}")
            time.sleep(0.5)
        yield (folder / "address").read_text()
    finally:
        host.stdin.close()  # the host shuts the cluster down
        try:
            host.wait(timeout=120)
        except subprocess.TimeoutExpired:
            host.kill()
            host.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


def _named_actors(address: str) -> list:
    """Every named actor on the cluster, asked by a Ray driver in a process of its own."""
    code = (
        "import json, sys, ray; ray.init(address=sys.argv[1], log_to_driver=False); "
        "print(json.dumps(ray.util.list_named_actors(all_namespaces=True))); ray.shutdown()"
    )
    done = subprocess.run([sys.executable, "-c", code, address], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _counters(server) -> dict[str, float]:
    with urllib.request.urlopen(server.endpoint.base_url + "/metrics", timeout=10) as resp:
        m = parse_metrics(resp.read().decode())
    return {"requests": m["vllm:request_success_total"], "generated": m["vllm:generation_tokens_total"]}


def _load_with_workers(server, model, out: Path, *extra, in_process: bool = True) -> tuple[dict, dict]:
    """`perfsuite load` of REQUESTS closed-loop requests (+ WARMUP) of OUTPUT tokens from 2 workers: the
    measurement, and what the server's counters moved by. Not in_process: `python -m perfsuite`."""
    argv = ["load", "--url", server.endpoint.base_url, "--model", server.endpoint.model, "--tokenizer", model]
    lengths = ["--input-len", "64", "--output-len", str(OUTPUT), "--concurrency", "4"]
    counts = ["--requests", str(REQUESTS), "--warmup", str(WARMUP), "--workers", "2", "--json", str(out)]
    before = _counters(server)
    if in_process:
        assert main([*argv, *lengths, *counts, *extra]) == 0
    else:
        command = [sys.executable, "-m", "perfsuite", *argv, *lengths, *counts, *extra]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    after = _counters(server)
    return json.loads(out.read_text())["measurements"][0], {k: after[k] - before[k] for k in before}


def test_two_worker_processes_send_exactly_the_requests_asked_for(server, tmp_path, monkeypatch):
    running, model = server
    token = uuid.uuid4().hex
    monkeypatch.setenv(MARK, token)  # every worker process inherits it
    m, served = _load_with_workers(running, model, tmp_path / "load.json")
    assert served == {"requests": REQUESTS + WARMUP, "generated": (REQUESTS + WARMUP) * OUTPUT}
    assert m["metrics"]["requests_ok"] == REQUESTS and m["error_count"] == 0 and m["load"]["workers"] == 2
    workers = m["client"][0]["workers"]
    assert len({w["pid"] for w in workers}) == 2 and os.getpid() not in {w["pid"] for w in workers}
    assert sum(w["client"]["requests"] for w in workers) == REQUESTS
    assert marked_processes(MARK, token) == []  # the workers (started with the mark) are gone


def test_two_ray_actors_on_two_nodes_send_exactly_the_requests_asked_for(server, ray_cluster, tmp_path):
    running, model = server
    m, served = _load_with_workers(running, model, tmp_path / "load.json", "--ray", ray_cluster, in_process=False)
    assert served == {"requests": REQUESTS + WARMUP, "generated": (REQUESTS + WARMUP) * OUTPUT}
    assert m["metrics"]["requests_ok"] == REQUESTS and m["error_count"] == 0
    workers = m["client"][0]["workers"]
    assert len({w["node_id"] for w in workers}) == 2  # SPREAD: one actor on each node
    assert all(w["clock_rtt_ms"] < 100 for w in workers)
    assert _named_actors(ray_cluster) == []  # every load worker was killed
