"""From request records to the numbers a serving team compares: throughput, latency percentiles, goodput.

Definitions (the ones vLLM's own benchmark uses):
- TTFT: send to the first streamed chunk carrying text.
- TPOT: (end - first token) / (output tokens - 1), per request.
- ITL: gaps between successive chunks carrying text (a chunk may hold several tokens).
- E2E: send to end of stream.
- Throughput: completed requests (or tokens) / wall time of the measured phase.
- Goodput: completed requests per second that met the SLO on TTFT and TPOT.

Reasoning models (only when some request streamed reasoning, so that other runs keep their metric set):
- TTFAT: send to the first chunk of answer text (after the thinking; TTFT still ends at the first chunk
  of any kind). Requests that never left their reasoning have none and are left out of it.
- Reasoning and answer tokens per request: RequestRecord.reasoning_output_tokens (the server's
  reasoning_tokens when its usage gives them, else the streamed reasoning chunks) and the rest of the
  output tokens, so the two add up to the server's completion_tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perfsuite.loadgen import RequestRecord
from perfsuite.slo import SLO

__all__ = ["MetricSpec", "METRICS", "summarize", "percentiles"]

PCTS = (50, 90, 99)


@dataclass(frozen=True)
class MetricSpec:
    unit: str
    better: str  # "higher" or "lower"
    gated: bool = False  # compared with the baseline by default
    tolerance: float = 0.10  # default relative tolerance when a baseline is written
    gated_on_cpu: bool = True  # False: gated on GPU profiles only


# Every metric perfsuite reports. Gated ones fail the build when worse than the baseline beyond tolerance.
METRICS: dict[str, MetricSpec] = {
    "request_throughput": MetricSpec("req/s", "higher", gated=True),
    "output_throughput": MetricSpec("tok/s", "higher", gated=True),
    "total_token_throughput": MetricSpec("tok/s", "higher"),
    "goodput": MetricSpec("req/s", "higher"),
    "error_rate": MetricSpec("ratio", "lower"),
    **{
        f"{m}_p{p}_ms": MetricSpec("ms", "lower", gated=(p == 50 and m in ("ttft", "tpot")), tolerance=0.15)
        for m in ("ttft", "tpot", "itl", "e2e")
        for p in PCTS
    },
    # Reasoning models only (time to first answer token, after the thinking): not gated.
    **{f"ttfat_p{p}_ms": MetricSpec("ms", "lower", tolerance=0.15) for p in PCTS},
    # On GPUs: NVML used/total (a framework that pre-allocates its KV cache uses more, which is better).
    # On the CPU: the server's process-tree PSS / RAM, which says nothing of the KV cache: not gated.
    "memory_utilization": MetricSpec("ratio", "higher", gated=True, tolerance=0.05, gated_on_cpu=False),
    "memory_used_peak_gb": MetricSpec("GB", "lower"),
    "kv_cache_usage_peak": MetricSpec("ratio", "higher"),
    "queue_depth_peak": MetricSpec("requests", "lower"),
    "prefix_cache_hit_rate": MetricSpec("ratio", "higher"),
    "cost_per_1m_requests": MetricSpec("$", "lower", gated=True),
    "cost_per_1m_output_tokens": MetricSpec("$", "lower"),
    # Measured req/s over the roofline's physical bound (perfsuite.roofline): how far from the hardware.
    "efficiency": MetricSpec("ratio", "higher"),
}


def percentiles(values, pcts=PCTS) -> dict[int, float]:
    """Linear-interpolated percentiles (numpy's default); NaN for an empty list."""
    if len(values) == 0:
        return {p: float("nan") for p in pcts}
    arr = np.percentile(np.asarray(values, dtype=float), pcts)
    return {p: float(v) for p, v in zip(pcts, arr)}


def summarize(records: list[RequestRecord], wall_s: float, slo: SLO = SLO()) -> dict[str, float]:
    """The client-side metrics of one measured phase."""
    ok = [r for r in records if r.ok]
    n = len(records)
    out: dict[str, float] = {
        "requests": float(n),
        "requests_ok": float(len(ok)),
        "error_rate": (n - len(ok)) / n if n else float("nan"),
        "duration_s": wall_s,
    }
    out_tokens = sum(r.output_tokens for r in ok)
    in_tokens = sum(r.prompt_tokens for r in ok)
    out["request_throughput"] = len(ok) / wall_s if wall_s > 0 else 0.0
    out["output_throughput"] = out_tokens / wall_s if wall_s > 0 else 0.0
    out["total_token_throughput"] = (out_tokens + in_tokens) / wall_s if wall_s > 0 else 0.0
    out["mean_input_tokens"] = in_tokens / len(ok) if ok else float("nan")
    out["mean_output_tokens"] = out_tokens / len(ok) if ok else float("nan")

    ttft = [(r.first_token - r.send) * 1e3 for r in ok]
    tpot = [(r.end - r.first_token) * 1e3 / (r.output_tokens - 1) for r in ok if r.output_tokens > 1]
    e2e = [(r.end - r.send) * 1e3 for r in ok]
    itl = [float(g) * 1e3 for r in ok for g in np.diff(r.chunk_times)]
    for name, values in (("ttft", ttft), ("tpot", tpot), ("itl", itl), ("e2e", e2e)):
        for p, v in percentiles(values).items():
            out[f"{name}_p{p}_ms"] = v
        out[f"{name}_mean_ms"] = float(np.mean(values)) if values else float("nan")
    if any(r.reasoned for r in ok):
        _reasoning(ok, out)

    good = sum(1 for r in ok if _meets(r, slo))
    out["goodput"] = good / wall_s if wall_s > 0 else 0.0
    out["goodput_ratio"] = good / n if n else float("nan")
    return out


def _reasoning(ok: list[RequestRecord], out: dict[str, float]) -> None:
    """TTFAT percentiles over the requests that answered, and the mean reasoning and answer tokens."""
    ttfat = [(r.first_answer - r.send) * 1e3 for r in ok if r.first_answer is not None]
    for p, v in percentiles(ttfat).items():
        out[f"ttfat_p{p}_ms"] = v
    out["ttfat_mean_ms"] = float(np.mean(ttfat)) if ttfat else float("nan")
    out["mean_reasoning_tokens"] = float(np.mean([r.reasoning_output_tokens for r in ok]))
    out["mean_answer_tokens"] = float(np.mean([r.answer_output_tokens for r in ok]))


def _meets(r: RequestRecord, slo: SLO) -> bool:
    ttft_ms = (r.first_token - r.send) * 1e3
    tpot_ms = (r.end - r.first_token) * 1e3 / (r.output_tokens - 1) if r.output_tokens > 1 else 0.0
    return ttft_ms <= slo.ttft_ms and tpot_ms <= slo.tpot_ms
