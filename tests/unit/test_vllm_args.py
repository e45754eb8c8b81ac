"""How engine settings become vLLM's command line (the adapter itself is tested against real vLLM in
tests/integration and tests/perf)."""

from perfsuite.frameworks import EngineSettings
from perfsuite.hardware import resolve_profile
from perfsuite_plugins.vllm import CPU_KV_CACHE_BYTES, VLLMPlugin, server_args


def _flags(args):
    return args[args.index("--model") :]


def test_cpu_defaults_pin_the_batch_and_size_the_kv_cache():
    args, notes = server_args("/models/tiny", EngineSettings(), resolve_profile("cpu"), 8123)
    flags = _flags(args)
    assert flags[flags.index("--host") + 1] == "127.0.0.1"
    assert flags[flags.index("--port") + 1] == "8123"
    assert flags[flags.index("--max-num-seqs") + 1] == "32"
    assert flags[flags.index("--max-num-batched-tokens") + 1] == "2048"
    assert flags[flags.index("--kv-cache-memory-bytes") + 1] == str(CPU_KV_CACHE_BYTES)
    assert "--enforce-eager" in flags and "--gpu-memory-utilization" not in flags
    assert notes == []


def test_gpu_settings_map_to_their_flags():
    settings = EngineSettings(
        gpu_memory_utilization=0.9,
        tensor_parallel_size=2,
        enable_prefix_caching=False,
        quantization="fp8",
        dtype="bfloat16",
        extra_args=("--max-num-partial-prefills", "2"),
    )
    args, _ = server_args("/models/llama", settings, resolve_profile("h100"), 9000)
    flags = _flags(args)
    for flag, value in (
        ("--gpu-memory-utilization", "0.9"),
        ("--tensor-parallel-size", "2"),
        ("--quantization", "fp8"),
        ("--dtype", "bfloat16"),
    ):
        assert flags[flags.index(flag) + 1] == value
    assert "--no-enable-prefix-caching" in flags
    assert "--enforce-eager" not in flags and "--kv-cache-memory-bytes" not in flags
    assert flags[-2:] == ["--max-num-partial-prefills", "2"]


def test_memory_fraction_on_the_cpu_is_passed_on_and_explained():
    args, notes = server_args("/m", EngineSettings(gpu_memory_utilization=0.3), resolve_profile("cpu"), 1)
    assert "--gpu-memory-utilization" in args and "--kv-cache-memory-bytes" not in args
    assert "NUMA-node memory" in notes[0]


def test_vllm_not_installed_is_reported(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    assert "vLLM is not installed" in VLLMPlugin().unavailable()
