"""The hardware catalog and the check that the asked-for GPU is the one present."""

import json
import re

import pytest

from perfsuite.errors import UsageError
from perfsuite.hardware import check_profile, load_catalog, resolve_profile


def test_a100_alias_is_the_80gb_at_4_10():
    p = resolve_profile("a100")
    assert p.name == "a100-80gb"
    assert p.kind == "gpu"
    assert p.price_per_hour == 4.10
    assert p.memory_gb == 80


@pytest.mark.parametrize(
    "name, expected", [("A100", "a100-80gb"), ("h100-80gb", "h100"), ("CPU", "cpu"), ("l40s", "l40s")]
)
def test_names_and_aliases_resolve_case_insensitively(name, expected):
    assert resolve_profile(name).name == expected


def test_unknown_profile_lists_the_valid_names():
    with pytest.raises(UsageError) as exc:
        resolve_profile("tpu-v5")
    msg = str(exc.value)
    assert "tpu-v5" in msg
    profiles, aliases = load_catalog()
    for name in [*profiles, *aliases]:
        assert name in msg


def test_every_profile_has_price_source_and_date():
    profiles, aliases = load_catalog()
    assert {"cpu", "a100-80gb", "h100"} <= set(profiles)
    for name, p in profiles.items():
        assert p.name == name
        assert p.kind in ("cpu", "gpu")
        assert p.price_per_hour > 0, name
        assert p.price_source.strip(), name
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", p.price_date), (name, p.price_date)
        if p.kind == "gpu":
            assert p.nvml_names, f"{name}: a GPU profile needs NVML names to be checked against"
            assert p.memory_gb and p.memory_gb > 0
    for alias, target in aliases.items():
        assert target in profiles, alias


def test_cpu_profile_needs_no_gpu():
    check_profile(resolve_profile("cpu"), found=[])  # no error


def test_gpu_profile_without_a_gpu():
    with pytest.raises(UsageError, match="no NVIDIA GPU was found"):
        check_profile(resolve_profile("a100"), found=[])


def test_gpu_profile_on_the_wrong_gpu_names_what_was_found():
    with pytest.raises(UsageError) as exc:
        check_profile(resolve_profile("h100"), found=["NVIDIA A100-SXM4-80GB"])
    msg = str(exc.value)
    assert "NVIDIA A100-SXM4-80GB" in msg
    assert "h100" in msg


@pytest.mark.parametrize(
    "profile, found",
    [
        ("a100-80gb", ["NVIDIA A100-SXM4-80GB"]),
        ("a100-80gb", ["NVIDIA A100 80GB PCIe"]),
        ("a100-40gb", ["NVIDIA A100-SXM4-40GB"]),
        ("h100", ["NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3"]),
        ("h200", ["NVIDIA H200"]),
        ("l4", ["NVIDIA L4"]),
        ("l40s", ["NVIDIA L40S"]),
    ],
)
def test_matching_gpu_passes(profile, found):
    check_profile(resolve_profile(profile), found=found)


@pytest.mark.parametrize(
    "profile, found",
    [
        ("a100-40gb", ["NVIDIA A100-SXM4-80GB"]),
        ("a100-80gb", ["NVIDIA A100-SXM4-40GB"]),
        ("l4", ["NVIDIA L40S"]),  # 'L4' is a prefix of 'L40S', not the same card
        ("l4", ["NVIDIA L40"]),
    ],
)
def test_similar_names_are_not_a_match(profile, found):
    with pytest.raises(UsageError, match=re.escape(found[0])):
        check_profile(resolve_profile(profile), found=found)


def test_custom_catalog(tmp_path):
    path = tmp_path / "hw.json"
    path.write_text(
        json.dumps(
            {
                "profiles": {
                    "mygpu": {
                        "kind": "gpu",
                        "description": "Mine",
                        "price_per_hour": 1.5,
                        "price_source": "invoice",
                        "price_date": "2025-01-01",
                        "nvml_names": ["MyGPU"],
                    }
                },
                "aliases": {"mine": "mygpu"},
            }
        )
    )
    p = resolve_profile("mine", catalog_path=path)
    assert p.name == "mygpu" and p.price_per_hour == 1.5 and p.memory_gb is None


def test_bad_catalogs(tmp_path):
    with pytest.raises(UsageError, match="cannot read"):
        load_catalog(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UsageError, match="not valid JSON"):
        load_catalog(bad)
    incomplete = tmp_path / "incomplete.json"
    incomplete.write_text(json.dumps({"profiles": {"x": {"kind": "gpu", "description": "X"}}}))
    with pytest.raises(UsageError, match="'x'"):
        load_catalog(incomplete)
