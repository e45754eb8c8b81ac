"""perfsuite's JSON files: written strict (no NaN or Infinity, which jq and JavaScript refuse: a missing
value is null) and atomically; read strict, with an error naming the file and the field."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

from perfsuite.errors import PerfsuiteError, UsageError

__all__ = ["dumps", "write_atomic", "write_text_atomic", "load", "finite"]


def finite(obj):
    """`obj` with every NaN and infinity (at any depth) as None; tuples become lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def dumps(obj, *, indent: int | None = 2, sort_keys: bool = False) -> str:
    """Strict JSON text of `obj`: non-finite floats become null; other non-JSON values their str()."""
    return json.dumps(finite(obj), indent=indent, sort_keys=sort_keys, allow_nan=False, default=str)


def write_atomic(path: str | os.PathLike, obj, *, sort_keys: bool = False) -> Path:
    """Write dumps(obj) to `path` through a temporary file in the same folder and a rename: a reader
    sees the old file or the new one, never half; the temporary file is removed on failure."""
    text = dumps(obj, sort_keys=sort_keys) + "\n"  # before any file is made: a bad value leaves nothing
    return write_text_atomic(path, text)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` as write_atomic does (JSON lines, for one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class _NonFinite:
    """Stands for a NaN/Infinity constant while parsing, so that its field can be named after."""

    def __init__(self, name: str) -> None:
        self.name = name


def _find(obj, where: str = "") -> tuple[str, str] | None:
    """(JSON path, constant) of the first _NonFinite in `obj`."""
    if isinstance(obj, _NonFinite):
        return where or "(top level)", obj.name
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for key, value in items:
        sub = f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}" if where else str(key)
        if found := _find(value, sub):
            return found
    return None


def load(path: str | os.PathLike, what: str, error: type[PerfsuiteError] = UsageError, hint: str = ""):
    """The JSON in `path` (a `what`, e.g. "results file"), refusing NaN and Infinity: `error` naming
    the file and the field (e.g. `measurements[0].metrics.ttft_p50_ms`), as for unreadable or bad
    JSON; `hint` (what to do) ends the message."""
    path = Path(path)
    end = f"; {hint}" if hint else ""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise error(f"{path}: cannot read it ({reason}){end}") from exc
    try:
        data = json.loads(text, parse_constant=_NonFinite)
    except json.JSONDecodeError as exc:
        raise error(f"{path}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}{end}") from exc
    found = _find(data)
    if found:
        raise error(
            f"{path}: field {found[0]} is {found[1]}, which is not JSON (jq and JavaScript refuse it; "
            f"a missing value is null): this {what} is refused{end}"
        )
    return data
