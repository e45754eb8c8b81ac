"""How often `perfsuite ab` cries wolf, and how often it catches a real slowdown, on the CPU default.

Two steps, so that the expensive one (real vLLM servers) runs once and the rule can be re-evaluated:

  collect   For each session, start one real vLLM server per config (a new server per session, as each
            `perfsuite ab` run starts its own), all kept up, each paused (SIGSTOP) while another is
            measured, exactly as `perfsuite ab` does. Then `--rounds` rounds: in each, every config gets
            one repetition of the workload with the round's prompt seed, in an order that reverses every
            round (A B C, C B A, ...: ABBA for two configs), through perfsuite.runner.run. Every
            repetition's metrics, start time and the load average go to a JSON file, written after
            each session. `--hog SECONDS` runs a CPU-hogging neighbour (one busy process) for that long
            every other such period, to show drift.

  evaluate  Replay `perfsuite ab`'s rule (perfsuite.ab.verdict) on those repetitions: an A/A run is two
            servers of the same config in one session, N consecutive pairs of rounds; an A/B run
            pairs config A with a changed one. Also A/(1+x)A: A's own repetitions with throughput
            scaled, for the power at an exact change x with A/A's noise.

Run:
  .venv/bin/python benchmarks/ab_experiment.py collect --sessions 6 --rounds 12 \\
      --config A= --config A2= --config B=max_num_seqs=7 --out benchmarks/data/ab-cpu.json
  .venv/bin/python benchmarks/ab_experiment.py evaluate benchmarks/data/ab-cpu.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from perfsuite.frameworks import EngineSettings, load_frameworks
from perfsuite.hardware import resolve_profile
from perfsuite.jsonfile import write_atomic
from perfsuite.loadgen import Load
from perfsuite.metrics import METRICS
from perfsuite.runner import run
from perfsuite.server import pause_tree, resume_tree
from perfsuite.session import resolve_model
from perfsuite.workloads import PromptBuilder, get_workload

KEEP = set(METRICS) | {"duration_s", "requests", "requests_ok"}


def _config(text: str) -> tuple[str, dict]:
    """NAME=key=value,key=value (values parsed as JSON where they can be)."""
    name, _, rest = text.partition("=")
    settings = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        with contextlib.suppress(json.JSONDecodeError):
            value = json.loads(value)
        settings[key] = value
    return name, settings


@contextlib.contextmanager
def _hog(period_s: float | None):
    """A neighbour that spins one core for `period_s`, rests `period_s`, and so on (None: nothing)."""
    if not period_s:
        yield
        return
    code = (
        "import time\n"
        f"p={period_s}\n"
        "while True:\n"
        "    t=time.monotonic()\n"
        "    while time.monotonic()-t<p: pass\n"
        "    time.sleep(p)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        yield
    finally:
        proc.kill()
        proc.wait(timeout=10)


def collect(args: argparse.Namespace) -> None:
    configs = dict(_config(c) for c in args.config)
    profile = resolve_profile("cpu")
    model = resolve_model(None)
    plugin = load_frameworks()["vllm"]
    from transformers import AutoTokenizer

    from perfsuite.model import corpus_text

    prompts = PromptBuilder(AutoTokenizer.from_pretrained(model), corpus_text(), 0)
    wl = get_workload(args.workload)
    out = Path(args.out)
    data = json.loads(out.read_text()) if out.exists() and args.append else {"configs": configs, "sessions": []}
    data.update(
        workload=args.workload, load={"users": 8, "requests": args.requests, "warmup_requests": 8}, hog_s=args.hog
    )
    from perfsuite.fingerprint import this_machine

    data["hardware"] = this_machine().to_dict()
    names = list(configs)
    with _hog(args.hog):
        for s in range(args.sessions):
            logs = Path(tempfile.mkdtemp(prefix="ab-exp-"))
            servers = {}
            session = {"started": time.time(), "starts_s": {}, "reps": []}
            try:
                for name in names:
                    t = time.monotonic()
                    servers[name] = plugin.start(model, EngineSettings.from_kwargs(**configs[name]), profile, logs, 600)
                    session["starts_s"][name] = round(time.monotonic() - t, 1)
                    pause_tree(servers[name].process.tree())
                for r in range(args.rounds):
                    order = names if r % 2 == 0 else names[::-1]
                    for name in order:
                        srv = servers[name]
                        procs = srv.process.tree()
                        t = time.monotonic()
                        resume_tree(procs)
                        resumed = time.monotonic() - t
                        load = Load.closed(8, requests=args.requests, seed=r)
                        res = run(srv.target(wl.api), wl, load, prompts, profile, repetitions=1)
                        t = time.monotonic()
                        pause_tree(srv.process.tree())
                        metrics = {k: v for k, v in res.metrics.items() if k in KEEP}
                        session["reps"].append(
                            {
                                "config": name,
                                "round": r,
                                "t": round(time.time() - session["started"], 2),
                                "loadavg": os.getloadavg()[0],
                                "switch_ms": round((resumed + time.monotonic() - t) * 1e3, 2),
                                "errors": res.error_count,
                                "metrics": metrics,
                            }
                        )
                    print(
                        f"session {s} round {r}: "
                        + ", ".join(
                            f"{x['config']} {x['metrics']['request_throughput']:.2f}"
                            for x in session["reps"][-len(names) :]
                        ),
                        flush=True,
                    )
            finally:
                for srv in servers.values():
                    srv.stop()
                shutil.rmtree(logs, ignore_errors=True)
            data["sessions"].append(session)
            write_atomic(out, data)


# --- evaluate ---------------------------------------------------------------------------------------

GATED = ("request_throughput", "output_throughput", "ttft_p50_ms", "tpot_p50_ms", "cost_per_1m_requests")
THROUGHPUTS = ("request_throughput", "output_throughput", "total_token_throughput", "goodput")
COSTS = ("cost_per_1m_requests", "cost_per_1m_output_tokens")


def _measurement(reps: list[dict]):
    """A Measurement of these repetitions, as perfsuite ab builds one, for ab's own rule to judge."""
    from perfsuite.measurement import Measurement
    from perfsuite.runner import _combine

    return Measurement(
        test_id="t",
        framework="vllm",
        framework_version="v",
        model="m",
        profile="cpu",
        device_kind="cpu",
        workload={},
        load={},
        engine={},
        price_per_hour=0.1,
        price_source="",
        provenance={},
        metrics=_combine([dict(r, requests=48.0, requests_ok=48.0) for r in reps]),
        repetitions=tuple(reps),
    )


