"""Numbers above the physical bound are refused: a measurement, a baseline edited by hand, an approval.

The device is given (no probe), so every bound here is computed by hand from the tiny model's shape:
4 layers, hidden 256, 4 heads of 64, 2 KV heads, MLP 704, vocab 4096, tied: exactly 4,000,000
parameters; run in bf16 (vLLM's choice for a float32 checkpoint): 8 MB of weights, KV 2 * 4 * 2 * 64 * 2
= 2,048 bytes a token.
"""

import json
import re
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from perfsuite.baseline import load_baseline
from perfsuite.cli import main
from perfsuite.errors import ServerError
from perfsuite.fingerprint import this_machine
from perfsuite.frameworks import EngineSettings
from perfsuite.hardware import resolve_profile
from perfsuite.measurement import Measurement
from perfsuite.roofline import Bound, Device, check_within_bound, measurement_bound, run_dtype_bytes
from perfsuite.session import PerfOptions, PerfSession, ServerPool
from perfsuite.verdict import Verdict

ROOT = Path(__file__).resolve().parents[2]
TINY = {
    "num_hidden_layers": 4,
    "hidden_size": 256,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "intermediate_size": 704,
    "vocab_size": 4096,
    "tie_word_embeddings": True,
    "dtype": "float32",
}
# 1 TFLOP/s, 10 GB/s, 16 GB, no cache figure: the throughput workload is bandwidth-bound.
DEVICE = Device(flops=1e12, bandwidth=10e9, memory=16e9, name="test device")
THROUGHPUT = {"name": "throughput", "input_tokens": [128, 128], "output_tokens": [128, 128], "shared_prefix_tokens": 0}
CLOSED_8 = {"arrival": "closed", "concurrency": 8, "requests": 48}
ENGINE = {"dtype": None, "max_num_seqs": 32, "quantization": None, "tensor_parallel_size": 1}
# Decode step for 8 sequences: 8 MB of weights + 8 * 2,048 bytes * 192 tokens of mean context, at 10 GB/s;
# 128 steps a request.
STEP_S = (8_000_000 + 8 * 2048 * 192) / 10e9
BOUND_RPS = 8 / (STEP_S * 128)  # 56.08 req/s


def test_the_tiny_model_on_the_test_device_by_hand():
    b = measurement_bound(TINY, DEVICE, THROUGHPUT, CLOSED_8, ENGINE, {})
    assert b.limited_by == "memory bandwidth" and b.batch == 8
    assert b.requests_per_s == pytest.approx(BOUND_RPS)
    assert b.output_tokens_per_s == pytest.approx(BOUND_RPS * 128)
    assert "4.00M parameters (8 MB)" in b.explanation


@pytest.mark.parametrize(
    ("load", "engine", "batch"),
    [
        (CLOSED_8, ENGINE, 8),  # the closed loop's users
        ({"arrival": "closed", "concurrency": 64}, ENGINE, 64),  # a served framework may ignore max_num_seqs
        ({"arrival": "offline", "requests": 64, "output_tokens": 128}, ENGINE, 32),  # vllm.LLM honours it
        ({"arrival": "poisson", "rate": 8.0, "concurrency": None, "requests": 48}, ENGINE, 48),  # all it sends
        ({"arrival": "poisson", "rate": 8.0, "concurrency": 4, "requests": 48}, ENGINE, 4),
        ({"arrival": "poisson-sweep", "rates": [2, 4]}, ENGINE, 1024),  # nothing known: KV memory caps it
    ],
)
def test_sequences_in_flight(load, engine, batch):
    assert measurement_bound(TINY, DEVICE, THROUGHPUT, load, engine, {}).batch == batch


def test_dtype_is_what_the_engine_runs():
    assert run_dtype_bytes("float32", None) == 2  # vLLM runs a float32 checkpoint in 16 bits
    assert run_dtype_bytes("float32", "auto") == 2
    assert run_dtype_bytes("float32", "float32") == 4  # unless told otherwise
    assert run_dtype_bytes("bfloat16", None) == 2
    with pytest.raises(ValueError, match="engine dtype 'int3'"):
        run_dtype_bytes("float32", "int3")
    fp32 = measurement_bound(TINY, DEVICE, THROUGHPUT, CLOSED_8, {**ENGINE, "dtype": "float32"}, {})
    assert fp32.requests_per_s == pytest.approx(8 / ((16_000_000 + 8 * 4096 * 192) / 10e9 * 128))


