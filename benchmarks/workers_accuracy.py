"""Accuracy with load-generator workers: one vLLM CPU server measured from 1 worker (this process),
2 worker processes, and (with --ray) 2 Ray actors on a local two-node Ray cluster, in
interleaved rounds (the order rotates each round so drift hits every mode alike). The medians of
request throughput, TTFT p50 and TPOT p50 per mode, and each mode's ratio to the 1-worker medians.
Target (issue 13): 1 and 2 workers within 3%; Ray actors agree with local workers.

Run: .venv/bin/python benchmarks/workers_accuracy.py [--rounds 5] [--requests 96] [--ray] [--out FILE]
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

from tabulate import tabulate
from transformers import AutoTokenizer

from perfsuite.fingerprint import this_machine
from perfsuite.frameworks import EngineSettings
from perfsuite.hardware import resolve_profile
from perfsuite.loadgen import Load
from perfsuite.model import build_model, corpus_text
from perfsuite.runner import run
from perfsuite.workloads import PromptBuilder, get_workload
from perfsuite_plugins.vllm import VLLMPlugin

METRICS = ("request_throughput", "ttft_p50_ms", "tpot_p50_ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=96)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--ray", action="store_true", help="also 2 Ray actors on a local 2-node cluster")
    ap.add_argument("--out", help="write every round's numbers to this JSON file")
    args = ap.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)  # 2 workers on the client's one core: the point here

    model = str(build_model())
    prompts = PromptBuilder(AutoTokenizer.from_pretrained(model), corpus_text())
    workload = get_workload("throughput")
    profile = resolve_profile("cpu")
    cluster = folder = None
    if args.ray:
        from ray.cluster_utils import Cluster

        folder = tempfile.mkdtemp(prefix="ps-ray-")
        os.environ["RAY_TMPDIR"] = folder  # Ray writes ray_current_cluster under it, not /tmp/ray
        os.mkdir(os.path.join(folder, "ray"))
        node = {"num_cpus": 1}
        try:
            head = node | {"include_dashboard": False, "temp_dir": folder}
            cluster = Cluster(initialize_head=True, head_node_args=head)
            cluster.add_node(**node)
            cluster.wait_for_nodes(timeout=120)
        except BaseException:
            if cluster:
                cluster.shutdown()
            shutil.rmtree(folder, ignore_errors=True)
            raise
    modes = {"1 worker": (1, None), "2 processes": (2, None)}
    if cluster:
        modes["2 Ray actors"] = (2, cluster.address)
    logs = tempfile.mkdtemp(prefix="workers-accuracy-")  # the server's log, removed at the end
    server = VLLMPlugin().start(model, EngineSettings(), profile, Path(logs))
    rows = []
    try:
        target = server.target("completions")  # telemetry on, as in the suite
        warm = Load.closed(args.concurrency, requests=32, warmup_requests=0)
        run(target, workload, warm, prompts, profile, repetitions=1)  # the server's first, slower runs
        names = list(modes)
        for i in range(args.rounds):
            for name in names[i % len(names) :] + names[: i % len(names)]:
                workers, address = modes[name]
                load = Load.closed(args.concurrency, requests=args.requests, warmup_requests=8, seed=i, workers=workers)
                r = run(target, workload, load, prompts, profile, repetitions=1, ray_address=address)
                row = {"round": i, "mode": name, **{k: r.metrics[k] for k in METRICS}}
                row["client_cpu_percent"] = r.client[0]["cpu_percent"]
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        server.stop()
        shutil.rmtree(logs, ignore_errors=True)
        if cluster:
            cluster.shutdown()
            shutil.rmtree(folder, ignore_errors=True)

    base = {k: statistics.median(r[k] for r in rows if r["mode"] == "1 worker") for k in METRICS}
    table = []
    for name in modes:
        med = {k: statistics.median(r[k] for r in rows if r["mode"] == name) for k in METRICS}
        table.append(
            [name, sum(1 for r in rows if r["mode"] == name)]
            + [f"{med[k]:.3g} ({med[k] / base[k] - 1:+.1%})" for k in METRICS]
        )
    print(tabulate(table, headers=["mode", "rounds", *(f"{k} (vs 1 worker)" for k in METRICS)], tablefmt="github"))
    if args.out:
        Path(args.out).write_text(json.dumps({"machine": this_machine().to_dict(), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
