"""The cost calculator: what a month of traffic costs self-hosted (at the throughput perfsuite measured
under an SLO) and through API models, the difference, and the traffic at which the two break even.

The same arithmetic runs in the HTML report's JavaScript (perfsuite/data/report.js, `calculate`); a
browser test checks the two agree to the cent on every catalog entry. Keep them in step, operation by
operation: floating-point results depend on the order of operations.

Definitions (docs/report.md has them with a worked example):

- A month is 730 hours (8,760 / 12); SECONDS_PER_MONTH = 730 x 3600 = 2,628,000.
- Traffic is requests per month R, or a peak rate P in requests/s, or both. Given only R, the peak is
  the average R / SECONDS_PER_MONTH. Given only P, the month runs at P throughout: R = P x SECONDS_PER_MONTH.
- Capacity: T, requests/s one replica sustains while meeting the SLO (the highest rate of a load sweep
  that met it, not the peak throughput). A replica is `devices` devices at `price_per_hour` each.
- Replicas = max(1, ceil(P / T)); they run all month (no autoscaling).
- Self-hosted monthly cost = replicas x devices x price_per_hour x 730.
  Per 1M requests = monthly / R x 1e6; per 1M tokens = monthly / (R x (input + output tokens)) x 1e6.
  At full utilization (one replica busy all the time): devices x price / (T x 3600) x 1e6 per 1M requests.
- API monthly cost = R x (input tokens x input price + output tokens x output price) / 1e6.
- Delta = self-hosted - API (positive: self-hosting costs more); delta % = delta / API x 100.
- Break-even: one replica costs C1 = devices x price x 730 a month and serves up to T x SECONDS_PER_MONTH
  requests at peak/average ratio 1. Each further replica adds C1 and T, so self-hosting is ever cheaper
  only if C1 / c <= T x SECONDS_PER_MONTH / k, where c is the API cost per request and k = P / average
  rate; the break-even traffic is then ceil(C1 / c) requests per month, and None otherwise.
- Rounding happens once, at the end: dollar amounts to the cent, half away from zero
  (floor(|x| x 100 + 0.5) / 100 with x's sign), per-1M-token prices to $0.0001 the same way. The delta is
  the difference of the two rounded monthly costs, so the numbers shown add up.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import jsonschema

from perfsuite.errors import UsageError
from perfsuite.slo import SLO, sustainable_point

__all__ = [
    "HOURS_PER_MONTH",
    "SECONDS_PER_MONTH",
    "ApiModel",
    "Catalogs",
    "Traffic",
    "load_catalogs",
    "calculate",
    "capacity_from_results",
    "cents",
]

HOURS_PER_MONTH = 730
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600


def _round_half_away(x: float, scale: float) -> float:
    """x rounded to 1/scale, halves away from zero; JavaScript's `roundTo` in report.js is the same."""
    if x is None or not math.isfinite(x):
        return x
    r = math.floor(abs(x) * scale + 0.5) / scale
    return -r if x < 0 else r


def cents(x: float) -> float:
    """Dollars rounded to the cent."""
    return _round_half_away(x, 100)


def _hundredth_cent(x: float) -> float:
    return _round_half_away(x, 10000)


@dataclass(frozen=True)
class ApiModel:
    key: str
    provider: str
    model: str
    tier: str
    input_per_1m: float
    output_per_1m: float
    refreshed: str
    source: str

    def cost_per_request(self, input_tokens: float, output_tokens: float) -> float:
        return (input_tokens * self.input_per_1m + output_tokens * self.output_per_1m) / 1e6


