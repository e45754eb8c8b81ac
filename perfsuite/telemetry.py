"""Server telemetry sampled while load runs: memory (NVML on GPUs, the process tree on the CPU) and
the server's Prometheus /metrics, parsed with prometheus_client's parser."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["MetricNames", "parse_metrics", "Telemetry", "process_tree_memory"]

GB = 1e9


@dataclass(frozen=True)
class MetricNames:
    """Which Prometheus sample names mean what, for one framework. The first name present wins."""

    kv_cache_usage: tuple[str, ...] = ()
    queue_depth: tuple[str, ...] = ()
    running: tuple[str, ...] = ()
    prefix_queries: tuple[str, ...] = ()
    prefix_hits: tuple[str, ...] = ()


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text to {sample name: value summed over label sets}."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name] = out.get(s.name, 0.0) + float(s.value)
    return out


def _first(values: dict[str, float], names: tuple[str, ...]) -> float | None:
    for n in names:
        if n in values:
            return values[n]
    return None


def process_tree_memory(procs: list[psutil.Process]) -> float:
    """Bytes used by these processes: proportional set size (shared pages split fairly), RSS as fallback."""
    total = 0.0
    for p in procs:
        try:
            info = p.memory_full_info()
            total += getattr(info, "pss", info.rss)
        except (psutil.AccessDenied, AttributeError):
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


class _NVML:
    """GPU memory used/total over the visible devices (None where NVML is unavailable)."""

    def __init__(self) -> None:
        self.handles = []
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nvml = pynvml
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        except Exception:
            self.handles = []

    def read(self) -> tuple[float, float] | None:
        if not self.handles:
            return None
        used = total = 0
        for h in self.handles:
            info = self.nvml.nvmlDeviceGetMemoryInfo(h)
            used += info.used
            total += info.total
        return float(used), float(total)

    def close(self) -> None:
        if self.handles:
            with contextlib.suppress(Exception):
                self.nvml.nvmlShutdown()


# How long start() waits for the sampler's first scrape, and stop() for its samples.
SAMPLER_TIMEOUT_S = 15.0


@dataclass
class Telemetry:
    """Samples every `interval_s` between start() and stop(), in a child process of its own.

    Not a thread: sampling a big process tree (Ray Serve's) and parsing /metrics hold the GIL for tens
    of milliseconds at a time, and a thread doing it in the load generator's process delayed its event
    loop (measured on Ray Serve, chat, 8 users: loop lag p99 135-172 ms with a sampling thread, 18-19 ms
    without; client CPU 25% vs 6%). The child is forked (it runs `procs` as given) and sends its
    samples back as JSON when told to stop."""

    procs: Callable[[], list[psutil.Process]]
    metrics_url: str | None = None
    names: MetricNames = MetricNames()
    use_gpu: bool = False
    interval_s: float = 0.5
    samples: list[dict] = field(default_factory=list)
    first_scrape: dict[str, float] | None = None
    last_scrape: dict[str, float] | None = None
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._nvml: _NVML | None = None
        self._t0 = 0.0

    def start(self) -> Telemetry:
        """Start the sampler; returns once it has taken its first /metrics scrape (the counters' start)."""
        ctx = multiprocessing.get_context("fork")
        self._ready, self._stop = ctx.Event(), ctx.Event()
        self._receive, self._send = ctx.Pipe(duplex=False)
        self._process = ctx.Process(target=self._sample_in_child, name="perfsuite-telemetry", daemon=True)
        self._process.start()
        if not self._ready.wait(SAMPLER_TIMEOUT_S):
            self.errors.append(f"telemetry: the sampler did not start within {SAMPLER_TIMEOUT_S:g} s")
        return self

    def stop(self) -> dict:
        """Stop the sampler and take its samples; the summary of the run."""
        self._stop.set()
        try:
            if self._receive.poll(SAMPLER_TIMEOUT_S):
                got = json.loads(self._receive.recv_bytes())
                self.samples, self.first_scrape, self.last_scrape = got["samples"], got["first"], got["last"]
                self.errors += got["errors"]
            else:
                self.errors.append(f"telemetry: no samples from the sampler within {SAMPLER_TIMEOUT_S:g} s")
        except (EOFError, OSError, ValueError) as exc:
            self.errors.append(f"telemetry: the sampler's samples were lost ({exc})")
        finally:
            self._process.join(5)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(5)
            self._receive.close()
            self._send.close()
        return self.summary()

    def _sample_in_child(self) -> None:
        """The sampler (in the child): scrape, sample until told to stop, sample once more, send."""
        self._t0 = time.perf_counter()
        self._nvml = _NVML() if self.use_gpu else None
        self.first_scrape = self._scrape()
        self._ready.set()
        while not self._stop.wait(self.interval_s):
            self._sample()
        self._sample()
        self.last_scrape = self._scrape() or self.last_scrape
        if self._nvml:
            self._nvml.close()
        got = {"samples": self.samples, "first": self.first_scrape, "last": self.last_scrape, "errors": self.errors}
        self._send.send_bytes(json.dumps(got).encode())

    def _scrape(self) -> dict[str, float] | None:
        if not self.metrics_url:
            return None
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=2) as resp:  # noqa: S310
                return parse_metrics(resp.read().decode())
        except Exception as exc:
            self.errors.append(f"/metrics: {type(exc).__name__}: {exc}"[:200])
            return None

    def _sample(self) -> None:
        s: dict = {"t": time.perf_counter() - self._t0}
        gpu = self._nvml.read() if self._nvml else None
        if gpu:
            s["mem_used"], s["mem_total"], s["mem_source"] = gpu[0], gpu[1], "nvml"
        else:
            s["mem_used"] = process_tree_memory(self.procs())
            s["mem_total"] = float(psutil.virtual_memory().total)
            s["mem_source"] = "process-tree-pss"
        scraped = self._scrape()
        if scraped:
            self.last_scrape = scraped
            for key in ("kv_cache_usage", "queue_depth", "running"):
                v = _first(scraped, getattr(self.names, key))
                if v is not None:
                    s[key] = v
        self.samples.append(s)

    def summary(self) -> dict:
        out: dict = {"telemetry_samples": len(self.samples)}
        used = [s["mem_used"] for s in self.samples if s.get("mem_used")]
        if used:
            total = self.samples[-1]["mem_total"]
            out.update(
                memory_used_peak_gb=max(used) / GB,
                memory_used_mean_gb=sum(used) / len(used) / GB,
                memory_total_gb=total / GB,
                memory_utilization=max(used) / total,
                memory_source=self.samples[-1]["mem_source"],
            )
        for key, name in (
            ("kv_cache_usage", "kv_cache_usage_peak"),
            ("queue_depth", "queue_depth_peak"),
            ("running", "running_peak"),
        ):
            vals = [s[key] for s in self.samples if key in s]
            if vals:
                out[name] = max(vals)
        if self.first_scrape is not None and self.last_scrape is not None:
            q0, q1 = (
                _first(self.first_scrape, self.names.prefix_queries),
                _first(self.last_scrape, self.names.prefix_queries),
            )
            h0, h1 = _first(self.first_scrape, self.names.prefix_hits), _first(self.last_scrape, self.names.prefix_hits)
            if None not in (q0, q1, h0, h1) and q1 > q0:
                out["prefix_cache_hit_rate"] = (h1 - h0) / (q1 - q0)
        return out
