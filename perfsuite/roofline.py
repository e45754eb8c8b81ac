"""Physical upper bounds on serving throughput: a roofline for one model on one device.

Per request, prefill costs FLOPs and decode reads weights and KV cache once per step for the whole
running batch. Both give ceilings on requests per second; the lower one is the bound:

- compute: every request needs F = prefill FLOPs + decode FLOPs, so rps <= peak FLOP/s / F.
- memory: a decode step for B sequences reads the weights W once plus each sequence's KV cache, so
  step time >= (W + B * kv_per_token * mean_context) / bandwidth and rps <= B / (step time * out).
  B is the concurrency, capped by how many sequences' KV caches fit beside the weights.

Ignoring every overhead keeps it a true upper bound: a measurement above it is a measurement error.
FLOPs count matrix multiplies only (2 per multiply-add), the logits only for the tokens that need them
(the last prompt token and each decoded token), and causal attention as 2 * layers * heads * head_dim
FLOPs for each (query, key) pair, for QK^T and for AV.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ModelShape", "Device", "Bound", "roofline"]

DTYPE_BYTES = {"float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2, "fp8": 1, "int8": 1}


@dataclass(frozen=True)
class ModelShape:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    dtype_bytes: float

    @classmethod
    def from_config(cls, config: dict | str | os.PathLike, dtype_bytes: float | None = None) -> ModelShape:
        """From a Hugging Face config.json (a dict, the file, or the model folder holding it)."""
        if not isinstance(config, dict):
            path = Path(config)
            config = json.loads((path / "config.json" if path.is_dir() else path).read_text())
        heads = config["num_attention_heads"]
        dtype = config.get("torch_dtype") or config.get("dtype") or "bfloat16"
        return cls(
            layers=config["num_hidden_layers"],
            hidden=config["hidden_size"],
            heads=heads,
            kv_heads=config.get("num_key_value_heads", heads),
            head_dim=config.get("head_dim") or config["hidden_size"] // heads,
            intermediate=config["intermediate_size"],
            vocab=config["vocab_size"],
            tied=bool(config.get("tie_word_embeddings", False)),
            dtype_bytes=dtype_bytes or DTYPE_BYTES.get(str(dtype), 2),
        )

    @property
    def layer_params(self) -> int:
        """Weights of the transformer blocks (attention, gated MLP, two norms each), final norm included."""
        q_out = self.heads * self.head_dim
        kv_out = self.kv_heads * self.head_dim
        attn = self.hidden * q_out + 2 * self.hidden * kv_out + q_out * self.hidden
        mlp = 3 * self.hidden * self.intermediate
        return self.layers * (attn + mlp + 2 * self.hidden) + self.hidden

    @property
    def params(self) -> int:
        embeddings = self.vocab * self.hidden * (1 if self.tied else 2)
        return self.layer_params + embeddings

    @property
    def weight_bytes(self) -> float:
        return self.params * self.dtype_bytes

    @property
    def kv_bytes_per_token(self) -> float:
        return 2 * self.layers * self.kv_heads * self.head_dim * self.dtype_bytes

    def _attention_flops(self, pairs: float) -> float:
        return 4 * self.layers * self.heads * self.head_dim * pairs  # QK^T and AV, 2 FLOPs per MAC each

    def prefill_flops(self, n: int) -> float:
        """A prompt of n tokens: every token through the blocks, logits for the last one only."""
        return 2 * self.layer_params * n + 2 * self.vocab * self.hidden + self._attention_flops(n * (n + 1) / 2)

    def decode_flops(self, n_in: int, n_out: int) -> float:
        """n_out - 1 decode steps after the prefill made the first token (context n_in .. n_in+n_out-2)."""
        steps = max(0, n_out - 1)
        pairs = steps * n_in + steps * (steps + 1) / 2  # each step attends to the context before it, itself too
        return steps * (2 * self.layer_params + 2 * self.vocab * self.hidden) + self._attention_flops(pairs)


@dataclass(frozen=True)
class Device:
    flops: float  # peak dense FLOP/s for the model's dtype
    bandwidth: float  # bytes/s
    memory: float  # bytes
    name: str = ""

    @classmethod
    def from_profile(cls, profile, count: int = 1) -> Device:
        """A GPU profile from the hardware catalog, times `count` devices (tensor parallel)."""
        if profile.bf16_tflops is None or profile.bandwidth_tb_s is None or profile.memory_gb is None:
            raise ValueError(f"profile {profile.name} has no peak figures; probe the device instead")
        return cls(
            count * profile.bf16_tflops * 1e12,
            count * profile.bandwidth_tb_s * 1e12,
            count * profile.memory_gb * 1e9,
            f"{count}x {profile.name}",
        )


@dataclass(frozen=True)
class Bound:
    requests_per_s: float
    output_tokens_per_s: float
    limited_by: str  # "compute" or "memory bandwidth"
    compute_rps: float
    memory_rps: float
    batch: int
    flops_per_request: float
    explanation: str


def roofline(model: ModelShape, device: Device, input_tokens: int, output_tokens: int, concurrency: int) -> Bound:
    """The highest request rate `device` can physically serve for requests of this shape."""
    f_req = model.prefill_flops(input_tokens) + model.decode_flops(input_tokens, output_tokens)
    compute_rps = device.flops / f_req

    free = device.memory - model.weight_bytes
    seq_bytes = model.kv_bytes_per_token * (input_tokens + output_tokens)
    fits = math.floor(free / seq_bytes) if free > 0 else 0
    batch = max(1, min(concurrency, fits)) if fits else 0
    if batch == 0:
        memory_rps = 0.0
    else:
        mean_context = input_tokens + output_tokens / 2
        step_s = (model.weight_bytes + batch * model.kv_bytes_per_token * mean_context) / device.bandwidth
        memory_rps = batch / (step_s * output_tokens)
    rps = min(compute_rps, memory_rps)
    limited = "compute" if compute_rps <= memory_rps else "memory bandwidth"
    explanation = (
        f"{model.params / 1e9:.2f}B parameters ({model.weight_bytes / 1e9:.1f} GB), {input_tokens} in / "
        f"{output_tokens} out: {f_req / 1e12:.2f} TFLOP per request; at {device.flops / 1e12:.0f} TFLOP/s "
        f"that is at most {compute_rps:,.2f} req/s. Decode with batch {batch} (KV {seq_bytes / 1e9:.3f} GB "
        f"per sequence, {fits} fit) at {device.bandwidth / 1e12:.2f} TB/s: at most {memory_rps:,.2f} req/s. "
        f"Bound: {rps:,.2f} req/s, limited by {limited}."
    )
    return Bound(rps, rps * output_tokens, limited, compute_rps, memory_rps, batch, f_req, explanation)