def _scaled(reps: list[dict], factor: float) -> list[dict]:
    """Repetitions with every throughput x factor and every cost / factor: exactly that change, with
    the noise the repetitions had."""
    out = []
    for r in reps:
        r = dict(r)
        for k in THROUGHPUTS:
            if k in r:
                r[k] *= factor
        for k in COSTS:
            if k in r:
                r[k] /= factor
        out.append(r)
    return out


def _series(session: dict, config: str) -> dict[int, dict]:
    return {x["round"]: x["metrics"] for x in session["reps"] if x["config"] == config and not x["errors"]}


def _windows(rounds: list[int], n: int, disjoint: bool) -> list[list[int]]:
    step = n if disjoint else 1
    return [rounds[i : i + n] for i in range(0, len(rounds) - n + 1, step)]


def _clopper_pearson_upper(k: int, n: int, confidence: float = 0.95) -> float:
    from scipy.stats import beta

    return 1.0 if k >= n else float(beta.ppf(confidence, k + 1, n - k))


def evaluate(args: argparse.Namespace) -> None:
    from perfsuite.ab.pairs import AB_TOLERANCE, judge_pairs
    from perfsuite.metrics import METRICS

    data = json.loads(Path(args.data).read_text())
    base, aa, ab = args.base, args.aa, args.ab
    pairs = args.pairs
    result = {"pairs": pairs, "tolerance": AB_TOLERANCE, "warmup_rounds_dropped": args.warmup, "comparisons": {}}
    shifts = [float(x) for x in args.shifts.split(",") if x]
    kinds = {f"A/A ({base} vs {aa})": (aa, 1.0)}
    if ab:
        kinds[f"A/B ({base} vs {ab}, real)"] = (ab, 1.0)
    kinds.update({f"A/A x {1 + x:g} (exact {x:+.0%})": (aa, 1 + x) for x in shifts})
    per_pair = {"pairs": 0, "beyond": 0, "diffs": []}
    session_means = []
    for kind, (other, factor) in kinds.items():
        counts = {"disjoint": [0, 0], "sliding": [0, 0], "verdicts": {}}
        for session in data["sessions"]:
            b, o = _series(session, base), _series(session, other)
            rounds = sorted(set(b) & set(o))[args.warmup :]
            if kind.startswith("A/A (") and rounds:
                diffs = [
                    (o[r]["request_throughput"] - b[r]["request_throughput"]) / b[r]["request_throughput"]
                    for r in rounds
                ]
                session_means.append(statistics.mean(diffs))
                for r in rounds:
                    per_pair["pairs"] += 1
                    per_pair["diffs"].append(round(diffs[rounds.index(r)], 4))
                    worse = any(
                        (o[r][k] - b[r][k]) / abs(b[r][k]) * (1 if METRICS[k].better == "higher" else -1)
                        < -AB_TOLERANCE[METRICS[k].unit]
                        for k in GATED
                        if b[r].get(k)
                    )
                    per_pair["beyond"] += worse
            for mode in ("disjoint", "sliding"):
                for w in _windows(rounds, pairs, mode == "disjoint"):
                    head_reps = _scaled([o[r] for r in w], factor)
                    j = judge_pairs(_measurement([b[r] for r in w]), _measurement(head_reps))
                    counts[mode][0] += j.verdict.value == "regression"
                    counts[mode][1] += 1
                    if mode == "disjoint":
                        counts["verdicts"][j.verdict.value] = counts["verdicts"].get(j.verdict.value, 0) + 1
        result["comparisons"][kind] = counts
    k, n = per_pair["beyond"], per_pair["pairs"]
    upper = _clopper_pearson_upper(k, n)
    result["aa_pairs"] = {
        "pairs": n,
        "pairs_with_a_gated_metric_beyond_tolerance": k,
        "upper_95": upper,
        "bound_on_false_alarms_if_pairs_independent": upper**pairs,
        "throughput_change_sd": statistics.pstdev(per_pair["diffs"]) if per_pair["diffs"] else None,
        "session_mean_throughput_change": [round(x, 4) for x in session_means],
    }
    real = []
    for session in data["sessions"]:
        b, o = _series(session, base), _series(session, ab) if ab else {}
        for r in sorted(set(b) & set(o))[args.warmup :]:
            real.append((o[r]["request_throughput"] - b[r]["request_throughput"]) / b[r]["request_throughput"])
    if real:
        result["ab_change"] = {"median": statistics.median(real), "mean": statistics.mean(real), "n": len(real)}
    print(json.dumps(result, indent=1))
    if args.json:
        write_atomic(Path(args.json), result)


