"""Plain transformers generation in static batches, streaming one token per step: the engine behind
hf-naive, the TorchServe handler and the Ray Serve deployment that perfsuite writes.

Static batching is the "vanilla" serving the article compares continuous batching with: a batch is
formed, run until its longest request is done (finished rows keep occupying their slot), and only
then does the next batch start. The KV cache is transformers' contiguous DynamicCache, no paging.

Prompts are tokenized as vLLM does (`tokenizer.encode` for completions, the chat template with the
generation prompt for chat), so the load generator's exact-length check holds for every framework.
Decoding is greedy and ignores EOS: every request gets exactly the tokens it asked for.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import torch

__all__ = ["Generator", "Job", "parse_request", "pin_engine_thread", "ENGINE_CPUS_ENV"]

# Set by the plugins on the CPU profile: the cores the model's compute runs on. The server's HTTP
# front end (and perfsuite's load generator) keep to the other core, as vLLM's CPU backend does.
ENGINE_CPUS_ENV = "PERFSUITE_ENGINE_CPUS"
_pinned = threading.local()


def pin_engine_thread() -> None:
    """Keep the calling thread (and the torch threads it starts) on $PERFSUITE_ENGINE_CPUS. Once per thread."""
    spec = os.environ.get(ENGINE_CPUS_ENV)
    if not spec or getattr(_pinned, "done", False):
        return
    cpus = {int(c) for c in spec.split(",")}
    os.sched_setaffinity(0, cpus)  # 0: this thread
    torch.set_num_threads(len(cpus))
    _pinned.done = True


@dataclass
class Job:
    """One request, tokenized: its prompt ids and how many tokens to generate."""

    prompt_ids: list[int]
    max_tokens: int


def parse_request(body: dict, tokenizer, chat: bool) -> Job:
    """The Job for an OpenAI-style body ({"prompt"} or {"messages"}, "max_tokens"); ValueError if bad."""
    if not isinstance(body, dict):
        raise ValueError("the request body must be a JSON object")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError("max_tokens must be a whole number >= 1")
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ValueError("messages must be a non-empty list")
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if hasattr(ids, "keys"):
            ids = ids["input_ids"]
    else:
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise ValueError("prompt must be a non-empty string")
        ids = tokenizer.encode(prompt)
    return Job(list(ids), max_tokens)


class Generator:
    """A causal LM and its tokenizer, generating for a static batch of Jobs."""

    def __init__(self, model_dir: str, threads: int | None = None, max_model_len: int | None = None) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        self.max_model_len = max_model_len or getattr(self.model.config, "max_position_embeddings", 2048)
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (self.tokenizer.eos_token_id or 0)

    def check(self, job: Job) -> None:
        """ValueError when a job cannot fit the model's length."""
        total = len(job.prompt_ids) + job.max_tokens
        if total > self.max_model_len:
            raise ValueError(
                f"{len(job.prompt_ids)} prompt + {job.max_tokens} output tokens > max_model_len {self.max_model_len}"
            )

    def job(self, body: dict, chat: bool, require_stream: bool = False) -> Job:
        """The Job for a request body, checked against the model's length; ValueError says what is wrong."""
        job = parse_request(body, self.tokenizer, chat)
        self.check(job)
        if require_stream and not body.get("stream"):
            raise ValueError("only streaming requests are served (stream: true)")
        return job

    def text(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id])

    @torch.inference_mode()
    def generate(self, jobs: list[Job]) -> Iterator[list[int | None]]:
        """Yield, per decoding step, each job's new token id (None once that job is done).

        The batch is left-padded; it runs for max(max_tokens) steps whatever its shortest job needs.
        """
        longest = max(len(j.prompt_ids) for j in jobs)
        ids = torch.full((len(jobs), longest), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(jobs), longest), dtype=torch.long)
        for row, job in enumerate(jobs):
            ids[row, longest - len(job.prompt_ids) :] = torch.tensor(job.prompt_ids)
            mask[row, longest - len(job.prompt_ids) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        cache = out.past_key_values
        steps = max(j.max_tokens for j in jobs)
        for step in range(steps):
            nxt = out.logits[:, -1, :].argmax(-1)
            yield [int(t) if step < j.max_tokens else None for t, j in zip(nxt.tolist(), jobs)]
            if step + 1 == steps:
                return
            mask = torch.cat([mask, torch.ones((len(jobs), 1), dtype=torch.long)], dim=1)
            positions = positions[:, -1:] + 1
            out = self.model(
                input_ids=nxt[:, None],
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
            )
            cache = out.past_key_values