def test_measured_lengths_win_over_the_workloads_and_a_shared_prefix_is_not_prefilled_again():
    rag = {"name": "rag", "input_tokens": [48, 96], "output_tokens": [64, 64], "shared_prefix_tokens": 512}
    fast = Device(flops=1e9, bandwidth=1e15, memory=16e9)  # compute-bound: FLOPs per request decide
    nominal = measurement_bound(TINY, fast, rag, CLOSED_8, ENGINE, {})
    measured = measurement_bound(TINY, fast, rag, CLOSED_8, ENGINE, {"mean_input_tokens": 600.0})
    assert "584 in (512 of them a cached shared prefix)" in nominal.explanation
    assert "600 in" in measured.explanation
    assert measured.flops_per_request > nominal.flops_per_request
    no_prefix = measurement_bound(TINY, fast, {**rag, "shared_prefix_tokens": 0}, CLOSED_8, ENGINE, {})
    assert no_prefix.flops_per_request < nominal.flops_per_request  # 72 tokens, not 584


def test_quantized_models_have_no_bound():
    with pytest.raises(ValueError, match="quantization=awq"):
        measurement_bound(TINY, DEVICE, THROUGHPUT, CLOSED_8, {**ENGINE, "quantization": "awq"}, {})


def test_check_within_bound_gives_the_arithmetic():
    b = measurement_bound(TINY, DEVICE, THROUGHPUT, CLOSED_8, ENGINE, {})
    assert check_within_bound({"request_throughput": 16.85, "output_throughput": 2157.0}, b) is None
    problem = check_within_bound({"request_throughput": 100.0, "output_throughput": 12_800.0}, b)
    assert "request_throughput 100.00 req/s > bound 56.08 req/s" in problem
    assert "output_throughput 12,800.00 tok/s > bound 7,177.64 tok/s" in problem
    assert "measurement error" in problem
    assert "at 10.0 GB/s" in problem and "1.91 GFLOP per request" in problem  # the arithmetic itself
    # A baseline's metrics are {"value": ...}.
    assert "request_throughput 60.00" in check_within_bound({"request_throughput": {"value": 60.0}}, b)


# ---------------------------------------------------------------- in a session, with a real baseline


@pytest.fixture
def session(tmp_path):
    """A session serving a model folder named like the one the stored cpu baselines were measured with."""
    model = tmp_path / "tiny-llama-87c38eda3ab2"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(TINY))
    options = PerfOptions(baseline_dir=tmp_path / "baselines", model=str(model), log_dir=tmp_path / "logs")
    return PerfSession(options, resolve_profile("cpu"), frameworks={"none": None}, device=DEVICE)


def _stored(session, name="test_throughput"):
    """A real baseline from baselines/cpu/<machine>, copied into the session's baseline folder; and a measurement of
    the same test with the baseline's own numbers."""
    (source,) = sorted((ROOT / "baselines" / "cpu").glob(f"*/*--{name}[[]vllm[]].json"))
    doc = json.loads(source.read_text())
    doc["provenance"]["hardware"] = session.fingerprint.to_dict()  # as if re-taken on this machine
    target = session.baseline_file(doc["test_id"])
    target.parent.mkdir(parents=True)
    target.write_text(json.dumps(doc))
    prov = doc["provenance"]
    measurement = Measurement(
        test_id=doc["test_id"],
        framework="vllm",
        framework_version=prov.get("framework_version", ""),
        model=prov["model"],
        profile="cpu",
        device_kind="cpu",
        workload=prov["workload"],
        load=prov["load"],
        engine=prov["engine"],
        price_per_hour=prov["price_per_hour"],
        price_source=prov["price_source"],
        provenance=prov,
        # What a load run measures; efficiency is added when the session records it.
        metrics={k: v["value"] for k, v in doc["metrics"].items() if k != "efficiency"},
    )
    return target, measurement


def test_a_measurement_within_the_bound_is_judged_and_reports_its_efficiency(session):
    _, m = _stored(session)
    m = session.record(m)
    assert m.verdict is Verdict.PASS
    assert m.metrics["efficiency"] == pytest.approx(m.metrics["request_throughput"] / BOUND_RPS)
    assert m.roofline["limited_by"] == "memory bandwidth"
    assert Bound.from_dict(m.roofline).requests_per_s == pytest.approx(BOUND_RPS)


def test_a_measurement_above_the_bound_is_a_measurement_error(session):
    _, m = _stored(session)
    m = session.record(replace(m, metrics={**m.metrics, "request_throughput": 100.0}))
    assert m.verdict is Verdict.ABOVE_BOUND and m.failed
    assert re.search(r"request_throughput 100.00 req/s > bound 56.08 req/s.*GB/s", m.judgement.notes[0], re.S)
    assert session.measurements == [m]  # kept, and shown, as failed
    assert session.results()["matrix"] == []  # its numbers reach no matrix


def test_a_baseline_edited_above_the_bound_is_refused_naming_the_file(session):
    path, m = _stored(session)
    doc = json.loads(path.read_text())
    doc["metrics"]["request_throughput"]["value"] = 400.0  # someone "improved" the baseline by hand
    path.write_text(json.dumps(doc))
    m = session.record(m)
    text = m.judgement.notes[0]
    assert str(path) in text and "refused" in text
    assert "request_throughput 400.00 req/s > bound 56.08 req/s" in text
    assert "8 MB of weights" in text  # the arithmetic
    assert m.verdict is Verdict.BASELINE_REFUSED and m.failed