_API_FIELDS = ("provider", "model", "tier", "input_per_1m", "output_per_1m", "refreshed")  # all required
_PRICE = {"type": "number", "minimum": 0}
_DATE = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"}
_MODEL_FIELDS = {
    "provider": {"type": "string", "minLength": 1},
    "model": {"type": "string", "minLength": 1},
    "tier": {"type": "string", "minLength": 1},
    "input_per_1m": _PRICE,
    "output_per_1m": _PRICE,
    "refreshed": _DATE,
    "source": {"type": "string"},
}
MODEL_CATALOG_SCHEMA = {
    "type": "object",
    "required": ["models"],
    "properties": {
        "models": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": list(_API_FIELDS),
                "properties": _MODEL_FIELDS,
                "additionalProperties": False,
            },
        }
    },
}
# A user's prices: any field of a catalog entry can be replaced; a new entry needs its required fields.
PRICES_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "schema": {"const": 1},
        "note": {"type": "string"},
        "hardware": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "price_per_hour": _PRICE,
                    "price_source": {"type": "string"},
                    "price_date": _DATE,
                    "description": {"type": "string"},
                    "kind": {"enum": ["cpu", "gpu"]},
                    "memory_gb": {"type": ["number", "null"]},
                    "bandwidth_tb_s": {"type": ["number", "null"]},
                    "bf16_tflops": {"type": ["number", "null"]},
                },
            },
        },
        "api_models": {
            "type": "object",
            "additionalProperties": {"type": "object", "properties": _MODEL_FIELDS, "additionalProperties": False},
        },
    },
}
_HW_FIELDS = ("description", "kind", "memory_gb", "bandwidth_tb_s", "bf16_tflops")


def _read_json(path: str | os.PathLike, what: str) -> dict:
    p = Path(path)
    try:
        return json.loads(p.read_text())
    except OSError as exc:
        raise UsageError(f"{what} {p}: cannot read it ({exc.strerror})") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{what} {p}: not valid JSON ({exc})") from exc


def _validate(data: dict, schema: dict, where: str, fix: str) -> None:
    try:
        jsonschema.validate(data, schema)
    except jsonschema.ValidationError as exc:
        field = ".".join(str(x) for x in exc.absolute_path) or "(top level)"
        raise UsageError(f"{where}: field {field}: {exc.message}; {fix}") from exc


@dataclass
class Catalogs:
    """The hardware profiles (as plain dicts, with price, source and date) and the API models, after a
    user's prices file, if any, replaced what it names."""

    hardware: dict[str, dict]
    api_models: dict[str, ApiModel]
    prices_file: str | None = None

    def hardware_price(self, name: str) -> float:
        if name not in self.hardware:
            raise UsageError(f"--gpu={name}: not in the hardware catalog; known: {', '.join(sorted(self.hardware))}")
        return float(self.hardware[name]["price_per_hour"])

    def to_dict(self) -> dict:
        return {
            "hardware": self.hardware,
            "api_models": {k: asdict(m) for k, m in self.api_models.items()},
            "prices_file": self.prices_file,
        }


def load_catalogs(prices_file: str | os.PathLike | None = None, model_catalog: str | os.PathLike | None = None):
    """The packaged hardware catalog and model catalog, with `prices_file`'s entries laid over them."""
    from perfsuite.hardware import load_catalog

    profiles, _aliases = load_catalog()
    hardware = {
        name: {
            **{f: getattr(p, f) for f in _HW_FIELDS},
            "price_per_hour": p.price_per_hour,
            "price_source": p.price_source,
            "price_date": p.price_date,
        }
        for name, p in profiles.items()
    }
    if model_catalog is None:
        raw = json.loads(resources.files("perfsuite").joinpath("data/model-catalog.json").read_text())
        where = "perfsuite/data/model-catalog.json"
    else:
        raw, where = _read_json(model_catalog, "model catalog"), f"model catalog {model_catalog}"
    _validate(raw, MODEL_CATALOG_SCHEMA, where, "fix the entry (prices are USD per 1M tokens, dates YYYY-MM-DD)")
    models = {k: dict(v) for k, v in raw["models"].items()}

    if prices_file is not None:
        user = _read_json(prices_file, "prices file")
        fix = "see docs/report.md, 'Your own prices', for the format"
        _validate(user, PRICES_SCHEMA, f"prices file {prices_file}", fix)
        for name, entry in user.get("hardware", {}).items():
            if name not in hardware and "price_per_hour" not in entry:
                raise UsageError(
                    f"prices file {prices_file}: hardware.{name} is not in the catalog, so it needs price_per_hour"
                    f" (known: {', '.join(sorted(hardware))})"
                )
            base = hardware.get(name, {f: None for f in _HW_FIELDS} | {"kind": "gpu", "description": name})
            new = {**base, **entry}
            if "price_per_hour" in entry:  # a new price must not keep the catalog's source and date
                new["price_source"] = entry.get("price_source", f"user prices file {Path(prices_file).name}")
                new["price_date"] = entry.get("price_date", "undated")
            hardware[name] = new
        for key, entry in user.get("api_models", {}).items():
            merged = {**models.get(key, {}), **entry}
            missing = [f for f in _API_FIELDS if f not in merged]
            if missing:
                raise UsageError(
                    f"prices file {prices_file}: api_models.{key} is not in the model catalog, so it needs "
                    f"{', '.join(missing)}"
                )
            if key in models and ("input_per_1m" in entry or "output_per_1m" in entry):
                merged["source"] = entry.get("source", f"user prices file {Path(prices_file).name}")
                merged["refreshed"] = entry.get("refreshed", "undated")
            models[key] = merged
    api = {k: ApiModel(key=k, source=v.get("source", ""), **{f: v[f] for f in _API_FIELDS}) for k, v in models.items()}
    return Catalogs(hardware, api, str(prices_file) if prices_file else None)


