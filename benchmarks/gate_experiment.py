"""How often the regression gate cries wolf, and how often it catches a real slowdown, on the CPU default.

Two steps, so that the expensive one (real vLLM servers) runs once and the rule can be re-evaluated:

  collect   Start real vLLM servers again and again (every start is a new "CI run"), alternating a
            config A (the suite's default engine settings) and a slowed config B (a lower
            max_num_seqs than the load's concurrency, so fewer requests are decoded at a time), and
            on each server run many repetitions of the suite's loads through perfsuite.runner.run.
            Every repetition's metrics go to a JSON file (benchmarks/data/), written after each
            server session so that a run cut short keeps what it measured.

  evaluate  Replay the gate on those repetitions: draw a baseline group of R repetitions from one
            server session and a candidate group of R from another (disjoint, never the same
            session), build the baseline exactly as --perf-update-baselines would (make_baseline with
            the profile's noise floor) and judge the candidate with perfsuite.judge.judge. Both groups hold the
            same seeds (the same prompts), as a CI run and its baseline do. A/A pairs (A vs A) give
            the false-alarm rate; A/B pairs (baseline A, candidate B) the detection rate; A/0.8A pairs
            (A with its throughputs scaled by 0.8 and costs by 1.25) the detection of exactly 20%.

Run:
  .venv/bin/python benchmarks/gate_experiment.py collect --minutes 30 --out benchmarks/data/gate-cpu.json
  .venv/bin/python benchmarks/gate_experiment.py evaluate benchmarks/data/gate-cpu.json
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from perfsuite.decision import CONFIDENCE, decide
from perfsuite.frameworks import EngineSettings
from perfsuite.hardware import resolve_profile
from perfsuite.loadgen import Load
from perfsuite.measurement import Measurement
from perfsuite.metrics import METRICS
from perfsuite.verdict import Verdict

PROFILE_NAME = "cpu"
# The suite's loads (tests/perf/test_vllm_serving.py): closed loop of 8 users, 48 measured requests.
WORKLOADS = ("throughput", "chat")
CONFIGS = {"A": {}, "B": {"max_num_seqs": 6}}
KEEP = set(METRICS) | {"duration_s", "requests", "requests_ok"}


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def collect(args: argparse.Namespace) -> None:
    from transformers import AutoTokenizer

    from perfsuite.model import build_model, corpus_text
    from perfsuite.runner import provenance, run
    from perfsuite.workloads import PromptBuilder, get_workload
    from perfsuite_plugins.vllm import VLLMPlugin

    deadline = time.monotonic() + args.minutes * 60
    profile = resolve_profile(PROFILE_NAME)
    model = str(build_model())
    prompts = PromptBuilder(AutoTokenizer.from_pretrained(model), corpus_text())
    plugin = VLLMPlugin()
    out = Path(args.out)
    data = (
        json.loads(out.read_text())
        if out.exists() and args.append
        else {
            "what": "repetitions of the suite's loads on real vLLM servers, one server session per entry",
            "configs": {k: EngineSettings.from_kwargs(**v).to_dict() for k, v in CONFIGS.items()},
            "loads": {w: Load.closed(8, requests=48).to_dict() for w in WORKLOADS},
            "provenance": provenance(framework="vllm", framework_version=plugin.version(), model=Path(model).name),
            "sessions": [],
        }
    )
    logs = Path(tempfile.mkdtemp(prefix="gate-experiment-logs-"))
    longest = 120.0  # seconds a session takes; updated as they run
    order = args.order.split(",")
    n = len(data["sessions"])
    while time.monotonic() + longest < deadline:
        label = order[n % len(order)]
        settings = EngineSettings.from_kwargs(**CONFIGS[label])
        t0 = time.monotonic()
        server = plugin.start(model, settings, profile, logs, 600)
        session = {
            "config": label,
            "started": provenance()["date"],
            "load_avg_start": os.getloadavg(),
            "reps": {w: [] for w in WORKLOADS},
        }
        try:
            for i in range(args.reps):
                for w in WORKLOADS:  # interleaved, so that drift within a session hits both alike
                    wl = get_workload(w)
                    m = run(server.target(wl.api), wl, Load.closed(8, requests=48, seed=i), prompts, profile)
                    rep = {k: v for k, v in m.repetitions[0].items() if k in KEEP}
                    session["reps"][w].append({"seed": i, **rep})
        finally:
            server.stop()
        session["load_avg_end"] = os.getloadavg()
        session["seconds"] = round(time.monotonic() - t0, 1)
        longest = max(longest, session["seconds"])
        data["sessions"].append(session)
        _write(out, data)
        rps = [r["request_throughput"] for r in session["reps"]["throughput"]]
        print(
            f"session {n} config {label}: {session['seconds']} s, throughput req/s "
            f"{min(rps):.2f}-{max(rps):.2f}, load {session['load_avg_start'][0]:.2f}",
            flush=True,
        )
        n += 1
    print(f"done: {len(data['sessions'])} sessions in {out}", flush=True)


def _groups(reps: list[dict], size: int) -> list[list[dict]]:
    """Disjoint groups of `size` consecutive repetitions of one server session. Size 0 is the adaptive
    length (--perf-budget-s): the shortest run of 3 or more whose request throughput runner.run
    would find precise enough, all of the session's repetitions if none is (the budget)."""
    if size == 0:
        from perfsuite.runner import _stop_reason

        for n in range(3, len(reps) + 1):
            if _stop_reason(reps[:n], time.monotonic(), math.inf) == "precision":
                return [reps[:n]]
        return [reps]
    return [reps[i : i + size] for i in range(0, len(reps) - size + 1, size)]


