"""How each plugin maps the common engine settings onto its framework, and reports what it cannot honour."""

import json

import pytest

from perfsuite.frameworks import EngineSettings, cpu_split, load_frameworks, not_honoured
from perfsuite.hardware import resolve_profile
from perfsuite_plugins import hf_naive, tgi, torchserve


def test_every_framework_is_registered_through_the_entry_point_group():
    found = load_frameworks()
    assert {"vllm", "vllm-container", "hf-naive", "torchserve", "ray-serve", "tgi"} <= set(found)
    for name, plugin in found.items():
        assert plugin.name == name
        reason = plugin.unavailable()
        assert reason is None or (isinstance(reason, str) and reason)


def test_settings_not_honoured_are_reported_with_the_reason():
    s = EngineSettings(max_num_seqs=4, enable_prefix_caching=True, quantization="awq", tensor_parallel_size=2)
    notes = not_honoured("hf-naive", s, {"max_num_seqs", "max_model_len"}, hf_naive.STATIC_ENGINE_WHY)
    text = "\n".join(notes)
    assert "enable_prefix_caching=True not honoured (no prefix cache)" in text
    assert "quantization=awq not honoured" in text and "tensor_parallel_size=2 not honoured" in text
    assert "max_num_seqs" not in text and "max_model_len" not in text
    # Defaults that mean "the framework's own" are not noise.
    assert not_honoured("x", EngineSettings(max_num_batched_tokens=None), {"max_num_seqs", "max_model_len"}) == []


def test_hf_naive_command_line():
    args = hf_naive.server_args("/m/tiny", EngineSettings(max_num_seqs=6, max_model_len=512), 8123, threads=1)
    assert args[1:3] == ["-m", "perfsuite_plugins.hf_naive_server"]
    joined = " ".join(args)
    assert "--host 127.0.0.1 --port 8123" in joined and "--max-batch-size 6" in joined
    assert "--max-model-len 512" in joined and "--served-model-name tiny" in joined and "--threads 1" in joined


def test_torchserve_config_binds_loopback_and_model_config_is_json_yaml(tmp_path):
    ports = {"inference": 1, "management": 2, "metrics": 3, "grpc_inference": 4, "grpc_management": 5}
    text = torchserve.config_properties(ports, tmp_path / "store", tmp_path / "log4j2.xml")
    props = dict(line.split("=", 1) for line in text.splitlines())
    assert props["inference_address"] == "http://127.0.0.1:1"
    assert props["management_address"] == "http://127.0.0.1:2" and props["metrics_address"] == "http://127.0.0.1:3"
    assert props["grpc_inference_address"] == props["grpc_management_address"] == "127.0.0.1"
    assert (props["grpc_inference_port"], props["grpc_management_port"]) == ("4", "5")
    assert props["metrics_mode"] == "prometheus" and props["default_workers_per_model"] == "1"
    assert props["vmargs"].endswith("log4j2.xml")
    cfg = torchserve.model_config("/m", EngineSettings(max_num_seqs=16, max_model_len=1024))
    assert json.loads(json.dumps(cfg)) == cfg  # JSON is YAML: no YAML writer involved
    assert cfg["batchSize"] == 16 and cfg["maxBatchDelay"] == torchserve.BATCH_DELAY_MS
    assert cfg["responseTimeout"] > 120 and cfg["handler"]["model_dir"] == "/m"


def test_tgi_launcher_arguments_cover_the_common_settings():
    s = EngineSettings(
        max_model_len=2048,
        max_num_seqs=64,
        max_num_batched_tokens=4096,
        quantization="awq",
        dtype="bfloat16",
        tensor_parallel_size=2,
        gpu_memory_utilization=0.9,
        enable_prefix_caching=False,
    )
    args, env, notes = tgi.launcher_args("/data/model", s, 8080)
    pairs = dict(zip(args[::2], args[1::2]))
    assert pairs["--model-id"] == "/data/model" and pairs["--port"] == "8080"
    assert pairs["--max-total-tokens"] == "2048" and pairs["--max-input-tokens"] == "2047"
    assert pairs["--max-batch-prefill-tokens"] == "4096" and pairs["--max-concurrent-requests"] == "64"
    assert pairs["--quantize"] == "awq" and pairs["--dtype"] == "bfloat16" and pairs["--num-shard"] == "2"
    assert pairs["--cuda-memory-fraction"] == "0.9" and pairs["--usage-stats"] == "off"
    assert env == {"PREFIX_CACHING": "0"}
    assert any("--max-concurrent-requests" in n for n in notes)


@pytest.mark.parametrize("gpu", ["cpu", "a100"])
def test_cpu_split_leaves_a_core_for_the_client_on_the_cpu_only(gpu):
    engine, client = cpu_split(resolve_profile(gpu))
    if gpu != "cpu":
        assert (engine, client) == (None, None)
    elif engine is not None:
        assert engine and client and not engine & client