@dataclass(frozen=True)
class Traffic:
    """A month of traffic: requests per month, the peak rate replicas are sized for, tokens per request."""

    requests_per_month: float
    peak_rps: float
    input_tokens: float
    output_tokens: float

    @classmethod
    def of(
        cls,
        requests_per_month: float | None = None,
        peak_rps: float | None = None,
        input_tokens: float = 0,
        output_tokens: float = 0,
    ) -> Traffic:
        """Traffic from what the user knows: requests per month, a peak rate, or both (see module doc)."""
        for name, v in (("input tokens", input_tokens), ("output tokens", output_tokens)):
            if v is None or not math.isfinite(v) or v < 0:
                raise UsageError(f"{name}: {v} is not a number >= 0")
        if input_tokens + output_tokens <= 0:
            raise UsageError("input and output tokens per request are both 0: give at least one")
        for name, v in (("requests per month", requests_per_month), ("peak requests/s", peak_rps)):
            if v is not None and (not math.isfinite(v) or v <= 0):
                raise UsageError(f"{name}: {v} must be a number > 0")
        if requests_per_month is None and peak_rps is None:
            raise UsageError("traffic: give requests per month (--requests-per-month) or a peak rate (--peak-rps)")
        if requests_per_month is None:
            requests_per_month = peak_rps * SECONDS_PER_MONTH
        average = requests_per_month / SECONDS_PER_MONTH
        if peak_rps is None:
            peak_rps = average
        elif peak_rps < average:
            raise UsageError(
                f"peak {peak_rps:g} requests/s is below the month's average {average:.4g} requests/s "
                f"({requests_per_month:g} requests / {SECONDS_PER_MONTH:,} s): raise the peak or lower the traffic"
            )
        return cls(float(requests_per_month), float(peak_rps), float(input_tokens), float(output_tokens))

    @property
    def average_rps(self) -> float:
        return self.requests_per_month / SECONDS_PER_MONTH


