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
FLOPs for each (query, key) pair, for QK^T and for AV. A prompt prefix shared by every request (RAG's
document) is counted as cached: it costs attention, not a pass through the blocks, as with prefix caching.

On a CPU (`--gpu=cpu`) the peaks are measured here (perfsuite.probe), and a decode working set that fits
in the last-level cache is read at the probe's in-cache bandwidth. check_within_bound() turns a
measurement or a baseline above its bound into a message with the arithmetic: it is a measurement error.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ModelShape", "Device", "Bound", "roofline", "run_dtype_bytes", "measurement_bound", "check_within_bound"]

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
    cache_bandwidth: float | None = None  # bytes/s for a working set up to cache_bytes (CPUs)
    cache_bytes: float = 0.0
    source: str = "catalog"  # where the figures come from, for the arithmetic

    @classmethod
    def from_profile(cls, profile, count: int = 1) -> Device:
        """A GPU profile from the hardware catalog, times `count` devices (tensor parallel); for the
        cpu profile, this machine's peaks as probed (run it with no serving engine up)."""
        if profile.kind == "cpu":
            from perfsuite.probe import cpu_peak

            return cls.from_cpu_peak(cpu_peak())
        if profile.bf16_tflops is None or profile.bandwidth_tb_s is None or profile.memory_gb is None:
            raise ValueError(f"profile {profile.name} has no peak figures; probe the device instead")
        return cls(
            count * profile.bf16_tflops * 1e12,
            count * profile.bandwidth_tb_s * 1e12,
            count * profile.memory_gb * 1e9,
            f"{count}x {profile.name}",
        )

    @classmethod
    def from_cpu_peak(cls, peak, memory: float | None = None) -> Device:
        """This CPU from a perfsuite.probe.CpuPeak; memory is the machine's RAM unless given."""
        if memory is None:
            import psutil

            memory = psutil.virtual_memory().total
        best = max(peak.flops_by_dtype, key=peak.flops_by_dtype.get)
        return cls(
            peak.flops,
            peak.dram_bandwidth,
            memory,
            f"{peak.cpu}, {peak.cores} cores",
            cache_bandwidth=peak.cache_bandwidth,
            cache_bytes=peak.cache_bytes,
            source=f"probed: {best} matmul, best copy/read",
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

    @classmethod
    def from_dict(cls, d: dict) -> Bound:
        """A bound as a results file stores it (a measurement's "roofline")."""
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


def _num(x: float) -> str:
    return f"{x:,.0f}" if abs(x - round(x)) < 1e-9 else f"{x:,.1f}"


def _count(x: float) -> str:
    return f"{x / 1e9:.2f}B" if x >= 1e9 else f"{x / 1e6:.2f}M"


def _bytes(x: float) -> str:
    return f"{x / 1e9:.3g} GB" if x >= 1e8 else f"{x / 1e6:.3g} MB"


def _flop(x: float) -> str:
    return f"{x / 1e12:.2f} TFLOP" if x >= 1e11 else f"{x / 1e9:.3g} GFLOP"


def _flops(x: float) -> str:
    return f"{x / 1e12:.3g} TFLOP/s" if x >= 1e12 else f"{x / 1e9:,.0f} GFLOP/s"


def _bandwidth(x: float) -> str:
    return f"{x / 1e12:.2f} TB/s" if x >= 1e12 else f"{x / 1e9:,.1f} GB/s"


def roofline(
    model: ModelShape,
    device: Device,
    input_tokens: float,
    output_tokens: float,
    concurrency: int,
    cached_prefix_tokens: float = 0,
) -> Bound:
    """The highest request rate `device` can physically serve for requests of this shape.

    `cached_prefix_tokens` of the prompt (a prefix shared by every request) are not prefilled again.
    """
    prefix = min(cached_prefix_tokens, input_tokens)
    prefill = model.prefill_flops(input_tokens)
    if prefix:  # the shared prefix's own pass and attention are done once; its logits were never needed
        prefill -= model.prefill_flops(prefix) - 2 * model.vocab * model.hidden
    decode = model.decode_flops(input_tokens, output_tokens)
    f_req = prefill + decode
    compute_rps = device.flops / f_req

    free = device.memory - model.weight_bytes
    seq_bytes = model.kv_bytes_per_token * (input_tokens + output_tokens)
    fits = math.floor(free / seq_bytes) if free > 0 else 0
    batch = max(1, min(concurrency, fits)) if fits else 0
    bandwidth, where = device.bandwidth, ""
    if batch == 0:
        memory_rps = 0.0
    else:
        working_set = model.weight_bytes + batch * seq_bytes
        if device.cache_bandwidth and working_set <= device.cache_bytes:
            bandwidth = max(bandwidth, device.cache_bandwidth)
            cache = f"{device.cache_bytes / 2**20:,.0f} MiB"
            where = f" (in-cache: the {_bytes(working_set)} working set fits the {cache} cache)"
        mean_context = input_tokens + output_tokens / 2
        step_s = (model.weight_bytes + batch * model.kv_bytes_per_token * mean_context) / bandwidth
        memory_rps = batch / (step_s * output_tokens)
    rps = min(compute_rps, memory_rps)
    limited = "compute" if compute_rps <= memory_rps else "memory bandwidth"
    cached = f" ({_num(prefix)} of them a cached shared prefix)" if prefix else ""
    source = "" if device.source == "catalog" else f" ({device.source})"
    explanation = (
        f"{_count(model.params)} parameters ({_bytes(model.weight_bytes)}), {_num(input_tokens)} in{cached} / "
        f"{_num(output_tokens)} out: {_flop(f_req)} per request (prefill {_flop(prefill)}, decode "
        f"{_flop(decode)}); at {_flops(device.flops)}{source} that is at most {compute_rps:,.2f} req/s. "
        f"Decode with batch {batch} (KV {_bytes(seq_bytes)} per sequence, {fits:,} fit) reads "
        f"{_bytes(model.weight_bytes)} of weights plus the batch's KV per step at {_bandwidth(bandwidth)}{where}: "
        f"at most {memory_rps:,.2f} req/s. Bound: {rps:,.2f} req/s, limited by {limited}."
    )
    return Bound(rps, rps * output_tokens, limited, compute_rps, memory_rps, batch, f_req, explanation)


def run_dtype_bytes(config_dtype: str | None, engine_dtype: str | None) -> float:
    """Bytes per weight as the engine runs the model: the engine's dtype when set, else at most 2.

    vLLM runs a float32 checkpoint in 16 bits unless told otherwise (bf16 on a CPU that has it), and
    fewer bytes only raise the bound: taking the smaller keeps it an upper bound for any engine.
    """
    if engine_dtype and engine_dtype != "auto":
        if engine_dtype not in DTYPE_BYTES:
            raise ValueError(f"engine dtype {engine_dtype!r}: not one of {', '.join(DTYPE_BYTES)}")
        return DTYPE_BYTES[engine_dtype]
    return min(DTYPE_BYTES.get(str(config_dtype or "bfloat16"), 2), 2)


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _mean(value) -> float:
    lo, hi = (value, value) if isinstance(value, (int, float)) else value
    return (lo + hi) / 2


def measurement_bound(
    config: dict | str | os.PathLike, device: Device, workload: dict, load: dict, engine: dict, metrics: dict
) -> Bound:
    """The bound for one measurement (or a baseline: its provenance's workload, load and engine).

    Lengths: the measured means when the metrics have them, else the workload's (the shared prefix
    included). Sequences in flight: the closed loop's users; an open load's cap, else its request count;
    an offline batch capped by max_num_seqs (vLLM's in-process engine honours it; a served framework
    may not, so served loads are not capped by it). A quantized model has no peak figure: ValueError.
    """
    engine = engine or {}
    if engine.get("quantization"):
        raise ValueError(f"quantization={engine['quantization']}: no peak figure for quantized compute")
    if not isinstance(config, dict):
        path = Path(config)
        config = json.loads((path / "config.json" if path.is_dir() else path).read_text())
    dtype = config.get("torch_dtype") or config.get("dtype")
    model = ModelShape.from_config(config, dtype_bytes=run_dtype_bytes(dtype, engine.get("dtype")))
    prefix = workload.get("shared_prefix_tokens", 0) or 0
    n_in = metrics.get("mean_input_tokens")
    n_in = n_in if _finite(n_in) else prefix + _mean(workload["input_tokens"])
    n_out = metrics.get("mean_output_tokens")
    if not _finite(n_out):
        n_out = load.get("output_tokens") or _mean(workload["output_tokens"])
    if load.get("arrival") == "offline":
        caps = [load.get("requests"), engine.get("max_num_seqs")]
    elif load.get("arrival") == "closed":
        caps = [load.get("concurrency")]
    else:  # open loads: their cap on requests in flight, else no more than they send
        caps = [load.get("concurrency") or load.get("requests")]
    caps = [c for c in caps if c]
    concurrency = min(caps) if caps else 1024
    return roofline(model, device, n_in, n_out, concurrency, cached_prefix_tokens=prefix)


def check_within_bound(metrics: dict, bound: Bound, what: str = "measured") -> str | None:
    """None if the throughputs in `metrics` are physically possible; else the problem, with the arithmetic.

    `metrics` maps names to numbers (a measurement's) or to {"value": number} (a baseline's).
    """
    over = []
    for name, limit, unit in (
        ("request_throughput", bound.requests_per_s, "req/s"),
        ("output_throughput", bound.output_tokens_per_s, "tok/s"),
    ):
        value = metrics.get(name)
        value = value.get("value") if isinstance(value, dict) else value
        if _finite(value) and value > limit * (1 + 1e-9):
            over.append(f"{name} {value:,.2f} {unit} > bound {limit:,.2f} {unit}")
    if not over:
        return None
    return (
        f"{what} {'; '.join(over)}: above the physical limit, so a measurement error (a clock, a token count, "
        f"or answers not computed). {bound.explanation}"
    )
