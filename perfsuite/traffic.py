"""Requests from a file (perfsuite.sources) turned into RequestSpecs of exact token lengths.

- A dataset's prompts are sent as written; the input length is what the served model's tokenizer
  counts (the chat template included), the output length the entry's `output_tokens` or the token
  length of its answer (ShareGPT), as vLLM's benchmark does. Filters and the model's length drop
  entries, and every drop is counted by reason.
- A trace's prompts are built to its lengths. Mooncake hash ids name 512-token blocks: each id is one
  fixed window of the corpus, so requests that share an id share that block's exact tokens and the
  server sees the prefixes the trace had. Windows start and end at word boundaries, where byte-level
  BPE never merges, so a prompt's tokens are its blocks' tokens, which is checked.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from perfsuite.errors import UsageError
from perfsuite.sources import (
    MOONCAKE_BLOCK_TOKENS,
    DatasetEntry,
    SourceFile,
    TraceEntry,
    read_dataset,
    read_trace,
)
from perfsuite.workloads import RequestSpec

__all__ = ["Source", "SourcedRequests", "sourced_requests"]


@dataclass(frozen=True)
class Source:
    """Where a workload's requests come from, and how they are chosen (a Workload's `source`).

    kind: "dataset" (sampled with the seed, lengths filtered) or "trace" (replayed in order).
    sha256: the file's content hash, filled in when read; it is part of the workload, so a changed
    file makes the baseline stale.
    """

    path: str
    kind: str  # "dataset" or "trace"
    format: str | None = None  # None: from the file name (perfsuite.sources)
    columns: tuple[tuple[str, str], ...] = ()  # hf datasets: (perfsuite field, column)
    output_tokens: int | None = None  # datasets: for entries that give neither output_tokens nor an answer
    min_input_tokens: int | None = None
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None
    natural_lengths: bool = False  # let the model stop at EOS (output_tokens is then a cap, not checked)
    sha256: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("dataset", "trace"):
            raise UsageError(f"Source.kind={self.kind!r}: use 'dataset' or 'trace'")

    def read(self) -> SourceFile:
        if self.kind == "trace":
            return read_trace(self.path, self.format)
        return read_dataset(self.path, self.format, dict(self.columns) or None)

    def to_dict(self) -> dict:
        d = {"file": Path(self.path).name, "kind": self.kind, "format": self.format, "sha256": self.sha256}
        options = {
            "columns": dict(self.columns) or None,
            "output_tokens": self.output_tokens,
            "min_input_tokens": self.min_input_tokens,
            "max_input_tokens": self.max_input_tokens,
            "max_output_tokens": self.max_output_tokens,
            "natural_lengths": self.natural_lengths or None,
        }
        return d | {k: v for k, v in options.items() if v is not None}


@dataclass
class SourcedRequests:
    """A source's entries, tokenized once, and what was dropped on the way (reason -> count)."""

    source: Source
    api: str
    specs: list[RequestSpec]  # every usable entry, in file order (datasets sample from it per seed)
    dropped: Counter = field(default_factory=Counter)
    prompts: object = None  # the PromptBuilder (traces build their block texts per seed)
    entries: tuple = ()  # traces: the usable entries, in order; datasets: every entry read (for sessions)
    max_model_len: int = 0
    scripts: list | None = None  # datasets as multi-turn sessions: perfsuite.sessions.SessionScript, built once

    def notes(self) -> list[str]:
        """What the measurement should say about the source: its size and every drop."""
        if self.scripts is not None:
            kept, what = len(self.scripts), "conversations"
        else:
            kept, what = (len(self.specs) if self.source.kind == "dataset" else len(self.entries)), "requests"
        out = [f"{self.source.kind} {Path(self.source.path).name}: {kept} {what} usable"]
        out += [
            f"{self.source.kind} {Path(self.source.path).name}: {n} dropped: {why}"
            for why, n in sorted(self.dropped.items())
        ]
        return out

    def requests(self, count: int, seed: int) -> list[RequestSpec]:
        """`count` requests: a dataset's sampled by `seed` (cycled when it holds fewer), a trace's first
        `count` in order, with block texts drawn from `seed` so that each repetition's prefixes are new."""
        if self.source.kind == "trace":
            return _trace_specs(self.entries[:count], self.prompts, seed, not self.source.natural_lengths)
        return _slice(self.specs, count, seed)

    def sessions(self, count: int, seed: int, max_turns: int | None = None) -> list:
        """`count` conversations (perfsuite.sessions.SessionScript) of a dataset, chosen as requests()
        chooses requests, of at most `max_turns` turns; turns that would outgrow the model's length
        are cut, and counted."""
        from perfsuite.sessions import dataset_scripts

        if self.source.kind != "dataset":
            raise UsageError(f"{self.source.path}: multi-turn sessions come from a dataset, not a trace")
        if self.scripts is None:
            tok = self.prompts.tokenizer
            self.scripts, dropped = dataset_scripts(self.entries, tok, self.max_model_len, max_turns)
            self.dropped.update(dropped)
            if not self.scripts:
                raise UsageError(f"{self.source.path}: no conversation fits in the model's {self.max_model_len} tokens")
        return _slice(self.scripts, count, seed)


