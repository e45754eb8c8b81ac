"""The roofline against hand-computed cases, and against real parameter counts."""

import json
from importlib import resources

import pytest

from perfsuite.cost import cost_per_million
from perfsuite.hardware import resolve_profile
from perfsuite.roofline import Device, ModelShape, roofline

# One layer, hidden 2, one head of dim 2, MLP 4, vocab 10, tied, 2 bytes a weight. By hand:
# attention 2*2 + 2*2*2 + 2*2 = 16, MLP 3*2*4 = 24, norms 2*2 = 4 -> 44, final norm 2 -> 46 in the blocks;
# embeddings 10*2 = 20 -> 66 parameters, 132 bytes; KV 2 * 1 * 1 * 2 * 2 = 8 bytes per token.
TOY = ModelShape(
    layers=1, hidden=2, heads=1, kv_heads=1, head_dim=2, intermediate=4, vocab=10, tied=True, dtype_bytes=2
)
# Prefill of 3 tokens: 2*46*3 = 276, logits 2*10*2 = 40, attention 4*1*1*2 * (3*4/2 = 6 pairs) = 48 -> 364.
# Decode to 3 tokens: 2 steps of 2*46 + 40 = 132 -> 264, attention pairs 2*3 + 3 = 9 -> 72 -> 336.
F_REQUEST = 364 + 336


def test_toy_counts():
    assert TOY.layer_params == 46
    assert TOY.params == 66
    assert TOY.weight_bytes == 132
    assert TOY.kv_bytes_per_token == 8
    assert TOY.prefill_flops(3) == 364
    assert TOY.decode_flops(3, 3) == 336


def test_compute_bound_case():
    b = roofline(TOY, Device(flops=7000, bandwidth=1e12, memory=1e9), 3, 3, concurrency=4)
    assert b.limited_by == "compute"
    assert b.flops_per_request == F_REQUEST
    assert b.requests_per_s == pytest.approx(10.0)
    assert b.output_tokens_per_s == pytest.approx(30.0)
    assert b.batch == 4


def test_bandwidth_bound_case_with_the_batch_capped_by_kv_memory():
    # 228 bytes: weights 132 + room for floor(96 / (8 * 6)) = 2 sequences of 6 tokens, below concurrency 4.
    # Step: (132 + 2 * 8 * 4.5 mean context) / 1000 B/s = 0.204 s; 2 sequences / (0.204 s * 3 tokens).
    b = roofline(TOY, Device(flops=1e12, bandwidth=1000, memory=228), 3, 3, concurrency=4)
    assert b.limited_by == "memory bandwidth"
    assert b.batch == 2
    assert b.requests_per_s == pytest.approx(2 / (0.204 * 3))


def test_a_model_that_does_not_fit_serves_nothing():
    b = roofline(TOY, Device(flops=1e12, bandwidth=1e12, memory=100), 3, 3, concurrency=4)
    assert b.requests_per_s == 0.0 and b.batch == 0


def test_llama_3_1_8b_has_its_published_parameter_count():
    config = json.loads(resources.files("perfsuite").joinpath("data/models/llama-3.1-8b.json").read_text())
    model = ModelShape.from_config(config)
    assert model.params == pytest.approx(8.03e9, rel=0.001)
    assert model.kv_bytes_per_token == 131072  # 2 * 32 layers * 8 KV heads * 128 * 2 bytes


def test_the_articles_example_is_physically_impossible():
    """Llama-3.1-8B, 4K in / 512 out, one A100 80GB: the article claims 120-150 req/s."""
    config = json.loads(resources.files("perfsuite").joinpath("data/models/llama-3.1-8b.json").read_text())
    b = roofline(ModelShape.from_config(config), Device.from_profile(resolve_profile("a100")), 4096, 512, 256)
    assert b.limited_by == "compute"
    assert 4.0 < b.requests_per_s < 5.0  # ~70 TFLOP per request at 312 TFLOP/s
    assert 140 / b.requests_per_s > 25
    assert cost_per_million(4.10, b.requests_per_s) > 250  # the cheapest possible, vs the article's $0.82


def test_the_local_tiny_model_count_matches_torch():
    import torch
    from transformers import AutoModelForCausalLM

    from perfsuite.model import build_model

    path = build_model()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    assert ModelShape.from_config(path).params == sum(p.numel() for p in model.parameters())
