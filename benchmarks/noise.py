"""Noise of the CPU default: coefficient of variation of request throughput and TTFT p50 over repeated
runs, (a) against one server, (b) each on a freshly started server (what CI sees from run to run), and
(c) against one server with perfsuite's CPU placement undone (what vLLM does left alone).

Run: .venv/bin/python benchmarks/noise.py [--runs 5] [--modes same,restart,unplaced]
"""

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import psutil
from tabulate import tabulate
from transformers import AutoTokenizer

from perfsuite.frameworks import EngineSettings
from perfsuite.hardware import resolve_profile
from perfsuite.loadgen import Load
from perfsuite.model import build_model, corpus_text
from perfsuite.protocols import OpenAIProtocol
from perfsuite.runner import Target, TelemetrySources, run
from perfsuite.workloads import PromptBuilder, get_workload
from perfsuite_plugins.vllm import VLLMPlugin

PROFILE = resolve_profile("cpu")
WORKLOADS = ("chat", "throughput")


def start(model):
    return VLLMPlugin().start(model, EngineSettings(), PROFILE, Path(tempfile.mkdtemp()))


def unplace(server) -> None:
    """Give every process but vLLM's worker all cores back, and the client too."""
    everything = set(range(psutil.cpu_count()))
    for p in server.process.tree():
        if "Worker" not in p.name():
            for t in p.threads():
                os.sched_setaffinity(t.id, everything)
    server.client_cpus = None


def one_run(server, prompts, workload, seed):
    wl = get_workload(workload)
    target = Target(
        server.endpoint,
        OpenAIProtocol(wl.api),
        TelemetrySources(enabled=False),
        client_cpus=frozenset(server.client_cpus) if server.client_cpus else None,
    )
    m = run(target, wl, Load.closed(8, requests=48, seed=seed), prompts, PROFILE, repetitions=1)
    return m.metrics["request_throughput"], m.metrics["ttft_p50_ms"]


def cv(xs):
    return statistics.stdev(xs) / statistics.fmean(xs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--modes", default="same,restart,unplaced")
    args = ap.parse_args()
    model = str(build_model())
    prompts = PromptBuilder(AutoTokenizer.from_pretrained(model), corpus_text())
    results = {}  # (mode, workload) -> list of (rps, ttft)
    for mode in args.modes.split(","):
        if mode == "restart":
            for i in range(args.runs):
                server = start(model)
                try:
                    for w in WORKLOADS:
                        results.setdefault((mode, w), []).append(one_run(server, prompts, w, seed=i))
                finally:
                    server.stop()
        else:
            server = start(model)
            try:
                if mode == "unplaced":
                    unplace(server)
                for i in range(args.runs):
                    for w in WORKLOADS:
                        results.setdefault((mode, w), []).append(one_run(server, prompts, w, seed=i))
            finally:
                server.stop()
        for w in WORKLOADS:
            print(mode, w, [(round(a, 2), round(b, 1)) for a, b in results[(mode, w)]], flush=True)
    rows = []
    for (mode, w), xs in results.items():
        rps, ttft = [x[0] for x in xs], [x[1] for x in xs]
        rows.append(
            [
                mode,
                w,
                len(xs),
                f"{statistics.median(rps):.2f}",
                f"{min(rps):.2f}-{max(rps):.2f}",
                f"{cv(rps):.1%}",
                f"{statistics.median(ttft):.1f}",
                f"{min(ttft):.1f}-{max(ttft):.1f}",
                f"{cv(ttft):.1%}",
            ]
        )
    print(
        tabulate(
            rows,
            headers=[
                "mode",
                "workload",
                "runs",
                "req/s median",
                "req/s range",
                "req/s CV",
                "TTFT p50 median ms",
                "TTFT p50 range",
                "TTFT p50 CV",
            ],
            tablefmt="github",
        )
    )


if __name__ == "__main__":
    main()