def _measurement(group: list[dict], workload: str, scale: dict[str, float] | None = None) -> Measurement:
    """A measurement as the suite records it, from a group of repetitions; `scale` multiplies metrics
    (a synthetic slowdown)."""
    reps = [{k: v * (scale or {}).get(k, 1.0) for k, v in r.items() if k != "seed"} for r in group]
    keys = set().union(*reps)
    metrics = {}
    for k in keys:
        vals = [r[k] for r in reps if r.get(k) is not None and math.isfinite(r[k])]
        metrics[k] = statistics.median(vals) if vals else float("nan")
    return Measurement.from_dict(
        {
            "test_id": f"gate_experiment::{workload}",
            "profile": PROFILE_NAME,
            "device_kind": "cpu",
            "metrics": metrics,
            "repetitions": reps,
            "provenance": {},
        }
    )


def _pairs(base_sessions, cand_sessions, workload, size, max_pairs, rng):
    """(baseline group, candidate group) from different server sessions, at most max_pairs (sampled).

    Both groups hold the same seeds (as a CI run and the run that made its baseline do: repetition i
    sends the prompts of seed i), e.g. seeds 3-5 of one session against seeds 3-5 of another.
    """
    pairs = [
        (gb, gc)
        for sb in base_sessions
        for sc in cand_sessions
        if sb is not sc
        for gb, gc in zip(_groups(sb["reps"][workload], size), _groups(sc["reps"][workload], size))
    ]
    if len(pairs) > max_pairs:
        pairs = rng.sample(pairs, max_pairs)
    return pairs


def _rate(k: int, n: int) -> str:
    from scipy.stats import binomtest

    if n == 0:
        return "-"
    ci = binomtest(k, n).proportion_ci(0.95)
    return f"{k / n:.1%} ({k}/{n}; {ci.low:.1%}-{ci.high:.1%})"


