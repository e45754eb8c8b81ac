"""The plugin's options and start-up checks, through pytester (no server is started here)."""

import json
import shutil
from pathlib import Path

import pytest

PERF_TEST = """
import pytest
from perfsuite import Load

@pytest.mark.perf
def test_chat(serving, perf):
    perf.measure(serving, "chat", Load.closed(2, requests=4))
"""


def test_unknown_gpu_profile_lists_the_valid_ones(pytester):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--gpu=tpu-v9")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--gpu=tpu-v9: unknown hardware profile; valid profiles: *a100*cpu*h100*"])


def test_gpu_profile_without_that_gpu_is_a_usage_error(pytester):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--gpu=a100")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--gpu=a100-80gb asks for NVIDIA A100 80GB SXM, but no NVIDIA GPU was found*"])


def test_options_can_be_set_in_the_ini_file(pytester):
    pytester.makeini("[pytest]\nperf_gpu = h100\n")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--gpu=h100 asks for NVIDIA H100 80GB SXM*"])


def test_command_line_overrides_the_ini_file(pytester):
    pytester.makeini("[pytest]\nperf_gpu = h100\n")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--gpu=cpu")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["perfsuite: gpu=cpu *frameworks=*vllm*"])


def test_unknown_framework_is_a_usage_error(pytester):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--frameworks=vllm,sglang-nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--frameworks: unknown sglang-nope; installed: *vllm*"])


@pytest.mark.parametrize("value", ["0", "three"])
def test_bad_repetitions(pytester, value):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest(f"--perf-repetitions={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--perf-repetitions={value}: *"])


def test_not_perf_deselects_the_perf_tests(pytester):
    pytester.makepyfile(PERF_TEST + "\ndef test_fast():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest("-m", "not perf", "--frameworks=vllm")
    result.assert_outcomes(passed=1, deselected=1)


def test_perf_marker_is_registered(pytester):
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.perf:*", "@pytest.mark.engine(**settings):*"])


def test_missing_model_folder_fails_the_test_and_names_it(pytester):
    pytester.makepyfile(PERF_TEST)
    result = pytester.runpytest("--perf-model=/no/such/model", "--frameworks=vllm")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*--perf-model=/no/such/model: no such folder*"])


def test_malformed_baseline_fails_before_any_server_starts(pytester):
    pytester.makepyfile(test_p=PERF_TEST)
    folder = pytester.path / "baselines" / "cpu"
    folder.mkdir(parents=True)
    (folder / "test_p.py--test_chat[vllm].json").write_text('{"schema": 1, "metrics": ')
    result = pytester.runpytest("--frameworks=vllm")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*baselines/cpu/test_p.py--test_chat[[]vllm[]].json: not valid JSON at line 1*"])
    assert "During handling" not in result.stdout.str()
    assert "selection matrix" not in result.stdout.str()  # nothing was measured


def test_schema_invalid_baseline_names_the_field(pytester):
    pytester.makepyfile(test_p=PERF_TEST)
    folder = pytester.path / "baselines" / "cpu"
    folder.mkdir(parents=True)
    doc = {
        "schema": 1,
        "test_id": "x",
        "profile": "cpu",
        "provenance": {},
        "metrics": {"request_throughput": {"value": "fast", "better": "higher", "tolerance": 0.1, "gated": True}},
    }
    (folder / "test_p.py--test_chat[vllm].json").write_text(json.dumps(doc))
    result = pytester.runpytest("--frameworks=vllm")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*field metrics.request_throughput.value: 'fast' is not of type 'number'*"])


def test_report_hook_is_silent_without_measurements(pytester):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert "selection matrix" not in result.stdout.str()


def _hide_vllm(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))