def sweep(args: argparse.Namespace) -> None:
    """False alarms and detection over tolerances (throughput, cost; latency gets twice) and pairs."""
    from perfsuite.ab import pairs as ab_pairs

    data = json.loads(Path(args.data).read_text())
    sessions = [data["sessions"][i] for i in map(int, args.sessions.split(","))] if args.sessions else data["sessions"]
    kinds = {"A/A": (args.aa, 1.0), "A/B real": (args.ab, 1.0)}
    kinds.update({f"exact {x:+.0%}": (args.aa, 1 + x) for x in (-0.05, -0.1, -0.2)})
    table = []
    saved = dict(ab_pairs.AB_TOLERANCE)
    try:
        for tol in map(float, args.tolerances.split(",")):
            ab_pairs.AB_TOLERANCE.update({"req/s": tol, "tok/s": tol, "$": tol, "ms": 2 * tol})
            for n in map(int, args.pair_counts.split(",")):
                row = {"tolerance": tol, "pairs": n}
                for kind, (other, factor) in kinds.items():
                    hits = total = 0
                    for session in sessions:
                        b, o = _series(session, args.base), _series(session, other)
                        rounds = sorted(set(b) & set(o))[args.warmup :]
                        for w in _windows(rounds, n, disjoint=False):
                            j = ab_pairs.judge_pairs(
                                _measurement([b[r] for r in w]), _measurement(_scaled([o[r] for r in w], factor))
                            )
                            hits += j.verdict.value == "regression"
                            total += 1
                    row[kind] = f"{hits / total:.1%} ({hits}/{total})" if total else "-"
                table.append(row)
    finally:
        ab_pairs.AB_TOLERANCE.update(saved)
    from tabulate import tabulate

    print(tabulate(table, headers="keys", tablefmt="github"))
    if args.json:
        write_atomic(Path(args.json), {"sessions": args.sessions or "all", "table": table})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--config", action="append", required=True, help="NAME=key=value,... (engine settings)")
    c.add_argument("--sessions", type=int, default=1)
    c.add_argument("--rounds", type=int, default=6)
    c.add_argument("--workload", default="throughput")
    c.add_argument("--requests", type=int, default=48, help="measured requests per repetition (the suite's: 48)")
    c.add_argument("--hog", type=float, default=None, help="seconds on, seconds off of a CPU-hogging neighbour")
    c.add_argument("--append", action="store_true", help="add sessions to an existing file")
    c.add_argument("--out", required=True)
    c.set_defaults(func=collect)
    e = sub.add_parser("evaluate")
    e.add_argument("data")
    e.add_argument("--base", default="A", help="the config that plays base")
    e.add_argument("--aa", default="A2", help="the same config's second server (A/A)")
    e.add_argument("--ab", default="B", help="the changed config (A/B); empty: none")
    e.add_argument("--pairs", type=int, default=3)
    e.add_argument("--warmup", type=int, default=1, help="first rounds of a session dropped (ab's warm-up)")
    e.add_argument("--shifts", default="-0.05,-0.1,-0.2", help="exact throughput changes applied to A/A")
    e.add_argument("--json", help="write the evaluation here")
    e.set_defaults(func=evaluate)
    w = sub.add_parser("sweep", help="regression rate over tolerances and pair counts (sliding windows)")
    w.add_argument("data")
    w.add_argument("--base", default="A")
    w.add_argument("--aa", default="A2")
    w.add_argument("--ab", default="B")
    w.add_argument("--warmup", type=int, default=1)
    w.add_argument("--sessions", default="", help="comma-separated session indexes (default: all)")
    w.add_argument("--tolerances", default="0.05,0.08,0.1")
    w.add_argument("--pair-counts", default="3,5,7")
    w.add_argument("--json")
    w.set_defaults(func=sweep)
    args = p.parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