def _slice(items: list, count: int, seed: int) -> list:
    """`count` of `items`: one shuffled order for every seed, seed k taking the k-th slice of `count`.
    Consecutive seeds (a test's repetitions) get disjoint items while there are enough, so that a
    repetition does not find its prompts in the prefix cache from the last one; then it wraps around."""
    order = list(range(len(items)))
    random.Random("perfsuite-dataset").shuffle(order)
    first = seed * count
    return [items[order[(first + i) % len(order)]] for i in range(count)]


def sourced_requests(source: Source, prompts, api: str, max_model_len: int) -> SourcedRequests:
    """Read `source` and tokenize it with `prompts` (a perfsuite.workloads.PromptBuilder). Entries
    longer than `max_model_len` (prompt + output) are dropped and counted; none left is an error."""
    file = source.read()
    if source.sha256 is not None and source.sha256 != file.sha256:
        raise UsageError(f"{source.path}: the file changed while the suite ran (sha256 differs); run again")
    dropped = Counter(file.skipped)
    if source.kind == "dataset":
        specs = []
        for entry in file.entries:
            spec, why = _dataset_spec(entry, source, prompts, api, max_model_len)
            if why:
                dropped[why] += 1
            else:
                specs.append(spec)
        out = SourcedRequests(source, api, specs, dropped, prompts, file.entries, max_model_len)
        kept = len(specs)
    else:
        if api != "completions":
            raise UsageError(f"{source.path}: a trace is replayed on the completions API; use api='completions'")
        entries = []
        for entry in file.entries:
            if entry.input_tokens + entry.output_tokens > max_model_len:
                dropped[f"longer than the model allows ({max_model_len} tokens)"] += 1
            else:
                entries.append(entry)
        out = SourcedRequests(source, api, [], dropped, prompts, tuple(entries), max_model_len)
        kept = len(entries)
    if not kept:
        why = "; ".join(f"{n} {reason}" for reason, n in sorted(dropped.items())) or "the file holds none"
        raise UsageError(f"{source.path}: no usable requests left ({why}); relax the filters or use another file")
    return out


