"""Workloads as data (data/workloads.json) and the exact-length prompts built from them."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from perfsuite.errors import UsageError

if TYPE_CHECKING:
    from perfsuite.traffic import Source

__all__ = ["Workload", "RequestSpec", "load_workloads", "get_workload", "PromptBuilder"]


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    use: str
    api: str  # "completions" or "chat"
    input_tokens: tuple[int, int]  # distinct part of the prompt, inclusive range
    output_tokens: tuple[int, int]
    shared_prefix_tokens: int = 0
    source: Source | None = None  # requests read from a dataset or trace file (perfsuite.traffic)
    turns: int = 1  # Load.sessions: turns per synthetic conversation; for a dataset, the most turns kept

    def to_dict(self) -> dict:
        d = {
            "name": self.name,
            "api": self.api,
            "input_tokens": list(self.input_tokens),
            "output_tokens": list(self.output_tokens),
            "shared_prefix_tokens": self.shared_prefix_tokens,
            "use": self.use,
        }
        d |= {"source": self.source.to_dict()} if self.source else {}
        return d | ({"turns": self.turns} if self.turns > 1 else {})

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        *,
        kind: str | None = None,
        format: str | None = None,
        api: str = "completions",
        name: str | None = None,
        columns: dict[str, str] | None = None,
        output_tokens: int | None = None,
        min_input_tokens: int | None = None,
        max_input_tokens: int | None = None,
        max_output_tokens: int | None = None,
        natural_lengths: bool = False,
    ) -> Workload:
        """A workload whose requests come from a dataset (sharegpt, jsonl, hf) or a trace (mooncake,
        azure) file. `kind` defaults from `format` or the name (.csv and mooncake-looking .jsonl files
        are given as traces with kind="trace"). The file is read now: a missing or malformed file fails
        here, and its content hash becomes part of the workload (a changed file makes a baseline stale)."""
        from perfsuite.sources import TRACE_FORMATS
        from perfsuite.traffic import Source

        kind = kind or ("trace" if format in TRACE_FORMATS or Path(path).suffix == ".csv" else "dataset")
        source = Source(
            str(path), kind, format, tuple(sorted((columns or {}).items())), output_tokens,
            min_input_tokens, max_input_tokens, max_output_tokens, natural_lengths,
        )  # fmt: skip
        file = source.read()  # validates every line now, not mid-run
        source = replace(source, format=file.format, sha256=file.sha256)
        lengths = [(e.input_tokens, e.output_tokens) for e in file.entries] if kind == "trace" else []
        return cls(
            name=name or Path(path).stem,
            description=f"{kind} {Path(path).name} ({file.format})",
            use=name or Path(path).stem,
            api=api,
            # Known before tokenizing for a trace; a dataset's lengths are measured (mean_input_tokens).
            input_tokens=(min(i for i, _ in lengths), max(i for i, _ in lengths)) if lengths else (0, 0),
            output_tokens=(min(o for _, o in lengths), max(o for _, o in lengths)) if lengths else (0, 0),
            source=source,
        )

    @classmethod
    def from_dict(cls, d: dict) -> Workload:
        """The workload to_dict() described (its description is not kept there). A workload read from a
        file is described by its file's name and hash only: it is read again with Workload.from_file."""
        if "source" in d:
            raise UsageError(f"workload {d.get('name')!r} reads {d['source'].get('file')}: use Workload.from_file")
        return cls(
            name=d["name"],
            description=d.get("description", ""),
            use=d.get("use", ""),
            api=d["api"],
            input_tokens=tuple(d["input_tokens"]),
            output_tokens=tuple(d["output_tokens"]),
            shared_prefix_tokens=d.get("shared_prefix_tokens", 0),
            turns=d.get("turns", 1),
        )


@dataclass
class RequestSpec:
    """One request to send: the text (or chat messages) and the exact token counts expected back."""

    prompt: str
    input_tokens: int  # as the server will count them (chat template included)
    output_tokens: int
    messages: list[dict] | None = field(default=None)
    exact_output: bool = True  # False: the model may stop at EOS; output_tokens is then a cap
    at_s: float | None = None  # a trace's arrival time, seconds from its first request (Load.replay)


