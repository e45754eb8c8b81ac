"""`perfsuite ab` and the stored-baseline gate run as a user runs them, on unchanged code (A/A), quiet
and beside a CPU-hogging neighbour that starts and stops; with wall times.

Each round, in this order:
  1. quiet: `pytest <TEST> --perf-update-baselines` into a scratch baseline folder (the stored baseline);
  2. quiet: `pytest <TEST>` against it (the single-sided gate; its wall time is the reference);
  3. quiet: `perfsuite ab --base HEAD -- <TEST>` (A/A);
  4. with the neighbour: `pytest <TEST>` against the quiet baseline of step 1;
  5. with the neighbour: `perfsuite ab --base HEAD -- <TEST>`.
The neighbour is one process spinning a core for --hog seconds, then resting as long, and so on, so it
starts and stops during each run. Every run's verdicts (from its results file), exit code and wall time
go to the JSON file, written after each run.

Run (from a clean checkout, HEAD = the code measured):
  .venv/bin/python benchmarks/ab_end_to_end.py --rounds 3 --out benchmarks/data/ab-end-to-end.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from ab_experiment import _hog  # noqa: E402

from perfsuite.jsonfile import write_atomic  # noqa: E402

TEST = ["tests/perf/test_serving.py", "-k", "test_throughput and vllm and not container", "--gpu=cpu"]
PY = sys.executable


def _run(kind: str, argv: list[str], results: Path) -> dict:
    t = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    wall = time.monotonic() - t
    verdicts = []
    if results.exists():
        data = json.loads(results.read_text())
        measured = data.get("measurements", [])
        verdicts = [t["verdict"] for t in data["tests"]] if "tests" in data else [m["verdict"] for m in measured]
        rows = [
            {r["metric"]: [r["verdict"], r["change_pct"], r.get("low_pct"), r.get("high_pct")] for r in m["comparison"]}
            for m in measured
        ]
        results.unlink()
    else:
        rows = []
    print(f"{kind}: exit {done.returncode}, {wall:.0f} s, {verdicts}", flush=True)
    return {
        "kind": kind,
        "exit": done.returncode,
        "wall_s": round(wall, 1),
        "verdicts": verdicts,
        "rows": rows,
        "loadavg": os.getloadavg()[0],
        "tail": done.stdout[-1500:] if done.returncode not in (0, 1) else "",
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--hog", type=float, default=15.0, help="seconds on, seconds off (default 15)")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    out = Path(args.out)
    data = {"test": TEST, "hog_s": args.hog, "runs": []}
    from perfsuite.fingerprint import this_machine

    data["hardware"] = this_machine().to_dict()
    scratch = Path(tempfile.mkdtemp(prefix="ab-e2e-"))
    results = scratch / "results.json"
    baselines = scratch / "baselines"
    pytest_ = [PY, "-m", "pytest", *TEST, f"--perf-baseline-dir={baselines}", f"--perf-results={results}", "-q"]
    ab = [PY, "-m", "perfsuite.cli", "ab", "--base", "HEAD", "--", *TEST, f"--perf-results={results}"]
    try:
        for r in range(args.rounds):
            steps = [
                ("baseline (quiet)", [*pytest_, "--perf-update-baselines"], False),
                ("stored-baseline gate (quiet)", pytest_, False),
                ("ab A/A (quiet)", ab, False),
                ("stored-baseline gate (neighbour)", pytest_, True),
                ("ab A/A (neighbour)", ab, True),
            ]
            for kind, argv, hog in steps:
                with _hog(args.hog if hog else None):
                    run = _run(kind, argv, results)
                data["runs"].append({"round": r, **run})
                write_atomic(out, data)
    finally:
        subprocess.run(["rm", "-rf", str(scratch)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
