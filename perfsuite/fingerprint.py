"""The hardware a number was measured on, and whether two such fingerprints may be compared.

A `Fingerprint` is read once per process (`this_machine()`) and stored as `provenance.hardware` in every
measurement, results file and baseline. `DECIDING` names, in one place, the fields that decide whether a
baseline was taken on this kind of machine; the other fields are reported when they differ and never
block. `machine_slug()` names the folder a machine's baselines live in (perfsuite.baseline).
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

__all__ = [
    "Fingerprint",
    "DECIDING",
    "SCHEMA",
    "this_machine",
    "differences",
    "machine_slug",
    "MACHINE_SLUG",
]


@dataclass(frozen=True)
class Fingerprint:
    """What a machine is, as far as a performance number depends on it."""

    cpu_model: str  # /proc/cpuinfo "model name"
    cores: int  # cores this process may run on (os.sched_getaffinity)
    memory_gb: float  # host memory, GB
    gpu_name: str = ""  # NVML's name; distinct names joined by " + "; "" without a GPU
    gpu_count: int = 0
    gpu_memory_gb: int | None = None  # per GPU, GiB rounded
    driver: str | None = None  # NVIDIA driver version
    cuda: str | None = None  # the CUDA version the driver supports
    hypervisor: bool = False  # the 'hypervisor' CPU flag: a virtual machine
    dmi: str | None = None  # /sys/class/dmi/id sys_vendor and product_name (e.g. "Amazon EC2 m7i.large")
    container: str | None = None  # docker, podman, kubernetes, ... when it shows

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Fingerprint:
        """A fingerprint as stored; unknown keys are ignored, missing optional ones default. ValueError
        naming the field when a deciding one is missing or of the wrong type."""
        if not isinstance(d, dict):
            raise ValueError(f"provenance.hardware: expected an object, got {type(d).__name__}")
        for name, kind in (("cpu_model", str), ("cores", int), ("memory_gb", (int, float))):
            if not isinstance(d.get(name), kind) or isinstance(d.get(name), bool):
                raise ValueError(f"provenance.hardware.{name}: missing or not a {getattr(kind, '__name__', 'number')}")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# The fields that decide comparability, by profile kind ("cpu" or "gpu"). Everything else is informational.
DECIDING: dict[str, tuple[str, ...]] = {
    "cpu": ("cpu_model", "cores"),
    "gpu": ("gpu_name", "gpu_count", "gpu_memory_gb"),
}
_LABELS = {
    "cpu_model": "CPU model",
    "cores": "cores",
    "memory_gb": "memory (GB)",
    "gpu_name": "GPU",
    "gpu_count": "GPU count",
    "gpu_memory_gb": "GPU memory (GiB)",
    "driver": "NVIDIA driver",
    "cuda": "CUDA version",
    "hypervisor": "hypervisor flag",
    "dmi": "machine (DMI)",
    "container": "container",
}

# The JSON schema of provenance.hardware, used where baselines are validated (perfsuite.baseline).
_STR_OR_NULL = {"type": ["string", "null"]}
SCHEMA = {
    "type": "object",
    "required": ["cpu_model", "cores", "memory_gb"],
    "properties": {
        "cpu_model": {"type": "string"},
        "cores": {"type": "integer", "minimum": 0},
        "memory_gb": {"type": "number", "minimum": 0},
        "gpu_name": {"type": "string"},
        "gpu_count": {"type": "integer", "minimum": 0},
        "gpu_memory_gb": {"type": ["integer", "null"], "minimum": 0},
        "driver": _STR_OR_NULL,
        "cuda": _STR_OR_NULL,
        "hypervisor": {"type": "boolean"},
        "dmi": _STR_OR_NULL,
        "container": _STR_OR_NULL,
    },
}


def _deciding(kind: str) -> tuple[str, ...]:
    return DECIDING["gpu" if kind != "cpu" else "cpu"]


def differences(baseline: Fingerprint | None, now: Fingerprint, kind: str) -> tuple[list[str], list[str]]:
    """(deciding, informational) differences between a baseline's fingerprint and now's, in words, for a
    profile of `kind` ("cpu" or a GPU). A baseline without a fingerprint differs in everything that decides."""
    if baseline is None:
        return ["baseline has no hardware fingerprint: re-take it"], []
    deciding, informational = [], []
    for f in fields(Fingerprint):
        old, new = getattr(baseline, f.name), getattr(now, f.name)
        if old == new:
            continue
        text = f"{_LABELS[f.name]} was {old!r}, now {new!r}"
        (deciding if f.name in _deciding(kind) else informational).append(text)
    return deciding, informational


# A machine folder's name: lower case letters, digits, '.', '_', '-'; not starting with a dot; never
# 'history' (the folder of replaced baselines).
MACHINE_SLUG = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")
_NOISE = re.compile(r"\((r|tm|c)\)|@\s*[0-9.]+\s*[gm]hz|\b(cpu|processor)\b", re.IGNORECASE)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", _NOISE.sub(" ", text).lower()).strip("-")[:80]


def machine_slug(fp: Fingerprint, kind: str) -> str:
    """The folder name of this machine's baselines for a profile of `kind`, from the deciding fields:
    'intel-xeon-platinum-8488c-2c' (CPU model without (R), (TM), 'CPU', 'Processor' or clock, and the
    cores), 'nvidia-h100-80gb-hbm3-x1' (GPU name and count)."""
    if kind == "cpu":
        return f"{_slug(fp.cpu_model) or 'unknown-cpu'}-{fp.cores}c"
    return f"{_slug(fp.gpu_name) or 'no-gpu'}-x{fp.gpu_count}"


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def _cpu() -> tuple[str, bool]:
    """(CPU model, whether the 'hypervisor' flag is set) from /proc/cpuinfo. The model is its name plus
    family, model and stepping: a VM may show only "AMD EPYC", the same for two generations measured
    ~35% apart on this suite (../shared/ENVIRONMENT.md)."""
    info = _read("/proc/cpuinfo").split("\n\n")[0]  # the first processor
    fields = {}
    for line in info.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or platform.machine()
    numbers = [
        f"{k} {fields[k2]}"
        for k, k2 in (("family", "cpu family"), ("model", "model"), ("stepping", "stepping"))
        if fields.get(k2)
    ]
    model = f"{name} ({', '.join(numbers)})" if numbers else name
    return model, "hypervisor" in fields.get("flags", "").split()


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 0


def _memory_gb() -> float:
    try:
        import psutil

        return round(psutil.virtual_memory().total / 1e9, 1)
    except ImportError:
        return 0.0


def _gpus() -> dict[str, Any]:
    """GPU name, count, memory, driver and CUDA version from NVML; {} without NVML or a GPU."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no nvidia-ml-py, no driver, no library: no GPU fields
        return {}

    def text(v) -> str:
        return v.decode() if isinstance(v, bytes) else str(v)

    try:
        count = pynvml.nvmlDeviceGetCount()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        names = list(dict.fromkeys(text(pynvml.nvmlDeviceGetName(h)) for h in handles))
        memory = [pynvml.nvmlDeviceGetMemoryInfo(h).total for h in handles]
        out: dict[str, Any] = {
            "gpu_name": " + ".join(names),
            "gpu_count": count,
            "gpu_memory_gb": round(min(memory) / 2**30) if memory else None,
            "driver": text(pynvml.nvmlSystemGetDriverVersion()),
        }
        try:
            cuda = pynvml.nvmlSystemGetCudaDriverVersion()
            out["cuda"] = f"{cuda // 1000}.{cuda % 1000 // 10}"
        except Exception:
            pass
        return out
    except Exception:
        return {}
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def _dmi() -> str | None:
    parts = [_read(f"/sys/class/dmi/id/{name}").strip() for name in ("sys_vendor", "product_name")]
    return " ".join(p for p in parts if p) or None


def _container() -> str | None:
    if Path("/run/.containerenv").exists():
        return "podman"
    if Path("/.dockerenv").exists():
        return "docker"
    cgroup = _read("/proc/1/cgroup")
    for hint in ("kubepods", "docker", "containerd", "lxc"):
        if hint in cgroup:
            return "kubernetes" if hint == "kubepods" else hint
    return os.environ.get("container") or None  # noqa: SIM112 (systemd's convention: lower case)


def read() -> Fingerprint:
    """This machine's fingerprint, read now."""
    model, hypervisor = _cpu()
    return Fingerprint(
        cpu_model=model,
        cores=_cores(),
        memory_gb=_memory_gb(),
        hypervisor=hypervisor,
        dmi=_dmi(),
        container=_container(),
        **_gpus(),
    )


@functools.cache
def this_machine() -> Fingerprint:
    """This machine's fingerprint, read once per process (before any core pinning of the load generator)."""
    return read()
