"""Loads sized for the hardware (perfsuite.loads, data/loads.json): the GPU entries are the sizing
rule's numbers, and the CPU default's loads are the ones its baselines were taken with."""

import json
from dataclasses import asdict
from importlib import resources

import pytest

from perfsuite import Load, UsageError
from perfsuite.hardware import resolve_profile
from perfsuite.loads import VLLM_MAX_NUM_SEQS, chat_shape, load_sizes, size_gpu, sized_load

LLAMA_8B = json.loads(resources.files("perfsuite").joinpath("data/models/llama-3.1-8b.json").read_text())
GPU_PROFILES = ["a100-40gb", "a100-80gb", "h100", "h200", "l4", "l40s"]


@pytest.mark.parametrize("profile", GPU_PROFILES)
def test_the_gpu_entries_are_the_rules_numbers(profile):
    computed = size_gpu(resolve_profile(profile), LLAMA_8B, *chat_shape())
    assert asdict(load_sizes(profile)) == asdict(computed)


@pytest.mark.parametrize("profile", GPU_PROFILES)
def test_a_gpu_is_loaded_with_as_many_users_as_its_batch_takes(profile):
    sizes = load_sizes(profile)
    assert sizes.users >= 64 and sizes.users <= VLLM_MAX_NUM_SEQS
    assert sizes.engine["max_num_seqs"] == sizes.users and sizes.requests == 4 * sizes.users
    assert sized_load(profile) == Load.closed(sizes.users, requests=sizes.requests)


def test_the_cpu_default_keeps_the_loads_its_baselines_were_taken_with():
    assert sized_load("cpu") == Load.closed(8, requests=48)
    assert sized_load("cpu", "poisson") == Load.poisson(8.0, requests=48, seed=1)
    assert load_sizes("cpu").engine == {}


def test_the_kv_cache_bounds_the_users_where_it_is_small():
    """An L4's 24 GB leaves ~5.5 GB for the KV cache after Llama-3.1-8B's 16 GB of weights."""
    small = size_gpu(resolve_profile("l4"), LLAMA_8B, 2048, 2048)
    assert small.users < VLLM_MAX_NUM_SEQS and "KV cache holds" in small.sized_by


def test_a_model_that_does_not_fit_and_an_unknown_arrival_are_refused():
    huge = dict(LLAMA_8B, num_hidden_layers=400)
    with pytest.raises(UsageError, match="do not fit"):
        size_gpu(resolve_profile("l4"), huge, 100, 100)
    with pytest.raises(UsageError, match="use 'closed' or 'poisson'"):
        sized_load("cpu", "trace")
