"""perfsuite's JSON files: strict on the way out (NaN and infinities become null) and on the way in
(refused, naming the file and the field), written atomically."""

import json
import math

import pytest

from perfsuite import jsonfile
from perfsuite.errors import BaselineError, UsageError


def strict(text: str):
    def refuse(name):
        raise AssertionError(f"{name} in the JSON")

    return json.loads(text, parse_constant=refuse)


def test_dumps_writes_null_for_every_non_finite_value():
    obj = {"a": math.inf, "b": [1.0, -math.inf, {"c": math.nan}], "d": (2.5, math.nan), "e": "Infinity"}
    assert strict(jsonfile.dumps(obj)) == {"a": None, "b": [1.0, None, {"c": None}], "d": [2.5, None], "e": "Infinity"}


def test_write_atomic_round_trips_and_leaves_no_temporary_file(tmp_path):
    path = jsonfile.write_atomic(tmp_path / "sub" / "r.json", {"x": [1, math.inf]})
    assert strict(path.read_text()) == {"x": [1, None]}
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]


def test_write_atomic_failing_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    path.write_text('{"old": true}')

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(jsonfile.os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        jsonfile.write_atomic(path, {"new": True})
    assert json.loads(path.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_load_refuses_non_finite_constants_naming_file_and_field(tmp_path, constant):
    path = tmp_path / "r.json"
    path.write_text('{"measurements": [{"ok": 1}, {"comparison": [{"low_pct": ' + constant + "}]}]}")
    with pytest.raises(UsageError) as exc:
        jsonfile.load(path, "results file")
    assert str(path) in str(exc.value)
    assert f"field measurements[1].comparison[0].low_pct is {constant}" in str(exc.value)


def test_load_names_the_error_class_and_hint_it_is_given(tmp_path):
    path = tmp_path / "b.json"
    path.write_text("{\n  broken")
    with pytest.raises(BaselineError, match=r"b\.json: not valid JSON at line 2 .*; delete it"):
        jsonfile.load(path, "baseline", BaselineError, hint="delete it")
