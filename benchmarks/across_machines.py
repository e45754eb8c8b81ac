"""What the committed baselines say on a machine they were not taken on, with and without fingerprints.

1. The suite's vLLM throughput test against the committed baselines/ as they are: the baseline's CPU
   differs from this machine's, so the verdict is `other-hardware` (not compared).
2. The same test against a copy of baselines/ in which that baseline's fingerprint is edited to this
   machine's (and moved into this machine's folder): what the gate said before fingerprints, comparing
   numbers from another CPU as if they were this one's.

Run: .venv/bin/python benchmarks/across_machines.py [--baseline-machine amd-epyc-family-25-model-1-stepping-1-2c]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from perfsuite.fingerprint import machine_slug, this_machine

TEST = ["tests/perf/test_serving.py", "-k", "test_throughput and vllm and not container", "--gpu=cpu"]
FILE = "tests.perf.test_serving.py--test_throughput[vllm].json"


def _verdict(baselines: Path, results: Path) -> tuple[str, list, list]:
    argv = [sys.executable, "-m", "pytest", *TEST, f"--perf-baseline-dir={baselines}", f"--perf-results={results}"]
    subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
    m = json.loads(results.read_text())["measurements"][0]
    rows = [(r["metric"], r["verdict"], r["change_pct"]) for r in m["comparison"] if r["verdict"] != "info"]
    return m["verdict"], m["notes"], rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline-machine", default="amd-epyc-family-25-model-1-stepping-1-2c")
    args = p.parse_args()
    here = this_machine()
    mine = machine_slug(here, "cpu")
    if mine == args.baseline_machine:
        print(f"this machine is {mine}, the baselines' own: run this on another CPU model")
        return 2
    scratch = Path(tempfile.mkdtemp(prefix="across-"))
    try:
        source = Path("baselines/cpu") / args.baseline_machine / FILE
        verdict, notes, _ = _verdict(Path("baselines"), scratch / "a.json")
        print(f"committed baselines ({args.baseline_machine}) on {mine}: {verdict}")
        print("  " + "\n  ".join(notes))
        edited = scratch / "baselines"
        (edited / "cpu" / mine).mkdir(parents=True)
        doc = json.loads(source.read_text())
        doc["provenance"]["hardware"] = here.to_dict()  # pretend it was taken here
        (edited / "cpu" / mine / FILE).write_text(json.dumps(doc))
        verdict, notes, rows = _verdict(edited, scratch / "b.json")
        print(f"the same baseline with its fingerprint edited to this machine's: {verdict}")
        for metric, v, change in rows:
            print(f"  {metric}: {v} ({change:+.1f}%)" if change is not None else f"  {metric}: {v}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