def _dataset_spec(entry: DatasetEntry, source: Source, prompts, api: str, max_model_len: int):
    """(the RequestSpec, None), or (None, why the entry is dropped)."""
    tok = prompts.tokenizer
    if api == "chat":
        if entry.chat:
            messages = [{"role": t.role, "content": t.text} for t in entry.turns]
        else:
            messages = [{"role": "user", "content": entry.prompt}]
        n_in = prompts.chat_prompt_tokens(messages)
        prompt = messages[-1]["content"]
    else:
        if entry.chat:
            raise UsageError(f"{entry.where}: a \"messages\" entry needs the chat API (api='chat')")
        messages, prompt = None, entry.prompt
        n_in = len(tok.encode(prompt))  # as the server counts a completion's prompt (special tokens included)
    if entry.output_tokens is not None:
        n_out = entry.output_tokens
    elif entry.answer is not None:
        n_out = len(tok.encode(entry.answer, add_special_tokens=False))
    elif source.output_tokens is not None:
        n_out = source.output_tokens
    else:
        raise UsageError(
            f'{entry.where}: no output length: give "output_tokens" on the line, or a default '
            "(Workload.from_file(..., output_tokens=N), perfsuite load --output-len N)"
        )
    if n_out < 1:
        return None, "answer of 0 tokens"
    if source.min_input_tokens is not None and n_in < source.min_input_tokens:
        return None, f"prompt under {source.min_input_tokens} tokens"
    if source.max_input_tokens is not None and n_in > source.max_input_tokens:
        return None, f"prompt over {source.max_input_tokens} tokens"
    if source.max_output_tokens is not None and n_out > source.max_output_tokens:
        return None, f"output over {source.max_output_tokens} tokens"
    if n_in + n_out > max_model_len:
        return None, f"longer than the model allows ({max_model_len} tokens)"
    return RequestSpec(prompt, n_in, n_out, messages, exact_output=not source.natural_lengths), None


# -- traces: prompts built from shared blocks -----------------------------------------------------


class _Blocks:
    """Token windows of the corpus that start and end at word boundaries (a token that begins a word
    starts the window and follows it), so that any concatenation of them tokenizes back to itself."""

    def __init__(self, prompts, seed: int) -> None:
        self.ids = prompts.ids
        self.starts = prompts.word_starts()
        self.is_start = set(self.starts)
        self.rng = random.Random(f"perfsuite-trace-blocks:{seed}")
        self.cache: dict[int, list[int]] = {}

    def window(self, n: int) -> list[int]:
        """n tokens of the corpus from a word start to just before another."""
        for _ in range(2000):
            start = self.starts[self.rng.randrange(len(self.starts))]
            if start + n < len(self.ids) and start + n in self.is_start:
                return self.ids[start : start + n]
        raise UsageError(f"could not find a {n}-token window between word boundaries in the corpus")

    def block(self, hash_id: int) -> list[int]:
        if hash_id not in self.cache:
            self.cache[hash_id] = self.window(MOONCAKE_BLOCK_TOKENS)
        return self.cache[hash_id]


def _trace_specs(entries: tuple[TraceEntry, ...], prompts, seed: int, exact_output: bool = True) -> list[RequestSpec]:
    blocks = _Blocks(prompts, seed)
    tok = prompts.tokenizer
    specs = []
    for e in entries:
        if e.hash_ids:
            full = e.input_tokens // MOONCAKE_BLOCK_TOKENS  # whole blocks; a partial last block is the
            ids = [t for h in e.hash_ids[:full] for t in blocks.block(h)]  # request's own, cut at a word end
            if e.input_tokens % MOONCAKE_BLOCK_TOKENS:
                ids += blocks.window(e.input_tokens % MOONCAKE_BLOCK_TOKENS)
        else:
            ids = blocks.window(e.input_tokens)
        text = tok.decode(ids)
        if tok.encode(text, add_special_tokens=False) != ids:
            raise UsageError(
                f"{e.where}: the prompt built for it does not tokenize back to its blocks "
                f"(tokenizer {tok.name_or_path}); report it with the tokenizer's name"
            )
        # The input length is what the server counts (a BOS token, where the tokenizer adds one).
        specs.append(
            RequestSpec(
                text, len(tok.encode(text)), e.output_tokens, exact_output=exact_output, at_s=e.timestamp_ms / 1e3
            )
        )
    return specs
