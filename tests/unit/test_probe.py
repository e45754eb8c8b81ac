"""The CPU peak probe: real measurements on this machine, the per-CPU JSON store, and the device it makes."""

import json

import pytest

from perfsuite.probe import CpuPeak, cpu_identity, cpu_peak, last_level_cache_bytes, probe_cpu
from perfsuite.roofline import Device, ModelShape, roofline


def _peak(**kw) -> CpuPeak:
    name, cores = cpu_identity()
    fields = dict(
        cpu=name,
        cores=cores,
        flops=2e12,
        flops_by_dtype={"float32": 1e11, "bfloat16": 2e12},
        dram_bandwidth=10e9,
        cache_bandwidth=50e9,
        cache_bytes=32 << 20,
        date="2026-01-01T00:00:00+00:00",
    )
    return CpuPeak(**{**fields, **kw})


def test_the_probe_measures_this_cpu():
    p = probe_cpu(trials=1)
    assert p.cores >= 1 and p.cpu
    assert p.flops_by_dtype["float32"] > 1e9  # any CPU of this century multiplies faster than 1 GFLOP/s
    assert p.flops == max(p.flops_by_dtype.values())
    assert p.dram_bandwidth > 1e8
    assert p.cache_bandwidth >= p.dram_bandwidth
    assert 0.0 <= p.busy_others <= 1.0
    assert f"{p.cores} cores" in p.describe()


def test_the_last_level_cache_is_read_from_sysfs():
    size = last_level_cache_bytes()
    assert size == 0 or size >= 64 << 10  # unknown, or at least a plausible L2/L3


def test_the_store_keeps_the_best_figures_ever_seen(tmp_path):
    """A probe disturbed by a busy neighbour reads low: the stored best must win, field by field."""
    first = cpu_peak(cache_dir=tmp_path, refresh=True)
    (stored,) = (tmp_path / "probe").glob("*.json")
    data = json.loads(stored.read_text())  # JSON, never pickle
    assert data["flops"] == pytest.approx(first.flops)
    data["flops"] = data["flops_by_dtype"]["float32"] = 1e18  # a figure no probe here will beat
    stored.write_text(json.dumps(data))
    again = cpu_peak(cache_dir=tmp_path, refresh=True)
    assert again.flops == 1e18 and again.flops_by_dtype["float32"] == 1e18
    assert again.cache_bandwidth >= first.cache_bandwidth and again.dram_bandwidth >= first.dram_bandwidth
    assert json.loads(stored.read_text())["flops"] == 1e18
    assert cpu_peak(cache_dir=tmp_path) is again  # once per process unless refreshed


def test_an_unreadable_store_is_replaced(tmp_path):
    store = tmp_path / "probe"
    store.mkdir()
    cpu_peak(cache_dir=tmp_path, refresh=True)
    (path,) = store.glob("*.json")
    path.write_text("{not json")
    peak = cpu_peak(cache_dir=tmp_path, refresh=True)
    assert json.loads(path.read_text())["flops"] == pytest.approx(peak.flops)


def test_the_cpu_device_uses_the_fastest_dtype_and_the_in_cache_bandwidth_when_the_working_set_fits():
    device = Device.from_cpu_peak(_peak(), memory=16e9)
    assert device.flops == 2e12 and device.bandwidth == 10e9 and device.cache_bandwidth == 50e9
    assert "bfloat16" in device.source
    # One layer, hidden 2, vocab 10 (66 parameters, 132 bytes; KV 8 bytes a token; see test_roofline).
    toy = ModelShape(
        layers=1, hidden=2, heads=1, kv_heads=1, head_dim=2, intermediate=4, vocab=10, tied=True, dtype_bytes=2
    )
    small = roofline(toy, device, 3, 3, concurrency=4)
    # Working set 132 + 4 * 8 * 6 = 324 bytes, in cache: step (132 + 4 * 8 * 4.5) / 50e9 s; 4 / (step * 3).
    assert small.memory_rps == pytest.approx(4 / ((132 + 144) / 50e9 * 3))
    assert "in-cache" in small.explanation
    tiny_cache = Device.from_cpu_peak(_peak(cache_bytes=100), memory=16e9)
    big = roofline(toy, tiny_cache, 3, 3, concurrency=4)
    assert big.memory_rps == pytest.approx(4 / ((132 + 144) / 10e9 * 3))  # 324 bytes > 100: DRAM figure
    assert "in-cache" not in big.explanation