def _range(value, what: str) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    if (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) for v in value)
        and 0 < value[0] <= value[1]
    ):
        return (value[0], value[1])
    raise UsageError(f"workload field {what}: expected a positive integer or [lo, hi], got {value!r}")


def load_workloads(path: str | Path | None = None) -> dict[str, Workload]:
    """The workloads in `path` (or the packaged data/workloads.json), by name. A workload with a
    "source" ({"path", "kind": dataset|trace, "format", ...Workload.from_file's options}) reads its
    requests from that file, named relative to the workloads file's folder and inside it."""
    raw, folder = _read_workloads_file(path)
    return {name: _workload(name, w, folder) for name, w in raw.items()}


def _read_workloads_file(path: str | Path | None) -> tuple[dict, Path]:
    """The raw "workloads" object of `path` (or the packaged file) and the folder it is in."""
    if path:
        text, folder = Path(path).read_text(), Path(path).resolve().parent
    else:
        data = resources.files("perfsuite").joinpath("data/workloads.json")
        text, folder = data.read_text(), Path(str(data)).resolve().parent
    return json.loads(text)["workloads"], folder


def _workload(name: str, w: dict, folder: Path) -> Workload:
    """One entry of a workloads file as a Workload (a sourced one reads its file)."""
    if w.get("api", "completions") not in ("completions", "chat"):
        raise UsageError(f"workload {name}: api must be 'completions' or 'chat', got {w.get('api')!r}")
    if "source" in w:
        return _sourced_workload(name, w, folder)
    return Workload(
        name=name,
        description=w.get("description", ""),
        use=w.get("use", name),
        api=w.get("api", "completions"),
        input_tokens=_range(w["input_tokens"], f"{name}.input_tokens"),
        output_tokens=_range(w["output_tokens"], f"{name}.output_tokens"),
        shared_prefix_tokens=int(w.get("shared_prefix_tokens", 0)),
        turns=int(w.get("turns", 1)),
    )


_SOURCE_OPTIONS = (
    "kind", "format", "columns", "output_tokens", "min_input_tokens", "max_input_tokens", "max_output_tokens",
    "natural_lengths",
)  # fmt: skip


def _sourced_workload(name: str, w: dict, folder: Path) -> Workload:
    source = w["source"]
    if not isinstance(source, dict) or not isinstance(source.get("path"), str):
        raise UsageError(f'workload {name}: source must be {{"path": file, "kind": "dataset"|"trace", ...}}')
    unknown = set(source) - {"path", *_SOURCE_OPTIONS}
    if unknown:
        raise UsageError(
            f"workload {name}: unknown source option(s) {sorted(unknown)}; known: {', '.join(_SOURCE_OPTIONS)}"
        )
    file = (folder / source["path"]).resolve()
    if not file.is_relative_to(folder):
        raise UsageError(
            f"workload {name}: source path {source['path']!r} leaves {folder}; keep the file beside workloads.json"
        )
    options = {k: source[k] for k in _SOURCE_OPTIONS if k in source}
    wl = Workload.from_file(file, api=w.get("api", "completions"), name=name, **options)
    return replace(wl, description=w.get("description", wl.description), use=w.get("use", wl.use))


def get_workload(name: str) -> Workload:
    """The packaged workload called `name`; only its own request file, if any, is read."""
    raw, folder = _read_workloads_file(None)
    if name not in raw:
        raise UsageError(f"unknown workload {name!r}; known: {', '.join(sorted(raw))}")
    return _workload(name, raw[name], folder)