def test_framework_not_installed_skips_its_tests(pytester, monkeypatch):
    _hide_vllm(monkeypatch)
    pytester.makepyfile(PERF_TEST)
    result = pytester.runpytest("-rs", "-k", "vllm and not container")  # in-process: the monkeypatch applies
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*vllm: vLLM is not installed (pip install vllm*"])


def test_framework_asked_for_by_name_but_not_installed_is_an_error(pytester, monkeypatch):
    _hide_vllm(monkeypatch)
    pytester.makepyfile(PERF_TEST)
    result = pytester.runpytest("--frameworks=vllm")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--frameworks=vllm: vLLM is not installed*"])


def test_server_logs_go_to_the_folder_asked_for(pytester):
    pytester.makepyfile(
        """
        def test_where(perf_session, perf_servers, pytestconfig):
            assert perf_session.log_dir == pytestconfig.rootpath / "logs" / "perf"
            assert perf_session.log_dir.is_dir()
        """
    )
    pytester.runpytest("--perf-log-dir=logs/perf").assert_outcomes(passed=1)
    assert (pytester.path / "logs" / "perf").is_dir()  # named: kept


@pytest.mark.parametrize("outcome", ["passed", "failed"])
def test_the_temporary_log_folder_is_kept_only_when_a_test_failed(pytester, outcome):
    pytester.makepyfile(
        f"""
        def test_logs(perf_session, perf_servers, pytestconfig):
            (pytestconfig.rootpath / "where").write_text(str(perf_session.log_dir))
            (perf_session.log_dir / "server.log").write_text("what a server said")
            assert {outcome == "passed"}

        def test_no_server(perf_session, perf_servers):
            assert True
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(**{outcome: 1, "passed": 2} if outcome == "passed" else {outcome: 1, "passed": 1})
    logs = Path((pytester.path / "where").read_text())
    if outcome == "passed":
        assert not logs.exists()
    else:
        assert (logs / "server.log").is_file()
        result.stdout.fnmatch_lines([f"perfsuite: server logs: {logs} (kept because a test failed)"])
        shutil.rmtree(logs)


def test_an_empty_log_folder_is_not_kept_even_when_a_test_failed(pytester):
    pytester.makepyfile(
        """
        def test_logs(perf_session, perf_servers, pytestconfig):
            (pytestconfig.rootpath / "where").write_text(str(perf_session.log_dir))
            assert False
        """
    )
    pytester.runpytest().assert_outcomes(failed=1)
    assert not Path((pytester.path / "where").read_text()).exists()


def test_pytest_xdist_is_refused_with_the_reason(pytester):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("-n", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*-n 2: perfsuite measures one server at a time*-p no:perfsuite*"])


def test_a_baseline_dir_that_is_a_file_is_a_usage_error(pytester):
    pytester.makepyfile("def test_x(): pass")
    pytester.path.joinpath("baselines.json").write_text("{}")
    result = pytester.runpytest("--perf-baseline-dir=baselines.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--perf-baseline-dir=baselines.json: *baselines.json is a file; name a folder*"])


def test_a_baseline_dir_that_does_not_exist_is_a_usage_error_unless_baselines_are_written(pytester):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--perf-baseline-dir=no/such/dir")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--perf-baseline-dir=no/such/dir: no such folder*--perf-update-baselines*"])
    pytester.runpytest("--perf-baseline-dir=no/such/dir", "--perf-update-baselines").assert_outcomes(passed=1)
    pytester.runpytest().assert_outcomes(passed=1)  # the default folder may be absent: no baselines yet


def test_a_baseline_with_nan_fails_its_test_before_anything_runs(pytester):
    pytester.makepyfile(
        test_nan="""
        import pytest

        @pytest.mark.perf
        def test_x(perf):
            raise AssertionError("the body ran")
        """
    )
    from perfsuite.baseline import baseline_path

    path = baseline_path(pytester.path / "baselines", "cpu", "test_nan.py::test_x")
    path.parent.mkdir(parents=True)
    metric = {"value": float("nan"), "better": "higher", "tolerance": 0.1, "gated": True}
    body = {"schema": 1, "test_id": "test_nan.py::test_x", "profile": "cpu", "provenance": {}}
    path.write_text(json.dumps({**body, "metrics": {"request_throughput": metric}}))  # json writes NaN
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*{path}*request_throughput*NaN*"])
    result.stdout.no_fnmatch_line("*the body ran*")
