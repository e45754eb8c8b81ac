"""The `perfsuite ab` command line: its options, the pytest options it keeps for itself, and its output."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tabulate import tabulate

from perfsuite.errors import UsageError

__all__ = ["add_parser"]

# pytest options the coordinator uses itself (they are not passed to the sides' planning runs):
# option -> AbOptions field.
OWN_PYTEST_OPTIONS = {
    "--perf-results": "results",
    "--perf-model": "model",
    "--perf-log-dir": "log_dir",
    "--perf-start-timeout": "start_timeout_s",
}


def split_pytest_args(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """(the arguments for the sides' pytest, {AbOptions field: value} of the options ab keeps)."""
    passed, own = [], {}
    it = iter(args)
    for arg in it:
        name, eq, value = arg.partition("=")
        if name in OWN_PYTEST_OPTIONS:
            if not eq:
                value = next(it, None)
                if value is None:
                    raise UsageError(f"{name} needs a value")
            own[OWN_PYTEST_OPTIONS[name]] = value
        else:
            passed.append(arg)
    return passed, own


def add_parser(sub) -> None:
    ab = sub.add_parser(
        "ab",
        help="measure base (a git ref) against head side by side on this machine, in one run; exit 1 on a regression",
        description=(
            "Each selected perf test runs on base and head in alternating pairs (ABBA) by one load generator; "
            "the verdict comes from the paired differences. Example: perfsuite ab --base origin/main -- "
            'tests/perf/test_serving.py -k "throughput and vllm" --gpu=cpu'
        ),
    )
    ab.add_argument("--base", required=True, help="git ref of the base: a branch, tag or commit")
    ab.add_argument("--head", help="git ref of the head (default: the working tree as it is, uncommitted changes too)")
    ab.add_argument("--base-python", default=sys.executable, help="interpreter whose environment runs base's servers")
    ab.add_argument("--head-python", default=sys.executable, help="interpreter whose environment runs head's servers")
    ab.add_argument("--pairs", type=int, default=3, help="pairs of repetitions per test (default 3)")
    ab.add_argument(
        "--switch",
        choices=["pause", "restart"],
        help="keep both sides' servers up and pause the idle one (default on the cpu profile), or stop one "
        "to start the other (default on GPU profiles, where two servers do not fit in memory)",
    )
    ab.add_argument(
        "--min-repetition-s",
        type=float,
        default=0.0,
        help="lengthen each test's repetitions (both sides alike, from the warm-up's duration) to about this "
        "many seconds: short repetitions are mostly noise on a shared machine (default: the test's own load)",
    )
    ab.add_argument(
        "pytest_args",
        nargs="*",
        help="after --: pytest arguments selecting the perf tests (--perf-results, --perf-model, --perf-log-dir "
        "and --perf-start-timeout are ab's own)",
    )
    ab.set_defaults(func=command)


def _python(path: str, side: str) -> str:
    p = Path(path)
    if not (p.is_file() or (p.parent / p.name).exists()):
        raise UsageError(f"--{side}-python {path}: no such interpreter")
    return path


def command(args: argparse.Namespace) -> int:
    from perfsuite.ab.run import AbOptions, run_ab
    from perfsuite.signals import SigtermAsInterrupt

    passed, own = split_pytest_args(list(args.pytest_args))
    opts = AbOptions(
        base=args.base,
        head=args.head,
        base_python=_python(args.base_python, "base"),
        head_python=_python(args.head_python, "head"),
        pairs=args.pairs,
        pytest_args=tuple(passed),
        results=Path(own["results"]) if "results" in own else None,
        repo=Path.cwd(),
        model=own.get("model"),
        log_dir=Path(own["log_dir"]) if "log_dir" in own else None,
        start_timeout_s=float(own.get("start_timeout_s", 600)),
        switch=args.switch,
        min_repetition_s=args.min_repetition_s,
    )
    sigterm = SigtermAsInterrupt()  # a CI cancel ends the run as Ctrl-C does: worktrees and servers removed
    sigterm.install()
    try:
        report = run_ab(opts, say=lambda line: print(line, flush=True))
    finally:
        sigterm.uninstall()
    print(render(report))
    return report.exit_code


def render(report) -> str:
    """Every test's table (base, head, change, interval, tolerance, verdict), then a summary."""
    from perfsuite.report import comparison_table

    out = []
    for t in report.tests:
        out.append(f"\n== {t.test_id}: {t.verdict.value.upper() if t.fails else t.verdict.value}")
        if t.why:
            out.append(t.why)
        if t.judgement:
            if t.judgement.rows:
                out.append(comparison_table([r.as_dict() for r in t.judgement.rows], sides=("base", "head")))
            out += [f"note: {n}" for n in t.judgement.notes]
    summary = [[t.test_id, t.verdict.value, "FAILS" if t.fails else ""] for t in report.tests]
    out.append("\n" + tabulate(summary, headers=["test", "verdict", ""], tablefmt="simple"))
    out += [f"ab: {n}" for n in report.notes()]
    out.append(f"ab: wall time {report.wall_s:.0f} s; exit {report.exit_code}")
    return "\n".join(out)
