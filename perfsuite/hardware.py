"""The hardware catalog (data/hardware.json) and detection of the device actually present."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from perfsuite.errors import UsageError

__all__ = ["HardwareProfile", "load_catalog", "resolve_profile", "detect_gpus", "check_profile"]


@dataclass(frozen=True)
class HardwareProfile:
    name: str
    kind: str  # "cpu" or "gpu"
    description: str
    memory_gb: float | None
    bandwidth_tb_s: float | None
    bf16_tflops: float | None
    price_per_hour: float
    price_source: str
    price_date: str
    nvml_names: tuple[str, ...] = ()
    min_tolerance: dict = field(default_factory=dict)  # noise floor of baseline tolerances, by metric unit


def load_catalog(path: str | os.PathLike | None = None) -> tuple[dict[str, HardwareProfile], dict]:
    """Read the catalog (the packaged one unless `path` is given): (profiles by name, aliases)."""
    if path is None:
        text = resources.files("perfsuite").joinpath("data/hardware.json").read_text()
        where = "perfsuite/data/hardware.json"
    else:
        where = str(path)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise UsageError(f"hardware catalog {where}: cannot read it ({exc})") from exc
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"hardware catalog {where}: not valid JSON ({exc})") from exc
    profiles = {}
    for name, entry in raw.get("profiles", {}).items():
        try:
            profiles[name] = HardwareProfile(
                name=name,
                kind=entry["kind"],
                description=entry["description"],
                memory_gb=entry.get("memory_gb"),
                bandwidth_tb_s=entry.get("bandwidth_tb_s"),
                bf16_tflops=entry.get("bf16_tflops"),
                price_per_hour=float(entry["price_per_hour"]),
                price_source=entry["price_source"],
                price_date=entry["price_date"],
                nvml_names=tuple(entry.get("nvml_names", ())),
                min_tolerance={unit: float(v) for unit, v in entry.get("min_tolerance", {}).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"hardware catalog {where}: profile {name!r} is missing or has a bad field {exc}") from exc
    return profiles, dict(raw.get("aliases", {}))


def resolve_profile(name: str, catalog_path: str | os.PathLike | None = None) -> HardwareProfile:
    """The profile called `name` (or an alias of it); a UsageError listing the valid names otherwise."""
    profiles, aliases = load_catalog(catalog_path)
    key = aliases.get(name.lower(), name.lower())
    if key not in profiles:
        valid = ", ".join(sorted([*profiles, *aliases]))
        raise UsageError(f"--gpu={name}: unknown hardware profile; valid profiles: {valid}")
    return profiles[key]


def detect_gpus() -> list[str]:
    """Names of the NVIDIA GPUs NVML sees (empty without a driver or without nvidia-ml-py)."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return []
    try:
        names = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
            names.append(name.decode() if isinstance(name, bytes) else name)
        return names
    finally:
        pynvml.nvmlShutdown()


def check_profile(profile: HardwareProfile, found: list[str] | None = None) -> None:
    """Raise a UsageError when a GPU profile is asked for on a machine without that GPU."""
    if profile.kind == "cpu":
        return
    found = detect_gpus() if found is None else found
    if not found:
        raise UsageError(
            f"--gpu={profile.name} asks for {profile.description}, but no NVIDIA GPU was found "
            "(NVML saw none); run on that machine or use --gpu=cpu"
        )
    # Whole-name matches only: 'L4' must not match an 'NVIDIA L40S'.
    wanted = [re.compile(rf"(?<![a-z0-9]){re.escape(n.lower())}(?![a-z0-9])") for n in profile.nvml_names]
    if not any(w.search(name.lower()) for name in found for w in wanted):
        raise UsageError(
            f"--gpu={profile.name} asks for {profile.description}, but this machine has: "
            f"{', '.join(found)}; choose the profile that matches it"
        )
