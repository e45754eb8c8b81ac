"""The perf suite: real load through the real framework, gated against baselines/<gpu>/."""

import pytest

from perfsuite import Load

pytestmark = pytest.mark.perf


@pytest.mark.parametrize("workload", ["chat", "rag", "throughput"])
def test_serving(serving, perf, workload):
    perf.measure(serving, workload, Load.closed(8, requests=48, warmup_requests=8))