def evaluate(args: argparse.Namespace) -> None:
    from tabulate import tabulate

    from perfsuite.baseline import make_baseline
    from perfsuite.judge import judge

    if args.confidence != CONFIDENCE:  # the rule at another confidence, for this experiment only
        import perfsuite.baseline

        perfsuite.baseline.decide = functools.partial(decide, confidence=args.confidence)
    data = json.loads(Path(args.data).read_text())
    chosen = data["sessions"][: args.first] if args.first else data["sessions"]
    sessions = {k: [s for s in chosen if s["config"] == k] for k in CONFIGS}
    a, b = sessions["A"], sessions["B"]
    floor = dict(resolve_profile(PROFILE_NAME).min_tolerance)
    rng = random.Random(0)
    summary = {
        "data": args.data,
        "confidence": args.confidence,
        "sessions": {k: len(v) for k, v in sessions.items()},
        "loss": {},
        "rows": [],
    }

    def median_of(ss, w, k):
        return statistics.median(r[k] for s in ss for r in s["reps"][w])

    for w in WORKLOADS:
        if a and b:
            summary["loss"][w] = {
                k: median_of(b, w, k) / median_of(a, w, k) - 1
                for k in ("request_throughput", "output_throughput", "ttft_p50_ms", "tpot_p50_ms")
            }
    floors = [None] + [tuple(float(x) for x in f.split("/")) for f in args.floors.split(",") if f]
    table = []
    for w in WORKLOADS:
        for size in [int(x) for x in args.sizes.split(",")]:
            for f in floors:
                if f is None:
                    min_tol, label = floor, "profile"
                else:
                    tp, ms = f if len(f) == 2 else (f[0], floor["ms"])
                    min_tol, label = {**floor, "req/s": tp, "tok/s": tp, "$": tp, "ms": ms}, f"{tp:.0%}/{ms:.0%}"
                lengths = [len(g) for ss in (a, b) for x in ss for g in _groups(x["reps"][w], size)]
                shown = size or f"3-{max(lengths)} (mean {statistics.fmean(lengths):.1f})"
                out = {"workload": w, "repetitions": shown, "floor": label}
                for kind, base_s, cand_s, scale in (
                    ("A/A", a, a, None),
                    ("A/B", a, b, None),
                    (
                        "A/0.8A",
                        a,
                        a,
                        {
                            "request_throughput": 0.8,
                            "output_throughput": 0.8,
                            "total_token_throughput": 0.8,
                            "goodput": 0.8,
                            "cost_per_1m_requests": 1.25,
                            "cost_per_1m_output_tokens": 1.25,
                        },
                    ),
                ):
                    pairs = _pairs(base_s, cand_s, w, size, args.max_pairs, rng)
                    fails, inconclusive, by_metric = 0, 0, {}
                    for gb, gc in pairs:
                        base = make_baseline(_measurement(gb, w), min_tolerance=min_tol)
                        cand = _measurement(gc, w, scale)
                        j = judge(cand, base)
                        fails += j.verdict is Verdict.REGRESSION
                        inconclusive += j.verdict is Verdict.INCONCLUSIVE
                        for r in j.rows:
                            if r.verdict in ("regression", "inconclusive"):
                                key = f"{r.metric}:{r.verdict}"
                                by_metric[key] = by_metric.get(key, 0) + 1
                    out[kind] = {
                        "pairs": len(pairs),
                        "regression": fails,
                        "inconclusive": inconclusive,
                        "by_metric": by_metric,
                    }
                summary["rows"].append(out)
                table.append(
                    [
                        w,
                        shown,
                        label,
                        _rate(out["A/A"]["regression"], out["A/A"]["pairs"]),
                        _rate(out["A/A"]["inconclusive"], out["A/A"]["pairs"]),
                        _rate(out["A/B"]["regression"], out["A/B"]["pairs"]),
                        _rate(out["A/B"]["regression"] + out["A/B"]["inconclusive"], out["A/B"]["pairs"]),
                        _rate(out["A/0.8A"]["regression"], out["A/0.8A"]["pairs"]),
                    ]
                )
                print(table[-1], flush=True)
    print("sessions:", summary["sessions"])
    for w, loss in summary["loss"].items():
        print(f"B vs A on {w}: " + ", ".join(f"{k} {v:+.1%}" for k, v in loss.items()))
    print(
        tabulate(
            table,
            headers=[
                "workload",
                "R",
                "floor",
                "A/A false alarms",
                "A/A inconclusive",
                "A/B detected",
                "A/B flagged (regression or inconclusive)",
                "A/0.8A detected",
            ],
            tablefmt="github",
        )
    )
    if args.json:
        _write(Path(args.json), summary)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect", help="run real vLLM servers and keep every repetition")
    c.add_argument("--minutes", type=float, default=30, help="stop starting sessions after this (default 30)")
    c.add_argument("--reps", type=int, default=9, help="repetitions per workload per server session")
    c.add_argument("--order", default="A,B", help="configs in turn, e.g. A,B")
    c.add_argument("--out", default="benchmarks/data/gate-cpu.json")
    c.add_argument("--append", action="store_true", help="add sessions to an existing file")
    e = sub.add_parser("evaluate", help="replay the gate on collected repetitions")
    e.add_argument("data", help="a file written by collect")
    e.add_argument(
        "--sizes", default="1,2,3,4,5,0", help="repetitions per run to evaluate; 0: adaptive (default 1,2,3,4,5,0)"
    )
    e.add_argument(
        "--floors",
        default="0.1,0.1/1.0,0.15/1.0",
        help="noise floors to try besides the profile's: THROUGHPUT_AND_COST[/LATENCY], e.g. 0.1/1.0",
    )
    e.add_argument("--max-pairs", type=int, default=600, help="pairs sampled per cell (default 600)")
    e.add_argument("--confidence", type=float, default=CONFIDENCE, help=f"of the intervals (default {CONFIDENCE})")
    e.add_argument("--first", type=int, help="only the first N sessions (e.g. the quieter start of a run)")
    e.add_argument("--json", help="write the summary here")
    args = ap.parse_args(argv)
    if args.cmd == "collect":
        collect(args)
    else:
        evaluate(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
