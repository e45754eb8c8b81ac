"""Sample request files made from local text (the corpus that ships with Python; no hub): a ShareGPT
dataset, a multi-turn ShareGPT dataset and a Mooncake trace whose requests share prefix blocks.

`perfsuite samples --out DIR` writes them (bigger with --conversations / --trace-requests); the small
ones shipped in perfsuite/data/samples were written by it with the defaults.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from perfsuite.jsonfile import write_atomic, write_text_atomic
from perfsuite.model import corpus_text
from perfsuite.sources import MOONCAKE_BLOCK_TOKENS

__all__ = ["SampleSizes", "sharegpt_sample", "multi_turn_sample", "mooncake_sample", "write_samples", "SAMPLE_FILES"]

SAMPLE_FILES = {"sharegpt": "sharegpt.json", "multi_turn": "multi-turn.json", "mooncake": "mooncake.jsonl"}


@dataclass(frozen=True)
class SampleSizes:
    """How big the samples are. The trace's lengths fit the CPU default's max_model_len of 1024:
    one shared 512-token block (a "system prompt" of one of `trace_prefixes`) and a request's own tail."""

    conversations: int = 160  # three repetitions of 40 requests each get prompts of their own
    multi_turn_conversations: int = 24  # three repetitions of 8 sessions each get conversations of their own
    turns: int = 4
    trace_requests: int = 40
    trace_seconds: float = 10.0
    trace_prefixes: int = 4
    seed: int = 0


def _passages(seed: int) -> tuple[list[str], random.Random]:
    paragraphs = [p.strip() for p in corpus_text().split("\n\n") if len(p.strip()) > 80]
    return paragraphs, random.Random(f"perfsuite-samples:{seed}")


def _cut(rng: random.Random, paragraphs: list[str], lo: int, hi: int) -> str:
    """A passage of about lo..hi words from a random paragraph (several joined when one is short)."""
    words: list[str] = []
    n = rng.randint(lo, hi)
    while len(words) < n:
        words += rng.choice(paragraphs).split()
    return " ".join(words[:n])


def sharegpt_sample(sizes: SampleSizes = SampleSizes()) -> list[dict]:
    """Single-exchange conversations: a question-like prompt of 10-200 words and an answer of 5-60 words."""
    paragraphs, rng = _passages(sizes.seed)
    return [
        {
            "id": f"sample-{i}",
            "conversations": [
                {"from": "human", "value": _cut(rng, paragraphs, 10, 200)},
                {"from": "gpt", "value": _cut(rng, paragraphs, 5, 60)},
            ],
        }
        for i in range(sizes.conversations)
    ]


def multi_turn_sample(sizes: SampleSizes = SampleSizes()) -> list[dict]:
    """Conversations of `sizes.turns` exchanges: short follow-up questions, answers of 5-40 words."""
    paragraphs, rng = _passages(sizes.seed + 1)
    out = []
    for i in range(sizes.multi_turn_conversations):
        turns = []
        for t in range(sizes.turns):
            turns.append({"from": "human", "value": _cut(rng, paragraphs, 40 if t == 0 else 5, 120 if t == 0 else 30)})
            turns.append({"from": "gpt", "value": _cut(rng, paragraphs, 5, 40)})
        out.append({"id": f"multi-turn-{i}", "conversations": turns})
    return out


def mooncake_sample(sizes: SampleSizes = SampleSizes()) -> list[dict]:
    """A Mooncake trace: Poisson arrivals over `trace_seconds`, each prompt one shared 512-token block
    (hash ids 0..trace_prefixes-1, like a system prompt) then 8-400 tokens of its own (a fresh hash
    id), 8-48 output tokens. Every request after the first of its prefix can hit the prefix cache."""
    rng = random.Random(f"perfsuite-samples:mooncake:{sizes.seed}")
    rate = sizes.trace_requests / sizes.trace_seconds
    lines, t, next_id = [], 0.0, sizes.trace_prefixes
    for _ in range(sizes.trace_requests):
        own = rng.randint(8, 400)
        lines.append(
            {
                "timestamp": int(round(t * 1e3)),
                "input_length": MOONCAKE_BLOCK_TOKENS + own,
                "output_length": rng.randint(8, 48),
                "hash_ids": [rng.randrange(sizes.trace_prefixes), next_id],
            }
        )
        next_id += 1
        t += rng.expovariate(rate)
    return lines


def write_samples(out: str | Path, sizes: SampleSizes = SampleSizes()) -> list[Path]:
    """Write the three samples into `out` (created); each file is written whole or not at all."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / SAMPLE_FILES[k] for k in ("sharegpt", "multi_turn", "mooncake")]
    write_atomic(paths[0], sharegpt_sample(sizes))
    write_atomic(paths[1], multi_turn_sample(sizes))
    write_text_atomic(paths[2], "".join(json.dumps(line) + "\n" for line in mooncake_sample(sizes)))
    return paths
