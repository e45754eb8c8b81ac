"""The perf suite: real load through the real framework, gated against baselines/<gpu>/.

Each test runs once per selected framework (`--frameworks`, default: every installed one).
"""

import pytest

from perfsuite import Load

pytestmark = pytest.mark.perf


# An interactive-chat TTFT target for the frameworks built for it (continuous batching). The static
# batchers (hf-naive, TorchServe, Ray Serve) are measured against their baselines only: a request that
# arrives during a batch waits for the whole batch, so their tail TTFT is seconds on the CPU by design.
CHAT_TTFT_P99_MS = {"cpu": 2000}
CONTINUOUS_BATCHING = ("vllm", "vllm-container", "tgi")


def test_chat(serving, perf):
    """Interactive chat: short prompts and answers from 8 concurrent users; TTFT matters."""
    thresholds = {}
    if serving.framework in CONTINUOUS_BATCHING:
        thresholds = {"ttft_p99_ms": f"<= {CHAT_TTFT_P99_MS.get(perf.profile, 500)}"}
    perf.measure(serving, "chat", Load.closed(8, requests=48), thresholds=thresholds)


def test_rag(serving, perf):
    """A long document shared by every request: prefix caching's home ground."""
    perf.measure(serving, "rag", Load.closed(8, requests=48))


def test_throughput(serving, perf):
    """Fixed 128-in/128-out requests from 8 concurrent users: capacity, and so cost per request."""
    perf.measure(serving, "throughput", Load.closed(8, requests=48))


def test_poisson_arrivals(serving, perf):
    """Open-loop Poisson arrivals at a rate below capacity: latency under realistic traffic."""
    perf.measure(serving, "chat", Load.poisson(8.0, requests=48, seed=1))