class PromptBuilder:
    """Builds prompts of an exact token length from the model's own tokenizer.

    A window of N tokens is cut from a tokenized corpus and decoded; the text is kept only if it
    encodes back to exactly N tokens (byte-level BPE may merge differently at the edges), otherwise
    another window is tried.
    """

    def __init__(self, tokenizer, corpus: str, seed: int = 0) -> None:
        self.tokenizer = tokenizer
        self.ids = tokenizer.encode(corpus, add_special_tokens=False, verbose=False)  # longer than the model: fine
        self.seed = seed
        self.rng = random.Random(seed)
        self._sourced: dict = {}  # (source, api, max_model_len) -> perfsuite.traffic.SourcedRequests
        self._word_starts: list[int] | None = None

    def word_starts(self) -> list[int]:
        """Positions in the corpus of tokens that begin a word (a leading space in byte-level BPE and
        SentencePiece): a window from one to another tokenizes back to itself next to any other."""
        if self._word_starts is None:
            tokens = self.tokenizer.convert_ids_to_tokens(self.ids)
            self._word_starts = [i for i, t in enumerate(tokens) if len(t) > 1 and t[0] in ("\u0120", "\u2581")]
        return self._word_starts

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def text(self, n: int, after: str = "") -> str:
        """A text of n tokens; when `after` is given, `after + text` has count(after) + n tokens."""
        base = self.count(after) if after else 0
        for _ in range(200):
            start = self.rng.randrange(0, max(1, len(self.ids) - n))
            text = self.tokenizer.decode(self.ids[start : start + n])
            if self.count(after + text) == base + n:
                return text
        raise UsageError(f"could not build a prompt of exactly {n} tokens with this tokenizer")

    def chat_prompt_tokens(self, messages: list[dict]) -> int:
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return len(ids)

    def _max_model_len(self, server_limit: int | None) -> int:
        """The server's max model length where known, else the tokenizer's."""
        return int(server_limit or min(self.tokenizer.model_max_length, 10**9))

    def sourced(self, workload: Workload, max_model_len: int | None = None):
        """The workload's file read and tokenized once per builder (perfsuite.traffic.SourcedRequests);
        entries longer than `max_model_len` (the server's; default the tokenizer's) are dropped."""
        from perfsuite.traffic import sourced_requests

        limit = self._max_model_len(max_model_len)
        key = (workload.source, workload.api, limit)
        if key not in self._sourced:
            self._sourced[key] = sourced_requests(workload.source, self, workload.api, limit)
        return self._sourced[key]

    def sessions(self, workload: Workload, count: int, seed: int = 0, max_model_len: int | None = None):
        """`count` multi-turn conversations for Load.sessions (perfsuite.sessions.SessionPlan): a
        dataset's own conversations, else synthetic ones of workload.turns turns of its lengths."""
        from perfsuite.sessions import SessionPlan, synthetic_scripts

        if workload.api != "chat":
            raise UsageError(f"workload {workload.name}: multi-turn sessions need the chat API (api='chat')")
        limit = self._max_model_len(max_model_len)
        if workload.source is not None:
            max_turns = workload.turns if workload.turns > 1 else None  # a dataset's own turns, capped
            scripts = self.sourced(workload, max_model_len).sessions(count, seed, max_turns)
        else:
            scripts = synthetic_scripts(self, workload, count, seed, limit)
        return SessionPlan(scripts, self.chat_prompt_tokens)

    def requests(
        self, workload: Workload, count: int, seed: int = 0, max_model_len: int | None = None
    ) -> list[RequestSpec]:
        """`count` requests for `workload`, deterministic for a given seed. A workload read from a file
        drops entries longer than `max_model_len` (the server's limit, where known)."""
        if workload.source is not None:
            return self.sourced(workload, max_model_len).requests(count, seed)
        rng = random.Random(seed)
        # The texts too: the same (builder seed, seed) gives the same prompts whatever was built before.
        self.rng = random.Random(f"{self.seed}/{seed}")
        prefix = self.text(workload.shared_prefix_tokens) if workload.shared_prefix_tokens else ""
        specs = []
        for _ in range(count):
            n_in = rng.randint(*workload.input_tokens)
            n_out = rng.randint(*workload.output_tokens)
            body = prefix + self.text(n_in, after=prefix)
            if workload.api == "chat":
                messages = [{"role": "user", "content": body}]
                specs.append(RequestSpec(body, self.chat_prompt_tokens(messages), n_out, messages))
            else:
                specs.append(RequestSpec(body, workload.shared_prefix_tokens + n_in, n_out))
        return specs
