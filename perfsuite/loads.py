"""Loads sized for the hardware: how many users, requests and what Poisson rate the default perf tests
send on each profile (data/loads.json), and the rule that sized the GPU ones.

Eight users never fill an A100: a GPU's batch is bounded by its KV-cache capacity and the engine's
max_num_seqs, not by the test. The GPU entries are size_gpu()'s numbers for the catalog model
(Llama-3.1-8B) and the chat shape, and a unit test checks the data against the rule; the cpu entry is
the load the CPU default's baselines were taken with (8 users, 48 requests, 8 req/s), which a 2-core
machine already saturates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources

from perfsuite.errors import UsageError
from perfsuite.loadgen import Load

__all__ = ["LoadSizes", "load_sizes", "sized_load", "size_gpu", "VLLM_MAX_NUM_SEQS", "GPU_MEMORY_SHARE"]

VLLM_MAX_NUM_SEQS = 256  # vLLM's own default batch cap on GPUs
GPU_MEMORY_SHARE = 0.9  # vLLM's default gpu_memory_utilization
REQUESTS_PER_USER = 4  # enough requests that every user's steady state, not its first request, dominates
RATE_SHARE = 0.5  # the Poisson test's rate: half the roofline's bound, a loaded but not saturated server


@dataclass(frozen=True)
class LoadSizes:
    """One profile's default loads, and the engine settings that let the server take them."""

    users: int
    requests: int
    poisson_rate: float
    engine: dict = field(default_factory=dict)  # e.g. {"max_num_seqs": 256}; {} keeps EngineSettings' defaults
    sized_by: str = ""


def load_sizes(profile: str) -> LoadSizes:
    """The sizes of `profile` from data/loads.json; a profile without an entry gets the cpu's."""
    raw = json.loads(resources.files("perfsuite").joinpath("data/loads.json").read_text())["profiles"]
    entry = raw.get(profile) or raw["cpu"]
    try:
        return LoadSizes(**entry)
    except TypeError as exc:
        raise UsageError(f"data/loads.json, profile {profile}: {exc}") from None


def sized_load(profile: str, arrival: str = "closed") -> Load:
    """The default perf tests' load on `profile`: a closed loop of its users, or Poisson at its rate."""
    sizes = load_sizes(profile)
    if arrival == "closed":
        return Load.closed(sizes.users, requests=sizes.requests)
    if arrival == "poisson":
        return Load.poisson(sizes.poisson_rate, requests=sizes.requests, seed=1)
    raise UsageError(f"sized_load: arrival {arrival!r}: use 'closed' or 'poisson'")


def size_gpu(profile, model_config: dict, input_tokens: float, output_tokens: float) -> LoadSizes:
    """Users: the sequences the KV cache holds at GPU_MEMORY_SHARE of memory after the weights, capped
    at vLLM's max_num_seqs; requests: REQUESTS_PER_USER per user; the Poisson rate: RATE_SHARE of the
    roofline's bound at that batch (perfsuite.roofline)."""
    from perfsuite.roofline import Device, ModelShape, roofline

    model = ModelShape.from_config(model_config)
    device = Device.from_profile(profile)
    kv_room = device.memory * GPU_MEMORY_SHARE - model.weight_bytes
    if kv_room <= 0:
        raise UsageError(f"{profile.name}: the model's weights ({model.weight_bytes / 1e9:.1f} GB) do not fit")
    sequences = int(kv_room / (model.kv_bytes_per_token * (input_tokens + output_tokens)))
    users = min(VLLM_MAX_NUM_SEQS, sequences)
    bound = roofline(model, device, input_tokens, output_tokens, users)
    rate = float(f"{RATE_SHARE * bound.requests_per_s:.2g}")
    return LoadSizes(
        users=users,
        requests=REQUESTS_PER_USER * users,
        poisson_rate=rate,
        engine={"max_num_seqs": users, "max_model_len": 8192},
        sized_by=(
            f"KV cache holds {sequences:,} sequences of {input_tokens:g}+{output_tokens:g} tokens "
            f"({kv_room / 1e9:.1f} GB after {model.weight_bytes / 1e9:.1f} GB of weights), capped at "
            f"max_num_seqs {VLLM_MAX_NUM_SEQS}; rate {RATE_SHARE:.0%} of the roofline's "
            f"{bound.requests_per_s:,.0f} req/s"
        ),
    )


def chat_shape() -> tuple[float, float]:
    """The chat workload's mean input and output tokens (the shape the GPU loads are sized for)."""
    from perfsuite.workloads import get_workload

    chat = get_workload("chat")
    return sum(chat.input_tokens) / 2, sum(chat.output_tokens) / 2
