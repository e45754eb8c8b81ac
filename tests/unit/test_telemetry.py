"""Prometheus parsing and the telemetry summary, on hand-written samples."""

import asyncio
import subprocess
import sys
import time

import psutil
import pytest

from perfsuite.server import free_port
from perfsuite.telemetry import GB, MetricNames, Telemetry, parse_metrics, process_tree_memory

# In the shape vLLM's /metrics has: colons in names, labels, counters exposed with _total (and _created),
# gauges per engine, histograms with buckets, _sum and _count.
VLLM_SAMPLE = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="tiny"} 3.0
vllm:num_requests_running{engine="1",model_name="tiny"} 2.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="tiny"} 7.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="tiny"} 0.25
# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{engine="0",model_name="tiny"} 1000.0
vllm:prefix_cache_queries_total{engine="1",model_name="tiny"} 500.0
# HELP vllm:prefix_cache_queries_created Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:prefix_cache_queries_created gauge
vllm:prefix_cache_queries_created{engine="0",model_name="tiny"} 1.7e+09
# HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{engine="0",model_name="tiny"} 600.0
vllm:prefix_cache_hits_total{engine="1",model_name="tiny"} 150.0
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{le="0.1",model_name="tiny"} 4.0
vllm:time_to_first_token_seconds_bucket{le="1.0",model_name="tiny"} 9.0
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="tiny"} 10.0
vllm:time_to_first_token_seconds_count{model_name="tiny"} 10.0
vllm:time_to_first_token_seconds_sum{model_name="tiny"} 2.5
vllm:time_to_first_token_seconds_count{model_name="other"} 5.0
vllm:time_to_first_token_seconds_sum{model_name="other"} 1.5
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 1.23456789e+08
"""

VLLM_NAMES = MetricNames(
    kv_cache_usage=("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
    queue_depth=("vllm:num_requests_waiting",),
    running=("vllm:num_requests_running",),
    prefix_queries=("vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total"),
    prefix_hits=("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total"),
)


def test_parse_metrics_sums_over_labels():
    m = parse_metrics(VLLM_SAMPLE)
    assert m["vllm:num_requests_running"] == 5.0
    assert m["vllm:num_requests_waiting"] == 7.0
    assert m["vllm:kv_cache_usage_perc"] == 0.25
    assert m["vllm:prefix_cache_queries_total"] == 1500.0  # counters keep their _total sample name
    assert m["vllm:prefix_cache_hits_total"] == 750.0
    assert m["vllm:time_to_first_token_seconds_count"] == 15.0
    assert m["vllm:time_to_first_token_seconds_sum"] == pytest.approx(4.0)
    assert m["process_resident_memory_bytes"] == pytest.approx(123456789)
    assert "vllm:prefix_cache_queries_created" in m  # kept under its own name, not added to the counter


def test_parse_metrics_untyped_and_empty():
    assert parse_metrics("") == {}
    m = parse_metrics('my_metric{a="1"} 2\nmy_metric{a="2"} 3\nother 1e3\n')
    assert m == {"my_metric": 5.0, "other": 1000.0}


def telemetry(**kw) -> Telemetry:
    return Telemetry(procs=lambda: [], names=VLLM_NAMES, **kw)


def test_summary_prefix_cache_hit_rate_from_first_and_last_scrape():
    t = telemetry()
    t.first_scrape = {"vllm:prefix_cache_queries_total": 1000.0, "vllm:prefix_cache_hits_total": 100.0}
    t.last_scrape = {"vllm:prefix_cache_queries_total": 3000.0, "vllm:prefix_cache_hits_total": 1600.0}
    assert t.summary()["prefix_cache_hit_rate"] == pytest.approx(1500 / 2000)


def test_summary_hit_rate_uses_the_first_name_present():
    t = telemetry()
    t.first_scrape = {"vllm:gpu_prefix_cache_queries_total": 0.0, "vllm:gpu_prefix_cache_hits_total": 0.0}
    t.last_scrape = {"vllm:gpu_prefix_cache_queries_total": 400.0, "vllm:gpu_prefix_cache_hits_total": 100.0}
    assert t.summary()["prefix_cache_hit_rate"] == pytest.approx(0.25)


def test_summary_hit_rate_from_parsed_scrapes():
    t = telemetry()
    t.first_scrape = parse_metrics(VLLM_SAMPLE)
    t.last_scrape = parse_metrics(VLLM_SAMPLE.replace("1000.0", "3000.0").replace("600.0", "1850.0"))
    assert t.summary()["prefix_cache_hit_rate"] == pytest.approx(1250 / 2000)


@pytest.mark.parametrize(
    "first, last",
    [
        (None, {"vllm:prefix_cache_queries_total": 10.0, "vllm:prefix_cache_hits_total": 5.0}),
        ({"vllm:prefix_cache_queries_total": 10.0, "vllm:prefix_cache_hits_total": 5.0}, None),
        # no queries during the run: no rate rather than a division by zero
        (
            {"vllm:prefix_cache_queries_total": 10.0, "vllm:prefix_cache_hits_total": 5.0},
            {"vllm:prefix_cache_queries_total": 10.0, "vllm:prefix_cache_hits_total": 5.0},
        ),
        ({"vllm:prefix_cache_queries_total": 10.0}, {"vllm:prefix_cache_queries_total": 20.0}),  # no hits metric
        ({}, {}),
    ],
)
def test_summary_no_hit_rate_without_data(first, last):
    t = telemetry()
    t.first_scrape, t.last_scrape = first, last
    assert "prefix_cache_hit_rate" not in t.summary()


def test_summary_memory_and_peaks_from_samples():
    t = telemetry()
    t.samples = [
        {
            "t": 0.0,
            "mem_used": 2 * GB,
            "mem_total": 8 * GB,
            "mem_source": "process-tree-pss",
            "kv_cache_usage": 0.1,
            "queue_depth": 0.0,
            "running": 1.0,
        },
        {
            "t": 0.5,
            "mem_used": 4 * GB,
            "mem_total": 8 * GB,
            "mem_source": "process-tree-pss",
            "kv_cache_usage": 0.6,
            "queue_depth": 5.0,
            "running": 8.0,
        },
        {"t": 1.0, "mem_used": 3 * GB, "mem_total": 8 * GB, "mem_source": "process-tree-pss", "kv_cache_usage": 0.3},
    ]
    s = t.summary()
    assert s["telemetry_samples"] == 3
    assert s["memory_used_peak_gb"] == pytest.approx(4.0)
    assert s["memory_used_mean_gb"] == pytest.approx(3.0)
    assert s["memory_total_gb"] == pytest.approx(8.0)
    assert s["memory_utilization"] == pytest.approx(0.5)
    assert s["memory_source"] == "process-tree-pss"
    assert s["kv_cache_usage_peak"] == pytest.approx(0.6)
    assert s["queue_depth_peak"] == 5.0
    assert s["running_peak"] == 8.0


def test_summary_without_samples():
    s = telemetry().summary()
    assert s == {"telemetry_samples": 0}


def test_sampling_without_a_metrics_url_reads_process_memory():
    me = psutil.Process()
    t = Telemetry(procs=lambda: [me], interval_s=60)
    t.start()
    s = t.stop()
    assert s["telemetry_samples"] >= 1
    assert s["memory_used_peak_gb"] > 0
    assert 0 < s["memory_utilization"] < 1
    assert s["memory_source"] == "process-tree-pss"
    assert t.first_scrape is None and t.last_scrape is None
    assert t.errors == []


def test_unreachable_metrics_url_is_recorded_not_raised():
    t = Telemetry(procs=lambda: [], metrics_url=f"http://127.0.0.1:{free_port()}/metrics", interval_s=60)
    t.start()
    s = t.stop()
    assert t.errors and all(e.startswith("/metrics:") for e in t.errors)
    assert "prefix_cache_hit_rate" not in s


def test_process_tree_memory_of_this_process():
    me = psutil.Process()
    used = process_tree_memory([me])
    assert used > 0
    assert used <= psutil.virtual_memory().total
    assert process_tree_memory([]) == 0.0


def test_process_tree_memory_skips_dead_processes():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    proc = psutil.Process(p.pid)
    p.wait()
    # a process gone since the list was taken adds nothing and raises nothing
    assert process_tree_memory([proc]) == 0.0
    assert process_tree_memory([proc, psutil.Process()]) > 0


def test_sampling_never_holds_the_load_generators_event_loop():
    """A sampler that holds the GIL for tens of ms a sample (as psutil over Ray's process tree did) must not
    delay this process's event loop: it samples in a process of its own."""

    def busy_tree():
        sum(range(4_000_000))  # one C call: holds the GIL throughout (tens of ms), as psutil's /proc reads did
        return []

    async def worst_loop_lag(seconds: float) -> float:
        worst, end = 0.0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            t = time.perf_counter()
            await asyncio.sleep(0.005)
            worst = max(worst, time.perf_counter() - t - 0.005)
        return worst

    t = Telemetry(procs=busy_tree, interval_s=0.05).start()
    try:
        lag = asyncio.run(worst_loop_lag(1.0))
    finally:
        s = t.stop()
    assert s["telemetry_samples"] >= 5  # it did sample, elsewhere
    assert lag < 0.04, f"the event loop was held {lag * 1e3:.0f} ms"