def capacity_from_results(results: dict, framework: str, profile: str | None = None, slo: SLO | None = None) -> dict:
    """Requests/s per replica of `framework` in a results file: the sweep's highest rate meeting `slo`
    (its achieved throughput), or the peak throughput when the run had no sweep (with a note saying so).

    Returns {"throughput_rps", "profile", "basis", "test_id"}."""
    from perfsuite.report import trustworthy  # a measurement error's numbers cost nothing

    ms = [m for m in results.get("measurements", []) if m.get("framework") == framework and trustworthy(m)]
    if profile:
        ms = [m for m in ms if m.get("profile") == profile]
    if not ms:
        have = sorted({f"{m.get('framework')} on {m.get('profile')}" for m in results.get("measurements", [])})
        raise UsageError(
            f"no measurement of {framework}{' on ' + profile if profile else ''} in the results; "
            f"it has: {', '.join(have) or 'none'}"
        )
    sweeps = [m for m in ms if m.get("sweep", {}).get("points")]
    if sweeps:
        slo = slo or SLO(**sweeps[0]["sweep"]["slo"])
        found = []
        for m in sweeps:
            point = sustainable_point(m["sweep"]["points"], slo)
            if point:
                found.append((point["request_throughput"], m, point))
        if not found:
            raise UsageError(
                f"{framework}: no rate of the load sweep met the SLO (TTFT p{slo.percentile} <= {slo.ttft_ms:g} ms, "
                f"TPOT p{slo.percentile} <= {slo.tpot_ms:g} ms); loosen the SLO or sweep lower rates"
            )
        rps, m, point = max(found, key=lambda x: x[0])
        return {
            "throughput_rps": rps,
            "profile": m["profile"],
            "test_id": m["test_id"],
            "basis": f"highest swept rate meeting the SLO ({point['rate']:g} req/s offered, "
            f"TTFT p{slo.percentile} <= {slo.ttft_ms:g} ms, TPOT p{slo.percentile} <= {slo.tpot_ms:g} ms)",
        }
    m = max(ms, key=lambda x: x["metrics"].get("request_throughput", 0))
    return {
        "throughput_rps": m["metrics"]["request_throughput"],
        "profile": m["profile"],
        "test_id": m["test_id"],
        "basis": "peak throughput (the results have no load sweep, so no rate is known to meet an SLO)",
    }


def calculate(
    traffic: Traffic,
    throughput_rps: float,
    price_per_hour: float,
    api_models: dict[str, ApiModel] | list[ApiModel],
    devices: int = 1,
) -> dict:
    """Self-hosted vs API costs of `traffic` (see the module docstring for every formula)."""
    if not (math.isfinite(throughput_rps) and throughput_rps > 0):
        raise UsageError(f"throughput {throughput_rps} requests/s per replica must be > 0")
    if not (math.isfinite(price_per_hour) and price_per_hour >= 0):
        raise UsageError(f"price {price_per_hour} per hour must be >= 0")
    if devices < 1 or int(devices) != devices:
        raise UsageError(f"devices per replica {devices}: a whole number >= 1")
    t = traffic
    replicas = max(1, math.ceil(t.peak_rps / throughput_rps))
    replica_monthly = devices * price_per_hour * HOURS_PER_MONTH
    monthly = replicas * replica_monthly
    tokens = t.input_tokens + t.output_tokens
    full_util = devices * price_per_hour / (throughput_rps * 3600) * 1e6
    self_hosted = {
        "replicas": replicas,
        "devices": devices,
        "price_per_hour": price_per_hour,
        "throughput_rps": throughput_rps,
        "utilization": t.peak_rps / (replicas * throughput_rps),
        "monthly_cost": cents(monthly),
        "cost_per_1m_requests": cents(monthly / t.requests_per_month * 1e6),
        "cost_per_1m_tokens": _hundredth_cent(monthly / (t.requests_per_month * tokens) * 1e6),
        "full_utilization_cost_per_1m_requests": cents(full_util),
    }
    peak_ratio = t.peak_rps / t.average_rps
    apis = {}
    models = api_models.values() if isinstance(api_models, dict) else api_models
    for m in models:
        per_request = m.cost_per_request(t.input_tokens, t.output_tokens)
        api_monthly = t.requests_per_month * per_request
        delta = (round(self_hosted["monthly_cost"] * 100) - round(cents(api_monthly) * 100)) / 100
        break_even = None
        if per_request > 0 and replica_monthly / per_request <= throughput_rps * SECONDS_PER_MONTH / peak_ratio:
            break_even = math.ceil(replica_monthly / per_request)
        apis[m.key] = {
            "provider": m.provider,
            "model": m.model,
            "tier": m.tier,
            "monthly_cost": cents(api_monthly),
            "cost_per_1m_requests": cents(per_request * 1e6),
            "delta": delta,
            "delta_pct": _round_half_away(delta / cents(api_monthly) * 100, 10) if cents(api_monthly) else None,
            "cheaper": "self-hosted" if delta < 0 else ("api" if delta > 0 else "same"),
            "break_even_requests_per_month": break_even,
        }
    return {
        "traffic": asdict(t) | {"average_rps": t.average_rps},
        "hours_per_month": HOURS_PER_MONTH,
        "self_hosted": self_hosted,
        "api": apis,
    }
