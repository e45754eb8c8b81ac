"""Multi-turn sessions: conversations in which every turn carries the history (the earlier messages
and the answers the server actually returned), held by concurrent users with a think time between
turns. This module makes the scripts (what each user says, and how long each answer must be) and the
numbers per turn; the load generator (perfsuite.loadgen, Load.sessions) holds the conversations.

Scripts come from a multi-turn dataset (ShareGPT: each human turn, with the token length of the
dataset's answer after it) or are synthetic (Workload.turns turns of the workload's lengths).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from perfsuite.errors import UsageError
from perfsuite.workloads import RequestSpec

__all__ = ["SessionScript", "SessionPlan", "dataset_scripts", "synthetic_scripts", "turn_breakdown"]

# Tokens a chat template adds per message, at most, in the length check before a session is sent
# (the tiny model's template adds 3: "<|user|>", the text, "\n"); the server's count is checked after.
TEMPLATE_TOKENS_PER_MESSAGE = 8


@dataclass(frozen=True)
class SessionScript:
    """One conversation: the user's messages in order and the answer length asked for after each."""

    user_texts: tuple[str, ...]
    output_tokens: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.user_texts or len(self.user_texts) != len(self.output_tokens):
            raise UsageError("a session needs at least one turn, and one answer length per user message")


@dataclass(frozen=True)
class SessionPlan:
    """What one repetition of Load.sessions sends: the scripts, and how the server counts a chat
    prompt (the model's chat template over the messages), which each turn's request is checked against."""

    scripts: list[SessionScript]
    count_prompt: Callable[[list[dict]], int]  # PromptBuilder.chat_prompt_tokens

    def first_turns(self, n: int) -> list[RequestSpec]:
        """The first turns of the first `n` scripts as single requests (the warm-up)."""
        out = []
        for script in self.scripts[:n]:
            text = script.user_texts[0]
            messages = [{"role": "user", "content": text}]
            out.append(RequestSpec(text, self.count_prompt(messages), script.output_tokens[0], messages))
        return out

    def rest(self, n: int) -> SessionPlan:
        """The plan without its first `n` scripts."""
        return SessionPlan(self.scripts[n:], self.count_prompt)


def _fits(script_turns: list[tuple[str, int]], count, max_model_len: int) -> int:
    """How many of the turns fit in the model's length, history included (from the first turn on)."""
    total = 0
    for k, (text, n_out) in enumerate(script_turns):
        total += count(text) + n_out + 2 * TEMPLATE_TOKENS_PER_MESSAGE
        if total > max_model_len:
            return k
    return len(script_turns)


def dataset_scripts(entries, tokenizer, max_model_len: int, max_turns: int | None = None):
    """Scripts from dataset entries (perfsuite.sources.DatasetEntry with user/assistant turns), and
    what was dropped: (scripts, {reason: count}). A conversation is cut at the first turn whose
    history would not fit in `max_model_len`; one whose first turn does not fit is dropped."""

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False))

    scripts, dropped = [], Counter()
    for entry in entries:
        turns = entry.turns
        pairs = [
            (turns[k].text, max(1, count(turns[k + 1].text)))
            for k in range(len(turns) - 1)
            if turns[k].role == "user" and turns[k + 1].role == "assistant"
        ][:max_turns]
        if not pairs:
            dropped["no user turn followed by an answer"] += 1
            continue
        fit = _fits(pairs, count, max_model_len)
        if fit == 0:
            dropped[f"first turn longer than the model allows ({max_model_len} tokens)"] += 1
            continue
        if fit < len(pairs):
            dropped[f"turns cut where the history outgrows the model ({max_model_len} tokens)"] += len(pairs) - fit
        texts, outs = zip(*pairs[:fit])
        scripts.append(SessionScript(tuple(texts), tuple(outs)))
    return scripts, dict(dropped)


def synthetic_scripts(prompts, workload, count: int, seed: int, max_model_len: int) -> list[SessionScript]:
    """`count` conversations of workload.turns turns, each message and answer of the workload's lengths."""
    rng = random.Random(f"perfsuite-sessions:{seed}")
    prompts.rng = random.Random(f"{prompts.seed}/sessions/{seed}")
    scripts = []
    for _ in range(count):
        texts, outs = [], []
        for _ in range(workload.turns):
            texts.append(prompts.text(rng.randint(*workload.input_tokens)))
            outs.append(rng.randint(*workload.output_tokens))
        scripts.append(SessionScript(tuple(texts), tuple(outs)))
    need = workload.turns * (workload.input_tokens[1] + workload.output_tokens[1] + 2 * TEMPLATE_TOKENS_PER_MESSAGE)
    if need > max_model_len:
        raise UsageError(
            f"workload {workload.name}: {workload.turns} turns of up to {workload.input_tokens[1]} + "
            f"{workload.output_tokens[1]} tokens can outgrow the model's {max_model_len} tokens; use fewer turns"
        )
    return scripts


def turn_breakdown(records: list) -> list[dict]:
    """Per turn index (1 = the first): requests, TTFT p50/p90 (ms), mean prompt tokens, and how much of
    the prompt the server found in its prefix cache (cached_tokens from its usage report: the share of
    the prompt, and of the history, the earlier turns' messages and answers, that was reused)."""
    by_turn: dict[int, list] = {}
    for r in records:
        if r.turn is not None:
            by_turn.setdefault(r.turn, []).append(r)
    out = []
    for turn in sorted(by_turn):
        group = by_turn[turn]
        ok = [r for r in group if r.error is None and r.first_token is not None]
        ttft = [(r.first_token - r.send) * 1e3 for r in ok]
        row = {"turn": turn + 1, "requests": len(group), "requests_ok": len(ok)}
        for p in (50, 90):
            row[f"ttft_p{p}_ms"] = float(np.percentile(ttft, p)) if ttft else None
        prompt = [r.prompt_tokens for r in ok if r.prompt_tokens]
        row["mean_prompt_tokens"] = float(np.mean(prompt)) if prompt else None
        cached = [(r.cached_tokens, r.prompt_tokens, r.history_tokens) for r in ok if r.cached_tokens is not None]
        row["cached_tokens"] = sum(c for c, _, _ in cached) if cached else None
        row["prefix_cache_hit_rate"] = sum(c for c, _, _ in cached) / sum(p for _, p, _ in cached) if cached else None
        history = sum(h for _, _, h in cached)
        row["history_reused"] = min(1.0, sum(c for c, _, _ in cached) / history) if cached and history else None
        out.append(row)
    return out
