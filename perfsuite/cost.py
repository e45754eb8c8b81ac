"""Cost arithmetic: what one million requests or output tokens cost at a measured rate."""

from __future__ import annotations

import math

__all__ = ["cost_per_million", "add_costs"]


def cost_per_million(price_per_hour: float, per_second: float) -> float:
    """Dollars per 1M units (requests or tokens) served at `per_second` on hardware costing `price_per_hour`.

    cost = price_per_hour / (per_second * 3600) * 1e6. Zero throughput costs infinity.
    >>> round(cost_per_million(4.10, 140), 2)
    8.13
    """
    if price_per_hour < 0 or per_second < 0 or math.isnan(price_per_hour) or math.isnan(per_second):
        raise ValueError(f"price ({price_per_hour}) and rate ({per_second}) must be non-negative numbers")
    if per_second == 0:
        return math.inf
    return price_per_hour / (per_second * 3600.0) * 1e6


def add_costs(metrics: dict[str, float], price_per_hour: float) -> dict[str, float]:
    """Add cost per 1M requests and per 1M output tokens to `metrics` (which has both throughputs)."""
    metrics["cost_per_1m_requests"] = cost_per_million(price_per_hour, metrics["request_throughput"])
    metrics["cost_per_1m_output_tokens"] = cost_per_million(price_per_hour, metrics["output_throughput"])
    return metrics
