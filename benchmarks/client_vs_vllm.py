"""Client cost and agreement: perfsuite's load generator beside vLLM's own client (vllm.benchmarks.serve),
against the same vLLM CPU server, the same lengths (128 in / 128 out, ignore_eos) and concurrency.

- Client cost: CPU seconds the client process spends per 1,000 streamed output tokens, counted over the
  load phase only (perfsuite: run_load; vLLM: its benchmark() coroutine), both pinned to the same core.
- Agreement: median TTFT, median TPOT and output tok/s from each client.

Run: .venv/bin/python benchmarks/client_vs_vllm.py [--rounds 3] [--requests 200]
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate
from transformers import AutoTokenizer

from perfsuite.frameworks import EngineSettings
from perfsuite.hardware import resolve_profile
from perfsuite.loadgen import Load, run_load
from perfsuite.metrics import summarize
from perfsuite.model import build_model, corpus_text
from perfsuite.protocols import OpenAIProtocol
from perfsuite.workloads import PromptBuilder, get_workload
from perfsuite_plugins.vllm import VLLMPlugin

HERE = Path(__file__).parent


def ours(server, prompts, n, concurrency, seed):
    specs = prompts.requests(get_workload("throughput"), n, seed=seed)
    load = Load.closed(concurrency, requests=n, warmup_requests=0)
    cpu0 = time.process_time()
    run = asyncio.run(run_load(server.endpoint, OpenAIProtocol(), specs, load))
    cpu = time.process_time() - cpu0
    m = summarize(run.records, run.wall_s)
    tokens = sum(r.output_tokens or 0 for r in run.records)
    return {
        "client": "perfsuite",
        "cpu_s": cpu,
        "tokens": tokens,
        "ttft_ms": m["ttft_p50_ms"],
        "tpot_ms": m["tpot_p50_ms"],
        "out_tok_s": m["output_throughput"],
        "req_s": m["request_throughput"],
        "errors": m["requests"] - m["requests_ok"],
    }


def vllms(server, model, n, concurrency, seed, cpus):
    cmd = [
        sys.executable,
        str(HERE / "_vllm_client.py"),
        "--pin-cpus",
        ",".join(map(str, sorted(cpus))),
        "--backend",
        "vllm",
        "--base-url",
        server.endpoint.base_url,
        "--model",
        server.endpoint.model,
        "--tokenizer",
        model,
        "--dataset-name",
        "random",
        "--random-input-len",
        "128",
        "--random-output-len",
        "128",
        "--random-range-ratio",
        "0",
        "--num-prompts",
        str(n),
        "--max-concurrency",
        str(concurrency),
        "--ignore-eos",
        "--temperature",
        "0",  # greedy, as perfsuite sends: sampling costs the server time and would skew the comparison
        "--num-warmups",
        "0",
        "--seed",
        str(seed),
        "--disable-tqdm",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"vLLM's client failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    r = json.loads(line[7:])
    return {
        "client": "vllm bench",
        "cpu_s": r["cpu_s"],
        "tokens": r["total_output_tokens"],
        "ttft_ms": r["median_ttft_ms"],
        "tpot_ms": r["median_tpot_ms"],
        "out_tok_s": r["output_throughput"],
        "req_s": r["request_throughput"],
        "errors": n - r["completed"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()

    model = str(build_model())
    prompts = PromptBuilder(AutoTokenizer.from_pretrained(model), corpus_text())
    server = VLLMPlugin().start(model, EngineSettings(), resolve_profile("cpu"), Path(tempfile.mkdtemp()))
    rows = []
    try:
        cpus = server.client_cpus or set(os.sched_getaffinity(0))
        os.sched_setaffinity(0, cpus)
        ours(server, prompts, 32, args.concurrency, seed=99)  # warm the server; not counted
        for i in range(args.rounds):  # alternate, so that drift hits both clients alike
            rows.append(ours(server, prompts, args.requests, args.concurrency, seed=i))
            rows.append(vllms(server, model, args.requests, args.concurrency, i, cpus))
            print(rows[-2], rows[-1], flush=True)
    finally:
        server.stop()

    table, med = [], {}
    for client in ("perfsuite", "vllm bench"):
        rs = [r for r in rows if r["client"] == client]
        med[client] = {k: statistics.median(r[k] for r in rs) for k in ("ttft_ms", "tpot_ms", "out_tok_s", "req_s")}
        med[client]["cpu_per_1k"] = statistics.median(r["cpu_s"] / r["tokens"] * 1000 for r in rs)
        table.append(
            [
                client,
                len(rs),
                f"{med[client]['cpu_per_1k'] * 1000:.1f}",
                f"{med[client]['ttft_ms']:.2f}",
                f"{med[client]['tpot_ms']:.3f}",
                f"{med[client]['out_tok_s']:.0f}",
                f"{med[client]['req_s']:.2f}",
                sum(r["errors"] for r in rs),
            ]
        )
    print(
        tabulate(
            table,
            headers=[
                "client",
                "rounds",
                "client CPU ms / 1k out tok (median)",
                "TTFT p50 ms",
                "TPOT p50 ms",
                "out tok/s",
                "req/s",
                "failed",
            ],
            tablefmt="github",
        )
    )
    a, b = med["perfsuite"], med["vllm bench"]
    print(
        tabulate(
            [[k, f"{(a[k] / b[k] - 1) * 100:+.1f}%"] for k in ("cpu_per_1k", "ttft_ms", "tpot_ms", "out_tok_s")],
            headers=["perfsuite vs vllm bench", "difference"],
            tablefmt="github",
        )
    )


if __name__ == "__main__":
    main()
