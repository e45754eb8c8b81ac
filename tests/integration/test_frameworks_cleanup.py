"""Nothing is left running after a session, whatever happened in it: for every framework that runs
here (hf-naive, TorchServe, Ray Serve, vLLM in a container), after a failed test, after Ctrl-C in the
middle of a load run, and, for the frameworks that start daemons of their own (TorchServe's Java front
end, Ray's GCS and raylet), after the pytest process itself is killed.

Each run is a real pytest subprocess (pytester) with a marker in its environment; every process that
inherited the marker, and every container labelled perfsuite=1, must be gone afterwards.
"""

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import psutil
import pytest
from marked_processes import marked_processes

from perfsuite.container import find_engine
from perfsuite.frameworks import load_frameworks
from perfsuite.scratch import PREFIXES, remove_stale

pytestmark = pytest.mark.perf

MARKER = "PERFSUITE_CLEANUP_TEST"
FRAMEWORKS = ["hf-naive", "torchserve", "ray-serve", "vllm-container"]

FAILING = """
from perfsuite import Load

def test_fails(serving, perf):
    perf.measure(serving, "throughput", Load.closed(2, requests=4, warmup_requests=1), repetitions=1,
                 thresholds={"request_throughput": ">= 1e9"})
"""
LONG = """
from perfsuite import Load

def test_long(serving, perf):
    perf.measure(serving, "throughput", Load.closed(4, requests=100000, warmup_requests=0), repetitions=1)
"""


def _available(name: str) -> None:
    reason = load_frameworks()[name].unavailable()
    if reason:
        pytest.skip(f"{name}: {reason}")


def _marked(token: str) -> list[psutil.Process]:
    return marked_processes(MARKER, token)


def _containers() -> list[str]:
    engine = find_engine()
    if engine is None or engine.works():
        return []
    return engine.run("ps", "-a", "--filter", "label=perfsuite=1", "--format", "{{.Names}}").stdout.split()


def _leftovers(token: str, deadline_s: float = 60) -> list[str]:
    """What is still running after `deadline_s` (a graceful shutdown may take a few seconds)."""
    end = time.monotonic() + deadline_s
    while True:
        procs = [p for p in _marked(token) if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        left = [f"{p.pid} {' '.join(p.cmdline())[:120]}" for p in procs] + [f"container {c}" for c in _containers()]
        if not left or time.monotonic() > end:
            return left
        time.sleep(1)


def _scratch_folders() -> set[str]:
    """perfsuite's scratch folders (perfsuite.scratch.PREFIXES) in the temporary folders."""
    roots = {tempfile.gettempdir(), "/tmp"}
    return {os.path.join(r, n) for r in roots if os.path.isdir(r) for n in os.listdir(r) if n.startswith(PREFIXES)}


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_failed_test_leaves_nothing_running(pytester, monkeypatch, framework):
    _available(framework)
    token = uuid.uuid4().hex
    monkeypatch.setenv(MARKER, token)
    pytester.makepyfile(test_cleanup=FAILING)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--frameworks={framework}", "--perf-log-dir=logs")
    result.assert_outcomes(failed=1)
    # The threshold fails it; on a busy 2-core machine the judge may find the client starved first
    # (a Ray Serve proxy sharing its core). Either is a failed perf test, which is what is cleaned up after.
    result.stdout.re_match_lines([r".*perf (breach|client saturated).*"])
    assert _leftovers(token) == []


def _start_long_run(pytester, framework: str, token: str) -> subprocess.Popen:
    pytester.makepyfile(test_long=LONG)
    env = dict(os.environ, **{MARKER: token})
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-s", f"--frameworks={framework}"]
        + ["--perf-log-dir=logs", "test_long.py"],
        cwd=pytester.path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_until_serving(proc: subprocess.Popen, token: str, timeout_s: float = 300) -> None:
    """Until the server answers load: a few seconds after the marked processes stop multiplying."""
    deadline = time.monotonic() + timeout_s
    last, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline and proc.poll() is None:
        n = len(_marked(token)) + len(_containers())
        if n != last:
            last, stable_since = n, time.monotonic()
        elif n > 1 and time.monotonic() - stable_since > 15:
            return
        time.sleep(1)
    raise AssertionError(f"the server never came up (pytest exit code {proc.poll()})")


@pytest.mark.parametrize(
    ("framework", "how"),
    [(f, signal.SIGINT) for f in FRAMEWORKS] + [("torchserve", signal.SIGKILL), ("ray-serve", signal.SIGKILL)],
    ids=lambda v: v.name if isinstance(v, signal.Signals) else v,
)
def test_an_interrupted_or_killed_run_leaves_nothing_running(pytester, framework, how):
    _available(framework)
    scratch_before = _scratch_folders()
    token = uuid.uuid4().hex
    proc = _start_long_run(pytester, framework, token)
    try:
        _wait_until_serving(proc, token)
        os.kill(proc.pid, how)
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    if how == signal.SIGINT:
        assert b"KeyboardInterrupt" in out or b"Interrupted" in out, out[-2000:]
    assert _leftovers(token, deadline_s=90) == [], out[-2000:]
    if how == signal.SIGKILL:  # the killed run could not remove its temporary folders: the next run's sweep does
        removed = remove_stale()
        assert _scratch_folders() - scratch_before == set(), removed