def test_a_baseline_above_the_bound_is_never_overwritten_by_an_update(session):
    path, m = _stored(session)
    doc = json.loads(path.read_text())
    doc["metrics"]["output_throughput"]["value"] = 1e6
    path.write_text(json.dumps(doc))
    session.options.update_baselines = True
    assert session.record(m).failed
    assert load_baseline(path)["metrics"]["output_throughput"]["value"] == 1e6  # untouched, for a person to fix


def test_a_model_without_a_local_config_gets_a_note_not_a_bound(session, tmp_path):
    session._model = "org/some-model"
    _, m = _stored(session)
    m = session.record(m)
    assert "efficiency" not in m.metrics
    assert any("no roofline bound: org/some-model has no local config.json" in n for n in m.notes)


# ---------------------------------------------------------------- perfsuite approve


def _results_with_bound(tmp_path, rps):
    bound = measurement_bound(TINY, DEVICE, THROUGHPUT, CLOSED_8, ENGINE, {})
    m = {
        "test_id": "tests/perf/test_x.py::test_throughput[vllm]",
        "profile": "cpu",
        "device_kind": "cpu",
        "metrics": {"request_throughput": rps, "output_throughput": rps * 128, "error_rate": 0.0},
        "repetitions": [],
        "provenance": {
            "model": "tiny-llama-87c38eda3ab2",
            "workload": THROUGHPUT,
            "load": CLOSED_8,
            "hardware": this_machine().to_dict(),
        },
        "roofline": {**asdict(bound), "device": DEVICE.name},
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"schema": 1, "profile": "cpu", "measurements": [m]}))
    return path


def test_approve_refuses_numbers_above_the_bound_and_writes_nothing(tmp_path, capsys):
    results = _results_with_bound(tmp_path, rps=300.0)
    assert main(["approve", str(results), "--baseline-dir", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert str(results) in err and "not approved" in err
    assert "request_throughput 300.00 req/s > bound 56.08 req/s" in err and "GB/s" in err
    assert not (tmp_path / "b").exists()


def test_approve_accepts_numbers_within_the_bound(tmp_path):
    results = _results_with_bound(tmp_path, rps=16.85)
    assert main(["approve", str(results), "--baseline-dir", str(tmp_path / "b")]) == 0
    assert list((tmp_path / "b" / "cpu").glob("*/*.json"))


# ---------------------------------------------------------------- when the CPU is probed


def test_the_pool_runs_the_probe_before_it_starts_a_server(tmp_path, session):
    """A serving engine busy-polls a core: the probe must run before one starts."""
    events = []

    class Plugin:
        name = "fake"

        def start(self, model, settings, profile, log_dir, timeout):
            events.append("start")
            raise ServerError("no server in a unit test")

    pool = ServerPool(resolve_profile("cpu"), tmp_path, 1.0, before_start=lambda: events.append("probe"))
    with pytest.raises(ServerError):
        pool.get(Plugin(), "model", EngineSettings())
    assert events == ["probe", "start"]
    with session.open_pool() as pool:
        assert pool.before_start == session.roofline_device  # the session wires its probe in


def test_a_running_server_is_stopped_before_the_session_probes(session, monkeypatch):
    events = []

    class Server:
        def stop(self):
            events.append("server stopped")

    def probe(profile, count=1):
        events.append("probe")
        return DEVICE

    pool = session.open_pool()
    session.device, pool.server = None, Server()
    monkeypatch.setattr(Device, "from_profile", staticmethod(probe))
    assert session.roofline_device() is DEVICE
    assert events == ["server stopped", "probe"]
    assert session.roofline_device() is DEVICE and events.count("probe") == 1  # once per session


def test_perfsuite_roofline_on_the_cpu_uses_the_probe(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps(TINY))
    args = ["roofline", "--model", str(tmp_path), "--gpu", "cpu", "--input-tokens", "128", "--output-tokens", "128"]
    assert main([*args, "--concurrency", "8"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("CPU probe: ") and "matmul GFLOP/s" in out
    assert "4.00M parameters (8 MB), 128 in / 128 out" in out and "(probed: " in out


def test_compare_refuses_a_results_file_above_its_bound(tmp_path, capsys):
    old = _results_with_bound(tmp_path, rps=500.0).rename(tmp_path / "old.json")  # edited by hand, say
    new = _results_with_bound(tmp_path, rps=16.85)
    assert main(["compare", str(old), str(new)]) == 1
    out = capsys.readouterr().out
    assert f"{old}: measured request_throughput 500.00 req/s > bound 56.08 req/s" in out
    assert "refused: above the physical bound" in out
