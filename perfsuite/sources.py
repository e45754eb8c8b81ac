"""Request sources read from files: datasets (ShareGPT, JSONL, Hugging Face datasets on disk) and
traces (Mooncake JSONL, the Azure LLM inference CSV).

One job: read a file into typed entries, or fail with an error that names the file, the line and the
fix. Entries that cannot be used (a conversation with no human turn) are skipped and counted by
reason, never silently. Turning entries into prompts of exact token lengths is perfsuite.traffic's job.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from perfsuite.errors import UsageError

__all__ = [
    "DATASET_FORMATS",
    "TRACE_FORMATS",
    "MOONCAKE_BLOCK_TOKENS",
    "Turn",
    "DatasetEntry",
    "TraceEntry",
    "SourceFile",
    "read_dataset",
    "read_trace",
    "file_sha256",
]

DATASET_FORMATS = ("sharegpt", "jsonl", "hf")
TRACE_FORMATS = ("mooncake", "azure")
MOONCAKE_BLOCK_TOKENS = 512  # a Mooncake hash id names one block of this many prompt tokens


@dataclass(frozen=True)
class Turn:
    """One message of a conversation: who spoke ("user" or "assistant") and what was said."""

    role: str
    text: str


@dataclass(frozen=True)
class DatasetEntry:
    """One request of a dataset, before tokenization.

    `turns` is the conversation from its first user turn on: one user turn for a single prompt, the
    dataset's answers in between for a multi-turn conversation. `answer` (ShareGPT) is the first
    assistant turn, whose token length is the output length unless `output_tokens` gives it.
    """

    where: str  # "file:line" (or "file:row N"), for errors about this entry
    turns: tuple[Turn, ...]
    answer: str | None = None
    output_tokens: int | None = None
    chat: bool = False  # given as messages (the chat API), not as a bare prompt

    @property
    def prompt(self) -> str:
        return self.turns[0].text


@dataclass(frozen=True)
class TraceEntry:
    """One request of a trace: when it arrived (ms from the trace's first request) and its lengths.
    `hash_ids` name the prompt's MOONCAKE_BLOCK_TOKENS-token blocks; equal ids are equal text."""

    where: str
    timestamp_ms: float
    input_tokens: int
    output_tokens: int
    hash_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class SourceFile:
    """What was read from one file: its entries, the entries skipped (reason -> count) and its hash."""

    path: Path
    format: str
    sha256: str
    entries: tuple
    skipped: dict[str, int] = field(default_factory=dict)


def file_sha256(path: Path) -> str:
    """The content hash of a file, or of every file under a folder (a dataset saved with save_to_disk)."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in files:
        if path.is_dir():
            h.update(str(p.relative_to(path)).encode() + b"\0")
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _existing(path: str | Path, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{what} {p}: no such file; give the path of the file (perfsuite samples writes examples)")
    return p


def _positive_int(value, where: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{where}: {name} must be an integer >= 1, got {value!r}")
    return value


def _json_lines(path: Path):
    """(line number, object) for each non-blank line; a line that is not a JSON object is an error."""
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(
                    f"{path}:{number}: not valid JSON ({exc.msg}); each line must be one JSON object"
                ) from None
            if not isinstance(obj, dict):
                raise UsageError(f"{path}:{number}: expected a JSON object, got {type(obj).__name__}")
            yield number, obj


# -- datasets ------------------------------------------------------------------------------------

_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "chatgpt": "assistant",
    "assistant": "assistant",
}


def _sharegpt(path: Path) -> tuple[list[DatasetEntry], Counter]:
    """ShareGPT JSON: a list of {"conversations": [{"from": "human"|"gpt", "value": text}, ...]}.
    The conversation starts at its first human turn; one with no human turn, or no answer after it,
    is skipped and counted, as vLLM's benchmark does."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); a ShareGPT file is one JSON list") from None
    if not isinstance(data, list):
        raise UsageError(f"{path}: a ShareGPT file is a JSON list of conversations, got {type(data).__name__}")
    entries, skipped = [], Counter()
    for i, conv in enumerate(data):
        where = f"{path}:entry {i}"
        turns_raw = conv.get("conversations") if isinstance(conv, dict) else None
        if not isinstance(turns_raw, list):
            raise UsageError(f'{where}: expected {{"conversations": [{{"from": ..., "value": ...}}]}}')
        turns = []
        for t in turns_raw:
            if not isinstance(t, dict) or not isinstance(t.get("value"), str) or "from" not in t:
                raise UsageError(f'{where}: each turn must be {{"from": "human"|"gpt", "value": text}}, got {t!r:.80}')
            role = _SHAREGPT_ROLES.get(t["from"])
            if role:  # system turns and tool turns are not part of the user/assistant exchange
                turns.append(Turn(role, t["value"]))
        first_user = next((k for k, t in enumerate(turns) if t.role == "user"), None)
        if first_user is None:
            skipped["no human turn"] += 1
            continue
        turns = turns[first_user:]
        if len(turns) < 2 or turns[1].role != "assistant":
            skipped["no answer after the first human turn"] += 1
            continue
        if not turns[0].text.strip():
            skipped["empty prompt"] += 1
            continue
        entries.append(DatasetEntry(where, tuple(turns), answer=turns[1].text, chat=False))
    return entries, skipped


def _entry_from_object(obj: dict, where: str) -> DatasetEntry:
    """A JSONL line or a dataset row: {"prompt": text} or {"messages": [{"role", "content"}]}, and
    optionally "output_tokens"."""
    has_prompt, has_messages = obj.get("prompt") is not None, obj.get("messages") is not None
    if has_prompt == has_messages:
        raise UsageError(f'{where}: give exactly one of "prompt" (text) or "messages" (a chat list)')
    out = obj.get("output_tokens")
    out = None if out is None else _positive_int(out, where, "output_tokens")
    if has_prompt:
        if not isinstance(obj["prompt"], str) or not obj["prompt"].strip():
            raise UsageError(f'{where}: "prompt" must be a non-empty string')
        return DatasetEntry(where, (Turn("user", obj["prompt"]),), output_tokens=out)
    messages = obj["messages"]
    if not isinstance(messages, list) or not messages:
        raise UsageError(f'{where}: "messages" must be a non-empty list of {{"role", "content"}}')
    turns = []
    for msg in messages:
        if not isinstance(msg, dict) or msg.get("role") not in ("system", "user", "assistant"):
            raise UsageError(f"{where}: each message needs a role of system, user or assistant, got {msg!r:.80}")
        if not isinstance(msg.get("content"), str):
            raise UsageError(f'{where}: each message needs a string "content"')
        turns.append(Turn(msg["role"], msg["content"]))
    if turns[-1].role != "user":
        raise UsageError(f"{where}: the last message must be the user's (the one to answer)")
    return DatasetEntry(where, tuple(turns), output_tokens=out, chat=True)


def _jsonl(path: Path) -> tuple[list[DatasetEntry], Counter]:
    return [_entry_from_object(obj, f"{path}:{n}") for n, obj in _json_lines(path)], Counter()


def _hf(path: Path, columns: dict[str, str] | None) -> tuple[list[DatasetEntry], Counter]:
    """A Hugging Face dataset on disk: a folder written by save_to_disk, or a .parquet or .arrow file.
    `columns` maps perfsuite's fields (prompt, messages, output_tokens) to the dataset's columns."""
    try:
        import datasets
    except ImportError:
        raise UsageError(
            f"{path}: reading a Hugging Face dataset needs the `datasets` package: pip install datasets"
        ) from None
    try:
        if path.is_dir():
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                split = "train" if "train" in ds else next(iter(ds))
                ds = ds[split]
        elif path.suffix == ".parquet":
            ds = datasets.Dataset.from_parquet(str(path), keep_in_memory=True)
        elif path.suffix == ".arrow":
            ds = datasets.Dataset.from_file(str(path), in_memory=True)
        else:
            raise UsageError(f"{path}: a Hugging Face dataset is a save_to_disk folder, a .parquet or an .arrow file")
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise UsageError(f"{path}: could not read it as a Hugging Face dataset ({exc})") from exc
    mapping = {"prompt": "prompt", "messages": "messages", "output_tokens": "output_tokens"} | dict(columns or {})
    unknown = set(mapping) - {"prompt", "messages", "output_tokens"}
    if unknown:
        raise UsageError(f"column mapping: unknown field(s) {sorted(unknown)}; map prompt, messages or output_tokens")
    present = {ours: col for ours, col in mapping.items() if col in ds.column_names}
    if "prompt" not in present and "messages" not in present:
        raise UsageError(
            f"{path}: no prompt column (columns: {', '.join(ds.column_names)}); map one, e.g. --column prompt=question"
        )
    entries = []
    for i, row in enumerate(ds):
        obj = {ours: row[col] for ours, col in present.items()}
        entries.append(_entry_from_object(obj, f"{path}:row {i}"))
    return entries, Counter()


def read_dataset(path: str | Path, format: str | None = None, columns: dict[str, str] | None = None) -> SourceFile:
    """Read a dataset file. `format` is sharegpt, jsonl or hf (None: from the name: .jsonl is jsonl,
    a folder, .parquet or .arrow is hf, else sharegpt)."""
    p = _existing(path, "dataset")
    fmt = format or _guess_dataset_format(p)
    if fmt not in DATASET_FORMATS:
        raise UsageError(f"{p}: dataset format {fmt!r}: use one of {', '.join(DATASET_FORMATS)}")
    if columns and fmt != "hf":
        raise UsageError("a column mapping applies to Hugging Face datasets (format hf) only")
    if fmt == "sharegpt":
        entries, skipped = _sharegpt(p)
    elif fmt == "jsonl":
        entries, skipped = _jsonl(p)
    else:
        entries, skipped = _hf(p, columns)
    return SourceFile(p, fmt, file_sha256(p), tuple(entries), dict(skipped))


def _guess_dataset_format(p: Path) -> str:
    if p.is_dir() or p.suffix in (".parquet", ".arrow"):
        return "hf"
    return "jsonl" if p.suffix == ".jsonl" else "sharegpt"


# -- traces ---------------------------------------------------------------------------------------


def _mooncake(path: Path) -> list[TraceEntry]:
    """Mooncake JSONL: {"timestamp": ms, "input_length": n, "output_length": n, "hash_ids": [...]}.
    The hash ids cover the prompt in MOONCAKE_BLOCK_TOKENS-token blocks (the last may be partial)."""
    entries = []
    for n, obj in _json_lines(path):
        where = f"{path}:{n}"
        missing = [k for k in ("timestamp", "input_length", "output_length") if k not in obj]
        if missing:
            raise UsageError(
                f"{where}: missing {', '.join(missing)} "
                "(a Mooncake line has timestamp, input_length, output_length and hash_ids)"
            )
        ts = obj["timestamp"]
        if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts) or ts < 0:
            raise UsageError(f"{where}: timestamp must be a number of milliseconds >= 0, got {ts!r}")
        n_in = _positive_int(obj["input_length"], where, "input_length")
        n_out = _positive_int(obj["output_length"], where, "output_length")
        ids = obj.get("hash_ids", [])
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise UsageError(f"{where}: hash_ids must be a list of integers")
        if ids and len(ids) != math.ceil(n_in / MOONCAKE_BLOCK_TOKENS):
            raise UsageError(
                f"{where}: {len(ids)} hash_ids for input_length {n_in}: expected "
                f"{math.ceil(n_in / MOONCAKE_BLOCK_TOKENS)} (one per {MOONCAKE_BLOCK_TOKENS}-token block)"
            )
        entries.append(TraceEntry(where, float(ts), n_in, n_out, tuple(ids)))
    return entries


_AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


def _azure_time(text: str, where: str) -> dt.datetime:
    """'2023-11-16 18:15:46.6805900' (seven fractional digits in the published trace) as a datetime."""
    head, _, frac = text.strip().partition(".")
    try:
        when = dt.datetime.fromisoformat(head)
        return when + dt.timedelta(microseconds=int((frac + "000000")[:6])) if frac else when
    except ValueError:
        raise UsageError(f"{where}: TIMESTAMP {text!r} is not a date and time like 2023-11-16 18:15:46.680") from None


def _azure(path: Path) -> list[TraceEntry]:
    """The Azure LLM inference trace CSV: TIMESTAMP, ContextTokens, GeneratedTokens (no shared blocks)."""
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in _AZURE_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise UsageError(
                f"{path}:1: missing column(s) {', '.join(missing)}; the header must name {', '.join(_AZURE_COLUMNS)}"
            )
        rows = []
        for row in reader:
            where = f"{path}:{reader.line_num}"
            try:
                n_in, n_out = int(row["ContextTokens"]), int(row["GeneratedTokens"])
            except (TypeError, ValueError):
                raise UsageError(f"{where}: ContextTokens and GeneratedTokens must be integers") from None
            rows.append((where, _azure_time(row["TIMESTAMP"] or "", where), n_in, n_out))
    if not rows:
        return []
    t0 = rows[0][1]
    return [
        TraceEntry(where, (when - t0).total_seconds() * 1e3, _positive_int(n_in, where, "ContextTokens"),
                   _positive_int(n_out, where, "GeneratedTokens"))
        for where, when, n_in, n_out in rows
    ]  # fmt: skip


def read_trace(path: str | Path, format: str | None = None) -> SourceFile:
    """Read a trace. `format` is mooncake or azure (None: .csv is azure, else mooncake). Timestamps must
    not go backwards: a replay keeps the trace's order and timing."""
    p = _existing(path, "trace")
    fmt = format or ("azure" if p.suffix == ".csv" else "mooncake")
    if fmt not in TRACE_FORMATS:
        raise UsageError(f"{p}: trace format {fmt!r}: use one of {', '.join(TRACE_FORMATS)}")
    entries = _mooncake(p) if fmt == "mooncake" else _azure(p)
    for before, after in zip(entries, entries[1:]):
        if after.timestamp_ms < before.timestamp_ms:
            raise UsageError(
                f"{after.where}: timestamp {after.timestamp_ms:g} ms is before the previous line's "
                f"{before.timestamp_ms:g} ms; a trace must be sorted by time (sort it first)"
            )
    if entries:
        t0 = entries[0].timestamp_ms
        entries = [
            TraceEntry(e.where, e.timestamp_ms - t0, e.input_tokens, e.output_tokens, e.hash_ids) for e in entries
        ]
    return SourceFile(p, fmt, file_sha256(p), tuple(entries))
