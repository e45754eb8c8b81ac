"""vLLM in-process (vllm.LLM), the offline batch mode: throughput with no HTTP in the way."""

import pytest

pytestmark = pytest.mark.perf


def test_vllm_offline_throughput(perf):
    perf.measure_offline("vllm", "throughput", requests=64)
