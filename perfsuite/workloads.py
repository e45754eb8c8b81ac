"""Workloads as data (data/workloads.json) and the exact-length prompts built from them."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from perfsuite.errors import UsageError

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

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "api": self.api,
            "input_tokens": list(self.input_tokens),
            "output_tokens": list(self.output_tokens),
            "shared_prefix_tokens": self.shared_prefix_tokens,
            "use": self.use,
        }


@dataclass
class RequestSpec:
    """One request to send: the text (or chat messages) and the exact token counts expected back."""

    prompt: str
    input_tokens: int  # as the server will count them (chat template included)
    output_tokens: int
    messages: list[dict] | None = field(default=None)


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
    """The workloads in `path` (or the packaged data/workloads.json), by name."""
    text = Path(path).read_text() if path else resources.files("perfsuite").joinpath("data/workloads.json").read_text()
    raw = json.loads(text)
    out = {}
    for name, w in raw["workloads"].items():
        if w.get("api", "completions") not in ("completions", "chat"):
            raise UsageError(f"workload {name}: api must be 'completions' or 'chat', got {w.get('api')!r}")
        out[name] = Workload(
            name=name,
            description=w.get("description", ""),
            use=w.get("use", name),
            api=w.get("api", "completions"),
            input_tokens=_range(w["input_tokens"], f"{name}.input_tokens"),
            output_tokens=_range(w["output_tokens"], f"{name}.output_tokens"),
            shared_prefix_tokens=int(w.get("shared_prefix_tokens", 0)),
        )
    return out


def get_workload(name: str) -> Workload:
    workloads = load_workloads()
    if name not in workloads:
        raise UsageError(f"unknown workload {name!r}; known: {', '.join(sorted(workloads))}")
    return workloads[name]


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

    def requests(self, workload: Workload, count: int, seed: int = 0) -> list[RequestSpec]:
        """`count` requests for `workload`, deterministic for a given seed."""
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
