"""A load-generator child for test_client_saturation: reads a load from stdin, runs it, prints ClientStats
and client_saturation's verdict as one JSON line.

It pins itself to one core at nice 19 after its imports (a starved child would otherwise spend the test
importing), so that what is starved is the measured run only."""

import asyncio
import json
import os
import sys

from perfsuite.loadgen import Endpoint, Load, client_saturation, run_load
from perfsuite.protocols import OpenAIProtocol
from perfsuite.workloads import RequestSpec


def main() -> None:
    job = json.loads(sys.stdin.read())
    specs = [RequestSpec(**s) for s in job["specs"]]
    load = Load(**job["load"])
    os.sched_setaffinity(0, {job["core"]})
    os.nice(19)
    run = asyncio.run(run_load(Endpoint(job["base_url"], job["model"]), OpenAIProtocol(), specs, load))
    errors = [r.error for r in run.records if not r.ok]
    verdict = client_saturation(run.client, load)
    print(json.dumps({"client": run.client.to_dict(), "saturation": verdict, "errors": errors[:5]}))


if __name__ == "__main__":
    main()
