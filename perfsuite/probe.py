"""This machine's CPU peaks, measured: matmul FLOP/s and memory bandwidth, for the roofline on `--gpu=cpu`.

A CPU has no catalog figure worth trusting (a VM's share of a host, turbo, AVX-512 or AMX or neither),
so the bound on the CPU profile uses what a short probe measures here:

- FLOP/s: the best of a few square matmuls in float32 and in bfloat16 (vLLM runs a float32 model in
  bf16 on a CPU that has it; AMX makes bf16 several times faster). The larger is the peak.
- Bandwidth: the best of a copy (2 bytes moved per byte copied) and a read-only sum, for a large buffer
  (2x the last-level cache, at most 256 MiB in all: "DRAM") and for one that fits in L2 ("cache"). A
  model whose decode working set fits in the last-level cache streams it at cache speed: the bound then
  uses the in-cache figure, so that it stays an upper bound (the tiny local model's 8 MB of bf16
  weights do fit). A large buffer that still partly fits a big cache reads high: safe for a bound.

All cores this process may run on are used, at least as many as any engine gets. A probe taken while
something else runs (a serving engine busy-polls a core) reads low and would make the bound too tight:
run it with no server up. The best figures ever seen on this CPU are kept in
<cache>/probe/<cpu>.json (JSON) and used when higher than a new probe's, so one disturbed probe
cannot lower the bound.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import psutil

__all__ = ["CpuPeak", "probe_cpu", "cpu_peak", "cpu_identity", "last_level_cache_bytes"]

_MATMUL_N = 1024  # 2.1 GFLOP per multiply: long enough to time, short enough for a 1-2 s probe
_TRIALS = 3
_CACHE_BYTES = 1 << 20  # 1 MiB source + 1 MiB destination: inside any L2 of 2 MiB, or most L3s
_MAX_DRAM_BYTES = 256 << 20  # in all: allocating more costs seconds of page faults


@dataclass(frozen=True)
class CpuPeak:
    cpu: str  # what was probed: model name, cores
    cores: int
    flops: float  # best matmul FLOP/s over the dtypes probed
    flops_by_dtype: dict  # {"float32": FLOP/s, "bfloat16": FLOP/s}
    dram_bandwidth: float  # bytes/s, large buffer (2x the last-level cache, at most 256 MiB)
    cache_bandwidth: float  # bytes/s, buffer inside L2
    cache_bytes: int  # last-level cache size: a working set up to this streams at cache speed (at best)
    date: str
    busy_others: float = 0.0  # share of the machine other processes used during the probe (0..1)

    def describe(self) -> str:
        dtypes = ", ".join(f"{k} {v / 1e9:,.0f}" for k, v in sorted(self.flops_by_dtype.items()))
        return (
            f"{self.cpu}: matmul GFLOP/s {dtypes}; bandwidth {self.cache_bandwidth / 1e9:,.1f} GB/s in cache, "
            f"{self.dram_bandwidth / 1e9:,.1f} GB/s large buffer; last-level cache {self.cache_bytes / 2**20:,.0f} "
            f"MiB; {self.cores} cores (best probe, {self.date})"
        )


def cpu_identity() -> tuple[str, int]:
    """(a readable CPU name with family/model/stepping, the cores this process may use)."""
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "cpu family", "model", "stepping") and key not in fields:
                fields[key] = value.strip()
    except OSError:
        pass
    import platform

    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields:
        name += f" (family {fields['cpu family']} model {fields.get('model')} stepping {fields.get('stepping')})"
    return name, len(os.sched_getaffinity(0))


def last_level_cache_bytes() -> int:
    """The largest cache sysfs reports for cpu0 (0 when unknown)."""
    sizes = []
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (index / "size").read_text().strip().upper()
        except OSError:
            continue
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            sizes.append(int(digits) * mult)
    return max(sizes, default=0)


def _best(fn, trials: int) -> float:
    fn()  # warm-up: page faults, kernel selection
    best = float("inf")
    for _ in range(trials):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _matmul_flops(torch, dtype, n: int = _MATMUL_N, trials: int = _TRIALS) -> float:
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    out = torch.empty(n, n, dtype=dtype)
    return 2 * n**3 / _best(lambda: torch.mm(a, b, out=out), trials)


def _bandwidth(nbytes: int, threads: int, trials: int = _TRIALS) -> float:
    """Bytes/s, all threads together: the better of a copy (read + write counted) and a read-only sum,
    each thread on its own `nbytes` buffer. numpy, not torch: torch's threaded copy of a small buffer
    costs more in thread wake-ups than in moving bytes (0.3 GB/s measured for 1 MiB)."""
    n = max(1, nbytes // 4)
    buffers = [(np.ones(n, np.float32), np.ones(n, np.float32)) for _ in range(threads)]
    reps = max(1, (64 << 20) // nbytes)  # small buffers: repeat, so that a trial is not timer noise

    def run(work) -> None:
        pool = [threading.Thread(target=work, args=pair) for pair in buffers]
        for t in pool:
            t.start()
        for t in pool:
            t.join()

    def copy(src, dst):
        for _ in range(reps):
            np.copyto(dst, src)  # releases the GIL: the threads run in parallel

    def read(src, _dst):
        for _ in range(reps):
            src.sum()

    moved = nbytes * reps * threads
    copy_s = _best(lambda: run(copy), trials)
    read_s = _best(lambda: run(read), trials)
    return max(2 * moved / copy_s, moved / read_s)


def probe_cpu(trials: int = _TRIALS) -> CpuPeak:
    """Measure now, with every core this process may use (about 1-2 s plus importing torch)."""
    import torch

    name, cores = cpu_identity()
    llc = last_level_cache_bytes()
    dram_bytes = min(max(2 * llc, 64 << 20), _MAX_DRAM_BYTES)
    threads = torch.get_num_threads()
    torch.set_num_threads(cores)
    me = psutil.Process()
    psutil.cpu_percent(None)
    mine_before, wall_before = sum(me.cpu_times()[:2]), time.perf_counter()
    try:
        with torch.inference_mode():
            flops = {"float32": _matmul_flops(torch, torch.float32, trials=trials)}
            with contextlib.suppress(RuntimeError):  # no bf16 matmul on this CPU build
                flops["bfloat16"] = _matmul_flops(torch, torch.bfloat16, trials=trials)
            cache_bw = _bandwidth(_CACHE_BYTES, cores, trials)
            dram_bw = _bandwidth(dram_bytes // cores, cores, trials)
    finally:
        torch.set_num_threads(threads)
    wall = time.perf_counter() - wall_before
    busy_all = psutil.cpu_percent(None) / 100 * psutil.cpu_count()  # cores busy on average, everyone
    busy_mine = (sum(me.cpu_times()[:2]) - mine_before) / wall if wall > 0 else 0.0
    others = max(0.0, busy_all - busy_mine) / max(1, psutil.cpu_count())
    return CpuPeak(
        cpu=name,
        cores=cores,
        flops=max(flops.values()),
        flops_by_dtype=flops,
        dram_bandwidth=dram_bw,
        cache_bandwidth=max(cache_bw, dram_bw),
        cache_bytes=llc,
        date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        busy_others=round(others, 3),
    )


def _store_path(cache_dir: str | os.PathLike | None) -> Path:
    from perfsuite.model import default_cache_dir

    name, cores = cpu_identity()
    key = hashlib.sha256(f"{name}|{cores}".encode()).hexdigest()[:12]
    return Path(cache_dir or default_cache_dir()) / "probe" / f"cpu-{cores}c-{key}.json"


def _best_of(a: CpuPeak, b: CpuPeak) -> CpuPeak:
    """Field by field the higher figure: a disturbed probe must not lower the bound."""
    dtypes = {
        k: max(a.flops_by_dtype.get(k, 0.0), b.flops_by_dtype.get(k, 0.0))
        for k in {**a.flops_by_dtype, **b.flops_by_dtype}
    }
    return CpuPeak(
        cpu=a.cpu,
        cores=a.cores,
        flops=max(a.flops, b.flops),
        flops_by_dtype=dtypes,
        dram_bandwidth=max(a.dram_bandwidth, b.dram_bandwidth),
        cache_bandwidth=max(a.cache_bandwidth, b.cache_bandwidth),
        cache_bytes=max(a.cache_bytes, b.cache_bytes),
        date=max(a.date, b.date),
        busy_others=min(a.busy_others, b.busy_others),
    )


def _read(path: Path) -> CpuPeak | None:
    try:
        return CpuPeak(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None  # absent or unreadable: a fresh probe replaces it


_SESSION: dict[str, CpuPeak] = {}


def cpu_peak(cache_dir: str | os.PathLike | None = None, refresh: bool = False) -> CpuPeak:
    """This CPU's peaks: probed once per process, combined with the best figures stored for this CPU.

    Call it with no serving engine running on this machine (see the module docstring).
    """
    path = _store_path(cache_dir)
    key = str(path)
    if key in _SESSION and not refresh:
        return _SESSION[key]
    peak = probe_cpu()
    stored = _read(path)
    if stored is not None and stored.cores == peak.cores:
        peak = _best_of(peak, stored)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(peak), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache is no reason to fail a run: the figures are kept for this process
    _SESSION[key] = peak
    return peak
