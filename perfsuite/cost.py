"""Cost arithmetic: what one million requests or output tokens cost at a measured rate."""

from __future__ import annotations

import math

__all__ = ["cost_per_million"]


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
