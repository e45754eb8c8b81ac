"""Load-generator worker processes (perfsuite.workers): the split load is sent exactly, the records come
back on the coordinator's clock, a worker that dies fails the measurement by name, and none is left.
Against the hand-written stream in openai_stream.py (the scheduling under test is perfsuite's own;
tests/integration/test_workers_vllm.py checks the same against real vLLM's counters)."""

import os
import threading
import time
import warnings

import psutil
import pytest
from openai_stream import openai_stream

from perfsuite import Load, UsageError
from perfsuite.loadgen import Endpoint
from perfsuite.partition import global_schedule
from perfsuite.protocols import OpenAIProtocol
from perfsuite.ray_workers import RayWorkers
from perfsuite.workers import LocalWorkers, WorkerLost, open_workers, run_workers
from perfsuite.workloads import RequestSpec


def _specs(n: int) -> list[RequestSpec]:
    return [RequestSpec(f"prompt {i}", 16, 3 + i % 4) for i in range(n)]


def _workers_alive() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if "perfsuite.worker" in " ".join(p.cmdline())]


@pytest.fixture(autouse=True)
def no_worker_left():
    yield
    assert _workers_alive() == []


def test_a_closed_loop_from_two_workers_sends_exactly_the_requests_asked_for():
    seen = []
    load = Load.closed(4, requests=20, warmup_requests=2, workers=2)
    specs = _specs(22)
    with openai_stream(prompt_tokens=16, token_delay_s=0.002, seen=seen) as url, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 2 workers on a 2-core machine: fine here
        run = run_workers(Endpoint(url, "m"), OpenAIProtocol(), specs, load)
    assert len(seen) == 22 and sorted(b["prompt"] for b in seen) == sorted(s.prompt for s in specs)
    assert len(run.records) == 20 and all(r.ok for r in run.records)
    assert sorted(r.expected_output for r in run.records) == sorted(s.output_tokens for s in specs[2:])
    workers = run.client.workers
    assert [w["worker"] for w in workers] == [0, 1] and len({w["pid"] for w in workers}) == 2
    assert all(abs(w["clock_offset_ms"]) < 50 and w["clock_rtt_ms"] < 200 for w in workers)
    assert all(abs(w["start_late_ms"]) < 100 for w in workers)  # the barrier: both started together
    assert sum(w["client"]["requests"] for w in workers) == 20
    # On the coordinator's clock: every request was sent after the start and within the run's wall time.
    assert all(run.started - 0.01 <= r.send <= r.end <= run.started + run.wall_s + 0.01 for r in run.records)


def test_open_arrivals_from_two_workers_keep_the_one_global_schedule():
    load = Load.poisson(40.0, requests=30, warmup_requests=0, seed=3, workers=2)
    specs = _specs(30)
    with openai_stream(prompt_tokens=16) as url, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        run = run_workers(Endpoint(url, "m"), OpenAIProtocol(), specs, load, repetition=1)
    due = sorted(at for _, at in global_schedule(load, specs, 1))
    got = sorted(r.scheduled - run.started for r in run.records)
    assert got == pytest.approx(due, abs=0.02)  # the workers' clocks agree to well under 20 ms here
    assert run.client.scheduled_rate == pytest.approx((len(due) - 1) / (due[-1] - due[0]), rel=0.05)
    assert run.client.send_lag_p99_ms < 50


def test_a_worker_that_dies_fails_the_measurement_by_name_and_none_is_left():
    load = Load.closed(2, requests=40, warmup_requests=0, workers=2)
    with openai_stream(prompt_tokens=16, token_delay_s=0.02) as url, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with open_workers(2) as pool:
            victim = pool._procs[1].pid
            threading.Timer(1.5, os.kill, (victim, 9)).start()
            with pytest.raises(
                WorkerLost,
                match=rf"load worker 2 of 2 \(pid {victim}\) was killed by signal 9 during the measured phase",
            ):
                pool.run(Endpoint(url, "m"), OpenAIProtocol(), _specs(40), load)


def test_a_worker_that_fails_names_itself_and_what_it_said():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with (
            open_workers(2) as pool,
            pytest.raises(WorkerLost, match=r"load worker \d of 2 \(pid \d+\) failed in 'prepare': TypeError"),
        ):
            pool._call_all("prepare", [[{"endpoint": {}}], [{"endpoint": {}}]], 30)


def test_more_workers_than_usable_cores_is_a_warning_with_the_numbers():
    cores = len(os.sched_getaffinity(0))
    with pytest.warns(RuntimeWarning, match=f"{cores + 1} load-generator workers on {cores} usable core"):
        LocalWorkers(cores + 1).close()


def test_workers_must_be_a_whole_number():
    with pytest.raises(UsageError, match="Load.workers=0"):
        Load.closed(2, workers=0)
    with pytest.raises(UsageError, match="workers=1.5"), open_workers(1.5):
        pass


def test_an_unreachable_ray_address_is_an_error_within_its_deadline():
    with socket_that_refuses() as port:
        t = time.monotonic()
        with pytest.raises(UsageError, match=f"nothing answers at 127.0.0.1:{port}"):
            RayWorkers(2, f"127.0.0.1:{port}", connect_timeout_s=3)
        assert time.monotonic() - t < 5
    with pytest.raises(UsageError, match="give 'auto', 'host:port'"):
        RayWorkers(1, "no-port-here")


class socket_that_refuses:
    """A loopback port nobody listens on (bound, then closed)."""

    def __enter__(self) -> int:
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        return port

    def __exit__(self, *exc) -> None:
        pass
