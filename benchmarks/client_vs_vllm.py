"""Client cost and agreement: perfsuite's load generator beside vLLM's own client (vllm.benchmarks.serve),
against the same vLLM CPU server, the same lengths (128 in / 128 out, ignore_eos) and concurrency.

- Client cost: the marginal CPU seconds the client process spends per 1,000 streamed output tokens,
  between a run of --small and one of --large requests (start-up, imports and the first connections
  cancel out), counted over the load phase only (perfsuite: run_load; vLLM: its benchmark()
  coroutine), every client pinned to the same core.
- Arms, interleaved within each round in an order that rotates from round to round: perfsuite as it
  runs (its own HTTP/1.1 client, perfsuite.http1, on uvloop: perfsuite.eventloop), the same on
  asyncio's loop, perfsuite on aiohttp and asyncio (PERFSUITE_TRANSPORT=aiohttp: what it had before),
  and vLLM's client (aiohttp on asyncio's loop). User and system CPU are kept apart for perfsuite's arms.
  (An arm with the event-loop monitor waking every 20 ms instead of 10 was measured too: it did not pay.)
  (An arm with a byte test for plain token lines was measured too, in the commit that tried it: it
  did not pay.)
- Agreement: median TTFT, median TPOT and output tok/s from each client's --large runs.

Run: .venv/bin/python benchmarks/client_vs_vllm.py [--rounds 3] [--small 64] [--large 320] [--json FILE]
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import uvloop
from tabulate import tabulate
from transformers import AutoTokenizer

from perfsuite.fingerprint import this_machine
from perfsuite.frameworks import EngineSettings
from perfsuite.hardware import resolve_profile
from perfsuite.loadgen import Load, run_load
from perfsuite.metrics import summarize
from perfsuite.model import build_model, corpus_text
from perfsuite.protocols import OpenAIProtocol
from perfsuite.workloads import PromptBuilder, get_workload
from perfsuite_plugins.vllm import VLLMPlugin

HERE = Path(__file__).parent


LOOPS = {"asyncio": asyncio.run, "uvloop": uvloop.run}
# name: (transport, event loop); perfsuite's default is the first
ARMS = {
    "perfsuite": ("http1", "uvloop"),
    "perfsuite asyncio": ("http1", "asyncio"),
    "perfsuite aiohttp": ("aiohttp", "asyncio"),
}


def ours(arm, server, prompts, n, concurrency, seed):
    transport, loop = ARMS[arm]
    os.environ["PERFSUITE_TRANSPORT"] = transport
    specs = prompts.requests(get_workload("throughput"), n, seed=seed)
    load = Load.closed(concurrency, requests=n, warmup_requests=0)
    t0 = os.times()
    run = LOOPS[loop](run_load(server.endpoint, OpenAIProtocol(), specs, load))
    t1 = os.times()
    user, sys_ = t1.user - t0.user, t1.system - t0.system
    cpu = user + sys_
    m = summarize(run.records, run.wall_s)
    tokens = sum(r.output_tokens or 0 for r in run.records)
    return {
        "client": arm,
        "n": n,
        "cpu_s": cpu,
        "user_s": user,
        "sys_s": sys_,
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
        "n": n,
        "cpu_s": r["cpu_s"],
        "tokens": r["total_output_tokens"],
        "ttft_ms": r["median_ttft_ms"],
        "tpot_ms": r["median_tpot_ms"],
        "out_tok_s": r["output_throughput"],
        "req_s": r["request_throughput"],
        "errors": n - r["completed"],
    }


def run_arm(arm, server, model, prompts, n, concurrency, seed, cpus):
    if arm == "vllm bench":
        return vllms(server, model, n, concurrency, seed, cpus)
    return ours(arm, server, prompts, n, concurrency, seed)


def marginal_ms_per_1k(small: dict, large: dict) -> float:
    """Client CPU ms per 1,000 output tokens between a small and a large run of one arm."""
    return (large["cpu_s"] - small["cpu_s"]) / (large["tokens"] - small["tokens"]) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--small", type=int, default=64)
    ap.add_argument("--large", type=int, default=320)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--json", type=Path, help="write every run and the medians here")
    args = ap.parse_args()

    arms = [*ARMS, "vllm bench"]
    fingerprint = this_machine().to_dict()  # before the pinning below (it counts the usable cores)
    logs = tempfile.TemporaryDirectory(prefix="client-vs-vllm-")
    model = str(build_model())
    prompts = PromptBuilder(AutoTokenizer.from_pretrained(model), corpus_text())
    server = VLLMPlugin().start(model, EngineSettings(), resolve_profile("cpu"), Path(logs.name))
    runs, marginals = [], {arm: [] for arm in arms}
    try:
        cpus = server.client_cpus or set(os.sched_getaffinity(0))
        os.sched_setaffinity(0, cpus)
        ours("perfsuite", server, prompts, 32, args.concurrency, seed=99)  # warm the server; not counted
        for i in range(args.rounds):
            order = arms[i % len(arms) :] + arms[: i % len(arms)]  # rotate: drift hits every arm alike
            for arm in order:
                small = run_arm(arm, server, model, prompts, args.small, args.concurrency, i, cpus)
                large = run_arm(arm, server, model, prompts, args.large, args.concurrency, i, cpus)
                runs += [small, large]
                marginals[arm].append(marginal_ms_per_1k(small, large))
                print(f"round {i + 1} {arm}: {marginals[arm][-1]:.1f} ms/1k tok", flush=True)
    finally:
        server.stop()
        logs.cleanup()

    table, med = [], {}
    for arm in arms:
        large = [r for r in runs if r["client"] == arm and r["n"] == args.large]
        med[arm] = {k: statistics.median(r[k] for r in large) for k in ("ttft_ms", "tpot_ms", "out_tok_s")}
        med[arm]["cpu_per_1k"] = statistics.median(marginals[arm])
        ratio = med[arm]["cpu_per_1k"] / statistics.median(marginals["vllm bench"])
        table.append(
            [
                arm,
                len(marginals[arm]),
                f"{med[arm]['cpu_per_1k']:.1f}",
                " ".join(f"{x:.1f}" for x in marginals[arm]),
                f"{ratio:.2f}x",
                f"{med[arm]['ttft_ms']:.2f}",
                f"{med[arm]['tpot_ms']:.3f}",
                f"{med[arm]['out_tok_s']:.0f}",
                sum(r["errors"] for r in runs if r["client"] == arm),
            ]
        )
    headers = ["client", "rounds", "marginal CPU ms / 1k tok (median)", "per round", "vs vllm bench"]
    print(tabulate(table, headers=[*headers, "TTFT p50 ms", "TPOT p50 ms", "out tok/s", "failed"], tablefmt="github"))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": fingerprint,
                    "args": vars(args) | {"json": str(args.json)},
                    "runs": runs,
                    "marginal_ms_per_1k": marginals,
                    "medians": med,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
