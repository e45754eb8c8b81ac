"""perfsuite ab against real vLLM servers, in a clone of this repository: a commit that cuts vLLM's
max_num_seqs to 4 (8 users) is caught as a request_throughput regression, the unchanged code (A/A)
passes, and bad input is refused before any server starts. Ctrl-C (SIGINT) and SIGTERM leave no
worktree, temporary folder or process behind."""

from __future__ import annotations

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

from perfsuite.frameworks import load_frameworks

pytestmark = pytest.mark.perf

ROOT = Path(__file__).resolve().parents[2]
PERFSUITE = [sys.executable, "-m", "perfsuite.cli"]
SELECT = ["tests/perf/test_serving.py", "-k", "test_throughput and vllm and not container", "--gpu=cpu"]
MARKER = "PERFSUITE_AB_TEST"


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """This repository's committed code in a scratch clone, plus one commit: test_throughput with
    max_num_seqs=4, a real engine change that costs about a third of vLLM's throughput with 8 users."""
    if reason := load_frameworks()["vllm"].unavailable():
        pytest.skip(f"vllm: {reason}")
    repo = tmp_path_factory.mktemp("ab") / "repo"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(repo)], check=True, timeout=120)
    for key, value in (("user.email", "ab@test"), ("user.name", "ab test")):
        subprocess.run(["git", "config", key, value], cwd=repo, check=True)
    test = repo / "tests/perf/test_serving.py"
    text = test.read_text()
    assert "\ndef test_throughput(serving, perf):" in text
    test.write_text(
        text.replace("\ndef test_throughput(", "\n@pytest.mark.engine(max_num_seqs=4)\ndef test_throughput(", 1)
    )
    subprocess.run(["git", "commit", "-qam", "test_throughput: max_num_seqs=4"], cwd=repo, check=True)
    return repo


def _ab(repo: Path, *args: str, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([*PERFSUITE, "ab", *args], cwd=repo, capture_output=True, text=True, timeout=timeout, env=env)


def _worktrees(repo: Path) -> int:
    out = subprocess.run(["git", "worktree", "list"], cwd=repo, capture_output=True, text=True, check=True).stdout
    return len(out.splitlines())


def test_a_commit_that_cuts_max_num_seqs_is_a_throughput_regression_and_the_same_code_passes(clone, tmp_path):
    results = tmp_path / "ab.json"
    done = _ab(clone, "--base", "HEAD~1", "--", *SELECT, f"--perf-results={results}")
    assert done.returncode == 1, done.stdout + done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("request_throughput "))
    assert "REGRESSION" in row, done.stdout
    assert "engine settings differ: max_num_seqs 32 -> 4" in done.stdout
    data = json.loads(results.read_text())
    [test] = data["tests"]
    assert test["verdict"] == "regression" and test["fails"]
    assert len(test["base"]["repetitions"]) == len(test["head"]["repetitions"]) == 3
    assert data["ab"]["base"]["commit"] != data["ab"]["head"]["commit"]
    assert data["measurements"][0]["verdict"] == "regression"  # what perfsuite report and approve read

    same = _ab(clone, "--base", "HEAD", "--", *SELECT)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "test_throughput[vllm]" in same.stdout and "FAILS" not in same.stdout
    assert _worktrees(clone) == 1


def test_bad_input_is_refused_before_any_server_starts(clone, tmp_path):
    bad_ref = _ab(clone, "--base", "no-such-ref", "--", *SELECT, timeout=120)
    assert bad_ref.returncode == 2 and "--base no-such-ref: no such commit, branch or tag" in bad_ref.stderr
    none = _ab(clone, "--base", "HEAD", "--", *SELECT[:-1], "-k", "no_test_is_called_this", timeout=300)
    assert none.returncode == 2 and "select no perf test on either side" in none.stderr, none.stderr
    missing = _ab(clone, "--base", "HEAD", "--base-python", str(tmp_path / "nopython"), "--", *SELECT, timeout=60)
    assert missing.returncode == 2 and "no such interpreter" in missing.stderr


def test_a_base_python_without_the_framework_is_named(clone, tmp_path):
    """An environment with everything of this one but vLLM: a venv whose site-packages links every
    entry of ours except vllm's."""
    env_dir = tmp_path / "no-vllm"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    ours = Path(next(p for p in sys.path if p.endswith("site-packages")))
    theirs = next((env_dir / "lib").glob("python*/site-packages"))
    for entry in ours.iterdir():
        if not entry.name.lower().startswith(("vllm", "_vllm")):
            (theirs / entry.name).symlink_to(entry)
    python = env_dir / "bin" / "python"
    done = _ab(clone, "--base", "HEAD", "--base-python", str(python), "--", *SELECT, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"--base-python {python}: vllm cannot run there (vLLM is not installed" in done.stderr


def _marked(token: str) -> list[psutil.Process]:
    return marked_processes(MARKER, token)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_ab_run_leaves_no_worktree_folder_or_process(clone, tmp_path, sig):
    token = uuid.uuid4().hex
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, MARKER: token, "TMPDIR": str(tmp)}
    proc = subprocess.Popen(
        [*PERFSUITE, "ab", "--base", "HEAD", "--", *SELECT],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        for line in proc.stdout:  # until the pairs start: both sides' servers are starting or up
            if ": 3 pairs" in line or time.monotonic() > deadline:
                break
        time.sleep(20)  # into the servers' start or the pairs
        assert len(_marked(token)) > 3, "ab's workers and servers should be running"
        proc.send_signal(sig)
        proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    deadline = time.monotonic() + 30
    while _marked(token) and time.monotonic() < deadline:
        time.sleep(1)
    assert not _marked(token), [p.cmdline()[:3] for p in _marked(token)]
    assert _worktrees(clone) == 1
    assert not any(tmp.iterdir()), list(tmp.iterdir())


def test_a_test_new_in_a_dirty_head_is_reported_as_only_in_head(clone):
    """Uncommitted changes are measured as they are, and the output says so; a test that exists on one
    side only is reported as such (nothing to pair: no server starts)."""
    test = clone / "tests/perf/test_serving.py"
    before = test.read_text()
    test.write_text(before + '\n\ndef test_only_in_head(serving, perf):\n    perf.measure(serving, "chat")\n')
    try:
        done = _ab(
            clone, "--base", "HEAD", "--", SELECT[0], "-k", "test_only_in_head and vllm", "--gpu=cpu", timeout=300
        )
    finally:
        test.write_text(before)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "uncommitted changes, measured as they are" in done.stdout
    assert "test_only_in_head[vllm]: only in head" in done.stdout
