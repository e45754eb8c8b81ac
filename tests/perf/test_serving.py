"""The perf suite: real load through the real framework, gated against baselines/<gpu>/.

Each test runs once per selected framework (`--frameworks`, default: every installed one).
"""

import pytest

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
    perf.measure(serving, "chat", perf.sized_load(), thresholds=thresholds)


def test_rag(serving, perf):
    """A long document shared by every request: prefix caching's home ground."""
    perf.measure(serving, "rag", perf.sized_load())


def test_throughput(serving, perf):
    """Fixed 128-in/128-out requests from concurrent users (8 on the CPU default; on a GPU, as many as its
    KV cache and max_num_seqs take: perfsuite.loads): capacity, and so cost per request."""
    perf.measure(serving, "throughput", perf.sized_load())


def test_poisson_arrivals(serving, perf):
    """Open-loop Poisson arrivals at a rate below capacity: latency under realistic traffic."""
    perf.measure(serving, "chat", perf.sized_load("poisson"))


def test_article_shape(serving, perf):
    """The source article's request: 4,096 tokens in, 512 out, on GPU profiles (the CPU default's model
    takes 1,024 tokens). Its cost per 1M requests is the article's headline figure (docs/worked-example.md)."""
    if perf.profile == "cpu":
        pytest.skip("the article's 4,096 + 512-token requests exceed the CPU default's max_model_len (1,024)")
    perf.measure(serving, "article", perf.sized_load())
