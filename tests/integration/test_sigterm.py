"""SIGTERM to pytest (what CI sends to cancel a job) does what Ctrl-C does: the servers stop and the
results file is written. A real pytest subprocess on a long hf-naive load run."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
from marked_processes import marked_processes

import perfsuite
from perfsuite.frameworks import load_frameworks

pytestmark = pytest.mark.perf

MARKER = "PERFSUITE_SIGTERM_TEST"
LONG = """
from perfsuite import Load

def test_long(serving, perf):
    perf.measure(serving, "throughput", Load.closed(4, requests=100000, warmup_requests=0), repetitions=1)
"""


def _marked(token: str) -> list[psutil.Process]:
    return marked_processes(MARKER, token)


def _wait_until_serving(proc: subprocess.Popen, token: str, timeout_s: float = 300) -> None:
    """Until the load runs: a while after the marked processes stop multiplying."""
    deadline = time.monotonic() + timeout_s
    last, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline and proc.poll() is None:
        n = len(_marked(token))
        if n != last:
            last, stable_since = n, time.monotonic()
        elif n > 1 and time.monotonic() - stable_since > 15:
            return
        time.sleep(1)
    raise AssertionError(f"the server never came up (pytest exit code {proc.poll()})")


def test_sigterm_stops_the_servers_and_writes_the_results(tmp_path):
    if reason := load_frameworks()["hf-naive"].unavailable():
        pytest.skip(f"hf-naive: {reason}")
    (tmp_path / "test_long.py").write_text(LONG)
    token = uuid.uuid4().hex
    results = tmp_path / "results.json"
    # The perfsuite under test (this checkout), not whatever an editable install points at.
    root = str(Path(perfsuite.__file__).parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]), **{MARKER: token})
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-s", "test_long.py"]
    argv += ["--frameworks=hf-naive", "--gpu=cpu", f"--perf-results={results}", f"--perf-log-dir={tmp_path / 'logs'}"]
    proc = subprocess.Popen(
        argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        _wait_until_serving(proc, token)
        os.kill(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = out.decode(errors="replace")
    assert "KeyboardInterrupt" in text or "Interrupted" in text, text[-3000:]
    assert results.exists(), text[-3000:]
    json.loads(results.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in the results file"))
    end = time.monotonic() + 60
    while (left := _marked(token)) and time.monotonic() < end:
        time.sleep(1)
    assert left == [], [" ".join(p.cmdline())[:120] for p in left]
