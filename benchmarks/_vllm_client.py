"""Run vLLM's own benchmark client (vllm.benchmarks.serve) and print one JSON line with its metrics and
the CPU seconds it spent inside its load phase (`benchmark()`), imports and start-up excluded.

Used by client_vs_vllm.py; arguments are vLLM's (`vllm bench serve --help`), plus --pin-cpus 1,2.
"""

import json
import os
import sys
import time

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--pin-cpus" in argv:
        i = argv.index("--pin-cpus")
        os.sched_setaffinity(0, {int(c) for c in argv[i + 1].split(",")})
        del argv[i : i + 2]

    import vllm.benchmarks.serve as serve
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    spent = {}
    original = serve.benchmark

    async def timed(*args, **kwargs):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        result = await original(*args, **kwargs)
        spent.update(cpu_s=time.process_time() - cpu0, wall_s=time.perf_counter() - wall0)
        return result

    serve.benchmark = timed
    parser = FlexibleArgumentParser()
    serve.add_cli_args(parser)
    result = serve.main(parser.parse_args(argv))
    keys = (
        "completed",
        "total_output_tokens",
        "request_throughput",
        "output_throughput",
        "median_ttft_ms",
        "median_tpot_ms",
        "median_itl_ms",
        "duration",
    )
    print("RESULT " + json.dumps({**{k: result.get(k) for k in keys}, **spent}))
